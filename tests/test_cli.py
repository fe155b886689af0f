"""The ``npc-frames`` command reads well: readable tables, one-line typed errors, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from helpers.nwb_frames import SESSION_ID, make_frames
from npc_frames.cli import EXIT_BROKEN_PIPE, main
from npc_frames.commands.demo import MARKER, prepare_out
from npc_frames.errors import ParameterError

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return make_frames()


@pytest.fixture(scope="module")
def cache(frames: dict[str, pl.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.nwb_frames import _fake_cache
    from npc_frames import cache as cache_mod
    from npc_frames.cache_layout import to_parquet_bytes

    root = tmp_path_factory.mktemp("cache")
    _fake_cache(root, frames, {})
    # the data files as convert lays them out (packed list columns), so sql and scan read them
    for name, df in frames.items():
        path = Path(cache_mod.data_path(str(root), name, SESSION_ID))
        path.write_bytes(to_parquet_bytes(df, component=name))
    return root


def _run(*argv: str, stdin_pipe: str = "") -> subprocess.CompletedProcess[str]:
    """Run the command in a child process (``| stdin_pipe`` through a shell when given)."""
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "100"}
    cmd = [sys.executable, "-m", "npc_frames.cli", *argv]
    if stdin_pipe:
        import shlex

        line = " ".join(map(shlex.quote, cmd)) + f" | {stdin_pipe}; echo rc=${{PIPESTATUS[0]}}"
        return subprocess.run(
            ["bash", "-c", line], capture_output=True, text=True, env=env, timeout=120
        )
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def _one_error_line(err: str, kind: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"npc-frames: error: {kind}"), lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------- sql
def test_sql_wide_table_is_truncated_with_the_count_of_hidden_columns(
    cache: Path, frames: dict[str, pl.DataFrame], capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["sql", "SELECT * FROM trials", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    width = len(frames["trials"].columns)
    header = next(line for line in out.splitlines() if "session_id" in line)
    shown = [c.strip() for c in header.strip("│ ").split("┆")]
    assert shown[0] == "session_id" and len(shown) >= 3
    assert shown == frames["trials"].columns[: len(shown)]
    hidden = frames["trials"].columns[len(shown) :]
    assert f"{width - len(shown)} more columns: {', '.join(hidden)}"[:99] in out
    # every line of the table fits the terminal
    assert max(len(line) for line in out.splitlines()) <= 100
    # all rows are shown (12 trials)
    assert out.count(SESSION_ID) == frames["trials"].height


def test_sql_csv_writes_list_cells_as_json(
    cache: Path, frames: dict[str, pl.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    query = "SELECT unit_id, spike_times, obs_intervals FROM units ORDER BY unit_id"
    assert main(["sql", query, "--cache", str(cache), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    want = frames["units"].sort("unit_id")
    assert [r["unit_id"] for r in rows] == want["unit_id"].to_list()
    for r, spikes, obs in zip(
        rows, want["spike_times"].to_list(), want["obs_intervals"].to_list(), strict=True
    ):
        assert json.loads(r["spike_times"]) == spikes
        assert json.loads(r["obs_intervals"]) == obs
    assert any(json.loads(r["spike_times"]) == [] for r in rows)  # the silent unit


def test_missing_cache_is_an_error_not_zero_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", "SELECT * FROM trials", "--cache", str(tmp_path / "nope")]) == 1
    line = _one_error_line(capsys.readouterr().err, "CacheError")
    assert "does not exist" in line and str(tmp_path / "nope") in line
    afile = tmp_path / "cache.txt"
    afile.write_text("x")
    assert main(["sql", "SELECT 1", "--cache", str(afile)]) == 1
    line = _one_error_line(capsys.readouterr().err, "CacheError")
    assert "is a file" in line and str(afile) in line


def test_unknown_table_is_a_one_line_usage_error(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", "SELECT * FROM nosuch", "--cache", str(cache)]) == 2
    _one_error_line(capsys.readouterr().err, "ParameterError")


# ---------------------------------------------------------------------------------- info
def test_info_json_lists_sessions_and_statuses(
    cache: Path, frames: dict[str, pl.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "--cache", str(cache), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cache"] == str(cache)
    assert [s["session_id"] for s in data["sessions"]] == [SESSION_ID]
    session = data["sessions"][0]
    assert session["status"] == "ok"
    assert session["components"] == len(frames)
    assert session["ok"] == sum(df.height > 0 for df in frames.values())
    assert session["rows"] == sum(df.height for df in frames.values())
    assert data["problems"] == []


def test_info_shows_a_partial_or_failed_session_status(
    frames: dict[str, pl.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers.nwb_frames import _fake_cache
    from npc_frames import cache as cache_mod

    _fake_cache(tmp_path, frames, {"units": "AlignmentError: no barcodes"})
    path = tmp_path / cache_mod.CATALOG_FILE
    cat = pl.read_parquet(path)
    cat.with_columns(
        pl.when(pl.col("component") == "licks")
        .then(pl.lit("partial"))
        .otherwise(pl.col("status"))
        .alias("status")
    ).write_parquet(path)
    assert main(["info", "--cache", str(tmp_path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sessions"][0]["status"] == "failed"
    assert {(p["component"], p["status"]) for p in data["problems"]} == {
        ("units", "failed"),
        ("licks", "partial"),
    }
    assert main(["info", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "failures (1):" in out and "incomplete (1):" in out
    assert f"{SESSION_ID} licks (partial)" in out


def test_info_on_a_cache_that_does_not_exist_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for fmt in ("table", "json"):
        assert main(["info", "--cache", str(tmp_path / "nope"), "--format", fmt]) == 1
        _one_error_line(capsys.readouterr().err, "CacheError")
    assert capsys.readouterr().out == ""


def test_info_into_a_closed_pipe_ends_quietly(cache: Path) -> None:
    # `true` exits without reading: every write of the command meets a closed pipe
    res = _run("info", "--cache", str(cache), stdin_pipe="true")
    assert res.stderr == ""
    assert res.stdout.strip() == f"rc={EXIT_BROKEN_PIPE}"
    res = _run("info", "--cache", str(cache), stdin_pipe="head -n 1")
    assert res.stderr == ""
    assert res.stdout.splitlines()[0] == f"cache: {cache}"


# -------------------------------------------------------------------------------- errors
def test_usage_error_is_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "--no-such-option", "SELECT 1"]) == 2
    line = _one_error_line(capsys.readouterr().err, "usage")
    assert "--no-such-option" in line
    assert main(["info", "--format", "yaml"]) == 2
    assert "invalid choice" in _one_error_line(capsys.readouterr().err, "usage")


def test_debug_adds_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "info", "--cache", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("npc-frames: error: CacheError")
    # after the subcommand too
    assert main(["info", "--debug", "--cache", str(tmp_path / "nope")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_plot_raster_unknown_by_column_is_one_line_exit_2(
    cache: Path, frames: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    unit = frames["units"]["unit_id"][1]
    out = tmp_path / "r.png"
    res = _run(
        "plot", "raster", unit, "--cache", str(cache), "--by", "stim_name,nosuch", "-o", str(out)
    )
    assert res.returncode == 2
    line = _one_error_line(res.stderr, "ParameterError")
    assert "'nosuch'" in line
    assert not out.exists()
    res = _run(
        "plot",
        "raster",
        unit,
        "--cache",
        str(cache),
        "--by",
        "stim_name,block_index",
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 10_000


def test_convert_quiet_still_prints_failures(tmp_path: Path) -> None:
    pytest.importorskip("npc_frames.synth")
    raw = tmp_path / "not_a_session"
    raw.mkdir()
    res = _run("convert", str(raw), "--cache", str(tmp_path / "c"), "--quiet", "--workers", "1")
    assert res.returncode == 1
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("npc-frames: failed: ")
    assert "InvalidIdError" in lines[0] and "not_a_session" in lines[0]


def test_nwb_of_a_partial_session_warns_in_one_line(
    frames: dict[str, pl.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers.nwb_frames import _fake_cache
    from npc_frames import cache as cache_mod

    small = {k: frames[k] for k in ("sessions", "trials", "licks")}
    _fake_cache(tmp_path, small, {})
    path = tmp_path / cache_mod.CATALOG_FILE
    pl.read_parquet(path).with_columns(
        pl.when(pl.col("component") == "trials")
        .then(pl.lit("partial"))
        .otherwise(pl.col("status"))
        .alias("status")
    ).write_parquet(path)
    out = tmp_path / "x.nwb"
    assert main(["nwb", SESSION_ID, "--cache", str(tmp_path), "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("npc-frames: warning: session")
    assert "trials (partial" in err[0]


def test_nwb_into_an_unwritable_place_is_one_line_exit_1(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status = main(["nwb", SESSION_ID, "--cache", str(cache), "-o", str(blocker / "x.nwb")])
    assert status == 1
    line = _one_error_line(capsys.readouterr().err, "OutputError")
    assert str(blocker) in line


# ---------------------------------------------------------------------------------- demo
def test_demo_refuses_a_non_empty_folder_it_did_not_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine"
    (mine / "raw").mkdir(parents=True)
    (mine / "raw" / "precious.txt").write_text("keep me")
    assert main(["demo", "--out", str(mine)]) == 2
    line = _one_error_line(capsys.readouterr().err, "ParameterError")
    assert "not created by `npc-frames demo`" in line
    assert (mine / "raw" / "precious.txt").read_text() == "keep me"
    assert not (mine / MARKER).exists()
    with pytest.raises(ParameterError):
        prepare_out(mine, keep=True)


def test_demo_cleans_only_its_own_folder_and_its_own_subfolders(tmp_path: Path) -> None:
    out = tmp_path / "new" / "demo"
    assert prepare_out(out) == out.resolve()
    assert (out / MARKER).is_file()
    for name in ("raw", "cache", "nwb", "figures"):
        (out / name).mkdir()
        (out / name / "old").write_text("old")
    (out / "notes.txt").write_text("mine")
    prepare_out(out, keep=True)
    assert (out / "raw" / "old").exists()
    prepare_out(out)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "notes.txt"]
    # an empty folder is accepted (and marked); a file is refused
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_out(empty)
    assert (empty / MARKER).is_file()
    afile = tmp_path / "f"
    afile.write_text("x")
    with pytest.raises(ParameterError, match="is a file"):
        prepare_out(afile)
