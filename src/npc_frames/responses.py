"""Per-unit stimulus responses: the derived ``unit_responses`` component (``docs/analysis.md``).

For every unit and stimulus type of a session — task visual/auditory targets and non-targets,
each RF-mapping stimulus kind and the optotagging laser — :func:`compute_unit_responses` returns
baseline and response rates, a Wilcoxon signed-rank test and the ROC AUC of per-trial response
vs baseline counts, the response latency and (task stimuli) a context modulation index.

Counting is :func:`npc_frames.spike_counts` (vectorized over units and trials); the statistics
are vectorized over units through per-unit histograms of the integer counts, so no Python loop
runs over units, trials or spikes. :func:`unit_responses` computes the component from a cache's
``units`` + ``trials`` + interval tables, writes one file per session and records it in the
catalog; it is recomputed only when those input files change.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import special, stats

from npc_frames.errors import ParameterError

__all__ = [
    "COMPONENT",
    "DEFAULT_WINDOWS",
    "STIMULI",
    "UNIT_RESPONSES_SCHEMA",
    "ResponseWindows",
    "auc_from_counts",
    "compute_unit_responses",
    "scan_unit_responses",
    "unit_responses",
    "wilcoxon_from_counts",
]

logger = logging.getLogger(__name__)

COMPONENT = "unit_responses"
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclasses.dataclass(frozen=True)
class ResponseWindows:
    """Counting windows of one stimulus group, seconds relative to the stimulus onset.

    ``baseline`` and ``response`` must have equal widths (the signed-rank test pairs their counts
    trial by trial). Latency bins of ``bin_s`` tile the response window; the latency is the start
    of the first run of ``run_bins`` consecutive bins, each above the baseline expectation, whose
    count summed over trials and bins exceeds the baseline's at Poisson p < ``bin_alpha``.
    """

    baseline: tuple[float, float]
    response: tuple[float, float]
    bin_s: float
    run_bins: int
    bin_alpha: float

    def __post_init__(self) -> None:
        (b0, b1), (r0, r1) = self.baseline, self.response
        if not (b1 > b0 and r1 > r0 and abs((b1 - b0) - (r1 - r0)) < 1e-9):
            raise ParameterError(
                f"windows baseline={self.baseline} response={self.response}",
                field="windows",
                expected="start < stop and equal baseline / response widths",
            )
        if not (0 < self.bin_s <= r1 - r0 and self.run_bins >= 1 and 0 < self.bin_alpha < 1):
            raise ParameterError(
                f"latency bins {self.bin_s} s × {self.run_bins}, alpha {self.bin_alpha}",
                field="windows.bin_s",
                expected="0 < bin_s <= response width, run_bins >= 1, 0 < bin_alpha < 1",
            )


#: default windows per stimulus group; reasons in docs/analysis.md ("Unit responses")
DEFAULT_WINDOWS: dict[str, ResponseWindows] = {
    # mouse visual and auditory cortex respond within ~10–80 ms and mostly within 250 ms; the
    # task's quiescent period keeps the 250 ms before a task stimulus free of stimuli
    "sensory": ResponseWindows(
        baseline=(-0.25, 0.0), response=(0.0, 0.25), bin_s=0.005, run_bins=3, bin_alpha=0.001
    ),
    # light-evoked spikes of opsin-expressing cells come within ~2–10 ms of the pulse onset;
    # later spikes are network effects
    "opto": ResponseWindows(
        baseline=(-0.015, 0.0), response=(0.0, 0.015), bin_s=0.001, run_bins=1, bin_alpha=0.001
    ),
}


@dataclasses.dataclass(frozen=True)
class _Stimulus:
    component: str
    selector: str | None  # boolean column picking the stimulus's trials (None: all)
    group: str  # DEFAULT_WINDOWS key
    modality: str | None  # for the context modulation index (task stimuli only)


#: stimulus types of ``unit_responses``: name -> the interval table, trial selector and window group
STIMULI: dict[str, _Stimulus] = {
    "vis_target": _Stimulus("trials", "is_vis_target", "sensory", "vis"),
    "vis_nontarget": _Stimulus("trials", "is_vis_nontarget", "sensory", "vis"),
    "aud_target": _Stimulus("trials", "is_aud_target", "sensory", "aud"),
    "aud_nontarget": _Stimulus("trials", "is_aud_nontarget", "sensory", "aud"),
    "rf_grating": _Stimulus("vis_rf_mapping", "is_small_field_grating", "sensory", None),
    "rf_flash": _Stimulus("vis_rf_mapping", "is_full_field_flash", "sensory", None),
    "rf_tone": _Stimulus("aud_rf_mapping", "is_pure_tone", "sensory", None),
    "rf_am_noise": _Stimulus("aud_rf_mapping", "is_AM_noise", "sensory", None),
    "opto": _Stimulus("optotagging", None, "opto", None),
}
#: significance level of ``is_responsive``
ALPHA = 0.01

UNIT_RESPONSES_SCHEMA: dict[str, pl.DataType] = {
    "session_id": pl.String(),
    "unit_id": pl.String(),
    "stimulus": pl.String(),
    "n_trials": pl.Int64(),  # trials whose windows lie inside the unit's observation intervals
    "baseline_rate_hz": pl.Float64(),
    "response_rate_hz": pl.Float64(),
    "wilcoxon_w": pl.Float64(),  # min(W+, W-) of response − baseline counts, zeros dropped
    "wilcoxon_z": pl.Float64(),  # normal approximation with tie correction; > 0: rate rises
    "p_value": pl.Float64(),  # two-sided
    "auc": pl.Float64(),  # ROC AUC of response vs baseline counts (0.5: no difference)
    "latency_s": pl.Float64(),  # first bin of a sustained significant rise (null: none)
    "context_modulation": pl.Float64(),  # (rewarded − unrewarded) / sum of response rates
    "is_responsive": pl.Boolean(),  # p_value < ALPHA
    "baseline_start": pl.Float64(),  # the windows used, seconds from onset
    "baseline_stop": pl.Float64(),
    "response_start": pl.Float64(),
    "response_stop": pl.Float64(),
}


# ------------------------------------------------------------------------------ statistics
def _histograms(values: IntArray, valid: npt.NDArray[np.bool_], size: int) -> IntArray:
    """Return per row the histogram of the valid non-negative integer `values` (rows × size)."""
    n_rows = values.shape[0]
    key = (np.arange(n_rows, dtype=np.int64)[:, None] * size + values)[valid]
    return np.bincount(key, minlength=n_rows * size).reshape(n_rows, size)


def wilcoxon_from_counts(
    response: npt.ArrayLike, baseline: npt.ArrayLike, valid: npt.ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return per row (W = min(W+, W−), z, two-sided p) of the Wilcoxon signed-rank test of
    ``response − baseline``, integer counts of shape (rows, trials).

    Zero differences are dropped (Wilcoxon's convention), tied ranks averaged, and the p-value is
    the normal approximation with the tie-corrected variance and no continuity correction —
    ``scipy.stats.wilcoxon(..., method="approx")``. Rows are vectorized through histograms of
    the integer |differences|. Rows with no non-zero difference get W = 0, z = 0, p = 1.
    """
    r = np.asarray(response, dtype=np.int64)
    b = np.asarray(baseline, dtype=np.int64)
    ok = np.ones(r.shape, bool) if valid is None else np.asarray(valid, dtype=bool)
    d = r - b
    a = np.abs(d)
    nz = ok & (d != 0)
    size = int(a[nz].max()) + 1 if nz.any() else 1
    h_all = _histograms(a, nz, size)  # counts of each |d|
    h_pos = _histograms(a, nz & (d > 0), size)
    below = np.cumsum(h_all, axis=1) - h_all
    avg_rank = below + (h_all + 1) / 2.0
    w_plus = (h_pos * avg_rank).sum(axis=1)
    n = h_all.sum(axis=1).astype(np.float64)
    total = n * (n + 1) / 2
    w = np.minimum(w_plus, total - w_plus)
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - (h_all.astype(np.float64) ** 3 - h_all).sum(axis=1) / 48
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(var > 0, (w_plus - mean) / np.sqrt(var), 0.0)
    p = np.where(var > 0, 2 * special.ndtr(-np.abs(z)), 1.0)
    return w.astype(np.float64), z, np.minimum(p, 1.0)


