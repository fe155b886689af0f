"""The `performance` component: behavioral performance per block.

Computed from the trials frame itself (after invalid-times filtering), so it can also be computed
from cached trials: :func:`performance_from_trials`. :func:`session_flags` derives the session-level
"engaged" and "good behavior" flags from it.
"""

from __future__ import annotations

import logging
import statistics
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames._log import timed
from npc_frames.schemas.behavior import PERFORMANCE

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = ["dprime", "performance", "performance_from_trials", "session_flags"]

FloatArray = npt.NDArray[np.float64]

#: session flags: thresholds used by the reference
ENGAGED_MIN_BLOCKS = 4
MIN_CONTINGENT_REWARDS = 10
GOOD_MIN_BLOCKS_PER_MODALITY = 2
GOOD_MIN_DPRIME = 1.0
GOOD_MIN_TRIALS = 10


def dprime(
    hit_rate: npt.ArrayLike,
    false_alarm_rate: npt.ArrayLike,
    n_go: npt.ArrayLike,
    n_nogo: npt.ArrayLike,
) -> FloatArray:
    """Return d′ = Φ⁻¹(hit rate) − Φ⁻¹(false-alarm rate), element-wise.

    Rates of exactly 0 or 1 are replaced by 0.5/n and 1 − 0.5/n (n = trials behind that rate);
    NaN rates (no trials) give NaN.
    """
    hr = _adjust(np.asarray(hit_rate, dtype=np.float64), np.asarray(n_go, dtype=np.float64))
    far = _adjust(
        np.asarray(false_alarm_rate, dtype=np.float64), np.asarray(n_nogo, dtype=np.float64)
    )
    return _ppf(hr) - _ppf(far)


_NORMAL = statistics.NormalDist()


def _ppf(p: FloatArray) -> FloatArray:
    # Φ⁻¹ per element (a handful of blocks); stdlib NormalDist avoids importing scipy.special
    flat = np.atleast_1d(p).ravel()
    out = np.array([_NORMAL.inv_cdf(x) if 0.0 < x < 1.0 else np.nan for x in flat.tolist()])
    return out.reshape(np.shape(p))


