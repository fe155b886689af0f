"""The pictures people look at: a unit's raster + PSTH, and a one-page session summary.

Needs the optional ``plot`` extra (matplotlib). Figures are built with the object-oriented API on
the Agg backend, so they render headless; ``save`` writes PNG.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from npc_frames import analysis
from npc_frames.errors import CacheError, ParameterError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["raster_psth", "save", "session_summary"]

_MODALITY_COLORS = {"vis": "tab:green", "aud": "tab:blue"}
# the same colour for a stimulus in every figure: visual greens, auditory blues, catch grey
_STIM_COLORS = {
    "vis1": "tab:green",
    "vis2": "tab:olive",
    "sound1": "tab:blue",
    "sound2": "tab:cyan",
    "catch": "tab:gray",
}


def _figure(**kwargs: Any) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "npc_frames.plot needs matplotlib: pip install 'npc-frames[plot]'"
        ) from exc
    return Figure(**kwargs)


def save(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 120) -> str:
    """Return the path the figure was written to (PNG unless the suffix says otherwise)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def raster_psth(
    units: pl.DataFrame | pl.LazyFrame,
    intervals: pl.DataFrame | pl.LazyFrame,
    unit_id: str,
    *,
    event: str = "stim_start_time",
    start: float = -0.5,
    stop: float = 1.0,
    bin_size: float = 0.025,
    by: str | None = "stim_name",
) -> Figure:
    """Return a figure with the unit's spike raster (trials sorted by `by`) above its PSTH
    (mean ± sem per group of `by`)."""
    u = units.lazy().filter(pl.col("unit_id") == unit_id)
    if u.select(pl.len()).collect().item() == 0:
        raise ParameterError(
            f"unit {unit_id!r} not in the units frame",
            field="unit_id",
            expected="a unit_id present in units",
        )
    session = u.select("session_id").collect().item(0, 0)
    iv = intervals.lazy().filter(pl.col("session_id") == session)
    groups = [by] if by else []
    aligned = analysis.aligned_spikes(u, iv, event=event, start=start, stop=stop)
    trials = iv.select(["trial_index", *groups]).collect()
    aligned = aligned.join(trials, on="trial_index", how="left")
    if by:
        aligned = aligned.sort([by, "trial_index"])
    rates = analysis.psth(u, iv, event=event, start=start, stop=stop, bin_size=bin_size, by=groups)

    fig = _figure(figsize=(6, 6), layout="constrained")
    ax_r, ax_p = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    lengths = aligned["spike_times"].list.len().to_numpy()
    xs = aligned["spike_times"].explode().drop_nulls().to_numpy()
    ys = np.repeat(np.arange(aligned.height), lengths)
    group_values = aligned[by].to_list() if by else [None] * aligned.height
    others = _cycle()
    palette = {g: _STIM_COLORS.get(str(g)) or next(others) for g in dict.fromkeys(group_values)}
    colors = [palette[g] for g in np.repeat(np.array(group_values, dtype=object), lengths)]
    ax_r.scatter(xs, ys, s=2, c=colors if len(colors) else None, marker="|", linewidths=0.8)
    ax_r.axvline(0, color="k", lw=0.5)
    ax_r.set_ylabel("trial")
    ax_r.set_title(f"{unit_id} aligned to {event}")
    curves = (
        [(k[0], f) for k, f in rates.group_by([by], maintain_order=True)]
        if by
        else [("all trials", rates)]
    )
    for label, frame in curves:
        x = frame["bin_start"].to_numpy() + bin_size / 2
        m = frame["rate_mean"].to_numpy()
        s = np.nan_to_num(frame["rate_sem"].to_numpy())
        color = palette.get(label, "k") if by else "k"
        ax_p.plot(x, m, color=color, label=f"{label} (n={frame['n_trials'][0]})")
        ax_p.fill_between(x, m - s, m + s, color=color, alpha=0.25, lw=0)
    ax_p.axvline(0, color="k", lw=0.5)
    ax_p.set_xlabel(f"time from {event} (s)")
    ax_p.set_ylabel("rate (spikes/s)")
    ax_p.legend(fontsize=7, frameon=False)
    return fig


def _cycle() -> Any:
    colors = ["tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:orange"]
    while True:
        yield from colors


