"""Open the HDF5 files of a session (sync, stim) from a local path or an fsspec URL, with the
library's typed errors: one rule for both readers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import IO

import h5py

from npc_frames import parts, storage
from npc_frames.errors import BadFormatError, MissingFileError, NpcFramesError

__all__ = ["h5_errors", "open_h5"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def h5_errors(path: object, *, what: str, missing: str, expected: str) -> Iterator[None]:
    """Run the block, turning a missing file into MissingFileError and an unreadable one into
    BadFormatError, both naming `path` (`what`: e.g. "sync file"; `missing`/`expected`: what
    the error says was expected)."""
    try:
        yield
    except NpcFramesError:
        raise
    except FileNotFoundError:
        raise MissingFileError(f"{what} not found", path=path, expected=missing) from None
    except OSError as exc:
        raise BadFormatError(
            f"{what} is not a readable HDF5 file (truncated or corrupt?): {exc}",
            path=path,
            expected=expected,
        ) from None


def open_h5(
    path: str, *, what: str, missing: str, expected: str
) -> tuple[h5py.File, IO[bytes] | None]:
    """Return (the open ``h5py.File`` at local `path` or URL, the fsspec handle under it or None).

    The caller closes both. Errors as in :func:`h5_errors`.
    """
    parts.record_read(path.removeprefix("file://"))
    with h5_errors(path, what=what, missing=missing, expected=expected):
        if not storage.is_remote(path):
            return h5py.File(path.removeprefix("file://"), "r"), None
        import fsspec

        handle: IO[bytes] = fsspec.open(path, "rb").open()
        try:
            return h5py.File(handle, "r"), handle
        except BaseException:
            handle.close()
            raise
