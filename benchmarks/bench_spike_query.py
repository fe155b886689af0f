"""How to store units' spike times: size / speed / bytes-read of each candidate layout, side by side.

Query (issue 5): "units passing QC in one structure, with their spike times", across sessions.
Also timed: one unit's spike times alone, and a scalar-metrics query. Each candidate holds the same
synthetic units (2,400 per session by default, log-normal firing rates, 12 structures along the
probes, ~40 % QC pass); lazynwb and a pynwb/h5py idiom over NWB files of the same sessions (written
with pynwb bulk VectorData/VectorIndex) run side by side.

``bytes needed`` = compressed bytes of the projected columns in the row groups that survive the
Parquet min/max statistics for the query (+ footers): what a reader fetches from S3 with ranged
GETs. Not run by CI; figures are printed, never asserted.

    python benchmarks/bench_spike_query.py                    # 8 sessions x 7.5 M spikes (1/8)
    python benchmarks/bench_spike_query.py --spikes 60e6      # the issue's full scale
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from npc_frames.cache import _unpack_udf
from npc_frames.cache_layout import LAYOUTS, Layout, to_parquet_bytes, unpack_expr

RATE = 30_000.0
N_STRUCTURES = 12


# --------------------------------------------------------------------------------- data
def make_units(i: int, n_units: int, n_spikes: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Return a units frame (spike_times list column) and its int64 spike samples, flat."""
    rng = np.random.default_rng(seed + i)
    sid = f"{660000 + i}_2023-08-{1 + i % 28:02d}"
    rates = rng.lognormal(mean=0.0, sigma=1.2, size=n_units)
    counts = rng.multinomial(n_spikes, rates / rates.sum())
    duration_samples = int(5400 * RATE)
    samples = rng.integers(0, duration_samples, n_spikes)
    unit_of = np.repeat(np.arange(n_units), counts)
    samples = samples[np.lexsort((samples, unit_of))]
    start = 12.3456789
    times = start + samples / (RATE * (1 + 1.7e-6))  # sync-clock seconds: sample / fitted rate
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    spike_times = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(times))
    # structures run along each of 6 probes: contiguous depth ranges, then shuffled unit order
    probe = rng.integers(0, 6, n_units)
    depth = rng.random(n_units)
    # each probe crosses 4 of 12 structures, neighbouring probes share some (~8 % of units each)
    structure_idx = (probe * 2 + (depth * 4).astype(int)) % N_STRUCTURES
    cluster = rng.permutation(n_units)
    metrics = {f"metric_{k}": rng.normal(size=n_units) for k in range(20)}
    df = pl.DataFrame(
        {
            "session_id": [sid] * n_units,
            "unit_id": [f"{sid}_{'ABCDEF'[p]}-{c}" for p, c in zip(probe, cluster)],
            "electrode_group_name": [f"probe{'ABCDEF'[p]}" for p in probe],
            "structure": [f"S{s:02d}" for s in structure_idx],
            "is_qc_pass": rng.random(n_units) < 0.4,
            "firing_rate": counts / 5400.0,
            **metrics,
        }
    ).with_columns(pl.Series("spike_times", pl.from_arrow(spike_times)))
    return df, samples


# ---------------------------------------------------------------------------- candidates
def _pq_write(df: pl.DataFrame, path: Path, **kw: Any) -> None:
    pq.write_table(df.to_arrow(), path, **kw)


def w_list_zstd_1rg(df: pl.DataFrame, path: Path, samples: np.ndarray) -> None:
    df.write_parquet(path, compression="zstd", row_group_size=len(df) + 1)


def w_list_zstd_rg64(df: pl.DataFrame, path: Path, samples: np.ndarray) -> None:
    _pq_write(df, path, compression="zstd", row_group_size=64)


def _layout_writer(layout: Layout) -> Callable[[pl.DataFrame, Path, np.ndarray], None]:
    def write(df: pl.DataFrame, path: Path, samples: np.ndarray) -> None:
        LAYOUTS["_bench"] = layout
        try:
            path.write_bytes(to_parquet_bytes(df, component="_bench"))
        finally:
            LAYOUTS.pop("_bench", None)

    return write