def session_summary(
    session_id: str,
    *,
    cache: str | os.PathLike[str] | None = None,
    frames: dict[str, pl.DataFrame] | None = None,
    lick_window: tuple[float, float] = (-1.0, 2.0),
) -> Figure:
    """Return a one-page behavior summary of a session: per-block hit / false-alarm rates and
    d′, licks aligned to stimulus onset, running speed and reward times.

    Frames come from `frames` (component name -> frame) or the cache.
    """
    needed = ("trials", "performance", "licks", "running_speed", "rewards")
    if frames is None:
        from npc_frames import cache as cache_mod

        frames = {}
        for name in needed:
            df = (
                cache_mod.scan(name, cache=cache)
                .filter(pl.col("session_id") == str(session_id))
                .collect()
            )
            frames[name] = df
    if frames.get("trials") is None or frames["trials"].height == 0:
        raise CacheError(
            f"session {session_id!r} has no trials to summarise",
            path=cache,
            field="trials",
            expected="a converted task session",
        )
    trials, perf = frames["trials"], frames.get("performance", pl.DataFrame())
    licks = frames.get("licks", pl.DataFrame())
    speed, rewards = (
        frames.get("running_speed", pl.DataFrame()),
        frames.get("rewards", pl.DataFrame()),
    )

    fig = _figure(figsize=(11, 8), layout="constrained")
    fig.suptitle(f"{session_id}: {trials.height} trials")
    grid = fig.add_gridspec(3, 2, height_ratios=[1, 1.4, 1])
    ax_rates, ax_d = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    ax_lick = fig.add_subplot(grid[1, :])
    ax_run = fig.add_subplot(grid[2, :])

    if perf.height:
        blocks = perf["block_index"].to_numpy()
        colors = [_MODALITY_COLORS.get(m, "gray") for m in perf["rewarded_modality"].to_list()]
        ax_rates.bar(
            blocks - 0.2,
            perf["hit_rate"].fill_null(np.nan).to_numpy(),
            0.4,
            color=colors,
            label="hit rate",
        )
        ax_rates.bar(
            blocks + 0.2,
            perf["false_alarm_rate"].fill_null(np.nan).to_numpy(),
            0.4,
            color=colors,
            alpha=0.4,
            label="false-alarm rate",
        )
        ax_rates.set_ylim(0, 1)
        ax_rates.set_xlabel("block (color: rewarded modality; green vis, blue aud)")
        ax_rates.legend(fontsize=7, frameon=False)
        for col, style in (
            ("cross_modality_dprime", "-o"),
            ("vis_dprime", "--"),
            ("aud_dprime", ":"),
        ):
            if col in perf.columns:
                ax_d.plot(blocks, perf[col].fill_null(np.nan).to_numpy(), style, label=col)
        ax_d.axhline(1.0, color="k", lw=0.5)
        ax_d.set_xlabel("block")
        ax_d.set_ylabel("d′")
        ax_d.legend(fontsize=7, frameon=False)

    if licks.height and "stim_start_time" in trials.columns:
        lick_times = np.sort(licks["timestamps"].to_numpy())
        stim = trials["stim_start_time"].fill_null(np.nan).to_numpy()
        lo = np.searchsorted(lick_times, stim + lick_window[0])
        hi = np.searchsorted(lick_times, stim + lick_window[1])
        n = np.where(np.isfinite(stim), hi - lo, 0)
        row = np.repeat(np.arange(stim.size), n)
        idx = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
        rel = lick_times[idx] - stim[row] if idx.size else np.array([])
        stim_names = np.array(trials["stim_name"].to_list(), dtype=object)
        palette = _STIM_COLORS
        ax_lick.scatter(rel, row, s=3, marker="|", c=[palette.get(s, "k") for s in stim_names[row]])
        window = (0.1, 1.0)  # response window: frames [6, 60) after stimulus onset at 60 Hz
        if {"response_window_start_time", "response_window_stop_time"} <= set(trials.columns):
            window = (
                float(
                    np.nanmedian(
                        trials["response_window_start_time"].fill_null(np.nan).to_numpy() - stim
                    )
                ),
                float(
                    np.nanmedian(
                        trials["response_window_stop_time"].fill_null(np.nan).to_numpy() - stim
                    )
                ),
            )
        ax_lick.axvspan(*window, color="0.9", zorder=-1, label="response window")
        ax_lick.set_xlim(*lick_window)
        ax_lick.set_xlabel("time from stimulus onset (s); colour: stimulus")
        ax_lick.set_ylabel("trial")
        ax_lick.set_title("licks aligned to stimulus", fontsize=9)

    if speed.height:
        t, v = speed["timestamps"].to_numpy(), speed["speed"].to_numpy()
        step = max(1, t.size // 20000)
        t, v = t[::step], v[::step].astype(np.float64)
        gaps = np.flatnonzero(np.diff(t) > 1.0) + 1  # between stim scripts: no samples, no line
        ax_run.plot(np.insert(t, gaps, np.nan), np.insert(v, gaps, np.nan), lw=0.5, color="k")
    if rewards.height:
        ax_run.vlines(
            rewards["timestamps"].to_numpy(),
            0,
            1,
            transform=ax_run.get_xaxis_transform(),
            color="tab:red",
            lw=0.5,
            label="reward",
        )
        ax_run.legend(fontsize=7, frameon=False, loc="upper right")
    ax_run.set_xlabel("time (s, sync clock)")
    ax_run.set_ylabel("running speed (cm/s)")
    return fig


def qc_report(
    session_id: object,
    cache: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "qc",
) -> Any:
    """Return the path of the session's QC report index.html (see :func:`npc_frames.qc.qc_report`)."""
    from npc_frames.qc import qc_report as _qc_report

    return _qc_report(session_id, cache, out_dir)
