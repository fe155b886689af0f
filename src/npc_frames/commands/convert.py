"""``npc-frames convert``: raw session folders (or a manifest) -> the Parquet cache."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``convert`` subcommand to `subparsers`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "convert",
        help="convert raw sessions into the Parquet cache",
        description=(
            "Compute every component of every raw session (local folders or s3:// URLs) and write "
            "them to the cache, skipping sessions whose inputs and schema version are unchanged."
        ),
    )
    p.add_argument("raw", nargs="*", help="raw session folders or s3:// URLs")
    p.add_argument("--cache", help="cache root (default: $NPC_FRAMES_CACHE or ./npc_frames_cache)")
    p.add_argument("--workers", type=int, help="local worker processes (default: cores/memory)")
    p.add_argument("--scheduler", help="dask.distributed scheduler address, e.g. tcp://host:8786")
    p.add_argument("--overwrite", action="store_true", help="recompute even if unchanged")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar or summary (failures still shown)"
    )
    p.add_argument("--manifest", help="tracked-sessions YAML/JSON (session id -> raw path, notes…)")
    p.add_argument(
        "--components", help="comma-separated subset of components (default: all)", default=None
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``convert``; return 0 when nothing is partial or failed, else 1."""
    import concurrent.futures as cf

    from npc_frames.cache import cache_root, convert
    from npc_frames.errors import ParameterError

    if not args.raw and not args.manifest:
        raise ParameterError(
            "nothing to convert", field="raw", expected="raw session paths or --manifest FILE"
        )
    if args.workers is not None and args.workers < 1:
        raise ParameterError("--workers must be >= 1", field="--workers", expected=">= 1")
    executor: cf.Executor | None = None
    client: Any = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
        executor = client.get_executor()
    components = args.components.split(",") if args.components else None
    progress = False if args.quiet else None
    try:
        result = convert(
            args.raw,
            args.cache,
            executor=executor,
            workers=args.workers,
            components=components,
            overwrite=args.overwrite,
            manifest=args.manifest,
            progress=progress,
        )
    finally:
        if client is not None:
            client.close()
    bad = result.filter(result["status"].is_in(["failed", "partial"]))
    ignored = result.filter(result["status"] == "ignored")
    if not args.quiet:
        comp = result.filter(result["part"].is_null())
        written = comp.filter(~comp["skipped"] & ~comp["status"].is_in(["failed", "ignored"]))
        skipped = comp.filter(comp["skipped"]).height
        counts = ", ".join(
            f"{n} {s}" for s, n in comp.group_by("status").len().sort("status").iter_rows()
        )
        print(
            f"{comp['session_id'].drop_nulls().n_unique()} sessions -> {cache_root(args.cache)}: "
            f"{written.height} written, {skipped} unchanged ({counts})",
            file=sys.stderr,
        )
        for r in ignored.iter_rows(named=True):
            print(f"  ignored (not a session folder): {r['raw_path']}", file=sys.stderr)
    # failures are printed even with --quiet: a silent non-zero exit would hide what to fix
    for r in bad.iter_rows(named=True):
        part = f"/{r['part']}" if r["part"] else ""
        print(
            f"  {r['session_id'] or r['raw_path']} {r['component']}{part} {r['status']}: "
            f"{r['error']}",
            file=sys.stderr,
        )
    return 1 if bad.height else 0
