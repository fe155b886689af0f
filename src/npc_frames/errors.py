"""Typed errors raised by npc_frames.

Every error is data about the input: it names the file (or URL), the field that was wrong, and what
was expected, so that a message read in a cache catalog months later still says what to fix.

Hierarchy::

    NpcFramesError
    ├── MissingFileError        a required file or folder does not exist
    │   └── AbsentModalityError   the session has no such modality at all (not a failure)
    ├── BadFormatError          a file exists but cannot be parsed / lacks a required field
    │   └── UnsupportedVersionError   a known file type in a version we do not read
    ├── InconsistentDataError   files parse but disagree (counts, clocks, barcodes)
    │   └── AlignmentError      a stream cannot be put on the sync clock
    ├── InvalidIdError          a session/subject/probe id string cannot be parsed
    ├── SchemaError             a frame does not match its component schema
    ├── CacheError              the cache is missing a session/component or is unusable
    ├── OutputError             an output file or folder cannot be written
    └── ParameterError          a caller passed impossible parameters
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AbsentModalityError",
    "AlignmentError",
    "BadFormatError",
    "CacheError",
    "InconsistentDataError",
    "InvalidIdError",
    "MissingFileError",
    "NpcFramesError",
    "OutputError",
    "ParameterError",
    "SchemaError",
    "UnsupportedVersionError",
]


class NpcFramesError(Exception):
    """Base class: every error carries the offending path, field and expectation.

    Parameters
    ----------
    message:
        What went wrong, in a sentence.
    path:
        The file, folder or URL involved (``None`` when there is none, e.g. a bad parameter).
    field:
        The dataset, key, column or line name involved.
    expected:
        What the reader expected to find.
    """

    def __init__(
        self,
        message: str,
        *,
        path: object | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.field = field
        self.expected = expected
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.message]
        if self.path is not None:
            parts.append(f"file: {self.path}")
        if self.field is not None:
            parts.append(f"field: {self.field}")
        if self.expected is not None:
            parts.append(f"expected: {self.expected}")
        return " | ".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:  # keep errors picklable across process pools
        return (
            _rebuild,
            (type(self), self.message, self.path, self.field, self.expected),
        )


def _rebuild(cls, message, path, field, expected):  # type: ignore[no-untyped-def]
    return cls(message, path=path, field=field, expected=expected)


class MissingFileError(NpcFramesError, FileNotFoundError):
    """A required file or folder does not exist."""


class AbsentModalityError(MissingFileError):
    """The session has no such modality (no Open Ephys recording, no spike sorting): the cache
    records the component as ``absent``, not ``failed``."""


class BadFormatError(NpcFramesError, ValueError):
    """A file exists but is truncated, corrupt, or lacks a required field."""


class UnsupportedVersionError(BadFormatError):
    """A known file type written by a version this library does not read."""


class InconsistentDataError(NpcFramesError, ValueError):
    """Files parse individually but disagree with each other (counts, clocks, ids)."""


class AlignmentError(InconsistentDataError):
    """A stream (Open Ephys, video, stim file) cannot be placed on the sync clock."""


class InvalidIdError(NpcFramesError, ValueError):
    """A session, subject, date or probe identifier cannot be parsed; the message quotes it."""


class SchemaError(NpcFramesError, ValueError):
    """A frame is missing required columns or has columns of the wrong dtype."""


class CacheError(NpcFramesError, LookupError):
    """A cache lacks the requested session/component, or the component failed for it."""


class ParameterError(NpcFramesError, ValueError):
    """A caller passed impossible parameters (negative durations, zero probes with units, …)."""


class OutputError(NpcFramesError, OSError):
    """An output file or folder cannot be written (permissions, a file where a folder should be)."""
