"""``npc-frames convert``: raw session folders (or a manifest) -> the Parquet cache."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from npc_frames.commands._common import CACHE_HELP


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
    p.add_argument("--cache", help=CACHE_HELP)
    p.add_argument("--workers", type=int, help="local worker processes (default: cores/memory)")
    p.add_argument("--scheduler", help="dask.distributed scheduler address, e.g. tcp://host:8786")
    p.add_argument("--overwrite", action="store_true", help="recompute even if unchanged")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar or summary (failures are still printed to stderr)",
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
    # partial components lost data too: they count as failures for the exit status
    failed = result.filter(result["status"].is_in(["failed", "partial"]))
    if not args.quiet:
        written = result.filter(~result["skipped"] & (result["status"] != "failed")).height
        skipped = result.filter(result["skipped"]).height
        print(
            f"{result['session_id'].n_unique()} sessions -> {cache_root(args.cache)}: "
            f"{written} written, {skipped} unchanged, {failed.height} failed",
            file=sys.stderr,
        )
    # failures are printed even with --quiet: quiet hides progress, never what went wrong
    for r in failed.iter_rows(named=True):
        print(
            f"npc-frames: failed: {r['session_id'] or r['raw_path']} {r['component']}: "
            f"{' '.join(str(r['error']).split())}",
            file=sys.stderr,
        )
    return 1 if failed.height else 0
