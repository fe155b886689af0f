"""Performance per block (FORMATS §5.3) and the d′ rule (§4), against hand counts and against
DynamicRoutingTask's own calcDprime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from helpers.task_files import make_raw
from npc_frames.components._performance import dprime, performance_from_trials, session_flags
from npc_frames.schemas.behavior import PERFORMANCE, TRIALS


def _trials(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Return a trials frame from partial rows (flags derived from stim/block/response)."""
    out = []
    for i, r in enumerate(rows):
        stim, block, resp = r["stim"], r["block"], r["resp"]
        rewarded = ["vis1", "sound1"][block % 2]
        is_vis, is_aud, catch = "vis" in stim, "sound" in stim, stim == "catch"
        go = stim == rewarded
        nogo = not go and not catch
        target = stim in ("vis1", "sound1")
        sched = r.get("sched", False)
        out.append(
            {
                "session_id": "1_2023-09-01",
                "start_time": float(i),
                "stop_time": float(i) + 0.9,
                "block_index": block,
                "rewarded_modality": "vis" if "vis" in rewarded else "aud",
                "trial_index": i,
                "is_response": resp,
                "is_hit": resp and go,
                "is_false_alarm": resp and nogo,
                "is_go": go,
                "is_nogo": nogo,
                "is_catch": catch,
                "is_contingent_reward": resp and go and not sched,
                "is_reward_scheduled": sched,
                "is_instruction": r.get("instr", False),
                "is_vis_target": is_vis and target,
                "is_aud_target": is_aud and target,
                "is_vis_nontarget": is_vis and not target,
                "is_aud_nontarget": is_aud and not target,
            }
        )
    return pl.DataFrame(out)


ROWS = [
    # block 0 (vis1 rewarded)
    {"stim": "vis1", "block": 0, "resp": True, "instr": True, "sched": True},
    {"stim": "vis1", "block": 0, "resp": True},
    {"stim": "vis1", "block": 0, "resp": False},
    {"stim": "vis2", "block": 0, "resp": False},
    {"stim": "sound1", "block": 0, "resp": True},
    {"stim": "sound1", "block": 0, "resp": False},
    {"stim": "sound2", "block": 0, "resp": False},
    {"stim": "catch", "block": 0, "resp": True},
    # block 1 (sound1 rewarded)
    {"stim": "sound1", "block": 1, "resp": True},
    {"stim": "sound1", "block": 1, "resp": True},
    {"stim": "vis1", "block": 1, "resp": False},
    {"stim": "vis2", "block": 1, "resp": True},
    {"stim": "catch", "block": 1, "resp": False},
]


def test_performance_counts_and_rates_per_block_by_hand() -> None:
    perf = performance_from_trials(_trials(ROWS), first_block_aud=False)
    assert perf.columns == PERFORMANCE.names
    b0, b1 = perf.row(0, named=True), perf.row(1, named=True)
    assert (b0["n_trials"], b0["n_responses"], b0["n_hits"]) == (8, 4, 2)
    assert b0["n_contingent_rewards"] == 1
    assert b0["hit_rate"] == pytest.approx(2 / 3)
    assert b0["false_alarm_rate"] == pytest.approx(1 / 4)  # vis2, sound1(resp), sound1, sound2
    assert b0["catch_response_rate"] == 1.0
    assert b0["start_time"] == 0.0 and b0["stop_time"] == 7.9
    assert (b1["n_trials"], b1["hit_rate"], b1["false_alarm_rate"]) == (5, 1.0, 0.5)
    assert b1["catch_response_rate"] == 0.0
    assert perf["is_first_block_aud"].to_list() == [False, False]
    # response rates exclude instruction trials; target numerator excludes scheduled rewards
    assert b0["vis_target_response_rate"] == pytest.approx(1 / 2)
    assert b0["aud_target_response_rate"] == pytest.approx(1 / 2)
    assert b0["aud_nontarget_response_rate"] == 0.0
    assert b1["vis_nontarget_response_rate"] == 1.0


def test_cross_modality_dprime_uses_other_modality_target_false_alarms() -> None:
    perf = performance_from_trials(_trials(ROWS))
    from scipy.special import ndtri as ppf

    # block 0: hit 2/3 (n=3); FA on the aud target = 1/2 (n=2)
    exp0 = ppf(2 / 3) - ppf(1 / 2)
    # block 1: hit 2/2 -> 1 - 0.5/2; FA on the vis target 0/1 -> 0.5/1
    exp1 = ppf(1 - 0.25) - ppf(0.5)
    np.testing.assert_allclose(perf["cross_modality_dprime"], [exp0, exp1])
    np.testing.assert_allclose(perf["signed_cross_modality_dprime"], [exp0, -exp1])


def test_vis_and_aud_dprime_from_target_and_nontarget_trials() -> None:
    from scipy.special import ndtri as ppf

    perf = performance_from_trials(_trials(ROWS))
    # block 0 vis: hits on vis1 2/3; FA on vis2 0/1 -> 0.5
    assert perf["vis_dprime"][0] == pytest.approx(ppf(2 / 3) - ppf(0.5))
    # block 0 aud: sound1 is not go in a vis block -> hit rate 0/2 -> 0.25; FA on sound2 0/1 -> 0.5
    assert perf["aud_dprime"][0] == pytest.approx(ppf(0.25) - ppf(0.5))