def auc_from_counts(
    response: npt.ArrayLike, baseline: npt.ArrayLike, valid: npt.ArrayLike | None = None
) -> FloatArray:
    """Return per row the ROC AUC separating response from baseline counts (rows × trials):
    P(response > baseline) + ½ P(equal) over all pairs of valid trials (NaN: no valid trial)."""
    r = np.asarray(response, dtype=np.int64)
    b = np.asarray(baseline, dtype=np.int64)
    ok = np.ones(r.shape, bool) if valid is None else np.asarray(valid, dtype=bool)
    size = int(max(r[ok].max(initial=0), b[ok].max(initial=0))) + 1
    hr = _histograms(r, ok, size).astype(np.float64)
    hb = _histograms(b, ok, size).astype(np.float64)
    below_b = np.cumsum(hb, axis=1) - hb
    wins = (hr * (below_b + 0.5 * hb)).sum(axis=1)
    n_pairs = hr.sum(axis=1) * hb.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pairs > 0, wins / n_pairs, np.nan)


def _latency(
    binned: FloatArray,
    expected: FloatArray,
    win: ResponseWindows,
    significant: npt.NDArray[np.bool_],
) -> FloatArray:
    """Return per unit the start (s from onset) of the first run of ``win.run_bins`` bins that are
    each above the baseline expectation and whose summed count is improbably high under Poisson
    (p < ``win.bin_alpha``); NaN where there is none or the response is not significant.

    `binned` is (units, bins) spike counts summed over trials, `expected` (units,) the baseline
    count per bin summed over the same trials.
    """
    lam = np.maximum(expected, 1e-9)[:, None]
    k = win.run_bins
    above = binned > lam
    # sums over every run of k bins starting at each bin, and how many of its bins are above
    c_sum = np.cumsum(np.pad(binned, ((0, 0), (1, 0))), axis=1)
    c_above = np.cumsum(np.pad(above.astype(np.int64), ((0, 0), (1, 0))), axis=1)
    run_sum = c_sum[:, k:] - c_sum[:, :-k]
    all_above = (c_above[:, k:] - c_above[:, :-k]) == k
    p_run = stats.poisson.sf(run_sum - 1, k * lam)  # P(X >= summed count)
    run = all_above & (p_run < win.bin_alpha)
    first = np.argmax(run, axis=1)
    found = run.any(axis=1) & significant
    return np.where(found, win.response[0] + first * win.bin_s, np.nan)


