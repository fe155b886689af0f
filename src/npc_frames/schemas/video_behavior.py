"""Schemas of the video-derived behavior components: eye tracking, pose keypoints, facemap.

Every table has one row per video frame (frame 0 = MVR's metadata frame, timestamp NaN) of one
camera, keyed by ``frame_index``, with ``timestamp`` from ``video_frame_times``.
"""

from __future__ import annotations

import polars as pl

from npc_frames.schemas import Column, Schema, register

__all__ = [
    "DLC_EYE_BODYPARTS",
    "DLC_EYE_CAMERA",
    "EYE_TRACKING",
    "FACEMAP_MAX_COMPONENTS",
    "FACEMAP_SCHEMAS",
    "LP_BODYPARTS",
    "LP_SCHEMAS",
    "facemap_column",
]

_SESSION = Column("session_id", pl.String, "canonical session id, `<subject>_<YYYY-MM-DD>[_<idx>]`")
_FRAME = Column(
    "frame_index", pl.Int64, "0-based index of the frame in the video; 0 is MVR's metadata frame"
)
_TIME = Column(
    "timestamp",
    pl.Float64,
    "start of the frame's exposure on the sync clock (video_frame_times); NaN for the metadata "
    "frame and frames without an exposure pulse",
    unit="s",
)

_FEATURE_NAMES = {
    "cr": "corneal reflection",
    "eye": "eye (inner eyelid perimeter)",
    "pupil": "pupil",
}


def _ellipse_columns() -> list[Column]:
    out = []
    for f, name in _FEATURE_NAMES.items():
        out += [
            Column(f"{f}_center_x", pl.Float64, f"{name} ellipse centre x, px from the frame's left edge", unit="px"),
            Column(f"{f}_center_y", pl.Float64, f"{name} ellipse centre y, px from the frame's top edge", unit="px"),
            Column(f"{f}_width", pl.Float64, f"{name} ellipse semi-axis along phi, px", unit="px"),
            Column(f"{f}_height", pl.Float64, f"{name} ellipse other semi-axis, px", unit="px"),
            Column(f"{f}_phi", pl.Float64, f"{name} ellipse rotation, counter-clockwise from the image x axis", unit="rad"),
            Column(f"{f}_average_confidence", pl.Float64, f"mean DeepLabCut likelihood (0-1) of the 12 {name} points"),
            Column(f"{f}_area", pl.Float64, f"pi * max(width, height)^2 of the {name} ellipse (circular formula, as the fitting pipeline computes it)", unit="px²"),
            Column(f"{f}_is_bad_frame", pl.Boolean, f"True when no {name} ellipse was accepted in this frame (its values are NaN)"),
        ]  # fmt: skip
    return out


EYE_TRACKING = Schema(
    name="eye_tracking",
    description=(
        "ellipses fitted per eye-camera frame to the pupil perimeter, the inner eyelid perimeter "
        "(eye) and the corneal reflection (cr), from DeepLabCut keypoints"
    ),
    key=("frame_index",),
    columns=(
        _SESSION,
        _FRAME,
        _TIME,
        *_ellipse_columns(),
        Column(
            "likely_blink",
            pl.Boolean,
            "True when the eye ellipse is missing in this frame or within 2 frames of one "
            "(the window over which pupil and cr fits are discarded around a missing eye fit)",
        ),
        Column(
            "pupil_area_mm2",
            pl.Float64,
            "pupil_area converted with the session's eye-camera pixel scale (mm per px); null "
            "when no scale is known",
            required=False,
            unit="mm²",
        ),
    ),
)

#: DeepLabCut eye model body parts: 12 perimeter points each of cr, eye and pupil
DLC_EYE_BODYPARTS = tuple(f"{f}{k}" for f in ("cr", "eye", "pupil") for k in range(1, 13))
_COORD_TEXT = {
    "x": ("px from the frame's left edge", "px"),
    "y": ("px from the frame's top edge", "px"),
    "likelihood": ("network likelihood (softmax, 0-1)", None),
}


