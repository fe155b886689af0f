"""Simulate one DynamicRouting1 session (task logic of FORMATS §4) with a simulated mouse.

The task logic follows ``DynamicRouting1.taskFlow`` frame by frame, but is evaluated per trial:
frames are pre-generated (vectorized), and within a trial the only frame-dependent inputs are the
lick detections (first poll of a sensor contact), which are produced in time order by
:class:`~npc_frames.synth.task_base.LickModel`:

* pre-stimulus period ``90 + Exp(60)`` frames (capped 360; first trial + 180); a lick detected with
  ``pre - 90 < trialFrame < pre`` is a quiescent violation and extends ``pre`` by a new draw;
* response window ``[stim + 6, stim + 60)``; go-trial responses are rewarded on the response frame;
  scheduled auto-rewards (5 per block, or after 10 consecutive misses) at ``stim + 60``;
* a response to a non-rewarded, non-catch stimulus starts a 180-frame timeout and (up to 3 times) a
  repeat of the same stimulus on the next trial;
* trial ends at ``stim + 60 + 180 + timeout``; the next trial starts on the following frame;
* blocks last ``framesPerBlock`` frames (switching at the first non-repeat trial start after that);
  the session stops after the last block's frames, usually inside an incomplete last trial.

Simulated mouse: context-dependent response probabilities (hit ~0.85, other-modality target ~0.15,
higher for the previously rewarded target right after a switch, non-targets ~0.04, catch ~0.02)
plus spontaneous Poisson lick bouts (some contacts shorter than a frame, some > 0.5 s).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from npc_frames.synth.task_base import (
    FRAME_PERIOD,
    FloatArray,
    Frames,
    LickModel,
    RunContext,
    ScriptRun,
    active_duration,
    db_to_volume,
    finish_run,
    make_frames,
    opto_waveform,
    q,
    sound_array,
    sound_samples,
)

__all__ = ["simulate_dynamic_routing"]

logger = logging.getLogger(__name__)

QUIESCENT_FRAMES = 90
RESPONSE_WINDOW = (6, 60)
POST_RESPONSE_FRAMES = 180
AUTO_REWARD_ONSET = 60
TIMEOUT_FRAMES = 180
REPEATS = 3
NEW_BLOCK_GO = 5
AUTO_REWARD_MISSES = 10
CATCH_PROB = 0.1
SOUND_DUR = 0.5
SOUND_RATE = 48000
#: ``soundHanningDur`` written by the common keys (s)
HANNING_DUR = 0.005
OPTO_RATE = 2000
N_BLOCKS = 6

#: DynamicRouting1 opto condition (one optoParams row): 1 s at 5 mW, 0.1 s off-ramp, over V1.
OPTO_DUR = 1.0
OPTO_OFF_RAMP = 0.1
OPTO_POWER = 5.0
OPTO_BREGMA = (-3.5, -2.8)

#: opto-power calibration: power (mW) = polyval(POLY, volts); concave, offsetV = lower root.
OPTO_POLY = np.array([-0.5, 4.2, -1.6])


def _pre_stim_frames(rng: np.random.Generator) -> int:
    return int(min(90 + rng.exponential(60.0), 360))


def opto_calibration() -> dict[str, Any]:
    """Return an ``optoPowerCalibrationData`` group (input V, power mW, quadratic fit, offsetV)."""
    volts = np.linspace(0.4, 3.0, 14)
    power = np.polyval(OPTO_POLY, volts)
    return {
        "input (V)": volts.tolist(),
        "power (mW)": power.tolist(),
        "poly coefficients": OPTO_POLY,
        "offsetV": float(np.min(np.roots(OPTO_POLY))),
    }


def power_to_volts(power: float) -> float:
    """Return the command voltage giving ``power`` mW with :data:`OPTO_POLY`."""
    p = OPTO_POLY.copy()
    p[-1] -= power
    return float(np.min(np.roots(p)))


def _consume_pre(
    pending: list[int], s: int, pre: int, violations: list[int], rng: np.random.Generator
) -> tuple[list[int], int]:
    """Return (detections at/after the stimulus frame, final pre-stim frames) of one trial.

    Walks lick detections in frame order as the task does: a detection with
    ``pre - quiescentFrames < trialFrame < pre`` is recorded as a violation and extends ``pre``.
    """
    rest = sorted(pending)
    i = 0
    while i < len(rest) and rest[i] < s + pre:
        if pre - QUIESCENT_FRAMES < rest[i] - s:
            violations.append(rest[i])
            pre += _pre_stim_frames(rng)
        i += 1
    return rest[i:], pre


def _response_prob(stim: str, rewarded: str, previous_rewarded: str | None, idx: int) -> float:
    if stim == "catch":
        return 0.02
    if stim == rewarded:
        # after a switch the mouse needs a few trials to adopt the new context
        return 0.85 if previous_rewarded is None else min(0.85, 0.4 + 0.15 * idx)
    if stim in ("vis1", "sound1"):
        return 0.45 if (stim == previous_rewarded and idx < 10) else 0.15
    return 0.04


def simulate_dynamic_routing(
    ctx: RunContext,
    *,
    first_flip: float,
    task_minutes: float,
    opto: bool,
    task_version: str,
) -> ScriptRun:
    """Return the :class:`ScriptRun` of a simulated DynamicRouting1 session (writes its stim file)."""
    rng = ctx.rng
    frames_per_block = max(round(task_minutes / N_BLOCKS * 3600), 600)
    # Deliberate deviation for short synthetic sessions: blocks shorter than 5 min get fewer
    # instruction trials (stored in newBlockGoTrials/newBlockAutoRewards, so parsers still agree),
    # otherwise a 2-minute session would contain nothing but instruction trials.
    new_block_go = NEW_BLOCK_GO if frames_per_block >= 5 * 3600 else 1
    n_max = N_BLOCKS * frames_per_block + N_BLOCKS * 4000 + 4000
    frames = make_frames(rng, n_max, first_flip)
    poll, flip, display = frames.poll, frames.flip, frames.display
    licks = LickModel(rng=rng, poll=poll, spont_rate=0.1)

    block_rewarded = ["vis1", "sound1"] * 3 if rng.random() < 0.5 else ["sound1", "vis1"] * 3
    amn = "AMN" in task_version
    sound_type = "AM noise" if amn else "tone"
    tone_freq = {"sound1": 6000, "sound2": 10000}
    am_freq = {"sound1": 12, "sound2": 70}
    sound_volume = db_to_volume(68.0)
    n_sound = sound_samples(SOUND_RATE, SOUND_DUR)
    grating_tf = 2 if "moving" in task_version else 0
    timeout_frames = TIMEOUT_FRAMES if "timeouts" in task_version else 0
    repeats = REPEATS if "repeats" in task_version else 0

    opto_power = OPTO_POWER
    opto_volts = power_to_volts(opto_power)
    opto_dur, opto_off_ramp = OPTO_DUR, OPTO_OFF_RAMP
    opto_wave = opto_waveform(OPTO_RATE, opto_volts, opto_dur, off_ramp=opto_off_ramp)
    opto_active_start, opto_active_dur = active_duration(opto_wave, OPTO_RATE)

    # per-trial lists written to the file (appended as the task would)
    rec: dict[str, list[Any]] = {
        k: []
        for k in (
            "trialStartFrame",
            "trialEndFrame",
            "trialPreStimFrames",
            "trialStimStartFrame",
            "trialStim",
            "trialBlock",
            "trialVisStimFrames",
            "trialVisStimContrast",
            "trialGratingOri",
            "trialGratingPhase",
            "trialSoundType",
            "trialSoundDur",
            "trialSoundVolume",
            "trialSoundFreq",
            "trialSoundAM",
            "trialSoundSeed",
            "trialResponse",
            "trialResponseFrame",
            "trialRewarded",
            "trialAutoRewardScheduled",
            "trialAutoRewarded",
            "trialHasOptoQuiescentViolation",
            "trialOptoItiOnsetFrame",
            "trialOptoLabel",
            "trialOptoParamsIndex",
            "trialOptoDevice",
            "trialOptoOnsetFrame",
            "trialOptoDur",
            "trialOptoDelay",
            "trialOptoOnRamp",
            "trialOptoOffRamp",
            "trialOptoSinFreq",
            "trialOptoVoltage",
            "trialGalvoX",
            "trialGalvoY",
            "trialGalvoDwellTime",
        )
    }
    trial_repeat: list[bool] = [False]
    quiescent_violations: list[int] = []
    reward_frames: list[int] = []
    reward_is_auto: list[bool] = []
    sound_rise: list[float] = []
    sound_fall: list[float] = []
    opto_rise: list[float] = []
    opto_fall: list[float] = []
    # truth per started trial (trimmed to completed trials at the end)
    t_timeout: list[bool] = []
    t_sound_onset: list[float] = []
    t_opto: list[tuple[float, float]] = []
    t_reward_time: list[float] = []
    t_block_trial: list[int] = []

    block = 0
    block_start = 0
    block_trials = 0
    block_auto = 0
    miss_count = 0
    repeat_count = 0
    stim_sample: list[str] = []
    params: dict[str, Any] = {}
    pending: list[int] = []
    n_opto = 0
    last_frame = n_max - 1  # replaced once the last block starts
    s = 0
    while s <= last_frame:
        is_repeat = trial_repeat[-1]
        if not is_repeat:
            if block == 0 or (block < N_BLOCKS and s - block_start >= frames_per_block):
                block += 1
                block_start = s
                block_trials = block_auto = miss_count = repeat_count = 0
                stim_sample = []
                if block == N_BLOCKS:
                    last_frame = block_start + frames_per_block - 1
            rewarded = block_rewarded[block - 1]
            if block_trials < new_block_go:
                stim = rewarded
            elif rng.random() < CATCH_PROB:
                stim = "catch"
            else:
                if not stim_sample:
                    stim_sample = list(rng.permutation(["vis1", "vis2", "sound1", "sound2"] * 5))
                stim = str(stim_sample.pop(0))
            is_vis, is_aud = "vis" in stim, "sound" in stim
            params = {
                "vis_frames": 30 if is_vis else 0,
                "contrast": 1.0 if is_vis else 0.0,
                "ori": (0.0 if stim == "vis1" else 90.0) if is_vis else 0.0,
                "phase": float(rng.choice([0.0, 0.5])) if is_vis else 0.0,
                "sound_type": sound_type if is_aud else "",
                "sound_dur": SOUND_DUR if is_aud else 0.0,
                "sound_vol": sound_volume if is_aud else 0.0,
                "sound_freq": (
                    ([tone_freq[stim], np.nan] if not amn else [2000.0, 20000.0])
                    if is_aud
                    else [np.nan, np.nan]
                ),
                "sound_am": float(am_freq[stim]) if (is_aud and amn) else np.nan,
                "sound_seed": int(rng.integers(0, 2**32)),
            }
        else:
            stim = rec["trialStim"][-1]
        rewarded = block_rewarded[block - 1]
        previous_rewarded = block_rewarded[block - 2] if block > 1 else None
        is_go = rewarded in stim
        scheduled = False
        if is_go and (block_auto < new_block_go or miss_count == AUTO_REWARD_MISSES):
            scheduled = True
            block_auto += 1
        # The first two eligible trials always get opto: with a single opto trial npc would read
        # its relative onset (0) as "strictly increasing" and take it as an absolute frame (§3.6).
        is_opto = bool(opto and block_trials >= new_block_go and (n_opto < 2 or rng.random() < 0.3))
        n_opto += is_opto

        # --- pre-stimulus period with quiescent violations
        pre = _pre_stim_frames(rng) + (POST_RESPONSE_FRAMES if s == 0 else 0)
        n_viol_before = len(quiescent_violations)

        pending, pre = _consume_pre(pending, s, pre, quiescent_violations, rng)
        cursor = float(poll[s])
        while s + pre < n_max - 400:
            bout = licks.next_bout(cursor, float(poll[s + pre]))
            if bout is None:
                break
            pending, pre = _consume_pre(pending + bout, s, pre, quiescent_violations, rng)
            cursor = licks.free_from
        stim_frame = s + pre
        if stim_frame >= n_max - 400:
            break  # cannot happen for sane parameters; guards the pre-generated frame buffer

        # --- stimulus, response
        is_aud = "sound" in stim
        stim_time = float(display[stim_frame])
        sound_onset = np.nan
        if is_aud:
            sound_onset = float(
                q(flip[stim_frame] + np.clip(rng.normal(0.010, 0.0015), 0.005, 0.02))
            )
            stim_time = sound_onset
        if rng.random() < _response_prob(stim, rewarded, previous_rewarded, block_trials):
            rt = 0.12 + float(rng.gamma(4.0, 0.06))
            pending += licks.bout(stim_time + min(rt, 0.93), int(rng.integers(2, 4)))
        else:
            window_end = float(poll[stim_frame + RESPONSE_WINDOW[1]])
            while True:
                # a mouse withholding its response also licks less spontaneously
                bout = licks.next_bout(max(cursor, float(poll[stim_frame])), window_end, 0.03)
                if bout is None:
                    break
                pending += bout
                cursor = licks.free_from
        in_window = [
            f
            for f in sorted(pending)
            if stim_frame + RESPONSE_WINDOW[0] <= f < stim_frame + RESPONSE_WINDOW[1]
        ]
        response_frame = in_window[0] if in_window else None
        reward_frame: int | None = None
        auto_delivered = False
        trial_timeout = 0
        if response_frame is not None:
            if is_go:
                reward_frame = response_frame
            elif stim != "catch":
                trial_timeout = timeout_frames
        if reward_frame is None and scheduled:
            reward_frame = stim_frame + AUTO_REWARD_ONSET
            auto_delivered = True
        if reward_frame is not None:
            # consumption bout (after the probe licks, or after an auto-reward)
            start = max(licks.free_from, float(flip[reward_frame]) + rng.uniform(0.05, 0.4))
            if response_frame is not None or rng.random() < 0.9:
                pending += licks.bout(start, int(rng.integers(6, 13)))
        end_frame = stim_frame + RESPONSE_WINDOW[1] + POST_RESPONSE_FRAMES + trial_timeout
        cursor = max(licks.free_from, float(poll[stim_frame + RESPONSE_WINDOW[1]]))
        while True:
            bout = licks.next_bout(cursor, float(poll[end_frame]))
            if bout is None:
                break
            pending += bout
            cursor = licks.free_from
        pending = [f for f in pending if f > end_frame]

        # --- record what the task would have appended by the last frame
        rec["trialStartFrame"].append(s)
        rec["trialPreStimFrames"].append(pre)
        rec["trialStim"].append(stim)
        rec["trialBlock"].append(block)
        rec["trialVisStimFrames"].append(params["vis_frames"])
        rec["trialVisStimContrast"].append(params["contrast"])
        rec["trialGratingOri"].append(params["ori"])
        rec["trialGratingPhase"].append(params["phase"])
        rec["trialSoundType"].append(params["sound_type"])
        rec["trialSoundDur"].append(params["sound_dur"])
        rec["trialSoundVolume"].append(params["sound_vol"])
        rec["trialSoundFreq"].append(params["sound_freq"])
        rec["trialSoundAM"].append(params["sound_am"])
        rec["trialSoundSeed"].append(params["sound_seed"])
        rec["trialAutoRewardScheduled"].append(scheduled)
        rec["trialHasOptoQuiescentViolation"].append(False)
        if opto:
            rec["trialOptoLabel"].append("V1" if is_opto else "no opto")
            rec["trialOptoParamsIndex"].append(0.0 if is_opto else np.nan)
            rec["trialOptoDevice"].append(["laser_488"] if is_opto else [""])
            rec["trialOptoOnsetFrame"].append(0.0 if is_opto else np.nan)
            for key, value in (
                ("trialOptoDur", opto_dur),
                ("trialOptoDelay", 0.0),
                ("trialOptoOnRamp", 0.0),
                ("trialOptoOffRamp", opto_off_ramp),
                ("trialOptoSinFreq", 0.0),
                ("trialOptoVoltage", opto_volts),
                ("trialGalvoX", -0.2),
                ("trialGalvoY", -0.35),
            ):
                rec[key].append([value if is_opto else np.nan])
            rec["trialGalvoDwellTime"].append(0.005 if is_opto else np.nan)
        t_block_trial.append(block_trials)
        t_timeout.append(trial_timeout > 0)
        if stim_frame <= last_frame:
            rec["trialStimStartFrame"].append(stim_frame)
            if is_aud:
                sound_rise.append(sound_onset)
                sound_fall.append(float(q(sound_onset + (n_sound - 1) / SOUND_RATE)))
        t_sound_onset.append(sound_onset)
        opto_times = (np.nan, np.nan)
        if is_opto and stim_frame <= last_frame:
            rise = float(q(flip[stim_frame] + rng.uniform(5e-4, 1.5e-3) + opto_active_start))
            fall = float(q(rise + opto_active_dur))
            opto_rise.append(rise)
            opto_fall.append(fall)
            opto_times = (rise, fall)
        t_opto.append(opto_times)
        if response_frame is not None and response_frame <= last_frame:
            rec["trialResponse"].append(True)
            rec["trialResponseFrame"].append(float(response_frame))
        if reward_frame is not None and reward_frame <= last_frame:
            reward_frames.append(reward_frame)
            reward_is_auto.append(auto_delivered)
            rec["trialRewarded"].append(True)
            if auto_delivered:
                rec["trialAutoRewarded"].append(True)
        t_reward_time.append(float(flip[reward_frame]) if reward_frame is not None else np.nan)
        if end_frame > last_frame:
            # incomplete last trial: violations up to the last frame only
            quiescent_violations[n_viol_before:] = [
                f for f in quiescent_violations[n_viol_before:] if f <= last_frame
            ]
            break
        if response_frame is None:
            rec["trialResponse"].append(False)
            rec["trialResponseFrame"].append(np.nan)
        if reward_frame is None:
            rec["trialRewarded"].append(False)
        if not auto_delivered:
            rec["trialAutoRewarded"].append(False)
        rec["trialOptoItiOnsetFrame"].append(np.nan)
        if is_go:
            miss_count = (
                0 if (response_frame is not None or reward_frame is not None) else miss_count + 1
            )
        rec["trialEndFrame"].append(end_frame)
        block_trials += 1
        if (
            (not is_go)
            and stim != "catch"
            and response_frame is not None
            and repeat_count < repeats
        ):
            repeat_count += 1
            trial_repeat.append(True)
        else:
            repeat_count = 0
            trial_repeat.append(False)
        s = end_frame + 1

    n_frames = last_frame + 1
    frames = frames.truncate(n_frames)
    n = len(rec["trialEndFrame"])

    attrs = _task_attrs(
        rec,
        trial_repeat,
        quiescent_violations,
        block_rewarded=block_rewarded,
        frames_per_block=frames_per_block,
        new_block_go=new_block_go,
        sound_type=sound_type,
        grating_tf=grating_tf,
        timeout_frames=timeout_frames,
        repeats=repeats,
        sound_volume=sound_volume,
        opto=opto,
        opto_power=opto_power,
        opto_volts=opto_volts,
        opto_dur=opto_dur,
        opto_off_ramp=opto_off_ramp,
    )
    if ctx.save_sound_array:
        attrs["saveSoundArray"] = 1
        attrs["trialSoundArray"] = _saved_sounds(rec)
    truth = {
        "trials": _trials_truth(
            frames,
            rec,
            trial_repeat,
            n=n,
            block_rewarded=block_rewarded,
            timeouts=np.array(t_timeout[:n], dtype=bool),
            sound_onset=np.array(t_sound_onset[:n]),
            opto_times=np.array(t_opto[:n], dtype=np.float64).reshape(n, 2),
            block_trial=np.array(t_block_trial[:n]),
            lick_onsets=np.asarray(licks.onsets),
            n_sound=n_sound,
            timeout_frames=timeout_frames,
            new_block_go=new_block_go,
        ),
        "quiescent_violations": {
            "frame": sorted(set(quiescent_violations)),
            "timestamps": frames.input_time(sorted(set(quiescent_violations))).tolist(),
        },
        "block_stim_rewarded": list(block_rewarded),
        "frames_per_block": frames_per_block,
        "reward_is_auto": reward_is_auto,
        "n_trials": n,
    }
    lines = {
        1: (np.array(sound_rise), np.array(sound_fall))
        if ctx.sound_on_sync
        else (np.zeros(0), np.zeros(0)),
        11: (np.array(opto_rise), np.array(opto_fall)),
    }
    return finish_run(
        ctx,
        script="DynamicRouting1",
        frames=frames,
        task_version=task_version,
        licks=licks,
        reward_frames=reward_frames,
        script_attrs=attrs,
        lines=lines,
        truth=truth,
    )


def _saved_sounds(rec: dict[str, list[Any]]) -> list[FloatArray]:
    """Return each trial's sound waveform as the task saves it (empty for trials without sound)."""
    out: list[FloatArray] = []
    for kind, dur, vol, freq, am, seed in zip(  # one waveform per trial (cached per parameters)
        rec["trialSoundType"],
        rec["trialSoundDur"],
        rec["trialSoundVolume"],
        rec["trialSoundFreq"],
        rec["trialSoundAM"],
        rec["trialSoundSeed"],
        strict=False,
    ):
        if not kind:
            out.append(np.zeros(0))
            continue
        out.append(
            sound_array(
                kind,
                sample_rate=SOUND_RATE,
                dur=dur,
                hanning_dur=HANNING_DUR,
                vol=vol,
                freq=tuple(f for f in freq if np.isfinite(f)),
                am=am,
                seed=int(seed),
            )
        )
    return out


