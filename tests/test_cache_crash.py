"""Crash safety and concurrency of convert: SIGKILL mid-write, two converts into one cache."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

import helpers.fakes as fakes
from npc_frames import cache

DAY0 = dt.date(2023, 8, 31)
HERE = Path(__file__).parent

#: a convert run in a child process, with fake components; SLOW_FSYNC makes every write slow so
#: that the parent can kill it while a temporary file is being written
CHILD = textwrap.dedent(
    """
    import concurrent.futures as cf, os, sys, time
    import helpers.fakes as fakes
    import npc_frames.components as components, npc_frames.schemas as schemas
    components.COMPONENTS = dict(fakes.FAKE_COMPONENTS)
    schemas.SCHEMAS = dict(fakes.FAKE_SCHEMAS)
    delay = float(os.environ.get("SLOW_FSYNC", "0"))
    if delay:
        real = os.fsync
        def slow(fd):
            time.sleep(delay)
            real(fd)
        os.fsync = slow
    from npc_frames import cache
    cache_dir, *raws = sys.argv[1:]
    with cf.ThreadPoolExecutor(1) as ex:
        cache.convert(raws, cache_dir, executor=ex, progress=False)
    print("done")
    """
)


def _child(tmp_path: Path, cache_dir: Path, raws: list[Path], **env: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    # tests/ (helpers.fakes), then the caller's PYTHONPATH (a source tree under test)
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, **env}
    return subprocess.Popen(
        [sys.executable, str(script), str(cache_dir), *map(str, raws)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _raws(root: Path, n: int, **kw: object) -> list[Path]:
    return [
        fakes.make_fake_session(root / "raw", 668755 + i, DAY0 + dt.timedelta(days=i), seed=i, **kw)  # type: ignore[arg-type]
        for i in range(n)
    ]


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def _assert_cache_readable(root: Path) -> None:
    for comp in fakes.FAKE_SCHEMAS:
        df = cache.scan(comp, root).collect()  # every visible file parses
        assert df.schema == fakes.FAKE_SCHEMAS[comp].polars_schema
    visible = list(root.rglob("data.parquet"))
    assert all(not p.name.startswith(".") for p in visible)
    cache.read_catalog(root)  # readable (possibly empty)


@pytest.mark.slow
def test_sigkill_mid_write_leaves_readable_cache_and_rerun_completes(tmp_path, monkeypatch):
    fakes.install(monkeypatch)
    raws = _raws(tmp_path, 3)
    root = tmp_path / "cache"
    proc = _child(tmp_path, root, raws, SLOW_FSYNC="0.15")
    deadline = time.monotonic() + 60
    # wait until the child has committed some files and is in the middle of writing another
    while time.monotonic() < deadline:
        if len(list(root.rglob("data.parquet"))) >= 3 and _temp_files(root):
            break
        time.sleep(0.005)
    else:
        proc.kill()
        pytest.fail(f"child never wrote a temp file: {proc.communicate()}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    orphans = _temp_files(root)
    assert orphans, "the kill should have interrupted a write"
    _assert_cache_readable(root)
    # globs used by scans and DuckDB never match the temporary files
    matched = {
        Path(p) for c in fakes.FAKE_SCHEMAS for p in cache.storage.glob(cache._glob(str(root), c))
    }
    assert not matched & set(orphans)

    with cf.ThreadPoolExecutor(2) as ex:
        out = cache.convert(raws, root, progress=False, executor=ex)
    assert set(out["status"]) <= {"ok", "empty"}
    cat = cache.read_catalog(root)
    assert cat.height == 3 * len(fakes.FAKE_SCHEMAS)
    assert _temp_files(root) == []  # the dead writer's temporary files were cleaned up
    got = cache.scan_units(root).sort("unit_id").collect()
    want = pl.concat(
        [
            fakes.truth(fakes._spec_of(r), f"{668755 + i}_{DAY0 + dt.timedelta(days=i)}")["units"]
            for i, r in enumerate(raws)
        ]
    ).sort("unit_id")
    assert got.equals(want)


@pytest.mark.slow
def test_two_concurrent_converts_into_one_cache_leave_it_consistent(tmp_path, monkeypatch):
    fakes.install(monkeypatch)
    raws = _raws(tmp_path, 4, sleep=0.2)
    root = tmp_path / "cache"
    a = _child(tmp_path, root, raws[:3])
    b = _child(tmp_path, root, raws[1:])
    for p in (a, b):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    cat = cache.read_catalog(root)
    assert cat.height == 4 * len(fakes.FAKE_SCHEMAS)
    assert cat.select("session_id", "component").is_unique().all()
    assert set(cat["status"]) == {"ok", "empty"}
    _assert_cache_readable(root)
    for row in cat.filter(pl.col("status") == "ok").iter_rows(named=True):
        path = root / row["component"] / f"session_id={row['session_id']}" / "data.parquet"
        assert pl.read_parquet(path).height == row["rows"]
    assert _temp_files(root) == []
    # a third run finds everything up to date
    with cf.ThreadPoolExecutor(2) as ex:
        assert cache.convert(raws, root, executor=ex, progress=False)["skipped"].all()