# ------------------------------------------------------------------------------- one session
def _session_of(units: pl.DataFrame | pl.LazyFrame) -> str | None:
    """Return the session id of a one-session units frame (None: no units), without reading
    its spikes."""
    first = units.lazy().select(pl.col("session_id").cast(pl.String)).head(1).collect()
    return None if first.is_empty() else str(first["session_id"][0])


def _events(tables: Mapping[str, pl.DataFrame | None], session_id: str) -> pl.DataFrame:
    """Return every stimulus onset of a session: trial_index (row), t, stimulus, rewarded flag."""
    parts = []
    for name, spec in STIMULI.items():
        table = tables.get(spec.component)
        if table is None or table.is_empty() or "stim_start_time" not in table.columns:
            continue
        if spec.selector is not None:
            if spec.selector not in table.columns:
                continue
            table = table.filter(pl.col(spec.selector).fill_null(False))
        rewarded = (
            (pl.col("rewarded_modality") == spec.modality)
            if spec.modality is not None and "rewarded_modality" in table.columns
            else pl.lit(None, dtype=pl.Boolean)
        )
        parts.append(
            table.select(
                pl.col("stim_start_time").cast(pl.Float64).alias("t"),
                pl.lit(name).alias("stimulus"),
                rewarded.alias("is_rewarded"),
            ).filter(pl.col("t").is_not_null() & pl.col("t").is_not_nan())
        )
    if not parts:
        return pl.DataFrame(
            schema={
                "session_id": pl.String,
                "trial_index": pl.Int64,
                "t": pl.Float64,
                "stimulus": pl.String,
                "is_rewarded": pl.Boolean,
            }
        )
    return (
        pl.concat(parts)
        .with_row_index("trial_index")
        .with_columns(pl.col("trial_index").cast(pl.Int64), pl.lit(session_id).alias("session_id"))
    )