def _task_attrs(
    rec: dict[str, list[Any]],
    trial_repeat: list[bool],
    quiescent_violations: list[int],
    *,
    block_rewarded: list[str],
    frames_per_block: int,
    new_block_go: int,
    sound_type: str,
    grating_tf: float,
    timeout_frames: int,
    repeats: int,
    sound_volume: float,
    opto: bool,
    opto_power: float,
    opto_volts: float,
    opto_dur: float,
    opto_off_ramp: float,
) -> dict[str, Any]:
    """Return DynamicRouting1's own attributes (FORMATS §4) from the recorded trial lists."""
    a: dict[str, Any] = {
        "maxTrials": None,
        "blockStim": [["vis1", "vis2", "sound1", "sound2"]] * N_BLOCKS,
        "blockStimRewarded": block_rewarded,
        "blockStimProb": None,
        "customSampling": False,
        "evenSampling": True,
        "minUnimodalTrials": 0,
        "blockCatchProb": [CATCH_PROB] * N_BLOCKS,
        "newBlockAutoRewards": new_block_go,
        "newBlockGoTrials": new_block_go,
        "newBlockNogoTrials": 0,
        "firstBlockNogoStim": None,
        "newBlockCatchTrials": 0,
        "trialsPerBlock": None,
        "framesPerBlock": np.full(N_BLOCKS, frames_per_block, dtype=np.int64),
        "variableBlocks": False,
        "variableBlockMinFrames": 36000,
        "variableBlockMaxFrames": 108000,
        "variableBlockThresholdTrials": 10,
        "variableBlockHitThreshold": 0.8,
        "variableBlockFalseAlarmThreshold": 0.4,
        "preStimFramesFixed": 90,
        "preStimFramesVariableMean": 60,
        "preStimFramesMax": 360,
        "quiescentFrames": QUIESCENT_FRAMES,
        "responseWindow": list(RESPONSE_WINDOW),
        "postResponseWindowFrames": POST_RESPONSE_FRAMES,
        "autoRewardOnsetFrame": AUTO_REWARD_ONSET,
        "autoRewardMissTrials": AUTO_REWARD_MISSES,
        "rewardProbGo": 1,
        "rewardProbCatch": 0,
        "rewardSound": "device",
        "rewardSoundDur": 0.1,
        "rewardSoundVolume": 0.1,
        "rewardSoundLevel": 68,
        "rewardSoundFreq": 10000,
        "incorrectTrialRepeats": repeats,
        "incorrectTimeoutFrames": timeout_frames,
        "incorrectTimeoutColor": -1 if timeout_frames else 0,
        "incorrectSound": None,
        "incorrectSoundDur": 3,
        "incorrectSoundVolume": 0.1,
        "incorrectSoundLevel": 68,
        "incorrectSoundFreq": [2000, 20000],
        "visStimType": "grating",
        "visStimFrames": [30],
        "visStimContrast": [1],
        "gratingSize": 50,
        "gratingSF": 0.04,
        "gratingTF": grating_tf,
        "gratingOri": {"vis1": [0], "vis2": [90]},
        "gratingPhase": [0, 0.5],
        "gratingType": "sqr",
        "gratingEdge": "raisedCos",
        "gratingEdgeBlurWidth": 0.08,
        "saveSoundArray": 0,
        "soundType": sound_type,
        "soundDur": [SOUND_DUR],
        "soundVolume": [sound_volume],
        "soundLevel": [68],
        "toneFreq": {"sound1": 6000, "sound2": 10000},
        "linearSweepFreq": {"sound1": [6000, 10000], "sound2": [10000, 6000]},
        "logSweepFreq": {"sound1": [3, 2.5], "sound2": [3, 3.5]},
        "noiseFiltFreq": {"sound1": [4000, 8000], "sound2": [8000, 16000]},
        "ampModFreq": {"sound1": 12, "sound2": 70},
        "optoLabel": "opto",
        "importOptoParams": bool(opto),
        "optoDevName": "laser_488",
        "optoOffsetVoltage": {"laser_488": float(np.min(np.roots(OPTO_POLY)))},
        "optoProb": 0,
        "optoNewBlocks": [],
        "optoFeedbackBlocks": [],
        "optoOnsetFrame": [],
        "optoDur": [],
        "optoSinFreq": 0,
        "optoOnRamp": 0,
        "optoOffRamp": 0.1,
        "optoVoltage": [],
        "galvoX": [],
        "galvoY": [],
        "galvoDwellTime": 0.005,
        "optoParams": None,
        "trialRepeat": np.array(trial_repeat, dtype=bool),
        "quiescentViolationFrames": np.array(quiescent_violations, dtype=np.int64),
        "trialSoundArray": [],
    }
    for key, values in rec.items():
        if key.startswith("trialOpto") or key.startswith("trialGalvo"):
            continue
        a[key] = values
    for key in (
        "trialResponse",
        "trialRewarded",
        "trialAutoRewardScheduled",
        "trialAutoRewarded",
        "trialHasOptoQuiescentViolation",
    ):
        a[key] = np.array(rec[key], dtype=bool)
    a["trialResponseFrame"] = np.array(rec["trialResponseFrame"], dtype=np.float64)
    a["trialSoundFreq"] = np.array(rec["trialSoundFreq"], dtype=np.float64).reshape(-1, 2)
    a["trialSoundSeed"] = np.array(rec["trialSoundSeed"], dtype=np.int64)
    a["trialOptoItiOnsetFrame"] = np.array(rec["trialOptoItiOnsetFrame"], dtype=np.float64)
    if opto:
        a["optoParams"] = {
            "label": ["V1"],
            "device": [["laser_488"]],
            "probability": [0.3],
            "bregmaX": [OPTO_BREGMA[0]],
            "bregmaY": [OPTO_BREGMA[1]],
            "bregma offset X": [0.0],
            "bregma offset Y": [0.0],
            "power": [opto_power],
            "frequency": [0.0],
            "delay": [0.0],
            "duration": [opto_dur],
            "on ramp": [0.0],
            "off ramp": [opto_off_ramp],
            "dwell time": [0.005],
            "onset frame": [0],
            "galvoX": [-0.2],
            "galvoY": [-0.35],
            "optoVoltage": [opto_volts],
        }
        a["optoPowerCalibrationData"] = opto_calibration()
        a["trialOptoLabel"] = rec["trialOptoLabel"]
        a["trialOptoDevice"] = rec["trialOptoDevice"]
        for key in ("trialOptoParamsIndex", "trialOptoOnsetFrame", "trialGalvoDwellTime"):
            a[key] = np.array(rec[key], dtype=np.float64)
        for key in (
            "trialOptoDur",
            "trialOptoDelay",
            "trialOptoOnRamp",
            "trialOptoOffRamp",
            "trialOptoSinFreq",
            "trialOptoVoltage",
            "trialGalvoX",
            "trialGalvoY",
        ):
            a[key] = np.array(rec[key], dtype=np.float64).reshape(-1, 1)
    else:
        for key in rec:
            if key.startswith("trialOpto") or key.startswith("trialGalvo"):
                a.setdefault(key, [])
        a["trialOptoItiOnsetFrame"] = np.array(rec["trialOptoItiOnsetFrame"], dtype=np.float64)
    return a


