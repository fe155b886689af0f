"""npc_frames.memo and the session I/O layer: one memo rule, one content key, one atomic writer."""

from __future__ import annotations

import datetime
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import npc_frames as nf
from npc_frames import memo, storage
from npc_frames.paths import RawSession
from npc_frames.readers.stim import open_stim
from npc_frames.readers.sync import read_sync
from npc_frames.synth.stimfiles import write_stim_file
from npc_frames.synth.sync import write_sync_file

START = datetime.datetime(2024, 1, 2, 10, 0, 0)


def _write_sync(path: Path, rising: list[float]) -> dict[int, Any]:
    falling = [t + 0.01 for t in rising]
    return write_sync_file(
        path, lines={3: (rising, falling)}, start_time=START, total_samples=1_000_000
    )


def _bump_mtime(path: Path) -> None:
    """Give `path` a modification time 10 s later than now (a rewrite in the same clock tick
    must not depend on the filesystem's timestamp resolution)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))


# ------------------------------------------------------------------------------- Memo itself
def test_memo_returns_stored_value_without_computing_again() -> None:
    m: memo.Memo[list[int]] = memo.Memo("test hit", maxsize=4)
    calls: list[int] = []
    first = m.get("k", lambda: calls.append(1) or [1, 2])
    second = m.get("k", lambda: calls.append(2) or [9])
    assert first is second == [1, 2]
    assert calls == [1] and (m.hits, m.misses) == (1, 1)


def test_memo_drops_least_recently_used_beyond_maxsize() -> None:
    m: memo.Memo[str] = memo.Memo("test lru", maxsize=2)
    m.get("a", lambda: "A")
    m.get("b", lambda: "B")
    m.get("a", lambda: "not called")  # a is now the most recent
    m.get("c", lambda: "C")  # evicts b
    assert len(m) == 2
    assert m.get("a", lambda: "recomputed a") == "A"
    assert m.get("b", lambda: "recomputed b") == "recomputed b"


def test_memo_does_not_store_errors() -> None:
    m: memo.Memo[int] = memo.Memo("test errors", maxsize=2)

    def boom() -> int:
        raise ValueError("bad file")

    with pytest.raises(ValueError, match="bad file"):
        m.get("k", boom)
    assert len(m) == 0 and m.get("k", lambda: 7) == 7


def test_memo_recomputes_a_value_that_is_no_longer_valid() -> None:
    m: memo.Memo[dict[str, bool]] = memo.Memo("test valid", maxsize=2, valid=lambda v: v["open"])
    handle = m.get("k", lambda: {"open": True})
    handle["open"] = False  # a caller closed it
    again = m.get("k", lambda: {"open": True})
    assert again is not handle and again["open"]


def test_memo_computes_each_key_once_under_concurrent_access() -> None:
    m: memo.Memo[tuple[int, int]] = memo.Memo("test threads", maxsize=64)
    counts = dict.fromkeys(range(16), 0)
    lock = threading.Lock()
    barrier = threading.Barrier(8)
    results: list[tuple[int, tuple[int, int]]] = []
    errors: list[BaseException] = []

    def compute(k: int) -> tuple[int, int]:
        with lock:
            counts[k] += 1
        threading.Event().wait(0.002)  # widen the race window
        return (k, k * k)

    def worker(seed: int) -> None:
        try:
            barrier.wait()
            rng = np.random.default_rng(seed)
            for k in rng.integers(0, 16, size=200).tolist():
                results.append((k, m.get(k, lambda k=k: compute(k))))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8 * 200
    assert all(v == (k, k * k) for k, v in results)
    assert all(n == 1 for k, n in counts.items() if any(r[0] == k for r in results))
    assert m.misses == sum(counts.values()) and m.hits + m.misses == len(results)


def test_memo_stays_bounded_under_concurrent_access() -> None:
    m: memo.Memo[int] = memo.Memo("test bound", maxsize=5)

    def worker(offset: int) -> None:
        for k in range(100):
            assert m.get((offset, k), lambda k=k: k) == k

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(m) == 5


# --------------------------------------------------------------------- readers on real files
def test_read_sync_is_memoized_for_an_unchanged_file(tmp_path: Path) -> None:
    path = tmp_path / "20240102T100000.h5"
    _write_sync(path, [1.0, 2.0])
    assert read_sync(path) is read_sync(str(path))


def test_read_sync_reads_again_after_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "20240102T100000.h5"
    _write_sync(path, [1.0, 2.0])
    before = read_sync(path)
    truth = _write_sync(path, [1.0, 2.0, 3.0, 4.0])
    _bump_mtime(path)
    after = read_sync(path)
    assert after is not before
    np.testing.assert_array_equal(after.rising(3), truth[3][0])
    np.testing.assert_array_equal(before.rising(3), [1.0, 2.0])


def test_open_stim_reads_again_after_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "DynamicRouting1_000000_20240102_100000.hdf5"
    write_stim_file(path, {"frameIntervals": np.full(9, 1 / 60), "startTime": "20240102_100000"})
    first = open_stim(path)
    assert open_stim(path) is first and first.n_frames == 10
    write_stim_file(path, {"frameIntervals": np.full(19, 1 / 60), "startTime": "20240102_100000"})
    _bump_mtime(path)
    second = open_stim(path)
    assert second is not first and second.n_frames == 20


def test_clear_caches_empties_every_registered_memo(synth_raw: RawSession) -> None:
    from npc_frames import alignment, timing

    timing.frame_times(synth_raw)
    alignment.session_clocks(synth_raw)
    names = {m.name for m in memo.memos()}
    assert {
        "sync files",
        "stim files",
        "settings.xml files",
        "frame times",
        "session clocks",
    } <= names
    filled = {m.name for m in memo.memos() if len(m)}
    assert {"sync files", "stim files", "frame times", "session clocks"} <= filled
    nf.clear_caches()
    assert all(len(m) == 0 for m in memo.memos())
    # and the next call reads the files again (a new object, equal values)
    again = timing.frame_times(synth_raw)
    assert again and all(t.flip.size > 0 for t in again.values())


def test_clear_caches_is_public() -> None:
    assert "clear_caches" in nf.__all__ and nf.clear_caches is memo.clear_caches


# --------------------------------------------------------------------------- RawSession I/O
def test_stat_key_changes_when_a_local_file_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"12345")
    raw = RawSession(root=str(tmp_path), session_id=nf.parse_session_id("668755_2024-01-02"))
    key = raw.stat_key(str(path))
    assert key[0] == 5 and key == storage.stat_key(str(path))
    path.write_bytes(b"123456")
    assert raw.stat_key(str(path))[0] == 6
    assert raw.stat_key(str(tmp_path / "missing")) == (-1, "")


def test_stat_key_is_the_discovery_stamp(synth_raw: RawSession) -> None:
    # the cache fingerprint is made of discovery's stamps: the memo key is the same value
    for path, (size, stamp) in synth_raw.file_stats.items():
        assert synth_raw.stat_key(path) == (size, stamp)


def test_local_is_identity_for_local_paths(synth_raw: RawSession) -> None:
    assert not synth_raw.is_remote
    assert synth_raw.sync_path is not None
    assert synth_raw.local(synth_raw.sync_path) == synth_raw.sync_path
    assert synth_raw.local("file://" + synth_raw.sync_path) == synth_raw.sync_path


# ----------------------------------------------------------------------------- atomic writer
def test_atomic_local_path_replaces_only_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), storage.atomic_local_path(str(dest)) as tmp:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    with storage.atomic_local_path(str(dest)) as tmp:
        Path(tmp).write_bytes(b"new")
    assert dest.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_local_path_publishes_a_folder_once(tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    for content in (b"first", b"second"):
        with storage.atomic_local_path(str(dest)) as tmp:
            os.makedirs(tmp)
            Path(tmp, "f").write_bytes(content)
    # a second publisher of the same (content-named) folder keeps the first copy
    assert Path(dest, "f").read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


# ------------------------------------------------------------------------------ debug timings
def test_readers_and_components_log_their_duration_at_debug(
    synth_raw: RawSession, caplog: pytest.LogCaptureFixture
) -> None:
    import npc_frames.components as C

    nf.clear_caches()
    with caplog.at_level(logging.DEBUG, logger="npc_frames"):
        C.get("licks")(synth_raw)
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    sid = str(synth_raw.session_id)
    assert ("npc_frames.components.behavior", f"licks({sid})") in [
        (n, m.split(" took ")[0]) for n, m in messages
    ]
    assert any(n == "npc_frames.readers.sync" and m.startswith("read_sync(") for n, m in messages)
    assert all(
        float(m.split(" took ")[1].removesuffix(" s")) >= 0 for _, m in messages if " took " in m
    )
