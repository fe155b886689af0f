"""Subsampled LFP reads touch only what they need: a time slice or a set of event windows reads
exactly the zarr chunks overlapping them (each once), and LFP computed from raw reads only the raw
sample range of the window plus the filter padding — with values equal to reading everything."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import npc_frames as nf
from npc_frames.subsampled_lfp import (
    LFP,
    PAD_SECONDS,
    WINDOW_TOLERANCE_BITS,
    RawSubsampled,
    subsample_lfp,
)

zarr = pytest.importorskip("zarr")

RATE = 1250.0
CHUNK = 1250  # 1 s chunks, as the pipeline's asset
_CHUNK_KEY = re.compile(r"^traces/(\d+)\.(\d+)$")


class CountingStore(zarr.storage.DirectoryStore):  # type: ignore[misc]
    """A directory store that records every chunk key read."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.chunk_reads: list[int] = []

    def __getitem__(self, key: str) -> Any:
        m = _CHUNK_KEY.match(key)
        if m is not None:
            self.chunk_reads.append(int(m[1]))
        return super().__getitem__(key)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(3)
    values = rng.integers(-2000, 2000, (120 * CHUNK + 317, 96), dtype=np.int16)  # partial last
    path = str(tmp_path_factory.mktemp("chunks") / "lfp.zarr")
    g = zarr.open_group(path, mode="w")
    g.create_dataset("traces", data=values, chunks=(CHUNK, 96))
    return path, values


def _lfp(path: str) -> tuple[LFP, CountingStore]:
    store = CountingStore(path)
    data = zarr.open_group(store, mode="r")["traces"]
    lf = LFP(
        probe="probeA",
        data=data,
        channels=np.arange(0, 384, 4),
        rate=RATE,
        start_time=10.0,
        uv_per_unit=0.195,
        source=path,
    )
    return lf, store


