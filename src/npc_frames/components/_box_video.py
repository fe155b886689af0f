"""Video frame times of behaviour-box sessions (no sync file), reconstructed from licks.

A training box has no sync file: the only events both the task and the camera record are licks.
The task polls the lick sensor once per frame (``lickFrames``; their times on the task clock are
the frames' input times, as in the ``licks`` component); the camera stamps each sensor edge onto
its frame counter (MVR json ``CameraInput``: ``"frame,state,…"``, a lick is a frame whose state is
1). The rule:

1. Video lick frames = ``CameraInput`` frames whose following state is 1.
2. When the video holds more licks than the task (it runs before and after the task), the task's
   licks are located in the video's lick train by comparing inter-lick intervals (video intervals
   scaled by 60/FPS, task intervals in task frames): the window of the video's intervals with the
   least mean squared difference from the task's wins. That is the cross-correlation of the two
   interval trains minus each window's energy, so windows with long intervals are not favoured.
3. Each video lick frame's exposure gets its task lick's time; exposures between consecutive
   licks are spaced linearly between those times, counting lost exposures (``LostFrames``, 0-based
   positions in the camera's exposure list) so that frames after a loss keep their true spacing;
   before the first lick and after the last one, exposures are 1/FPS apart.
4. Frame 0, MVR's metadata frame, is NaN.

A video with fewer licks than the task, or whose matched licks imply a camera frame interval far
from 1/FPS (they do not correspond), raises AlignmentError rather than returning wrong times.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from npc_frames.errors import AlignmentError, BadFormatError
from npc_frames.readers.mvr import MvrInfo

logger = logging.getLogger(__name__)

__all__ = ["align_lick_trains", "box_frame_times", "camera_lick_frames"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: nominal frame rate of the task (TaskControl runs at 60 Hz) and of MVR when the json has no FPS
TASK_FPS = 60.0
DEFAULT_VIDEO_FPS = 60.0
#: a lick-to-lick segment spanning at least this many exposures must imply a camera frame
#: interval within this fraction of 1/FPS, else the lick trains do not correspond
_CHECK_MIN_SPAN = 30
_MAX_PERIOD_ERROR = 0.5


def camera_lick_frames(info: MvrInfo) -> I64:
    """Return the video frame indices of ``CameraInput`` events whose state is 1 (sorted).

    Raises BadFormatError naming the json when the text is not ``frame,state`` integer pairs.
    """
    text = (info.camera_input or "").strip()
    if not text:
        return np.empty(0, np.int64)
    try:
        values = np.array([int(v) for v in text.split(",") if v.strip()], dtype=np.int64)
    except ValueError:
        values = np.empty(1, np.int64)  # odd length: reported below
    if values.size % 2:
        raise BadFormatError(
            f"CameraInput {text[:40]!r}… is not frame,state pairs",
            path=info.path,
            field="RecordingReport.CameraInput",
            expected='one string "frame,state,frame,state,…" of integers',
        )
    frames, states = values[0::2], values[1::2]
    return np.sort(frames[states == 1])


def align_lick_trains(video_frames: I64, task_frames: I64, *, video_fps: float) -> int:
    """Return the index of the video lick matching the task's first lick (§ module, step 2).

    `video_frames` are video frame indices of the camera's licks, `task_frames` the task's lick
    frame indices; both sorted. 0 when both trains have the same length. Raises AlignmentError
    when the video has fewer licks than the task.
    """
    nv, nt = video_frames.size, task_frames.size
    if nv < nt:
        raise AlignmentError(
            f"the video has {nv} licks but the task {nt}",
            field="RecordingReport.CameraInput",
            expected="at least as many camera lick events as task lickFrames",
        )
    if nv == nt:
        return 0
    if nt < 2:
        raise AlignmentError(
            f"one task lick cannot be located among the video's {nv} licks",
            field="lickFrames",
            expected="at least two task licks (one inter-lick interval) to align",
        )
    v = np.diff(video_frames).astype(np.float64) * (TASK_FPS / video_fps)
    b = np.diff(task_frames).astype(np.float64)
    cross = np.correlate(v, b, mode="valid")  # cross[k] = sum_j v[k + j] * b[j]
    sq = np.concatenate([[0.0], np.cumsum(v * v)])
    energy = sq[b.size :] - sq[: v.size - b.size + 1]
    return int(np.argmin(energy - 2.0 * cross))  # + sum(b**2), the same for every k


def box_frame_times(info: MvrInfo, task_lick_frames: I64, task_lick_times: F64) -> F64:
    """Return one task-clock time per video frame of a behaviour-box camera (NaN for frame 0).

    `task_lick_frames` / `task_lick_times` are the task's lick frames (all, not de-bounced) and
    their times on the task clock. See the module docstring for the rule and its errors.
    """
    fps = float(info.fps or DEFAULT_VIDEO_FPS)
    n_video = info.n_video_frames
    keep = np.isfinite(task_lick_times)
    t_frames = np.asarray(task_lick_frames, dtype=np.int64)[keep]
    t_times = np.asarray(task_lick_times, dtype=np.float64)[keep]
    if t_times.size == 0:
        raise AlignmentError(
            "the task file has no licks to align the box video to",
            path=info.path,
            field="lickFrames",
            expected="at least one lick in the task and on the camera's input",
        )
    v_frames = camera_lick_frames(info)
    v_frames = v_frames[(v_frames >= 1) & (v_frames < n_video)]
    try:
        first = align_lick_trains(v_frames, t_frames, video_fps=fps)
    except AlignmentError as exc:
        raise AlignmentError(
            exc.message, path=info.path, field=exc.field, expected=exc.expected
        ) from None
    v_frames = v_frames[first : first + t_times.size]

    # exposure positions of the video frames 1..n-1 (lost exposures are not in the video)
    lost = info.lost_frames
    n_exposures = info.frames_recorded + int(lost.size)
    kept = np.setdiff1d(np.arange(n_exposures, dtype=np.int64), lost)[: n_video - 1]
    knots = kept[v_frames - 1].astype(np.float64)
    new = np.concatenate([[True], np.diff(knots) > 0])  # two licks stamped on one frame
    knots, t_times = knots[new], t_times[new]
    span = np.diff(knots)
    period = np.diff(t_times) / np.where(span > 0, span, 1.0)
    bad = (span >= _CHECK_MIN_SPAN) & (np.abs(period * fps - 1.0) > _MAX_PERIOD_ERROR)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise AlignmentError(
            f"camera licks and task licks do not correspond: licks {i} and {i + 1} imply a "
            f"frame interval of {period[i] * 1000:.1f} ms at {fps:g} fps",
            path=info.path,
            field="RecordingReport.CameraInput",
            expected="camera lick events matching the task's lickFrames one to one",
        )
    pos = kept.astype(np.float64)
    times = np.interp(pos, knots, t_times)
    before, after = pos < knots[0], pos > knots[-1]
    times[before] = t_times[0] - (knots[0] - pos[before]) / fps
    times[after] = t_times[-1] + (pos[after] - knots[-1]) / fps
    out = np.concatenate([[np.nan], times])
    if out.size < n_video:
        out = np.concatenate([out, np.full(n_video - out.size, np.nan)])
    return out
