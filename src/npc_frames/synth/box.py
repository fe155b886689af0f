"""Synthetic behaviour-box training sessions: a task file and a ``_box_`` video, no sync file.

A training box records the DynamicRouting1 task and one camera watching the mouse; nothing ties
the two clocks together except the licks, which the task polls once per frame (``lickFrames``)
and the camera stamps onto its frame counter through a GPIO input (the json's ``CameraInput``).
:func:`make_box_session` writes such a session as an AIND behaviour asset::

    behavior_<subject>_<YYYY-MM-DD>_<HH-MM-SS>/
      behavior/DynamicRouting1_<subject>_<YYYYMMDD>_<HHMMSS>.hdf5   (+ debug.log)
      behavior-videos/<subject>_Box_<n>_<YYYYMMDDTHHMMSS>.{mp4,json}
      subject.json, session.json, data_description.json, procedures.json

and returns its :class:`~npc_frames.synth.truth.Truth`, saved beside it in ``<same name>.truth/``.

Clocks. The simulation runs on one physical clock (seconds from the asset's start time, the
``sync_start`` of the truth although no sync file exists). A box session's time base is the task
clock: seconds since the task's first frame flip, counted by the stimulus computer, i.e.
``(t - first_flip) * stim_clock_scale``. ``Truth.video["Behavior"]["frame_times"]`` holds every
video frame's exposure on that clock (NaN for frame 0, MVR's metadata frame).

Decisions (the real files leave room):

* ``CameraInput`` is ``"frame,state,frame,state,…"`` with one ``frame,1`` event per lick-sensor
  contact onset and one ``frame,0`` per offset; ``frame`` is the video frame index (metadata
  frame = 0, first exposure = 1) of the first recorded exposure starting at or after the edge, so
  every contact is stamped, however brief. ``CameraInputCount`` is the number of ``,1`` events.
* The camera records from a few seconds before the task to 10-30 s after it; the mouse licks in
  bouts outside the task too, so the video has more licks than the task file (the task's own
  contacts that its once-per-frame poll missed are not stamped either: both see one sensor
  output, whose brief glitches are filtered upstream — a simplification).
* ``LostFrames`` are 0-based positions in the camera's exposure list (as for sync sessions); lost
  exposures are kept at least 3 exposures away from every lick, so each lick's stamped frame is
  its own exposure.
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt

from npc_frames.errors import ParameterError
from npc_frames.synth.metadata import write_metadata
from npc_frames.synth.task import simulate_scripts
from npc_frames.synth.truth import Truth
from npc_frames.synth.video import (
    _PLACEHOLDER_MP4,
    FPS,
    Camera,
    _recording_report,
)

__all__ = ["BOX_CAMERA", "camera_input_string", "make_box_session"]

#: the behaviour box's one camera (sync bits unused: there is no sync file)
BOX_CAMERA = Camera("Behavior", -1, -1, 10, 4.0, "DEV_1AB22C00B0X2")
#: camera clock error bound (relative) and exposure jitter (s)
_CLOCK_PPM = 30e-6
_JITTER_S = 20e-6
_LOST_CLEARANCE = 3

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def camera_input_string(frames: npt.ArrayLike, states: npt.ArrayLike) -> str:
    """Return MVR's ``CameraInput`` text ``"frame,state,frame,state,…"`` (``"1,0"`` when empty)."""
    f = np.asarray(frames, dtype=np.int64)
    s = np.asarray(states, dtype=np.int64)
    if f.size == 0:
        return "1,0"
    return ",".join(f"{a},{b}" for a, b in zip(f.tolist(), s.tolist()))


def _extra_bouts(rng: np.random.Generator, start: float, stop: float) -> tuple[F64, F64]:
    """Return (onsets, offsets) of lick bouts in [start, stop): ~0.2 bouts/s, 3-8 licks at ~7 Hz."""
    onsets: list[float] = []
    t = start + float(rng.exponential(5.0))
    while t < stop - 2.0:
        for _ in range(int(rng.integers(3, 9))):
            onsets.append(t)
            t += float(np.clip(rng.normal(0.14, 0.02), 0.1, 0.2))
        t += float(rng.exponential(5.0)) + 0.5
    on = np.asarray(onsets, dtype=np.float64)
    off = on + np.clip(rng.lognormal(np.log(0.045), 0.25, on.size), 0.02, 0.08)
    return on, off


