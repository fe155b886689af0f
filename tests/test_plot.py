"""Plots render to PNG files of sensible size (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("matplotlib")

from npc_frames import plot
from npc_frames.errors import CacheError, ParameterError


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _frames() -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(0)
    n = 120
    stim = 5.0 + np.arange(n) * 5.0
    names = rng.choice(["vis1", "vis2", "sound1", "sound2", "catch"], n)
    trials = pl.DataFrame(
        {
            "session_id": "s",
            "trial_index": np.arange(n),
            "stim_start_time": stim,
            "stim_name": names,
            "block_index": np.arange(n) // 20,
        }
    )
    licks = np.sort(np.concatenate([stim[::2] + 0.3, rng.uniform(0, stim[-1], 200)]))
    perf = pl.DataFrame(
        {
            "session_id": "s",
            "block_index": np.arange(6),
            "rewarded_modality": ["vis", "aud"] * 3,
            "hit_rate": rng.uniform(0.6, 1, 6),
            "false_alarm_rate": rng.uniform(0, 0.3, 6),
            "cross_modality_dprime": rng.uniform(0.5, 3, 6),
            "vis_dprime": rng.uniform(0, 3, 6),
            "aud_dprime": rng.uniform(0, 3, 6),
        }
    )
    t = np.arange(0, stim[-1], 1 / 60)
    speed = pl.DataFrame({"session_id": "s", "timestamps": t, "speed": 10 + 5 * np.sin(t / 7)})
    rewards = pl.DataFrame({"session_id": "s", "timestamps": stim[::3] + 0.4})
    return {
        "trials": trials,
        "performance": perf,
        "licks": pl.DataFrame({"session_id": "s", "timestamps": licks}),
        "running_speed": speed,
        "rewards": rewards,
    }


def test_session_summary_renders_png(tmp_path: Path) -> None:
    fig = plot.session_summary("s", frames=_frames())
    out = Path(plot.save(fig, tmp_path / "summary.png"))
    assert 20_000 < out.stat().st_size < 5_000_000
    assert _png_size(out) == (1320, 960)  # 11 x 8 in at 120 dpi
    # the lick raster shows one point per lick within the window of each trial
    scatter = fig.axes[2].collections[0]
    fr = _frames()
    stim, licks = fr["trials"]["stim_start_time"].to_numpy(), fr["licks"]["timestamps"].to_numpy()
    expected = sum(int(np.sum((licks >= s - 1) & (licks < s + 2))) for s in stim)
    assert len(scatter.get_offsets()) == expected


def test_raster_psth_renders_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    fr = _frames()
    spikes = np.sort(rng.uniform(0, 700, 5000))
    units = pl.DataFrame(
        {"session_id": ["s"], "unit_id": ["s_A-1"], "spike_times": [spikes.tolist()]}
    )
    fig = plot.raster_psth(units, fr["trials"], "s_A-1", by="stim_name")
    out = Path(plot.save(fig, tmp_path / "raster.png"))
    assert 10_000 < out.stat().st_size < 5_000_000
    stim = fr["trials"]["stim_start_time"].to_numpy()
    expected = sum(int(np.sum((spikes >= s - 0.5) & (spikes < s + 1.0))) for s in stim)
    assert len(fig.axes[0].collections[0].get_offsets()) == expected
    assert len(fig.axes[1].lines) == 5 + 1  # one PSTH per stimulus + the event line


def test_bad_inputs() -> None:
    fr = _frames()
    units = pl.DataFrame({"session_id": ["s"], "unit_id": ["s_A-1"], "spike_times": [[1.0]]})
    with pytest.raises(ParameterError):
        plot.raster_psth(units, fr["trials"], "nope")
    with pytest.raises(CacheError):
        plot.session_summary("s", frames={"trials": fr["trials"].clear()})
