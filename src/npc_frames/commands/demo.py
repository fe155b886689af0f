"""``npc-frames demo``: the whole pipeline on synthetic data in under two minutes.

Generates three small synthetic sessions (raw files as the rigs write them), converts them into a
local Parquet cache, prints a cross-session DuckDB query (hit rate by rewarded modality per
session), writes one session as NWB and validates it, draws figures when ``npc_frames.plot`` is
available, and prints where everything went.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import time
from pathlib import Path
from typing import Any

#: three sessions of different subjects and dates: (seed, minutes, probes, units per probe, opto)
DEMO_SESSIONS: tuple[tuple[int, float, int, int, bool], ...] = (
    (21, 4.0, 2, 8, True),
    (22, 3.0, 1, 8, False),
    (23, 3.0, 1, 8, False),
)
DEMO_DATE = datetime.date(2023, 9, 4)
#: the folders the demo writes (and replaces on a re-run) inside --out
DEMO_SUBFOLDERS = ("raw", "cache", "nwb", "figures")
#: file the demo writes into --out: only a folder holding it may be cleaned by a re-run
MARKER = ".npc_frames_demo"

#: hit rate (go trials) and false-alarm rate (nogo trials) by rewarded modality per session
HIT_RATE_SQL = """
SELECT session_id,
       rewarded_modality,
       count(*)                                                AS n_trials,
       round(avg(is_hit::INT) FILTER (WHERE is_go), 3)         AS hit_rate,
       round(avg(is_false_alarm::INT) FILTER (WHERE is_nogo), 3) AS false_alarm_rate
