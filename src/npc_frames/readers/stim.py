"""Read TaskControl stimulus HDF5 files (FORMATS §3.1–§3.3).

TaskControl writes every public attribute of the task object to the file root at session end
(§3.2): ``None`` becomes a NaN float scalar, a dict becomes a group, a str a variable-length UTF-8
scalar, lists of strings vlen-string datasets, ragged lists vlen-float64 datasets, anything else a
plain dataset. :class:`StimFile` undoes those rules: strings come back as ``str``, string lists as
``list[str]``, groups as dicts, and a NaN *scalar* comes back as ``None`` (it meant "unset").
NaN elements inside arrays are data and are kept.
"""

from __future__ import annotations

import builtins
import datetime
import logging
import os
import posixpath
from typing import IO, Any

import h5py
import numpy as np
import numpy.typing as npt

from npc_frames._log import timed
from npc_frames.errors import BadFormatError
from npc_frames.memo import Memo
from npc_frames.readers._h5 import open_h5

__all__ = ["StimFile", "open_stim"]

logger = logging.getLogger(__name__)

_MISSING: Any = object()


def _decode_scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and np.isnan(value):
        return None  # TaskControl writes None as a NaN scalar (§3.2)
    return value


def _convert(node: h5py.Dataset | h5py.Group) -> Any:
    if isinstance(node, h5py.Group):
        return {k: _convert(v) for k, v in node.items()}
    if node.shape == ():
        return _decode_scalar(node[()])
    if node.shape is None:  # empty dataspace
        return None
    if h5py.check_string_dtype(node.dtype) is not None:
        return [str(x) for x in node.asstr()[()].ravel().tolist()]
    vlen = h5py.check_vlen_dtype(node.dtype)
    if vlen is not None:
        if h5py.check_string_dtype(vlen) is not None:
            return [str(x) for x in node.asstr()[()].ravel().tolist()]
        out = np.empty(node.shape, dtype=object)
        out[...] = [np.asarray(x, dtype=vlen) for x in node[()]]
        return out
    return node[()]


