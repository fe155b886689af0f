"""``npc-frames sql``: run a DuckDB query over the cache and print or save the result."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import polars as pl

from npc_frames.commands._common import CACHE_HELP, existing_cache

OUTPUT_FORMATS = ("table", "csv", "json", "parquet")


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
    p.add_argument("--cache", help=CACHE_HELP)
    p.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default="table",
        help="output format: table (wide results truncated, the rest named), csv (list cells as "
        "JSON), json, parquet (needs --output)",
    )
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

#: widest cell text shown in table output (longer strings end in "…")
CELL_CHARS = 40
#: rows shown in table output when the result is long (all rows up to LONG_RESULT)
SHOWN_ROWS, LONG_RESULT = 40, 200


def run(args: argparse.Namespace) -> int:
    """Run ``sql``; return 0 on success."""
    from npc_frames.cache import sql
    from npc_frames.errors import ParameterError

    fmt = args.format
    if fmt == "parquet" and not args.output:
        raise ParameterError(
            "--format parquet needs --output FILE", field="--output", expected="a file path"
        )
    df = sql(
        args.query,
        existing_cache(args.cache),
        params=args.param or None,
        read_only=not args.write,
    )
    if fmt == "parquet":
        df.write_parquet(args.output)
        return 0
    if fmt == "csv":
        text = csv_text(df)
    elif fmt == "json":
        text = df.write_json()
    else:
        text = table_text(df, width=_terminal_width())
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _terminal_width() -> int:
    import shutil

    return max(60, shutil.get_terminal_size((120, 24)).columns)


def csv_text(df: pl.DataFrame) -> str:
    """Return `df` as CSV; list, array and struct cells are JSON text (``[1.5, 2.0]``).

    A null nested cell is an empty field, like any other null.
    """
    nested = [c for c, t in df.schema.items() if isinstance(t, pl.List | pl.Array | pl.Struct)]
    if nested:
        df = df.with_columns(_json_cells(c) for c in nested)
    return df.write_csv()


def _json_cells(name: str) -> pl.Expr:
    """Return an expression encoding each cell of column `name` as JSON text (vectorized)."""
    import json

    # json_encode of a one-field struct gives {"name":<value>}; keep <value>
    prefix = len(json.dumps(name)) + 2
    encoded = pl.struct(pl.col(name)).struct.json_encode()
    return (
        pl.when(pl.col(name).is_null())
        .then(None)
        .otherwise(encoded.str.slice(prefix, encoded.str.len_bytes() - prefix - 1))
        .alias(name)
    )


def table_text(df: pl.DataFrame, *, width: int = 120) -> str:
    """Return `df` as a text table that fits `width` characters.

    Columns are shown from the left while they fit; the others are named on a last line,
    "N more columns: …", so a wide component (trials has 62 columns) stays readable.
    """
    shown: list[str] = []
    used = 1
    for name in df.columns:
        col_width = _column_width(df, name) + 3  # "│ x " borders and padding
        if shown and used + col_width > width:
            break
        shown.append(name)
        used += col_width
    rest = [c for c in df.columns if c not in shown]
    rows = -1 if df.height <= LONG_RESULT else SHOWN_ROWS
    with pl.Config(
        tbl_rows=rows, tbl_cols=-1, fmt_str_lengths=CELL_CHARS, tbl_width_chars=max(width, used)
    ):
        text = str(df.select(shown))
    if rest:
        names = ", ".join(rest)
        line = f"{len(rest)} more column{'s' if len(rest) > 1 else ''}: {names}"
        if len(line) > width:
            line = line[: width - 1] + "…"
        text += f"\n{line}\n(select fewer columns, or use --format csv/json for all of them)"
    return text


def _column_width(df: pl.DataFrame, name: str) -> int:
    """Return the display width of column `name`: header, dtype, or its widest shown cell."""
    head = df.get_column(name).head(LONG_RESULT)
    if isinstance(head.dtype, pl.List | pl.Array | pl.Struct):
        cells = CELL_CHARS
    else:
        longest = head.cast(pl.String, strict=False).str.len_chars().max()
        cells = min(CELL_CHARS + 1, int(longest) if isinstance(longest, int) else 4)
    return max(len(name), len(str(df.schema[name])), cells)
