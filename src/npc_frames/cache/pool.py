"""Worker processes for ``convert``: a main-guard check, workers that die with their parent, and
a crash (OOM kill, segfault) that fails only the session it was converting.

* **Main guard.** Spawned workers re-import the caller's ``__main__``. A script that calls
  ``convert`` at module level, without ``if __name__ == "__main__":``, would make every worker call
  ``convert`` again while it starts, and every worker would die. :func:`main_is_importable`
  detects this (the call comes from the top level of a script, outside such a guard, or
  ``__main__`` is stdin / ``-c``), and ``convert`` then runs the sessions in its own process and
  warns how to fix the script.
* **Parent death.** Each worker asks Linux to SIGKILL it when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), and a watchdog thread exits it when its parent process id
  changes (any platform), so ``kill -9`` of a convert leaves no worker writing files.
* **Crash isolation.** A worker that dies breaks the whole ``ProcessPoolExecutor``. The sessions
  that were running then are re-run one at a time in a one-worker pool, where a second crash names
  the session; the sessions that had not started are re-run in a fresh pool.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import contextlib
import ctypes
import logging
import multiprocessing
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from npc_frames.errors import CacheError

__all__ = [
    "WorkerCrashedError",
    "in_worker_bootstrap",
    "main_is_importable",
    "preload_modules",
    "progress",
    "run_in_pool",
    "start_server",
]

logger = logging.getLogger(__name__)

#: prctl option asking the kernel to signal this process when its parent dies (linux/prctl.h)
PR_SET_PDEATHSIG = 1
#: how often a worker's watchdog checks that its parent is alive, s
WATCHDOG_INTERVAL_S = 0.5

_QUEUE: Any = None


class WorkerCrashedError(CacheError):
    """A worker process died (killed, out of memory, crashed) while converting one session."""


# ------------------------------------------------------------------------------- main guard
def _guarded_lines(tree: ast.Module) -> list[tuple[int, int]]:
    """Return (first, last) line ranges of ``if __name__ == "__main__":`` blocks of a module."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and len(test.comparators) == 1
            and {
                ast.unparse(test.left).strip("'\""),
                ast.unparse(test.comparators[0]).strip("'\""),
            }
            == {"__name__", "__main__"}
        ):
            out.append((node.lineno, node.end_lineno or node.lineno))
    return out


def in_worker_bootstrap() -> bool:
    """Return True inside a spawned worker that is still importing its parent's ``__main__``."""
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def main_is_importable() -> bool:
    """Return False when spawned workers cannot safely import ``__main__`` (see module doc).

    That is: ``__main__`` is stdin or ``-c``, or this call is made from the top level of the main
    script outside an ``if __name__ == "__main__":`` block, or we are ourselves a worker that is
    still importing the parent's ``__main__``, or a daemonic process (which cannot start any).
    """
    if in_worker_bootstrap() or multiprocessing.current_process().daemon:
        return False  # daemonic processes (multiprocessing.Pool workers) cannot have children
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        return True  # interactive interpreter / notebook: spawn does not re-run __main__
    if not os.path.isfile(path):
        return False  # stdin, -c
    frame = sys._getframe(1)
    line = None
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            line = frame.f_lineno
            break
        frame = frame.f_back  # type: ignore[assignment]
    if line is None:
        return True  # called from a function: the script's top level only defines it
    try:
        from npc_frames.readers._literal import parse_source  # one AST builder at a time

        with open(path, encoding="utf-8") as f:
            tree = parse_source(f.read())
    except (OSError, SyntaxError, ValueError):
        return False
    return any(first <= line <= last for first, last in _guarded_lines(tree))


# ---------------------------------------------------------------------------------- workers
#: modules the fork server imports once, so that each worker forked from it starts warm: the
#: libraries and readers every conversion imports lazily besides the component modules, which
#: :func:`preload_modules` adds from the registry. A module left out is imported by every worker
#: again, in parallel: CPU that two workers pay twice. One put in delays the first fork by its
#: import time, serially: scipy is left out (~1.3 s of import CPU for scipy.signal + stats), as no
#: conversion imports it (the Butterworth filters and activity_drift's statistic are numpy:
#: npc_frames._iir, npc_frames._stats); a rarer reader that needs it imports it itself
PRELOAD = (
    "numpy",
    "numpy.ma",
    "numpy.random",
    "polars",
    "polars._utils.parquet",
    "pyarrow.compute",
    "fsspec.implementations.local",
    "statistics",
    "_strptime",
    "npc_frames.cache.convert",
    "npc_frames.paths",
    "npc_frames.assets",
    "npc_frames.timing",
    "npc_frames.anatomy",
    "npc_frames.opto_calibration",
    "npc_frames.readers.stim",
    "npc_frames.readers.metadata",
    "npc_frames.components._classify",
)


