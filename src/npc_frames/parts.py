"""How a component says that part of its input was damaged while the rest was computed.

This is the one mechanism by which a component reports damage that does not stop it; ``convert``
turns what is reported into catalog statuses (docs/cache.md, "Catalog statuses"):

* a component that cannot produce anything **raises** a typed :mod:`npc_frames.errors` error
  (status ``failed``);
* a session that does not have the modality at all (no Open Ephys record nodes, no sorting output)
  **raises** :class:`~npc_frames.errors.AbsentModalityError` (status ``absent``; not a failure);
* a component that skips a damaged part (one probe's sorting, one stim file without timing) and
  still returns the rest calls :func:`report_failure` for that part before returning (status
  ``partial``, or ``failed`` when nothing is left); a part the session simply lacks (a recorded
  probe that was never sorted) is reported with :func:`report_absent`;
* a component whose input the session does not have (no RFMapping stim file, no video) but
  which still returns its zero-row frame (so direct callers get a frame, not an error) calls
  :func:`report_absent_component` with the reason before returning (status ``absent``; a
  component that returns rows after all stays ``ok``).

Reports go to the innermost :func:`collect` block of the current context (``convert`` opens one
per component). Outside such a block they are logged at debug level only, so calling a component
directly behaves as before (components keep their own warnings).

The same context records which files a component **read** (:func:`record_reads`), so that the
cache fingerprints each component by exactly its inputs: every ``open()`` (Python's ``open``
audit event: ``np.load``, memmaps, XML/JSON readers, fsspec local files), plus
:func:`record_read` where a library opens files itself (h5py, Polars' CSV reader) or a remote
file is fetched (``RawSession.local``). Memoized results replay the reads that computed them
(:class:`npc_frames.memo.Memo`), so a component served from a memo still lists the files.

>>> from npc_frames.errors import BadFormatError
>>> with collect() as found:
...     report_failure("probeB", BadFormatError("spike_times is short", path="x"), probe="B")
>>> [(p.part, p.status, p.error_type, p.probe) for p in found]
[('probeB', 'failed', 'BadFormatError', 'B')]
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ANNOTATION_PREFIX",
    "COMPONENT",
    "Annotations",
    "Part",
    "collect",
    "error_location",
    "record_read",
    "record_reads",
    "replay_parts",
    "replay_reads",
    "report_absent",
    "report_absent_component",
    "report_failure",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One damaged or missing part of a component's input, as reported by the component."""

    #: what the part is: ``probeB``, a stim file's name, ``electrodes`` …
    part: str
    #: ``failed`` (damaged input; the component is partial) or ``absent`` (not in the session)
    status: Literal["failed", "absent"]
    #: the typed error's class name (``BadFormatError``)
    error_type: str
    #: the error's message (names file, field and expectation)
    message: str
    #: ``module:line`` where the error was raised, when known
    location: str | None = None
    #: probe letter when the part is one probe
    probe: str | None = None

    @property
    def error(self) -> str:
        """Return ``"<ErrorType>: <message>"``."""
        return f"{self.error_type}: {self.message}"


_COLLECTOR: contextvars.ContextVar[list[Part] | None] = contextvars.ContextVar(
    "npc_frames_parts", default=None
)


@contextlib.contextmanager
def collect() -> Iterator[list[Part]]:
    """Return (as the context value) the list that receives every part reported in the block."""
    found: list[Part] = []
    token = _COLLECTOR.set(found)
    try:
        yield found
    finally:
        _COLLECTOR.reset(token)


def error_location(exc: BaseException) -> str | None:
    """Return ``module:line`` of the innermost frame of `exc`'s traceback (where it was raised)."""
    tb = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else None
    if not tb:
        return None
    frame = tb[-1]
    module = frame.filename
    marker = "/npc_frames/"
    if marker in module:
        module = "npc_frames." + module.split(marker, 1)[1].removesuffix(".py").replace("/", ".")
    return f"{module.removesuffix('.__init__')}:{frame.lineno}"


def _add(part: Part) -> None:
    found = _COLLECTOR.get()
    logger.debug("part %s %s: %s", part.part, part.status, part.error)
    if found is not None and part not in found:
        found.append(part)