def test_dprime_rule_matches_dynamicroutingtask_calcdprime() -> None:
    pytest.importorskip("DynamicRoutingTask")
    from DynamicRoutingTask.Analysis.DynamicRoutingAnalysisUtils import calcDprime

    cases = [(0.0, 0.0, 10, 5), (1.0, 0.2, 8, 10), (0.7, 1.0, 20, 4), (0.5, 0.5, 3, 3)]
    for hr, far, ng, nn in cases:
        assert dprime(hr, far, ng, nn) == pytest.approx(calcDprime(hr, far, ng, nn))
    assert np.isnan(dprime(np.nan, 0.5, 0, 4))


def _perf(blocks: list[tuple[str, float, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "rewarded_modality": [b[0] for b in blocks],
            "cross_modality_dprime": [b[1] for b in blocks],
            "n_trials": [b[2] for b in blocks],
            "n_contingent_rewards": [b[3] for b in blocks],
        }
    )


def test_session_flags_engaged_and_good_behavior_thresholds() -> None:
    good = _perf(
        [("vis", 1.5, 40, 12), ("aud", 1.2, 40, 10), ("vis", 1.0, 40, 11), ("aud", 2, 40, 15)]
    )
    assert session_flags(good) == {"is_engaged": True, "is_good_behavior": True}
    one_aud = _perf(
        [("vis", 1.5, 40, 12), ("aud", 0.9, 40, 10), ("vis", 1.0, 40, 11), ("aud", 2, 40, 15)]
    )
    assert session_flags(one_aud) == {"is_engaged": True, "is_good_behavior": False}
    assert session_flags(one_aud, templeton=True)["is_good_behavior"] is False
    few_rewards = _perf(
        [("vis", 1.5, 40, 9), ("aud", 1.2, 40, 10), ("vis", 1.0, 40, 11), ("aud", 2, 40, 15)]
    )
    assert session_flags(few_rewards) == {"is_engaged": False, "is_good_behavior": False}


def test_performance_component_and_empty_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import performance

    raw = make_raw(tmp_path, monkeypatch)
    perf = performance(raw)
    assert perf["block_index"].to_list() == [0, 1]
    assert perf["n_trials"].to_list() == [4, 3]
    assert perf["is_first_block_aud"].to_list() == [False, False]
    assert performance_from_trials(TRIALS.empty()).height == 0


# ------------------------------------------------------------------ synthetic session (truth)
def _independent_performance(t: Any) -> dict[int, dict[str, float]]:
    """Performance per block computed straight from the truth trials with numpy (no polars)."""
    from scipy.special import ndtri

    def a(k: str) -> np.ndarray:
        return np.asarray(t[k])

    def d(hr: float, far: float, n1: int, n2: int) -> float:
        if n1 == 0 or n2 == 0:
            return float("nan")
        hr = 0.5 / n1 if hr == 0 else (1 - 0.5 / n1 if hr == 1 else hr)
        far = 0.5 / n2 if far == 0 else (1 - 0.5 / n2 if far == 1 else far)
        return float(ndtri(hr) - ndtri(far))

    out = {}
    for b in np.unique(a("block_index")):
        m = a("block_index") == b
        go, nogo, hit, fa = (a(k)[m] for k in ("is_go", "is_nogo", "is_hit", "is_false_alarm"))
        vis_block = a("rewarded_modality")[m][0] == "vis"
        other_t = a("is_aud_target")[m] if vis_block else a("is_vis_target")[m]
        hr = hit.sum() / go.sum()
        far_other = (fa & other_t).sum() / other_t.sum()
        vt, vnt = a("is_vis_target")[m], a("is_vis_nontarget")[m]
        out[int(b)] = {
            "n_trials": float(m.sum()),
            "n_hits": float(hit.sum()),
            "hit_rate": hr,
            "false_alarm_rate": fa.sum() / nogo.sum(),
            "cross_modality_dprime": d(hr, far_other, int(go.sum()), int(other_t.sum())),
            "vis_dprime": d(
                (hit & vt).sum() / vt.sum(),
                (fa & vnt).sum() / vnt.sum(),
                int(vt.sum()),
                int(vnt.sum()),
            ),
        }
    return out


def test_synth_performance_equals_independent_computation_from_truth(
    synth_session: Any, synth_raw: Any
) -> None:
    from npc_frames.components import get

    truth = next(s for s in synth_session.scripts if s["script_name"] == "DynamicRouting1")
    expected = _independent_performance(truth["truth"]["trials"])
    perf = get("performance")(synth_raw)
    assert perf["block_index"].to_list() == sorted(expected)
    for row in perf.iter_rows(named=True):
        exp = expected[row["block_index"]]
        for k, v in exp.items():
            assert row[k] == pytest.approx(v, nan_ok=True), (row["block_index"], k)