def _count_matrix(
    units: pl.DataFrame | pl.LazyFrame, edges: pl.DataFrame
) -> tuple[list[str], IntArray, IntArray, IntArray, npt.NDArray[np.bool_]]:
    """Return (unit ids, event trial_index values, baseline counts, response counts, valid) with
    (units, events) arrays, for events with absolute window edges ``b0, b1, r0, r1``."""
    from npc_frames.analysis import session_count_arrays

    unit_ids, order, counts, valid = session_count_arrays(
        units,
        edges,
        windows={"baseline": ("b0", "b1"), "response": ("r0", "r1")},
        index="trial_index",
    )
    base, resp = np.where(valid, counts, 0).astype(np.int64)
    return unit_ids, order, base, resp, valid[0] & valid[1]


def _columns_of(order: IntArray, wanted: IntArray) -> IntArray:
    """Return the positions in `order` (distinct index values) of the `wanted` index values."""
    if np.array_equal(order, wanted):
        return np.arange(order.size)
    sorter = np.argsort(order)
    picked: IntArray = sorter[np.searchsorted(order, wanted, sorter=sorter)]
    return picked


def _binned(
    units: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame,
    win: ResponseWindows,
    unit_ids: Sequence[str],
) -> FloatArray:
    """Return (units, stimuli, bins) spike counts in the response window summed over trials."""
    from npc_frames.analysis import psth

    r0, r1 = win.response
    n_bins = int(np.ceil((r1 - r0) / win.bin_s - 1e-9))
    names = list(dict.fromkeys(events["stimulus"].to_list()))
    out = np.zeros((len(unit_ids), len(names), n_bins))
    rates = psth(units, events, event="t", start=r0, stop=r1, bin_size=win.bin_s, by=["stimulus"])
    if rates.is_empty():
        return out
    row = {u: i for i, u in enumerate(unit_ids)}
    col = {s: i for i, s in enumerate(names)}
    df = rates.select(
        pl.col("unit_id").cast(pl.String).replace_strict(row, return_dtype=pl.Int64).alias("u"),
        pl.col("stimulus").replace_strict(col, return_dtype=pl.Int64).alias("s"),
        ((pl.col("bin_start") - r0) / win.bin_s).round().cast(pl.Int64).alias("b"),
        (pl.col("rate_mean") * pl.col("n_trials") * win.bin_s).alias("count"),
    ).filter(pl.col("b") < n_bins)
    out[df["u"].to_numpy(), df["s"].to_numpy(), df["b"].to_numpy()] = np.rint(
        df["count"].to_numpy()
    )
    return out


