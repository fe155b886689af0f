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


# ------------------------------------------------------------------ artists: legends, markers
def _legend_texts(ax: object) -> list[str]:
    legend = ax.get_legend()  # type: ignore[attr-defined]
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_rates_legend_has_an_entry_per_colour_and_rate() -> None:
    from matplotlib.colors import to_rgba

    fig = plot.session_summary("s", frames=_frames())
    ax_rates = fig.axes[0]
    assert _legend_texts(ax_rates) == [
        "hit rate, aud rewarded",
        "false-alarm rate, aud rewarded",
        "hit rate, vis rewarded",
        "false-alarm rate, vis rewarded",
    ]
    handles = ax_rates.get_legend().legend_handles
    # each entry has the colour (and alpha) of its bars: blue aud, green vis; false alarms light
    assert [to_rgba(h.get_facecolor())[:3] for h in handles] == [
        to_rgba("tab:blue")[:3],
        to_rgba("tab:blue")[:3],
        to_rgba("tab:green")[:3],
        to_rgba("tab:green")[:3],
    ]
    assert [h.get_alpha() for h in handles] == [None, 0.4, None, 0.4]
    # block 0 is vis-rewarded: its hit bar is green, block 1 aud: blue
    bars = ax_rates.patches
    assert to_rgba(bars[0].get_facecolor())[:3] == to_rgba("tab:green")[:3]
    assert to_rgba(bars[1].get_facecolor())[:3] == to_rgba("tab:blue")[:3]


def test_dprime_lines_have_markers_so_isolated_blocks_show() -> None:
    fr = _frames()
    # block 2 is the only block with a visual d′: a line alone would draw nothing there
    fr["performance"] = fr["performance"].with_columns(
        vis_dprime=pl.Series([None, None, 1.7, None, None, None], dtype=pl.Float64)
    )
    fig = plot.session_summary("s", frames=fr)
    ax_d = fig.axes[1]
    lines = {ln.get_label(): ln for ln in ax_d.get_lines()}
    assert set(lines) == {"cross-modality d′", "vis d′", "aud d′", "d′ = 1"}
    for name in ("cross-modality d′", "vis d′", "aud d′"):
        assert lines[name].get_marker() not in ("None", "", " ", None), name
    y = np.asarray(lines["vis d′"].get_ydata(), dtype=float)
    assert np.isfinite(y).sum() == 1 and y[2] == 1.7
    # the d′ = 1 line is labelled in the legend, and the modality colours match the rates panel
    assert "d′ = 1" in _legend_texts(ax_d)
    assert list(lines["d′ = 1"].get_ydata()) == [1.0, 1.0]
    assert lines["vis d′"].get_color() == "tab:green"
    assert lines["aud d′"].get_color() == "tab:blue"


def test_lick_raster_labels_the_response_window_and_each_stimulus_colour() -> None:
    from matplotlib.colors import to_rgba

    fig = plot.session_summary("s", frames=_frames())
    ax_lick = fig.axes[2]
    texts = _legend_texts(ax_lick)
    assert texts == ["response window", "catch", "sound1", "sound2", "vis1", "vis2"]
    handles = ax_lick.get_legend().legend_handles
    for text, handle in zip(texts[1:], handles[1:], strict=True):
        assert handle.get_color() == plot._STIM_COLORS[text]
    # the points of vis1 trials are drawn in vis1's legend colour
    fr = _frames()
    offsets = ax_lick.collections[0].get_offsets()
    colours = ax_lick.collections[0].get_facecolors()
    names = fr["trials"]["stim_name"].to_numpy()
    rows = np.asarray(offsets[:, 1], dtype=int)
    vis1 = names[rows] == "vis1"
    assert vis1.any()
    assert np.allclose(colours[vis1][:, :3], to_rgba("tab:green")[:3])


def _raster(trials: pl.DataFrame, by: object = "stim_name") -> object:
    rng = np.random.default_rng(1)
    spikes = np.sort(rng.uniform(0, 700, 5000))
    units = pl.DataFrame(
        {"session_id": ["s"], "unit_id": ["s_A-1"], "spike_times": [spikes.tolist()]}
    )
    return plot.raster_psth(units, trials, "s_A-1", by=by)  # type: ignore[arg-type]


def test_raster_groups_are_sorted_labelled_and_separated() -> None:
    trials = _frames()["trials"]
    fig = _raster(trials)
    ax_r, ax_p = fig.axes[:2]  # type: ignore[attr-defined]
    names = sorted(set(trials["stim_name"].to_list()))
    assert [t.get_text() for t in ax_r.get_yticklabels()] == names
    # tick at the middle of each block of rows: blocks follow the sorted group sizes
    sizes = trials.group_by("stim_name").len().sort("stim_name")["len"].to_numpy()
    edges = np.concatenate([[0], np.cumsum(sizes)])
    np.testing.assert_allclose(ax_r.get_yticks(), (edges[:-1] + edges[1:] - 1) / 2)
    separators = [ln for ln in ax_r.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(ln.get_ydata()[0] for ln in separators) == list(edges[1:-1] - 0.5)
    assert [t.split(" (n=")[0] for t in _legend_texts(ax_p)] == names
    for text, line in zip(_legend_texts(ax_p), ax_p.get_lines(), strict=False):
        assert line.get_color() == plot._STIM_COLORS[text.split(" (n=")[0]]


def test_raster_group_order_is_stable_between_runs() -> None:
    trials = _frames()["trials"]
    shuffled = trials.sample(fraction=1.0, shuffle=True, seed=7)
    orders = []
    for t in (trials, shuffled, trials.reverse()):
        fig = _raster(t, by=["stim_name", "block_index"])
        orders.append([x.get_text() for x in fig.axes[0].get_yticklabels()])  # type: ignore[attr-defined]
    assert orders[0] == orders[1] == orders[2]
    assert orders[0][0] == "stim_name=catch, block_index=0"
    assert len(orders[0]) == trials.select("stim_name", "block_index").n_unique()


def test_raster_unknown_group_column_is_a_parameter_error_naming_it() -> None:
    with pytest.raises(ParameterError, match=r"'stim_nam'.*did you mean stim_name") as info:
        _raster(_frames()["trials"], by=["stim_nam", "block_index"])
    assert info.value.field == "stim_nam"
