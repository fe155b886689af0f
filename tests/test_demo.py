"""``npc-frames demo``: the README's main command runs the whole pipeline and says where it put it."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from npc_frames.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    pytest.importorskip("npc_frames.synth")
    pytest.importorskip("npc_frames.cache")
    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main(["demo", "--out", str(out)])
    return out, buf.getvalue(), status


def test_demo_succeeds_and_prints_where_everything_went(demo: tuple[Path, str, int]) -> None:
    out, text, status = demo
    assert status == 0, text
    for sub in ("raw", "cache", "nwb"):
        assert str(out / sub) in text
    assert "valid" in text


def test_demo_converts_three_sessions_without_failures(demo: tuple[Path, str, int]) -> None:
    from npc_frames.cache import read_catalog

    out, _, _ = demo
    catalog = read_catalog(out / "cache")
    assert catalog["session_id"].n_unique() == 3
    assert catalog.filter(pl.col("status") == "failed").height == 0
    assert len(list((out / "raw").glob("ecephys_*_*"))) >= 3


def test_demo_query_matches_polars_on_the_cache(demo: tuple[Path, str, int]) -> None:
    """The printed DuckDB hit rates equal an independent Polars computation over the same cache."""
    from npc_frames.cache import scan
    from npc_frames.commands.demo import HIT_RATE_SQL

    out, text, _ = demo
    want = (
        scan("trials", out / "cache")
        .group_by("session_id", "rewarded_modality")
        .agg(
            pl.len().alias("n_trials"),
            pl.col("is_hit").filter(pl.col("is_go")).cast(pl.Float64).mean().alias("hit"),
        )
        .sort("session_id", "rewarded_modality")
        .collect()
    )
    from npc_frames.cache import sql

    got = sql(HIT_RATE_SQL, out / "cache")
    assert got["session_id"].to_list() == want["session_id"].to_list()
    assert got["n_trials"].to_list() == want["n_trials"].to_list()
    np.testing.assert_allclose(
        got["hit_rate"].cast(pl.Float64).to_numpy(), want["hit"].round(3).to_numpy()
    )
    for sid in want["session_id"].unique():
        assert sid in text


def test_demo_nwb_is_valid_and_holds_the_first_session(demo: tuple[Path, str, int]) -> None:
    pynwb = pytest.importorskip("pynwb")
    from npc_frames.nwb import validate_nwb

    out, _, _ = demo
    (path,) = list((out / "nwb").glob("*.nwb"))
    assert validate_nwb(path) == []
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert nwb.session_id == path.stem
        assert len(nwb.units) > 0 and len(nwb.trials) > 0


def test_demo_draws_figures_when_plot_is_available(demo: tuple[Path, str, int]) -> None:
    pytest.importorskip("npc_frames.plot")
    pytest.importorskip("matplotlib")
    out, _, _ = demo
    pngs: list[Any] = list((out / "figures").glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)
