"""Simulate the stimulus computer of a session: TaskControl stim files + the sync edges they cause.

:func:`simulate_scripts` runs the requested scripts back to back (5-20 s apart) on the sync clock,
writes one ``<Script>_<subject>_<YYYYMMDD_HHMMSS>.hdf5`` per script and returns a
:class:`ScriptRun` per script with its frame times, the edges it puts on sync bits 1, 2, 4, 5, 11,
15 and 31, and the truth a parser must recover (FORMATS §3-§8).

Clocks: every returned time is sync seconds, on the 100 kHz grid where it is a line edge. The
stimulus computer's clock runs ``1 + ~2e-6`` times faster than sync, so ``frameIntervals`` (stim
clock) differ slightly from the vsync intervals. ``startTime`` = sync start + first flip, truncated to
whole seconds (local wall clock), also in the file name.

Date gates (from ``sync_start.date()``): sound TTL on bit 1 from 2023-08-31; solenoid on bit 15 from
2024-04-01; ``diodeBoxFrameInterval`` = 1 before 2025-07-15, else 3.

Truth (``ScriptRun.truth``, JSON-serialisable) of every script: ``script_name``, ``file_name``,
``start_time``, ``n_frames`` = ``vsync_count``, first/last flip, ``stim_running_rise/fall``,
``diode_box_frame_interval``, ``stim_clock_scale``, ``licks`` (§8.1 table of the sync contacts:
timestamps, duration, is_likely_lick), ``lick_frames``, ``rewards`` (timestamps = solenoid opening
when recorded, else flip of the reward frame; frame; flip_time; is_solenoid_time) and
``running_speed`` (per-frame unfiltered cm/s from the encoder counts, §7, with each frame's input
time). Per script in addition:

* DynamicRouting1: ``trials`` (one list per §5.2 column, completed trials only, plus frame indices
  ``trial_start_frame``, ``stim_start_frame``, ``trial_end_frame``, ``response_frame``, and
  ``sound_onset_time``, ``is_timeout``), ``quiescent_violations`` (frame, timestamps = input time),
  ``block_stim_rewarded``, ``frames_per_block``, ``reward_is_auto``, ``n_trials``;
* RFMapping: ``vis_rf_mapping`` and ``aud_rf_mapping`` (§6.2 columns); OptoTagging: ``optotagging``
  (§6.4 columns); LuminanceTest: ``luminance_test`` (§6.5 columns).

Decisions on FORMATS quirks (the truth records physical/true values; parsers reproducing npc's
quirks must apply them themselves):

* ``timeout_start_time``/``timeout_stop_time`` are given for *every* trial with a timeout
  (``is_timeout``), using the §5.2 frame formulas; npc only fills them for trials followed by a
  repeat (**[quirk]**), which a parser can reproduce by masking with the next trial's ``is_repeat``.
* auditory ``stim_stop_time`` = sound onset + waveform samples / 48 kHz (npc's rule); the sound line
  itself falls one sample earlier (the DAQ holds 5 V for all but the last sample).
* ``reward_time`` in the trials truth = flip time of the reward frame (the stim-file rule); the
  ``rewards`` truth gives solenoid opening times when the solenoid line is recorded (≥ 2024-04-01).
* a script whose last toggle leaves the diode box white gets one extra photodiode falling edge when
  its window closes (0.2-0.5 s after the last flip), so the line is low between scripts and every
  script's first toggle is rising; it lies outside npc's last-vsync + 5 frames diode window.
* the diode box always starts black, so every script's first toggle is rising (the post-2023-08-25
  behaviour; the older white-start case with its missed first edge is not simulated).
* the last, incomplete task trial keeps the pre-stimulus length it reached in the simulation even if
  a lengthening violation fell after the last frame (readers truncate per-trial arrays to n).
* before 2023-08-31 auditory ``stim_start_time`` is still the physical onset (not on sync).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from npc_frames.errors import ParameterError
from npc_frames.synth.task_base import RunContext, ScriptRun
from npc_frames.synth.task_dr import simulate_dynamic_routing
from npc_frames.synth.task_mapping import (
    simulate_luminance_test,
    simulate_opto_tagging,
    simulate_rf_mapping,
    simulate_spontaneous,
)

__all__ = ["KNOWN_SCRIPTS", "ScriptRun", "simulate_scripts"]

KNOWN_SCRIPTS = ("DynamicRouting1", "RFMapping", "OptoTagging", "Spontaneous", "LuminanceTest")


def simulate_scripts(
    behavior_dir: Path,
    *,
    rng: np.random.Generator,
    subject: int,
    sync_start: datetime.datetime,
    first_start_s: float,
    task_minutes: float,
    scripts: Sequence[str] = ("RFMapping", "DynamicRouting1", "OptoTagging", "Spontaneous"),
    opto: bool = False,
    rig: str = "NP3",
    task_version: str = "stage 5 ori AMN moving timeouts repeats",
    save_sound_array: bool = False,
) -> list[ScriptRun]:
    """Return one :class:`ScriptRun` per script run, after writing their stim files.

    Parameters
    ----------
    behavior_dir:
        Existing folder that receives the ``.hdf5`` files.
    rng:
        Source of all randomness (same seed -> identical files and truth).
    subject:
        Subject id (6-7 digits) used in ``subjectName`` and file names.
    sync_start:
        Wall-clock (naive local) start of the sync recording; its date drives the date gates.
    first_start_s:
        Sync time (s) of the first flip of the first script.
    task_minutes:
        Length of the DynamicRouting1 task (6 blocks of ``task_minutes / 6``); the other scripts
        are scaled from it (RFMapping ~1/6, Spontaneous ~1/9, OptoTagging a few dozen trials).
    scripts:
        Scripts in run order; OptoTagging is skipped unless ``opto`` is True.
    opto:
        Include opto trials in the task (``optoParams``, marker on bit 11) and run OptoTagging.
    rig, task_version:
        ``rigName`` and ``taskVersion`` of the task file.
    save_sound_array:
        The task file saves each trial's sound waveform (``saveSoundArray``, ``trialSoundArray``).
    """
    behavior_dir = Path(behavior_dir)
    if not behavior_dir.is_dir():
        raise ParameterError(
            "behavior folder does not exist",
            path=behavior_dir,
            field="behavior_dir",
            expected="an existing folder",
        )
    unknown = [s for s in scripts if s not in KNOWN_SCRIPTS]
    if unknown:
        raise ParameterError(
            f"unknown script(s) {unknown}", field="scripts", expected=f"any of {KNOWN_SCRIPTS}"
        )
    if not task_minutes > 0 or first_start_s < 0:
        raise ParameterError(
            f"task_minutes={task_minutes}, first_start_s={first_start_s}",
            field="task_minutes/first_start_s",
            expected="task_minutes > 0 and first_start_s >= 0",
        )
    ctx = RunContext(
        out_dir=behavior_dir,
        rng=rng,
        subject=int(subject),
        sync_start=sync_start,
        rig=rig,
        stim_clock=1.0 + float(rng.normal(2e-6, 3e-7)),
        save_sound_array=bool(save_sound_array),
    )
    runs: list[ScriptRun] = []
    t = float(first_start_s)
    for script in scripts:
        if script == "OptoTagging" and not opto:
            continue
        if script == "DynamicRouting1":
            run = simulate_dynamic_routing(
                ctx, first_flip=t, task_minutes=task_minutes, opto=opto, task_version=task_version
            )
        elif script == "RFMapping":
            run = simulate_rf_mapping(ctx, first_flip=t, task_minutes=task_minutes)
        elif script == "OptoTagging":
            run = simulate_opto_tagging(ctx, first_flip=t, task_minutes=task_minutes)
        elif script == "Spontaneous":
            run = simulate_spontaneous(ctx, first_flip=t, task_minutes=task_minutes)
        else:
            run = simulate_luminance_test(ctx, first_flip=t, task_minutes=task_minutes)
        if runs and run.path == runs[-1].path:  # pragma: no cover - guarded by >= 5 s gaps
            raise ParameterError("two scripts share a file name", path=run.path, field="startTime")
        runs.append(run)
        t = float(run.flip[-1]) + float(rng.uniform(5.0, 20.0))
    return runs
