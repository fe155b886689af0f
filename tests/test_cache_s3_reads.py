"""Reads of a cache on S3: same results as locally, few requests, no wasted bytes, cached footers.

Requests and bytes are counted by the moto server itself (``helpers.s3server``), never by the
client. Bytes a query needs are computed here from the Parquet footers, independently of the
reader: footer + column chunks of the projected and filtered columns in the row groups whose
statistics admit the filter.
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.s3server import Request, S3Server, s3_endpoint  # noqa: F401  (fixture)
from npc_frames import cache
from npc_frames.cache import remote
from npc_frames.cache_layout import to_parquet_bytes

pytestmark = pytest.mark.s3
STRUCTURES = [f"S{k:02d}" for k in range(6)]
DURATION = 600.0


def _units(i: int, n_units: int = 240, n_spikes: int = 300_000) -> pl.DataFrame:
    """Units of one session: several structures, ~40 % QC pass, many row groups per file."""
    rng = np.random.default_rng(i)
    sid = f"{660000 + i}_2023-08-{1 + i:02d}"
    rates = rng.lognormal(0.0, 1.0, n_units)
    counts = rng.multinomial(n_spikes, rates / rates.sum())
    unit_of = np.repeat(np.arange(n_units), counts)
    times = np.sort(rng.uniform(0, DURATION, n_spikes) + unit_of * 1e4) - unit_of * 1e4
    offsets = np.concatenate([[0], np.cumsum(counts)])
    spikes = [times[a:b] for a, b in itertools.pairwise(offsets)]
    return pl.DataFrame(
        {
            "session_id": sid,
            "unit_id": [f"{sid}_A-{k}" for k in range(n_units)],
            "structure": rng.choice(STRUCTURES, n_units),
            "is_qc_pass": rng.random(n_units) < 0.4,
            "amplitude": rng.normal(100, 10, n_units),
            "spike_times": pl.Series(spikes, dtype=pl.List(pl.Float64)),
            "obs_intervals": [[[0.5, DURATION - 0.5]]] * n_units,
        }
    )


def _amplitudes(units: pl.DataFrame) -> pl.DataFrame:
    """The spike_amplitudes rows of `units`: one value per spike, as a real sorting has them."""
    n = units["spike_times"].list.len()
    rng = np.random.default_rng(len(units))
    flat = pl.Series(rng.normal(100.0, 20.0, int(n.sum())))
    offsets = np.concatenate([[0], np.cumsum(n.to_numpy())])
    amps = [flat[int(a) : int(b)].to_list() for a, b in itertools.pairwise(offsets)]
    return units.select("session_id", "unit_id", "structure").with_columns(
        electrode_group_name=pl.lit("probeA"),
        spike_amplitudes=pl.Series(amps, dtype=pl.List(pl.Float64)),
    )


#: channels x samples of each unit's average template (as a sorting's sparse templates give)
WAVEFORM_SHAPE = (32, 90)


def _waveforms(units: pl.DataFrame) -> pl.DataFrame:
    """The unit_waveforms rows of `units`: a float32 (channels x samples) template on 32
    consecutive channels per unit."""
    n_ch, n_samp = WAVEFORM_SHAPE
    n = units.height
    rng = np.random.default_rng(100 + n)
    values = rng.normal(0.0, 20.0, n * n_ch * n_samp).astype(np.float32)
    first = rng.integers(0, 384 - n_ch, n)
    channels = (first[:, None] + np.arange(n_ch)[None, :]).ravel().astype(np.int64)
    inner = pa.LargeListArray.from_arrays(
        pa.array(np.arange(0, values.size + 1, n_samp, dtype=np.int64)), pa.array(values)
    )
    outer_offsets = pa.array(np.arange(0, n * n_ch + 1, n_ch, dtype=np.int64))
    return units.select("session_id", "unit_id", "structure").with_columns(
        electrode_group_name=pl.lit("probeA"),
        channels=pl.Series(pl.from_arrow(pa.LargeListArray.from_arrays(outer_offsets, channels))),
        waveform_mean=pl.Series(pl.from_arrow(pa.LargeListArray.from_arrays(outer_offsets, inner))),
    )


def _trials(sid: str, n: int = 80) -> pl.DataFrame:
    stim = np.sort(np.random.default_rng(len(sid)).uniform(5, DURATION - 5, n))
    return pl.DataFrame(
        {
            "session_id": sid,
            "trial_index": np.arange(n),
            "start_time": stim - 1.0,
            "stop_time": stim + 2.0,
            "stim_start_time": stim,
        }
    )


def _write(root: Path, component: str, df: pl.DataFrame) -> Path:
    path = Path(cache.data_path(str(root), component, df["session_id"][0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_parquet_bytes(df, component=component))
    return path


@pytest.fixture(scope="module")
def caches(s3_endpoint: S3Server, tmp_path_factory) -> tuple[Path, str, str]:  # noqa: F811
    """A local cache of 3 sessions and the same files on S3: (local root, S3 root, bucket)."""
    local = tmp_path_factory.mktemp("cache")
    for i in range(3):
        units = _units(i)
        _write(local, "units", units)
        _write(local, "spike_amplitudes", _amplitudes(units))
        _write(local, "unit_waveforms", _waveforms(units))
        _write(local, "trials", _trials(units["session_id"][0]))
    bucket = s3_endpoint.bucket("reads")
    url = s3_endpoint.upload_folder(local, bucket, "cache")
    return local, url, bucket


def _q1(root: str | Path, structure: str = "S02") -> pl.DataFrame:
    return (
        cache.scan_units(root)
        .filter(pl.col("is_qc_pass") & (pl.col("structure") == structure))
        .select("session_id", "unit_id", "spike_times")
        .sort("unit_id")
        .collect()
    )


def _reads(s3: S3Server) -> list[Request]:
    return [r for r in s3.log.snapshot() if r.method in ("GET", "HEAD")]


def _needed(data: bytes, columns: set[str], structure: str | None) -> int:
    md = pq.ParquetFile(io.BytesIO(data)).metadata
    names = [md.schema.column(j).path for j in range(md.num_columns)]
    total = md.serialized_size + 8
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        if structure is not None:
            st = rg.column(names.index("structure")).statistics
            if not (st.min <= structure <= st.max):
                continue
        total += sum(
            rg.column(j).total_compressed_size
            for j, n in enumerate(names)
            if n.split(".")[0] in columns
        )
    return total


# ------------------------------------------------------------------------------ results
def test_s3_scan_filter_projection_equals_local(caches, monkeypatch):
    local, url, _ = caches
    remote.FOOTERS.clear()
    for structure in STRUCTURES[:3]:
        got, want = _q1(url, structure), _q1(local, structure)
        assert got.height > 0
        assert got.equals(want)
    full = cache.scan_units(url).sort("unit_id").collect()
    assert full.equals(cache.scan_units(local).sort("unit_id").collect())
    # files fetched one group at a time (here: one file per group) give the same rows
    monkeypatch.setattr(remote, "IN_FLIGHT_BYTES", 1)
    assert cache.scan_units(url).sort("unit_id").collect().equals(full)
    monkeypatch.undo()
    sid = full["session_id"][0]
    one = cache.scan_units(url).filter(pl.col("session_id") == sid).collect()
    assert one.height == 240 and set(one["session_id"]) == {sid}
    assert (
        cache.scan_trials(url)
        .collect()
        .sort("session_id", "trial_index")
        .equals(cache.scan_trials(local).collect().sort("session_id", "trial_index"))
    )


def test_s3_spike_counts_equal_local_and_brute_force(caches, s3_endpoint: S3Server):  # noqa: F811
    import npc_frames as nf

    local, url, _ = caches
    windows = {
        "baseline": ("stim_start_time", -0.5, 0.0),
        "response": ("stim_start_time", 0.0, 0.25),
    }
    remote.FOOTERS.clear()
    s3_endpoint.log.clear()
    got = nf.spike_counts(cache.scan_units(url), cache.scan_trials(url), windows=windows)
    reads = _reads(s3_endpoint)
    want = nf.spike_counts(cache.scan_units(local), cache.scan_trials(local), windows=windows)
    key = ["session_id", "unit_id", "trial_index", "window"]
    assert got.sort(key).equals(want.sort(key))
    # an independent count for one unit
    units = cache.scan_units(local).collect()
    row = units.row(7, named=True)
    stim = cache.scan_trials(local).filter(pl.col("session_id") == row["session_id"]).collect()
    t = np.asarray(row["spike_times"])
    onsets = stim["stim_start_time"].to_numpy()
    brute = [int(((t >= s) & (t < s + 0.25)).sum()) for s in onsets]
    mine = got.filter((pl.col("unit_id") == row["unit_id"]) & (pl.col("window") == "response"))
    assert mine.sort("trial_index")["count"].to_list() == brute
    # each units file is read with at most 3 requests (footer + merged column chunks)
    per_file = Counter(r.key for r in reads if r.key.endswith("data.parquet"))
    units_files = [k for k in per_file if "/units/" in k]
    assert len(units_files) == 3
    assert max(per_file[k] for k in units_files) <= 3, [r for r in reads if "/units/" in r.key]


# ------------------------------------------------------------------------- request bounds
def test_s3_column_subset_query_reads_needed_bytes_with_few_requests(
    caches,
    s3_endpoint: S3Server,  # noqa: F811
):
    local, url, _bucket = caches
    files = sorted(local.glob("units/*/data.parquet"))
    sizes = {f"cache/{p.relative_to(local).as_posix()}": p.stat().st_size for p in files}
    assert all(pq.ParquetFile(p).metadata.num_row_groups >= 8 for p in files)
    needed = sum(
        _needed(p.read_bytes(), {"unit_id", "spike_times", "is_qc_pass", "structure"}, "S02")
        for p in files
    )
    remote.FOOTERS.clear()
    s3_endpoint.log.clear()
    assert _q1(url).height > 0
    reads = _reads(s3_endpoint)
    per_file = Counter(r.key for r in reads if r.key in sizes)
    assert set(per_file) == set(sizes)
    assert max(per_file.values()) <= 3, per_file
    # no full-object download: every read of a units file is a range, and far less than the file
    for key in sizes:
        mine = [r for r in reads if r.key == key]
        assert all(r.range is not None for r in mine), mine
        assert sum(r.bytes_sent for r in mine) < 0.5 * sizes[key]
    sent = sum(r.bytes_sent for r in reads if r.key in sizes)
    assert needed * 0.95 <= sent <= 1.3 * needed, (sent, needed)
    assert len([r for r in reads if r.key not in sizes]) == 1  # the one listing


def test_merge_ranges_bridges_smallest_gaps_within_budget():
    ranges = [(0, 100), (100, 150), (160, 260), (1000, 1100), (5000, 5100)]
    # 450 bytes needed: a 20 % budget (90 bytes) bridges the 10-byte gap only
    assert remote.merge_ranges(ranges, budget=0.2) == [(0, 260), (1000, 1100), (5000, 5100)]
    # a budget large enough for the 740-byte gap but not the 3,900-byte one
    assert remote.merge_ranges(ranges, budget=2.0) == [(0, 1100), (5000, 5100)]
    assert remote.merge_ranges(ranges, budget=0.0) == [
        (0, 150),
        (160, 260),
        (1000, 1100),
        (5000, 5100),
    ]
    assert remote.merge_ranges([]) == []


# ------------------------------------------------------------------------------ caching
def test_s3_footers_cached_between_queries_and_invalidated_by_etag(
    caches,
    s3_endpoint: S3Server,  # noqa: F811
):
    local, url, bucket = caches
    remote.FOOTERS.clear()
    first = _q1(url)
    s3_endpoint.log.clear()
    assert _q1(url).equals(first)
    reads = [r for r in _reads(s3_endpoint) if "/units/" in r.key]
    # warm: one merged data GET per file, no footer (suffix) read
    assert Counter(r.key for r in reads) == Counter({k: 1 for k in {r.key for r in reads}})
    # replace one session's file: its new footer and rows are read, never the stale ones
    sid = first["session_id"][0]
    changed = _units(0).with_columns(is_qc_pass=pl.lit(True))
    key = f"cache/units/session_id={sid}/data.parquet"
    s3_endpoint.client.put_object(
        Bucket=bucket, Key=key, Body=to_parquet_bytes(changed, component="units")
    )
    s3_endpoint.log.clear()
    after = _q1(url)
    want = changed.filter(pl.col("structure") == "S02").sort("unit_id")["unit_id"]
    assert after.filter(pl.col("session_id") == sid)["unit_id"].equals(want)
    assert any(
        r.key == key and r.range and r.range.startswith("bytes=") for r in _reads(s3_endpoint)
    )
    assert len(after) > len(first)
    # restore the original file for the other tests of this module
    s3_endpoint.client.upload_file(
        str(local / "units" / f"session_id={sid}" / "data.parquet"), bucket, key
    )


def test_s3_catalog_cached_until_the_object_changes(s3_endpoint: S3Server):  # noqa: F811
    bucket = s3_endpoint.bucket("catalog")
    root = f"s3://{bucket}/cache"
    rows = cache.read_catalog(root).head(0)
    one = rows.vstack(
        pl.DataFrame(
            {"session_id": ["660000_2023-08-01"], "component": ["units"], "status": ["ok"]}
        )
        .with_columns(
            pl.lit(None, dtype=t).alias(c)
            for c, t in cache.CATALOG_SCHEMA.items()
            if c not in ("session_id", "component", "status")
        )
        .select(cache.CATALOG_SCHEMA.names())
    )
    buf = io.BytesIO()
    one.write_parquet(buf)
    s3_endpoint.client.put_object(Bucket=bucket, Key="cache/catalog.parquet", Body=buf.getvalue())
    assert cache.read_catalog(root)["session_id"].to_list() == ["660000_2023-08-01"]
    s3_endpoint.log.clear()
    assert cache.read_catalog(root).equals(cache.read_catalog(root))
    reads = _reads(s3_endpoint)
    assert [r.method for r in reads] == ["HEAD", "HEAD"]  # no GET of an unchanged catalog
    two = one.vstack(one.with_columns(session_id=pl.lit("660001_2023-08-02")))
    buf = io.BytesIO()
    two.write_parquet(buf)
    s3_endpoint.client.put_object(Bucket=bucket, Key="cache/catalog.parquet", Body=buf.getvalue())
    assert cache.read_catalog(root)["session_id"].to_list() == [
        "660000_2023-08-01",
        "660001_2023-08-02",
    ]


def test_s3_scan_survives_pickling_for_other_processes(caches):
    import pickle

    local, url, _ = caches
    lf = cache.scan_units(url).filter(pl.col("structure") == "S01").select("unit_id", "spike_times")
    again = pickle.loads(pickle.dumps(lf))
    assert (
        again.sort("unit_id")
        .collect()
        .equals(
            cache.scan_units(local)
            .filter(pl.col("structure") == "S01")
            .select("unit_id", "spike_times")
            .sort("unit_id")
            .collect()
        )
    )


@pytest.mark.slow
def test_s3_scan_of_every_component_of_a_converted_session_equals_local(
    synth_session,
    s3_endpoint: S3Server,  # noqa: F811
    tmp_path,
):
    import concurrent.futures as cf

    local = tmp_path / "cache"
    with cf.ThreadPoolExecutor(1) as ex:
        cache.convert([synth_session.raw_path], local, executor=ex, progress=False)
    url = s3_endpoint.upload_folder(local, s3_endpoint.bucket("synth"), "cache")
    present = sorted({p.parent.parent.name for p in local.glob("*/session_id=*/data.parquet")})
    assert {"trials", "units", "sessions", "electrodes"} <= set(present)
    remote.FOOTERS.clear()
    for name in present:
        got, want = cache.scan(name, url).collect(), cache.scan(name, local).collect()
        assert got.schema == want.schema, name
        assert got.equals(want), name
    # the catalog too, and a second read of it is served from the process's copy
    assert cache.read_catalog(url).equals(cache.read_catalog(local))


# ------------------------------------------------- amplitudes, waveforms and SQL over S3
def test_s3_q1_and_counts_with_amplitudes_beside_units_stay_within_3_requests_per_file(
    caches,
    s3_endpoint: S3Server,  # noqa: F811
):
    """Every session has per-spike amplitudes and 32-channel templates (components of their
    own): Q1 and spike counts read each units file with <= 3 requests, never an amplitudes or
    waveforms file; the amplitudes of the Q1 units are read from their files with <= 3 requests
    each, and equal the local ones."""
    import npc_frames as nf

    local, url, _ = caches
    remote.FOOTERS.clear()
    s3_endpoint.log.clear()
    q1 = _q1(url)
    windows = {"response": ("stim_start_time", 0.0, 0.25)}
    counts = nf.spike_counts(cache.scan_units(url), cache.scan_trials(url), windows=windows)
    reads = _reads(s3_endpoint)
    assert q1.height > 0 and counts.height == 3 * 240 * 80
    per_file = Counter(r.key for r in reads if r.key.endswith("data.parquet"))
    assert not [k for k in per_file if "/spike_amplitudes/" in k or "/unit_waveforms/" in k]
    units_files = [k for k in per_file if "/units/" in k]
    assert len(units_files) == 3
    # footer once (cached for the counts), merged chunks once per query
    assert max(per_file[k] for k in units_files) <= 3, per_file
    s3_endpoint.log.clear()
    amps = (
        cache.scan_spike_amplitudes(url)
        .filter(pl.col("structure") == "S02")
        .join(q1.lazy().select("unit_id"), on="unit_id")
        .select("unit_id", "spike_amplitudes")
        .sort("unit_id")
        .collect()
    )
    per_file = Counter(r.key for r in _reads(s3_endpoint) if r.key.endswith("data.parquet"))
    assert {k.split("/")[1] for k in per_file} == {"spike_amplitudes"}
    assert max(per_file.values()) <= 3, per_file
    want = (
        cache.scan_spike_amplitudes(local)
        .join(q1.lazy().select("unit_id"), on="unit_id")
        .select("unit_id", "spike_amplitudes")
        .sort("unit_id")
        .collect()
    )
    assert amps.height == q1.height and amps.equals(want)
    # one amplitude per spike time of every unit
    both = q1.join(amps, on="unit_id")
    assert (both["spike_times"].list.len() == both["spike_amplitudes"].list.len()).all()


def test_s3_waveforms_of_one_structure_read_with_few_requests_and_needed_bytes(
    caches,
    s3_endpoint: S3Server,  # noqa: F811
):
    """The templates of the Q1 units (their own component, split by structure like units) are
    read with <= 3 requests per file, <= 1.3x the bytes needed, and equal the local ones."""
    local, url, _ = caches
    q1 = _q1(local)

    def query(root: str | Path) -> pl.DataFrame:
        return (
            cache.scan_unit_waveforms(root)
            .filter(pl.col("structure") == "S02")
            .join(q1.lazy().select("unit_id"), on="unit_id")
            .select("unit_id", "channels", "waveform_mean")
            .sort("unit_id")
            .collect()
        )

    remote.FOOTERS.clear()
    s3_endpoint.log.clear()
    got = query(url)
    reads = _reads(s3_endpoint)
    per_file = Counter(r.key for r in reads if r.key.endswith("data.parquet"))
    assert {k.split("/")[1] for k in per_file} == {"unit_waveforms"} and len(per_file) == 3
    assert max(per_file.values()) <= 3, per_file
    assert got.height == q1.height and got.equals(query(local))
    assert got["waveform_mean"].list.len().to_list() == [WAVEFORM_SHAPE[0]] * got.height
    files = sorted(local.glob("unit_waveforms/*/data.parquet"))
    needed = sum(
        _needed(p.read_bytes(), {"unit_id", "channels", "waveform_mean", "structure"}, "S02")
        for p in files
    )
    sent = sum(r.bytes_sent for r in reads if r.key.endswith("data.parquet"))
    assert sent <= 1.3 * needed, (sent, needed)


def test_s3_sql_reads_through_the_planned_reader_and_equals_local(
    caches,
    s3_endpoint: S3Server,  # noqa: F811
):
    """nf.sql over an S3 cache: the same rows as over the local copy and as the scan; the units
    files are read with <= 3 requests each cold and one warm (DuckDB's filters and columns reach
    the planned reader), and only the components the query names are read."""
    import npc_frames as nf

    local, url, _ = caches
    query = (
        "SELECT session_id, unit_id, spike_times FROM units "
        "WHERE is_qc_pass AND structure = ? ORDER BY unit_id"
    )
    remote.FOOTERS.clear()
    s3_endpoint.log.clear()
    got = nf.sql(query, url, params=["S02"])
    cold = _reads(s3_endpoint)
    assert got.height > 0
    assert got.equals(nf.sql(query, local, params=["S02"]))
    assert got.equals(_q1(local, "S02").select("session_id", "unit_id", "spike_times"))
    per_file = Counter(r.key for r in cold if r.key.endswith("data.parquet"))
    assert {k.split("/")[1] for k in per_file} == {"units"}
    assert len(per_file) == 3 and max(per_file.values()) <= 3, per_file
    s3_endpoint.log.clear()
    assert nf.sql(query, url, params=["S02"]).equals(got)
    warm = Counter(r.key for r in _reads(s3_endpoint) if r.key.endswith("data.parquet"))
    assert warm == Counter(dict.fromkeys(per_file, 1)), warm
    # bytes: the needed column chunks of the admitted row groups (a cold read adds the footers)
    files = sorted(local.glob("units/*/data.parquet"))
    needed = sum(
        _needed(p.read_bytes(), {"unit_id", "spike_times", "is_qc_pass", "structure"}, "S02")
        for p in files
    )
    sent = sum(r.bytes_sent for r in cold if r.key.endswith("data.parquet"))
    assert sent <= 1.3 * needed, (sent, needed)
    # aggregates, the long spike_times view and a join with the amplitudes agree with local
    for q in (
        "SELECT structure, count(*) AS n, sum(len(spike_times)) AS s FROM units "
        "GROUP BY 1 ORDER BY 1",
        "SELECT count(*) AS n FROM spike_times WHERE spike_time < 10",
        "SELECT u.unit_id, len(a.spike_amplitudes) = len(u.spike_times) AS same FROM units u "
        "JOIN spike_amplitudes a USING (session_id, unit_id) WHERE u.structure = 'S01' "
        "ORDER BY 1",
        "SELECT u.unit_id, len(w.channels) AS n, w.waveform_mean[1][1] AS v FROM units u "
        "JOIN unit_waveforms w USING (session_id, unit_id) WHERE u.structure = 'S01' "
        "ORDER BY 1",
    ):
        assert nf.sql(q, url).equals(nf.sql(q, local)), q
    assert (
        nf.sql("SHOW TABLES", url)["name"].to_list()
        == nf.sql("SHOW TABLES", local)["name"].to_list()
    )
