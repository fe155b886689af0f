"""``npc-frames info``: what the cache holds — sessions, components, rows, failures, versions."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``info`` subcommand to `subparsers`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "info",
        help="summarise the cache catalog",
        description="Sessions, components, row counts, failures with reasons, versions.",
    )
    p.add_argument("--cache", help="cache root (default: $NPC_FRAMES_CACHE or ./npc_frames_cache)")
    p.set_defaults(func=run)


def summary(cache: str | None = None) -> str:
    """Return the human-readable summary of the cache catalog printed by ``info``."""
    import polars as pl

    from npc_frames.cache import cache_root, read_catalog

    root = cache_root(cache)
    cat = read_catalog(root)
    lines = [f"cache: {root!s}"]
    if cat.is_empty():
        lines.append("empty: no session converted yet")
        return "\n".join(lines)
    lines.append(
        f"{cat['session_id'].n_unique()} sessions, {cat['component'].n_unique()} components, "
        f"last written {cat['written_at'].max()!s}"
    )
    versions = cat.group_by("library_version", "schema_version").len().sort("len", descending=True)
    lines.append(
        "versions: "
        + ", ".join(
            f"npc_frames {r['library_version']} / schema {r['schema_version']} ({r['len']} rows)"
            for r in versions.iter_rows(named=True)
        )
    )
    from npc_frames.cache import STATUSES

    comp = cat.filter(pl.col("part").is_null())
    per = (
        comp.group_by("component")
        .agg(
            pl.col("session_id").n_unique().alias("sessions"),
            *[(pl.col("status") == s).sum().alias(s) for s in STATUSES],
            pl.col("rows").sum().alias("rows"),
        )
        .sort("component")
    )
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        lines.append(str(per))
    totals = comp.group_by("status").len()
    lines.append(
        "statuses: "
        + ", ".join(
            f"{n} {s}"
            for s in STATUSES
            for n in totals.filter(pl.col("status") == s)["len"].to_list() or [0]
        )
    )
    failed = cat.filter(pl.col("status").is_in(["partial", "failed"])).sort(
        "session_id", "component", "part", nulls_last=False
    )
    if failed.height:
        lines.append(f"partial and failed ({failed.height}, parts indented):")
        lines.extend(
            f"  {'  ' + r['part'] + ' ' if r['part'] else ''}{r['session_id']} {r['component']} "
            f"{r['status']}: {r['error']}"
            for r in failed.iter_rows(named=True)
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``info``; return 0."""
    print(summary(args.cache))
    return 0
