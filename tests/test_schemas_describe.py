"""Discoverable schemas: describe(), units, nullability, repr, and the schema carried by the cache
(Parquet field metadata, DuckDB comments) for a real synthetic session."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

import npc_frames as nf
from npc_frames import cache
from npc_frames.errors import SchemaError
from npc_frames.schemas import SCHEMAS

SRC = Path(__file__).resolve().parents[1] / "src" / "npc_frames"


# ---------------------------------------------------------------------------------- describe
def test_describe_has_one_row_per_schema_column_in_order():
    got = nf.describe()
    expected = [
        (
            s.name,
            c.name,
            str(c.dtype() if isinstance(c.dtype, type) else c.dtype),
            c.unit,
            c.description,
            c.nullable,
        )
        for s in SCHEMAS.values()
        for c in s.columns
    ]
    assert got.columns == ["component", "column", "dtype", "unit", "description", "nullable"]
    assert got.rows() == expected
    assert got.height == sum(len(s.columns) for s in SCHEMAS.values())


def test_describe_one_component():
    got = nf.describe("running_speed")
    assert got.select("column", "dtype", "unit", "nullable").rows() == [
        ("session_id", "String", None, False),
        ("timestamps", "Float64", "s", False),
        ("speed", "Float64", "cm/s", False),
    ]
    assert nf.describe("trials")["column"].to_list() == SCHEMAS["trials"].names


def test_describe_unknown_component_lists_the_components():
    with pytest.raises(SchemaError) as info:
        nf.describe("trails")
    for name in SCHEMAS:
        assert repr(name) in str(info.value)


def test_units_are_declared_where_meaningful():
    d = nf.describe()
    unit = {(r["component"], r["column"]): r["unit"] for r in d.iter_rows(named=True)}
    assert unit[("trials", "start_time")] == "s"
    assert unit[("aud_rf_mapping", "freq")] == "Hz"
    assert unit[("electrodes", "rel_y")] == "µm"
    assert unit[("units", "amplitude")] == "µV"
    assert unit[("units", "firing_rate")] == "Hz"
    assert unit[("running_speed", "speed")] == "cm/s"
    assert unit[("trials", "opto_power")] == "mW"
    # every time column is in seconds; flags and ids have no unit
    times = d.filter(pl.col("column").str.ends_with("_time") & (pl.col("dtype") == "Float64"))
    assert times.height > 40 and set(times["unit"]) == {"s"}
    flags = d.filter(pl.col("column").str.starts_with("is_") | (pl.col("column") == "session_id"))
    assert flags["unit"].null_count() == flags.height


def test_optional_columns_are_nullable():
    d = nf.describe()
    optional = {(s.name, c.name) for s in SCHEMAS.values() for c in s.columns if not c.required}
    nullable = set(d.filter("nullable").select("component", "column").iter_rows())
    assert optional <= nullable
    assert ("trials", "opto_wavelength") in nullable - optional


def test_schema_repr_is_short_and_multi_line():
    text = repr(SCHEMAS["trials"])
    lines = text.splitlines()
    assert lines[0] == "Schema('trials', 62 columns, key=('trial_index',))"
    assert len(lines) == 2 + 12 + 1
    assert lines[-1] == "  … 50 more columns (npc_frames.describe('trials'))"
    assert max(len(line) for line in lines) <= 140
    assert re.match(r"  start_time +Float64 +\[s\] start of the trial", lines[3])
    assert len(repr(SCHEMAS["licks"]).splitlines()) == 2 + 4  # short schemas list everything


def test_no_description_cites_a_document_outside_the_repository():
    texts = [s.description for s in SCHEMAS.values()]
    texts += [c.description for s in SCHEMAS.values() for c in s.columns]
    assert not [t for t in texts if "FORMATS" in t or "§" in t]
    for path in [*sorted((SRC / "schemas").glob("*.py")), SRC / "cache_layout.py"]:
        assert "FORMATS" not in path.read_text(), path


def test_cli_describe_prints_the_schema(capsys):
    from npc_frames.cli import main

    assert main(["describe", "licks", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["column"], r["unit"], r["nullable"]) for r in rows] == [
        ("session_id", "", "false"),
        ("timestamps", "s", "false"),
        ("duration", "s", "false"),
        ("is_likely_lick", "", "true"),
    ]
    assert main(["describe", "trials"]) == 0
    out = capsys.readouterr().out
    assert "| start_time" in out and "start of the trial = quiescent_start_time" in out
    assert main(["describe", "trails"]) == 1
    assert "unknown component 'trails'" in capsys.readouterr().err


# ------------------------------------------------------------- the schema inside the cache
@pytest.fixture(scope="module")
def session_cache(synth_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("describe_cache")
    out = cache.convert([synth_session.raw_path], root, progress=False)
    assert out.filter(pl.col("status") == "failed").is_empty()
    return root


@pytest.mark.slow
def test_columns_holding_nulls_are_declared_nullable(session_cache):
    frames = cache.read_session(_only_session(session_cache), session_cache)
    assert {"trials", "units", "sessions", "licks"} <= set(frames)
    undeclared = [
        (name, col)
        for name, df in frames.items()
        for col in df.columns
        if df[col].null_count() and not SCHEMAS[name].column(col).nullable
    ]
    assert undeclared == []
    # the check saw nulls: a non-opto trial of this opto session has no wavelength
    assert 0 < frames["trials"]["opto_wavelength"].null_count() < frames["trials"].height


@pytest.mark.slow
def test_parquet_fields_carry_description_and_unit(session_cache):
    for name in ("trials", "units", "running_speed"):
        files = sorted((session_cache / name).rglob("data.parquet"))
        assert files, name
        arrow = pq.read_schema(files[0])
        schema = SCHEMAS[name]
        assert arrow.names == schema.names
        for col in schema.columns:
            meta = arrow.field(col.name).metadata or {}
            assert meta[b"description"].decode() == col.description, (name, col.name)
            assert meta.get(b"unit", b"").decode() == (col.unit or ""), (name, col.name)
        assert arrow.metadata[b"npc_frames.description"].decode() == schema.description
    # the packed spike_times column keeps its field metadata too
    units = pq.read_schema(next((session_cache / "units").rglob("data.parquet")))
    assert units.field("spike_times").metadata[b"unit"] == b"s"


@pytest.mark.slow
def test_duckdb_views_carry_real_schema_comments(session_cache):
    got = cache.sql(
        "SELECT table_name, column_name, column_comment FROM information_schema.columns "
        "WHERE table_name IN ('trials', 'units') ORDER BY table_name, ordinal_position",
        session_cache,
    ).rows()
    expected = [
        (name, c.name, c.comment) for name in ("trials", "units") for c in SCHEMAS[name].columns
    ]
    assert got == expected
    assert dict(got_row[1:] for got_row in got if got_row[0] == "trials")["start_time"] == (
        "start of the trial = quiescent_start_time [s]"
    )
    tables = set(cache.sql("SHOW TABLES", session_cache)["name"])
    present = {p.name for p in session_cache.iterdir() if p.is_dir()}
    assert tables == present | {"spike_times", "catalog"}


def _only_session(root: Path) -> str:
    ids = cache.read_catalog(root)["session_id"].unique().to_list()
    assert len(ids) == 1
    return str(ids[0])
