"""``npc-frames info``: what the cache holds — sessions, components, rows, failures, versions."""

from __future__ import annotations

import argparse
import json
from typing import Any

import polars as pl

from npc_frames.commands._common import CACHE_HELP, existing_cache

#: statuses of a component that hold everything there is (or legitimately nothing)
COMPLETE = ("ok", "empty", "absent")


def register(subparsers: Any) -> None:
    """Add the ``info`` subcommand to `subparsers`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "info",
        help="summarise the cache catalog: sessions and their status, components, failures",
        description=(
            "Sessions with their status (ok when every component is ok, empty or absent; else the "
            "worst status of a component: failed, partial, …), components with row counts, "
            "failures with reasons, versions. Exits 1 when the cache does not exist."
        ),
    )
    p.add_argument("--cache", help=CACHE_HELP)
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table (for reading) or json (for scripts)",
    )
    p.set_defaults(func=run)


def sessions_frame(catalog: pl.DataFrame) -> pl.DataFrame:
    """Return one row per session: status, component counts by status, rows, raw path.

    A session's status is ``ok`` when every component is complete (ok, empty, absent); else
    ``failed`` if any component failed, else the first other status in alphabetical order
    (``partial``, or one a newer cache introduces).
    """
    status = pl.col("status").cast(pl.String).str.to_lowercase()
    incomplete = status.filter(~status.is_in(COMPLETE))
    return (
        catalog.group_by("session_id")
        .agg(
            pl.when((status == "failed").any())
            .then(pl.lit("failed"))
            .when(incomplete.len() > 0)
            .then(incomplete.sort().first())
            .otherwise(pl.lit("ok"))
            .alias("status"),
            pl.len().alias("components"),
            (status == "ok").sum().alias("ok"),
            status.is_in(["empty", "absent"]).sum().alias("empty"),
            (~status.is_in(COMPLETE)).sum().alias("incomplete"),
            pl.col("rows").sum().alias("rows"),
            pl.col("raw_path").drop_nulls().last().alias("raw_path"),
        )
        .sort("session_id")
    )


def _components_frame(catalog: pl.DataFrame) -> pl.DataFrame:
    status = pl.col("status").cast(pl.String).str.to_lowercase()
    return (
        catalog.group_by("component")
        .agg(
            pl.col("session_id").n_unique().alias("sessions"),
            (status == "ok").sum().alias("ok"),
            status.is_in(["empty", "absent"]).sum().alias("empty"),
            (status == "partial").sum().alias("partial"),
            (status == "failed").sum().alias("failed"),
            pl.col("rows").sum().alias("rows"),
        )
        .sort("component")
    )


def _problems(catalog: pl.DataFrame) -> pl.DataFrame:
    status = pl.col("status").cast(pl.String).str.to_lowercase()
    return catalog.filter(~status.is_in(COMPLETE)).sort("session_id", "component")


def summary(cache: str | None = None) -> str:
    """Return the human-readable summary of the cache catalog printed by ``info``."""
    from npc_frames.cache import read_catalog

    root = existing_cache(cache)
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
    with pl.Config(
        tbl_rows=-1,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        fmt_str_lengths=80,
        tbl_width_chars=160,
    ):
        lines.append("sessions:")
        lines.append(str(sessions_frame(cat).drop("raw_path")))
        lines.append("components:")
        lines.append(str(_components_frame(cat)))
    problems = _problems(cat)
    failed = problems.filter(pl.col("status") == "failed")
    if failed.height:
        lines.append(f"failures ({failed.height}):")
        lines.extend(
            f"  {r['session_id']} {r['component']}: {r['error']}"
            for r in failed.iter_rows(named=True)
        )
    other = problems.filter(pl.col("status") != "failed")
    if other.height:
        lines.append(f"incomplete ({other.height}):")
        lines.extend(
            f"  {r['session_id']} {r['component']} ({r['status']}): {r['error'] or ''}".rstrip()
            for r in other.iter_rows(named=True)
        )
    return "\n".join(lines)


def summary_json(cache: str | None = None) -> dict[str, Any]:
    """Return the cache summary as JSON-ready data: cache, sessions, components, problems."""
    from npc_frames.cache import read_catalog

    root = existing_cache(cache)
    cat = read_catalog(root)
    return {
        "cache": root,
        "sessions": sessions_frame(cat).to_dicts(),
        "components": _components_frame(cat).to_dicts(),
        "problems": _problems(cat).select("session_id", "component", "status", "error").to_dicts(),
    }


def run(args: argparse.Namespace) -> int:
    """Run ``info``; return 0 (a cache that does not exist raises CacheError: exit 1)."""
    if args.format == "json":
        print(json.dumps(summary_json(args.cache), indent=1, default=str))
    else:
        print(summary(args.cache))
    return 0
