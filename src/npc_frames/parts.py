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
  probe that was never sorted) is reported with :func:`report_absent`.

Reports go to the innermost :func:`collect` block of the current context (``convert`` opens one
per component). Outside such a block they are logged at debug level only, so calling a component
directly behaves as before (components keep their own warnings).

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
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = ["Part", "collect", "error_location", "report_absent", "report_failure"]

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
    """Return None after recording that `part` of the current component's input failed."""
    _add(
        Part(
            part=part,
            status="failed",
            error_type=type(error).__name__,
            message=str(error),
            location=error_location(error),
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
