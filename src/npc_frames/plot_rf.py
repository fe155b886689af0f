"""Receptive-field figures: one unit's map (:func:`rf_map`) and a probe-wide grid (:func:`rf_grid`).

Both read the ``vis_rf_maps`` frame (:mod:`npc_frames.rf_maps`) — pass it, or a cache to read it
from — and are re-exported by :mod:`npc_frames.plot`.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from npc_frames.errors import ParameterError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["rf_grid", "rf_map"]


def _figure(**kwargs: Any) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "npc_frames.plot needs matplotlib: pip install 'npc-frames[plot]'"
        ) from exc
    return Figure(**kwargs)


def _maps(maps: pl.DataFrame | None, cache: str | os.PathLike[str] | None) -> pl.DataFrame:
    if maps is not None:
        return maps
    from npc_frames.rf_maps import scan_vis_rf_maps

    return scan_vis_rf_maps(cache).collect()


def _draw(ax: Axes, row: dict[str, Any], *, title: str, vmax: float | None = None) -> Any:
    gx, gy = np.asarray(row["grid_x"]), np.asarray(row["grid_y"])
    grid = np.asarray(row["rate_map"], dtype=float).reshape(gy.size, gx.size)
    dx = np.diff(gx).min() / 2 if gx.size > 1 else 1.0
    dy = np.diff(gy).min() / 2 if gy.size > 1 else 1.0
    im = ax.imshow(
        grid,
        origin="lower",
        extent=(gx[0] - dx, gx[-1] + dx, gy[0] - dy, gy[-1] + dy),
        cmap="magma",
        vmin=0,
        vmax=vmax,
        aspect="equal",
    )
    if row.get("rf_x") is not None and row.get("is_significant"):
        from matplotlib.patches import Circle

        ax.add_patch(
            Circle((row["rf_x"], row["rf_y"]), row["rf_sigma"], fill=False, color="cyan", lw=1)
        )
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def rf_map(
    unit_id: str,
    *,
    maps: pl.DataFrame | None = None,
    cache: str | os.PathLike[str] | None = None,
) -> Figure:
    """Return a figure of one unit's visual RF map: mean rate per grating position (task pixels
    from screen centre) with the fitted Gaussian's 1-σ circle when the map is significant."""
    df = _maps(maps, cache).filter(pl.col("unit_id") == unit_id)
    if df.is_empty():
        raise ParameterError(
            f"no vis_rf_maps row for unit {unit_id!r}", field="unit_id", expected="a mapped unit"
        )
    row = df.row(0, named=True)
    fig = _figure(figsize=(4, 3), layout="constrained")
    ax = fig.add_subplot()
    title = f"{unit_id}  p={row['p_value']:.3g}"
    im = _draw(ax, row, title=title)
    gx, gy = np.asarray(row["grid_x"]), np.asarray(row["grid_y"])
    ax.set_xticks(gx, [f"{v:.0f}" for v in gx], fontsize=6)
    ax.set_yticks(gy, [f"{v:.0f}" for v in gy], fontsize=6)
    ax.set_xlabel("grating x (px)")
    ax.set_ylabel("grating y (px)")
    fig.colorbar(im, ax=ax, label="rate (Hz)")
    return fig


def rf_grid(
    session_id: str,
    *,
    maps: pl.DataFrame | None = None,
    cache: str | os.PathLike[str] | None = None,
    probe: str | None = None,
    significant_only: bool = True,
    max_units: int = 100,
) -> Figure:
    """Return a probe-wide grid of visual RF maps of one session (units in id order; at most
    `max_units`; only significant maps unless `significant_only` is False; `probe` a letter)."""
    df = _maps(maps, cache).filter(pl.col("session_id") == session_id)
    if probe is not None:
        df = df.filter(pl.col("unit_id").str.contains(f"_{probe}-", literal=True))
    if significant_only:
        df = df.filter(pl.col("is_significant"))
    df = df.sort("unit_id").head(max_units)
    if df.is_empty():
        raise ParameterError(
            f"no RF maps to draw for {session_id!r} (probe={probe!r})",
            field="session_id",
            expected="a session with vis_rf_maps rows",
        )
    n = df.height
    cols = int(np.ceil(np.sqrt(n * 1.5)))
    rows = int(np.ceil(n / cols))
    fig = _figure(figsize=(1.4 * cols, 1.1 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, row in zip(axes.ravel(), df.iter_rows(named=True), strict=False):
        _draw(ax, row, title=str(row["unit_id"]).rsplit("_", 1)[-1])
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    fig.suptitle(f"{session_id} visual RF maps ({n} units)", fontsize=9)
    return fig
