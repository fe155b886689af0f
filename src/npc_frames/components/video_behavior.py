"""Video-derived behavior components: eye tracking, DeepLabCut and Lightning Pose keypoints, facemap.

Each reads one derived asset of the session (``RawSession.assets``: ``dlc_eye``,
``lp_face_parts``, ``facemap``) and returns one row per frame of one camera's video, with the
frame's ``timestamp`` from :func:`npc_frames.components.video.video_frame_times`. Cameras: eye,
side (MVR Behavior), front (Face) and, on newer rigs, the zoomed side camera (Nose).

Rules (documented in docs/quirks.md):

* No asset of the kind → a zero-row frame (the session has no such data). An asset without the
  expected file → MissingFileError.
* The derived table must have exactly one row per video frame. A table with another row count was
  computed from a different video (or with an extra asset attached) and frame indices cannot be
  matched, so the component raises InconsistentDataError instead of truncating or padding.
* Lost frames need no handling here: they are absent from the video, so video frame ``i`` and
  derived row ``i`` are the same image; ``video_frame_times`` already skips them.
* The zoomed side (Nose) camera is optional: its components are absent (zero rows) when the
  session has no Nose video, or when the asset has no output for it (pipelines have skipped that
  camera) — not an error, unlike a missing side/front output.
"""

from __future__ import annotations

import logging
import posixpath
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from fsspec.core import url_to_fs

from npc_frames import parts
from npc_frames._log import timed
from npc_frames.errors import InconsistentDataError, InvalidIdError, MissingFileError
from npc_frames.ids import parse_camera_name
from npc_frames.memo import Memo
from npc_frames.readers.dlc import read_dlc
from npc_frames.readers.ellipses import read_ellipses
from npc_frames.readers.facemap import read_motion_svd_zarr, read_proc_npy
from npc_frames.readers.lightning_pose import read_lp_metric, read_lp_predictions
from npc_frames.readers.pandas_hdf import column_major
from npc_frames.schemas import Schema
from npc_frames.schemas.video import CAMERA_NWB_NAMES
from npc_frames.schemas.video_behavior import (
    DLC_EYE_CAMERA,
    EYE_TRACKING,
    FACEMAP_MAX_COMPONENTS,
    FACEMAP_SCHEMAS,
    LP_SCHEMAS,
    facemap_column,
)

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = [
    "dlc_eye_camera",
    "eye_tracking",
    "facemap_front_camera",
    "facemap_side_camera",
    "facemap_zoomed_side_camera",
    "lp_front_camera",
    "lp_side_camera",
    "lp_zoomed_side_camera",
]

logger = logging.getLogger(__name__)

#: NWB camera -> MVR label substring in derived file names (lower case)
_MVR_NAME = {
    "eye_camera": "eye",
    "side_camera": "behavior",
    "front_camera": "face",
    "zoomed_side_camera": "nose",
}
#: NWB camera -> Lightning Pose camera folder
_LP_FOLDER = {"side_camera": "side", "front_camera": "face", "zoomed_side_camera": "nose"}
#: cameras only some rigs have: no video or no derived output -> absent, not an error
_OPTIONAL_CAMERAS = frozenset({"zoomed_side_camera"})
#: annotation (manifest) key of the eye camera's pixel scale, mm per px
EYE_MM_PER_PX = "eye_mm_per_px"


# ----------------------------------------------------------------------------------- helpers
_FRAME_TIMES = Memo[pl.DataFrame]("video_behavior.frame_times", maxsize=2)


def _all_frame_times(raw: RawSession) -> pl.DataFrame:
    """Return ``video_frame_times(raw)``, memoized by the content keys of the sync file and MVR
    sidecars it reads (the six components of a session share one computation)."""
    from npc_frames.components.video import video_frame_times

    inputs = [p for p in (raw.sync_path, *raw.video_json_paths) if p]
    key = (str(raw.root), *((p, raw.stat_key(p)) for p in inputs))
    return _FRAME_TIMES.get(key, lambda: video_frame_times(raw))


def _has_video(raw: RawSession, camera: str) -> bool:
    """Return True if `raw` has an MVR sidecar of `camera` (by file name; nothing is read)."""
    for path in raw.video_json_paths:
        try:
            name = parse_camera_name(posixpath.basename(path.rstrip("/")))
        except InvalidIdError:
            continue
        if CAMERA_NWB_NAMES.get(name) == camera:
            return True
    return False


