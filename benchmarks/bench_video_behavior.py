"""Benchmark the video-derived behavior components on a full-scale synthetic session.

Usage::

    python benchmarks/bench_video_behavior.py [--minutes 90] [--dir /tmp/npc_bench_vb] [--part all]

A synthetic session (`--minutes` of DynamicRouting1, MVR videos at 60 fps: Behavior, Eye, Face —
the generator's three cameras — and the derived assets dlc_eye, LPFaceParts and facemap with 16
motion SVD components per camera) is generated once into `--dir` by a separate process. Then,
each in a fresh process:

* ``components``: every video-behavior component from raw (eye_tracking, dlc_eye_camera,
  lp_side/front_camera, facemap_side/front_camera; ``video_frame_times`` — the sync read they all
  share — is timed separately first), peak resident memory, and the Parquet (zstd) size of each;
  beside it the reference's approach for the DeepLabCut table (``pandas.read_hdf`` + stack/pivot
  to ``<bodypart>_<coord>`` columns), when PyTables is installed;
* ``facemap``: the storage decision for motion SVD — 100 Float32 columns vs one
  ``pl.Array(Float32, 100)`` column for 324 000 frames: Parquet size, write time, and the time to
  read the first 3 components back;
* ``sample_at``: mean pupil area over 2 windows of 500 trials × 20 sessions of 324 000 frames each
  (Parquet, hive-partitioned, scanned lazily).

Targets: all components < 10 s and < 2 GB; sample_at < 1 s.
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import subprocess
import sys
import tempfile
import time

COMPONENTS = (
    "eye_tracking",
    "dlc_eye_camera",
    "lp_side_camera",
    "lp_front_camera",
    "facemap_side_camera",
    "facemap_front_camera",
)


def _generate(out: str, minutes: float) -> str:
    found = [p for p in glob.glob(os.path.join(out, "ecephys_*[0-9]")) if os.path.isdir(p)]
    if found:
        return found[0]
    code = (
        "from npc_frames.synth import make_session;"
        f"t = make_session({out!r}, seed=7, minutes={minutes}, ephys=False, video_behavior=True);"
        "print(t.raw_path)"
    )
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    print(f"generated {minutes:g}-minute session in {time.perf_counter() - t0:.1f} s")
    return res.stdout.strip().splitlines()[-1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_components(raw_path: str) -> None:
    import polars as pl

    import npc_frames as nf
    from npc_frames.components import get
    from npc_frames.components.video import video_frame_times

    raw = nf.RawSession.from_path(raw_path)
    t0 = time.perf_counter()
    vft = video_frame_times(raw)
    print(f"video_frame_times (sync read, shared): {time.perf_counter() - t0:.2f} s, "
          f"{vft.height} rows")  # fmt: skip
    total = 0.0
    cpu = 0.0
    out = tempfile.mkdtemp(prefix="npc_bench_vb_parquet_")
    sizes = 0
    for name in COMPONENTS:
        t0, c0 = time.perf_counter(), time.process_time()
        df = get(name)(raw)
        dt = time.perf_counter() - t0
        total += dt
        cpu += time.process_time() - c0
        path = os.path.join(out, f"{name}.parquet")
        df.write_parquet(path, compression="zstd")
        size = os.path.getsize(path)
        sizes += size
        print(f"{name:22s} {dt:6.2f} s  {df.height:7d} rows × {df.width:3d} cols  "
              f"parquet {size / 1e6:6.1f} MB  peak RSS so far {_peak_mb():.0f} MB")  # fmt: skip
        del df
    print(f"CPU time of the components (all threads): {cpu:.2f} s")
    print(f"all video-behavior components: {total:.2f} s wall (+ frame times); cache "
          f"{sizes / 1e6:.1f} MB per session; peak RSS {_peak_mb():.0f} MB")  # fmt: skip
    try:
        import pandas as pd
        import tables  # noqa: F401
    except ImportError:
        return
    path = next(
        p for p in glob.glob(os.path.join(raw.assets["dlc_eye"], "*.h5")) if "ellipses" not in p
    )
    t0 = time.perf_counter()
    df = pd.read_hdf(path)
    df.columns = df.columns.droplevel("scorer")
    df.index.name = "frame_index"
    long = df.stack("bodyparts", future_stack=True).reset_index()
    wide = long.pivot(index="frame_index", columns="bodyparts")
    wide.columns = [f"{bp}_{coord}" for coord, bp in wide.columns]
    ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    from npc_frames.readers.dlc import read_dlc

    mine, _ = read_dlc(path)
    ours = time.perf_counter() - t0
    assert wide.shape == (mine.height, mine.width)
    print(f"DLC .h5 -> wide table: reference pandas read_hdf + stack/pivot {ref:.2f} s, "
          f"npc_frames read_dlc (h5py) {ours:.2f} s")  # fmt: skip
    del pl


def bench_facemap(n_frames: int = 324_000, k: int = 100) -> None:
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    svd = rng.normal(size=(n_frames, k)).astype(np.float32).cumsum(axis=0)
    base = {"session_id": ["s"] * n_frames, "frame_index": np.arange(n_frames)}
    wide = pl.DataFrame({**base, **{f"motion_svd_{j:02d}": svd[:, j] for j in range(k)}})
    arr = pl.DataFrame(base).with_columns(
        pl.Series("motion_svd", svd, dtype=pl.Array(pl.Float32, k))
    )
    out = tempfile.mkdtemp(prefix="npc_bench_facemap_")
    for label, df in (("wide Float32 columns", wide), ("pl.Array(Float32, 100)", arr)):
        path = os.path.join(out, f"{label[:4]}.parquet")
        t0 = time.perf_counter()
        df.write_parquet(path, compression="zstd")
        w = time.perf_counter() - t0
        t0 = time.perf_counter()
        if label.startswith("wide"):
            got = pl.scan_parquet(path).select(f"motion_svd_{j:02d}" for j in range(3)).collect()
        else:
            got = (
                pl.scan_parquet(path)
                .select(pl.col("motion_svd").arr.get(j).alias(str(j)) for j in range(3))
                .collect()
            )
        r = time.perf_counter() - t0
        assert got.height == n_frames
        print(f"facemap {label:24s} parquet {os.path.getsize(path) / 1e6:6.1f} MB  "
              f"write {w:.2f} s  read 3 components {r:.3f} s")  # fmt: skip


def bench_sample_at(n_sessions: int = 20, n_frames: int = 324_000, n_trials: int = 500) -> None:
    import numpy as np
    import polars as pl

    import npc_frames as nf

    out = tempfile.mkdtemp(prefix="npc_bench_sample_at_")
    rng = np.random.default_rng(1)
    trials = []
    for s in range(n_sessions):
        sid = f"6000{s:02d}_2024-01-01"
        t = np.arange(n_frames) / 60.0
        area = rng.normal(1000, 50, n_frames)
        area[rng.random(n_frames) < 0.02] = np.nan
        folder = os.path.join(out, f"session_id={sid}")
        os.makedirs(folder)
        pl.DataFrame({"timestamp": t, "pupil_area": area}).write_parquet(
            os.path.join(folder, "data.parquet")
        )
        trials.append(
            pl.DataFrame(
                {
                    "session_id": [sid] * n_trials,
                    "trial_index": np.arange(n_trials),
                    "stim_start_time": np.sort(rng.uniform(10, t[-1] - 10, n_trials)),
                }
            )
        )
    frames = pl.scan_parquet(os.path.join(out, "*", "*.parquet"), hive_partitioning=True)
    t0 = time.perf_counter()
    res = nf.sample_at(
        frames,
        pl.concat(trials),
        windows={"baseline": ("stim_start_time", -1.0, 0.0), "response": ("stim_start_time", 0, 1)},
        columns=["pupil_area"],
    )
    dt = time.perf_counter() - t0
    print(f"sample_at pupil_area, {n_trials} trials × {n_sessions} sessions × 2 windows "
          f"({res.height} rows): {dt:.2f} s; peak RSS {_peak_mb():.0f} MB")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=90.0)
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "npc_bench_vb"))
    ap.add_argument("--part", default="all", choices=["all", "components", "facemap", "sample_at"])
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child == "components":
        bench_components(_generate(args.dir, args.minutes))
        return
    if args.child == "facemap":
        bench_facemap()
        return
    if args.child == "sample_at":
        bench_sample_at()
        return
    parts = ["components", "facemap", "sample_at"] if args.part == "all" else [args.part]
    if "components" in parts:
        _generate(args.dir, args.minutes)
    for part in parts:  # each in a fresh process: peak memory is its own
        cmd = [sys.executable, __file__, "--child", part, "--dir", args.dir]
        subprocess.run([*cmd, "--minutes", str(args.minutes)], check=True)


if __name__ == "__main__":
    main()