OURS = LAYOUTS["units"]
_CLUSTER = {
    "cluster_by": OURS.cluster_by,
    "split_on": OURS.split_on,
    "list_budget_column": "spike_times",
    "max_rows": OURS.max_rows,
}
CANDIDATES: dict[str, Callable[[pl.DataFrame, Path, np.ndarray], None]] = {
    "list zstd, 1 row group": w_list_zstd_1rg,
    "list zstd, 64-unit RGs": w_list_zstd_rg64,
    "list BSS raw, 32-unit RGs": _layout_writer(
        Layout(
            column_compression={"spike_times": "none"},
            byte_stream_split=("spike_times",),
            list_budget_column="spike_times",
            max_rows=32,
        )
    ),
    "list BSS zstd1, clustered": _layout_writer(
        Layout(compression_level=1, byte_stream_split=("spike_times",), **_CLUSTER)  # type: ignore[arg-type]
    ),
    "list BSS raw, clustered": _layout_writer(
        Layout(
            column_compression={"spike_times": "none"},
            byte_stream_split=("spike_times",),
            **_CLUSTER,  # type: ignore[arg-type]
        )
    ),
    "packed f64 zstd1, clustered": _layout_writer(
        Layout(compression_level=1, packed=("spike_times",), **_CLUSTER)  # type: ignore[arg-type]
    ),
    "CHOSEN: packed f64 raw, clustered": _layout_writer(OURS),
}
#: layouts whose spike_times column is packed (cache_layout.pack) and must be unpacked on read
PACKED = {"packed f64 zstd1, clustered", "CHOSEN: packed f64 raw, clustered"}


def w_delta_samples(df: pl.DataFrame, path: Path, samples: np.ndarray) -> None:
    """Spike samples as list[int64], DELTA_BINARY_PACKED (times = start + sample / rate)."""
    lens = df["spike_times"].list.len().to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    arr = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(samples.astype(np.int64)))
    order = df.with_row_index("_i").sort("structure", "unit_id")["_i"].to_numpy()
    t = df.drop("spike_times")[order].to_arrow()
    t = t.append_column("spike_samples", arr.take(pa.array(order)))
    pq.write_table(
        t,
        path,
        compression="zstd",
        row_group_size=32,
        use_dictionary=[n for n in t.column_names if n != "spike_samples"],
        column_encoding={"spike_samples.list.element": "DELTA_BINARY_PACKED"},
    )


