"""Queries over a cache on S3: wall, CPU, requests and bytes against the bytes the query needs.

A moto S3 server runs in this process on 127.0.0.1, behind a WSGI middleware that records every
request it answers and the body bytes it sends (``tests/helpers/s3server.py``): request and byte
counts come from the server, not from the client. The server holds a cache of ``--sessions``
synthetic sessions written with the cache's own layouts (``npc_frames.cache_layout``): ``units``
(columns in the schema's order), their per-spike amplitudes in the ``spike_amplitudes`` component
and their average templates (``channels``, ``waveform_mean``: 32 channels x 90 samples of
float32 per unit) in the ``unit_waveforms`` component beside them, as convert writes every real
sorting (``--no-amplitudes``, ``--no-waveforms``: none; ``--waveforms-in-units``: the templates
as columns of units, the layout before ``unit_waveforms``), and ``trials``; and the same
sessions' NWB files (pynwb bulk VectorData/VectorIndex).

Queries, each run cold (empty footer cache) and warm (second run in the same process):

- Q1 "QC units of one structure with their spike times": ``nf.scan_units(cache="s3://…")``
  filtered and projected; the same query as SQL (``nf.sql``, DuckDB reading through the same
  planned reader), through Polars' own S3 reader (``pl.scan_parquet``) and through
  ``lazynwb.scan_nwb`` over the NWB files on the same server;
- counts: ``nf.spike_counts`` for all units × all trials, two windows (issue 14 item 5), and
  ``lazynwb.get_spike_times_in_intervals(as_counts=True)`` over the NWB files.

``needed`` is computed here from each file's Parquet footer, independently of the reader: footer
bytes + the compressed bytes of the column chunks the query reads (projected and filtered
columns) in the row groups whose min/max statistics admit the filter. Targets: transferred ≤
1.3 × needed, and ≤ 3 requests per file touched (the listing, one request per 1,000 files, is
counted in the total but not per file).

Spikes are generated with ``bench_spike_query.make_units`` (2,400 units, log-normal rates,
12 structures along 6 probes, ~40 % QC pass) and the trials as in ``bench_analysis``.

    python benchmarks/bench_s3.py                  # 8 sessions x 2,400 units x 7.5 M spikes (~2 min)
    python benchmarks/bench_s3.py --spikes 60e6    # the full 60 M spikes per session (~15 min)
    python benchmarks/bench_s3.py --no-nwb         # without the lazynwb comparison
    python benchmarks/bench_s3.py --no-amplitudes  # sortings without per-spike amplitudes
    python benchmarks/bench_s3.py --no-waveforms   # sortings without templates
    python benchmarks/bench_s3.py --waveforms-in-units  # the templates in the units file
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from bench_analysis import DURATION, WINDOWS, add_trials  # noqa: E402
from bench_spike_query import make_units  # noqa: E402
from helpers.s3server import Request, aws_environment, start_server_process  # noqa: E402

STRUCTURE = "S07"
BUCKET = "npc-bench"
PREFIX = "cache"


# ----------------------------------------------------------------------------------- data
def waveform_columns(
    n_units: int, n_channels: int, n_samples: int, seed: int
) -> tuple[pl.Series, pl.Series]:
    """Return (``channels``, ``waveform_mean``) of `n_units` units: `n_channels` consecutive
    channels around each unit's peak and a float32 (channels × samples) mean waveform each (a
    spike-shaped trace decaying away from the peak channel, plus noise), as a sorting's
    sparse templates give them."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) - n_samples // 3
    shape = -np.exp(-0.5 * (t / 4.0) ** 2) + 0.4 * np.exp(-0.5 * ((t - 12) / 8.0) ** 2)
    decay = np.exp(-np.abs(np.arange(n_channels) - n_channels // 2) / 4.0)
    amp = rng.lognormal(4.0, 0.5, n_units)
    waves = (
        amp[:, None, None] * decay[None, :, None] * shape[None, None, :]
        + rng.normal(0.0, 2.0, (n_units, n_channels, n_samples))
    ).astype(np.float32)
    first = rng.integers(0, 384 - n_channels, n_units)
    channels = first[:, None] + np.arange(n_channels)[None, :]
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n_units * n_channels * n_samples + 1, n_samples, dtype=np.int32)),
        pa.array(waves.ravel()),
    )
    outer = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n_units * n_channels + 1, n_channels, dtype=np.int32)), inner
    )
    ch = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n_units * n_channels + 1, n_channels, dtype=np.int32)),
        pa.array(channels.ravel().astype(np.int64)),
    )
    return (
        pl.Series("channels", pl.from_arrow(ch)),
        pl.Series("waveform_mean", pl.from_arrow(outer)),
    )