def preload_modules() -> list[str]:
    """Return the modules the fork server imports: :data:`PRELOAD` plus every module that the
    component registry names (``npc_frames.components.COMPONENTS`` targets)."""
    from npc_frames.components import COMPONENTS

    targets = {t.split(":", 1)[0] for t in COMPONENTS.values()}
    return list(dict.fromkeys([*PRELOAD, *sorted(targets)]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a reused pid of another user's process
        return True
    return True


def _watchdog(parent: int, ppid: int) -> None:
    while True:
        time.sleep(WATCHDOG_INTERVAL_S)
        if os.getppid() != ppid or not _alive(parent):
            os._exit(1)


def _context() -> Any:
    """Return the multiprocessing context of the pools: a preloaded fork server where there is
    one (workers fork from a process that has imported the library once), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(preload_modules())
        return ctx
    return multiprocessing.get_context("spawn")  # pragma: no cover - Windows


def start_server() -> None:
    """Return None after starting the fork server that pool workers fork from (no-op where there
    is none, or when it already runs).

    The server imports :func:`preload_modules` (seconds of CPU) before it forks a worker; started
    early, that import runs while the converting process is still resolving its inputs and
    reading the catalog, instead of after.
    """
    ctx = _context()
    if ctx.get_start_method() == "forkserver":
        import multiprocessing.forkserver

        multiprocessing.forkserver.ensure_running()


def _init_worker(queue: Any, parent: int, environ: dict[str, str] | None = None) -> None:
    """Set up a worker: the converting process's environment, progress queue, death with the
    parent (prctl + watchdog thread).

    A worker forked from the fork server inherits the *server's* environment, taken when the
    server started; `environ` is the converting process's environment now (credentials, S3
    endpoints, PYTHONPATH set since), applied as a spawned worker would have seen it.

    `parent` is the converting process; a worker's direct parent may be the fork server, which
    exits when the converting process dies (the kernel then kills the worker), and the watchdog
    also checks `parent` itself.
    """
    global _QUEUE
    _QUEUE = queue
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
        for entry in reversed(environ.get("PYTHONPATH", "").split(os.pathsep)):
            if entry and entry not in sys.path:
                sys.path.insert(0, entry)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog remains
            pass
    ppid = os.getppid()
    if ppid == 1 or not _alive(parent):  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(
        target=_watchdog, args=(parent, ppid), daemon=True, name="npc-watchdog"
    ).start()


def progress(message: tuple[Any, ...]) -> None:
    """Return None after sending a progress message to the parent (no-op outside a worker)."""
    if _QUEUE is not None:
        with contextlib.suppress(Exception):  # progress is best effort
            _QUEUE.put_nowait(message)


def _run_one(fn: Callable[[Any], Any], index: int, task: Any) -> Any:
    progress(("start", index))
    return fn(task)


def _drain(q: Any, started: set[int], on_message: Callable[[tuple[Any, ...]], None]) -> None:
    while True:
        try:
            msg = q.get_nowait()
        except (queue_mod.Empty, OSError, EOFError, ValueError):
            return
        if msg and msg[0] == "start":
            started.add(int(msg[1]))
        else:
            on_message(msg)


def _run_batch(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    indices: Sequence[int],
    workers: int,
    on_result: Callable[[int, Any], None],
    on_message: Callable[[tuple[Any, ...]], None],
) -> tuple[set[int], set[int], bool]:
    """Run `indices` of `tasks` in a fresh pool; return (finished, started, broken)."""
    ctx = _context()
    q = ctx.Queue()
    finished: set[int] = set()
    started: set[int] = set()
    broken = False
    pool = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(q, os.getpid(), dict(os.environ)),
    )
    try:
        futures = {pool.submit(_run_one, fn, i, tasks[i]): i for i in indices}
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            _drain(q, started, on_message)
            for fut in done:
                i = futures[fut]
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                finished.add(i)
                on_result(i, res)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _drain(q, started, on_message)
        q.close()
    return finished, started, broken


def run_in_pool(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    workers: int,
    *,
    on_result: Callable[[int, Any], None],
    on_crash: Callable[[int, WorkerCrashedError], None],
    on_message: Callable[[tuple[Any, ...]], None] = lambda m: None,
) -> None:
    """Return None after running ``fn(task)`` for every task in spawned worker processes.

    ``on_result(index, result)`` receives each result, ``on_crash(index, error)`` each task whose
    worker died (alone in a one-worker pool, so the error names exactly that task). Raises
    CacheError when workers die before any task starts (they cannot import ``__main__``).
    """
    parallel = list(range(len(tasks)))
    isolated: list[int] = []
    while parallel or isolated:
        alone = bool(isolated)
        batch, n = (isolated, 1) if alone else (parallel, workers)
        if alone:
            isolated = []
        else:
            parallel = []
        finished, started, broken = _run_batch(fn, tasks, batch, n, on_result, on_message)
        if not broken:
            continue
        rest = [i for i in batch if i not in finished]
        if not finished and not started and not alone:
            raise CacheError(
                "convert's worker processes died before converting anything",
                field="__main__",
                expected='a script whose convert() call is under if __name__ == "__main__":',
            )
        if alone:
            # a one-worker pool runs tasks in order: the first unfinished one killed the worker
            culprit, rest = rest[0], rest[1:]
            on_crash(
                culprit,
                WorkerCrashedError(
                    "the worker process converting this session died (killed by a signal, "
                    "e.g. out of memory, or crashed)",
                    field="worker",
                    expected="a worker that returns",
                ),
            )
            isolated = rest
        else:
            suspects = [i for i in rest if i in started]
            logger.warning(
                "a convert worker died; re-running %d session(s) one at a time", len(suspects)
            )
            isolated = suspects or rest
            parallel = [i for i in rest if i not in isolated]