def _trials_truth(
    frames: Frames,
    rec: dict[str, list[Any]],
    trial_repeat: list[bool],
    *,
    n: int,
    block_rewarded: list[str],
    timeouts: np.ndarray,
    sound_onset: FloatArray,
    opto_times: FloatArray,
    block_trial: np.ndarray,
    lick_onsets: FloatArray,
    n_sound: int,
    timeout_frames: int,
    new_block_go: int,
) -> dict[str, list[Any]]:
    """Return the truth trials table (FORMATS §5.2 column names) of the ``n`` completed trials."""
    stim_frame = np.array(rec["trialStimStartFrame"][:n], dtype=np.int64)
    end_frame = np.array(rec["trialEndFrame"][:n], dtype=np.int64)
    stim = np.array(rec["trialStim"][:n], dtype=object)
    block_index = np.array(rec["trialBlock"][:n], dtype=np.int64) - 1
    rewarded_stim = np.array([block_rewarded[b] for b in block_index], dtype=object)
    vis_frames = np.array(rec["trialVisStimFrames"][:n], dtype=np.int64)
    is_vis = np.array(["vis" in s for s in stim], dtype=bool)
    is_aud = np.array(["sound" in s for s in stim], dtype=bool)
    is_catch = stim == "catch"
    response = np.array(rec["trialResponse"][:n], dtype=bool)
    response_frame = np.array(rec["trialResponseFrame"][:n], dtype=np.float64)
    rewarded = np.array(rec["trialRewarded"][:n], dtype=bool)
    scheduled = np.array(rec["trialAutoRewardScheduled"][:n], dtype=bool)
    auto = np.array(rec["trialAutoRewarded"][:n], dtype=bool)
    repeat = np.array(trial_repeat[:n], dtype=bool)
    is_go = stim == rewarded_stim
    is_nogo = (~is_go) & (~is_catch)

    display = frames.display
    stim_start = np.where(is_aud, sound_onset, display[stim_frame])
    stim_stop = np.where(
        is_aud,
        sound_onset + n_sound / SOUND_RATE,
        np.where(is_catch, display[stim_frame], display[stim_frame + vis_frames]),
    )
    rw_start = frames.input_time(stim_frame + RESPONSE_WINDOW[0])
    rw_stop = frames.flip[stim_frame + RESPONSE_WINDOW[1]]
    # first sync lick strictly inside the window
    j = np.searchsorted(lick_onsets, rw_start, side="right")
    cand = np.where(j < lick_onsets.size, lick_onsets[np.minimum(j, lick_onsets.size - 1)], np.inf)
    response_time = np.where(cand < rw_stop, cand, np.nan)
    timeout_start_frame = stim_frame + RESPONSE_WINDOW[1] + 1
    timeout_start = np.where(timeouts, frames.input_time(timeout_start_frame), np.nan)
    timeout_stop = np.where(
        timeouts,
        frames.at(np.where(timeouts, timeout_start_frame + timeout_frames, 0), "display"),
        np.nan,
    )
    post_start_frame = np.where(
        timeouts, timeout_start_frame + timeout_frames, stim_frame + RESPONSE_WINDOW[1]
    )
    is_opto = np.isfinite(opto_times[:, 0])
    targets = set(block_rewarded)
    is_target = np.array([x in targets for x in stim], dtype=bool)
    is_nontarget_vis = is_vis & ~is_target
    is_nontarget_aud = is_aud & ~is_target
    repeat_index = np.zeros(n)
    for i in range(1, n):
        repeat_index[i] = repeat_index[i - 1] + 1 if repeat[i] else 0
    phase = np.where(is_vis, np.array(rec["trialGratingPhase"][:n], dtype=np.float64), np.nan)
    return {
        "trial_index": list(range(n)),
        "block_index": block_index.tolist(),
        "trial_index_in_block": block_trial.tolist(),
        "rewarded_modality": ["vis" if "vis" in r else "aud" for r in rewarded_stim],
        "stim_name": stim.tolist(),
        "trial_start_frame": rec["trialStartFrame"][:n],
        "stim_start_frame": stim_frame.tolist(),
        "trial_end_frame": end_frame.tolist(),
        "response_frame": response_frame.tolist(),
        "start_time": frames.flip[stim_frame - QUIESCENT_FRAMES].tolist(),
        "stop_time": frames.flip[end_frame].tolist(),
        "quiescent_start_time": frames.flip[stim_frame - QUIESCENT_FRAMES].tolist(),
        "quiescent_stop_time": frames.input_time(stim_frame - 1).tolist(),
        "stim_start_time": stim_start.tolist(),
        "stim_stop_time": stim_stop.tolist(),
        "sound_onset_time": sound_onset.tolist(),
        "opto_start_time": opto_times[:, 0].tolist(),
        "opto_stop_time": opto_times[:, 1].tolist(),
        "response_window_start_time": rw_start.tolist(),
        "response_window_stop_time": rw_stop.tolist(),
        "task_control_response_time": frames.input_time(response_frame).tolist(),
        "response_time": response_time.tolist(),
        "reward_time": np.where(
            rewarded, frames.at(_reward_frames(stim_frame, response_frame, auto)), np.nan
        ).tolist(),
        "timeout_start_time": timeout_start.tolist(),
        "timeout_stop_time": timeout_stop.tolist(),
        "post_response_window_start_time": frames.at(post_start_frame, "display").tolist(),
        "post_response_window_stop_time": frames.at(
            post_start_frame + POST_RESPONSE_FRAMES, "display"
        ).tolist(),
        "grating_phase": phase.tolist(),
        "repeat_index": repeat_index.tolist(),
        "is_response": response.tolist(),
        "is_hit": (response & is_go).tolist(),
        "is_miss": (~response & is_go).tolist(),
        "is_false_alarm": (response & is_nogo).tolist(),
        "is_correct_reject": (~response & is_nogo).tolist(),
        "is_correct": (
            (response & is_go) | (~response & is_nogo) | (is_catch & ~response)
        ).tolist(),
        "is_incorrect": (
            (~response & is_go) | (response & is_nogo) | (is_catch & response)
        ).tolist(),
        "is_go": is_go.tolist(),
        "is_nogo": is_nogo.tolist(),
        "is_catch": is_catch.tolist(),
        "is_vis_stim": is_vis.tolist(),
        "is_aud_stim": is_aud.tolist(),
        "is_rewarded": rewarded.tolist(),
        "is_noncontingent_reward": auto.tolist(),
        "is_contingent_reward": (rewarded & ~auto).tolist(),
        "is_reward_scheduled": scheduled.tolist(),
        "is_instruction": (block_trial < new_block_go).tolist(),
        "is_repeat": repeat.tolist(),
        "is_timeout": timeouts.tolist(),
        "is_opto": is_opto.tolist(),
        "is_target": is_target.tolist(),
        "is_vis_target": (is_target & is_vis).tolist(),
        "is_aud_target": (is_target & is_aud).tolist(),
        "is_nontarget": (is_nontarget_vis | is_nontarget_aud).tolist(),
        "is_vis_nontarget": is_nontarget_vis.tolist(),
        "is_aud_nontarget": is_nontarget_aud.tolist(),
        "is_vis_rewarded": np.array(["vis" in r for r in rewarded_stim], dtype=bool).tolist(),
        "is_aud_rewarded": np.array(["sound" in r for r in rewarded_stim], dtype=bool).tolist(),
        "is_block_switch": ((block_trial == 0) & (block_index != 0)).tolist(),
        # §5.2 [quirk]: npc's formula is True where the two response times *disagree*; the truth
        # gives the meaning of the name (True where sync and task control agree on a response).
        "is_task_control_correct": (
            np.isnan(response_time) == np.isnan(frames.input_time(response_frame))
        ).tolist(),
        "opto_duration": np.where(is_opto, OPTO_DUR, np.nan).tolist(),
        "opto_power": np.where(is_opto, OPTO_POWER, np.nan).tolist(),
        "opto_wavelength": np.where(is_opto, 488.0, np.nan).tolist(),
        "opto_label": ["V1" if o else None for o in is_opto],
        "opto_stim_name": ["opto0_V1" if o else "" for o in is_opto],
        "opto_location_bregma_x": np.where(is_opto, OPTO_BREGMA[0], np.nan).tolist(),
        "opto_location_bregma_y": np.where(is_opto, OPTO_BREGMA[1], np.nan).tolist(),
    }


def _reward_frames(
    stim_frame: np.ndarray, response_frame: FloatArray, auto: np.ndarray
) -> FloatArray:
    """Return the frame each rewarded trial's reward was triggered on (auto: stim + 60)."""
    return np.where(auto, stim_frame + AUTO_REWARD_ONSET, response_frame)


_ = FRAME_PERIOD