def make_session(
    i: int,
    n_units: int,
    n_spikes: int,
    n_trials: int,
    amplitudes: bool = True,
    waveform_shape: tuple[int, int] | None = (32, 90),
    waveforms_in_units: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None, pl.DataFrame]:
    """Return (units, spike_amplitudes or None, unit_waveforms or None, trials) of one synthetic
    session: units with obs_intervals and default_qc, columns in the schema's order (as convert
    writes them); with `amplitudes` the ``spike_amplitudes`` rows (one float64 per spike, as
    large as the spike times) of every unit; with `waveform_shape` (channels, samples) the
    ``unit_waveforms`` rows (``channels``, ``waveform_mean``) of every unit, or, with
    `waveforms_in_units`, those two columns in units instead (the layout before the
    component)."""
    from npc_frames.schemas import SCHEMAS

    units, _ = make_units(i, n_units, n_spikes, seed=0)
    units = units.with_columns(
        default_qc=pl.col("is_qc_pass"), obs_intervals=pl.lit([[1.0, DURATION - 1.0]])
    )
    waves = None
    if waveform_shape is not None:
        wf_cols = waveform_columns(units.height, *waveform_shape, seed=2000 + i)
        if waveforms_in_units:
            units = units.with_columns(wf_cols)
        else:
            waves = units.select(
                "session_id", "unit_id", "electrode_group_name", "structure", *wf_cols
            )
    declared = [c for c in SCHEMAS["units"].names if c in units.columns]
    units = units.select(*declared, *(c for c in units.columns if c not in declared))
    amps = None
    if amplitudes:
        st = units["spike_times"].to_arrow()
        values = np.random.default_rng(i).normal(
            100.0, 20.0, int(units["spike_times"].list.len().sum())
        )
        flat = pa.LargeListArray.from_arrays(pa.array(np.asarray(st.offsets)), pa.array(values))
        amps = units.select(
            "session_id",
            "unit_id",
            "electrode_group_name",
            "structure",
            pl.Series("spike_amplitudes", pl.from_arrow(flat)),
        )
    rng = np.random.default_rng(1000 + i)
    stim = np.sort(rng.uniform(30, DURATION - 30, n_trials))
    trials = pl.DataFrame(
        {
            "session_id": units["session_id"][0],
            "trial_index": np.arange(n_trials),
            "start_time": stim - 1.5,
            "stop_time": stim + 3.0,
            "stim_start_time": stim,
            "is_catch": rng.random(n_trials) < 0.1,
        }
    )
    return units, amps, waves, trials


