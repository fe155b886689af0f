"""The ``npc-frames`` command: each subcommand lives in ``npc_frames.commands.<name>``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommands in help order; a module that is absent (optional extra missing) is skipped.
SUBCOMMANDS = ("demo", "synth", "convert", "sql", "info", "nwb", "plot", "qc")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``npc-frames`` command with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="npc-frames",
        description=(
            "Turn Mindscope Neuropixels Dynamic Routing sessions into Polars frames, keep them in a "
            "partitioned Parquet cache, query across sessions with DuckDB, and export NWB."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"npc_frames.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("npc_frames.commands"):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Return the exit status of running the ``npc-frames`` command with `argv`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from npc_frames.errors import NpcFramesError

    try:
        return int(args.func(args) or 0)
    except NpcFramesError as exc:
        print(f"npc-frames: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