# ------------------------------------------------------------------------------ measures
def bytes_needed(
    files: list[Path], structure: str | None, unit_id: str | None, cols: list[str]
) -> int:
    """Return bytes a statistics-pruning reader fetches for the query (projected columns)."""
    total = 0
    for f in files:
        md = pq.ParquetFile(f).metadata
        total += md.serialized_size
        names = [md.schema.column(j).path for j in range(md.num_columns)]
        for i in range(md.num_row_groups):
            rg = md.row_group(i)
            keep = True
            for key, value in (("structure", structure), ("unit_id", unit_id)):
                if value is None:
                    continue
                st = rg.column(names.index(key)).statistics
                if st is not None and st.has_min_max and not (st.min <= value <= st.max):
                    keep = False
            if keep:
                total += sum(
                    rg.column(j).total_compressed_size
                    for j, n in enumerate(names)
                    if n.split(".")[0] in cols
                )
    return total


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Return (median seconds over `repeat` warm runs, last result)."""
    fn()  # warm the page cache
    times, out = [], None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def polars_query(
    glob: str, structure: str, list_col: str = "spike_times", packed: bool = False
) -> pl.DataFrame:
    lf = pl.scan_parquet(glob, hive_partitioning=True).filter(
        pl.col("is_qc_pass") & (pl.col("structure") == structure)
    )
    if packed:  # what nf.scan_units does for the chosen layout
        lf = lf.with_columns(unpack_expr(list_col, "float64"))
    return lf.select("unit_id", list_col).collect()


def duckdb_query(glob: str, structure: str, packed: bool = False) -> pa.Table:
    con = duckdb.connect()
    col = f"{_unpack_udf(con, 'float64')}(spike_times)" if packed else "spike_times"
    return con.sql(
        f"SELECT unit_id, {col} AS spike_times FROM read_parquet('{glob}', "
        "hive_partitioning=true) WHERE is_qc_pass AND structure = ?",
        params=[structure],
    ).to_arrow_table()


def measure(
    folder: Path, name: str, structure: str, one_unit: str, truth_units: int, repeat: int
) -> tuple[float, float, float, float, float, float]:
    """Return size MB, polars s, duckdb s, MB needed, one-unit s, one-unit MB of one layout."""
    files = sorted(folder.rglob("data.parquet"))
    glob = str(folder / "*" / "data.parquet")
    size = sum(f.stat().st_size for f in files) / 1e6
    list_col = "spike_samples" if name.startswith("delta") else "spike_times"
    packed = name in PACKED
    tp, res = timed(lambda: polars_query(glob, structure, list_col, packed), repeat)
    assert res.height == truth_units, (name, res.height)
    td = float("nan")
    if list_col == "spike_times":
        td, _ = timed(lambda: duckdb_query(glob, structure, packed), repeat)
    need = bytes_needed(files, structure, None, ["unit_id", list_col, "is_qc_pass", "structure"])
    t1, _ = timed(
        lambda: (
            pl.scan_parquet(glob, hive_partitioning=True)
            .filter(pl.col("unit_id") == one_unit)
            .with_columns(unpack_expr(list_col, "float64") if packed else pl.col(list_col))
            .select(list_col)
            .collect()
        ),
        repeat,
    )
    need1 = bytes_needed(files, None, one_unit, ["unit_id", list_col])
    return size, tp, td, need / 1e6, t1, need1 / 1e6


# -------------------------------------------------------------------------------- NWB
def write_nwb(df: pl.DataFrame, path: Path) -> None:
    """Write the units of one session to NWB with pynwb bulk VectorData/VectorIndex."""
    import datetime as dt
    import uuid

    from hdmf.common import VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    nwb = NWBFile(
        session_description="bench",
        identifier=str(uuid.uuid4()),
        session_start_time=dt.datetime(2023, 8, 31, tzinfo=dt.UTC),
    )
    lens = df["spike_times"].list.len().to_numpy()
    flat = df["spike_times"].explode().to_numpy()
    st = VectorData(name="spike_times", description="s", data=flat)
    sti = VectorIndex(name="spike_times_index", data=np.cumsum(lens), target=st)
    cols: list[Any] = [st, sti]
    for name in ("unit_id", "structure", "electrode_group_name"):
        cols.append(VectorData(name=name, description=name, data=df[name].to_list()))
    cols.append(VectorData(name="is_qc_pass", description="qc", data=df["is_qc_pass"].to_numpy()))
    for name in ["firing_rate", *[f"metric_{k}" for k in range(20)]]:
        cols.append(VectorData(name=name, description=name, data=df[name].to_numpy()))
    nwb.units = Units(name="units", id=np.arange(len(df)), columns=cols, description="units")
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def pynwb_idiom(paths: list[Path], structure: str) -> int:
    """Read only the selected units' spike times with h5py (the best pynwb-file idiom)."""
    import h5py

    n = 0
    for p in paths:
        with h5py.File(p, "r") as f:
            u = f["units"]
            structs = u["structure"][:].astype(str)
            qc = u["is_qc_pass"][:]
            idx = u["spike_times_index"][:]
            sel = np.flatnonzero(qc & (structs == structure))
            starts = np.concatenate([[0], idx])[sel]
            stops = idx[sel]
            st = u["spike_times"]
            for a, b in zip(starts, stops):
                n += len(st[a:b])
    return n


