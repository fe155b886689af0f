"""Cache rules: layout, catalog, incremental convert, failures, scans, SQL, ids, manifest, CLI.

Components and schemas are fakes (tests/helpers/fakes.py) so these tests do not depend on the
real component functions; tests on real synthetic sessions live in test_cache_synth.py.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

import helpers.fakes as fakes
from npc_frames import cache
from npc_frames.cache_layout import pack, unpack
from npc_frames.errors import BadFormatError, InvalidIdError, ParameterError, SchemaError
from npc_frames.schemas import SCHEMA_VERSION

DAY0 = dt.date(2023, 8, 31)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.install(monkeypatch)


def _raws(root: Path, n: int = 3, **kw: object) -> list[Path]:
    return [
        fakes.make_fake_session(root / "raw", 668755 + i, DAY0 + dt.timedelta(days=i), seed=i, **kw)  # type: ignore[arg-type]
        for i in range(n)
    ]


def _sid(i: int) -> str:
    return f"{668755 + i}_{(DAY0 + dt.timedelta(days=i)).isoformat()}"


def _threads() -> cf.ThreadPoolExecutor:
    return cf.ThreadPoolExecutor(2)


@pytest.fixture
def built(fake: None, tmp_path: Path) -> tuple[Path, list[Path]]:
    raws = _raws(tmp_path)
    with _threads() as ex:
        cache.convert(raws, tmp_path / "cache", executor=ex, progress=False)
    return tmp_path / "cache", raws


def _truth(raws: list[Path]) -> dict[str, dict[str, pl.DataFrame]]:
    out = {}
    for i, r in enumerate(raws):
        spec = json.loads((r / "fake.json").read_text())
        out[_sid(i)] = fakes.truth(spec, _sid(i))
    return out


# ------------------------------------------------------------------------------------ layout
def test_convert_writes_one_file_per_component_per_session_and_a_catalog(built):
    root, raws = built
    for comp in fakes.FAKE_SCHEMAS:
        files = sorted(p.relative_to(root).as_posix() for p in (root / comp).rglob("*.parquet"))
        assert files == [f"{comp}/session_id={_sid(i)}/data.parquet" for i in range(3)]
    cat = cache.read_catalog(root)
    assert cat.height == 3 * len(fakes.FAKE_SCHEMAS)
    assert cat.schema == cache.CATALOG_SCHEMA
    units = cat.filter(pl.col("component") == "units").sort("session_id")
    truth = _truth(raws)
    assert units["rows"].to_list() == [truth[_sid(i)]["units"].height for i in range(3)]
    assert set(cat["status"]) == {"ok", "empty"}  # invalid_times is empty without a manifest
    assert cat["fingerprint"].str.len_chars().unique().to_list() == [64]
    assert (cat["schema_version"] == SCHEMA_VERSION).all()
    assert cat["written_at"].is_not_null().all()
    assert cat["input_files"].min() >= 1


def test_written_file_equals_component_frame_and_carries_versions(built):
    root, raws = built
    truth = _truth(raws)
    path = root / "trials" / f"session_id={_sid(1)}" / "data.parquet"
    df = pl.read_parquet(path, hive_partitioning=False)
    expected = fakes.FAKE_SCHEMAS["trials"].validate(truth[_sid(1)]["trials"])
    assert df.equals(expected)
    meta = pq.read_schema(path).metadata
    assert meta[b"npc_frames.schema_version"] == str(SCHEMA_VERSION).encode()
    assert meta[b"npc_frames.component"] == b"trials"


def test_units_row_groups_never_span_two_structures_and_hold_few_units(built):
    root, _ = built
    f = pq.ParquetFile(root / "units" / f"session_id={_sid(0)}" / "data.parquet")
    md = f.metadata
    col = f.schema_arrow.names.index("structure")
    assert md.num_row_groups > 1
    for i in range(md.num_row_groups):
        st = md.row_group(i).column(col).statistics
        assert st.min == st.max  # so a structure filter skips other row groups by statistics
        assert md.row_group(i).num_rows <= 32
    leaf = [md.row_group(0).column(j) for j in range(md.num_columns)]
    spikes = next(c for c in leaf if c.path_in_schema == "spike_times")
    # packed: one uncompressed byte array per unit, no min/max copied into the footer
    assert spikes.physical_type == "BYTE_ARRAY" and spikes.compression == "UNCOMPRESSED"
    assert spikes.statistics is None or not spikes.statistics.has_min_max
    assert json.loads(f.schema_arrow.metadata[b"npc_frames.packed"]) == {"spike_times": "float64"}


def test_units_without_structure_are_grouped_by_32_not_one_row_group_per_unit():
    """A session without anatomy (structure null everywhere) gets row groups of <= 32 units, as
    an annotated one; a change between null and a value still starts a row group."""
    from npc_frames.cache_layout import LAYOUTS, row_group_bounds

    n = 100
    df = pl.DataFrame(
        {
            "unit_id": [f"u{k:03d}" for k in range(n)],
            "structure": pl.Series([None] * n, dtype=pl.String),
            "spike_times": [[0.0, 1.0]] * n,
        }
    )
    assert row_group_bounds(df, LAYOUTS["units"]) == [(0, 32), (32, 64), (64, 96), (96, 100)]
    mixed = df.with_columns(
        structure=pl.Series([None] * 40 + ["CA1"] * 30 + [None] * 30, dtype=pl.String)
    )
    assert row_group_bounds(mixed, LAYOUTS["units"]) == [
        (0, 32),
        (32, 40),
        (40, 70),
        (70, 100),
    ]


def test_packed_spike_times_hold_the_exact_float64_bytes(built):
    root, raws = built
    f = root / "units" / f"session_id={_sid(0)}" / "data.parquet"
    raw = pl.read_parquet(f)
    assert raw.schema["spike_times"] == pl.Binary
    truth = _truth(raws)[_sid(0)]["units"].sort("structure", "unit_id")
    for blob, spikes in zip(raw["spike_times"], truth["spike_times"]):
        assert blob == spikes.to_numpy().astype("<f8").tobytes()
    assert unpack(raw["spike_times"]).equals(truth["spike_times"])


def test_pack_unpack_round_trip_keeps_nulls_empty_lists_and_slices():
    s = pl.Series("x", [[1.5, 2.5], None, [], [3.0]], dtype=pl.List(pl.Float64))
    packed = pl.Series("x", pack(s, "float64"))
    assert packed.to_list() == [
        np.array([1.5, 2.5]).tobytes(),
        None,
        b"",
        np.array([3.0]).tobytes(),
    ]
    assert unpack(packed).equals(s)
    assert unpack(pl.Series("x", pack(s.slice(1, 3), "float64"))).equals(s.slice(1, 3))
    f32 = pl.Series("y", [[1.0], [2.0, 3.0]], dtype=pl.List(pl.Float32))
    assert unpack(pl.Series("y", pack(f32, "float32")), "float32").equals(f32)


def test_units_rows_are_sorted_by_structure_then_unit_id(built):
    root, raws = built
    df = pl.read_parquet(root / "units" / f"session_id={_sid(2)}" / "data.parquet")
    df = df.with_columns(unpack(df["spike_times"]))
    truth = _truth(raws)[_sid(2)]["units"]
    assert df.equals(truth.sort("structure", "unit_id"))


# ----------------------------------------------------------------------- scans, SQL, truth
def test_scan_sql_and_truth_answer_the_same_cross_session_question(built):
    root, raws = built
    truth = _truth(raws)
    # question: per session, hit rate, and spike count of QC-passing CA1 units
    direct = []
    for sid, t in sorted(truth.items()):
        u = t["units"]
        mask = u["is_qc_pass"].to_numpy() & (u["structure"].to_numpy() == "CA1")
        n_spikes = int(sum(len(x) for x, m in zip(u["spike_times"].to_list(), mask) if m))
        direct.append((sid, float(np.mean(t["trials"]["is_hit"].to_numpy())), n_spikes))
    units = (
        cache.scan_units(root)
        .filter(pl.col("is_qc_pass") & (pl.col("structure") == "CA1"))
        .group_by("session_id")
        .agg(pl.col("spike_times").list.len().sum().alias("n_spikes"))
    )
    hits = cache.scan_trials(root).group_by("session_id").agg(pl.col("is_hit").mean())
    via_polars = (
        hits.join(units, on="session_id", how="left")
        .with_columns(pl.col("n_spikes").fill_null(0))
        .sort("session_id")
        .collect()
    )
    via_sql = cache.sql(
        """
        SELECT t.session_id, avg(t.is_hit::INT) AS is_hit,
               coalesce((SELECT count(*) FROM spike_times s JOIN units u USING (unit_id)
                         WHERE u.session_id = t.session_id AND u.is_qc_pass
                           AND u.structure = ?), 0) AS n_spikes
        FROM trials t GROUP BY t.session_id ORDER BY t.session_id
        """,
        root,
        params=["CA1"],
    )
    # hit rate = hits / trials in all three (exact), spike counts are integers
    assert via_polars.rows() == direct
    assert via_sql.rows() == direct


def test_scan_spike_times_round_trip_bit_exact(built):
    root, raws = built
    truth = _truth(raws)
    got = cache.scan_units(root).sort("unit_id").collect()
    want = pl.concat([t["units"] for t in truth.values()]).sort("unit_id")
    assert got.equals(want)


def test_sql_long_spike_times_view_matches_truth(built):
    root, raws = built
    truth = _truth(raws)[_sid(0)]["units"]
    got = cache.sql(
        "SELECT unit_id, spike_time FROM spike_times WHERE session_id = $sid "
        "ORDER BY unit_id, spike_time",
        root,
        params={"sid": _sid(0)},
    )
    want = truth.select("unit_id", pl.col("spike_times").alias("spike_time")).explode("spike_time")
    want = want.drop_nulls().sort("unit_id", "spike_time")
    assert got.equals(want)


def test_scan_pushes_filters_and_projections_into_parquet(built):
    root, _ = built
    plan = (
        cache.scan_units(root)
        .filter((pl.col("session_id") == _sid(1)) & pl.col("is_qc_pass"))
        .select("unit_id", "amplitude")
        .explain()
    )
    scan_part = plan[plan.index("Parquet SCAN") :]
    assert "SELECTION" in scan_part and "is_qc_pass" in scan_part
    assert "PROJECT" in scan_part
    # hive partition pruning: only the one session's file is listed
    assert _sid(1) in scan_part and _sid(0) not in scan_part
    assert "FILTER" not in plan[: plan.index("Parquet SCAN")]
    # the unpacking step disappears when spike_times is not selected
    assert "python_udf" not in plan and "PROJECT 4/" in scan_part
    with_spikes = (
        cache.scan_units(root).filter(pl.col("is_qc_pass")).select("spike_times").explain()
    )
    assert "python_udf" in with_spikes
    assert "SELECTION" in with_spikes[with_spikes.index("Parquet SCAN") :]


def test_scan_gives_one_stable_schema_missing_columns_null(built, tmp_path):
    root, _ = built
    # an "older" file lacking the optional response_time column (and with columns reordered)
    older = root / "trials" / "session_id=700000_2022-01-01" / "data.parquet"
    older.parent.mkdir(parents=True)
    pl.DataFrame(
        {"trial_index": [0], "session_id": ["700000_2022-01-01"], "start_time": [1.0]}
        | {"stop_time": [2.0], "stim_name": ["vis1"], "is_hit": [True]}
    ).write_parquet(older)
    df = cache.scan_trials(root).collect()
    assert df.schema == fakes.FAKE_SCHEMAS["trials"].polars_schema
    row = df.filter(pl.col("session_id") == "700000_2022-01-01")
    assert row["response_time"].to_list() == [None] and row["stim_name"].to_list() == ["vis1"]
    via_sql = cache.sql("SELECT * FROM trials WHERE session_id = '700000_2022-01-01'", root)
    assert via_sql.columns == fakes.FAKE_SCHEMAS["trials"].names
    assert via_sql["response_time"].to_list() == [None]


def test_scan_of_component_never_converted_is_empty_with_schema(fake, tmp_path):
    df = cache.scan_units(tmp_path / "nothing").collect()
    assert df.height == 0 and df.schema == fakes.FAKE_SCHEMAS["units"].polars_schema
    assert cache.sql("SELECT count(*) AS n FROM units", tmp_path / "nothing")["n"].to_list() == [0]


def test_scan_unknown_component_raises_schema_error_naming_known_ones(fake, tmp_path):
    with pytest.raises(SchemaError, match="unknown component 'trails'"):
        cache.scan("trails", tmp_path)


def test_sql_parameters_are_bound_not_formatted(built):
    root, _ = built
    evil = "x' OR '1'='1"
    assert cache.sql("SELECT * FROM trials WHERE session_id = ?", root, params=[evil]).height == 0
    n = cache.sql("SELECT count(*) AS n FROM trials WHERE session_id = ?", root, params=[_sid(0)])
    assert n["n"].to_list() == [20]


def test_sql_sees_sessions_converted_after_an_earlier_query(fake, tmp_path):
    raws = _raws(tmp_path, n=2)
    root = tmp_path / "cache"
    cache.convert(raws[:1], root, progress=False)
    q = "SELECT count(DISTINCT session_id) AS n FROM units"
    assert cache.sql(q, root)["n"].to_list() == [1]
    cache.convert(raws[1:], root, progress=False)
    assert cache.sql(q, root)["n"].to_list() == [2]
    # a statement that changes state never runs on the shared connection
    cache.sql("CREATE TABLE scratch AS SELECT 1 AS x", root, read_only=False)
    with pytest.raises(ParameterError, match="scratch"):
        cache.sql("SELECT * FROM scratch", root)


def test_sql_error_is_typed_and_quotes_the_query(built):
    root, _ = built
    with pytest.raises(ParameterError, match="SQL query failed"):
        cache.sql("SELECT nope FROM trials", root)


def test_read_session_returns_every_component(built):
    root, raws = built
    got = cache.read_session(_sid(0), root)
    assert set(got) == set(fakes.FAKE_SCHEMAS)
    assert got["trials"].equals(
        _truth(raws)[_sid(0)]["trials"].with_columns(
            pl.lit(None, dtype=pl.Float64).alias("response_time")
        )
    )


# ------------------------------------------------------------------- incremental, failures
def test_unchanged_inputs_are_skipped_and_overwrite_forces(built):
    root, raws = built
    before = {p: p.stat().st_mtime_ns for p in root.rglob("data.parquet")}
    with _threads() as ex:
        again = cache.convert(raws, root, executor=ex, progress=False)
    assert again["skipped"].all()
    assert {p: p.stat().st_mtime_ns for p in root.rglob("data.parquet")} == before
    forced = cache.convert(raws[:1], root, overwrite=True, progress=False)
    assert not forced["skipped"].any() and forced.height == len(fakes.FAKE_SCHEMAS)


def test_changed_input_file_triggers_recompute_of_that_session_only(built):
    root, raws = built
    spec = json.loads((raws[1] / "fake.json").read_text())
    spec["n_trials"] = 7
    (raws[1] / "fake.json").write_text(json.dumps(spec))
    with _threads() as ex:
        out = cache.convert(raws, root, executor=ex, progress=False)
    recomputed = out.filter(~pl.col("skipped"))["session_id"].unique().to_list()
    assert recomputed == [_sid(1)]
    assert cache.scan_trials(root).filter(pl.col("session_id") == _sid(1)).collect().height == 7


def test_schema_version_bump_recomputes(built, monkeypatch):
    root, raws = built
    import npc_frames.schemas as schemas

    monkeypatch.setattr(schemas, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    out = cache.convert(raws[:1], root, progress=False)
    assert not out["skipped"].any()
    assert (out["schema_version"] == SCHEMA_VERSION + 1).all()


def test_a_changed_component_schema_recomputes_that_component_only(built, monkeypatch):
    # a column added to one schema (no SCHEMA_VERSION bump, as a library upgrade would add it):
    # that component is recomputed in every session and gains the column; nothing else is
    root, raws = built
    import dataclasses

    import npc_frames.schemas as schemas
    from npc_frames.schemas import Column

    old = schemas.SCHEMAS["trials"]
    extra = Column("new_flag", pl.Boolean, "a column added by an upgrade", required=False)
    new = dataclasses.replace(old, columns=(*old.columns, extra))
    assert new.digest != old.digest
    monkeypatch.setitem(schemas.SCHEMAS, "trials", new)
    out = cache.convert(raws, root, progress=False)
    rows = out.filter(pl.col("part").is_null())
    recomputed = rows.filter(~pl.col("skipped"))
    assert sorted(recomputed["component"].unique().to_list()) == ["trials"]
    assert recomputed.height == len(raws)
    assert "new_flag" in cache.scan_trials(root).collect_schema().names()
    # and the next convert is unchanged again
    again = cache.convert(raws, root, progress=False)
    assert again["skipped"].all()


def test_schema_digest_covers_structure_not_descriptions():
    import dataclasses

    from npc_frames.schemas import SCHEMAS, Column

    base = SCHEMAS["running_speed"]
    reworded = dataclasses.replace(
        base,
        columns=tuple(
            dataclasses.replace(c, description=c.description + "!") for c in base.columns
        ),
    )
    assert reworded.digest == base.digest
    retyped = dataclasses.replace(
        base, columns=(*base.columns[:-1], dataclasses.replace(base.columns[-1], dtype=pl.Float32))
    )
    renamed = dataclasses.replace(
        base, columns=(*base.columns[:-1], dataclasses.replace(base.columns[-1], name="speed2"))
    )
    optional = dataclasses.replace(
        base, columns=(*base.columns, Column("x", pl.Int64, "x", required=False))
    )
    assert len({base.digest, retyped.digest, renamed.digest, optional.digest}) == 4


def test_failing_component_is_recorded_and_others_still_written(fake, tmp_path):
    raws = _raws(tmp_path, n=1)
    root = tmp_path / "cache"
    cache.convert(raws, root, progress=False)
    assert (root / "trials" / f"session_id={_sid(0)}" / "data.parquet").exists()
    # the trials input breaks: the catalog says why, its stale file is gone, others are rewritten
    spec = json.loads((raws[0] / "fake.json").read_text())
    spec["fail"] = ["trials"]
    (raws[0] / "fake.json").write_text(json.dumps(spec))
    out = cache.convert(raws, root, progress=False)
    row = out.filter(pl.col("component") == "trials").row(0, named=True)
    assert row["status"] == "failed"
    assert row["error"].startswith("BadFormatError: fake trials input is broken")
    assert "fake.json" in row["error"]
    assert not (root / "trials" / f"session_id={_sid(0)}" / "data.parquet").exists()
    assert set(out.filter(pl.col("status") == "ok")["component"]) == {"sessions", "units"}
    cat = cache.read_catalog(root)
    assert cat.filter(pl.col("component") == "trials")["status"].to_list() == ["failed"]
    # a deterministic failure is not retried while inputs and library version are unchanged
    assert cache.convert(raws, root, progress=False)["skipped"].all()


def test_convert_submits_the_largest_sessions_first(fake, tmp_path):
    """A pool that ends with a large session idles its other workers: sessions are submitted by
    the bytes discovery found, largest first, the given order kept among equals."""
    raws = _raws(tmp_path, 4)
    for raw, pad in ((raws[1], 5000), (raws[2], 3000)):  # JSON stays valid with trailing spaces
        f = raw / "fake.json"
        f.write_text(f.read_text() + " " * pad)
    submitted: list[str] = []

    class Recording(cf.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            submitted.append(args[0].raw_path)
            return super().submit(fn, *args, **kwargs)

    with Recording(1) as ex:
        out = cache.convert(raws, tmp_path / "cache", executor=ex, progress=False)
    assert submitted == [str(raws[i]) for i in (1, 2, 0, 3)]
    assert set(out["session_id"]) == {_sid(i) for i in range(4)}
    assert set(out["status"]) <= {"ok", "empty", "absent"}


def test_missing_raw_folder_is_reported_not_raised(fake, tmp_path):
    out = cache.convert([tmp_path / "ecephys_668755_2023-08-31_12-00-00"], tmp_path / "c")
    assert out["component"].to_list() == ["*"]
    assert out["error"][0].startswith("MissingFileError")
    assert cache.read_catalog(tmp_path / "c").height == 0


def test_convert_rejects_unknown_component(fake, tmp_path):
    with pytest.raises(SchemaError, match="unknown component"):
        cache.convert([], tmp_path, components=["nope"])


def test_components_subset(fake, tmp_path):
    raws = _raws(tmp_path, n=1)
    out = cache.convert(raws, tmp_path / "c", components=["trials"], progress=False)
    assert out["component"].to_list() == ["trials"]
    assert not (tmp_path / "c" / "units").exists()


# ------------------------------------------------------------------------------ ids, paths
@pytest.mark.parametrize(
    "bad", ["../668755_2023-08-31", "/etc/668755_2023-08-31", "668755_2023-08-31/..", "a\\b"]
)
def test_session_id_escaping_the_cache_root_is_rejected(fake, tmp_path, bad):
    with pytest.raises(InvalidIdError, match="safe path component"):
        cache.data_path(str(tmp_path), "trials", bad)
    with pytest.raises(InvalidIdError):
        cache.read_session(bad, tmp_path)


def test_manifest_key_escaping_root_is_rejected(fake, tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text('"../../668755_2023-08-31":\n  raw_path: /x\n')
    with pytest.raises(BadFormatError, match="not a session id") as info:
        cache.convert(None, tmp_path / "c", manifest=m)
    assert str(m) in str(info.value)


def test_cache_root_defaults_to_env_then_local_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("NPC_FRAMES_CACHE", str(tmp_path / "envcache"))
    assert cache.cache_root() == str(tmp_path / "envcache")
    monkeypatch.delenv("NPC_FRAMES_CACHE")
    monkeypatch.chdir(tmp_path)
    assert cache.cache_root() == str(tmp_path / "npc_frames_cache")


# -------------------------------------------------------------------------------- manifest
def test_manifest_notes_and_invalid_times_reach_components(fake, tmp_path):
    raws = _raws(tmp_path, n=2)
    manifest = {
        _sid(0): {
            "raw_path": str(raws[0]),
            "notes": "probe C broke",
            "issues": ["https://github.com/x/y/issues/1"],
            "invalid_times": [{"start_time": 10.0, "stop_time": 20.0, "reason": "bump"}],
        },
        f"ecephys_{_sid(1)}": str(raws[1]),  # any parseable spelling of the id, path only
    }
    m = tmp_path / "manifest.json"
    m.write_text(json.dumps(manifest))
    with _threads() as ex:
        out = cache.convert(None, tmp_path / "c", manifest=m, executor=ex, progress=False)
    assert set(out["session_id"]) == {_sid(0), _sid(1)}
    sessions = cache.scan_sessions(tmp_path / "c").sort("session_id").collect()
    assert sessions["notes"].to_list() == ["probe C broke", None]
    assert sessions["issues"].to_list() == [["https://github.com/x/y/issues/1"], []]
    inv = cache.scan_invalid_times(tmp_path / "c").collect()
    assert inv.rows() == [(_sid(0), 10.0, 20.0, "bump")]


def test_manifest_annotations_apply_to_explicit_raw_paths_yaml(fake, tmp_path):
    raws = _raws(tmp_path, n=1)
    m = tmp_path / "manifest.yaml"
    m.write_text(f"sessions:\n  - session_id: {_sid(0)}\n    notes: yaml note\n")
    cache.convert(raws, tmp_path / "c", manifest=m, progress=False)
    assert cache.scan_sessions(tmp_path / "c").collect()["notes"].to_list() == ["yaml note"]


def test_manifest_entry_without_raw_path_is_a_parameter_error(fake, tmp_path):
    m = tmp_path / "m.json"
    m.write_text(json.dumps({_sid(0): {"notes": "x"}}))
    with pytest.raises(ParameterError, match="no raw_path"):
        cache.convert(None, tmp_path / "c", manifest=m)


# ---------------------------------------------------------------------- executors, progress
def test_default_process_pool_and_thread_pool_write_identical_bytes(fake, tmp_path):
    raws = _raws(tmp_path)
    cache.convert(raws, tmp_path / "pool", progress=False)  # default: spawn process pool
    with _threads() as ex:
        cache.convert(raws, tmp_path / "threads", executor=ex, progress=False)
    a = sorted((tmp_path / "pool").rglob("data.parquet"))
    b = sorted((tmp_path / "threads").rglob("data.parquet"))
    assert [p.relative_to(tmp_path / "pool") for p in a] == [
        p.relative_to(tmp_path / "threads") for p in b
    ]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))


def test_default_workers_bounded_by_sessions_and_cores():
    assert cache.default_workers(1) == 1
    assert 1 <= cache.default_workers(1000) <= (os.cpu_count() or 1)


def test_progress_bar_draws_on_request_and_is_quiet_otherwise(fake, tmp_path, capsys):
    raws = _raws(tmp_path, n=2)
    with _threads() as ex:
        cache.convert(raws, tmp_path / "c", executor=ex, progress=True)
    err = capsys.readouterr().err
    assert "sessions: 100%" in err and "2/2" in err and "components" in err
    cache.convert(raws[:1], tmp_path / "c", progress=None)  # stderr is not a TTY under pytest
    assert capsys.readouterr().err == ""
    # one session runs in this process: the bar also names the component being computed
    cache.convert(raws[:1], tmp_path / "c", progress=True, overwrite=True)
    err = capsys.readouterr().err
    assert f"{_sid(0)}: trials" in err and "1/1" in err


# ------------------------------------------------------------------------------------- CLI
def test_cli_convert_sql_info_round_trip(fake, tmp_path, capsys, monkeypatch):
    from npc_frames.cli import main

    raws = _raws(tmp_path, n=2)
    monkeypatch.setenv("NPC_FRAMES_CACHE", str(tmp_path / "c"))
    assert main(["convert", *map(str, raws), "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "sql",
                "SELECT session_id, count(*) AS n FROM trials GROUP BY 1 ORDER BY 1",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == f"session_id,n\n{_sid(0)},20\n{_sid(1)},20\n"
    out = tmp_path / "x.parquet"
    assert (
        main(
            [
                "sql",
                "SELECT * FROM units WHERE structure = ?",
                "--param",
                "CA1",
                "--format",
                "parquet",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert pl.read_parquet(out).equals(
        cache.scan_units().filter(pl.col("structure") == "CA1").collect()
    )
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "2 sessions, 4 components" in text and "units" in text


def test_cli_convert_reports_failures_with_exit_status_1(fake, tmp_path, capsys):
    from npc_frames.cli import main

    raws = _raws(tmp_path, n=1, fail=("units",))
    assert main(["convert", str(raws[0]), "--cache", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "1 failed" in err and "BadFormatError: fake units input is broken" in err
    assert main(["info", "--cache", str(tmp_path / "c")]) == 0
    assert "failures (1):" in capsys.readouterr().out


def test_cli_sql_parquet_without_output_is_an_error(fake, tmp_path, capsys):
    from npc_frames.cli import main

    assert main(["sql", "SELECT 1", "--cache", str(tmp_path), "--format", "parquet"]) == 2  # usage
    assert "--output" in capsys.readouterr().err
