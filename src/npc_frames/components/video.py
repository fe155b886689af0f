"""Component ``video_frame_times``: one time per MVR video frame, on the sync clock (FORMATS §12.3).

Per camera (one MVR json sidecar each):

1. Camera ↔ sync line by exposure fingerprint: the mean duration (ms, rounded) of the first 8
   pulses of every ``*_cam_exposing`` line is compared with the json's
   ``CustomInitialExposureTime``; the camera gets the line whose duration is closest (this catches
   swapped cables). Without that field the line named after the camera is used.
2. Exposure times = rising edges of that line.
3. Repeated MVR recordings within one sync file: exposures are split where an interval's
   |z-score| (against the median interval and the standard deviation) exceeds 50; the block whose
   first exposure is closest to (``TimeStart`` − sync start).seconds is used, and must start within
   10 s of it. The sync recording must start before the video. (A single gap among N intervals
   has |z| ≤ √N, so recordings are only separated once there are > 2 500 exposures — ~42 s at
   60 fps; npc's rule is reproduced as is, real sessions have far more.)
4. Exposures listed in ``LostFrames`` (0-based positions in the block, the npc reading of the
   §12.2 ambiguity) are removed.
5. NaN is prepended for frame 0, MVR's metadata frame.
6. The result is padded with NaN / truncated to the video's frame count, ``FramesRecorded + 1``
   (the video files themselves are not opened: their frame count is defined by the json).

Behaviour-box sessions have no sync file: their frame times are reconstructed on the task clock
from the licks that both the task file and the camera's GPIO input record
(:mod:`npc_frames.components._box_video`). A session with videos, no sync and no task file raises
AlignmentError; a session without videos returns a zero-row frame.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames import parts
from npc_frames._log import timed
from npc_frames.errors import AlignmentError, InvalidIdError, NpcFramesError
from npc_frames.ids import parse_camera_name
from npc_frames.readers.mvr import MvrInfo, read_mvr_json
from npc_frames.readers.sync import SyncData
from npc_frames.schemas import get_schema
from npc_frames.schemas.video import CAMERA_NWB_NAMES

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = ["camera_exposure_lines", "camera_frame_times", "video_frame_times"]

logger = logging.getLogger(__name__)

#: pulses at the start of a recording that carry CustomInitialExposureTime (§12.3 step 1)
N_FINGERPRINT_PULSES = 8
#: exposure intervals with |z| above this separate repeated MVR recordings (§12.3 step 3)
RECORDING_SPLIT_Z = 50.0
#: the chosen recording's first exposure must be this close to the json TimeStart (s)
MAX_START_OFFSET = 10.0

F64 = npt.NDArray[np.float64]


def _exposing_lines(sync: SyncData) -> dict[str, int]:
    """Return {camera name: bit} of every ``<cam>_cam_exposing`` line in the sync file."""
    out: dict[str, int] = {}
    for bit, label in enumerate(sync.line_labels):
        if label.endswith("_cam_exposing"):
            try:
                out.setdefault(parse_camera_name(label.removesuffix("_cam_exposing")), bit)
            except InvalidIdError:
                continue
    return out


def _fingerprint_ms(sync: SyncData, bit: int) -> float:
    rising = np.asarray(sync.rising(bit))[:N_FINGERPRINT_PULSES]
    falling = np.asarray(sync.falling(bit))
    if rising.size == 0:
        return float("nan")
    falling = falling[falling > rising[0]][: rising.size]
    n = min(rising.size, falling.size)
    if n == 0:
        return float("nan")
    return float(np.round(np.mean(falling[:n] - rising[:n]) * 1000))


def camera_exposure_lines(sync: SyncData, infos: list[MvrInfo]) -> dict[str, int]:
    """Return {json path: sync bit of the camera's exposure line} (§12.3 step 1).

    Each camera gets the ``*_cam_exposing`` line whose first-8-pulse duration is closest to its
    ``CustomInitialExposureTime``; ties go to the line named after the camera. If the
    fingerprints do not separate the cameras (two cameras would share a line), the lines named
    after the cameras are used. Raises AlignmentError naming the json when no line fits.
    """
    lines = _exposing_lines(sync)
    prints = {name: _fingerprint_ms(sync, bit) for name, bit in lines.items()}
    candidates = {k: v for k, v in prints.items() if np.isfinite(v)}

    def by_name(info: MvrInfo) -> int:
        name = parse_camera_name(info.camera)
        if name not in lines:
            raise AlignmentError(
                f"no exposure line on sync for camera {info.camera!r}",
                path=info.path,
                field="CameraLabel",
                expected=f"a '<cam>_cam_exposing' sync line for it; found {sorted(lines)}",
            )
        return lines[name]

    out: dict[str, int] = {}
    for info in infos:
        target = info.custom_initial_exposure_ms
        if target is None or not candidates:
            out[info.path] = by_name(info)
            continue
        dist = {k: abs(v - target) for k, v in candidates.items()}
        best = min(dist.values())
        tied = [k for k, d in dist.items() if d == best]
        own = parse_camera_name(info.camera)
        out[info.path] = lines[own if own in tied else tied[0]]
    if len(set(out.values())) < len(out):  # fingerprints ambiguous: trust the line labels
        out = {info.path: by_name(info) for info in infos}
    return out


def split_recordings(times: F64) -> list[F64]:
    """Return exposure times split into MVR recordings at intervals with |z-score| > 50."""
    if times.size < 3:
        return [times]
    iv = np.diff(times)
    sd = float(np.std(iv))
    if sd == 0:
        return [times]
    z = np.abs(iv - np.median(iv)) / sd
    return np.split(times, np.flatnonzero(z > RECORDING_SPLIT_Z) + 1)


def camera_frame_times(sync: SyncData, info: MvrInfo, exposing_bit: int) -> F64:
    """Return one time per video frame of the camera in `info` (NaN for frame 0), §12.3 2–6."""
    offset = info.time_start - sync.start_time
    if offset.total_seconds() < 0:
        raise AlignmentError(
            f"video started {info.time_start} before the sync recording {sync.start_time}",
            path=info.path,
            field="RecordingReport.TimeStart",
            expected="a video recorded after the sync recording started",
        )
    exposures = np.asarray(sync.rising(exposing_bit), dtype=np.float64)
    if exposures.size == 0:
        raise AlignmentError(
            f"exposure line {sync.line_labels[exposing_bit]!r} has no pulses",
            path=info.path,
            field=sync.line_labels[exposing_bit] or f"line {exposing_bit}",
            expected="one rising edge per camera exposure",
        )
    recordings = split_recordings(exposures)
    start = float(offset.seconds)  # npc uses timedelta.seconds (days ignored)
    firsts = np.array([r[0] for r in recordings])
    chosen = int(np.argmin(np.abs(firsts - start)))
    if abs(firsts[chosen] - start) > MAX_START_OFFSET:
        raise AlignmentError(
            f"no exposures within {MAX_START_OFFSET:.0f} s of the video start "
            f"({start:.1f} s after sync start; closest recording starts at {firsts[chosen]:.1f} s)",
            path=info.path,
            field="RecordingReport.TimeStart",
            expected="a block of exposure pulses starting within 10 s of TimeStart",
        )
    times = recordings[chosen]
    if info.lost_frames.size:
        lost = info.lost_frames[info.lost_frames < times.size]
        times = np.delete(times, lost)
    times = np.concatenate([[np.nan], times])
    n = info.n_video_frames
    if times.size < n:
        times = np.concatenate([times, np.full(n - times.size, np.nan)])
    return times[:n]


@timed
def video_frame_times(raw: RawSession) -> pl.DataFrame:
    """Return the ``video_frame_times`` frame: session_id, camera, frame_index, timestamp.

    One row per frame of every MVR video of `raw` (camera = NWB name, e.g. ``side_camera``),
    timestamps on the sync clock per FORMATS §12.3 (see module docstring). A camera whose json
    sidecar cannot be read is left out and reported as a failed part named by the camera
    (:func:`npc_frames.parts.report_failure`); when no camera's sidecar is readable, the first
    camera's error is raised.
    """
    from npc_frames.timing import sync_data

    schema = get_schema("video_frame_times")
    json_paths = list(raw.video_json_paths)
    if not json_paths:
        parts.report_absent_component("no video files")
        return schema.empty()
    infos: list[MvrInfo] = []
    broken: list[tuple[str, NpcFramesError]] = []
    for p in json_paths:
        try:
            infos.append(read_mvr_json(raw.local(p)))
        except NpcFramesError as exc:
            broken.append((_camera_of_path(p), exc))
    if broken and not infos:
        raise broken[0][1]
    for camera, error in broken:
        parts.report_failure(camera, error)
    sync = sync_data(raw)
    if sync is None:
        per_camera = _box_times(raw, infos)
    else:
        bits = camera_exposure_lines(sync, infos)
        per_camera = {info.path: camera_frame_times(sync, info, bits[info.path]) for info in infos}
    frames: dict[str, pl.DataFrame] = {}
    for info in infos:
        name = parse_camera_name(info.camera)
        camera = CAMERA_NWB_NAMES.get(name, f"{name}_camera")
        times = per_camera[info.path]
        frame = pl.DataFrame(
            {"frame_index": np.arange(times.size, dtype=np.int64), "timestamp": times}
        ).select(
            pl.lit(str(raw.session_id), dtype=pl.String).alias("session_id"),
            pl.lit(camera, dtype=pl.String).alias("camera"),
            pl.all(),
        )
        frames[camera] = pl.concat([frames[camera], frame]) if camera in frames else frame
    # each camera's frames are in frame order: concatenating the cameras by name is the
    # (camera, frame_index) order without sorting a million rows (two sidecars of one camera
    # are left to the sort)
    df = pl.concat([frames[c] for c in sorted(frames)])
    if len(frames) < len(infos):
        df = df.sort(["camera", "frame_index"])
    return schema.validate(df, source=raw.root)


def _camera_of_path(path: str) -> str:
    """Return the NWB camera name of an MVR file path (``eye_camera``), else its file name."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    try:
        camera = parse_camera_name(name)
    except InvalidIdError:
        return name
    return CAMERA_NWB_NAMES.get(camera, f"{camera}_camera")


def _box_times(raw: RawSession, infos: list[MvrInfo]) -> dict[str, F64]:
    """Return {json path: task-clock frame times} of a session without sync, from its licks."""
    from npc_frames.components._box_video import box_frame_times
    from npc_frames.components._task import open_stim, task_file
    from npc_frames.errors import MissingFileError

    try:
        path, ft = task_file(raw)
    except MissingFileError:
        raise AlignmentError(
            "videos without a sync file or a task file have no clock to be timed on",
            path=raw.root,
            field="sync",
            expected="a sync file, or a DynamicRouting1 task file whose licks the camera recorded",
        ) from None
    lick_frames = np.asarray(open_stim(path).array("lickFrames"), dtype=np.int64)
    lick_frames = lick_frames[(lick_frames >= 0) & (lick_frames < ft.input.size)]
    lick_times = np.asarray(ft.input, dtype=np.float64)[lick_frames]
    return {info.path: box_frame_times(info, lick_frames, lick_times) for info in infos}