def _frame_times(raw: RawSession, camera: str) -> np.ndarray:
    vft = _all_frame_times(raw).filter(pl.col("camera") == camera)
    if vft.height == 0:
        raise MissingFileError(
            f"no video frame times for {camera}",
            path=raw.root,
            field=camera,
            expected=f"an MVR video of the {camera} with its exposure line on sync",
        )
    if not vft["frame_index"].is_sorted():
        vft = vft.sort("frame_index")
    return vft["timestamp"].to_numpy()


def _with_times(
    raw: RawSession, schema: Schema, values: pl.DataFrame, times: np.ndarray, source: str
) -> pl.DataFrame:
    if values.height != times.size:
        raise InconsistentDataError(
            f"{schema.name}: {values.height} rows but the video has {times.size} frames",
            path=source,
            field="rows",
            expected="one row per video frame (frame 0 = metadata frame included)",
        )
    front = pl.DataFrame(
        {"frame_index": np.arange(times.size, dtype=np.int64), "timestamp": times}
    ).select(pl.lit(str(raw.session_id), dtype=pl.String).alias("session_id"), pl.all())
    return schema.validate(pl.concat([front, values], how="horizontal"), source=source)


def _asset(raw: RawSession, kind: str) -> str | None:
    return (getattr(raw, "assets", None) or {}).get(kind)


def _asset_or_absent(raw: RawSession, kind: str, camera: str | None = None) -> str | None:
    """Return the session's `kind` asset, or None after reporting the component absent: the
    session has no such asset, or `camera` is an optional camera the session did not record."""
    asset = _asset(raw, kind)
    if asset is None:
        parts.report_absent_component(f"no {kind} asset")
        return None
    if camera in _OPTIONAL_CAMERAS and not _has_video(raw, camera):
        parts.report_absent_component(f"no {camera} video")
        return None
    return asset


def _local(raw: RawSession, path: str) -> str:
    fn = getattr(raw, "local", None)
    return fn(path) if callable(fn) else path  # type: ignore[no-any-return]


def _local_tree(raw: RawSession, path: str) -> str:
    fn = getattr(raw, "local_tree", None)
    return fn(path) if callable(fn) and "://" in path else path  # type: ignore[no-any-return]


def _listing(folder: str) -> list[tuple[str, str]]:
    """Return (full path, type) of the top-level entries of `folder` (local or URL)."""
    fs, path = url_to_fs(folder)
    prefix = folder.split("://", 1)[0] + "://" if "://" in folder else ""
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        raise MissingFileError("derived asset folder not found", path=folder) from None
    out = []
    for e in entries:
        name = e["name"].rstrip("/")
        out.append((prefix + name.lstrip("/") if prefix else name, str(e.get("type"))))
    return out


# ------------------------------------------------------------------------------ eye tracking
@timed
def eye_tracking(raw: RawSession, *, mm_per_px: float | None = None) -> pl.DataFrame:
    """Return the ``eye_tracking`` frame: cr/eye/pupil ellipses per eye-camera frame.

    Read from ``ellipses_processed.h5`` at the top of the ``dlc_eye`` asset. `mm_per_px` (else the
    session annotation ``eye_mm_per_px``, e.g. from the manifest) converts ``pupil_area`` to
    ``pupil_area_mm2``; without a scale that column is null.
    """
    asset = _asset_or_absent(raw, "dlc_eye")
    if asset is None:
        return EYE_TRACKING.empty()
    path = next(
        (
            p
            for p, t in _listing(asset)
            if t == "file" and posixpath.basename(p) == "ellipses_processed.h5"
        ),
        None,
    )
    if path is None:
        raise MissingFileError(
            "dlc_eye asset has no ellipses_processed.h5",
            path=asset,
            expected="ellipses_processed.h5 at the top of the asset",
        )
    values = read_ellipses(_local(raw, path))
    times = _frame_times(raw, "eye_camera")
    eye_bad = values["eye_is_bad_frame"].to_numpy()
    blink = eye_bad.copy()
    for k in (1, 2):  # the ±2-frame window the fitting pipeline discards around a missing eye fit
        blink[k:] |= eye_bad[:-k]
        blink[:-k] |= eye_bad[k:]
    scale = mm_per_px if mm_per_px is not None else raw.annotations.get(EYE_MM_PER_PX)
    values = values.with_columns(
        pl.Series("likely_blink", blink, dtype=pl.Boolean),
        (pl.col("pupil_area") * float(scale) ** 2 if scale is not None else pl.lit(None))
        .cast(pl.Float64)
        .alias("pupil_area_mm2"),
    )
    return _with_times(raw, EYE_TRACKING, values, times, path)


