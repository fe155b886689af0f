"""Converting the synthetic population: nothing partial or failed, statuses as the truth says.

The population's truth (``npc_frames.synth.population``) names each component ``ok``, ``empty``
or ``absent``; the catalog must say exactly that, and an ``absent`` row has no rows and says why.
"""

from __future__ import annotations

import warnings

import polars as pl
import pytest

from npc_frames import cache
from npc_frames.assets import ASSET_KINDS
from npc_frames.synth.population import make_population


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("population")
    pop = make_population(root / "raw", 8, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = cache.convert([root / "raw"], root / "cache", workers=1, progress=False)
    return pop, run


def test_population_converts_with_nothing_partial_or_failed(converted):
    pop, run = converted
    assert not run["status"].is_in(["failed", "partial"]).any(), (
        run.filter(pl.col("status").is_in(["failed", "partial"]))
        .select("session_id", "component", "error")
        .rows()
    )
    ignored = run.filter(pl.col("status") == "ignored")["raw_path"].to_list()
    derived = tuple(f"_{process}_" for process in ASSET_KINDS.values())
    assert ignored and all(
        p.endswith(".truth") or any(d in p.rsplit("/", 1)[-1] for d in derived) for p in ignored
    ), ignored
    comp = run.filter(pl.col("part").is_null() & (pl.col("component") != "*"))
    assert comp["raw_path"].n_unique() == len(pop.members)


def test_population_statuses_follow_the_truth(converted):
    pop, run = converted
    comp = run.filter(pl.col("part").is_null() & (pl.col("component") != "*"))
    by_root = {
        r["raw_path"].rstrip("/").rsplit("/", 1)[-1]: r["raw_path"]
        for r in comp.iter_rows(named=True)
    }
    for m in pop.members:
        rows = comp.filter(
            pl.col("raw_path") == by_root[str(m.raw_path).rstrip("/").rsplit("/", 1)[-1]]
        )
        for r in rows.iter_rows(named=True):
            want = m.status(r["component"])
            got = r["status"]
            assert got == want, (m.session_id, r["component"], got, r["error"])
            if want == "absent":
                assert r["rows"] == 0
                assert r["error"] and r["error"].startswith("AbsentModalityError: ")
            elif want == "ok":
                assert r["rows"] > 0 and r["error"] is None
        # per-probe part rows of the sorting components: ok with rows, or absent (skipped)
        for name in ("units", "spike_amplitudes", "unit_waveforms"):
            part_rows = run.filter(
                (pl.col("raw_path") == by_root[str(m.raw_path).rstrip("/").rsplit("/", 1)[-1]])
                & (pl.col("component") == name)
                & pl.col("part").is_not_null()
            )
            got_parts = {r["part"]: r["status"] for r in part_rows.iter_rows(named=True)}
            want_parts = {p: c[name]["status"] for p, c in m.probe_components.items()}
            assert got_parts == want_parts, (m.session_id, name, got_parts)
            ok_rows = part_rows.filter(pl.col("status") == "ok")["rows"].to_list()
            assert all(n > 0 for n in ok_rows), (m.session_id, name)
