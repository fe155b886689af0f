"""Process-wide memos of decoded files: one bounded, thread-safe LRU rule for every reader.

Readers (sync, stim, settings.xml) and the session-level steps built on them (frame times,
barcode clocks) decode the same files many times while a process converts or analyses sessions.
Each keeps its results in a :class:`Memo` keyed by the files' content keys
(:func:`npc_frames.storage.stat_key` / :meth:`npc_frames.paths.RawSession.stat_key`: size and
modification stamp), so a rewritten file is decoded again and an unchanged one is not.

* Bounded: each memo keeps its ``maxsize`` most recently used entries.
* Thread-safe: one lock guards the entries; a value is computed once per key even when threads
  ask for it together (the others wait for it), and computations of different keys run in
  parallel. A computation may use other memos (frame times use the sync memo).
* Errors are not memoized: the next call tries again.
* :func:`clear_caches` (``npc_frames.clear_caches``) empties every memo, e.g. to release open
  files or memory between batches.

>>> m = Memo("example", maxsize=2)
>>> m.get(("a", 1), lambda: "computed")
'computed'
>>> m.get(("a", 1), lambda: "not called")
'computed'
>>> clear_caches()
>>> len(m)
0
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from npc_frames import parts, storage

__all__ = ["Memo", "clear_caches", "memos"]

logger = logging.getLogger(__name__)

V = TypeVar("V")

_REGISTRY: list[Memo[object]] = []
_REGISTRY_LOCK = threading.Lock()


class Memo(Generic[V]):
    """A bounded LRU memo of computed values, registered for :func:`clear_caches`.

    Parameters
    ----------
    name:
        Shown in debug logs and :func:`memos`.
    maxsize:
        Entries kept; the least recently used is dropped first.
    valid:
        Optional check of a stored value before it is returned (e.g. an HDF5 file a caller has
        closed); a stored value that fails it is computed again.
    """

    def __init__(
        self, name: str, maxsize: int, *, valid: Callable[[V], bool] | None = None
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, not {maxsize}")
        self.name = name
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._valid = valid
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._reads: dict[Hashable, frozenset[str]] = {}
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}
        with _REGISTRY_LOCK:
            _REGISTRY.append(self)  # type: ignore[arg-type]

    def _lookup(self, key: Hashable) -> tuple[bool, V | None]:
        # caller holds self._lock
        if key in self._data:
            value = self._data[key]
            if self._valid is None or self._valid(value):
                self._data.move_to_end(key)
                self.hits += 1
                return True, value
            del self._data[key]
        return False, None

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        """Return the value stored under `key`, else ``compute()`` (stored, then returned)."""
        with self._lock:
            found, value = self._lookup(key)
            if found:
                parts.replay_reads(self._reads.get(key, ()))
                return value  # type: ignore[return-value]
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:  # one computation per key; other callers of this key wait here
            with self._lock:
                found, value = self._lookup(key)
                if found:
                    parts.replay_reads(self._reads.get(key, ()))
                    return value  # type: ignore[return-value]
                self.misses += 1
            try:
                # the files read to compute the value are replayed on every hit, so the cache
                # fingerprints a component by its inputs even when a memo serves them
                with parts.record_reads() as reads:
                    computed = compute()
            except BaseException:
                with self._lock:
                    self._pending.pop(key, None)
                raise
            with self._lock:
                self._reads[key] = frozenset(reads)
                self._data[key] = computed
                self._data.move_to_end(key)
                while len(self._data) > self.maxsize:
                    dropped, _ = self._data.popitem(last=False)
                    self._reads.pop(dropped, None)
                self._pending.pop(key, None)
            return computed

    def put(self, key: Hashable, value: V, reads: Iterable[str] = ()) -> None:
        """Return None after storing `value` under `key`, computed elsewhere from files `reads`.

        For a value that falls out of another computation (the ``units`` component reads the
        sortings and hands the per-spike amplitudes on): a later :meth:`get` or :meth:`pop`
        replays `reads`, so the consumer is fingerprinted by the files the value came from.
        """
        with self._lock:
            self._reads[key] = frozenset(reads)
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                dropped, _ = self._data.popitem(last=False)
                self._reads.pop(dropped, None)

    def pop(self, key: Hashable) -> tuple[bool, V | None]:
        """Return (True, the value stored under `key`) and drop it, else (False, None).

        A value handed on once (see :meth:`put`) is released as soon as it is taken; its reads are
        replayed as on a hit of :meth:`get`.
        """
        with self._lock:
            found, value = self._lookup(key)
            if not found:
                self.misses += 1
                return False, None
            del self._data[key]
            reads = self._reads.pop(key, frozenset())
        parts.replay_reads(reads)
        return True, value

    def read(self, path: str, reader: Callable[[str], V]) -> V:
        """Return ``reader(path)``, memoized for a local file by its path and content key.

        Remote paths are read each time (callers hand local copies from
        :meth:`npc_frames.paths.RawSession.local`); a missing file is handed to `reader`
        unmemoized, so that the reader raises its own missing-file error.
        """
        if storage.is_remote(path):
            parts.record_read(path)
            return reader(path)
        local = path.removeprefix("file://")
        parts.record_read(local)  # readers such as h5py open files outside Python's open()
        stat = storage.stat_key(local)
        if stat[0] < 0:
            return reader(local)
        return self.get((local, stat), lambda: reader(local))

    def clear(self) -> None:
        """Drop every entry (values still held by callers stay usable)."""
        with self._lock:
            self._data.clear()
            self._reads.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (
            f"Memo({self.name!r}, {len(self)}/{self.maxsize} entries, "
            f"{self.hits} hits, {self.misses} misses)"
        )


def memos() -> list[Memo[object]]:
    """Return every registered memo (one per memoized reader or step)."""
    with _REGISTRY_LOCK:
        return list(_REGISTRY)


def clear_caches() -> None:
    """Empty every process-wide memo of decoded files (sync, stim, settings, timing, clocks).

    Returns None. Call it to release memory or open stim files; results computed afterwards are
    read from the files again.


    Examples
    --------
    >>> from npc_frames.memo import memos
    >>> _ = nf.components.trials(nf.RawSession.from_path("raw/ecephys_603074_2023-08-31_12-33-31"))
    >>> sum(len(m) for m in memos()) > 0  # decoded sync and stim files are memoized
    True
    >>> nf.clear_caches()
    >>> sum(len(m) for m in memos())
    0
    """
    for memo in memos():
        memo.clear()
    logger.debug("cleared %d memos", len(_REGISTRY))
