"""Session selection benchmark: ``nf.sessions(...)`` (sessions + days + records) and the SQL
``session_records`` view over a 500-session cache (issue 16 target: < 0.2 s, first call included);
CI does not run it. Prints wall and CPU seconds per call and the peak RSS.

A first call reads the materialized session summary (one file, kept up to date by convert) and
the cache listing; a call after a session changed recomputes that session's summary row only.

The cache is built by converting a few small synthetic sessions and copying their partitions under
new session ids (new subjects and dates, so the day ranks have work to do), rewriting the
``session_id`` column of each copy.

    python benchmarks/bench_sessions.py                  # 500 sessions from 4 converted ones
    python benchmarks/bench_sessions.py --sessions 2000
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import npc_frames as nf
from npc_frames.cache.catalog import _component_names, data_path


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


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _report(label: str, t0: tuple[float, float], extra: str = "") -> None:
    wall, cpu = time.perf_counter() - t0[0], time.process_time() - t0[1]
    print(f"{label:<64} wall {wall:7.3f} s  cpu {cpu:7.3f} s {extra}")


def _forget() -> None:
    """Drop every in-process memo, so the next call is a first call (as in a new process)."""
    import importlib

    from npc_frames import views

    sql_module = importlib.import_module("npc_frames.cache.sql")
    views._MEMO.clear()
    with sql_module._CONNECTIONS_LOCK:
        for con, _ in sql_module._CONNECTIONS.values():
            con.close()
        sql_module._CONNECTIONS.clear()


def _touch_one(cache: Path) -> None:
    """Rewrite one session's units file (same content, new stamp): a "change" to the cache."""
    path = next((cache / "units").glob("session_id=*/data.parquet"))
    data = path.read_bytes()
    time.sleep(0.002)
    path.write_bytes(data)


def main() -> None:
    """Print wall/CPU seconds and peak RSS of nf.sessions and the SQL view over the cache."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--seed-sessions", type=int, default=4)
    ap.add_argument("--work", help="keep the built cache in this folder and reuse it next time")
    args = ap.parse_args()
    from npc_frames import views

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        t0 = time.perf_counter()
        if (work / "cache").exists():
            cache = work / "cache"
            (cache / views.STORE).unlink(missing_ok=True)
        else:
            cache = build_cache(work, args.sessions, args.seed_sessions)
        print(f"built a {args.sessions}-session cache in {time.perf_counter() - t0:.1f} s")
        t = _clock()
        views.session_summary(cache)
        _report("materialize the session summary (convert does this)", t)

        _forget()
        t = _clock()
        out = nf.sessions(cache)
        _report("nf.sessions() first call (summary on disk)", t, f"rows {out.height}")
        t = _clock()
        out = nf.sessions(cache)
        _report("nf.sessions() repeated call", t, f"rows {out.height}")
        _touch_one(cache)
        t = _clock()
        out = nf.sessions(cache, is_task=True, n_passing_blocks=[0, 1, 2, 3, 4, 5, 6])
        _report("nf.sessions(filters) first call after one session changed", t)
        _touch_one(cache)
        _forget()
        t = _clock()
        out = nf.sessions(cache)
        _report("nf.sessions() first call, new process, one session changed", t)
        t = _clock()
        out = nf.scan_session_days(cache).collect()
        _report("nf.scan_session_days().collect() repeated", t, f"rows {out.height}")

        _forget()
        t = _clock()
        out = nf.sql("SELECT session_id FROM session_records", cache)
        _report("SQL session_records first call", t, f"rows {out.height}")
        t = _clock()
        out = nf.sql("SELECT session_id FROM session_records", cache)
        _report("SQL session_records repeated call", t, f"rows {out.height}")
        _touch_one(cache)
        t = _clock()
        out = nf.sql("SELECT session_id FROM session_records WHERE n_units > 0", cache)
        _report("SQL session_records first call after one session changed", t)
        t = _clock()
        out = nf.scan_sessions(cache).collect()
        _report("nf.scan_sessions().collect()", t, f"rows {out.height}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
