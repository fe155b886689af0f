"""Benchmark ``npc_frames.synth.make_session``: wall time and peak RSS per session size.

Targets (issue 2): a 2-minute, 1-probe session in under 1 s; a full-scale 90-minute, 6-probe
session (~2,400 units, ~60 M spikes) in under 2 minutes and 4 GB.

Each case runs in a fresh Python process so its peak RSS is its own; the time excludes imports
(the synth modules, polars and h5py are imported before the clock starts). The "0.1 s clip" case
shows the cost without the ephys writer's default 2 s ``continuous.dat`` clips, which dominate
small sessions.

Usage::

    python benchmarks/bench_synth.py            # small + full-scale
    python benchmarks/bench_synth.py --quick    # small cases only
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES: dict[str, dict[str, object]] = {
    "2 min, 1 probe, 8 units": dict(minutes=2.0, n_probes=1, units_per_probe=8),
    "2 min, 1 probe, 8 units, 0.1 s clip": dict(
        minutes=2.0, n_probes=1, units_per_probe=8, clip_seconds=0.1
    ),
    "10 min, 2 probes, 100 units/probe": dict(minutes=10.0, n_probes=2, units_per_probe=100),
    "90 min, 6 probes, 400 units/probe": dict(
        minutes=90.0, n_probes=6, units_per_probe=400, opto=True
    ),
}
QUICK = (
    "2 min, 1 probe, 8 units",
    "2 min, 1 probe, 8 units, 0.1 s clip",
    "10 min, 2 probes, 100 units/probe",
)


def _child(name: str) -> None:
    """Run one case in this process and print a json line with its figures."""
    import importlib

    import npc_frames.synth as synth

    # warm-up imports (task/ephys writers are imported lazily by make_session; truth uses polars)
    for module in ("npc_frames.synth.task", "npc_frames.synth.ephys", "polars", "h5py"):
        importlib.import_module(module)

    kwargs = CASES[name]
    out = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        t0 = time.perf_counter()
        truth = synth.make_session(out, seed=0, **kwargs)  # type: ignore[arg-type]
        wall = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        print(
            json.dumps(
                {
                    "case": name,
                    "wall_s": round(wall, 3),
                    "peak_rss_mb": round(peak_mb, 1),
                    "disk_mb": round(size / 1e6, 1),
                    "sync_s": round(truth.sync_duration_s, 1),
                    "n_units": truth.counts.get("n_units"),
                    "n_spikes": truth.counts.get("n_spikes"),
                    "sync_events": int(sum(len(r) + len(f) for r, f in truth.sync_lines.values())),
                }
            )
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    """Run every case in a subprocess and print a table; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the full-scale session")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        _child(args.case)
        return 0
    names = QUICK if args.quick else tuple(CASES)
    print(f"{'case':<40} {'wall s':>8} {'peak MB':>8} {'disk MB':>8} {'units':>6} {'spikes':>11}")
    for name in names:
        proc = subprocess.run(
            [sys.executable, __file__, "--case", name], capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(f"{name:<40} FAILED\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{name:<40} {r['wall_s']:>8.2f} {r['peak_rss_mb']:>8.0f} {r['disk_mb']:>8.1f} "
            f"{r['n_units'] or 0:>6} {r['n_spikes'] or 0:>11,}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
