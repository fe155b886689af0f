"""Process hygiene of convert's worker pool, and the identity checks on its inputs.

* a script without ``if __name__ == "__main__":`` converts every session (in one process, with
  a warning) instead of recording them all failed;
* ``kill -9`` / SIGTERM of a multi-session convert leaves no live worker and no visible partial
  file, and a rerun completes byte-identically;
* a worker that dies (``os._exit``, like an OOM kill) fails only its own session;
* two inputs with one session id raise before anything is written; a session from another raw
  folder does not replace catalog rows unless ``overwrite=True``; a parent folder is searched and
  its non-session subfolders (``*.truth``) are listed as ignored.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

import helpers.fakes as fakes
from npc_frames import cache
from npc_frames.errors import CacheError, ParameterError

DAY0 = dt.date(2023, 8, 31)
HERE = Path(__file__).parent


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.install(monkeypatch)


def _raws(root: Path, n: int, **kw: object) -> list[Path]:
    return [
        fakes.make_fake_session(root / "raw", 668755 + i, DAY0 + dt.timedelta(days=i), seed=i, **kw)  # type: ignore[arg-type]
        for i in range(n)
    ]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


SETUP = """
import sys, time
import helpers.fakes as fakes
import npc_frames as nf
import npc_frames.components as components, npc_frames.schemas as schemas
components.COMPONENTS = dict(fakes.FAKE_COMPONENTS)
schemas.SCHEMAS = dict(fakes.FAKE_SCHEMAS)
cache_dir, *raws = sys.argv[1:]
"""


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text(SETUP + textwrap.dedent(body))
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("data.parquet"))}


# ------------------------------------------------------------------------------- main guard
def test_script_without_main_guard_converts_every_session(fake, tmp_path):
    raws = _raws(tmp_path, 3)
    script = _script(
        tmp_path,
        """
        out = nf.convert(raws, cache_dir, workers=2, progress=False)
        print("statuses", sorted(set(out["status"])))
        """,
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "c"), *map(str, raws)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "statuses ['empty', 'ok']" in proc.stdout or "statuses ['ok']" in proc.stdout
    assert 'if __name__ == "__main__":' in proc.stderr  # the warning says how to fix it
    cat = cache.read_catalog(tmp_path / "c")
    assert cat["session_id"].n_unique() == 3
    assert not cat["status"].is_in(["failed", "partial"]).any()


def test_guarded_script_converts_in_worker_processes(fake, tmp_path):
    raws = _raws(tmp_path, 3)
    script = _script(
        tmp_path,
        """
        import warnings
        if __name__ == "__main__":
            warnings.simplefilter("error")  # no fallback warning: the pool is used
            out = nf.convert(raws, cache_dir, workers=2, progress=False)
            print("statuses", sorted(set(out["status"])))
        """,
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "c"), *map(str, raws)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "failed" not in proc.stdout
    assert cache.read_catalog(tmp_path / "c")["session_id"].n_unique() == 3


def test_main_guard_detection_reads_the_script(tmp_path):
    import ast

    from npc_frames.cache.pool import _guarded_lines

    tree = ast.parse("x = 1\nif __name__ == '__main__':\n    y = 2\n    z = 3\n")
    assert _guarded_lines(tree) == [(2, 4)]
    assert _guarded_lines(ast.parse("if '__main__' == __name__:\n    pass\n")) == [(1, 2)]
    assert _guarded_lines(ast.parse("if __name__ == 'x':\n    pass\n")) == []


# --------------------------------------------------------------------------- parent death
def _workers_of(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill9", "term"])
def test_killed_convert_leaves_no_workers_and_rerun_is_byte_identical(fake, tmp_path, sig):
    raws = _raws(tmp_path, 4, sleep=2.0)
    script = _script(
        tmp_path,
        """
        if __name__ == "__main__":
            nf.convert(raws, cache_dir, workers=2, progress=False)
        """,
    )
    root = tmp_path / "c"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root), *map(str, raws)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    workers: list[int] = []
    # wait until both workers are computing (a units file is being slept on)
    while time.monotonic() < deadline:
        workers = [
            p
            for p in _workers_of(proc.pid)
            if "resource_tracker" not in " ".join(psutil.Process(p).cmdline())
        ]
        if len(workers) >= 2 and (root / "trials").exists():
            break
        time.sleep(0.1)
    assert len(workers) >= 2, "the pool never started"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(workers) == []
    # what is visible is complete: every data file parses and matches the catalog
    for path in root.rglob("data.parquet"):
        pl.read_parquet(path)
    # a rerun completes, byte-identical to an uninterrupted convert
    rerun = cache.convert([str(r) for r in raws], root, workers=2, progress=False)
    assert not rerun["status"].is_in(["failed", "partial"]).any()
    clean = tmp_path / "clean"
    cache.convert([str(r) for r in raws], clean, workers=2, progress=False)
    assert _files(root) == _files(clean)
    assert list(root.rglob("*.tmp")) == []  # the killed writes' hidden temp files are swept


# ------------------------------------------------------------------------------ worker crash
def test_a_crashing_worker_fails_only_its_own_session(fake, tmp_path):
    raws = _raws(tmp_path, 3)
    crashing = fakes.make_fake_session(tmp_path / "raw", 668799, DAY0, seed=9, crash=("units",))
    script = _script(
        tmp_path,
        """
        if __name__ == "__main__":
            out = nf.convert(raws, cache_dir, workers=2, progress=False)
            out.write_parquet(cache_dir + "/run.parquet")
        """,
    )
    (tmp_path / "c").mkdir()
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "c"), *map(str, [*raws, crashing])],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    run = pl.read_parquet(tmp_path / "c" / "run.parquet")
    bad = run.filter(pl.col("status") == "failed")
    assert bad.select("session_id", "component").rows() == [("668799_2023-08-31", "*")]
    assert "WorkerCrashedError" in bad["error"].item()
    good = run.filter(pl.col("session_id") != "668799_2023-08-31")
    assert good["session_id"].n_unique() == 3
    assert set(good["status"]) <= {"ok", "empty"}


# --------------------------------------------------------------------------------- identity
def test_two_inputs_with_one_session_id_raise_before_writing(fake, tmp_path):
    (a,) = _raws(tmp_path / "one", 1)
    (b,) = _raws(tmp_path / "two", 1)
    with pytest.raises(ParameterError, match="two inputs resolve to session"):
        cache.convert([a, b], tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.parquet"))


def test_other_raw_folder_does_not_replace_rows_without_overwrite(fake, tmp_path):
    (a,) = _raws(tmp_path / "one", 1)
    (b,) = _raws(tmp_path / "two", 1, fail=("units",))
    root = tmp_path / "c"
    cache.convert([a], root, progress=False)
    before = cache.read_catalog(root)
    run = cache.convert([b], root, progress=False)
    assert run.select("component", "status").rows() == [("*", "failed")]
    assert "CacheError" in run["error"].item() and "overwrite=True" in run["error"].item()
    assert cache.read_catalog(root).equals(before)
    run = cache.convert([b], root, progress=False, overwrite=True)
    cat = cache.read_catalog(root)
    assert set(cat["raw_path"]) == {str(b)}
    assert cat.filter(pl.col("component") == "units")["status"].item() == "failed"


def test_parent_folder_is_searched_and_truth_folders_are_ignored(fake, tmp_path):
    raws = _raws(tmp_path, 2)
    parent = raws[0].parent
    truth = parent / f"{raws[0].name}.truth"
    truth.mkdir()
    (truth / "truth.json").write_text("{}")
    run = cache.convert([parent], tmp_path / "c", progress=False)
    ignored = run.filter(pl.col("status") == "ignored")
    assert ignored["raw_path"].to_list() == [str(truth)]
    converted = run.filter(pl.col("component") != "*")
    assert sorted(converted["session_id"].unique()) == sorted(
        f"{668755 + i}_{DAY0 + dt.timedelta(days=i)}" for i in range(2)
    )
    assert not converted["status"].is_in(["failed"]).any()
    # a glob that also matches the .truth folder: it is ignored, not converted over good rows
    run = cache.convert([*raws, truth], tmp_path / "c", progress=False)
    assert run.filter(pl.col("status") == "ignored")["raw_path"].to_list() == [str(truth)]
    assert run.filter(pl.col("component") != "*")["skipped"].all()


# ---------------------------------------------------------------------------------- SQL errors
def test_sql_maps_query_errors_to_parameter_error_and_io_to_cache_error(fake, tmp_path):
    import duckdb

    raws = _raws(tmp_path, 1)
    root = tmp_path / "c"
    cache.convert(raws, root, progress=False)
    with pytest.raises(ParameterError) as info:
        cache.sql("SELEC 1", root)
    assert isinstance(info.value.__cause__, duckdb.ParserException)
    with pytest.raises(ParameterError) as info:
        cache.sql("SELECT no_such_column FROM trials", root)
    assert isinstance(info.value.__cause__, duckdb.BinderException)
    (path,) = (root / "trials").rglob("data.parquet")
    path.write_bytes(b"not parquet at all")
    with pytest.raises(CacheError) as err:
        cache.sql("SELECT count(*) FROM trials", root)
    assert isinstance(err.value.__cause__, duckdb.Error)
    assert not isinstance(err.value, ParameterError)


def test_session_status_summarises_partial_and_failed_parts(fake, tmp_path):
    (raw,) = _raws(tmp_path, 1, fail=("units",))
    root = tmp_path / "c"
    cache.convert([raw], root, progress=False)
    status = cache.session_status("668755_2023-08-31", root)
    assert status.status == "failed" and not status.is_complete
    assert status.components["units"] == "failed" and status.components["trials"] == "ok"
    assert len(status.problems) == 1 and status.problems[0].startswith("units: failed: ")
    with pytest.raises(CacheError):
        cache.session_status("668756_2023-09-01", root)


def test_fork_server_preload_names_importable_modules():
    # the fork server skips a preload module that fails to import, silently: workers would then
    # pay that import themselves
    import importlib

    from npc_frames.cache import pool
    from npc_frames.components import COMPONENTS

    names = pool.preload_modules()
    for name in names:
        assert importlib.import_module(name).__name__ == name
    # every component module is preloaded, so no worker imports one itself
    assert {t.split(":")[0] for t in COMPONENTS.values()} <= set(names)
    assert set(pool.PRELOAD) <= set(names)


def test_workers_see_the_environment_of_the_converting_process_now(monkeypatch) -> None:
    """Workers fork from a long-lived fork server; variables set after it started (credentials,
    an S3 endpoint) must still reach them, as they would reach a freshly spawned worker."""
    import os

    from npc_frames.cache import pool

    def run(tasks: list[str]) -> dict[int, object]:
        got: dict[int, object] = {}
        pool.run_in_pool(
            os.getenv,
            tasks,
            2,
            on_result=got.__setitem__,
            on_crash=lambda i, e: got.__setitem__(i, e),
        )
        return got

    assert run(["NPC_FRAMES_TEST_LATE_VAR", "HOME"])[0] is None  # starts the fork server
    monkeypatch.setenv("NPC_FRAMES_TEST_LATE_VAR", "set-after-the-server-started")
    assert run(["NPC_FRAMES_TEST_LATE_VAR"]) == {0: "set-after-the-server-started"}