def compute_unit_responses(
    units: pl.DataFrame | pl.LazyFrame,
    tables: Mapping[str, pl.DataFrame | None],
    *,
    windows: Mapping[str, ResponseWindows] | None = None,
) -> pl.DataFrame:
    """Return the ``unit_responses`` frame (:data:`UNIT_RESPONSES_SCHEMA`) of one session.

    Parameters
    ----------
    units:
        The session's ``units`` (``session_id``, ``unit_id``, ``spike_times``, optionally
        ``obs_intervals``).
    tables:
        Interval tables by component name: ``trials``, ``vis_rf_mapping``, ``aud_rf_mapping``,
        ``optotagging`` (missing or None: those stimuli are skipped).
    windows:
        Window groups (``"sensory"``, ``"opto"``) replacing :data:`DEFAULT_WINDOWS`.

    One row per unit and stimulus type present in the session (:data:`STIMULI`). Trials whose
    windows fall outside a unit's observation intervals are left out for that unit.
    """
    wins = {**DEFAULT_WINDOWS, **(windows or {})}
    # a LazyFrame (e.g. a cache scan) stays lazy: the counting functions read its spikes
    u = units
    session_id = _session_of(u)
    if session_id is None:
        return pl.DataFrame(schema=UNIT_RESPONSES_SCHEMA)
    events = _events(tables, session_id)
    groups = []
    for group, win in wins.items():
        ev = events.filter(
            pl.col("stimulus").is_in([n for n, s in STIMULI.items() if s.group == group])
        )
        if not ev.is_empty():
            groups.append((win, ev))
    parts = []
    if groups:
        # one counting pass over the session's spikes for every group: each event carries its
        # group's absolute baseline and response edges
        edges = pl.concat(
            [
                ev.select(
                    "session_id",
                    "trial_index",
                    (pl.col("t") + win.baseline[0]).alias("b0"),
                    (pl.col("t") + win.baseline[1]).alias("b1"),
                    (pl.col("t") + win.response[0]).alias("r0"),
                    (pl.col("t") + win.response[1]).alias("r1"),
                )
                for win, ev in groups
            ]
        )
        counted = _count_matrix(u, edges)
        for win, ev in groups:
            parts.append(_group_responses(u, ev, win, session_id, counted))
    if not parts:
        return pl.DataFrame(schema=UNIT_RESPONSES_SCHEMA)
    return pl.concat(parts).select(pl.col(c).cast(t) for c, t in UNIT_RESPONSES_SCHEMA.items())


