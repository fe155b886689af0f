"""Converting the synthetic population: nothing partial or failed, statuses as the truth says.

The population's truth (``npc_frames.synth.population``) names each component ``ok``, ``empty``
or ``absent``. Known difference, kept explicit here: tables whose stim script a session lacks
(RF mapping, opto-tagging, luminance test, invalid times, and everything of a surface-channel
recording without behavior) are written as zero-row ``empty`` frames, which the truth calls
``absent``.
"""

from __future__ import annotations

import warnings

import polars as pl
import pytest

from npc_frames import cache
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
    assert ignored and all(p.endswith(".truth") or "_sorted_" in p for p in ignored)
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
            if want == "absent":
                assert got in ("absent", "empty"), (m.session_id, r["component"], got)
                assert r["rows"] == 0
            else:
                assert got == want, (m.session_id, r["component"], got, r["error"])
