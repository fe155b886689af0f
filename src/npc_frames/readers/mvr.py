"""Read MVR video json sidecars (FORMATS §12.2: the ``RecordingReport`` object)."""

from __future__ import annotations

import datetime
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from npc_frames import storage
from npc_frames._log import timed
from npc_frames.errors import BadFormatError, MissingFileError

__all__ = ["MvrInfo", "parse_lost_frames", "read_mvr_json"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MvrInfo:
    """The fields of one MVR ``RecordingReport`` that frame timing and QC use."""

    path: str
    camera: str  # CameraLabel as written: Behavior, Eye, Face, Nose
    time_start: datetime.datetime  # naive; MVR's trailing "Z" is not UTC (local wall clock)
    frames_recorded: int
    lost_frames: npt.NDArray[np.int64]  # 0-based positions in the exposure-pulse list
    frames_lost_count: int
    fps: float | None
    custom_initial_exposure_ms: float | None
    frame_id_imprint: bool
    camera_input: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_video_frames(self) -> int:
        """Return the number of frames in the video: ``FramesRecorded`` + 1 metadata frame."""
        return self.frames_recorded + 1


def parse_lost_frames(text: str | list[str] | None) -> npt.NDArray[np.int64]:
    """Return the indices listed in MVR's ``LostFrames`` (e.g. ``["1-2,4-5,7"]``), ranges inclusive.

    Raises ValueError on an unparseable item.
    """
    if text is None:
        return np.empty(0, np.int64)
    items = text if isinstance(text, list) else [text]
    parts = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    out: list[npt.NDArray[np.int64]] = []
    for p in parts:
        if "-" in p:
            a, b = (int(x) for x in p.split("-", 1))
            if b < a:
                raise ValueError(f"descending range {p!r}")
            out.append(np.arange(a, b + 1, dtype=np.int64))
        else:
            out.append(np.array([int(p)], dtype=np.int64))
    return np.unique(np.concatenate(out)) if out else np.empty(0, np.int64)


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


@timed
def read_mvr_json(path: str | os.PathLike[str]) -> MvrInfo:
    """Return the parsed ``RecordingReport`` of the MVR json sidecar at `path` (local or URL).

    Raises MissingFileError for a missing file and BadFormatError naming the field for invalid
    json, a missing ``RecordingReport``/``CameraLabel``/``TimeStart``/``FramesRecorded`` or an
    unparseable ``LostFrames``.
    """
    p = os.fspath(path)
    try:
        if storage.is_remote(p):
            import fsspec

            with fsspec.open(p, "r") as fh:
                doc = json.load(fh)
        else:
            with open(p.removeprefix("file://")) as fh:
                doc = json.load(fh)
    except FileNotFoundError:
        raise MissingFileError(
            "MVR json not found", path=p, expected="an MVR json sidecar"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadFormatError(
            f"MVR json is not valid json: {exc}", path=p, expected="a json object"
        ) from None
    report = doc.get("RecordingReport") if isinstance(doc, dict) else None
    if not isinstance(report, dict):
        raise BadFormatError(
            "MVR json lacks the RecordingReport object",
            path=p,
            field="RecordingReport",
            expected="a top-level 'RecordingReport' object",
        )

    def need(key: str) -> Any:
        if key not in report:
            raise BadFormatError(
                f"MVR json lacks {key}", path=p, field=f"RecordingReport.{key}", expected=key
            )
        return report[key]

    label = str(need("CameraLabel"))
    ts = str(need("TimeStart"))
    try:
        time_start = datetime.datetime.fromisoformat(ts.rstrip("Z")).replace(tzinfo=None)
    except ValueError:
        raise BadFormatError(
            f"TimeStart {ts!r} is not an ISO datetime",
            path=p,
            field="RecordingReport.TimeStart",
            expected="'YYYY-MM-DDTHH:MM:SS.fffZ'",
        ) from None
    try:
        frames_recorded = int(need("FramesRecorded"))
    except (TypeError, ValueError):
        raise BadFormatError(
            f"FramesRecorded {report.get('FramesRecorded')!r} is not an integer",
            path=p,
            field="RecordingReport.FramesRecorded",
            expected="an integer",
        ) from None
    lost_count = int(report.get("FramesLostCount") or 0)
    lost = np.empty(0, np.int64)
    if lost_count:  # npc ignores LostFrames when FramesLostCount is 0 (§12.2)
        try:
            lost = parse_lost_frames(report.get("LostFrames"))
        except ValueError as exc:
            raise BadFormatError(
                f"LostFrames cannot be parsed: {exc}",
                path=p,
                field="RecordingReport.LostFrames",
                expected='a list with one string of indices/ranges, e.g. ["1-2,4-5,7"]',
            ) from None
    lost.flags.writeable = False
    cam_input = report.get("CameraInput")
    if isinstance(cam_input, list):
        cam_input = ",".join(str(x) for x in cam_input)
    return MvrInfo(
        path=p,
        camera=label,
        time_start=time_start,
        frames_recorded=frames_recorded,
        lost_frames=lost,
        frames_lost_count=lost_count,
        fps=_float_or_none(report.get("FPS")),
        custom_initial_exposure_ms=_float_or_none(report.get("CustomInitialExposureTime")),
        frame_id_imprint=str(report.get("FrameID imprint enabled", "false")).lower() == "true",
        camera_input=None if cam_input is None else str(cam_input),
        raw=report,
    )