def _group_responses(
    units: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame,
    win: ResponseWindows,
    session_id: str,
    counted: tuple[list[str], IntArray, IntArray, IntArray, npt.NDArray[np.bool_]],
) -> pl.DataFrame:
    unit_ids, order, base_all, resp_all, valid_all = counted
    cols = _columns_of(order, events["trial_index"].to_numpy())
    base, resp, valid = base_all[:, cols], resp_all[:, cols], valid_all[:, cols]
    names = list(dict.fromkeys(events["stimulus"].to_list()))
    stim = events["stimulus"].to_numpy()
    tests = {
        name: wilcoxon_from_counts(
            resp[:, stim == name], base[:, stim == name], valid[:, stim == name]
        )
        for name in names
    }
    # latency bins only for units with a significant rise to some stimulus
    rising = np.zeros(len(unit_ids), dtype=bool)
    for _, z, p in tests.values():
        rising |= (p < ALPHA) & (z > 0)
    candidates = [u for u, keep in zip(unit_ids, rising, strict=True) if keep]
    binned = np.zeros(
        (
            len(unit_ids),
            len(names),
            int(np.ceil((win.response[1] - win.response[0]) / win.bin_s - 1e-9)),
        )
    )
    if candidates:
        sub = units.filter(pl.col("unit_id").cast(pl.String).is_in(candidates))
        binned[rising] = _binned(sub, events, win, candidates)
    rewarded = events["is_rewarded"]
    width = win.response[1] - win.response[0]
    rows = []
    for k, name in enumerate(names):  # a handful of stimulus types
        sel = stim == name
        b, r, ok = base[:, sel], resp[:, sel], valid[:, sel]
        n = ok.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            base_rate = (b * ok).sum(axis=1) / (n * width)
            resp_rate = (r * ok).sum(axis=1) / (n * width)
        w, z, p = tests[name]
        auc = auc_from_counts(r, b, ok)
        significant = (p < ALPHA) & (z > 0)
        # expected baseline count per latency bin over the trials psth used (all with an onset)
        n_all = int(sel.sum())
        expected = np.nan_to_num(base_rate) * win.bin_s * n_all
        latency = _latency(binned[:, k], expected, win, significant)
        cmi = np.full(len(unit_ids), np.nan)
        rew = rewarded.filter(pl.Series(sel)).to_numpy()
        if rewarded.filter(pl.Series(sel)).null_count() == 0 and rew.size:
            rew = rew.astype(bool)
            ok_r, ok_u = ok & rew[None, :], ok & ~rew[None, :]
            with np.errstate(invalid="ignore", divide="ignore"):
                r_rew = (r * ok_r).sum(axis=1) / ok_r.sum(axis=1)
                r_un = (r * ok_u).sum(axis=1) / ok_u.sum(axis=1)
                cmi = np.where(r_rew + r_un > 0, (r_rew - r_un) / (r_rew + r_un), np.nan)
        rows.append(
            pl.DataFrame(
                {
                    "session_id": [session_id] * len(unit_ids),
                    "unit_id": unit_ids,
                    "stimulus": [name] * len(unit_ids),
                    "n_trials": n.astype(np.int64),
                    "baseline_rate_hz": base_rate,
                    "response_rate_hz": resp_rate,
                    "wilcoxon_w": w,
                    "wilcoxon_z": z,
                    "p_value": p,
                    "auc": auc,
                    "latency_s": latency,
                    "context_modulation": cmi,
                    "is_responsive": p < ALPHA,
                    "baseline_start": np.full(len(unit_ids), win.baseline[0]),
                    "baseline_stop": np.full(len(unit_ids), win.baseline[1]),
                    "response_start": np.full(len(unit_ids), win.response[0]),
                    "response_stop": np.full(len(unit_ids), win.response[1]),
                },
                nan_to_null=True,
            )
        )
    return pl.concat(rows)


# ------------------------------------------------------------------------------------ cache
def scan_unit_responses(cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame:
    """Return a LazyFrame over the stored ``unit_responses`` of every session in the cache."""
    from npc_frames.derived import scan_derived

    return scan_derived(COMPONENT, UNIT_RESPONSES_SCHEMA, cache)


def unit_responses(
    cache: str | os.PathLike[str] | None = None,
    session_ids: Sequence[str] | None = None,
    *,
    windows: Mapping[str, ResponseWindows] | None = None,
    executor: cf.Executor | None = None,
    overwrite: bool = False,
) -> pl.DataFrame:
    """Return the ``unit_responses`` of the sessions, computing and caching what is missing.

    For each session (default: every session with ``units`` in the catalog) the component is
    computed from the cached ``units``, ``trials``, ``vis_rf_mapping``, ``aud_rf_mapping`` and
    ``optotagging`` files and written to ``<cache>/unit_responses/session_id=<id>/data.parquet``
    with a catalog row. It is recomputed only when its fingerprint — the input files' sizes and
    versions plus the windows — changes (or with `overwrite`). `executor` (e.g. a Dask client's
    ``get_executor()``) runs one task per session; the result is the same as a serial run.

    Examples
    --------
    >>> import npc_frames as nf  # doctest: +SKIP
    >>> r = nf.unit_responses(cache="cache/")  # doctest: +SKIP
    >>> r.filter(pl.col("stimulus") == "vis_target", pl.col("is_responsive"))  # doctest: +SKIP
    """
    from npc_frames.derived import compute_derived

    wins = {**DEFAULT_WINDOWS, **(windows or {})}
    return compute_derived(
        COMPONENT,
        "npc_frames.responses:compute_unit_responses",
        {"windows": wins},
        UNIT_RESPONSES_SCHEMA,
        cache=cache,
        session_ids=session_ids,
        executor=executor,
        overwrite=overwrite,
        sort=["session_id", "stimulus", "unit_id"],
    )
