"""QC report of a converted synthetic session, healthy and with a broken probe and no photodiode."""

from __future__ import annotations

import html.parser
import io
import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import npc_frames as nf
from npc_frames import storage
from npc_frames.cache.catalog import data_path
from npc_frames.cache_layout import to_parquet_bytes

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qc_caches(synth_session: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(healthy cache, cache of the same session with probe B's units lost and no photodiode)."""
    root = tmp_path_factory.mktemp("qc_cache")
    out = nf.convert([synth_session.raw_path], root / "healthy", progress=False)
    assert out.filter(pl.col("status") == "failed").is_empty()
    broken = root / "broken"
    shutil.copytree(root / "healthy", broken)
    sid = str(synth_session.session_id)
    tables = nf.read_session(sid, broken)
    units = tables["units"].filter(pl.col("electrode_group_name") != "probeB")
    sessions = tables["sessions"].with_columns(is_photodiode=pl.lit(False))
    for name, df in (("units", units), ("sessions", sessions)):
        storage.atomic_write_bytes(
            data_path(str(broken), name, sid), to_parquet_bytes(df, component=name)
        )
    return root / "healthy", broken


class _Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headings: list[str] = []
        self._h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        self._h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._h2:
            self.headings.append(data)
            self._h2 = False


def _report(cache: Path, sid: str, out: Path) -> tuple[Path, dict[str, Any]]:
    index = nf.plot.qc_report(sid, cache, out)
    return index, json.loads((index.parent / "qc.json").read_text())


def _checks(doc: dict[str, Any]) -> dict[str, Any]:
    return {c["name"]: c for c in doc["checks"]}


def test_healthy_report_images_exist_and_decode(
    qc_caches: tuple[Path, Path], synth_session: Any, tmp_path: Path
) -> None:
    from matplotlib.image import imread

    sid = str(synth_session.session_id)
    index, doc = _report(qc_caches[0], sid, tmp_path)
    parser = _Images()
    parser.feed(index.read_text())
    assert {
        "Running speed",
        "Probe yield",
        "Unit metrics",
        "Drift map",
        "Sensory responses",
        "Optotagging",
    } <= set(parser.headings)
    assert len(parser.images) >= 7  # one drift map per probe
    for src in parser.images:
        img = imread(io.BytesIO((index.parent / src).read_bytes()), format="png")
        assert img.ndim == 3 and img.shape[0] > 50 and img.std() > 0  # decodes, not blank
    checks = _checks(doc)
    assert checks["sync"]["passed"] is True and checks["photodiode"]["passed"] is True
    units = nf.read_session(sid, qc_caches[0])["units"]
    for probe in ("probeA", "probeB"):
        n = units.filter((pl.col("electrode_group_name") == probe) & pl.col("default_qc")).height
        assert checks[f"yield_{probe}"]["value"] == n
        assert checks[f"yield_{probe}"]["passed"] is (n >= 5)
    assert "Good:" in index.read_text() and "threshold" in index.read_text()


def test_broken_probe_and_no_photodiode_fail_in_qc_json(
    qc_caches: tuple[Path, Path], synth_session: Any, tmp_path: Path
) -> None:
    sid = str(synth_session.session_id)
    index, doc = _report(qc_caches[1], sid, tmp_path)
    checks = _checks(doc)
    assert checks["photodiode"]["passed"] is False
    assert checks["yield_probeB"]["passed"] is False and checks["yield_probeB"]["value"] == 0
    assert doc["passed"] is False
    assert "FAIL" in index.read_text()
    # the CLI writes the same report and exits 1 when a check failed
    from npc_frames.cli import main

    assert main(["qc", sid, "--cache", str(qc_caches[1]), "-o", str(tmp_path / "cli")]) == 1
    assert (tmp_path / "cli" / sid / "qc.json").exists()
    from npc_frames.qc import read_qc

    table = read_qc(tmp_path)  # the report above and the CLI's live in different folders
    assert table.filter(pl.col("passed") == False)["name"].to_list() == [  # noqa: E712
        c["name"] for c in doc["checks"] if c["passed"] is False
    ]


def test_population_rates_against_brute_force() -> None:
    from npc_frames.qc import _population_rates

    rng = np.random.default_rng(0)
    spikes = np.sort(rng.uniform(0, 100, 5000))
    events = rng.uniform(5, 95, 40)
    edges = np.arange(-0.2, 0.5001, 0.01)
    got = _population_rates(spikes, events, edges)
    want = np.array(
        [
            np.mean([((spikes >= e + a) & (spikes < e + b)).sum() for e in events]) / (b - a)
            for a, b in itertools.pairwise(edges)
        ]
    )
    np.testing.assert_allclose(got, want)


@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="Debian chromium not installed")
def test_report_screenshot_is_not_blank(
    qc_caches: tuple[Path, Path], synth_session: Any, tmp_path: Path
) -> None:
    from matplotlib.image import imread

    index, _ = _report(qc_caches[0], str(synth_session.session_id), tmp_path)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "/usr/bin/chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            index.as_uri(),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    img = imread(shot)
    assert img.std() > 0.01  # text, tables and figures, not a uniform page


def test_drift_map_colours_by_the_spike_amplitudes_component() -> None:
    """The drift map takes each spike's amplitude from the spike_amplitudes component (matched by
    unit_id): with one amplitude per unit, every filled bin holds that unit's amplitude."""
    pytest.importorskip("matplotlib")
    from npc_frames.qc import _fig_drift

    rng = np.random.default_rng(3)
    spikes = [np.sort(rng.uniform(0, 100, n)).tolist() for n in (400, 300, 200)]
    units = pl.DataFrame(
        {
            "unit_id": ["u0", "u1", "u2"],
            "electrode_group_name": ["probeA", "probeA", "probeA"],
            "default_qc": [True, True, False],
            "peak_channel": [10, 200, 300],
            "spike_times": spikes,
        }
    )
    amplitudes = pl.DataFrame(
        {
            "unit_id": ["u1", "u0", "u2"],  # another order: matched by unit_id
            "spike_amplitudes": [[9.0] * 300, [5.0] * 400, [7.0] * 200],
        }
    )
    image = np.asarray(_fig_drift(units, "probeA", amplitudes).axes[0].images[0].get_array())
    filled = image[np.isfinite(image)]
    assert set(np.unique(filled)) == {5.0, 9.0}  # u2 fails QC; u0 at channel 10 is 5, u1 is 9
    low = image[0]  # rows are depth bins (origin lower): the lowest holds channel 10 (u0) only
    assert set(np.unique(low[np.isfinite(low)])) == {5.0}
    without = np.asarray(_fig_drift(units, "probeA", None).axes[0].images[0].get_array())
    assert set(np.unique(without[np.isfinite(without)])) == {1.0}