FROM trials
GROUP BY session_id, rewarded_modality
ORDER BY session_id, rewarded_modality
"""


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand to `subparsers`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on 3 synthetic sessions (< 2 min)",
        description=(
            "Generate 3 synthetic raw sessions, convert them into a local cache, query across "
            "sessions with DuckDB, write and validate one session's NWB, and draw figures."
        ),
    )
    p.add_argument(
        "--out",
        default="npc_frames_demo",
        help="output folder (default: ./npc_frames_demo); must be new, empty, or an earlier demo's",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the output of an earlier demo in --out (default: replace it)",
    )
    p.set_defaults(func=run)


def prepare_out(out: Path, *, keep: bool = False) -> Path:
    """Return the resolved demo folder, created (with its marker file) or emptied of old output.

    A folder the demo did not create is never touched: an existing, non-empty folder without the
    :data:`MARKER` file raises ParameterError. In a folder the demo created, the previous
    output folders are deleted unless `keep`.
    """
    from npc_frames.errors import ParameterError

    out = out.resolve()
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise ParameterError(
            "the demo output path is a file", field="--out", expected=f"a folder, not {out}"
        )
    if out.exists() and any(out.iterdir()) and not marker.is_file():
        raise ParameterError(
            f"{out} is not empty and was not created by `npc-frames demo` (no {MARKER} file); "
            "nothing was deleted",
            field="--out",
            expected="a new or empty folder, or one an earlier demo created",
        )
    if marker.is_file() and not keep:
        for name in DEMO_SUBFOLDERS:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        "This folder was created by `npc-frames demo`; running the demo again with the same "
        f"--out replaces its {', '.join(DEMO_SUBFOLDERS)} folders.\n"
    )
    return out


def _step(message: str) -> float:
    print(f"==> {message}", flush=True)
    return time.perf_counter()


def _done(t0: float, detail: str = "") -> None:
    print(f"    done in {time.perf_counter() - t0:.1f} s{(': ' + detail) if detail else ''}")


def run(args: argparse.Namespace) -> int:
    """Run the demo; return 0 on success, 1 if the NWB file failed validation."""
    import warnings

    import polars as pl

    from npc_frames import cache as cache_mod
    from npc_frames.nwb import validate_nwb, write_nwb
    from npc_frames.synth import make_session

    warnings.filterwarnings("ignore", message=".*ndx-events.*")
    start = time.perf_counter()
    out = prepare_out(Path(args.out), keep=args.keep)
    raw_dir, cache_dir, nwb_dir, fig_dir = (out / n for n in DEMO_SUBFOLDERS)

    t0 = _step(f"generating {len(DEMO_SESSIONS)} synthetic sessions in {raw_dir}")
    truths = []
    for i, (seed, minutes, probes, units, opto) in enumerate(DEMO_SESSIONS):
        truths.append(
            make_session(
                raw_dir,
                seed=seed,
                minutes=minutes,
                n_probes=probes,
                units_per_probe=units,
                opto=opto,
                date=DEMO_DATE + datetime.timedelta(days=i),
            )
        )
        print(
            f"    {truths[-1].session_id}: {minutes:g} min, {probes} probe(s), {units} units/probe"
        )
    _done(t0)

    t0 = _step(f"converting into the cache {cache_dir}")
    # in this process, one session at a time: for three small sessions a process pool's start-up
    # (each worker re-imports the stack) costs more than the conversion itself
    catalog = pl.concat(
        [cache_mod.convert([t.raw_path], cache_dir, progress=False) for t in truths],
        how="diagonal_relaxed",
    )
    counts = catalog.group_by("status").len().sort("status")
    _done(t0, ", ".join(f"{n} {s}" for s, n in counts.iter_rows()))
    failed = catalog.filter(pl.col("status") == "failed")
    for row in failed.iter_rows(named=True):
        print(f"    failed: {row['session_id']} {row['component']}: {row['error']}")

    _step("cross-session query (DuckDB): hit rate by rewarded modality per session")
    print(f"    npc-frames sql --cache {cache_dir} {' '.join(HIT_RATE_SQL.split())!r}")
    table = cache_mod.sql(HIT_RATE_SQL, cache_dir)
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(table)

    session_id = str(truths[0].session_id)
    nwb_path = nwb_dir / f"{session_id}.nwb"
    t0 = _step(f"writing NWB of {session_id}")
    write_nwb(session_id, nwb_path, cache=cache_dir)
    _done(t0, f"{nwb_path} ({nwb_path.stat().st_size / 1e6:.1f} MB)")
    t0 = _step("validating the NWB file (pynwb)")
    errors = validate_nwb(nwb_path)
    _done(t0, "valid" if not errors else f"{len(errors)} errors")
    for e in errors:
        print(f"    {e}", file=sys.stderr)

    figures = _figures(session_id, cache_dir, fig_dir)

    print()
    print(f"everything is under {out}:")
    print(f"  raw sessions   {raw_dir}")
    print(f"  cache          {cache_dir}   (try: npc-frames info --cache {cache_dir})")
    print(f"  NWB            {nwb_path}")
    for f in figures:
        print(f"  figure         {f}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return 1 if errors else 0


def _figures(session_id: str, cache_dir: Path, fig_dir: Path) -> list[str]:
    """Return the paths of the figures drawn (none if ``npc_frames.plot`` is unavailable)."""
    try:
        from npc_frames import plot
    except ImportError:
        return []
    import polars as pl

    from npc_frames import cache as cache_mod

    t0 = _step("drawing figures (npc_frames.plot)")
    paths: list[str] = []
    try:
        fig = plot.session_summary(session_id, cache=cache_dir)
        paths.append(plot.save(fig, fig_dir / f"{session_id}_summary.png"))
        units = cache_mod.scan("units", cache_dir).filter(pl.col("session_id") == session_id)
        trials = cache_mod.scan("trials", cache_dir).filter(pl.col("session_id") == session_id)
        # show the unit whose rate rises most after stimulus onset (nf.spike_counts)
        from npc_frames.analysis import spike_counts

        counts = spike_counts(
            units,
            trials,
            windows={
                "baseline": ("stim_start_time", -0.5, 0.0),
                "response": ("stim_start_time", 0.0, 0.2),
            },
        )
        best = (
            counts.with_columns(
                rate=pl.col("count")
                / pl.when(pl.col("window") == "baseline").then(0.5).otherwise(0.2)
            )
            .group_by("unit_id", "window")
            .agg(pl.col("rate").mean())
            .pivot(on="window", index="unit_id", values="rate")
            .with_columns(gain=pl.col("response") - pl.col("baseline"))
            .sort("gain", descending=True, nulls_last=True)
        )
        if best.height:
            unit_id = str(best["unit_id"][0])
            fig = plot.raster_psth(units, trials, unit_id)
            paths.append(plot.save(fig, fig_dir / f"{unit_id}_raster.png"))
    except Exception as exc:  # figures are a bonus: report, never fail the demo
        print(f"    figures skipped: {type(exc).__name__}: {exc}")
    _done(t0, f"{len(paths)} figures")
    return paths
