"""Write TaskControl stimulus HDF5 files exactly as ``TaskControl.saveParameters`` does (FORMATS §3.2).

Serialisation rules, applied recursively to every key whose name does not start with ``_``:

* ``None`` -> NaN (float64 scalar);
* ``dict`` -> HDF5 group (same rules inside);
* ``str`` -> variable-length UTF-8 string scalar (reads back as ``bytes`` with ``[()]``);
* non-empty list/tuple/array whose items are all strings or (nested) string sequences -> 1-D
  vlen-string dataset; items that are not strings are first replaced by their Python ``str()`` repr
  (so ``[['laser_488'], ['']]`` is stored as ``["['laser_488']", "['']"]``);
* non-empty list/tuple/array of sequences whose lengths differ -> 1-D vlen-float64 dataset;
* anything else -> ``create_dataset(data=value)`` (ints -> int64, bools -> bool, lists with NaN ->
  float64, equal-length tuples -> 2-D, empty list -> empty float64).

Decision on the one deliberate difference: TaskControl prints and *silently skips* an attribute that
fails to serialise. A synthetic generator must never drop a key unnoticed, so this writer raises
:class:`~npc_frames.errors.ParameterError` naming the file and the key instead.

The file is written atomically (:func:`npc_frames.storage.atomic_local_path`): to a temporary
file in the destination folder, then renamed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from npc_frames.errors import ParameterError
from npc_frames.storage import atomic_local_path

__all__ = ["is_ragged_sequence", "is_string_sequence", "write_stim_file"]

logger = logging.getLogger(__name__)

_VLEN_STR = h5py.string_dtype(encoding="utf-8")
_VLEN_FLOAT = h5py.vlen_dtype(np.dtype("float64"))


def is_string_sequence(obj: object) -> bool:
    """Return True for a non-empty list/tuple/array whose items are strings or string sequences."""
    if not isinstance(obj, list | tuple | np.ndarray) or len(obj) == 0:
        return False
    return all(isinstance(item, str) or is_string_sequence(item) for item in obj)


def is_ragged_sequence(obj: object) -> bool:
    """Return True for a non-empty sequence of sequences whose lengths are not all equal."""
    if not isinstance(obj, list | tuple | np.ndarray) or len(obj) == 0:
        return False
    if not all(isinstance(item, list | tuple | np.ndarray) for item in obj):
        return False
    lengths = [len(item) for item in obj]
    return lengths.count(lengths[0]) < len(lengths)


def _write_value(group: h5py.Group, key: str, value: Any, path: Path) -> None:
    if isinstance(value, Mapping):
        _write_group(group.create_group(key), value, path)
        return
    if value is None:
        value = np.nan
    try:
        if isinstance(value, str):
            group.create_dataset(key, data=value, dtype=_VLEN_STR)
        elif is_string_sequence(value):
            items = [item if isinstance(item, str) else str(item) for item in value]
            group.create_dataset(key, data=np.array(items, dtype=object), dtype=_VLEN_STR)
        elif is_ragged_sequence(value):
            rows = np.empty(len(value), dtype=object)
            for i, row in enumerate(value):
                rows[i] = np.asarray(row, dtype=np.float64)
            group.create_dataset(key, data=rows, dtype=_VLEN_FLOAT)
        else:
            group.create_dataset(key, data=value)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"stim-file attribute {key!r} cannot be serialised ({exc})",
            path=path,
            field=f"{group.name.rstrip('/')}/{key}",
            expected="None, dict, str, string sequence, ragged numeric sequence or array-like",
        ) from exc


def _write_group(group: h5py.Group, attrs: Mapping[str, Any], path: Path) -> None:
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise ParameterError(
                f"stim-file attribute names must be str, got {key!r}",
                path=path,
                field=str(key),
                expected="str key",
            )
        if key.startswith("_"):
            continue
        _write_value(group, key, value, path)


def write_stim_file(path: str | os.PathLike[str], attrs: Mapping[str, Any]) -> None:
    """Return None after writing ``attrs`` to a TaskControl HDF5 file at ``path`` (atomic, §3.2).

    Parameters
    ----------
    path:
        Destination ``.hdf5`` file; its folder must exist. Replaced atomically if present.
    attrs:
        The script's attributes (what TaskControl would find in ``self.__dict__``). Keys starting
        with ``_`` are skipped, exactly as TaskControl does.

    Raises
    ------
    ParameterError
        If a value cannot be serialised (TaskControl would silently skip it; we refuse).
    """
    dest = Path(path)
    if not dest.parent.is_dir():
        raise ParameterError(
            "folder for the stim file does not exist",
            path=dest,
            field="path",
            expected="an existing folder",
        )
    with atomic_local_path(dest) as tmp, h5py.File(tmp, "w") as f:
        _write_group(f, attrs, dest)
