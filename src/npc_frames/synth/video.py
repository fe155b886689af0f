"""Synthetic MVR videos: json sidecars, placeholder video files and camera lines on sync (FORMATS §12).

Per camera (Behavior, Eye, Face; optionally Nose, :data:`NOSE_CAMERA`) the generator writes
``<Label>_<YYYYMMDDTHHMMSS>.mp4`` and ``<same stem>.json`` (a ``RecordingReport`` object) and
returns the exposure and readout pulses for sync bits 27/28/29 (``beh/face/eye_cam_exposing``) and
21/22/25 (``…_cam_frame_readout``); the Nose camera exposes on bit 30 (``nose_cam_exposing``) and
has no readout line.

Decisions (documented because real files leave room):

* The video files are 24-byte placeholders (an ISO-BMFF ``ftyp`` box and nothing else): no reader in
  npc_frames decodes pixels, and the frame count of the video is by construction
  ``FramesRecorded + 1`` (frame 0 = MVR metadata frame). ``FrameID imprint enabled`` is therefore
  ``"false"``.
* ``LostFrames`` indices are **0-based positions in the camera's exposure-pulse list** (the npc
  reading of the [ambiguity] in §12.2); every exposure pulse, lost or not, is on sync and has a
  readout pulse, so ``FramesRecorded = n_exposures − FramesLostCount``. Lost frames never fall among
  the first 8 (fingerprint) or last 8 exposures.
* MVR starts a few seconds after sync (``TimeStart`` = local wall clock with a trailing ``Z``, as
  MVR writes it) and stops before sync stops, so there are no trailing NaN frame times.
* Frame times (truth) = rising edges of the exposure line, quantised to the sync sample grid, lost
  frames removed, NaN prepended for the metadata frame.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from npc_frames.errors import ParameterError
from npc_frames.synth.sync import quantize

__all__ = [
    "CAMERAS",
    "NOSE_CAMERA",
    "Camera",
    "CameraTruth",
    "VideoResult",
    "format_lost_frames",
    "make_videos",
]

#: nominal MVR frame rate (FORMATS §12.1).
FPS = 60.0
#: number of fingerprint exposures at the start of each recording (FORMATS §12.3 step 1 uses 8).
N_INITIAL_EXPOSURES = 8
#: readout (transfer) pulse: starts this long after the exposure ends, lasts READOUT_S.
_READOUT_DELAY_S = 0.0001
_READOUT_S = 0.004
#: ISO-BMFF file-type box: the smallest file any MP4 sniffer recognises.
_PLACEHOLDER_MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41"


@dataclass(frozen=True)
class Camera:
    """One MVR camera: its label, sync bits (no readout line: None) and exposure settings (ms)."""

    label: str
    exposing_bit: int
    readout_bit: int | None
    initial_exposure_ms: int
    exposure_ms: float
    camera_id: str


#: cameras of an NP rig; initial exposures are distinct so lines can be matched (§12.3 step 1).
CAMERAS: tuple[Camera, ...] = (
    Camera("Behavior", 27, 21, 10, 4.0, "DEV_1AB22C00E2F7"),
    Camera("Eye", 29, 25, 12, 4.0, "DEV_1AB22C00E2E1"),
    Camera("Face", 28, 22, 8, 4.0, "DEV_1AB22C00E30B"),
)
#: the optional fourth camera of newer rigs (NWB ``zoomed_side_camera``): exposure line 30, no
#: readout line; its initial exposure differs from the other three so the lines can be matched
NOSE_CAMERA = Camera("Nose", 30, None, 14, 4.0, "DEV_1AB22C00E3A4")


@dataclass
class CameraTruth:
    """What one camera recorded: frame times per video frame and the json it wrote."""

    label: str
    video_path: str
    json_path: str
    time_start: datetime.datetime
    exposure_times: npt.NDArray[np.float64]
    lost_frames: npt.NDArray[np.int64]
    frame_times: npt.NDArray[np.float64]
    frames_recorded: int
    n_video_frames: int


@dataclass
class VideoResult:
    """Sync lines ``{bit: (rising, falling)}`` of all cameras and per-camera truth by label."""

    lines: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]
    cameras: dict[str, CameraTruth]


def format_lost_frames(indices: npt.ArrayLike) -> str:
    """Return sorted indices as MVR's range string, e.g. ``[1, 2, 4, 5, 7]`` -> ``"1-2,4-5,7"``."""
    idx = np.unique(np.asarray(indices, dtype=np.int64))
    if idx.size == 0:
        return ""
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = idx[np.concatenate([[0], breaks])]
    ends = idx[np.concatenate([breaks - 1, [idx.size - 1]])]
    return ",".join(f"{s}-{e}" if e > s else f"{s}" for s, e in zip(starts, ends))


def _lost_frame_indices(rng: np.random.Generator, n_exposures: int) -> npt.NDArray[np.int64]:
    """Return a few lost-frame positions (singles and pairs), < 0.05 % of frames (QC limit §12.3)."""
    budget = int(n_exposures * 0.0004)
    if budget < 1 or n_exposures <= 4 * N_INITIAL_EXPOSURES:
        return np.empty(0, dtype=np.int64)
    n_runs = int(rng.integers(1, min(3, budget) + 1))
    starts = rng.integers(N_INITIAL_EXPOSURES, n_exposures - N_INITIAL_EXPOSURES - 2, n_runs)
    lengths = rng.integers(1, 3, n_runs)
    idx = np.unique(np.concatenate([s + np.arange(n) for s, n in zip(starts, lengths)]))
    return idx[:budget]


