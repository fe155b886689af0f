"""facemap motion SVD: frames × components, from the zarr export or facemap's ``_proc.npy``.

The zarr export is one 2-D array (n_frames, n_components) per camera: the projection of each
frame's motion energy (absolute frame difference in the ROI) onto its top spatial components.
facemap's own ``*_proc.npy`` is a pickled dict whose ``motSVD`` list holds the whole-frame
result at [0] (empty unless computed) and one array per ROI after it; loading it executes
pickle, so :func:`read_proc_npy` refuses unless the caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

import logging

import numpy as np

from npc_frames._log import timed
from npc_frames.errors import BadFormatError, MissingFileError, ParameterError
from npc_frames.readers._literal import load_npy

logger = logging.getLogger(__name__)

__all__ = ["read_motion_svd_zarr", "read_proc_npy"]


def _check(values: np.ndarray, path: str) -> np.ndarray:
    if values.ndim != 2 or values.dtype.kind != "f":
        raise BadFormatError(
            f"motion SVD has shape {values.shape} and dtype {values.dtype}",
            path=path,
            expected="a 2-D float array (frames × components)",
        )
    return values


@timed
def read_motion_svd_zarr(path: str, *, n_components: int | None = None) -> np.ndarray:
    """Return the (frames, components) motion SVD array of a zarr export (first
    `n_components` only, when given)."""
    import zarr

    try:
        arr = zarr.open(path, mode="r")
    except (FileNotFoundError, zarr.errors.PathNotFoundError):
        raise MissingFileError("facemap zarr not found", path=path) from None
    except Exception as exc:
        raise BadFormatError(f"not a zarr array: {exc}", path=path) from exc
    if not hasattr(arr, "shape") or len(arr.shape) != 2:
        raise BadFormatError(
            "zarr store is not a 2-D array", path=path, expected="(frames, components)"
        )
    k = arr.shape[1] if n_components is None else min(n_components, arr.shape[1])
    try:
        return _check(np.asarray(arr[:, :k]), path)
    except (ValueError, RuntimeError, OSError) as exc:
        raise BadFormatError(f"zarr chunks unreadable: {exc}", path=path) from exc


@timed
def read_proc_npy(path: str, *, allow_pickle: bool = False, roi: int = 1) -> np.ndarray:
    """Return ``proc['motSVD'][roi]`` of a facemap ``_proc.npy`` (frames × components).

    The file is a pickle; it is only loaded with ``allow_pickle=True`` (ParameterError
    otherwise), so only pass that for files you trust.
    """
    if not allow_pickle:
        raise ParameterError(
            "facemap _proc.npy is a pickle and is not loaded by default",
            path=path,
            field="allow_pickle",
            expected="allow_pickle=True for a trusted file, or the zarr export",
        )
    try:
        proc = load_npy(path, allow_pickle=True).item()
    except FileNotFoundError:
        raise MissingFileError("facemap proc file not found", path=path) from None
    except Exception as exc:
        raise BadFormatError(f"not a facemap proc dict: {exc}", path=path) from exc
    try:
        values = np.asarray(proc["motSVD"][roi])
    except (KeyError, IndexError, TypeError) as exc:
        raise BadFormatError(
            f"no motSVD[{roi}]: {exc}", path=path, field="motSVD", expected="list of arrays"
        ) from exc
    return _check(values, path)