def write_nwb(path: Path, units: pl.DataFrame, trials: pl.DataFrame) -> None:
    """Write units (bulk ragged spike_times) and trials with pynwb."""
    from hdmf.common import VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    nwb = NWBFile(
        session_description="benchmark",
        identifier=path.stem,
        session_start_time=dt.datetime(2023, 8, 31, tzinfo=dt.UTC),
    )
    st = units["spike_times"]
    spikes = VectorData(name="spike_times", data=st.explode().to_numpy(), description="s")
    cols: list[Any] = [
        spikes,
        VectorIndex(
            name="spike_times_index", data=np.cumsum(st.list.len().to_numpy()), target=spikes
        ),
    ]
    # no obs_intervals: lazynwb 1.0 rejects the ragged [start, stop] column pynwb writes, and
    # every window of this benchmark lies inside the cache's observation interval anyway
    for name in ("unit_id", "structure"):
        cols.append(VectorData(name=name, data=units[name].to_list(), description=name))
    for name in ("is_qc_pass", "default_qc"):
        cols.append(VectorData(name=name, data=units[name].to_numpy(), description=name))
    nwb.units = Units(name="units", description="units", columns=cols, id=np.arange(units.height))
    add_trials(nwb, trials)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def build(i: int, args: argparse.Namespace, endpoint: str, work: str) -> dict[str, Any]:
    """Generate session `i`, upload its cache files and NWB file; return its truth and needs."""
    import boto3

    from npc_frames.cache import data_path
    from npc_frames.cache_layout import to_parquet_bytes

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    root = f"s3://{BUCKET}/{PREFIX}"
    units, amps, waves, trials = make_session(
        i,
        args.units,
        int(args.spikes),
        args.trials,
        not args.no_amplitudes,
        None if args.no_waveforms else (args.waveform_channels, args.waveform_samples),
        args.waveforms_in_units,
    )
    sid = units["session_id"][0]
    sel = units.filter(pl.col("is_qc_pass") & (pl.col("structure") == STRUCTURE))
    frames = {
        "units": units,
        "spike_amplitudes": amps,
        "unit_waveforms": waves,
        "trials": trials,
    }
    blobs = {
        name: to_parquet_bytes(df, component=name) for name, df in frames.items() if df is not None
    }
    for name, blob in blobs.items():
        key = data_path(root, name, sid).removeprefix(f"s3://{BUCKET}/")
        client.put_object(Bucket=BUCKET, Key=key, Body=blob)
    out = {
        "units": sel.height,
        "spikes": int(sel["spike_times"].list.len().sum()),
        "need_q1": needed_bytes(
            blobs["units"], ["unit_id", "spike_times", "is_qc_pass", "structure"], q1_row_group
        ),
        "need_counts": needed_bytes(
            blobs["units"], ["unit_id", "spike_times", "obs_intervals"], lambda rg, n: True
        )
        + needed_bytes(blobs["trials"], ["trial_index", "stim_start_time"], lambda rg, n: True),
        "nwb": None,
    }
    if not args.no_nwb:
        path = Path(work) / f"{sid}.nwb"
        write_nwb(path, units, trials)
        client.upload_file(str(path), BUCKET, f"nwb/{path.name}")
        path.unlink()
        out["nwb"] = f"s3://{BUCKET}/nwb/{path.name}"
    return out


# ------------------------------------------------------------------------------ measures
def needed_bytes(
    data: bytes, columns: list[str], keep: Callable[[pq.RowGroupMetaData, list[str]], bool]
) -> int:
    """Return footer + column-chunk bytes of `columns` in the row groups `keep` admits."""
    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    names = [md.schema.column(j).path for j in range(md.num_columns)]
    total = md.serialized_size + 8
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        if keep(rg, names):
            total += sum(
                rg.column(j).total_compressed_size
                for j, n in enumerate(names)
                if n.split(".")[0] in columns
            )
    return total


def q1_row_group(rg: pq.RowGroupMetaData, names: list[str]) -> bool:
    """True when the statistics of `rg` admit ``is_qc_pass AND structure == STRUCTURE``."""
    s = rg.column(names.index("structure")).statistics
    q = rg.column(names.index("is_qc_pass")).statistics
    if s is not None and s.has_min_max and not (s.min <= STRUCTURE <= s.max):
        return False
    return not (q is not None and q.has_min_max and not q.max)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(log: Any, fn: Callable[[], Any]) -> tuple[float, float, list[Request], Any]:
    """Return (wall s, CPU s, requests answered, result) of one run of `fn`."""
    log.clear()
    t0, c0 = time.perf_counter(), _cpu()
    out = fn()
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    time.sleep(0.05)  # let the server record the last responses
    return wall, cpu, log.snapshot(), out


def report(name: str, wall: float, cpu: float, reqs: list[Request], needed: int | None) -> None:
    reads = [r for r in reqs if r.method in ("GET", "HEAD")]
    listing = [r for r in reads if not r.key or r.key.endswith("/")]
    per_file = Counter(r.key for r in reads if r not in listing)
    sent = sum(r.bytes_sent for r in reads)
    ratio = f"{sent / needed:6.2f}" if needed else "     -"
    need = f"{needed / 1e6:9.1f}" if needed else f"{'-':>9s}"
    print(
        f"{name:34s} {wall:7.2f} {cpu:7.2f} {len(reads):6d} {len(listing):5d} {len(per_file):6d} "
        f"{max(per_file.values(), default=0):8d} {sent / 1e6:9.1f} {need} {ratio}"
    )