@timed
def dlc_eye_camera(raw: RawSession) -> pl.DataFrame:
    """Return the ``dlc_eye_camera`` frame: x, y, likelihood of 36 eye keypoints per frame.

    Read from the DeepLabCut ``.h5`` at the top of the ``dlc_eye`` asset (the ``.h5`` whose name
    does not contain ``ellipses``).
    """
    asset = _asset_or_absent(raw, "dlc_eye")
    if asset is None:
        return DLC_EYE_CAMERA.empty()
    path = next(
        (
            p
            for p, t in sorted(_listing(asset))
            if t == "file" and p.endswith(".h5") and "ellipses" not in posixpath.basename(p)
        ),
        None,
    )
    if path is None:
        raise MissingFileError(
            "dlc_eye asset has no DeepLabCut .h5",
            path=asset,
            expected="<eye video stem>DLC_<scorer>.h5 at the top of the asset",
        )
    values, _ = read_dlc(_local(raw, path))
    return _with_times(raw, DLC_EYE_CAMERA, values, _frame_times(raw, "eye_camera"), path)


# ---------------------------------------------------------------------------- lightning pose
def _lp_files(raw: RawSession, asset: str, camera: str) -> dict[str, str]:
    """Return result type -> CSV path for one camera of a Lightning Pose asset."""
    key = f"{raw.session_id.subject}_{raw.session_id.date:%Y-%m-%d}"
    session_dir = next(
        (
            p
            for p, t in sorted(_listing(asset))
            if t == "directory" and key in posixpath.basename(p)
        ),
        None,
    )
    if session_dir is None:
        raise MissingFileError(
            f"Lightning Pose asset has no folder for {key}",
            path=asset,
            expected=f"<asset>/*{key}*/{_LP_FOLDER[camera]}/*/*_{key}_*.csv",
        )
    cam_dir = next(
        (p for p, t in _listing(session_dir) if posixpath.basename(p) == _LP_FOLDER[camera]), None
    )
    if cam_dir is None and camera in _OPTIONAL_CAMERAS:
        return {}
    if cam_dir is None:
        raise MissingFileError(
            f"Lightning Pose asset has no {_LP_FOLDER[camera]}/ folder",
            path=session_dir,
            expected=f"{_LP_FOLDER[camera]}/ for the {camera}",
        )
    csvs = sorted(
        p
        for sub, t in _listing(cam_dir)
        if t == "directory"
        for p, u in _listing(sub)
        if u == "file" and p.endswith(".csv") and f"_{key}_" in posixpath.basename(p)
    )
    found: dict[str, str] = {}
    for kind, marker in (
        ("predictions", "_predictions.csv"),
        ("error", "_error.csv"),
        ("temporal_norm", "_temporal_norm.csv"),
    ):
        path = next((p for p in csvs if p.endswith(marker)), None)
        if path is None:
            raise MissingFileError(
                f"Lightning Pose {camera} has no *{marker}",
                path=cam_dir,
                expected=f"*/*_{key}_*{marker}",
            )
        found[kind] = path
    return found


def _lp(raw: RawSession, camera: str) -> pl.DataFrame:
    schema = LP_SCHEMAS[camera]
    asset = _asset_or_absent(raw, "lp_face_parts", camera)
    if asset is None:
        return schema.empty()
    files = _lp_files(raw, asset, camera)
    if not files:
        parts.report_absent_component(f"lp_face_parts asset has no {_LP_FOLDER[camera]}/ output")
        return schema.empty()
    times = _frame_times(raw, camera)
    pieces = []
    for kind, path in files.items():
        frame = (
            read_lp_predictions(_local(raw, path))
            if kind == "predictions"
            else read_lp_metric(_local(raw, path))
        )
        if frame.height != times.size:
            raise InconsistentDataError(
                f"{schema.name}: {frame.height} rows but the video has {times.size} frames",
                path=path,
                field="rows",
                expected="one row per video frame (frame 0 = metadata frame included)",
            )
        suffix = {"predictions": "", "error": "_pca_error", "temporal_norm": "_temporal_norm"}
        pieces.append(frame.rename({c: c + suffix[kind] for c in frame.columns}))
    return _with_times(
        raw, schema, pl.concat(pieces, how="horizontal"), times, files["predictions"]
    )