def _lost_positions(rng: np.random.Generator, n: int, lick_pos: I64) -> I64:
    """Return a few lost exposure positions away from the first/last 8 exposures and all licks."""
    budget = int(n * 0.0004)
    if budget < 1:
        return np.empty(0, np.int64)
    candidates = rng.integers(8, n - 8, 4 * budget)
    near = np.zeros(candidates.size, dtype=bool)
    if lick_pos.size:
        j = np.searchsorted(lick_pos, candidates)
        for k in (j - 1, j):
            ok = (k >= 0) & (k < lick_pos.size)
            near[ok] |= np.abs(lick_pos[k[ok]] - candidates[ok]) <= _LOST_CLEARANCE
    return np.unique(candidates[~near])[:budget].astype(np.int64)


def make_box_session(
    out_dir: str | Path,
    *,
    seed: int = 0,
    minutes: float = 2.0,
    date: datetime.date | str = datetime.date(2024, 4, 22),
    start_time: datetime.time | str = datetime.time(9, 0, 0),
    subject: int | None = None,
    box: str = "B2",
    lost_frames: bool = True,
) -> Truth:
    """Return the truth of a behaviour-box training session written under `out_dir`.

    Deterministic per `seed`. `box` is the rig (``rigName`` in the task file and the ``Box_<n>``
    part of the video name); `lost_frames` lets the camera lose a few exposures (≤ 0.04 %).
    See the module docstring for the layout, clocks and decisions.
    """
    if isinstance(date, str):
        date = datetime.date.fromisoformat(date)
    if isinstance(start_time, str):
        start_time = datetime.time.fromisoformat(start_time)
    if not (isinstance(minutes, int | float) and 0 < minutes <= 180):
        raise ParameterError(f"minutes={minutes!r}", field="minutes", expected="0 < minutes ≤ 180")
    ss = np.random.SeedSequence(int(seed))
    rng_meta, rng_task, rng_video, rng_lick = (np.random.default_rng(s) for s in ss.spawn(4))
    if subject is None:
        subject = int(rng_meta.integers(600_000, 800_000))
    start = datetime.datetime.combine(date, start_time.replace(microsecond=0))
    asset = f"behavior_{subject}_{start:%Y-%m-%d_%H-%M-%S}"
    out = Path(out_dir).absolute()
    root, truth_dir = out / asset, out / f"{asset}.truth"
    for folder in (root, truth_dir):
        if folder.exists():
            shutil.rmtree(folder)
    behavior_dir = root / "behavior"
    behavior_dir.mkdir(parents=True)

    # --- task -------------------------------------------------------------------------------
    video_start_s = float(rng_video.uniform(2.0, 5.0))
    first_flip_s = video_start_s + float(rng_task.uniform(15.0, 30.0))
    (run,) = simulate_scripts(
        behavior_dir,
        rng=rng_task,
        subject=subject,
        sync_start=start,
        first_start_s=first_flip_s,
        task_minutes=float(minutes),
        scripts=["DynamicRouting1"],
        rig=box,
    )
    flip = np.asarray(run.flip, dtype=np.float64)
    scale = float(run.truth["stim_clock_scale"])
    licks = run.truth["licks"]
    on = np.asarray(licks["timestamps"], dtype=np.float64)
    off = on + np.asarray(licks["duration"], dtype=np.float64)
    lick_frames = np.asarray(run.truth["lick_frames"], dtype=np.int64)
    # the contact a lick frame saw is the last onset before that frame's flip (contacts are
    # ≥ 40 ms apart, longer than a frame)
    seen = np.unique(np.searchsorted(on, flip[lick_frames], side="right") - 1)
    video_stop_s = float(flip[-1]) + float(rng_video.uniform(10.0, 30.0))
    pre_on, pre_off = _extra_bouts(rng_lick, video_start_s + 1.0, float(flip[0]) - 1.0)
    post_on, post_off = _extra_bouts(rng_lick, float(flip[-1]) + 1.0, video_stop_s - 1.0)
    cam_on = np.concatenate([pre_on, on[seen], post_on])
    cam_off = np.concatenate([pre_off, off[seen], post_off])

    # --- camera -----------------------------------------------------------------------------
    period = (1.0 / FPS) * (1.0 + float(rng_video.uniform(-_CLOCK_PPM, _CLOCK_PPM)))
    first_exposure = video_start_s + float(rng_video.uniform(0.3, 1.0))
    n_exp = int((video_stop_s - first_exposure) / period)
    exposures = first_exposure + np.arange(n_exp) * period + rng_video.normal(0, _JITTER_S, n_exp)
    on_pos = np.searchsorted(exposures, cam_on, side="left").astype(np.int64)
    off_pos = np.searchsorted(exposures, cam_off, side="left").astype(np.int64)
    lost = _lost_positions(rng_video, n_exp, on_pos) if lost_frames else np.empty(0, np.int64)
    kept_mask = np.ones(n_exp, dtype=bool)
    kept_mask[lost] = False
    kept = np.flatnonzero(kept_mask)
    # video frame index of the first recorded exposure at/after each edge (frame 0 = metadata)
    ev_pos = np.concatenate([on_pos, off_pos])
    ev_state = np.concatenate([np.ones(on_pos.size, np.int64), np.zeros(off_pos.size, np.int64)])
    ev_time = np.concatenate([cam_on, cam_off])
    order = np.argsort(ev_time, kind="stable")
    ev_frame = np.searchsorted(kept, ev_pos[order], side="left") + 1
    inside = ev_frame <= kept.size
    ev_frame, ev_state = ev_frame[inside], ev_state[order][inside]

    time_start = start + datetime.timedelta(seconds=video_start_s)
    time_start = time_start.replace(microsecond=time_start.microsecond // 1000 * 1000)
    video_dir = root / "behavior-videos"
    video_dir.mkdir()
    stem = f"{subject}_Box_{box.lstrip('B')}_{time_start:%Y%m%dT%H%M%S}"
    report = _recording_report(
        BOX_CAMERA, time_start=time_start, frames_recorded=int(kept.size), lost=lost
    )
    report["CameraInput"] = [camera_input_string(ev_frame, ev_state)]
    report["CameraInputCount"] = int(np.count_nonzero(ev_state == 1))
    (video_dir / f"{stem}.mp4").write_bytes(_PLACEHOLDER_MP4)
    (video_dir / f"{stem}.json").write_text(json.dumps({"RecordingReport": report}, indent=4))
    task_clock = (exposures[kept] - flip[0]) * scale
    frame_times = np.concatenate([[np.nan], task_clock])

    metadata = write_metadata(
        root,
        rng=rng_meta,
        subject=subject,
        session_start=start,
        session_end=start + datetime.timedelta(seconds=video_stop_s),
        asset_name=asset,
        rig=box,
    )
    video_truth = {
        "Behavior": {
            "label": "Behavior",
            "video_path": str(video_dir / f"{stem}.mp4"),
            "json_path": str(video_dir / f"{stem}.json"),
            "time_start": time_start,
            "lost_frames": lost,
            "frame_times": frame_times,
            "frames_recorded": int(kept.size),
            "n_video_frames": int(kept.size) + 1,
            "period_s": period,
            "n_camera_licks": int(cam_on.size),
            "n_task_licks": int(seen.size),
            "clock": "task: seconds since the task's first flip, stimulus-computer clock",
        }
    }
    script_truth = {
        "script_name": run.script_name,
        "path": str(run.path),
        "start_time": run.start_time,
        "flip": flip,
        "n_frames": int(flip.size),
        "truth": run.truth,
    }
    truth = Truth(
        raw_path=str(root),
        truth_dir=str(truth_dir),
        session_id=f"{subject}_{date:%Y-%m-%d}",
        subject=int(subject),
        date=date,
        sync_start=start,
        sync_rate=0.0,
        sync_total_samples=0,
        sync_lines={},
        line_labels=[],
        barcodes={},
        scripts=[script_truth],
        ephys=None,
        video=video_truth,
        metadata=metadata,
        counts={
            "n_scripts": 1,
            "n_video_frames": {"Behavior": int(kept.size) + 1},
            "n_probes": 0,
        },
        params={
            "kind": "behavior_box",
            "seed": int(seed),
            "minutes": float(minutes),
            "date": date,
            "start_time": start_time.isoformat(),
            "subject": int(subject),
            "box": box,
            "lost_frames": bool(lost_frames),
        },
    )
    truth.save(truth_dir)
    return truth
