"""Schema of the video_frame_times component: one exposure time per frame of each MVR video."""

from __future__ import annotations

import polars as pl

from npc_frames.schemas import Column, Schema, register

__all__ = ["CAMERA_NWB_NAMES", "VIDEO_FRAME_TIMES"]

#: MVR camera label -> NWB camera name
CAMERA_NWB_NAMES: dict[str, str] = {
    "behavior": "side_camera",
    "eye": "eye_camera",
    "face": "front_camera",
    "nose": "zoomed_side_camera",
}

VIDEO_FRAME_TIMES = Schema(
    name="video_frame_times",
    description=(
        "one row per frame of each MVR video: the time its exposure started on the sync clock "
        "(NWB acquisition/frametimes_<camera>)"
    ),
    key=("camera", "frame_index"),
    columns=(
        Column("session_id", pl.String, "canonical session id, `<subject>_<YYYY-MM-DD>[_<idx>]`"),
        Column(
            "camera",
            pl.String,
            "NWB camera name: side_camera (MVR Behavior), eye_camera (Eye), front_camera (Face), "
            "zoomed_side_camera (Nose)",
        ),
        Column(
            "frame_index",
            pl.Int64,
            "0-based index of the frame in the video file; frame 0 is MVR's metadata frame",
        ),
        Column(
            "timestamp",
            pl.Float64,
            "rising edge of the camera's exposure pulse on sync for this frame; NaN for the "
            "metadata frame (index 0) and for trailing frames without an exposure pulse",
            unit="s",
        ),
    ),
)

register([VIDEO_FRAME_TIMES])
