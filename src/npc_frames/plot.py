"""The pictures people look at: a unit's raster + PSTH, and a one-page session summary.

Needs the optional ``plot`` extra (matplotlib). Figures are built with the object-oriented API on
the Agg backend, so they render headless; ``save`` writes PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from npc_frames import analysis
from npc_frames.errors import CacheError, ParameterError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

import logging

from npc_frames.plot_rf import rf_grid, rf_map

logger = logging.getLogger(__name__)

__all__ = ["group_colors", "raster_psth", "rf_grid", "rf_map", "save", "session_summary"]

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
    by: str | Sequence[str] | None = "stim_name",
) -> Figure:
    """Return a figure with the unit's spike raster above its PSTH (mean ± sem per group).

    Trials are grouped by the interval columns `by` (one name, several, or None). Groups appear in
    sorted order of their values, the same in every run: in the raster as labelled blocks
    separated by lines (labels on the y axis), in the PSTH as one labelled curve each, in the
    same colour (a stimulus has the same colour in every figure of this module).

    Raises ParameterError naming the column when `event` or a `by` column is not in `intervals`.
    """
    groups = [by] if isinstance(by, str) else list(by or [])
    iv_all = intervals.lazy()
    available = iv_all.collect_schema().names()
    unknown = [c for c in [event, *groups] if c not in available]
    if unknown:
        import difflib

        close = [m for c in unknown for m in difflib.get_close_matches(c, available, n=3)]
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ParameterError(
            f"column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} not in the "
            f"intervals frame; {hint}it has {len(available)} columns",
            field=", ".join(unknown),
            expected="intervals columns, e.g. " + ", ".join(available[:8]) + ", …",
        )
    u = units.lazy().filter(pl.col("unit_id") == unit_id)
    if u.select(pl.len()).collect().item() == 0:
        raise ParameterError(
            f"unit {unit_id!r} not in the units frame",
            field="unit_id",
            expected="a unit_id present in units",
        )
    session = u.select("session_id").collect().item(0, 0)
    iv = iv_all.filter(pl.col("session_id") == session)
    aligned = analysis.aligned_spikes(u, iv, event=event, start=start, stop=stop)
    trials = iv.select(["trial_index", *groups]).collect()
    aligned = aligned.join(trials, on="trial_index", how="left")
    label = _group_label(groups)
    aligned = aligned.with_columns(label.alias("_group")).sort(
        [*groups, "trial_index"], nulls_last=True
    )
    rates = analysis.psth(u, iv, event=event, start=start, stop=stop, bin_size=bin_size, by=groups)
    rates = rates.with_columns(label.alias("_group")).sort([*groups, "bin_start"], nulls_last=True)
    order = list(dict.fromkeys(aligned["_group"].to_list()))  # sorted by the group values
    palette = group_colors(order)

    fig = _figure(figsize=(6, 6), layout="constrained")
    ax_r, ax_p = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    lengths = aligned["spike_times"].list.len().to_numpy()
    xs = aligned["spike_times"].explode().drop_nulls().to_numpy()
    ys = np.repeat(np.arange(aligned.height), lengths)
    trial_group = np.array(aligned["_group"].to_list(), dtype=object)
    colors = [palette[g] for g in np.repeat(trial_group, lengths)]
    ax_r.scatter(xs, ys, s=2, c=colors if len(colors) else None, marker="|", linewidths=0.8)
    ax_r.axvline(0, color="k", lw=0.5)
    if groups:
        # one block of rows per group: a separator line between blocks, the label at its middle
        bounds = np.flatnonzero(trial_group[1:] != trial_group[:-1]) + 1
        edges = np.concatenate([[0], bounds, [len(trial_group)]])
        for y in bounds:
            ax_r.axhline(y - 0.5, color="0.5", lw=0.6, ls="--")
        ax_r.set_yticks((edges[:-1] + edges[1:] - 1) / 2, [str(g) for g in order], fontsize=7)
        for tick, g in zip(ax_r.get_yticklabels(), order, strict=True):
            tick.set_color(palette[g])
        ax_r.set_ylabel(f"trials by {', '.join(groups)}")
    else:
        ax_r.set_ylabel("trial")
    ax_r.set_ylim(len(trial_group) - 0.5, -0.5)
    ax_r.set_title(f"{unit_id} aligned to {event}", fontsize=9)
    for g, frame in rates.group_by("_group", maintain_order=True):
        name = g[0]
        x = frame["bin_start"].to_numpy() + bin_size / 2
        m = frame["rate_mean"].to_numpy()
        sem = np.nan_to_num(frame["rate_sem"].to_numpy())
        color = palette.get(name, "k")
        ax_p.plot(x, m, color=color, label=f"{name} (n={frame['n_trials'][0]})")
        ax_p.fill_between(x, m - sem, m + sem, color=color, alpha=0.25, lw=0)
    ax_p.axvline(0, color="k", lw=0.5)
    ax_p.set_xlabel(f"time from {event} (s)")
    ax_p.set_ylabel("rate (spikes/s)")
    ax_p.legend(fontsize=7, frameon=False)
    return fig


def _group_label(groups: list[str]) -> pl.Expr:
    """Return the expression of a trial's group label: the value, or ``a=x, b=y`` for several."""
    if not groups:
        return pl.lit("all trials")
    if len(groups) == 1:
        return pl.col(groups[0]).cast(pl.String).fill_null("null")
    return pl.concat_str(
        [
            pl.concat_str(pl.lit(f"{g}="), pl.col(g).cast(pl.String).fill_null("null"))
            for g in groups
        ],
        separator=", ",
    )


