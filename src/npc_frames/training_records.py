"""Training records: the lab's per-subject training log, read as one long Polars table.

The log is a spreadsheet with one sheet per subject (one row per training session) and an
``all_mice`` sheet (genotype etc.); the lab also keeps SQLite copies with one table per sheet. Column
names are slugified (lower case, ``d'`` -> ``dprime``, other non-word characters removed, spaces and
hyphens -> ``_``). See docs/formats.md, "Training records".

Accepted files:

* SQLite (``.sqlite``/``.db``): one table per subject named by the subject id, optional ``all_mice``
  table (``mouse_id``, ``genotype``); or one long table with a ``subject_id`` column.
* CSV or Parquet: one long table with ``subject_id`` (or ``mouse_id``) and the per-session columns,
  optionally ``genotype``.

A row's ``id`` is its 1-based row number in the subject's sheet (the SQLite ``ID``; for a long table
without ``id``, the row number within the subject in file order). Rows with ``ignore = 1`` or an
empty ``start_time`` are dropped after numbering.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import sqlite3
from typing import Any

import numpy as np
import polars as pl

from npc_frames.errors import BadFormatError, MissingFileError

logger = logging.getLogger(__name__)

__all__ = [
    "behavior_day",
    "read_training_records",
    "stage_5_passed",
    "subject_genotype",
    "subject_rows",
]

#: per-block d' threshold and the number of blocks that must exceed it, per session, for the
#: stage-5 passing criterion (two consecutive stage-5 sessions must both meet it)
STAGE5_DPRIME = 1.5
STAGE5_MIN_BLOCKS = 3  # "more than 3"

_STR_COLS = (
    "start_time",
    "rig_name",
    "task_version",
    "dprime_same_modality",
    "dprime_other_modality_go_stim",
    "genotype",
)


def _slug(name: str) -> str:
    s = str(name).strip().lower().replace("d'", "dprime")
    s = re.sub(r"[\s\-]+", "_", s)
    return re.sub(r"[^\w]", "", s)


def _normalize(df: pl.DataFrame, path: str, subject: int | None = None) -> pl.DataFrame:
    df = df.rename({c: _slug(c) for c in df.columns})
    if "subject_id" not in df.columns and "mouse_id" in df.columns:
        df = df.rename({"mouse_id": "subject_id"})
    if subject is not None:
        df = df.with_columns(pl.lit(subject, dtype=pl.Int64).alias("subject_id"))
    if "subject_id" not in df.columns:
        raise BadFormatError(
            "training records have no subject column",
            path=path,
            field="subject_id",
            expected="a subject_id (or mouse_id) column, or SQLite tables named by subject id",
        )
    if "start_time" not in df.columns:
        raise BadFormatError(
            "training records have no start time column",
            path=path,
            field="start_time",
            expected="a 'start time' column (date and time of each training session)",
        )
    df = df.with_columns(pl.col("subject_id").cast(pl.String).str.strip_chars().cast(pl.Int64))
    if "id" not in df.columns:
        df = df.with_columns(pl.int_range(1, pl.len() + 1).over("subject_id").alias("id"))
    for c in _STR_COLS:
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(c))
        else:
            df = df.with_columns(pl.col(c).cast(pl.String))
    ignore = (
        pl.col("ignore").cast(pl.String).str.strip_chars().is_in(["1", "1.0", "True", "true"])
        if "ignore" in df.columns
        else pl.lit(False)
    )
    start = pl.col("start_time").str.strip_chars()
    df = df.filter(~ignore.fill_null(False) & start.is_not_null() & (start != ""))
    parsed = start.str.to_datetime(strict=False, time_unit="us")
    df = df.with_columns(start_datetime=parsed, id=pl.col("id").cast(pl.Int64))
    bad = df.filter(pl.col("start_datetime").is_null())
    if bad.height:
        raise BadFormatError(
            f"training record start time {bad['start_time'][0]!r} is not a date-time",
            path=path,
            field=f"start_time (subject {bad['subject_id'][0]}, row {bad['id'][0]})",
            expected="YYYY-MM-DD HH:MM[:SS]",
        )
    df = df.with_columns(date=pl.col("start_datetime").dt.date())
    cols = ["subject_id", "id", "date", "start_datetime", *_STR_COLS]
    return df.select(cols).sort("subject_id", "id")


def _read_sqlite(path: str) -> pl.DataFrame:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        frames: list[pl.DataFrame] = []
        genotypes: dict[int, str] = {}

        def table(name: str) -> pl.DataFrame:
            cur = con.execute(f'SELECT * FROM "{name}"')
            cols = [d[0] for d in cur.description]
            rows = cur.fetchall()
            return pl.DataFrame(
                {
                    c: [None if r[i] is None else str(r[i]) for r in rows]
                    for i, c in enumerate(cols)
                },
                schema={c: pl.String for c in cols},
            )

        for name in names:
            if name.lower() == "all_mice":
                mice = table(name).rename(lambda c: _slug(c))
                if {"mouse_id", "genotype"} <= set(mice.columns):
                    for m, g in mice.select("mouse_id", "genotype").iter_rows():
                        if m and str(m).strip().isdigit():
                            genotypes[int(str(m).strip())] = g
            elif name.strip().isdigit():
                frames.append(_normalize(table(name), path, subject=int(name)))
            else:
                t = table(name)
                if {"subject_id", "mouse_id"} & {_slug(c) for c in t.columns}:
                    frames.append(_normalize(t, path))
    finally:
        con.close()
    if not frames:
        raise BadFormatError(
            "SQLite training records have no subject table",
            path=path,
            field="tables",
            expected="tables named by subject id, or a table with a subject_id column",
        )
    df = pl.concat(frames, how="vertical")
    if genotypes:
        g = pl.DataFrame(
            {"subject_id": list(genotypes), "_g": list(genotypes.values())},
            schema={"subject_id": pl.Int64, "_g": pl.String},
        )
        df = (
            df.join(g, on="subject_id", how="left")
            .with_columns(pl.coalesce("genotype", "_g").alias("genotype"))
            .drop("_g")
        )
    return df


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, _stamp: tuple[int, int]) -> pl.DataFrame:
    lower = path.lower()
    if lower.endswith((".sqlite", ".db", ".sqlite3")):
        return _read_sqlite(path)
    try:
        if lower.endswith(".parquet"):
            df = pl.read_parquet(path)
        elif lower.endswith(".csv"):
            df = pl.read_csv(path, infer_schema=False)
        else:
            raise BadFormatError(
                "unknown training-records file type",
                path=path,
                expected=".csv, .parquet, .sqlite or .db",
            )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise BadFormatError(f"training records cannot be read: {exc}", path=path) from exc
    return _normalize(df, path)


def read_training_records(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Return the training records as one row per kept training session (see module docstring).

    Columns: ``subject_id, id, date, start_datetime, start_time, rig_name, task_version,
    dprime_same_modality, dprime_other_modality_go_stim, genotype``. Raises MissingFileError when
    the file does not exist and BadFormatError naming the file and column when it cannot be used.
    """
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError:
        raise MissingFileError(
            "training-records file does not exist",
            path=p,
            expected="a CSV, Parquet or SQLite file of training sessions",
        ) from None
    return _read_cached(p, (st.st_size, st.st_mtime_ns))


