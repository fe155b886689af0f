"""The same convert/scan/sql round trip with raw data and cache on S3 (moto on 127.0.0.1)."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
from pathlib import Path

import polars as pl
import pytest

import helpers.fakes as fakes
from helpers.s3server import S3Server, s3_endpoint  # noqa: F401  (fixture)
from npc_frames import cache

pytestmark = pytest.mark.s3
DAY0 = dt.date(2023, 8, 31)


def _sid(i: int) -> str:
    return f"{668755 + i}_{(DAY0 + dt.timedelta(days=i)).isoformat()}"


@pytest.fixture
def s3_raws(s3_endpoint: S3Server, tmp_path: Path) -> tuple[list[Path], list[str]]:  # noqa: F811
    local = [
        fakes.make_fake_session(tmp_path / "raw", 668755 + i, DAY0 + dt.timedelta(days=i), seed=i)
        for i in range(2)
    ]
    bucket = s3_endpoint.bucket("raw")
    urls = [s3_endpoint.upload_folder(p, bucket, f"data/{p.name}") for p in local]
    return local, urls


@pytest.mark.slow
def test_s3_round_trip_matches_local_bytes_scan_and_sql(
    monkeypatch,
    tmp_path,
    s3_endpoint: S3Server,  # noqa: F811
    s3_raws,
):
    fakes.install(monkeypatch)
    local, urls = s3_raws
    bucket = s3_endpoint.bucket("cache")
    root = f"s3://{bucket}/npc/v1"
    with cf.ThreadPoolExecutor(2) as ex:
        out = cache.convert(urls, root, executor=ex, progress=False)
        cache.convert(local, tmp_path / "local", executor=ex, progress=False)
    assert set(out["status"]) <= {"ok", "empty"} and out.height == 2 * len(fakes.FAKE_SCHEMAS)
    keys = s3_endpoint.keys(bucket)
    assert "npc/v1/catalog.parquet" in keys
    assert f"npc/v1/units/session_id={_sid(1)}/data.parquet" in keys
    assert not [k for k in keys if k.endswith(".tmp")]
    # byte-identical component files on S3 and locally
    for key in (k for k in keys if k.endswith("data.parquet")):
        remote = s3_endpoint.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert remote == (tmp_path / "local" / key.removeprefix("npc/v1/")).read_bytes(), key
    # scans (Polars object_store), SQL (DuckDB through fsspec), catalog, read_session
    got = cache.scan_units(root).filter(pl.col("structure") == "CA1").sort("unit_id").collect()
    want = cache.scan_units(tmp_path / "local").filter(pl.col("structure") == "CA1")
    assert got.equals(want.sort("unit_id").collect())
    q = "SELECT session_id, count(*) AS n FROM spike_times WHERE session_id = ? GROUP BY 1"
    assert cache.sql(q, root, params=[_sid(0)]).equals(
        cache.sql(q, tmp_path / "local", params=[_sid(0)])
    )
    cat = cache.read_catalog(root)
    assert cat.height == 2 * len(fakes.FAKE_SCHEMAS)
    assert cat["raw_path"].str.starts_with("s3://").all()
    assert cache.read_session(_sid(1), root)["trials"].height == 20
    # incremental on S3 too: etags unchanged -> skipped
    again = cache.convert(urls, root, progress=False)
    assert again["skipped"].all()


def test_s3_cli_convert_and_sql(monkeypatch, capsys, s3_endpoint: S3Server, s3_raws):  # noqa: F811
    from npc_frames.cli import main

    fakes.install(monkeypatch)
    _, urls = s3_raws
    root = f"s3://{s3_endpoint.bucket('cli')}/cache"
    monkeypatch.setenv("NPC_FRAMES_CACHE", root)
    assert main(["convert", *urls, "--workers", "1", "--quiet"]) == 0
    assert main(["sql", "SELECT count(*) AS n FROM trials", "--format", "csv"]) == 0
    assert capsys.readouterr().out.endswith("n\n40\n")
    assert main(["info"]) == 0
    assert "2 sessions" in capsys.readouterr().out
