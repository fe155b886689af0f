"""Optotagging classification: the derived ``opto_tagging`` component (``docs/analysis.md``).

Per unit, from its spikes around the OptoTagging laser pulse onsets (``optotagging`` table):
the fraction of pulses followed by a spike within :data:`RESPONSE_WINDOW` (reliability), the
median and robust standard deviation (1.4826 × median absolute deviation, so that background
spikes that happen to come first do not dominate) of the first-spike latency (latency, jitter),
the same probability
in the equally long window before each pulse, and an exact one-sided sign test on the pulses
where exactly one of the two windows holds a spike (a paired, per-pulse alternative to the SALT
test of Kvitsiani et al. 2013 that needs no binning of the baseline). ``is_opto_tagged`` requires
``p_value < P_THRESHOLD``, ``latency_s <= MAX_LATENCY_S`` and ``jitter_s <= MAX_JITTER_S``:
light-driven spikes of opsin-expressing cells come early and precisely, network responses late
and loosely.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_JITTER_S",
    "MAX_LATENCY_S",
    "OPTO_TAGGING_SCHEMA",
    "P_THRESHOLD",
    "RESPONSE_WINDOW",
    "compute_opto_tagging",
    "opto_tagging",
    "scan_opto_tagging",
]

#: seconds after the pulse onset in which a spike counts as light-evoked
RESPONSE_WINDOW = (0.0, 0.015)
P_THRESHOLD = 0.001
MAX_LATENCY_S = 0.010
MAX_JITTER_S = 0.003

OPTO_TAGGING_SCHEMA: dict[str, pl.DataType] = {
    "session_id": pl.String(),
    "unit_id": pl.String(),
    "n_pulses": pl.Int64(),
    "reliability": pl.Float64(),  # fraction of pulses with ≥ 1 spike in the response window
    "baseline_probability": pl.Float64(),  # same, in the equally long window before the pulse
    "latency_s": pl.Float64(),  # median first-spike latency over responding pulses
    "jitter_s": pl.Float64(),  # robust SD (1.4826 × MAD) of the first-spike latencies
    "p_value": pl.Float64(),  # one-sided exact sign test, response-only vs baseline-only pulses
    "is_opto_tagged": pl.Boolean(),
}


def compute_opto_tagging(
    units: pl.DataFrame | pl.LazyFrame,
    tables: Mapping[str, pl.DataFrame | None],
    *,
    window: tuple[float, float] = RESPONSE_WINDOW,
) -> pl.DataFrame:
    """Return the ``opto_tagging`` frame (:data:`OPTO_TAGGING_SCHEMA`) of one session: one row
    per unit, empty when the session has no optotagging pulses."""
    from npc_frames.analysis import aligned_spikes, spike_counts
    from npc_frames.responses import _session_of

    table = tables.get("optotagging")
    sid = _session_of(units)
    if table is None or table.is_empty() or sid is None:
        return pl.DataFrame(schema=OPTO_TAGGING_SCHEMA)
    pulses = table.filter(pl.col("stim_start_time").is_not_nan()).select(
        "session_id", "trial_index", "stim_start_time"
    )
    width = window[1] - window[0]
    counts = spike_counts(
        units,
        pulses,
        windows={
            "baseline": ("stim_start_time", -width, 0.0),
            "response": ("stim_start_time", *window),
        },
    ).with_columns(pl.col("unit_id").cast(pl.String))
    hit = counts.group_by("unit_id", "trial_index").agg(
        (pl.col("count").filter(pl.col("window") == "response").first() > 0).alias("r"),
        (pl.col("count").filter(pl.col("window") == "baseline").first() > 0).alias("b"),
    )
    per_unit = hit.group_by("unit_id").agg(
        pl.len().alias("n_pulses"),
        pl.col("r").mean().alias("reliability"),
        pl.col("b").mean().alias("baseline_probability"),
        (pl.col("r") & ~pl.col("b")).sum().alias("k"),
        (pl.col("r") != pl.col("b")).sum().alias("n_discordant"),
    )
    first = (
        aligned_spikes(units, pulses, event="stim_start_time", start=window[0], stop=window[1])
        .with_columns(pl.col("unit_id").cast(pl.String), pl.col("spike_times").list.first())
        .group_by("unit_id")
        .agg(
            pl.col("spike_times").median().alias("latency_s"),
            # robust SD (1.4826 × MAD): background spikes falling first in a window are outliers
            (
                (pl.col("spike_times") - pl.col("spike_times").median()).abs().median() * 1.4826
            ).alias("jitter_s"),
        )
    )
    df = per_unit.join(first, on="unit_id", how="left").sort("unit_id")
    k = df["k"].to_numpy()
    n = df["n_discordant"].to_numpy()
    p = np.where(n > 0, stats.binom.sf(k - 1, np.maximum(n, 1), 0.5), 1.0)
    return (
        df.with_columns(
            pl.lit(sid).alias("session_id"),
            pl.Series("p_value", p),
        )
        .with_columns(
            (
                (pl.col("p_value") < P_THRESHOLD)
                & (pl.col("latency_s") <= MAX_LATENCY_S)
                & (pl.col("jitter_s").fill_null(0.0) <= MAX_JITTER_S)
            )
            .fill_null(False)
            .alias("is_opto_tagged")
        )
        .select(pl.col(c).cast(t) for c, t in OPTO_TAGGING_SCHEMA.items())
    )


def opto_tagging(
    cache: str | os.PathLike[str] | None = None,
    session_ids: Sequence[str] | None = None,
    *,
    executor: cf.Executor | None = None,
    overwrite: bool = False,
) -> pl.DataFrame:
    """Return the ``opto_tagging`` of the sessions, computing and caching what is missing
    (recomputed when the cached inputs change; see :mod:`npc_frames.derived`)."""
    from npc_frames.derived import compute_derived

    return compute_derived(
        "opto_tagging",
        "npc_frames.optotag:compute_opto_tagging",
        {"window": RESPONSE_WINDOW},
        OPTO_TAGGING_SCHEMA,
        cache=cache,
        session_ids=session_ids,
        executor=executor,
        overwrite=overwrite,
        sort=["session_id", "unit_id"],
    )


def scan_opto_tagging(cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame:
    """Return a LazyFrame over the stored ``opto_tagging`` of every session in the cache."""
    from npc_frames.derived import scan_derived

    return scan_derived("opto_tagging", OPTO_TAGGING_SCHEMA, cache)