def _recording_report(
    cam: Camera,
    *,
    time_start: datetime.datetime,
    frames_recorded: int,
    lost: npt.NDArray[np.int64],
) -> dict[str, object]:
    """Return the ``RecordingReport`` object of one camera's json sidecar (§12.2 fields)."""
    return {
        "CameraLabel": cam.label,
        "CameraID": cam.camera_id,
        "TimeStart": time_start.isoformat(timespec="milliseconds") + "Z",
        "FramesRecorded": int(frames_recorded),
        "FramesLostCount": len(lost),
        "LostFrames": [format_lost_frames(lost)] if len(lost) else [],
        "FPS": FPS,
        "ExposureTime": cam.exposure_ms,
        "CustomInitialExposureTime": cam.initial_exposure_ms,
        "CustomInitialNumberOfFrames": N_INITIAL_EXPOSURES,
        "CameraGain": 4.0,
        "ImageDimensions": {"width": "658", "height": "492"},
        "Codec": "H.264",
        "FrameID imprint enabled": "false",
        "BarcodeCoordinates": {"xOffset": "0", "yOffset": "0", "width": "129", "height": "3"},
        "CameraInput": ["1,0"],
        "CameraInputCount": 0,
        "MVR Version": "1.1.7",
    }


def make_videos(
    video_dir: str | Path,
    *,
    rng: np.random.Generator,
    sync_start: datetime.datetime,
    sync_duration_s: float,
    cameras: tuple[Camera, ...] = CAMERAS,
    sync_rate: float = 100_000.0,
) -> VideoResult:
    """Return the camera sync lines and truth after writing each camera's video + json to `video_dir`.

    Parameters
    ----------
    video_dir:
        Folder for ``<Label>_<YYYYMMDDTHHMMSS>.{mp4,json}`` (created).
    rng:
        Random source (start offsets, clock drift, jitter, lost frames).
    sync_start:
        Wall-clock time of the first sync sample (MVR ``TimeStart`` is a few seconds later).
    sync_duration_s:
        Length of the sync recording; the cameras stop a few seconds before it ends.
    """
    if sync_duration_s < 30.0:
        raise ParameterError(
            f"sync_duration_s={sync_duration_s}",
            field="sync_duration_s",
            expected="a sync recording ≥ 30 s long to hold a video recording",
        )
    video_dir = Path(video_dir)
    video_dir.mkdir(parents=True, exist_ok=True)
    # MVR starts every camera from one click: shared start, sub-second per-camera latency
    mvr_start_s = float(rng.uniform(4.0, 12.0))
    mvr_stop_s = sync_duration_s - float(rng.uniform(3.0, 6.0))
    lines: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
    truths: dict[str, CameraTruth] = {}
    for cam in cameras:
        cam_start_s = mvr_start_s + float(rng.uniform(0.0, 0.05))
        time_start = sync_start + datetime.timedelta(seconds=cam_start_s)
        time_start = time_start.replace(microsecond=time_start.microsecond // 1000 * 1000)
        first_exposure_s = cam_start_s + float(rng.uniform(0.3, 1.0))
        period = (1.0 / FPS) * (1.0 + float(rng.uniform(-30e-6, 30e-6)))  # camera crystal
        n = int((mvr_stop_s - first_exposure_s) / period)
        rising = first_exposure_s + np.arange(n) * period + rng.normal(0.0, 20e-6, n)
        durations = np.full(n, cam.exposure_ms / 1000.0)
        durations[:N_INITIAL_EXPOSURES] = cam.initial_exposure_ms / 1000.0
        rising = quantize(rising, sync_rate)
        falling = quantize(rising + durations, sync_rate)
        readout_rising = quantize(falling + _READOUT_DELAY_S, sync_rate)
        readout_falling = quantize(readout_rising + _READOUT_S, sync_rate)
        lines[cam.exposing_bit] = (rising, falling)
        if cam.readout_bit is not None:
            lines[cam.readout_bit] = (readout_rising, readout_falling)

        lost = _lost_frame_indices(rng, n)
        kept = np.ones(n, dtype=bool)
        kept[lost] = False
        frames_recorded = int(kept.sum())
        frame_times = np.concatenate([[np.nan], rising[kept]])

        stem = f"{cam.label}_{time_start:%Y%m%dT%H%M%S}"
        video_path = video_dir / f"{stem}.mp4"
        json_path = video_dir / f"{stem}.json"
        video_path.write_bytes(_PLACEHOLDER_MP4)
        report = _recording_report(
            cam, time_start=time_start, frames_recorded=frames_recorded, lost=lost
        )
        json_path.write_text(json.dumps({"RecordingReport": report}, indent=4))
        truths[cam.label] = CameraTruth(
            label=cam.label,
            video_path=str(video_path),
            json_path=str(json_path),
            time_start=time_start,
            exposure_times=rising,
            lost_frames=lost,
            frame_times=frame_times,
            frames_recorded=frames_recorded,
            n_video_frames=frames_recorded + 1,
        )
    return VideoResult(lines=lines, cameras=truths)