class StimFile:
    """One TaskControl stim file, read lazily through h5py (keys per FORMATS §3.2–§3.3).

    Use :func:`open_stim` to get one. The underlying file stays open while the object lives;
    :meth:`close` (or a ``with`` block) closes it.
    """

    def __init__(self, path: str, h5: h5py.File, handle: IO[bytes] | None = None) -> None:
        self.path = path
        self._h5 = h5
        self._handle = handle
        self._cache: dict[str, Any] = {}
        if "frameIntervals" not in h5:
            raise BadFormatError(
                "stim file lacks frameIntervals",
                path=path,
                field="frameIntervals",
                expected="a float64 dataset of seconds between flips (TaskControl)",
            )
        fi = np.asarray(h5["frameIntervals"][()], dtype=np.float64).ravel()
        fi.flags.writeable = False
        self._frame_intervals = fi

    def __repr__(self) -> str:
        return f"StimFile({self.path!r}, n_frames={self.n_frames})"

    def __enter__(self) -> StimFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HDF5 file (and remote handle, if any)."""
        try:
            self._h5.close()
        finally:
            if self._handle is not None:
                self._handle.close()

    # ------------------------------------------------------------------------------ identity
    @property
    def script_name(self) -> builtins.str:
        """Return the TaskControl script name: the file stem up to the first underscore (§3.1)."""
        return posixpath.basename(self.path.replace("\\", "/")).split("_", 1)[0].split(".")[0]

    @property
    def frame_intervals(self) -> npt.NDArray[np.float64]:
        """Return ``frameIntervals``: seconds between successive flips (length n_frames − 1)."""
        return self._frame_intervals

    @property
    def n_frames(self) -> int:
        """Return the frame count, ``len(frameIntervals) + 1`` (0 when it is empty)."""
        n = self._frame_intervals.size
        return n + 1 if n else 0

    @property
    def start_time(self) -> datetime.datetime:
        """Return ``startTime`` (local wall clock of the first frame, whole seconds)."""
        text = self.str("startTime")
        try:
            return datetime.datetime.strptime(str(text), "%Y%m%d_%H%M%S")
        except ValueError:
            raise BadFormatError(
                f"stim startTime {text!r} is not YYYYMMDD_HHMMSS",
                path=self.path,
                field="startTime",
                expected="'YYYYMMDD_HHMMSS'",
            ) from None

    # ---------------------------------------------------------------------------------- keys
    def has(self, key: builtins.str) -> bool:
        """Return True if `key` (a root key or a '/'-separated path) exists in the file."""
        return key in self._h5

    def keys(self) -> list[builtins.str]:
        """Return the root keys of the file."""
        return list(self._h5.keys())

    def get(self, key: builtins.str, default: Any = None) -> Any:
        """Return the decoded value of `key` per §3.2, or `default` when absent.

        Scalars come back as Python values (str, int, float, bool; NaN → None), string lists
        as ``list[str]``, groups as dicts, ragged vlen-float datasets as object arrays of float
        arrays, everything else as numpy arrays.
        """
        if key in self._cache:
            return self._cache[key]
        if key not in self._h5:
            return default
        try:
            value = _convert(self._h5[key])
        except (OSError, KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise BadFormatError(
                f"stim key cannot be read: {exc}",
                path=self.path,
                field=key,
                expected="a dataset or group written by TaskControl.saveParameters",
            ) from None
        self._cache[key] = value
        return value

    def _required(self, key: builtins.str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise BadFormatError(
                f"stim file lacks {key!r}",
                path=self.path,
                field=key,
                expected=f"key {key!r} ({self.script_name} stim file)",
            )
        return value

    def array(self, key: builtins.str, dtype: npt.DTypeLike | None = None) -> npt.NDArray[Any]:
        """Return `key` as a numpy array (optionally cast to `dtype`); a None scalar → NaN.

        Raises BadFormatError naming the file and key when it is absent or cannot be cast.
        """
        value = self._required(key)
        if value is None:
            value = np.nan
        if isinstance(value, dict):
            raise BadFormatError(
                f"stim key {key!r} is a group, not an array",
                path=self.path,
                field=key,
                expected="a dataset",
            )
        try:
            return np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise BadFormatError(
                f"stim key {key!r} cannot be cast to {dtype}: {exc}",
                path=self.path,
                field=key,
                expected=f"values castable to {dtype}",
            ) from None

    def str(self, key: builtins.str, default: Any = _MISSING) -> builtins.str | None:
        """Return the string scalar `key` (None if it was written as None/NaN).

        Without `default`, a missing key raises BadFormatError; a non-string value too.
        """
        value = self.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                return self._required(key)  # type: ignore[no-any-return]
            return default  # type: ignore[no-any-return]
        if value is None or isinstance(value, str):
            return value
        raise BadFormatError(
            f"stim key {key!r} is {type(value).__name__}, not a string",
            path=self.path,
            field=key,
            expected="a variable-length UTF-8 string scalar",
        )

    def strs(self, key: builtins.str) -> list[builtins.str]:
        """Return the string list `key` (a scalar string becomes a one-element list)."""
        value = self._required(key)
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return value
        if isinstance(value, np.ndarray) and value.dtype.kind in "SUO":
            return [
                x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x)
                for x in value.ravel().tolist()
            ]
        raise BadFormatError(
            f"stim key {key!r} is not a list of strings",
            path=self.path,
            field=key,
            expected="a vlen-string dataset",
        )

    def group(self, key: builtins.str) -> dict[builtins.str, Any]:
        """Return the group `key` as a dict of decoded values (recursively)."""
        value = self._required(key)
        if not isinstance(value, dict):
            raise BadFormatError(
                f"stim key {key!r} is not a group",
                path=self.path,
                field=key,
                expected="an HDF5 group (a dict attribute in TaskControl)",
            )
        return value


def _open(path: str) -> StimFile:
    h5, handle = open_h5(
        path,
        what="stim file",
        missing="an existing TaskControl .hdf5 file",
        expected="a TaskControl HDF5 file",
    )
    try:
        stim = StimFile(path, h5, handle)
    except Exception:
        h5.close()
        if handle is not None:
            handle.close()
        raise
    if stim.n_frames == 0:
        stim.close()
        raise BadFormatError(
            "stim file has zero frames",
            path=path,
            field="frameIntervals",
            expected="at least one frame interval (n_frames = len(frameIntervals) + 1)",
        )
    return stim


#: open stim files, shared by callers (not closed when dropped: a holder may still read it)
_MEMO: Memo[StimFile] = Memo("stim files", maxsize=32, valid=lambda stim: bool(stim._h5.id.valid))


@timed
def open_stim(path: str | os.PathLike[str]) -> StimFile:
    """Return a lazily-read :class:`StimFile` for the TaskControl HDF5 file at `path`.

    `path` may be local or an fsspec URL. Local files are memoized by path and content key
    (:meth:`npc_frames.memo.Memo.read`), so callers share one open file; do not close a memoized
    StimFile yourself.

    Raises MissingFileError if the file does not exist and BadFormatError (naming the file and
    field) if it is not HDF5, lacks ``frameIntervals`` or has zero frames.
    """
    return _MEMO.read(os.fspath(path), _open)
