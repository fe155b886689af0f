"""Simulate the non-task scripts: RFMapping (§6.1), OptoTagging (§6.3), Spontaneous, LuminanceTest.

All are shortened in proportion to the task length (so a 2-minute synthetic session stays small)
while keeping at least a few trials of every kind.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from npc_frames.synth.task_base import (
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
    table,
)
from npc_frames.synth.task_dr import opto_calibration, power_to_volts

__all__ = [
    "simulate_luminance_test",
    "simulate_opto_tagging",
    "simulate_rf_mapping",
    "simulate_spontaneous",
    "write_optogui_files",
]

SOUND_RATE = 48000
OPTO_RATE = 2000
_Params = tuple[float, float, float, float, float, float]


def _spontaneous_licks(rng: np.random.Generator, frames: Frames, rate: float = 0.05) -> LickModel:
    licks = LickModel(rng=rng, poll=frames.poll, spont_rate=rate)
    stop = float(frames.flip[-1])
    cursor = float(frames.poll[0])
    while licks.next_bout(cursor, stop) is not None:
        cursor = licks.free_from
    return licks


def _sound_edges(
    ctx: RunContext, frames: Frames, trigger_frames: np.ndarray, n_samples: np.ndarray
) -> tuple[FloatArray, FloatArray]:
    """Return sound-line (rise, fall): DAQ start a few ms after the trigger flip, high n-1 samples."""
    lat = np.clip(ctx.rng.normal(0.010, 0.0015, trigger_frames.size), 0.005, 0.02)
    rise = q(frames.flip[trigger_frames] + lat)
    fall = q(rise + (n_samples - 1) / SOUND_RATE)
    return rise, fall


def simulate_rf_mapping(ctx: RunContext, *, first_flip: float, task_minutes: float) -> ScriptRun:
    """Return the :class:`ScriptRun` of an RFMapping run (~1/6 of the task length, ≤ 6 blocks)."""
    rng = ctx.rng
    stim_frames, inter_frames = 15, 15
    ppd = 0.5 * 1920 / np.degrees(np.arctan(0.5 * 52.0 / 15.3))
    grating_size_pix = 20 * ppd
    grid_x, grid_y = (
        np.linspace(
            -s / 2 + grating_size_pix / 2,
            s / 2 - grating_size_pix / 2,
            int(np.ceil(s / grating_size_pix)),
        )
        for s in (1920, 1200)
    )
    ori = np.arange(0, 360, 45)
    tones = np.arange(4000, 16001, 1000)
    am_freqs = [0, 12, 20, 40, 80]
    nan = np.nan
    k = len(ori) // 2
    kinds: dict[str, list[_Params]] = {
        "flash": k * [(c, nan, nan, nan, nan, nan) for c in (-1.0, 0.0, 1.0)],
        "grating": [
            (nan, float(x), float(y), float(o), nan, nan)
            for x, y, o in itertools.product(grid_x, grid_y, ori)
        ],
        "tone": k * [(nan, nan, nan, nan, float(f), nan) for f in tones],
        "am": k * [(nan, nan, nan, nan, nan, float(f)) for f in am_freqs],
    }
    block = [p for ps in kinds.values() for p in ps]
    trial_frames = stim_frames + inter_frames + 1
    n_target = max(int(task_minutes * 60 / 6 / (trial_frames / 60)), 24)
    trials: list[_Params] = []
    if n_target >= len(block):
        for _ in range(int(np.clip(round(n_target / len(block)), 1, 6))):
            trials += [block[i] for i in rng.permutation(len(block))]
    else:
        for params in kinds.values():
            m = int(np.clip(round(len(params) * n_target / len(block)), 3, len(params)))
            trials += [params[i] for i in rng.permutation(len(params))[:m]]
        trials = [trials[i] for i in rng.permutation(len(trials))]
    arr = np.array(trials, dtype=np.float64)
    n = arr.shape[0]
    contrast, gx, gy, gori, tone, am = arr.T
    frames = make_frames(rng, n * trial_frames, first_flip)
    start_frame = np.arange(n, dtype=np.int64) * trial_frames

    volume = db_to_volume(68.0)
    sound_dur = 0.25
    arrays: list[FloatArray] = []
    for t, a in zip(tone, am, strict=True):
        if np.isfinite(t):
            arrays.append(
                sound_array(
                    "tone",
                    sample_rate=SOUND_RATE,
                    dur=sound_dur,
                    hanning_dur=0.005,
                    vol=volume,
                    freq=(t,),
                )
            )
        elif np.isfinite(a):
            arrays.append(
                sound_array(
                    "AM noise",
                    sample_rate=SOUND_RATE,
                    dur=sound_dur,
                    hanning_dur=0.005,
                    vol=volume,
                    freq=(2000.0, 20000.0),
                    am=a,
                )
            )
        else:
            arrays.append(np.zeros(0))
    is_aud = np.isfinite(tone) | np.isfinite(am)
    is_vis = ~is_aud
    n_samples = np.array([a.size for a in arrays])
    rise, fall = _sound_edges(ctx, frames, start_frame[is_aud], n_samples[is_aud])

    attrs: dict[str, Any] = {
        "maxTrials": None,
        "maxBlocks": 6,
        "stimFrames": stim_frames,
        "interStimFrames": inter_frames,
        "warp": "spherical",
        "fullFieldContrast": [-1, 0, 1],
        "gratingContrast": 1,
        "gratingSize": 20,
        "gratingSF": 0.08,
        "gratingTF": 4,
        "gratingOri": ori,
        "gratingEdge": "raisedCos",
        "gratingEdgeBlurWidth": 0.08,
        "soundDur": sound_dur,
        "soundVolume": volume,
        "soundLevel": 68,
        "amNoiseFreq": am_freqs,
        "toneFreq": tones,
        "saveSoundArray": True,
        "soundRandomSeed": 0,
        "gridX": grid_x,
        "gridY": grid_y,
        "stimStartFrame": start_frame,
        "trialFullFieldContrast": contrast,
        "trialVisXY": np.stack([gx, gy], axis=1),
        "trialGratingOri": gori,
        "trialToneFreq": tone,
        "trialAMNoiseFreq": am,
        "trialSoundArray": arrays,
    }
    idx = np.arange(n)
    disp = frames.display
    vis = {
        "trial_index": idx[is_vis],
        "start_time": frames.flip[start_frame[is_vis]],
        "stop_time": frames.flip[start_frame[is_vis] + stim_frames + inter_frames],
        "stim_start_time": disp[start_frame[is_vis]],
        "stim_stop_time": disp[start_frame[is_vis] + stim_frames],
        "is_small_field_grating": np.isfinite(gori[is_vis]),
        "grating_orientation": gori[is_vis],
        "grating_x": gx[is_vis],
        "grating_y": gy[is_vis],
        "is_full_field_flash": np.isfinite(contrast[is_vis]),
        "flash_contrast": contrast[is_vis],
    }
    aud = {
        "trial_index": idx[is_aud],
        "start_time": frames.flip[start_frame[is_aud]],
        "stop_time": frames.flip[start_frame[is_aud] + stim_frames + inter_frames],
        "stim_start_time": rise,
        "stim_stop_time": rise + n_samples[is_aud] / SOUND_RATE,
        "is_AM_noise": np.isfinite(am[is_aud]),
        "is_white_noise": np.zeros(int(is_aud.sum()), dtype=bool),
        "is_pure_tone": np.isfinite(tone[is_aud]),
        "freq": np.where(np.isfinite(tone[is_aud]), tone[is_aud], am[is_aud]),
    }
    lines = {1: (rise, fall) if ctx.sound_on_sync else (np.zeros(0), np.zeros(0))}
    return finish_run(
        ctx,
        script="RFMapping",
        frames=frames,
        task_version=None,
        licks=_spontaneous_licks(rng, frames),
        reward_frames=[],
        script_attrs=attrs,
        lines=lines,
        truth={"vis_rf_mapping": table(vis), "aud_rf_mapping": table(aud), "n_trials": n},
    )


def simulate_opto_tagging(ctx: RunContext, *, first_flip: float, task_minutes: float) -> ScriptRun:
    """Return the :class:`ScriptRun` of an OptoTagging run (a few dozen to 100 trials)."""
    rng = ctx.rng
    durations = [0.01, 0.2]
    powers = [5.0]
    volts = [power_to_volts(p) for p in powers]
    calib = opto_calibration()
    offset_v = float(calib["offsetV"])
    labels = ["A", "C"]
    bregma = [(-3.2, -2.9), (-1.6, -3.4)]
    galvo = [(-0.25, -0.4), (0.15, -0.5)]  # the calibration of bregma (see _galvo_calibration)
    trials_per_type = int(np.clip(round(task_minutes * 2), 6, 25))
    combos = list(itertools.product(range(len(durations)), range(len(volts)), range(len(labels))))
    order: list[tuple[int, int, int]] = []
    for _ in range(trials_per_type):
        order += [combos[i] for i in rng.permutation(len(combos))]
    n = len(order)
    intervals = 60 + rng.integers(0, 7, n)  # interval before trial k+1, and after the last
    onset = 60 + np.concatenate(([0], np.cumsum(intervals[:-1]))).astype(np.int64)
    n_frames = int(onset[-1] + intervals[-1] + 1)
    frames = make_frames(rng, n_frames, first_flip)

    dur = np.array([durations[d] for d, _, _ in order])
    volt = np.array([volts[v] for _, v, _ in order])
    loc = [labels[g] for _, _, g in order]
    gv = np.array([galvo[g] for _, _, g in order])
    starts, lengths = np.zeros(n), np.zeros(n)
    for i in range(n):
        w = opto_waveform(
            OPTO_RATE, volt[i], dur[i], on_ramp=0.001, off_ramp=0.001, offset=offset_v
        )
        starts[i], lengths[i] = active_duration(w, OPTO_RATE)
    rise = q(frames.flip[onset] + rng.uniform(5e-4, 1.5e-3, n) + starts)
    fall = q(rise + lengths)

    attrs: dict[str, Any] = {
        "monBackgroundColor": -0.95,
        "maxTrials": None,
        "trialsPerType": trials_per_type,
        "optoPower": powers,
        "optoDur": durations,
        "optoOnRamp": 0.001,
        "optoOffRamp": 0.001,
        "optoInterval": 60,
        "optoIntervalJitter": 6,
        "optoTaggingLocs": {
            "label": labels,
            "device": [["laser_488"]] * len(labels),
            "bregmaX": [b[0] for b in bregma],
            "bregmaY": [b[1] for b in bregma],
            "bregma offset X": [0.0] * len(labels),
            "bregma offset Y": [0.0] * len(labels),
        },
        "bregmaXY": bregma,
        "bregmaOffsetXY": [(0.0, 0.0)] * len(labels),
        "bregmaGalvoCalibrationData": _galvo_calibration(),
        "galvoVoltage": galvo,
        "optoDev": "laser_488",
        "optoPowerCalibrationData": calib,
        "optoOffsetVoltage": offset_v,
        "optoVoltage": volts,
        "trialOptoOnsetFrame": onset,
        "trialOptoLabel": loc,
        "trialOptoDur": dur,
        "trialOptoVoltage": volt,
        "trialGalvoVoltage": gv,
    }
    analysis = min(0.2, 0.5 * 60 / 60)
    truth: dict[str, Any] = {
        "trial_index": np.arange(n),
        "start_time": rise - analysis,
        "stop_time": fall + analysis,
        "stim_start_time": rise,
        "stim_stop_time": fall,
        "baseline_start_time": rise - analysis,
        "baseline_stop_time": rise - 0.0015,
        "response_start_time": rise + 0.0015,
        "response_stop_time": fall - 0.0015,
        "stim_name": ["square"] * n,
        "nominal_duration": dur,
        "location": [f"probe{x}" for x in loc],
        "bregma_x": np.array([bregma[g][0] for _, _, g in order]),
        "bregma_y": np.array([bregma[g][1] for _, _, g in order]),
        "power": np.array([powers[v] for _, v, _ in order]),
        "wavelength": np.full(n, 488),
        "onset_frame": onset,
    }
    return finish_run(
        ctx,
        script="OptoTagging",
        frames=frames,
        task_version=None,
        licks=_spontaneous_licks(rng, frames),
        reward_frames=[],
        script_attrs=attrs,
        lines={11: (rise, fall)},
        truth={"optotagging": table(truth), "n_trials": n},
    )


def write_optogui_files(out_dir: Path, rig: str) -> dict[str, Any]:
    """Write the rig's OptoGui calibration files into ``<out_dir>/OptoGui/<rig>/``; return their
    truth (folder, files, the V -> mW polynomial, the bregma-galvo grid, the bregma offset).

    ``<rig>_laser_488_power.txt`` (the task files' power calibration), ``<rig>_bregma_galvo.txt``
    (the grid OptoTagging files carry) and ``<rig>_bregma_offset.txt`` (zero), tab-separated with
    a header line, as OptoGui writes them.
    """
    folder = Path(out_dir) / "OptoGui" / rig
    folder.mkdir(parents=True, exist_ok=True)
    calib = opto_calibration()
    grid = _galvo_calibration()

    def table(name: str, columns: dict[str, Any]) -> str:
        path = folder / f"{rig}_{name}.txt"
        rows = zip(*(np.ravel(v) for v in columns.values()), strict=True)
        lines = ["\t".join(columns)] + ["\t".join(f"{x:.10g}" for x in r) for r in rows]
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    files = [
        table(
            "laser_488_power", {"input (V)": calib["input (V)"], "power (mW)": calib["power (mW)"]}
        ),
        table("bregma_galvo", dict(grid)),
        table("bregma_offset", {"bregmaXOffset": [0.0], "bregmaYOffset": [0.0]}),
    ]
    return {
        "path": str(folder),
        "rig": rig,
        "files": files,
        "power_poly": np.asarray(calib["poly coefficients"], dtype=np.float64).tolist(),
        "bregma_galvo": grid,
        "bregma_offset": [0.0, 0.0],
    }


def _galvo_calibration() -> dict[str, list[float]]:
    bx, by = np.meshgrid(np.arange(-5.0, 1.01, 1.0), np.arange(-5.0, 0.01, 1.0), indexing="ij")
    return {
        "bregmaX": bx.ravel().tolist(),
        "bregmaY": by.ravel().tolist(),
        "galvoX": (0.25 * bx.ravel() + 0.55).tolist(),
        "galvoY": (0.2 * by.ravel() + 0.18).tolist(),
    }


def simulate_spontaneous(ctx: RunContext, *, first_flip: float, task_minutes: float) -> ScriptRun:
    """Return the :class:`ScriptRun` of a Spontaneous run (gray screen; frames only)."""
    seconds = float(np.clip(task_minutes * 60 / 9, 10.0, 600.0))
    frames = make_frames(ctx.rng, int(seconds * 60), first_flip)
    return finish_run(
        ctx,
        script="Spontaneous",
        frames=frames,
        task_version=None,
        licks=_spontaneous_licks(ctx.rng, frames),
        reward_frames=[],
        script_attrs={"maxFrames": int(seconds * 60)},
        lines={},
        truth={},
    )


def simulate_luminance_test(
    ctx: RunContext, *, first_flip: float, task_minutes: float
) -> ScriptRun:
    """Return the :class:`ScriptRun` of a LuminanceTest run (§6.5: 9 levels × framesPerLevel)."""
    per_level = 300 if task_minutes >= 30 else 60
    levels = ctx.rng.permutation(np.arange(-1.0, 1.01, 0.25))
    start = np.arange(levels.size, dtype=np.int64) * per_level
    frames = make_frames(ctx.rng, int(levels.size * per_level + 1), first_flip)
    truth = {
        "trial_index": np.arange(levels.size),
        "start_time": frames.flip[start],
        "stop_time": frames.flip[start + per_level],
        "level": np.round(levels, 3),
    }
    return finish_run(
        ctx,
        script="LuminanceTest",
        frames=frames,
        task_version=None,
        licks=_spontaneous_licks(ctx.rng, frames),
        reward_frames=[],
        script_attrs={
            "trialStartFrame": start,
            "trialLevel": levels,
            "framesPerLevel": per_level,
        },
        lines={},
        truth={"luminance_test": table(truth), "n_trials": int(levels.size)},
    )
