"""Benchmark: the QC report (``nf.plot.qc_report``) of a full-scale session (issue 16 target: < 30 s).

One command::

    python benchmarks/bench_qc.py [--units 2400] [--spikes 60e6] [--minutes 90] [--probes 6]

A cache holding one full-scale session is written first: every component frame built directly
with numpy/polars as in ``bench_nwb.py`` (6 probes, 2,400 units, ~60 M spikes with amplitudes,
90 minutes of running speed, three 60 fps cameras), plus the ``qc``/``qc_timing`` rows the QC
component computes from 90 minutes of 60 Hz vsyncs (four stim blocks, dropped frames, photodiode
lag) and the task's sound/opto latencies. The report then runs in a fresh child process, which
prints its wall seconds, CPU seconds (user + system) and peak RSS; the fastest of `--repeat`
runs is reported (a shared machine disturbs the others). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

SID = "603074_2023-08-31"


def _qc_frames(minutes: float, rng: np.random.Generator) -> dict[str, pl.DataFrame]:
    """Return qc and qc_timing frames as the component computes them for a `minutes`-long
    session (its own summary and check code, on generated frame and event times)."""
    from npc_frames.components import _qc
    from npc_frames.schemas.qc import QC, QC_TIMING

    m = _qc._Measures()
    n_frames = int(minutes * 60 * 60)
    scripts = {"RFMapping": 0.15, "DynamicRouting1": 0.7, "OptoTagging": 0.1, "Spontaneous": 0.05}
    for block, (script, share) in enumerate(scripts.items()):
        n = int(n_frames * share)
        dt = 1 / 60 + rng.normal(0, 1e-4, n - 1)
        dt[rng.random(n - 1) < 1 / 2000] += 1 / 60
        lag = 0.01955 + rng.normal(0, 2e-4, n)
        limit = 1.5 * float(np.median(dt))
        m.timing_rows.append(
            _qc._summary(
                "vsync_interval",
                dt,
                script=script,
                block=block,
                edges=_qc.HIST_EDGES["vsync_interval"],
                outlier=limit,
            )
        )
        m.timing_rows.append(
            _qc._summary(
                "photodiode_lag",
                lag,
                script=script,
                block=block,
                edges=_qc.HIST_EDGES["photodiode_lag"],
                outlier=0.05,
            )
        )
    trig = np.sort(rng.uniform(0, minutes * 60, 600))
    sound_line = trig + rng.normal(0.010, 0.0015, trig.size)
    sound_daq = sound_line + rng.normal(0, 2e-5, trig.size)
    _qc._latency_checks(m, "sound", "DynamicRouting1", trig, sound_line, sound_daq, 0.1)
    opto = np.sort(rng.uniform(0, minutes * 60, 200))
    opto_line = opto + rng.uniform(5e-4, 1.5e-3, opto.size)
    _qc._latency_checks(m, "opto", "DynamicRouting1", opto, opto_line, opto_line, 0.02)

    class _Raw:
        session_id = SID
        root = "bench"

    return {
        "qc": _qc._frame(QC, _Raw(), m.check_rows),  # type: ignore[arg-type]
        "qc_timing": _qc._frame(QC_TIMING, _Raw(), m.timing_rows),  # type: ignore[arg-type]
    }


def build_cache(cache: Path, args: argparse.Namespace) -> None:
    """Write one full-scale session's component files into `cache`."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_nwb import build_frames
    from npc_frames import storage
    from npc_frames.cache.catalog import data_path
    from npc_frames.cache_layout import to_parquet_bytes
    from npc_frames.schemas import SCHEMAS

    frames = build_frames(
        n_units=args.units, n_spikes=args.spikes, minutes=args.minutes, n_probes=args.probes
    )
    frames.update(_qc_frames(args.minutes, np.random.default_rng(1)))
    for name, df in frames.items():
        df = df.with_columns(pl.lit(SID).alias("session_id"))
        storage.atomic_write_bytes(
            data_path(str(cache), name, SID),
            to_parquet_bytes(df, component=name, schema=SCHEMAS.get(name)),
        )


def child(cache: str, out: str) -> None:
    """Run the report once and print its figures as JSON (in a fresh process)."""
    import npc_frames as nf

    t0, c0 = time.perf_counter(), time.process_time()
    nf.plot.qc_report(SID, cache, out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_rss": rss}))


def main() -> None:
    """Build the cache, then time the QC report in fresh child processes."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--units", type=int, default=2400)
    p.add_argument("--spikes", type=float, default=60e6)
    p.add_argument("--minutes", type=float, default=90.0)
    p.add_argument("--probes", type=int, default=6)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        build_cache(cache, args)
        print(
            f"full-scale cache ({args.probes} probes, {args.units} units, {args.spikes:.0f} "
            f"spikes, {args.minutes} min) written in {time.perf_counter() - t0:.1f} s"
        )
        runs: list[dict[str, Any]] = []
        for i in range(args.repeat):
            cmd = [sys.executable, __file__, "--child", str(cache), str(Path(tmp) / f"qc{i}")]
            res = subprocess.run(
                cmd, capture_output=True, text=True, check=True, env=dict(os.environ)
            )
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        best = min(runs, key=lambda r: r["wall"])
        print(
            f"qc_report: wall {best['wall']:.2f} s  cpu {best['cpu']:.2f} s  "
            f"peak RSS {best['peak_rss'] / 2**30:.2f} GB  (best of {len(runs)}; target < 30 s)"
        )


if __name__ == "__main__":
    main()
