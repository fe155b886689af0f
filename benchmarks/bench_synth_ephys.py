"""Benchmark: synthetic Open Ephys + Kilosort output of a full-scale session.

Default: 6 probes × 400 units, 90-minute recording, 2 s clipped continuous.dat — the size of a real
Dynamic Routing ephys session (~2,400 units; ~47 M spikes in 90 min at the generator's ~3.6 Hz
mean rate; ``make_session``'s full-scale case records ~118 min and has ~60 M). Prints wall and CPU
time, spike count, bytes written and peak RSS. ``--stream-truth`` writes the per-spike truth to
``.npy`` files probe by probe, as ``make_session`` does, instead of holding it in memory. Run::

    /work/venv/bin/python benchmarks/bench_synth_ephys.py [--probes 6] [--units 400] [--minutes 90]
        [--stream-truth]
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from npc_frames.synth.ephys import make_ephys


def barcode_edges(start: float, stop: float) -> tuple[np.ndarray, np.ndarray]:
    """Return rising/falling edges (s) of a sync-barcode train every 30 s (FORMATS §10)."""
    t0 = np.arange(start + 2.5, stop - 2.0, 30.0)
    values = 1_000 + np.arange(t0.size)
    bits = (values[:, None] >> np.arange(32)[None, :]) & 1
    ones = np.ones((t0.size, 1), dtype=np.int64)
    level = np.concatenate([ones, 0 * ones, bits, 0 * ones], axis=1)
    slot_t = np.concatenate([[0.0, 0.02], 0.04 + 0.015 * np.arange(33)])
    change = np.diff(level, axis=1)
    rows, cols = np.nonzero(change)
    t = t0[rows] + slot_t[cols + 1]
    rising = np.sort(np.concatenate([t0, t[change[rows, cols] > 0]]))
    falling = np.sort(t[change[rows, cols] < 0])
    return rising, falling


def main(argv: list[str] | None = None) -> int:
    """Return 0 after generating one session and printing time and peak memory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=6)
    parser.add_argument("--units", type=int, default=400)
    parser.add_argument("--minutes", type=float, default=90.0)
    parser.add_argument("--clip-seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep output here")
    parser.add_argument(
        "--stream-truth",
        action="store_true",
        help="write per-spike truth to <out>/truth_arrays probe by probe (as make_session does)",
    )
    args = parser.parse_args(argv)

    duration = args.minutes * 60.0
    rising, falling = barcode_edges(0.0, duration + 20.0)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_synth_ephys_"))
    root = out / "ecephys_123456_2023-08-31_12-00-00"
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    truth = make_ephys(
        root,
        rng=np.random.default_rng(args.seed),
        date=datetime.date(2023, 8, 31),
        probe_letters=list("ABCDEF"[: args.probes]),
        units_per_probe=args.units,
        recording_start_s=10.0,
        recording_stop_s=10.0 + duration,
        barcode_rising=rising,
        barcode_falling=falling,
        clip_seconds=args.clip_seconds,
        truth_arrays_dir=out / "truth_arrays" if args.stream_truth else None,
    )
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())  # streamed truth too
    sorting_bytes = sum(p.stat().st_size for p in (root / "sorting").rglob("*") if p.is_file())
    truth_bytes = sum(a.nbytes for a in truth.arrays().values())
    truth_where = "streamed to .npy (memory-mapped)" if args.stream_truth else "in memory"
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(
        f"probes={args.probes} units={truth.n_units} minutes={args.minutes:g} "
        f"spikes={truth.n_spikes:,}"
    )
    print(
        f"make_ephys: {elapsed:.1f} s wall, {cpu:.1f} s CPU "
        f"({truth.n_spikes / elapsed / 1e6:.1f} M spikes/s wall); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"written: {written / 2**20:,.0f} MiB (sorting {sorting_bytes / 2**20:,.0f} MiB); "
        f"truth arrays {truth_where}: {truth_bytes / 2**20:,.0f} MiB"
    )
    print(f"peak RSS: {peak_rss:,.0f} MiB")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