# ---------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--units", type=int, default=2400)
    ap.add_argument("--spikes", type=float, default=7.5e6, help="spikes per session")
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--no-nwb", action="store_true", help="skip lazynwb")
    ap.add_argument(
        "--lazynwb-sessions",
        type=int,
        default=2,
        help="sessions lazynwb counts spikes of (slow over S3; ours is re-run on the same ones)",
    )
    ap.add_argument(
        "--no-amplitudes",
        action="store_true",
        help="no spike_amplitudes component (a sorting without per-spike amplitudes); by default "
        "every unit has them, as real sortings do",
    )
    ap.add_argument(
        "--no-waveforms",
        action="store_true",
        help="no unit_waveforms component (a sorting without templates); by default each unit "
        "has a float32 mean waveform (--waveform-channels x --waveform-samples) in it, as a "
        "sorting's templates give",
    )
    ap.add_argument(
        "--waveforms-in-units",
        action="store_true",
        help="the templates as channels/waveform_mean columns of units (the layout before the "
        "unit_waveforms component), for comparison",
    )
    ap.add_argument("--waveform-channels", type=int, default=32)
    ap.add_argument("--waveform-samples", type=int, default=90)
    ap.add_argument("--work", default=None, help="folder for the NWB files (default: temp)")
    args = ap.parse_args()

    server, endpoint, log = start_server_process()
    atexit.register(server.terminate)
    os.environ.update(aws_environment(endpoint))
    os.environ["AWS_ALLOW_HTTP"] = "true"
    import concurrent.futures as cf
    import multiprocessing
    import tempfile

    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    root = f"s3://{BUCKET}/{PREFIX}"
    work = args.work or tempfile.mkdtemp(prefix="bench_s3_")
    print(
        f"{args.sessions} sessions x {args.units} units x {args.spikes / 1e6:.1f} M spikes, "
        f"{args.trials} trials, "
        f"{'no per-spike amplitudes' if args.no_amplitudes else 'spike_amplitudes beside units'}"
        f", {'no waveforms' if args.no_waveforms else 'waveform_mean '}"
        f"{'in units ' if args.waveforms_in_units and not args.no_waveforms else ''}"
        f"{'' if args.no_waveforms else f'{args.waveform_channels} ch x {args.waveform_samples}'}"
        f"; moto S3 (its own process) at {endpoint}"
    )
    t0 = time.perf_counter()
    # sessions are generated and uploaded by 2 worker processes, before this process imports
    # anything it measures
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        built = list(
            pool.map(
                build,
                range(args.sessions),
                [args] * args.sessions,
                [endpoint] * args.sessions,
                [work] * args.sessions,
            )
        )
    truth_units = sum(b["units"] for b in built)
    truth_spikes = sum(b["spikes"] for b in built)
    need_q1 = sum(b["need_q1"] for b in built)
    need_counts = sum(b["need_counts"] for b in built)
    nwb_urls = [b["nwb"] for b in built if b["nwb"]]
    print(
        f"built and uploaded in {time.perf_counter() - t0:.0f} s; Q1 truth: {truth_units} units, "
        f"{truth_spikes / 1e6:.2f} M spikes\n"
    )
    import npc_frames as nf
    from npc_frames.cache.remote import FOOTERS

    head = (
        f"{'query':34s} {'wall s':>7s} {'CPU s':>7s} {'reqs':>6s} {'lists':>5s} {'files':>6s} "
        f"{'max/file':>8s} {'MB sent':>9s} {'MB needed':>9s} {'ratio':>6s}"
    )
    print(head)
    print("-" * len(head))

    def q1() -> pl.DataFrame:
        return (
            nf.scan_units(cache=root)
            .filter(pl.col("is_qc_pass") & (pl.col("structure") == STRUCTURE))
            .select("unit_id", "spike_times")
            .collect()
        )

    FOOTERS.clear()
    for label in ("cold", "warm"):
        wall, cpu, reqs, out = measure(log, q1)
        assert out.height == truth_units, out.height
        assert int(out["spike_times"].list.len().sum()) == truth_spikes
        report(f"Q1 nf.scan_units ({label})", wall, cpu, reqs, need_q1)

    def q1_polars() -> pl.DataFrame:
        from npc_frames.storage import polars_storage_options

        return (
            pl.scan_parquet(
                f"{root}/units/session_id=*/data.parquet",
                hive_partitioning=True,
                storage_options=polars_storage_options(root),
            )
            .filter(pl.col("is_qc_pass") & (pl.col("structure") == STRUCTURE))
            .select("unit_id", "spike_times")
            .collect()
        )

    wall, cpu, reqs, out = measure(log, q1_polars)
    assert out.height == truth_units
    report("Q1 pl.scan_parquet (Polars' S3)", wall, cpu, reqs, need_q1)

    def q1_sql() -> pl.DataFrame:
        return nf.sql(
            "SELECT unit_id, spike_times FROM units WHERE is_qc_pass AND structure = ?",
            cache=root,
            params=[STRUCTURE],
        )

    FOOTERS.clear()
    for label in ("cold", "warm"):
        wall, cpu, reqs, out = measure(log, q1_sql)
        assert out.height == truth_units, out.height
        assert int(out["spike_times"].list.len().sum()) == truth_spikes
        report(f"Q1 nf.sql ({label})", wall, cpu, reqs, need_q1)

    def counts() -> pl.DataFrame:
        return nf.spike_counts(
            nf.scan_units(cache=root), nf.scan_trials(cache=root), windows=WINDOWS
        )

    FOOTERS.clear()
    n_rows = args.sessions * args.units * args.trials * len(WINDOWS)
    for label in ("cold", "warm"):
        wall, cpu, reqs, ours = measure(log, counts)
        assert ours.height == n_rows, ours.height
        report(f"counts nf.spike_counts ({label})", wall, cpu, reqs, need_counts)

    if nwb_urls:
        import lazynwb

        # remfile (lazynwb's default) would rewrite s3:// to https://<bucket>.s3.amazonaws.com:
        # read through obstore instead, which takes AWS_ENDPOINT_URL and AWS_ALLOW_HTTP (above)
        lazynwb.config.use_remfile = False
        lazynwb.config.use_obstore = True

        def q1_lazynwb() -> pl.DataFrame:
            return (
                lazynwb.scan_nwb(nwb_urls, "/units", disable_progress=True)
                .filter(pl.col("is_qc_pass") & (pl.col("structure") == STRUCTURE))
                .select("unit_id", "spike_times")
                .collect()
            )

        try:
            wall, cpu, reqs, out = measure(log, q1_lazynwb)
            assert out.height == truth_units, out.height
            report("Q1 lazynwb.scan_nwb", wall, cpu, reqs, None)
        except Exception as exc:  # report and keep the rest
            print(f"Q1 lazynwb failed: {type(exc).__name__}: {exc}")

        # lazynwb's counting is slow over S3: it runs on the first --lazynwb-sessions sessions,
        # side by side with ours on the same sessions
        few = nwb_urls[: args.lazynwb_sessions]
        few_ids = [Path(u).stem for u in few]

        def counts_few() -> pl.DataFrame:
            units = nf.scan_units(cache=root).filter(pl.col("session_id").is_in(few_ids))
            trials = nf.scan_trials(cache=root).filter(pl.col("session_id").is_in(few_ids))
            return nf.spike_counts(units, trials, windows=WINDOWS)

        def counts_lazynwb() -> pl.DataFrame:
            units = (
                lazynwb.scan_nwb(few, "/units", disable_progress=True)
                .select("unit_id", "_nwb_path", "_table_path", "_table_index")
                .collect()
            )
            intervals = {
                name: (pl.col(event) + a, pl.col(event) + b)
                for name, (event, a, b) in WINDOWS.items()
            }
            return lazynwb.get_spike_times_in_intervals(
                units,
                intervals=intervals,
                intervals_df="/intervals/trials",
                as_counts=True,
                apply_obs_intervals=False,  # the NWB files have none (see write_nwb)
                disable_progress=True,
                as_polars=True,
                use_process_pool=False,
            )

        try:
            wall, cpu, reqs, ours = measure(log, counts_few)
            report(f"counts nf, {len(few)} sessions (warm)", wall, cpu, reqs, None)
            wall, cpu, reqs, theirs = measure(log, counts_lazynwb)
            report(f"counts lazynwb, {len(few)} sessions", wall, cpu, reqs, None)
            total = int(ours["count"].sum())
            theirs_total = int(sum(theirs[w].sum() for w in WINDOWS))
            print(f"{'':34s} counts total: ours {total}, lazynwb {theirs_total}")
            assert total == theirs_total
        except Exception as exc:  # report and keep the rest
            if os.environ.get("BENCH_DEBUG"):
                raise
            print(f"counts lazynwb failed: {type(exc).__name__}: {exc}")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        "\nreqs: GET+HEAD requests answered by the server (listings included); files: objects "
        "touched; max/file: requests on the busiest object;\nMB sent: response bodies; MB "
        "needed: footers + column chunks of the row groups the query needs (Parquet metadata)."
        "\nCPU s: this process only (the server runs in its own); "
        f"peak RSS of this process {peak:.0f} MB"
    )
    server.terminate()
    server.wait()


if __name__ == "__main__":
    main()
