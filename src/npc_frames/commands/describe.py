"""``npc-frames describe``: the columns of every component (or one): dtype, unit, description."""

from __future__ import annotations

import argparse
import sys
from typing import Any

FORMATS = ("table", "csv", "json")


def register(subparsers: Any) -> None:
    """Add the ``describe`` subcommand to `subparsers`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "describe",
        help="list the columns of the components: dtype, unit, description",
        description=(
            "List each column of a component (all components without COMPONENT): dtype, unit, "
            "whether it may be null, and its description — the schema the cache, the SQL views "
            "and the NWB files carry."
        ),
    )
    p.add_argument("component", nargs="?", help="one component, e.g. trials (default: all)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``describe``; return 0 on success."""
    import polars as pl

    from npc_frames.schemas import describe

    df = describe(args.component)
    if args.format == "csv":
        text = df.write_csv()
    elif args.format == "json":
        text = df.write_json()
    else:
        cols = ["column", "dtype", "unit", "nullable", "description"]
        if args.component is None:
            cols.insert(0, "component")
        with pl.Config(
            tbl_rows=-1,
            tbl_cols=-1,
            fmt_str_lengths=100,
            tbl_width_chars=200,
            tbl_hide_dataframe_shape=True,
            tbl_hide_column_data_types=True,
            tbl_formatting="ASCII_MARKDOWN",
        ):
            text = str(df.with_columns(pl.col("unit").fill_null("")).select(cols))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
