"""Synthetic video-derived assets: DeepLabCut eye tracking, Lightning Pose face parts, facemap.

Each is written in its real format as a sibling asset of the raw folder, named
``<raw name>_<process>_<YYYY-MM-DD>_<HH-MM-SS>`` (the rule :func:`npc_frames.assets.choose_assets`
reads), with one row per video frame (frame 0, MVR's metadata frame, included):

* ``dlc_eye``: ``ellipses_processed.h5`` (pandas HDFStore, ``fixed`` layout, keys cr/eye/pupil)
  and ``<Eye video stem>DLC_resnet50_universal_eye_trackingJul10shuffle1_1030000.h5`` (DeepLabCut
  ``table`` layout, key ``df_with_missing``, 36 body parts cr1..12, eye1..12, pupil1..12: 12 points
  on each ellipse).
* ``lp_face_parts``: ``<raw name>/<side|face|nose>/predictions/<Label>_<subject>_<date>_{predictions,
  pca_singleview_error,temporal_norm}.csv`` for the Behavior (side), Face (front) and, when the
  session has one, Nose (zoomed side; the side model's body parts) videos.
* ``facemap``: ``<video stem>_motSVD.zarr`` (frames × components float32) for Behavior, Face and
  Nose, and optionally facemap's pickled ``<video stem>_proc.npy``.

Known traces (times = the camera's frame times on the sync clock; the metadata frame uses the next
frame's time minus one frame period): the pupil radius follows running speed and an alpha kernel
after each reward; blinks (eye fit missing, pupil and cr missing ±2 frames, low likelihoods);
isolated pupil-fit failures; the tongue and jaw keypoints move with each lick; each motion SVD
component is a known sinusoid plus lick and running terms. ``length_delta`` adds (or removes)
trailing rows of an asset so that its length differs from the video's.

Writing needs pandas and PyTables (``tables``) — the formats are pandas' own.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "DLC_EYE_SCORER",
    "LP_BODYPARTS",
    "derived_asset_name",
    "make_video_behavior",
]

F64 = npt.NDArray[np.float64]

DLC_EYE_SCORER = "DLC_resnet50_universal_eye_trackingJul10shuffle1_1030000"
LP_BODYPARTS: Mapping[str, tuple[str, ...]] = {
    "side": (
        "eye_top_l", "eye_bottom_l", "whisker_pad_l_top", "whisker_pad_l_side", "ear_tip_l",
        "ear_base_l", "nostril_l", "nose_tip", "jaw", "tongue_base_l", "tongue_tip",
    ),
    "face": (
        "eye_top_l", "eye_bottom_l", "whisker_pad_l_top", "whisker_pad_l_side", "ear_tip_l",
        "ear_base_l", "nostril_l", "nostril_r", "nose_tip", "tongue_base_l", "tongue_tip",
        "tongue_base_r",
    ),
}  # fmt: skip
#: MVR video label -> Lightning Pose camera folder (Nose: the zoomed side view, side model parts)
LP_CAMERAS = {"Behavior": "side", "Face": "face", "Nose": "nose"}
FACEMAP_LABELS = ("Behavior", "Face", "Nose")
FPS = 60.0
_PROCESS = {"dlc_eye": "dlc_eye", "lp_face_parts": "LPFaceParts", "facemap": "facemap"}
_BLINK_FRAMES = 6
_DILATE = 2


def derived_asset_name(raw_name: str, kind: str, created: datetime.datetime) -> str:
    """Return ``<raw name>_<process>_<YYYY-MM-DD>_<HH-MM-SS>`` for asset `kind`."""
    return f"{raw_name}_{_PROCESS[kind]}_{created:%Y-%m-%d_%H-%M-%S}"


def _times(frame_times: F64) -> F64:
    t = np.asarray(frame_times, dtype=np.float64).copy()
    if t.size > 1 and np.isnan(t[0]):
        t[0] = t[1] - 1 / FPS
    return t


def _alpha(t: F64, events: F64, tau: float, span: float) -> F64:
    """Sum over events e of ((t-e)/tau)·exp(1-(t-e)/tau) for 0 ≤ t-e < span (peak 1 at tau)."""
    out = np.zeros(t.size)
    n = int(np.ceil(span * FPS)) + 2
    idx = np.searchsorted(t, events)[:, None] + np.arange(n)[None, :]
    ok = idx < t.size
    d = (t[np.minimum(idx, t.size - 1)] - events[:, None]) / tau
    val = np.where(ok & (d >= 0) & (d * tau < span), d * np.exp(1 - d), 0.0)
    np.add.at(out, np.minimum(idx, t.size - 1), val)
    return out


def _bump(t: F64, events: F64, width: float) -> F64:
    """Sum of Gaussian bumps exp(-((t-e)/width)²) within ±4 widths of each event."""
    out = np.zeros(t.size)
    n = int(np.ceil(4 * width * FPS)) + 1
    idx = np.searchsorted(t, events)[:, None] + np.arange(-n, n + 1)[None, :]
    ok = (idx >= 0) & (idx < t.size)
    safe = np.clip(idx, 0, t.size - 1)
    val = np.where(ok, np.exp(-(((t[safe] - events[:, None]) / width) ** 2)), 0.0)
    np.add.at(out, safe, val)
    return out


def _signals(t: F64, task: Mapping[str, Any] | None) -> dict[str, F64]:
    if task is None:
        return {"speed": np.zeros(t.size), "reward": np.zeros(t.size), "lick": np.zeros(t.size)}
    rs = task["running_speed"]
    ts, sp = np.asarray(rs["timestamps"], float), np.asarray(rs["speed"], float)
    ok = np.isfinite(ts) & np.isfinite(sp)
    speed = np.interp(t, ts[ok], sp[ok], left=0.0, right=0.0) if ok.any() else np.zeros(t.size)
    rewards = np.asarray(task["rewards"]["timestamps"], float)
    licks = np.asarray(task["licks"]["timestamps"], float)
    return {
        "speed": speed,
        "reward": _alpha(t, rewards, tau=1.0, span=8.0),
        "lick": _bump(t, licks, width=0.03),
    }


def _resize(df: pl.DataFrame, delta: int) -> pl.DataFrame:
    if delta <= 0:
        return df.head(df.height + delta)
    extra = df.tail(1).select([pl.col(c).repeat_by(delta).explode() for c in df.columns])
    return pl.concat([df, extra])


# -------------------------------------------------------------------------------- eye tracking
def _eye_truth(t: F64, sig: Mapping[str, F64], rng: np.random.Generator) -> dict[str, Any]:
    n = t.size
    g: dict[str, F64] = {}
    g["eye_center_x"] = np.full(n, 320.0)
    g["eye_center_y"] = np.full(n, 240.0)
    g["eye_width"], g["eye_height"], g["eye_phi"] = (
        np.full(n, 110.0),
        np.full(n, 70.0),
        np.full(n, 0.05),
    )
    radius = 10.0 + 0.08 * sig["speed"] + 5.0 * sig["reward"]
    g["pupil_center_x"] = 320.0 + 3.0 * np.sin(2 * np.pi * t / 30.0)
    g["pupil_center_y"] = 240.0 + 2.0 * np.cos(2 * np.pi * t / 47.0)
    g["pupil_width"], g["pupil_height"], g["pupil_phi"] = radius, 0.95 * radius, np.zeros(n)
    g["cr_center_x"], g["cr_center_y"] = g["pupil_center_x"] + 5.0, g["pupil_center_y"] - 4.0
    g["cr_width"], g["cr_height"], g["cr_phi"] = np.full(n, 4.0), np.full(n, 3.8), np.zeros(n)
    # blinks: every ~15 s, 6 frames of missing eye fit
    starts = np.flatnonzero(rng.random(n) < 1 / (15 * FPS))
    starts = starts[(starts > 4) & (starts < n - _BLINK_FRAMES - 4)]
    blink = np.zeros(n, dtype=bool)
    for k in range(_BLINK_FRAMES):
        blink[starts + k] = True
    near = blink.copy()
    for k in range(1, _DILATE + 1):
        near[k:] |= blink[:-k]
        near[:-k] |= blink[k:]
    pupil_fail = (rng.random(n) < 0.005) & ~near
    return {"geometry": g, "blink": blink, "likely_blink": near, "pupil_fail": pupil_fail}


def _ellipse_frames(truth: Mapping[str, Any]) -> dict[str, pl.DataFrame]:
    g, blink, near, fail = (
        truth["geometry"],
        truth["blink"],
        truth["likely_blink"],
        truth["pupil_fail"],
    )
    conf = {"eye": (0.97, 0.05), "pupil": (0.95, 0.05), "cr": (0.9, 0.05)}
    out = {}
    for f in ("cr", "eye", "pupil"):
        bad = blink if f == "eye" else near | (fail if f == "pupil" else False)
        cols = {
            c: np.where(bad, np.nan, g[f"{f}_{c}"])
            for c in ("center_x", "center_y", "width", "height", "phi")
        }
        cols[f"{f}_average_confidence"] = np.where(blink, conf[f][1], conf[f][0])
        cols[f"{f}_area"] = np.pi * np.maximum(cols["width"], cols["height"]) ** 2
        cols[f"{f}_is_bad_frame"] = np.isnan(cols["center_x"])
        out[f] = pl.DataFrame(cols)
    return out


def _dlc_points(truth: Mapping[str, Any]) -> pl.DataFrame:
    g, blink = truth["geometry"], truth["blink"]
    theta = 2 * np.pi * np.arange(12) / 12
    cols: dict[str, F64] = {}
    for f, like in (("cr", 0.9), ("eye", 0.97), ("pupil", 0.95)):
        cx, cy = g[f"{f}_center_x"][:, None], g[f"{f}_center_y"][:, None]
        w, h, phi = g[f"{f}_width"][:, None], g[f"{f}_height"][:, None], g[f"{f}_phi"][:, None]
        x = cx + w * np.cos(theta) * np.cos(phi) - h * np.sin(theta) * np.sin(phi)
        y = cy + w * np.cos(theta) * np.sin(phi) + h * np.sin(theta) * np.cos(phi)
        for k in range(12):
            cols[f"{f}{k + 1}_x"] = x[:, k]
            cols[f"{f}{k + 1}_y"] = y[:, k]
            cols[f"{f}{k + 1}_likelihood"] = np.where(blink, 0.05, like)
    return pl.DataFrame(cols)


def _write_hdf_fixed(path: Path, frames: Mapping[str, pl.DataFrame]) -> None:
    import pandas as pd

    for key, df in frames.items():
        pd.DataFrame({c: df[c].to_numpy() for c in df.columns}).to_hdf(
            path, key=key, mode="a", format="fixed"
        )


def _write_dlc(path: Path, points: pl.DataFrame, scorer: str) -> None:
    import pandas as pd

    names = points.columns
    tuples = [(scorer, *n.rsplit("_", 1)) for n in names]
    cols = pd.MultiIndex.from_tuples(tuples, names=["scorer", "bodyparts", "coords"])
    pd.DataFrame(points.to_numpy(), columns=cols).to_hdf(
        path, key="df_with_missing", format="table", mode="w"
    )


# ----------------------------------------------------------------------------- lightning pose
def _lp_points(
    t: F64, sig: Mapping[str, F64], camera: str, rng: np.random.Generator
) -> dict[str, pl.DataFrame]:
    parts = LP_BODYPARTS["side" if camera == "nose" else camera]
    n = t.size
    base = rng.uniform([60, 60], [580, 420], size=(len(parts), 2))
    whisk = np.sin(2 * np.pi * 8.0 * t) * sig["speed"] / 50.0
    pred: dict[str, F64] = {}
    err: dict[str, F64] = {}
    tnorm: dict[str, F64] = {}
    for (bx, by), bp in zip(base, parts, strict=True):
        dx, dy = np.zeros(n), np.zeros(n)
        like = np.full(n, 0.92)
        if bp.startswith("tongue"):
            dy = 25.0 * sig["lick"]
            like = 0.1 + 0.85 * np.clip(sig["lick"], 0, 1)
        elif bp == "jaw":
            dy = 8.0 * sig["lick"]
        elif bp.startswith("whisker"):
            dx = 3.0 * whisk
        x, y = bx + dx, by + dy
        pred[f"{bp}_x"], pred[f"{bp}_y"], pred[f"{bp}_likelihood"] = x, y, like
        err[bp] = np.abs(rng.normal(0, 2.0, n))
        tn = np.full(n, np.nan)
        tn[1:] = np.hypot(np.diff(x), np.diff(y))
        tnorm[bp] = tn
    return {
        "predictions": pl.DataFrame(pred),
        "error": pl.DataFrame(err),
        "temporal_norm": pl.DataFrame(tnorm),
    }


def _write_lp(folder: Path, stem: str, frames: Mapping[str, pl.DataFrame], scorer: str) -> None:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    pred = frames["predictions"]
    tuples = [(scorer, *c.rsplit("_", 1)) for c in pred.columns]
    cols = pd.MultiIndex.from_tuples(tuples, names=["scorer", "bodyparts", "coords"])
    pd.DataFrame(pred.to_numpy(), columns=cols).to_csv(folder / f"{stem}_predictions.csv")
    pd.DataFrame(frames["error"].to_pandas()).to_csv(folder / f"{stem}_pca_singleview_error.csv")
    pd.DataFrame(frames["temporal_norm"].to_pandas()).to_csv(folder / f"{stem}_temporal_norm.csv")


# ------------------------------------------------------------------------------------ facemap
def _motion_svd(
    t: F64, sig: Mapping[str, F64], n_components: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    freqs = rng.uniform(0.05, 2.0, n_components)
    phases = rng.uniform(0, 2 * np.pi, n_components)
    amps = rng.uniform(1.0, 20.0, n_components) / (1 + np.arange(n_components))
    out = amps * np.sin(2 * np.pi * freqs * t[:, None] + phases)
    out[:, 0] += 30.0 * sig["lick"]
    if n_components > 1:
        out[:, 1] += 0.5 * sig["speed"]
    return out.astype(np.float32)


# -------------------------------------------------------------------------------------- entry
def make_video_behavior(
    root: Path,
    *,
    rng: np.random.Generator,
    video: Mapping[str, Mapping[str, Any]],
    task: Mapping[str, Any] | None,
    subject: int,
    date: datetime.date,
    kinds: tuple[str, ...] = ("dlc_eye", "lp_face_parts", "facemap"),
    length_delta: Mapping[str, int] | None = None,
    n_components: int = 16,
    facemap_proc: bool = False,
) -> dict[str, Any]:
    """Return the truth of the derived assets written beside raw folder `root`, per kind.

    Truth per kind: ``path`` and, per MVR camera label, a frame of the values written (before any
    `length_delta`): ``dlc_eye`` → ``ellipses`` (24 ellipse columns + ``likely_blink``) and ``dlc``
    (``<bodypart>_<coord>``); ``lp_face_parts`` → ``predictions``, ``error``, ``temporal_norm``;
    ``facemap`` → ``motion_svd`` (frames × `n_components`, float32).
    """
    created = datetime.datetime.combine(date + datetime.timedelta(days=1), datetime.time(10))
    delta = dict(length_delta or {})
    out: dict[str, Any] = {}
    for kind in kinds:
        asset = root.with_name(derived_asset_name(root.name, kind, created))
        asset.mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {"path": str(asset), "length_delta": int(delta.get(kind, 0))}
        for label, cam in video.items():
            t = _times(np.asarray(cam["frame_times"], dtype=np.float64))
            stem = Path(str(cam["video_path"])).stem
            sig = _signals(t, task)
            d = int(delta.get(kind, 0))
            if kind == "dlc_eye" and label == "Eye":
                truth = _eye_truth(t, sig, rng)
                frames = _ellipse_frames(truth)
                points = _dlc_points(truth)
                _write_hdf_fixed(
                    asset / "ellipses_processed.h5",
                    {k: _resize(v, d) for k, v in frames.items()},
                )
                _write_dlc(asset / f"{stem}{DLC_EYE_SCORER}.h5", _resize(points, d), DLC_EYE_SCORER)
                ellipses = pl.concat(
                    [
                        frames[f].rename(
                            {c: f"{f}_{c}" for c in frames[f].columns if not c.startswith(f)}
                        )
                        for f in ("cr", "eye", "pupil")
                    ],
                    how="horizontal",
                ).with_columns(pl.Series("likely_blink", truth["likely_blink"]))
                entry[label] = {"ellipses": ellipses, "dlc": points}
            elif kind == "lp_face_parts" and label in LP_CAMERAS:
                cam_dir = LP_CAMERAS[label]
                frames = _lp_points(t, sig, cam_dir, rng)
                _write_lp(
                    asset / root.name / cam_dir / "predictions",
                    f"{label}_{subject}_{date:%Y-%m-%d}",
                    {k: _resize(v, d) for k, v in frames.items()},
                    scorer="heatmap_tracker",
                )
                entry[label] = frames
            elif kind == "facemap" and label in FACEMAP_LABELS:
                import zarr

                svd = _motion_svd(t, sig, n_components, rng)
                n = svd.shape[0] + d
                written = svd[:n] if d <= 0 else np.vstack([svd, np.repeat(svd[-1:], d, 0)])
                z = zarr.open(
                    str(asset / f"{stem}_motSVD.zarr"),
                    mode="w",
                    shape=written.shape,
                    chunks=(min(written.shape[0], 65536), written.shape[1]),
                    dtype=np.float32,
                )
                z[:] = written
                if facemap_proc:
                    proc = {"motSVD": [np.zeros((0, 0), np.float32), written], "Ly": [480]}
                    np.save(asset / f"{stem}_proc.npy", np.array(proc, dtype=object))
                entry[label] = {"motion_svd": svd}
        out[kind] = entry
    return out
