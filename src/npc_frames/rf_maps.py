"""Receptive-field maps: ``vis_rf_maps`` (grating position) and ``aud_rf_maps`` (tone frequency).

Both are derived components (:mod:`npc_frames.derived`) computed from a session's cached ``units``
and ``vis_rf_mapping`` / ``aud_rf_mapping`` tables. Per unit they hold the mean response-window
rate per stimulus condition as list columns, a significance test of the map's structure against
a shuffled-condition null and, for visual maps, a fitted 2-D Gaussian. Counting is
:func:`npc_frames.spike_counts`; maps, shuffles and fits are matrix products over all units at
once (``docs/analysis.md``, "Receptive-field maps").
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import sparse

from npc_frames.errors import ParameterError
from npc_frames.responses import _session_of

logger = logging.getLogger(__name__)

__all__ = [
    "AUD_RF_MAPS_SCHEMA",
    "VIS_RF_MAPS_SCHEMA",
    "aud_rf_maps",
    "compute_aud_rf_maps",
    "compute_vis_rf_maps",
    "condition_maps",
    "fit_gaussian_2d",
    "scan_aud_rf_maps",
    "scan_vis_rf_maps",
    "vis_rf_maps",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: response window (s from onset): RF-mapping stimuli last 250 ms, and responses of mouse visual
#: and auditory cortex to them fall within it
RESPONSE_WINDOW = (0.0, 0.25)
#: shuffles of the condition labels for the null distribution of the map's spatial variance
N_SHUFFLES = 200
#: significance level of ``is_significant``
ALPHA = 0.01

_COMMON: dict[str, pl.DataType] = {
    "session_id": pl.String(),
    "unit_id": pl.String(),
    "n_trials": pl.List(pl.Int64()),  # trials per condition (same order as the map)
    "rate_map": pl.List(pl.Float64()),  # mean response-window rate per condition (Hz)
    "p_value": pl.Float64(),  # fraction of shuffles whose map variance is ≥ the observed one
    "is_significant": pl.Boolean(),  # p_value < ALPHA
    "n_shuffles": pl.Int64(),
}
VIS_RF_MAPS_SCHEMA: dict[str, pl.DataType] = {
    **_COMMON,
    # grid of grating centres (task pixels from screen centre); rate_map is row-major over
    # (grid_y, grid_x): index = iy * len(grid_x) + ix
    "grid_x": pl.List(pl.Float64()),
    "grid_y": pl.List(pl.Float64()),
    "rf_x": pl.Float64(),  # fitted Gaussian centre (px)
    "rf_y": pl.Float64(),
    "rf_sigma": pl.Float64(),  # fitted Gaussian σ (px)
    "rf_amplitude_hz": pl.Float64(),  # peak rate above the fitted offset
    "rf_offset_hz": pl.Float64(),
    "r_squared": pl.Float64(),  # goodness of fit: 1 − SSE / SST of the map
}
AUD_RF_MAPS_SCHEMA: dict[str, pl.DataType] = {
    **_COMMON,
    "freq": pl.List(pl.Float64()),  # tone frequencies (Hz), the map's conditions (one level)
    "best_freq_hz": pl.Float64(),  # frequency of the highest mean rate
}


# ---------------------------------------------------------------------------- computations
def condition_maps(
    counts: FloatArray,
    condition: IntArray,
    n_conditions: int,
    *,
    n_shuffles: int = N_SHUFFLES,
    seed: int = 0,
) -> tuple[FloatArray, IntArray, FloatArray]:
    """Return (mean count per unit × condition, trials per condition, shuffle p-value per unit).

    `counts` is (units, trials), `condition` the condition index of each trial. The statistic is
    the variance of a unit's condition means; its null comes from `n_shuffles` permutations of
    the condition labels, shared by all units and evaluated as one sparse product per chunk of
    shuffles. p = (1 + #(null ≥ observed)) / (1 + n_shuffles).
    """
    n_u, n_t = counts.shape
    if condition.shape != (n_t,) or (
        n_t and not 0 <= condition.min() <= condition.max() < n_conditions
    ):
        raise ParameterError(
            "condition indices do not match the trials",
            field="condition",
            expected=f"{n_t} indices in [0, {n_conditions})",
        )
    n_per = np.bincount(condition, minlength=n_conditions).astype(np.int64)
    inv = np.where(n_per > 0, 1.0 / np.maximum(n_per, 1), 0.0)

    def means(labels: IntArray) -> FloatArray:  # (k, trials) labels -> (units, k, conditions)
        k = labels.shape[0]
        cols = (np.arange(k)[:, None] * n_conditions + labels).ravel()
        rows = np.tile(np.arange(n_t), k)
        onehot = sparse.csr_matrix(
            (np.ones(rows.size), (rows, cols)), shape=(n_t, k * n_conditions)
        )
        out = np.asarray((onehot.T @ counts.T).T).reshape(n_u, k, n_conditions)
        return out * inv

    observed = means(condition[None, :])[:, 0, :]
    present = n_per > 0
    stat = observed[:, present].var(axis=1)
    rng = np.random.default_rng(seed)
    exceed = np.zeros(n_u, dtype=np.int64)
    chunk = max(1, min(n_shuffles, 2_000_000 // max(n_u * n_conditions, 1)))
    done = 0
    while done < n_shuffles:
        k = min(chunk, n_shuffles - done)
        labels = np.argsort(rng.uniform(size=(k, n_t)), axis=1)
        null = means(condition[labels])[:, :, present].var(axis=2)
        exceed += (null >= stat[:, None] - 1e-12).sum(axis=1)
        done += k
    p = (1 + exceed) / (1 + n_shuffles) if n_shuffles else np.full(n_u, np.nan)
    return observed, n_per, p


def fit_gaussian_2d(
    maps: FloatArray, x: FloatArray, y: FloatArray, *, n_grid: int = 25, n_sigma: int = 10
) -> dict[str, FloatArray]:
    """Return per unit the best isotropic 2-D Gaussian ``offset + amp·exp(-d²/2σ²)`` fitted to
    `maps` (units × points at coordinates `x`, `y`) in the least-squares sense.

    Centres on an `n_grid`-point lattice over the points' extent and σ on `n_sigma` log-spaced
    values from a quarter of the smallest to twice the largest grid spacing are tried for all
    units at once; for each candidate the offset and amplitude have a closed form (linear
    regression on the Gaussian), so the search is one matrix product. Only amp > 0 is accepted.
    Keys: ``x, y, sigma, amplitude, offset, r_squared`` (NaN for a flat map).
    """
    n_u = maps.shape[0]
    ux, uy = np.unique(x), np.unique(y)
    step = min(np.diff(ux).min(initial=np.inf), np.diff(uy).min(initial=np.inf))
    step = step if np.isfinite(step) else 1.0
    span = max(np.ptp(x), np.ptp(y), step)
    cx = np.linspace(x.min(), x.max(), n_grid)
    cy = np.linspace(y.min(), y.max(), max(3, round(n_grid * np.ptp(y) / max(np.ptp(x), 1e-9))))
    sig = np.geomspace(step / 4, 2 * span, n_sigma)
    mx, my, ms = np.meshgrid(cx, cy, sig, indexing="ij")
    gx, gy, gs = mx.ravel(), my.ravel(), ms.ravel()
    d2 = (x[None, :] - gx[:, None]) ** 2 + (y[None, :] - gy[:, None]) ** 2
    g = np.exp(-d2 / (2 * gs[:, None] ** 2))  # (candidates, points)
    gc = g - g.mean(axis=1, keepdims=True)
    g_var = (gc**2).sum(axis=1)  # (candidates,)
    mc = maps - maps.mean(axis=1, keepdims=True)
    sst = (mc**2).sum(axis=1)
    cov = mc @ gc.T  # (units, candidates)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(g_var > 1e-12, cov**2 / g_var, -np.inf)
    gain = np.where(cov > 0, gain, -np.inf)
    best = np.argmax(gain, axis=1)
    ok = np.isfinite(gain[np.arange(n_u), best]) & (sst > 0)
    amp = cov[np.arange(n_u), best] / np.where(g_var[best] > 0, g_var[best], 1.0)
    offset = maps.mean(axis=1) - amp * g[best].mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = gain[np.arange(n_u), best] / sst

    def nan_where_bad(v: FloatArray) -> FloatArray:
        return np.where(ok, v, np.nan)

    return {
        "x": nan_where_bad(gx[best]),
        "y": nan_where_bad(gy[best]),
        "sigma": nan_where_bad(gs[best]),
        "amplitude": nan_where_bad(amp),
        "offset": nan_where_bad(offset),
        "r_squared": nan_where_bad(r2),
    }


def _counts(
    units: pl.DataFrame | pl.LazyFrame, trials: pl.DataFrame, window: tuple[float, float]
) -> tuple[list[str], FloatArray]:
    """Return (unit ids, (units, trials) counts; NaN outside observation intervals → 0 trials)."""
    from npc_frames.analysis import session_count_arrays
    from npc_frames.responses import _columns_of

    ids, order, counts, valid = session_count_arrays(
        units,
        trials,
        windows={"response": ("stim_start_time", *window)},
        index="trial_index",
    )
    cols = _columns_of(order, trials["trial_index"].cast(pl.Int64).to_numpy())
    # a count outside the unit's observation intervals is unknown: 0 here, which only lowers
    # that unit's rates uniformly (synthetic and real units are observed throughout RF mapping)
    arr = np.where(valid[0][:, cols], counts[0][:, cols], 0).astype(np.float64)
    return ids, arr


def _list_column(name: str, values: npt.NDArray[np.generic], dtype: pl.DataType) -> pl.Series:
    """Return a list column whose row i is ``values[i]`` (a 2-D array), built from the array
    (a fixed-width Array column cast to List), never through Python lists."""
    return pl.Series(name, np.ascontiguousarray(values)).cast(dtype)


def compute_vis_rf_maps(
    units: pl.DataFrame | pl.LazyFrame,
    tables: Mapping[str, pl.DataFrame | None],
    *,
    window: tuple[float, float] = RESPONSE_WINDOW,
    n_shuffles: int = N_SHUFFLES,
    seed: int = 0,
) -> pl.DataFrame:
    """Return the ``vis_rf_maps`` frame (:data:`VIS_RF_MAPS_SCHEMA`) of one session.

    Uses the small-field grating trials of ``tables["vis_rf_mapping"]`` (all orientations
    pooled); one row per unit. Empty when the session has no grating trials.
    """
    table = tables.get("vis_rf_mapping")
    sid = _session_of(units)
    if table is None or table.is_empty() or sid is None:
        return pl.DataFrame(schema=VIS_RF_MAPS_SCHEMA)
    trials = table.filter(
        pl.col("is_small_field_grating").fill_null(False),
        pl.col("stim_start_time").is_not_nan(),
        pl.col("grating_x").is_not_null(),
    )
    if trials.is_empty():
        return pl.DataFrame(schema=VIS_RF_MAPS_SCHEMA)
    gx = np.unique(trials["grating_x"].to_numpy())
    gy = np.unique(trials["grating_y"].to_numpy())
    ix = np.searchsorted(gx, trials["grating_x"].to_numpy())
    iy = np.searchsorted(gy, trials["grating_y"].to_numpy())
    cond = (iy * gx.size + ix).astype(np.int64)
    ids, counts = _counts(units, trials, window)
    width = window[1] - window[0]
    mean, n_per, p = condition_maps(
        counts, cond, gx.size * gy.size, n_shuffles=n_shuffles, seed=seed
    )
    rates = mean / width
    px, py = np.meshgrid(gx, gy)  # row-major over (y, x)
    present = n_per > 0
    fit = fit_gaussian_2d(rates[:, present], px.ravel()[present], py.ravel()[present])
    n_u = len(ids)
    df = pl.DataFrame(
        [
            pl.Series("session_id", [sid] * n_u, dtype=pl.String),
            pl.Series("unit_id", ids, dtype=pl.String),
            _list_column("n_trials", np.tile(n_per, (n_u, 1)), pl.List(pl.Int64)),
            _list_column("rate_map", rates, pl.List(pl.Float64)),
            pl.Series("p_value", p),
            pl.Series("is_significant", p < ALPHA),
            pl.Series("n_shuffles", np.full(n_u, n_shuffles, dtype=np.int64)),
            _list_column("grid_x", np.tile(gx, (n_u, 1)), pl.List(pl.Float64)),
            _list_column("grid_y", np.tile(gy, (n_u, 1)), pl.List(pl.Float64)),
            pl.Series("rf_x", fit["x"]),
            pl.Series("rf_y", fit["y"]),
            pl.Series("rf_sigma", fit["sigma"]),
            pl.Series("rf_amplitude_hz", fit["amplitude"]),
            pl.Series("rf_offset_hz", fit["offset"]),
            pl.Series("r_squared", fit["r_squared"]),
        ]
    )
    return df.with_columns(pl.col(pl.Float64).fill_nan(None)).select(
        pl.col(c).cast(t) for c, t in VIS_RF_MAPS_SCHEMA.items()
    )


def compute_aud_rf_maps(
    units: pl.DataFrame | pl.LazyFrame,
    tables: Mapping[str, pl.DataFrame | None],
    *,
    window: tuple[float, float] = RESPONSE_WINDOW,
    n_shuffles: int = N_SHUFFLES,
    seed: int = 0,
) -> pl.DataFrame:
    """Return the ``aud_rf_maps`` frame (:data:`AUD_RF_MAPS_SCHEMA`) of one session.

    Uses the pure-tone trials of ``tables["aud_rf_mapping"]``. The RFMapping task plays every
    tone at one sound level, so the map is a frequency tuning curve; ``best_freq_hz`` is the
    frequency of the highest mean rate. One row per unit; empty without tone trials.
    """
    table = tables.get("aud_rf_mapping")
    sid = _session_of(units)
    if table is None or table.is_empty() or sid is None:
        return pl.DataFrame(schema=AUD_RF_MAPS_SCHEMA)
    trials = table.filter(
        pl.col("is_pure_tone").fill_null(False),
        pl.col("stim_start_time").is_not_nan(),
        pl.col("freq").is_not_null(),
    )
    if trials.is_empty():
        return pl.DataFrame(schema=AUD_RF_MAPS_SCHEMA)
    freqs = np.unique(trials["freq"].to_numpy())
    cond = np.searchsorted(freqs, trials["freq"].to_numpy()).astype(np.int64)
    ids, counts = _counts(units, trials, window)
    width = window[1] - window[0]
    mean, n_per, p = condition_maps(counts, cond, freqs.size, n_shuffles=n_shuffles, seed=seed)
    rates = mean / width
    best = freqs[np.argmax(np.where(n_per > 0, rates, -np.inf), axis=1)]
    n_u = len(ids)
    return pl.DataFrame(
        [
            pl.Series("session_id", [sid] * n_u, dtype=pl.String),
            pl.Series("unit_id", ids, dtype=pl.String),
            _list_column("n_trials", np.tile(n_per, (n_u, 1)), pl.List(pl.Int64)),
            _list_column("rate_map", rates, pl.List(pl.Float64)),
            pl.Series("p_value", p),
            pl.Series("is_significant", p < ALPHA),
            pl.Series("n_shuffles", np.full(n_u, n_shuffles, dtype=np.int64)),
            _list_column("freq", np.tile(freqs, (n_u, 1)), pl.List(pl.Float64)),
            pl.Series("best_freq_hz", best.astype(np.float64)),
        ]
    ).select(pl.col(c).cast(t) for c, t in AUD_RF_MAPS_SCHEMA.items())


# ------------------------------------------------------------------------------------ cache
def vis_rf_maps(
    cache: str | os.PathLike[str] | None = None,
    session_ids: Sequence[str] | None = None,
    *,
    n_shuffles: int = N_SHUFFLES,
    executor: cf.Executor | None = None,
    overwrite: bool = False,
) -> pl.DataFrame:
    """Return the ``vis_rf_maps`` of the sessions, computing and caching what is missing
    (recomputed when the cached inputs or parameters change; see :mod:`npc_frames.derived`)."""
    from npc_frames.derived import compute_derived

    return compute_derived(
        "vis_rf_maps",
        "npc_frames.rf_maps:compute_vis_rf_maps",
        {"n_shuffles": n_shuffles},
        VIS_RF_MAPS_SCHEMA,
        cache=cache,
        session_ids=session_ids,
        executor=executor,
        overwrite=overwrite,
        sort=["session_id", "unit_id"],
    )


def aud_rf_maps(
    cache: str | os.PathLike[str] | None = None,
    session_ids: Sequence[str] | None = None,
    *,
    n_shuffles: int = N_SHUFFLES,
    executor: cf.Executor | None = None,
    overwrite: bool = False,
) -> pl.DataFrame:
    """Return the ``aud_rf_maps`` of the sessions, computing and caching what is missing
    (recomputed when the cached inputs or parameters change; see :mod:`npc_frames.derived`)."""
    from npc_frames.derived import compute_derived

    return compute_derived(
        "aud_rf_maps",
        "npc_frames.rf_maps:compute_aud_rf_maps",
        {"n_shuffles": n_shuffles},
        AUD_RF_MAPS_SCHEMA,
        cache=cache,
        session_ids=session_ids,
        executor=executor,
        overwrite=overwrite,
        sort=["session_id", "unit_id"],
    )


def scan_vis_rf_maps(cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame:
    """Return a LazyFrame over the stored ``vis_rf_maps`` of every session in the cache."""
    from npc_frames.derived import scan_derived

    return scan_derived("vis_rf_maps", VIS_RF_MAPS_SCHEMA, cache)


def scan_aud_rf_maps(cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame:
    """Return a LazyFrame over the stored ``aud_rf_maps`` of every session in the cache."""
    from npc_frames.derived import scan_derived

    return scan_derived("aud_rf_maps", AUD_RF_MAPS_SCHEMA, cache)