def _keypoint_columns(bodyparts: tuple[str, ...], *, lp: bool) -> list[Column]:
    out = []
    for bp in bodyparts:
        for coord, (text, unit) in _COORD_TEXT.items():
            out.append(Column(f"{bp}_{coord}", pl.Float64, f"{bp}: {text}", unit=unit))
        if lp:
            out.append(
                Column(
                    f"{bp}_pca_error",
                    pl.Float64,
                    f"{bp}: distance between the prediction and its reconstruction through the "
                    "model's pose PCA, px",
                    unit="px",
                )
            )
            out.append(
                Column(
                    f"{bp}_temporal_norm",
                    pl.Float64,
                    f"{bp}: distance from the previous frame's prediction, px (NaN in frame 0)",
                    unit="px",
                )
            )
    return out


DLC_EYE_CAMERA = Schema(
    name="dlc_eye_camera",
    description="DeepLabCut keypoints of the eye camera per frame (universal eye-tracking model)",
    key=("frame_index",),
    columns=(_SESSION, _FRAME, _TIME, *_keypoint_columns(DLC_EYE_BODYPARTS, lp=False)),
)

#: Lightning Pose face-part models: NWB camera -> body parts
LP_BODYPARTS: dict[str, tuple[str, ...]] = {
    "side_camera": (
        "eye_top_l", "eye_bottom_l", "whisker_pad_l_top", "whisker_pad_l_side", "ear_tip_l",
        "ear_base_l", "nostril_l", "nose_tip", "jaw", "tongue_base_l", "tongue_tip",
    ),
    "front_camera": (
        "eye_top_l", "eye_bottom_l", "whisker_pad_l_top", "whisker_pad_l_side", "ear_tip_l",
        "ear_base_l", "nostril_l", "nostril_r", "nose_tip", "tongue_base_l", "tongue_tip",
        "tongue_base_r",
    ),
}  # fmt: skip
# the zoomed side (Nose) camera is tracked with the side model's body parts
LP_BODYPARTS["zoomed_side_camera"] = LP_BODYPARTS["side_camera"]

LP_SCHEMAS: dict[str, Schema] = {
    camera: Schema(
        name=f"lp_{camera}",
        description=(
            f"Lightning Pose keypoints of {len(parts)} facial features per {camera} frame, with "
            "each prediction's PCA reconstruction error and temporal norm "
            "(doi 10.1038/s41592-024-02319-1)"
        ),
        key=("frame_index",),
        columns=(_SESSION, _FRAME, _TIME, *_keypoint_columns(parts, lp=True)),
    )
    for camera, parts in LP_BODYPARTS.items()
}

#: motion SVD components kept per camera (columns motion_svd_00 … motion_svd_99)
FACEMAP_MAX_COMPONENTS = 100


def facemap_column(k: int) -> str:
    """Return the column name of motion SVD component `k` (0-based)."""
    return f"motion_svd_{k:02d}"


FACEMAP_SCHEMAS: dict[str, Schema] = {
    camera: Schema(
        name=f"facemap_{camera}",
        description=(
            f"facemap motion SVD of the {camera} face ROI: per frame, the projection of the "
            "motion energy (absolute frame difference) onto its first spatial components"
        ),
        key=("frame_index",),
        columns=(
            _SESSION,
            _FRAME,
            _TIME,
            *(
                Column(
                    facemap_column(k),
                    pl.Float32,
                    f"motion SVD component {k} (0 = largest variance); null when the file has "
                    "fewer components",
                    required=k == 0,
                    unit="px",
                )
                for k in range(FACEMAP_MAX_COMPONENTS)
            ),
        ),
    )
    for camera in ("side_camera", "front_camera", "zoomed_side_camera")
}

register([EYE_TRACKING, DLC_EYE_CAMERA, *LP_SCHEMAS.values(), *FACEMAP_SCHEMAS.values()])
