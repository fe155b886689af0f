"""Debug timing of readers and components: one decorator, one log line per call.

Every module has ``logger = logging.getLogger(__name__)``. Readers and components are wrapped in
:func:`timed`, which logs at DEBUG level how long each call took (and whether it raised), e.g.::

    DEBUG npc_frames.readers.sync: read_sync(20230831T123331.h5) took 0.012 s

Enable with ``logging.getLogger("npc_frames").setLevel(logging.DEBUG)`` (and a handler). When
DEBUG is off the wrapper costs one level check.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["timed"]

P = ParamSpec("P")
R = TypeVar("R")


def timed(fn: Callable[P, R]) -> Callable[P, R]:
    """Return `fn` wrapped so that each call logs its duration at DEBUG on `fn`'s module logger."""
    logger = logging.getLogger(fn.__module__)
    name = getattr(fn, "__qualname__", repr(fn))

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not logger.isEnabledFor(logging.DEBUG):
            return fn(*args, **kwargs)
        subject = next(
            (a for a in args if not isinstance(a, type)), None
        )  # skip a classmethod's cls
        what = f"{name}({_describe(subject)})" if subject is not None else name
        start = time.perf_counter()
        try:
            out = fn(*args, **kwargs)
        except BaseException as exc:
            logger.debug(
                "%s raised %s after %.3f s", what, type(exc).__name__, time.perf_counter() - start
            )
            raise
        logger.debug("%s took %.3f s", what, time.perf_counter() - start)
        return out

    return wrapper


def _describe(arg: object) -> str:
    """Return a short name for a call's first argument: a session id or a file name."""
    sid = getattr(arg, "session_id", None)
    if sid is not None:
        return str(sid)
    if isinstance(arg, str | os.PathLike):
        return os.path.basename(os.fspath(arg).rstrip("/")) or os.fspath(arg)
    return type(arg).__name__