def _adjust(rate: FloatArray, n: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(rate == 0, 0.5 / n, rate)
        return np.where(rate == 1, 1 - 0.5 / n, r)


@timed
def performance(raw: RawSession) -> pl.DataFrame:
    """Return one row per block of the session's (invalid-times-filtered) trials."""
    from npc_frames.components._task import open_stim, task_file
    from npc_frames.components._trials import trials

    df = trials(raw)
    path, _ = task_file(raw)
    rewarded = open_stim(path).strs("blockStimRewarded")
    first_aud = bool(rewarded) and any(k in rewarded[0] for k in ("aud", "sound"))
    return performance_from_trials(df, first_block_aud=first_aud, source=path)


def _rate(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    d = den.cast(pl.Float64)
    return pl.when(d > 0).then(num.cast(pl.Float64) / d).otherwise(None).fill_null(float("nan"))


def performance_from_trials(
    trials: pl.DataFrame, *, first_block_aud: bool | None = None, source: object | None = None
) -> pl.DataFrame:
    """Return the performance frame computed from a trials frame (one row per block present).

    `first_block_aud` defaults to whether the first block present is rewarded for audition.
    """
    if trials.height == 0:
        return PERFORMANCE.empty()
    c = pl.col
    non_instr = ~c("is_instruction")
    agg = (
        trials.group_by("block_index", maintain_order=True)
        .agg(
            c("session_id").first(),
            c("start_time").min(),
            c("stop_time").max(),
            c("rewarded_modality").first(),
            pl.len().alias("n_trials"),
            c("is_response").sum().alias("n_responses"),
            c("is_hit").sum().alias("n_hits"),
            c("is_contingent_reward").sum().alias("n_contingent_rewards"),
            c("is_go").sum().alias("n_go"),
            c("is_nogo").sum().alias("n_nogo"),
            c("is_false_alarm").sum().alias("n_fa"),
            (c("is_catch") & c("is_response")).sum().alias("n_catch_resp"),
            c("is_catch").sum().alias("n_catch"),
            c("is_vis_target").sum().alias("n_vis_t"),
            (c("is_vis_target") & c("is_hit")).sum().alias("n_vis_t_hit"),
            c("is_vis_nontarget").sum().alias("n_vis_nt"),
            (c("is_vis_nontarget") & c("is_false_alarm")).sum().alias("n_vis_nt_fa"),
            c("is_aud_target").sum().alias("n_aud_t"),
            (c("is_aud_target") & c("is_hit")).sum().alias("n_aud_t_hit"),
            c("is_aud_nontarget").sum().alias("n_aud_nt"),
            (c("is_aud_nontarget") & c("is_false_alarm")).sum().alias("n_aud_nt_fa"),
            (c("is_aud_target") & c("is_false_alarm")).sum().alias("n_aud_t_fa"),
            (c("is_vis_target") & c("is_false_alarm")).sum().alias("n_vis_t_fa"),
            *[
                x
                for cls in ("vis_target", "vis_nontarget", "aud_target", "aud_nontarget")
                for x in (
                    (c(f"is_{cls}") & non_instr).sum().alias(f"den_{cls}"),
                    (c(f"is_{cls}") & non_instr & c("is_response") & ~c("is_reward_scheduled"))
                    .sum()
                    .alias(f"num_{cls}"),
                )
            ],
        )
        .sort("block_index")
    )
    is_vis_block = c("rewarded_modality") == "vis"
    agg = agg.with_columns(
        _rate(c("n_hits"), c("n_go")).alias("hit_rate"),
        _rate(c("n_fa"), c("n_nogo")).alias("false_alarm_rate"),
        _rate(c("n_catch_resp"), c("n_catch")).alias("catch_response_rate"),
        # the non-rewarded modality's target: aud target in vis blocks, vis target in aud blocks
        pl.when(is_vis_block).then(c("n_aud_t")).otherwise(c("n_vis_t")).alias("n_other_t"),
        pl.when(is_vis_block).then(c("n_aud_t_fa")).otherwise(c("n_vis_t_fa")).alias("n_other_fa"),
        *[
            _rate(c(f"num_{cls}"), c(f"den_{cls}")).alias(f"{cls}_response_rate")
            for cls in ("vis_target", "vis_nontarget", "aud_target", "aud_nontarget")
        ],
    )
    other_fa_rate = _np_rate(agg["n_other_fa"], agg["n_other_t"])
    cross = dprime(agg["hit_rate"].to_numpy(), other_fa_rate, agg["n_go"], agg["n_other_t"])
    vis_d = dprime(
        _np_rate(agg["n_vis_t_hit"], agg["n_vis_t"]),
        _np_rate(agg["n_vis_nt_fa"], agg["n_vis_nt"]),
        agg["n_vis_t"],
        agg["n_vis_nt"],
    )
    aud_d = dprime(
        _np_rate(agg["n_aud_t_hit"], agg["n_aud_t"]),
        _np_rate(agg["n_aud_nt_fa"], agg["n_aud_nt"]),
        agg["n_aud_t"],
        agg["n_aud_nt"],
    )
    if first_block_aud is None:
        first_block_aud = agg["rewarded_modality"][0] == "aud"
    sign = np.where(agg["rewarded_modality"].to_numpy() == "vis", 1.0, -1.0)
    agg = agg.with_columns(
        pl.Series("cross_modality_dprime", cross),
        pl.Series("signed_cross_modality_dprime", cross * sign),
        pl.Series("vis_dprime", vis_d),
        pl.Series("aud_dprime", aud_d),
        pl.lit(bool(first_block_aud)).alias("is_first_block_aud"),
    )
    return PERFORMANCE.validate(agg.select(PERFORMANCE.names), source=source)


def _np_rate(num: pl.Series, den: pl.Series) -> FloatArray:
    n = num.to_numpy().astype(np.float64)
    d = den.to_numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, n / d, np.nan)


def session_flags(perf: pl.DataFrame, *, templeton: bool = False) -> dict[str, bool]:
    """Return {"is_engaged", "is_good_behavior"} from a performance frame.

    engaged: >= 4 blocks with >= 10 contingent rewards. good behavior: >= 2 vis and >= 2 aud blocks
    (Templeton sessions: any 4 blocks) with cross-modal d′ >= 1.0, >= 10 trials and >= 10
    contingent rewards.
    """
    rewarded = perf["n_contingent_rewards"] >= MIN_CONTINGENT_REWARDS
    engaged = int(rewarded.sum()) >= ENGAGED_MIN_BLOCKS
    good_block = perf.filter(
        # Polars orders NaN above every number: a block without a d' must not count as passing
        pl.col("cross_modality_dprime").is_not_nan()
        & (pl.col("cross_modality_dprime") >= GOOD_MIN_DPRIME)
        & (pl.col("n_trials") >= GOOD_MIN_TRIALS)
        & (pl.col("n_contingent_rewards") >= MIN_CONTINGENT_REWARDS)
    )
    if templeton:
        good = good_block.height >= 2 * GOOD_MIN_BLOCKS_PER_MODALITY
    else:
        n_vis = good_block.filter(pl.col("rewarded_modality") == "vis").height
        n_aud = good_block.filter(pl.col("rewarded_modality") == "aud").height
        good = n_vis >= GOOD_MIN_BLOCKS_PER_MODALITY and n_aud >= GOOD_MIN_BLOCKS_PER_MODALITY
    return {"is_engaged": engaged, "is_good_behavior": good}