def group_colors(labels: Sequence[str]) -> dict[str, str]:
    """Return a colour per group label: the stimulus colour when the label is a stimulus name
    (the same in every figure), else the next colour of a fixed cycle, in the given order."""
    others = _cycle()
    return {g: _STIM_COLORS.get(str(g)) or next(others) for g in labels}


def _cycle() -> Any:
    # distinct from the stimulus colours, so a grouped figure never reuses one for two groups
    # until these ten are exhausted
    colors = [
        "tab:red",
        "tab:purple",
        "tab:brown",
        "tab:pink",
        "tab:orange",
        "navy",
        "darkgoldenrod",
        "teal",
        "black",
        "orchid",
    ]
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
        _rates_panel(ax_rates, perf)
        _dprime_panel(ax_d, perf)

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
        shown = sorted(set(stim_names[row].tolist()), key=str)
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
        span = ax_lick.axvspan(*window, color="0.9", zorder=-1, label="response window")
        ax_lick.set_xlim(*lick_window)
        ax_lick.set_xlabel("time from stimulus onset (s); colour: stimulus")
        ax_lick.set_ylabel("trial")
        ax_lick.set_title("licks aligned to stimulus", fontsize=9)
        from matplotlib.lines import Line2D

        handles = [span] + [
            Line2D([], [], color=palette.get(n, "k"), marker="|", ls="", markersize=8, label=n)
            for n in shown
        ]
        ax_lick.legend(
            handles=handles, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1, 1)
        )

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


#: d′ lines: column -> (colour, line style, marker); the modality colours of the rates panel
_DPRIME_STYLES = {
    "cross_modality_dprime": ("k", "-", "o"),
    "vis_dprime": (_MODALITY_COLORS["vis"], "--", "s"),
    "aud_dprime": (_MODALITY_COLORS["aud"], ":", "^"),
}


def _rates_panel(ax: Any, perf: pl.DataFrame) -> None:
    """Draw hit (solid) and false-alarm (light) rates per block, coloured by rewarded modality,
    with one legend entry per colour and rate."""
    from matplotlib.patches import Patch

    blocks = perf["block_index"].to_numpy()
    modality = perf["rewarded_modality"].cast(pl.String).fill_null("?").to_list()
    colors = [_MODALITY_COLORS.get(m, "gray") for m in modality]
    hits = perf["hit_rate"].fill_null(np.nan).to_numpy()
    fas = perf["false_alarm_rate"].fill_null(np.nan).to_numpy()
    ax.bar(blocks - 0.2, hits, 0.4, color=colors)
    ax.bar(blocks + 0.2, fas, 0.4, color=colors, alpha=0.4)
    handles = []
    for m in sorted(set(modality)):
        c = _MODALITY_COLORS.get(m, "gray")
        handles.append(Patch(color=c, label=f"hit rate, {m} rewarded"))
        handles.append(Patch(color=c, alpha=0.4, label=f"false-alarm rate, {m} rewarded"))
    ax.set_ylim(0, 1.5)  # the legend sits above the bars
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xticks(blocks)
    ax.set_xlabel("block")
    ax.set_ylabel("response rate")
    ax.legend(handles=handles, fontsize=7, frameon=False, ncol=2, loc="upper center")


def _dprime_panel(ax: Any, perf: pl.DataFrame) -> None:
    """Draw d′ per block with markers (a block between two missing values stays visible) and
    the labelled d′ = 1 line."""
    blocks = perf["block_index"].to_numpy()
    for col, (color, style, marker) in _DPRIME_STYLES.items():
        if col in perf.columns:
            ax.plot(
                blocks,
                perf[col].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                color=color,
                ls=style,
                marker=marker,
                markersize=5,
                label=col.removesuffix("_dprime").replace("_", "-") + " d′",
            )
    ax.axhline(1.0, color="0.4", lw=0.8, ls="-.", label="d′ = 1")
    ax.set_xticks(blocks)
    ax.set_xlabel("block")
    ax.set_ylabel("d′")
    ax.legend(fontsize=7, frameon=False)


def qc_report(
    session_id: object,
    cache: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "qc",
) -> Any:
    """Return the path of the session's QC report index.html (see :func:`npc_frames.qc.qc_report`)."""
    from npc_frames.qc import qc_report as _qc_report

    return _qc_report(session_id, cache, out_dir)