def report_failure(part: str, error: BaseException, *, probe: str | None = None) -> None:
    """Return None after recording that `part` of the current component's input failed.

    The location is where `error` was raised, or (for an error built but never raised) the
    line that reports it.
    """
    location = error_location(error)
    if location is None:
        caller = sys._getframe(1)
        location = f"{caller.f_globals.get('__name__', '?')}:{caller.f_lineno}"
    _add(
        Part(
            part=part,
            status="failed",
            error_type=type(error).__name__,
            message=str(error),
            location=location,
            probe=probe,
        )
    )


def report_absent(part: str, reason: str, *, probe: str | None = None) -> None:
    """Return None after recording that the session lacks `part` (not a failure)."""
    _add(
        Part(
            part=part,
            status="absent",
            error_type="AbsentModalityError",
            message=reason,
            probe=probe,
        )
    )


def replay_parts(found: Iterable[Part]) -> None:
    """Return None after reporting `found` again: the parts reported while a value that another
    component takes over was computed (so both components name the same damaged parts)."""
    for part in found:
        _add(part)


#: the ``part`` of a :func:`report_absent_component` report: the whole component, not a part
COMPONENT = "*"


def report_absent_component(reason: str) -> None:
    """Return None after recording that the session lacks the current component's input.

    For a component that returns a zero-row frame when its input is missing: ``convert`` then
    records it ``absent`` with `reason` as its error instead of ``empty``.
    """
    _add(Part(part=COMPONENT, status="absent", error_type="AbsentModalityError", message=reason))


# ------------------------------------------------------------------------------------- reads
_READS: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "npc_frames_reads", default=None
)
_HOOK_INSTALLED = False
_HOOK_LOCK = threading.Lock()


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event != "open":
        return
    found = _READS.get()
    if found is None:
        return
    path = args[0] if args else None
    if isinstance(path, str | os.PathLike):
        found.add(os.fspath(path))  # type: ignore[arg-type]


def _install_hook() -> None:
    global _HOOK_INSTALLED
    with _HOOK_LOCK:
        if not _HOOK_INSTALLED:
            sys.addaudithook(_audit)  # cannot be removed; costs one check per audit event
            _HOOK_INSTALLED = True


@contextlib.contextmanager
def record_reads() -> Iterator[set[str]]:
    """Return (as the context value) the set of paths opened for reading inside the block."""
    _install_hook()
    found: set[str] = set()
    token = _READS.set(found)
    try:
        yield found
    finally:
        _READS.reset(token)
        outer = _READS.get()
        if outer is not None:  # nested blocks (a memo computing) also count for the outer one
            outer.update(found)


def record_read(path: str | os.PathLike[str]) -> None:
    """Return None after noting that `path` (a file, or a folder read whole) was read."""
    found = _READS.get()
    if found is not None:
        found.add(os.fspath(path))


def replay_reads(paths: Iterable[str]) -> None:
    """Return None after noting `paths` as read (a memoized value's inputs, on a memo hit)."""
    found = _READS.get()
    if found is not None:
        found.update(paths)


#: reads of manifest annotations are recorded as ``manifest:<key>`` (a key read but absent too, so
#: adding it later changes the fingerprint of the components that looked for it)
ANNOTATION_PREFIX = "manifest:"


class Annotations(Mapping[str, Any]):
    """A read-only mapping of a session's manifest annotations that records each key read.

    Every lookup (``[k]``, ``get``, ``in``) notes ``manifest:<k>`` as read (:func:`record_read`),
    and iterating notes every key, so the cache fingerprints each component by the annotations it
    used, as it does by the files it opened.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        record_read(ANNOTATION_PREFIX + str(key))
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        record_read(ANNOTATION_PREFIX + str(key))
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        """Return the annotation `key` (or `default`), noting the key as read."""
        record_read(ANNOTATION_PREFIX + str(key))
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        for key in self._data:
            record_read(ANNOTATION_PREFIX + str(key))
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Annotations({self._data!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._data) == dict(other)

    __hash__ = None  # type: ignore[assignment]  # a mapping, like dict

    def __reduce__(self) -> tuple[Any, ...]:
        return (Annotations, (self._data,))

    def unrecorded(self) -> dict[str, Any]:
        """Return a plain copy of the annotations without noting any read."""
        return dict(self._data)
