"""Converting through a dask.distributed LocalCluster gives byte-identical files to a local run."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt

import polars as pl
import pytest

import helpers.fakes as fakes
from npc_frames import cache

DAY0 = dt.date(2023, 8, 31)


@pytest.mark.slow
def test_dask_local_cluster_gives_byte_identical_frames(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    fakes.install(monkeypatch)  # also puts tests/ on PYTHONPATH for the worker processes
    raws = [
        fakes.make_fake_session(tmp_path / "raw", 668755 + i, DAY0 + dt.timedelta(days=i), seed=i)
        for i in range(3)
    ]
    with cf.ThreadPoolExecutor(1) as ex:
        cache.convert(raws, tmp_path / "local", executor=ex, progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        out = cache.convert(raws, tmp_path / "dask", executor=client.get_executor(), progress=False)
        # the work really ran in the worker processes
        assert len(client.scheduler_info()["workers"]) == 2
    assert set(out["status"]) <= {"ok", "empty"}
    local = sorted(
        p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("data.parquet")
    )
    remote = sorted(
        p.relative_to(tmp_path / "dask") for p in (tmp_path / "dask").rglob("data.parquet")
    )
    assert local == remote and len(local) == 3 * len(fakes.FAKE_SCHEMAS)
    for rel in local:
        assert (tmp_path / "local" / rel).read_bytes() == (tmp_path / "dask" / rel).read_bytes()
    a = cache.read_catalog(tmp_path / "local").drop("written_at", "seconds")
    b = cache.read_catalog(tmp_path / "dask").drop("written_at", "seconds")
    assert a.equals(b)
    assert cache.scan_units(tmp_path / "dask").collect().height == sum(
        fakes._spec_of(r)["n_units"] for r in raws
    )
    assert isinstance(out, pl.DataFrame)