# -------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--units", type=int, default=2400)
    ap.add_argument("--spikes", type=float, default=7.5e6, help="spikes per session")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-nwb", action="store_true", help="skip lazynwb / pynwb")
    ap.add_argument(
        "--only", action="append", default=[], help="run only layouts whose name contains this"
    )
    ap.add_argument("--out", default=None, help="work folder (default: a temp dir, removed)")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_spikes_"))
    work.mkdir(parents=True, exist_ok=True)
    n_spikes = int(args.spikes)
    print(
        f"{args.sessions} sessions x {args.units} units x {n_spikes / 1e6:.1f} M spikes "
        f"({args.sessions * n_spikes * 8 / 1e9:.2f} GB of float64 spike times); work dir {work}"
    )
    structure = "S07"
    names = [*CANDIDATES, "delta int samples (lossy)"]
    if args.only:
        names = [n for n in names if any(o in n for o in args.only)]
    writers = {**CANDIDATES, "delta int samples (lossy)": w_delta_samples}
    write_s: dict[str, float] = dict.fromkeys(names, 0.0)
    nwb_paths: list[Path] = []
    nwb_write = 0.0
    one_unit = None
    truth_units = truth_spikes = 0
    for i in range(args.sessions):
        df, samples = make_units(i, args.units, n_spikes, seed=0)
        sel = df.filter(pl.col("is_qc_pass") & (pl.col("structure") == structure))
        truth_units += sel.height
        truth_spikes += int(sel["spike_times"].list.len().sum())
        if one_unit is None:
            one_unit = sel["unit_id"][0]
        for name in names:
            writer = writers[name]
            d = work / _slug(name) / f"session_id={df['session_id'][0]}"
            d.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            writer(df, d / "data.parquet", samples)
            write_s[name] += time.perf_counter() - t0
        if not args.no_nwb:
            p = work / "nwb" / f"{df['session_id'][0]}.nwb"
            p.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            write_nwb(df, p)
            nwb_write += time.perf_counter() - t0
            nwb_paths.append(p)
        del df, samples
        gc.collect()
    print(
        f"query: QC-passing units in {structure}: {truth_units} units, {truth_spikes / 1e6:.2f} M spikes\n"
    )
    head = (
        f"{'layout':34s} {'size MB':>8s} {'write s/sess':>12s} {'polars s':>9s} {'duckdb s':>9s} "
        f"{'MB needed':>9s} {'1 unit s':>9s} {'1 unit MB':>9s}"
    )
    print(head)
    print("-" * len(head))
    for name in names:
        size, tp, td, need, t1, need1 = measure(
            work / _slug(name), name, structure, one_unit or "", truth_units, args.repeat
        )
        print(
            f"{name:34s} {size:8.1f} {write_s[name] / args.sessions:12.2f} {tp:9.3f} {td:9.3f} "
            f"{need:9.1f} {t1:9.3f} {need1:9.1f}"
        )
    if nwb_paths:
        size = sum(p.stat().st_size for p in nwb_paths) / 1e6
        try:
            import lazynwb

            tl, res = timed(
                lambda: (
                    lazynwb.scan_nwb(nwb_paths, "/units", disable_progress=True)
                    .filter(pl.col("is_qc_pass") & (pl.col("structure") == structure))
                    .select("unit_id", "spike_times")
                    .collect()
                ),
                max(1, args.repeat - 1),
            )
            assert res.height == truth_units, res.height
            print(
                f"{'NWB + lazynwb.scan_nwb':34s} {size:8.1f} {nwb_write / args.sessions:12.2f} "
                f"{tl:9.3f} {'':>9s} {'':>9s}"
            )
        except Exception as exc:  # lazynwb API drift: report, keep the rest
            print(f"lazynwb failed: {type(exc).__name__}: {exc}")
        tn, n = timed(lambda: pynwb_idiom(nwb_paths, structure), args.repeat)
        assert n == truth_spikes
        print(f"{'NWB + h5py selected units only':34s} {size:8.1f} {'':>12s} {tn:9.3f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MB")
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", str(os.cpu_count() or 2))
    main()
