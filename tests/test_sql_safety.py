"""SQL over the cache: discoverable views, read-only queries, literal cache paths, corrupt files.

Components and schemas are the fakes of tests/helpers/fakes.py (each fake session: 20 trials,
12 units), so the expected values come from their generator.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import helpers.fakes as fakes
from npc_frames import cache
from npc_frames.errors import CacheError, ParameterError

sql_mod = importlib.import_module("npc_frames.cache.sql")  # the module, not the function
DAY0 = dt.date(2023, 8, 31)
N_TRIALS = 20


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.install(monkeypatch)


def _sid(i: int) -> str:
    return f"{668755 + i}_{(DAY0 + dt.timedelta(days=i)).isoformat()}"


def _raws(root: Path, n: int, first: int = 0) -> list[Path]:
    return [
        fakes.make_fake_session(
            root / "raw", 668755 + i, DAY0 + dt.timedelta(days=i), seed=i, n_trials=N_TRIALS
        )
        for i in range(first, first + n)
    ]


@pytest.fixture
def built(fake: None, tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    cache.convert(_raws(tmp_path, 2), root, progress=False)
    return root


def _file(root: Path, component: str, i: int) -> Path:
    return root / component / f"session_id={_sid(i)}" / "data.parquet"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _trials_count(root: Path) -> int:
    return int(cache.sql("SELECT count(*) AS n FROM trials", root)["n"][0])


# ---------------------------------------------------------------------------- discoverability
def test_show_tables_lists_exactly_the_present_components(built):
    shutil.rmtree(built / "invalid_times")  # a component with no file is not listed
    got = cache.sql("SHOW TABLES", built)["name"].to_list()
    assert sorted(got) == ["catalog", "sessions", "spike_times", "trials", "units"]


def test_information_schema_columns_carry_the_schema_descriptions(built):
    got = cache.sql(
        "SELECT column_name, column_comment FROM information_schema.columns "
        "WHERE table_name = 'trials' ORDER BY ordinal_position",
        built,
    ).rows()
    schema = fakes.FAKE_SCHEMAS["trials"]
    assert got == [(c.name, c.description) for c in schema.columns]
    tables = cache.sql(
        "SELECT table_name, table_comment FROM information_schema.tables "
        "WHERE table_name IN ('trials', 'units') ORDER BY 1",
        built,
    ).rows()
    assert tables == [("trials", "fake trials"), ("units", "fake units")]


def test_column_comment_appends_the_unit(fake, tmp_path, monkeypatch):
    from npc_frames import schemas
    from npc_frames.schemas import Column, Schema

    trials = fakes.FAKE_SCHEMAS["trials"]
    with_unit = Schema(
        "trials",
        "fake trials",
        tuple(
            Column(c.name, c.dtype, c.description, required=c.required, unit="s")
            if c.name == "start_time"
            else c
            for c in trials.columns
        ),
    )
    monkeypatch.setattr(schemas, "SCHEMAS", {**fakes.FAKE_SCHEMAS, "trials": with_unit})
    got = cache.sql(
        "SELECT column_comment FROM information_schema.columns "
        "WHERE table_name = 'trials' AND column_name = 'start_time'",
        tmp_path / "empty",
    )
    assert got.item() == "s [s]"


def test_connect_creates_no_helper_objects(built):
    con = cache.connect(built)
    try:
        names = sorted(
            r[0]
            for r in con.sql(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('information_schema', 'pg_catalog')"
            ).fetchall()
        )
    finally:
        con.close()
    assert names == ["catalog", "invalid_times", "sessions", "spike_times", "trials", "units"]


def test_view_of_a_component_without_files_is_typed_and_empty(fake, tmp_path):
    got = cache.sql("SELECT * FROM units", tmp_path / "nothing")
    assert got.height == 0
    assert got.schema == fakes.FAKE_SCHEMAS["units"].polars_schema


def test_unknown_table_error_lists_the_components(built):
    with pytest.raises(ParameterError) as info:
        cache.sql("SELECT * FROM trails", built)
    msg = str(info.value)
    assert "no table 'trails' (did you mean 'trials'?)" in msg
    assert "pg_constraint" not in msg
    for name in [*fakes.FAKE_SCHEMAS, "spike_times", "catalog"]:
        assert repr(name) in msg


def test_describe_and_pragma_table_info_give_the_schema_columns(built):
    names = fakes.FAKE_SCHEMAS["trials"].names
    assert cache.sql("DESCRIBE trials", built)["column_name"].to_list() == names
    assert cache.sql("PRAGMA table_info('trials')", built)["name"].to_list() == names


# ------------------------------------------------------------------------------ read-only
@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("COPY (SELECT 1 AS x) TO '{out}'", "type COPY"),
        ("ATTACH '{out}' AS other", "type ATTACH"),
        ("SELECT 1; SELECT 2", "exactly one statement; got 2"),
        ("CREATE TABLE scratch AS SELECT 1 AS x", "type CREATE"),
        ("CREATE OR REPLACE TEMP VIEW trials AS SELECT 1 AS x", "type CREATE"),
        ("INSERT INTO trials VALUES (1)", "type INSERT"),
        ("SET threads = 1", "type SET"),
        ("PRAGMA threads = 1", "type SET"),
        ("PRAGMA enable_profiling", "PRAGMA enable_profiling is not a read-only PRAGMA"),
        ("CALL duckdb_tables()", "type CALL"),
        ("EXPLAIN ANALYZE CREATE OR REPLACE VIEW trials AS SELECT 1 AS x", "EXPLAIN of"),
        ("/* c */ EXPLAIN COPY (SELECT 1) TO '{out}'", "EXPLAIN of a statement of type COPY"),
    ],
)
def test_statements_that_write_are_refused(built, tmp_path, query, reason):
    out = tmp_path / "written.csv"
    with pytest.raises(ParameterError, match=r"refused|exactly one") as info:
        cache.sql(query.format(out=out), built)
    assert reason in str(info.value)
    assert not out.exists()
    assert _trials_count(built) == 2 * N_TRIALS


def test_explain_analyze_create_or_replace_view_leaves_the_shared_view_intact(built):
    assert _trials_count(built) == 2 * N_TRIALS  # the shared connection now exists
    q = "EXPLAIN ANALYZE CREATE OR REPLACE VIEW trials AS SELECT 1 AS x"
    with pytest.raises(ParameterError, match="refused"):
        cache.sql(q, built)
    assert _trials_count(built) == 2 * N_TRIALS
    # and were the check bypassed, the shared connection's transaction is rolled back
    root = cache.cache_root(built)
    con, lock = sql_mod._cached_connection(root, {"trials"})
    with lock:
        sql_mod._run(con, q, None, isolated=True, root=root)
    assert cache.sql("SELECT * FROM trials", built).columns == fakes.FAKE_SCHEMAS["trials"].names
    assert _trials_count(built) == 2 * N_TRIALS


def test_read_only_statements_run(built):
    assert cache.sql("FROM trials SELECT count(*) AS n", built)["n"].to_list() == [2 * N_TRIALS]
    assert cache.sql(
        "WITH t AS (SELECT * FROM trials) SELECT count(DISTINCT session_id) AS n FROM t", built
    )["n"].to_list() == [2]
    plan = cache.sql("EXPLAIN SELECT * FROM trials", built)
    assert plan.height >= 1
    summary = cache.sql("SUMMARIZE trials", built)
    assert summary.filter(pl.col("column_name") == "trial_index")["max"].to_list() == [
        str(N_TRIALS - 1)
    ]


def test_read_only_false_runs_writes_on_a_private_connection(built, tmp_path):
    got = cache.sql(
        "CREATE TABLE scratch AS SELECT count(*) AS n FROM trials; SELECT n FROM scratch",
        built,
        read_only=False,
    )
    assert got["n"].to_list() == [2 * N_TRIALS]
    with pytest.raises(ParameterError, match="no table 'scratch'"):
        cache.sql("SELECT * FROM scratch", built)
    out = tmp_path / "out.csv"
    cache.sql(f"COPY (SELECT 7 AS x) TO '{out}' (HEADER)", built, read_only=False)
    assert out.read_text().split() == ["x", "7"]


def test_cli_help_and_docstring_state_the_same_rules(built):
    from npc_frames.commands import sql as sql_command

    assert sql_command.READ_ONLY_RULES.replace("--write", "read_only=False") == (
        sql_mod.READ_ONLY_RULES
    )
    doc = " ".join((cache.sql.__doc__ or "").split())
    assert " ".join(sql_mod.READ_ONLY_RULES.split()[:20]) in doc
    out = subprocess.run(
        [sys.executable, "-m", "npc_frames.cli", "sql", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    text = " ".join(out.split())
    assert "COPY … TO, ATTACH" in text and "--write" in text


def test_cli_refuses_writes_without_write_flag(built, capsys):
    from npc_frames.cli import main

    assert main(["sql", "CREATE TABLE t AS SELECT 1", "--cache", str(built)]) == 2  # usage
    assert "SQL statement refused" in capsys.readouterr().err
    assert main(["sql", "SELECT 42 AS x", "--cache", str(built), "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["x", "42"]


# --------------------------------------------------------------------------- cache paths
def test_cache_path_with_glob_characters_is_literal(fake, tmp_path):
    odd = tmp_path / "ca[c]he*"
    # "cache" and "cache-other" match the pattern ca[c]he* — their sessions must not be read
    cache.convert(_raws(tmp_path, 2), odd, progress=False)
    cache.convert(_raws(tmp_path, 1, first=5), tmp_path / "cache", progress=False)
    cache.convert(_raws(tmp_path, 1, first=6), tmp_path / "cache-other", progress=False)
    want = [_sid(0), _sid(1)]
    scanned = cache.scan_trials(odd).select("session_id").unique().sort("session_id")
    assert scanned.collect()["session_id"].to_list() == want
    via_sql = cache.sql("SELECT DISTINCT session_id FROM trials ORDER BY 1", odd)
    assert via_sql["session_id"].to_list() == want
    spikes = cache.sql("SELECT count(DISTINCT session_id) AS n FROM spike_times", odd)
    assert spikes["n"].to_list() == [2]
    assert sorted(cache.sql("SHOW TABLES", odd)["name"]) == sorted(
        [*fakes.FAKE_SCHEMAS, "spike_times", "catalog"]
    )
    units = cache.scan_units(odd).collect()
    truth = fakes.truth(json.loads((_raws(tmp_path, 1)[0] / "fake.json").read_text()), _sid(0))
    assert units.filter(pl.col("session_id") == _sid(0)).height == truth["units"].height


# --------------------------------------------------------------------------- corrupt files
def test_corrupt_parquet_gives_cache_error_naming_the_file(built):
    bad = _file(built, "trials", 1)
    _truncate(bad)
    with pytest.raises(CacheError) as scan_err:
        cache.scan_trials(built).collect()
    assert scan_err.value.path == str(bad)
    with pytest.raises(CacheError) as sql_err:
        cache.sql("SELECT count(*) FROM trials", built)
    assert sql_err.value.path == str(bad)
    with pytest.raises(CacheError) as read_err:
        cache.read_session(_sid(1), built)
    assert read_err.value.path == str(bad)
    # other components and sessions stay readable
    assert cache.scan_units(built).collect().height == 24
    assert cache.read_session(_sid(0), built)["trials"].height == N_TRIALS


def test_convert_recomputes_a_component_whose_file_is_corrupt(fake, tmp_path):
    raws = _raws(tmp_path, 2)
    root = tmp_path / "cache"
    cache.convert(raws, root, progress=False)
    before = cache.read_catalog(root).filter(pl.col("part").is_null())
    bad = _file(root, "trials", 1)
    _truncate(bad)
    cache.convert(raws, root, progress=False)  # same inputs: same fingerprint
    after = cache.read_catalog(root).filter(pl.col("part").is_null())
    changed = (
        before.join(after, on=["session_id", "component"], suffix="_new")
        .filter(pl.col("written_at") != pl.col("written_at_new"))
        .select("session_id", "component")
        .rows()
    )
    assert changed == [(_sid(1), "trials")]
    spec = json.loads((raws[1] / "fake.json").read_text())
    expected = fakes.FAKE_SCHEMAS["trials"].validate(fakes.truth(spec, _sid(1))["trials"])
    assert pl.read_parquet(bad, hive_partitioning=False).equals(expected)