@timed
def lp_side_camera(raw: RawSession) -> pl.DataFrame:
    """Return the ``lp_side_camera`` frame: Lightning Pose face parts per side-camera frame."""
    return _lp(raw, "side_camera")


@timed
def lp_front_camera(raw: RawSession) -> pl.DataFrame:
    """Return the ``lp_front_camera`` frame: Lightning Pose face parts per front-camera frame."""
    return _lp(raw, "front_camera")


@timed
def lp_zoomed_side_camera(raw: RawSession) -> pl.DataFrame:
    """Return the ``lp_zoomed_side_camera`` frame: Lightning Pose face parts (the side model's)
    per frame of the zoomed side (MVR Nose) camera; zero rows when there is no such output."""
    return _lp(raw, "zoomed_side_camera")


# ----------------------------------------------------------------------------------- facemap
def _facemap(
    raw: RawSession, camera: str, *, n_components: int, allow_pickle: bool
) -> pl.DataFrame:
    schema = FACEMAP_SCHEMAS[camera]
    asset = _asset_or_absent(raw, "facemap", camera)
    if asset is None:
        return schema.empty()
    label = _MVR_NAME[camera]
    listing = sorted(_listing(asset))
    entries = [
        (p, t)
        for p, t in listing
        if label in posixpath.basename(p).lower() and "motsvd" in posixpath.basename(p).lower()
    ]
    procs = [
        p
        for p, t in listing
        if t == "file" and label in posixpath.basename(p).lower() and p.endswith("_proc.npy")
    ]
    k = min(n_components, FACEMAP_MAX_COMPONENTS)
    if entries:
        path = entries[0][0]
        values = read_motion_svd_zarr(_local_tree(raw, path), n_components=k)
    elif procs:
        path = procs[0]
        values = read_proc_npy(_local(raw, path), allow_pickle=allow_pickle)[:, :k]
    elif camera in _OPTIONAL_CAMERAS:
        parts.report_absent_component(f"facemap asset has no motion SVD for the {camera}")
        return schema.empty()
    else:
        raise MissingFileError(
            f"facemap asset has no motion SVD for the {camera}",
            path=asset,
            expected=f"a top-level '*{label}*motSVD*' zarr (or '*{label}*_proc.npy')",
        )
    # one blocked transpose: every component column is then contiguous (no strided copies)
    columns = column_major(np.asarray(values, dtype=np.float32))
    frame = pl.DataFrame({facemap_column(j): col for j, col in enumerate(columns)})
    return _with_times(raw, schema, frame, _frame_times(raw, camera), path)


@timed
def facemap_side_camera(
    raw: RawSession, *, n_components: int = FACEMAP_MAX_COMPONENTS, allow_pickle: bool = False
) -> pl.DataFrame:
    """Return the ``facemap_side_camera`` frame: the first `n_components` (≤ 100) motion SVD
    components per side-camera frame.

    Read from the zarr export; facemap's pickled ``_proc.npy`` only with ``allow_pickle=True``.
    """
    return _facemap(raw, "side_camera", n_components=n_components, allow_pickle=allow_pickle)


@timed
def facemap_front_camera(
    raw: RawSession, *, n_components: int = FACEMAP_MAX_COMPONENTS, allow_pickle: bool = False
) -> pl.DataFrame:
    """Return the ``facemap_front_camera`` frame: the first `n_components` (≤ 100) motion SVD
    components per front-camera frame (see :func:`facemap_side_camera`)."""
    return _facemap(raw, "front_camera", n_components=n_components, allow_pickle=allow_pickle)


@timed
def facemap_zoomed_side_camera(
    raw: RawSession, *, n_components: int = FACEMAP_MAX_COMPONENTS, allow_pickle: bool = False
) -> pl.DataFrame:
    """Return the ``facemap_zoomed_side_camera`` frame: motion SVD components per frame of the
    zoomed side (MVR Nose) camera (see :func:`facemap_side_camera`); zero rows when the session
    has no Nose video or the facemap asset has no output for it."""
    return _facemap(raw, "zoomed_side_camera", n_components=n_components, allow_pickle=allow_pickle)
