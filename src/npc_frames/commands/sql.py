"""``npc-frames sql``: run a DuckDB query over the cache and print or save the result."""

from __future__ import annotations

import argparse
import sys
from typing import Any

FORMATS = ("table", "csv", "json", "parquet")


def register(subparsers: Any) -> None:
    """Add the ``sql`` subcommand to `subparsers`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sql",
        help="query the cache with DuckDB SQL",
        description=(
            "Run a DuckDB query; every component is a view (trials, units, …), plus a long "
            "spike_times view (session_id, unit_id, spike_time) and the catalog. SHOW TABLES lists "
            "them; DESCRIBE <view> and information_schema.columns show each column's description "
            "(also `npc-frames describe`). " + READ_ONLY_RULES
        ),
    )
    p.add_argument(
        "query", help='e.g. "SELECT session_id, avg(is_hit::int) FROM trials GROUP BY 1"'
    )
    p.add_argument("--cache", help="cache root (default: $NPC_FRAMES_CACHE or ./npc_frames_cache)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.add_argument("--output", help="write to FILE instead of stdout (required for parquet)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="VALUE",
        help="value bound to the next ? placeholder (repeatable; bound, never formatted in)",
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="allow any statements (read_only=False): run on a private connection",
    )
    p.set_defaults(func=run)


#: what ``npc-frames sql`` allows (the rules of ``npc_frames.sql``; kept here so that building
#: the parser imports no heavy module — a test checks the two texts agree)
READ_ONLY_RULES = (
    "Read-only queries (the default) are exactly one statement of DuckDB type SELECT — which "
    "includes WITH, FROM-first, VALUES, SHOW, DESCRIBE and SUMMARIZE — or EXPLAIN [ANALYZE] of "
    "one, or a read-only PRAGMA (table_info, show_tables, show, database_size, version, …). "
    "Writes (CREATE, INSERT, COPY … TO, ATTACH, SET, …) and several statements in one query are "
    "refused unless --write, which runs the query on a private connection that is closed "
    "afterwards."
)


def run(args: argparse.Namespace) -> int:
    """Run ``sql``; return 0 on success."""
    import polars as pl

    from npc_frames.cache import sql
    from npc_frames.errors import ParameterError

    df = sql(args.query, args.cache, params=args.param or None, read_only=not args.write)
    fmt = args.format
    if fmt == "parquet":
        if not args.output:
            raise ParameterError(
                "--format parquet needs --output FILE", field="--output", expected="a file path"
            )
        df.write_parquet(args.output)
        return 0
    if fmt == "csv":
        text = df.write_csv()
    elif fmt == "json":
        text = df.write_json()
    else:
        with pl.Config(tbl_rows=-1 if df.height <= 200 else 40, tbl_cols=-1, fmt_str_lengths=60):
            text = str(df)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