def subject_rows(table: pl.DataFrame, subject_id: int) -> pl.DataFrame:
    """Return the kept training rows of one subject, in sheet order."""
    return table.filter(pl.col("subject_id") == subject_id).sort("id")


def subject_genotype(table: pl.DataFrame, subject_id: int) -> str | None:
    """Return the subject's genotype from the records (None when not recorded)."""
    g = subject_rows(table, subject_id)["genotype"].drop_nulls()
    return str(g[0]) if g.len() else None


def behavior_day(rows: pl.DataFrame, date: Any) -> int | None:
    """Return the row id of the first training row dated `date` (None when there is none)."""
    hit = rows.filter(pl.col("date") == date)
    return int(hit["id"][0]) if hit.height else None


_NUM = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan", re.IGNORECASE)


def _dprimes(cell: str | None) -> np.ndarray:
    if not cell:
        return np.empty(0)
    return np.array([float(x) for x in _NUM.findall(cell)], dtype=np.float64)


def _passes(same: str | None, other: str | None) -> bool:
    a, b = _dprimes(same), _dprimes(other)
    n = min(a.size, b.size)
    with np.errstate(invalid="ignore"):
        ok = (a[:n] >= STAGE5_DPRIME) & (b[:n] >= STAGE5_DPRIME)
    return int(ok.sum()) > STAGE5_MIN_BLOCKS


def stage_5_passed(rows: pl.DataFrame, date: Any) -> bool:
    """Return True when the subject had passed stage 5 before `date`.

    Candidates are the subject's rows dated before `date` whose task version starts with
    ``stage 5``; the subject passed when two consecutive candidates both have more than 3 blocks
    with d' same-modality >= 1.5 and d' other-modality-go >= 1.5 (per-block lists parsed from the
    cells; ``nan`` allowed and never passing).
    """
    cand = rows.filter(
        (pl.col("date") < date)
        & pl.col("task_version").fill_null("").str.to_lowercase().str.starts_with("stage 5")
    )
    ok = [
        _passes(s, o)
        for s, o in cand.select("dprime_same_modality", "dprime_other_modality_go_stim").iter_rows()
    ]
    return any(a and b for a, b in itertools.pairwise(ok))