def _overlapping(i0: int, i1: int) -> set[int]:
    return set(range(i0 // CHUNK, (i1 - 1) // CHUNK + 1))


@pytest.mark.parametrize(("a", "b"), [(12.3, 13.1), (10.0, 10.5), (55.9991, 71.2), (129.0, 200.0)])
def test_time_slice_reads_only_overlapping_chunks(
    stored: tuple[str, np.ndarray], a: float, b: float
) -> None:
    path, values = stored
    lf, store = _lfp(path)
    x, t = lf.sel(time=slice(a, b))
    i0, i1 = lf.sample_range(a, b)
    assert t[0] >= a and t[-1] < b and len(t) == i1 - i0 > 0
    np.testing.assert_array_equal(x, values[i0:i1].astype(np.float32) * np.float32(0.195))
    assert sorted(store.chunk_reads) == sorted(_overlapping(i0, i1))  # each once, nothing else


def test_aligned_windows_read_each_needed_chunk_once(stored: tuple[str, np.ndarray]) -> None:
    path, values = stored
    lf, store = _lfp(path)
    rng = np.random.default_rng(5)
    events = np.concatenate([rng.uniform(11, 125, 40), [12.0, 12.2, np.nan, 500.0]])
    trials = pl.DataFrame({"t": events})
    out = nf.aligned_lfp(lf, "A", trials, event="t", start=-0.2, stop=0.6)
    n = round(0.8 * RATE)
    first = np.round((events - 0.2 - lf.start_time) * RATE)
    ok = np.isfinite(first) & (first >= 0) & (first + n <= values.shape[0])
    needed: set[int] = set()
    for k in np.flatnonzero(ok):
        f = int(first[k])
        needed |= _overlapping(f, f + n)
        want = values[f : f + n].T.astype(np.float32) * np.float32(0.195)
        np.testing.assert_array_equal(out[k], want)
    assert np.isnan(out[~ok]).all()
    assert len(store.chunk_reads) == len(set(store.chunk_reads))  # no chunk read twice
    assert set(store.chunk_reads) == needed
    assert len(needed) < values.shape[0] // CHUNK  # the windows do not cover every chunk


class RecordingArray:
    """A raw LFP array that records the row ranges read from it."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.shape = values.shape
        self.dtype = values.dtype
        self.reads: list[tuple[int, int]] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = key[0] if isinstance(key, tuple) else key
        assert isinstance(rows, slice) and rows.step in (None, 1)
        start, stop, _ = rows.indices(self.shape[0])
        self.reads.append((start, stop))
        return self.values[key]


@pytest.fixture(scope="module")
def raw_band() -> np.ndarray:
    """200 s of LFP-like raw samples (slow 1/f-like drift, theta, noise) on 32 channels."""
    from scipy import signal

    rate = 2500.0
    rng = np.random.default_rng(11)
    n = int(200 * rate)
    b, a = signal.butter(1, 1.0, fs=rate)
    drift = signal.lfilter(b, a, rng.standard_normal((n, 32)), axis=0) * 300
    theta = 50 * np.sin(2 * np.pi * 8 * np.arange(n) / rate)[:, None]
    return np.round(drift + theta + rng.normal(0, 20, (n, 32))).astype(np.int16)


def test_raw_window_reads_only_its_padded_range(raw_band: np.ndarray) -> None:
    rate = 2500.0
    ref = np.arange(24, 32)
    whole = subsample_lfp(raw_band, rate, reference=ref)
    rec = RecordingArray(raw_band)
    lazy = RawSubsampled(rec, rate, reference=ref)
    assert lazy.shape == whole.shape == (raw_band.shape[0] // 2, 8)
    pad = round(PAD_SECONDS * rate)
    for i0, i1 in ((50_000, 51_250), (100_000, 100_001), (40_000, 90_000)):
        rec.reads.clear()
        got = lazy[i0:i1]
        assert rec.reads == [(2 * i0 - pad, 2 * i1 + pad)]
        # the filters are not local: equal to the whole computation within the stated tolerance
        np.testing.assert_allclose(got, whole[i0:i1], rtol=0, atol=WINDOW_TOLERANCE_BITS)
    # windows near an end are clipped to the recording and also read the other end (the FFT's
    # wrap-around neighbour, as in the whole computation); a read of everything is the recipe
    n = raw_band.shape[0]
    rec.reads.clear()
    np.testing.assert_allclose(lazy[10:20], whole[10:20], rtol=0, atol=WINDOW_TOLERANCE_BITS)
    assert rec.reads == [(n - pad, n), (0, 40 + pad)]
    rec.reads.clear()
    m = whole.shape[0]
    np.testing.assert_allclose(
        lazy[m - 700 :], whole[m - 700 :], rtol=0, atol=WINDOW_TOLERANCE_BITS
    )
    assert rec.reads == [(0, pad), (n - 1400 - pad, n)]
    rec.reads.clear()
    np.testing.assert_array_equal(lazy[:], whole)
    assert rec.reads == [(0, raw_band.shape[0])]


def test_aligned_lfp_from_raw_reads_runs_of_windows(raw_band: np.ndarray) -> None:
    rate = 2500.0
    rec = RecordingArray(raw_band)
    lf = LFP(
        probe="probeA",
        data=RawSubsampled(rec, rate),
        channels=np.arange(0, 32, 4),
        rate=rate / 2,
        start_time=0.0,
        uv_per_unit=1.0,
        source="memory",
    )
    whole = subsample_lfp(raw_band, rate)
    events = np.array([40.0, 41.0, 42.5, 150.0])  # three close windows, one far away
    out = nf.aligned_lfp(lf, "A", pl.DataFrame({"t": events}), event="t", start=-0.1, stop=0.4)
    pad = round(PAD_SECONDS * rate)
    assert len(rec.reads) == 2  # one padded read per run of nearby windows
    (a0, a1), (b0, b1) = rec.reads
    assert a0 == round((40.0 - 0.1) * rate) - pad and a1 == round((42.5 + 0.4) * rate) + pad
    assert b0 == round((150.0 - 0.1) * rate) - pad and b1 == round((150.0 + 0.4) * rate) + pad
    n = round(0.5 * rate / 2)
    for k, e in enumerate(events):
        f = round((e - 0.1) * rate / 2)
        np.testing.assert_allclose(out[k], whole[f : f + n].T, rtol=0, atol=WINDOW_TOLERANCE_BITS)


def test_cached_zarr_uses_the_pipeline_layout(tmp_path: Path) -> None:
    synth = pytest.importorskip("npc_frames.synth")
    truth = synth.make_session(
        tmp_path, seed=4, minutes=0.5, n_probes=1, units_per_probe=1, video=False
    )
    lf = nf.lfp(truth.raw_path, "A", cache=tmp_path / "cache")
    assert lf.data.chunks == (1250, 96)
    assert lf.data.compressor.cname == "zstd" and lf.data.compressor.shuffle == 2  # bit shuffle
