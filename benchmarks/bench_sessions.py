"""Session selection benchmark: ``nf.sessions(...)`` (sessions + days + records) over a 500-session
cache (issue 16 target: < 0.2 s); CI does not run it.

The cache is built by converting a few small synthetic sessions and copying their partitions under
new session ids (new subjects and dates, so the day ranks have work to do), rewriting the
``session_id`` column of each copy.

    python benchmarks/bench_sessions.py                  # 500 sessions from 4 converted ones
    python benchmarks/bench_sessions.py --sessions 2000
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import npc_frames as nf
from npc_frames.cache.catalog import _component_names, data_path


def timed(fn: Callable[[], Any], repeat: int = 7) -> tuple[float, float, Any]:
    """Return (median, min seconds of `repeat` warm runs, last result)."""
    fn()
    ts, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), out


def build_cache(work: Path, n_sessions: int, n_seed: int) -> Path:
    """Return a cache of `n_sessions` sessions copied from `n_seed` converted synthetic ones."""
    from npc_frames.synth import make_session

    raws = [
        make_session(
            work / "raw",
            seed=200 + i,
            minutes=2.0,
            n_probes=2,
            units_per_probe=8,
            date=dt.date(2023, 9, 1) + dt.timedelta(days=i),
            clip_seconds=0.2,
        ).raw_path
        for i in range(n_seed)
    ]
    seed_cache = work / "seed_cache"
    nf.convert(raws, seed_cache, progress=False)
    seeds = sorted(str(s) for s in nf.scan_sessions(seed_cache).collect()["session_id"])
    cache = work / "cache"
    for i in range(n_sessions):
        src = seeds[i % len(seeds)]
        # 50 subjects with 10 sessions each, on consecutive days
        new = f"{600000 + i // 10}_{(dt.date(2024, 1, 1) + dt.timedelta(days=i % 10)).isoformat()}"
        for name in _component_names():
            path = Path(data_path(str(seed_cache), name, src))
            if not path.exists():
                continue
            table = pq.read_table(path)
            if "session_id" in table.column_names:
                j = table.column_names.index("session_id")
                table = table.set_column(
                    j, "session_id", pa.array([new] * table.num_rows, pa.string())
                )
            out = Path(data_path(str(cache), name, new))
            out.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, out)
    return cache


def main() -> None:
    """Print the timings of nf.sessions and the underlying views over the fabricated cache."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--seed-sessions", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cache = build_cache(Path(tmp), args.sessions, args.seed_sessions)
        print(f"built a {args.sessions}-session cache in {time.perf_counter() - t0:.1f} s")
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("nf.sessions() (all rows)", lambda: nf.sessions(cache)),
            (
                "nf.sessions(is_task=True, n_passing_blocks=[0..6]) (filtered)",
                lambda: nf.sessions(cache, is_task=True, n_passing_blocks=[0, 1, 2, 3, 4, 5, 6]),
            ),
            ("nf.scan_session_days().collect()", lambda: nf.scan_session_days(cache).collect()),
            (
                "SQL session_records (live DuckDB view)",
                lambda: nf.sql("SELECT session_id FROM session_records", cache),
            ),
            ("nf.scan_sessions().collect()", lambda: nf.scan_sessions(cache).collect()),
        ]
        from npc_frames import views

        t0 = time.perf_counter()
        views._MEMO.clear()
        nf.sessions(cache)
        print(
            f"{'nf.sessions() cold (computed, not memoized)':<72} {time.perf_counter() - t0:.3f} s"
        )
        for label, fn in cases:
            med, best, out = timed(fn, repeat=3 if label.startswith("SQL") else 7)
            print(f"{label:<72} median {med:.3f} s  min {best:.3f} s  rows {out.height}")


if __name__ == "__main__":
    main()
