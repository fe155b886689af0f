"""Benchmark: parse a 90-minute sync file with npc_frames vs npc_sync.SyncDataset.

Writes a realistic file with h5py (vsyncs and photodiode at 60 Hz, three cameras' exposure and
readout pulses at 60 Hz, barcodes every 30 s, stim_running blocks, licks), then times

* ``npc_frames.readers.sync.read_sync`` (cold: decodes every edge of every line) + fetching the
  rising and falling edges of the lines npc uses, and
* ``npc_sync.SyncDataset`` + ``get_rising_edges``/``get_falling_edges`` of the same lines,

printing wall time and peak traced memory (tracemalloc; numpy allocations are traced) for each.

Usage: ``python benchmarks/bench_sync.py [--minutes 90] [--keep PATH]``
"""

from __future__ import annotations

import argparse
import datetime
import gc
import itertools
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from npc_frames.synth.sync import LINE_LABELS

RATE = 100_000.0
LABELS = list(LINE_LABELS)  # the NP-rig line table the synthetic sessions use (FORMATS §2.3)
USED = ["barcode_ephys", "vsync_stim", "stim_photodiode", "stim_running", "lick_sensor"] + [
    f"{c}_cam_exposing" for c in ("beh", "face", "eye")
]


def _pulses(starts: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    return starts, starts + width


def make_file(path: str, minutes: float, seed: int = 0) -> int:
    """Write a `minutes`-long sync file to `path`; return its number of event rows."""
    rng = np.random.default_rng(seed)
    total = minutes * 60
    lines: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    # stim blocks: 4 blocks separated by 5 s gaps
    edges = np.linspace(10, total - 10, 5)
    frames = np.concatenate(
        [np.arange(a + 2.5, b - 2.5, 1 / 60) for a, b in itertools.pairwise(edges)]
    )
    frames += rng.uniform(0, 0.001, frames.size)
    lines[2] = (frames - 0.005, frames)
    diode = frames + 0.02
    lines[4] = (diode[0::2], diode[1::2][: diode[0::2].size])
    lines[5] = (edges[:-1] + 2.4, edges[1:] - 2.4)
    for i, (exp_bit, ro_bit) in enumerate(((27, 21), (28, 22), (29, 25))):
        t = np.arange(5 + i * 0.01, total - 5, 1 / 60) + rng.normal(0, 2e-5)
        lines[exp_bit] = _pulses(t, 0.004)
        lines[ro_bit] = _pulses(t + 0.0041, 0.004)
    # barcodes: start pulse + up to 32 bits of 15 ms, every 30 s
    bc_r, bc_f = [], []
    for t0 in np.arange(1, total - 2, 30):
        bits = rng.integers(0, 2, 32)
        bc_r.append(t0)
        bc_f.append(t0 + 0.02)
        level, t = 0, t0 + 0.04
        for b in bits:
            if b != level:
                (bc_r if b else bc_f).append(t)
                level = b
            t += 0.015
        if level:
            bc_f.append(t)
    lines[0] = (np.array(bc_r), np.array(bc_f))
    licks = np.sort(rng.uniform(10, total - 10, int(total * 2)))
    licks = licks[np.concatenate([[True], np.diff(licks) > 0.1])]
    lines[31] = _pulses(licks, 0.03)

    samples, masks = [], []
    for bit, (r, f) in lines.items():
        s = np.rint(np.concatenate([r, f]) * RATE).astype(np.int64)
        samples.append(s)
        masks.append(np.full(s.size, 1 << bit, dtype=np.uint32))
    s_all, m_all = np.concatenate(samples), np.concatenate(masks)
    order = np.argsort(s_all, kind="stable")
    uniq, inv = np.unique(s_all[order], return_inverse=True)
    toggles = np.zeros(uniq.size, dtype=np.uint32)
    np.bitwise_xor.at(toggles, inv, m_all[order])
    states = np.bitwise_xor.accumulate(np.concatenate([[0], toggles]).astype(np.uint32))
    data = np.column_stack([np.concatenate([[0], uniq]), states]).astype(np.uint32)
    start = datetime.datetime(2023, 8, 31, 12, 33, 31, 637254)
    meta = {
        "ni_daq": {
            "device": "Dev1",
            "counter_output_freq": RATE,
            "sample_rate": RATE,
            "counter_bits": 32,
            "event_bits": 32,
        },
        "start_time": str(start),
        "stop_time": str(start + datetime.timedelta(seconds=total)),
        "line_labels": LABELS,
        "timeouts": [],
        "version": {"dataset": 1.04, "sync": 1.05},
        "sampling_type": "frequency",
        "total_samples": int(total * RATE),
    }
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("meta", data=repr(meta))
    return int(data.shape[0])


def measure(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Return (seconds, peak MiB traced, result) of one call of `fn`."""
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return dt, peak / 2**20, result


def run_ours(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from npc_frames.readers import sync as sync_mod

    sync = sync_mod._read_path(path)  # bypass the memo: cold parse every time
    return {name: (sync.rising(name), sync.falling(name)) for name in USED}


def run_npc(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import npc_sync

    ds = npc_sync.SyncDataset(path)
    out = {
        name: (
            ds.get_rising_edges(name, units="seconds"),
            ds.get_falling_edges(name, units="seconds"),
        )
        for name in USED
    }
    ds.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=90.0)
    ap.add_argument("--keep", help="write the file here instead of a temp file")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = args.keep or os.path.join(tempfile.mkdtemp(), "20230831T123331.h5")
    t0 = time.perf_counter()
    rows = make_file(path, args.minutes)
    print(
        f"wrote {args.minutes:.0f}-minute sync file: {rows:,} event rows, "
        f"{os.path.getsize(path) / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s  ({path})"
    )

    results = {}
    for name, fn in (("npc_frames.read_sync", run_ours), ("npc_sync.SyncDataset", run_npc)):
        try:
            runs = [measure(lambda fn=fn: fn(path)) for _ in range(args.repeat)]  # type: ignore[misc]
        except ImportError as exc:
            print(f"{name:<24} skipped: {exc}")
            continue
        best = min(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        results[name] = runs[-1][2]
        n_edges = sum(a.size + b.size for a, b in runs[-1][2].values())
        print(
            f"{name:<24} best of {args.repeat}: {best:6.2f} s   peak traced memory {peak:7.1f} MiB"
            f"   ({n_edges:,} edges on {len(USED)} lines)"
        )
    if len(results) == 2:
        ours, theirs = results.values()
        same = all(
            np.array_equal(ours[k][0], theirs[k][0]) and np.array_equal(ours[k][1], theirs[k][1])
            for k in USED
        )
        print(f"edges identical to npc_sync on every line: {same}")
    _, _, sync = measure(
        lambda: __import__("npc_frames.readers.sync", fromlist=["x"])._read_path(path)
    )
    t_edges, peak_edges, df = measure(sync.edges)
    print(
        f"npc_frames all-lines edges() frame: {df.height:,} rows in {t_edges:.2f} s "
        f"(peak {peak_edges:.0f} MiB)"
    )
    if not args.keep:
        os.remove(path)


if __name__ == "__main__":
    main()
