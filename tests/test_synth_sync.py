"""The synthetic sync writer and barcode generator, checked with the independent npc_sync reader."""

from __future__ import annotations

import ast
import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from npc_frames.errors import ParameterError
from npc_frames.synth.barcodes import (
    BARCODE_BIT_S,
    BARCODE_START_HIGH_S,
    BARCODE_START_LOW_S,
    barcode_duration,
    make_barcodes,
)
from npc_frames.synth.sync import LINE_LABELS, SYNC_RATE, quantize, write_sync_file

npc_sync = pytest.importorskip("npc_sync")

START = datetime.datetime(2023, 8, 31, 12, 33, 31, 637254)


def _pulses(rng: np.random.Generator, n: int, t0: float, period: float, width: float):
    rising = t0 + np.arange(n) * period + rng.uniform(0, 1e-4, n)
    return rising, rising + width


@pytest.fixture
def random_lines() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    return {
        2: _pulses(rng, 500, 1.0, 1 / 60, 0.004),
        4: _pulses(rng, 250, 1.02, 2 / 60, 1 / 60),
        27: _pulses(rng, 600, 0.5, 1 / 60, 0.010),
        31: _pulses(rng, 30, 2.0, 0.2, 0.05),
        # a line high at start: first edge falling, ends high (no final falling edge)
        7: (np.array([3.0, 5.0]), np.array([1.5, 4.0])),
    }


def _write(tmp_path: Path, lines, **kw):
    path = tmp_path / "20230831T123331.h5"
    total = kw.pop("total_samples", int(12 * SYNC_RATE))
    initial = kw.pop("initial_state", 1 << 7)
    q = write_sync_file(
        path, lines=lines, initial_state=initial, start_time=START, total_samples=total, **kw
    )
    return path, q


def test_npc_sync_reads_exactly_the_quantised_edges_of_every_line(tmp_path, random_lines):
    path, q = _write(tmp_path, random_lines)
    ds = npc_sync.SyncDataset(path)
    for bit, (rising, falling) in q.items():
        np.testing.assert_array_equal(ds.get_rising_edges(bit, units="seconds"), rising)
        np.testing.assert_array_equal(ds.get_falling_edges(bit, units="seconds"), falling)
        # quantisation moves an edge by at most half a sample
        raw_r, raw_f = random_lines[bit]
        assert np.max(np.abs(np.sort(raw_r) - rising)) <= 0.5 / SYNC_RATE + 1e-12
        assert np.max(np.abs(np.sort(raw_f) - falling)) <= 0.5 / SYNC_RATE + 1e-12
    by_label = ds.get_falling_edges("vsync_stim", units="seconds")
    np.testing.assert_array_equal(by_label, q[2][1])
    for bit in set(range(32)) - set(q):
        assert ds.get_rising_edges(bit).size == 0 and ds.get_falling_edges(bit).size == 0


def test_row_zero_is_initial_state_and_never_yields_an_edge(tmp_path, random_lines):
    path, _ = _write(tmp_path, random_lines)
    with h5py.File(path) as f:
        data = f["data"][()]
    assert data.dtype == np.uint32 and data.ndim == 2 and data.shape[1] == 2
    assert data[0, 0] == 0 and data[0, 1] == 1 << 7
    ds = npc_sync.SyncDataset(path)
    # line 7 starts high: no rising edge at t = 0, first edge is the falling edge at 1.5 s
    assert ds.get_rising_edges(7, units="seconds")[0] == 3.0
    assert ds.get_falling_edges(7, units="seconds")[0] == 1.5


def test_rows_store_last_sample_before_change_sorted_and_collapse_simultaneous_edges(tmp_path):
    lines = {
        0: (np.array([0.001]), np.array([0.002])),
        5: (np.array([0.001]), np.array([0.003])),  # same sample as line 0's rising edge
    }
    path, _ = _write(tmp_path, lines, initial_state=0, total_samples=1000)
    with h5py.File(path) as f:
        data = f["data"][()]
    expected = np.array(
        [[0, 0], [100, (1 << 0) | (1 << 5)], [200, 1 << 5], [300, 0]], dtype=np.uint32
    )
    np.testing.assert_array_equal(data, expected)


def test_independent_reconstruction_of_the_raw_word_stream(tmp_path, random_lines):
    """Expand the event rows back to per-sample words and re-derive every line's edges."""
    path, q = _write(tmp_path, random_lines)
    with h5py.File(path) as f:
        data = f["data"][()]
    samples, words = data[:, 0].astype(np.int64), data[:, 1]
    assert np.all(np.diff(samples[1:]) > 0)
    # word valid from sample k+1 of its row up to the next row's sample
    stream = np.repeat(words[:-1], np.diff(np.concatenate([[-1], samples[1:]])))
    stream = np.concatenate([stream, [words[-1]]])
    for bit, (rising, falling) in q.items():
        level = ((stream >> bit) & 1).astype(np.int8)
        change = np.diff(level)
        np.testing.assert_array_equal(np.flatnonzero(change == 1) / SYNC_RATE, rising)
        np.testing.assert_array_equal(np.flatnonzero(change == -1) / SYNC_RATE, falling)


def test_meta_parses_with_literal_eval_and_has_every_key(tmp_path, random_lines):
    total = int(12 * SYNC_RATE)
    path, _ = _write(tmp_path, random_lines, total_samples=total)
    with h5py.File(path) as f:
        meta = ast.literal_eval(f["meta"][()].decode())
    assert meta["ni_daq"]["counter_output_freq"] == 100000.0
    assert meta["ni_daq"]["sample_rate"] == 100000.0
    assert meta["ni_daq"]["counter_bits"] == 32 and meta["ni_daq"]["event_bits"] == 32
    assert meta["start_time"] == "2023-08-31 12:33:31.637254"
    assert datetime.datetime.fromisoformat(meta["stop_time"]) == START + datetime.timedelta(
        seconds=12
    )
    assert meta["line_labels"] == list(LINE_LABELS) and len(meta["line_labels"]) == 32
    assert meta["total_samples"] == total
    assert meta["sampling_type"] == "frequency"
    assert meta["timeouts"] == [] and set(meta["version"]) == {"dataset", "sync"}
    ds = npc_sync.SyncDataset(path)
    assert ds.start_time == START and ds.total_seconds == 12.0 and ds.sample_freq == SYNC_RATE


def test_line_labels_follow_the_np_rig_table():
    assert len(LINE_LABELS) == 32
    expected = {
        0: "barcode_ephys",
        2: "vsync_stim",
        4: "stim_photodiode",
        5: "stim_running",
        21: "beh_cam_frame_readout",
        22: "face_cam_frame_readout",
        25: "eye_cam_frame_readout",
        27: "beh_cam_exposing",
        28: "face_cam_exposing",
        29: "eye_cam_exposing",
        31: "lick_sensor",
    }
    for bit, label in expected.items():
        assert LINE_LABELS[bit] == label


@pytest.mark.parametrize(
    ("lines", "kw", "field"),
    [
        ({3: (np.array([1.0, 2.0]), np.array([1.5, 1.8, 2.5]))}, {}, "lines[3]"),  # count
        ({3: (np.array([1.0]), np.array([0.5]))}, {}, "lines[3]"),  # falls before it rises
        ({3: (np.array([1.0]), np.array([1.000001]))}, {}, "lines[3]"),  # same sample
        ({3: (np.array([1.0]), np.array([20.0]))}, {}, "lines[3]"),  # after the last sample
        ({40: (np.array([1.0]), np.array([2.0]))}, {}, "lines[40]"),  # no such bit
        ({}, {"line_labels": ["a"] * 31}, "line_labels"),
        ({}, {"total_samples": 2**32}, "total_samples"),
    ],
)
def test_impossible_lines_raise_parameter_error_naming_file_and_field(tmp_path, lines, kw, field):
    with pytest.raises(ParameterError) as info:
        _write(tmp_path, lines, initial_state=0, **kw)
    assert info.value.field == field
    assert info.value.path is not None and info.value.path.endswith(".h5")
    assert info.value.expected


def test_quantize_rounds_to_the_sample_grid():
    t = np.array([0.000004, 0.000006, 1.234567891])
    np.testing.assert_array_equal(quantize(t), np.array([0, 1, 123457]) / SYNC_RATE)


# ------------------------------------------------------------------------------------- barcodes


def _decode_generator_side(rising: np.ndarray, falling: np.ndarray, start: float) -> int:
    """Read bits back by sampling the line level in the middle of each 15 ms bit window."""
    t = start + BARCODE_START_HIGH_S + BARCODE_START_LOW_S + (np.arange(32) + 0.5) * BARCODE_BIT_S
    level = np.searchsorted(rising, t) - np.searchsorted(falling, t)
    return int(np.sum(level.astype(np.int64) << np.arange(32)))


def test_barcodes_encode_an_incrementing_counter_lsb_first_every_30_s():
    rng = np.random.default_rng(7)
    bc = make_barcodes(rng, first_start_s=5.0, stop_s=200.0)
    assert bc.start_times[0] == 5.0
    assert bc.start_times.size == 7  # 5 + 6 × ~30 s < 200 − 0.52
    gaps = np.diff(bc.start_times)
    assert np.all((gaps > 29.9) & (gaps < 30.1))
    np.testing.assert_array_equal(np.diff(bc.values), 1)
    assert bc.rising.size == bc.falling.size
    assert np.all(bc.falling > bc.rising)  # pulses alternate, line idles low
    for start, value in zip(bc.start_times, bc.values):
        assert _decode_generator_side(bc.rising, bc.falling, start) == value
        # start pulse: 20 ms high
        i = np.searchsorted(bc.rising, start)
        assert bc.rising[i] == start and bc.falling[i] == pytest.approx(start + 0.020)
    assert bc.falling.max() <= bc.start_times[-1] + barcode_duration() + 1e-9


def test_barcode_gaps_exceed_the_29_s_reader_threshold():
    bc = make_barcodes(np.random.default_rng(1), first_start_s=3.0, stop_s=1000.0)
    firsts = np.searchsorted(bc.rising, bc.start_times)
    previous_rise = bc.rising[firsts[1:] - 1]
    assert np.all(bc.start_times[1:] - previous_rise > 29.0)


def test_barcodes_survive_the_sync_file_round_trip(tmp_path):
    bc = make_barcodes(np.random.default_rng(2), first_start_s=4.0, stop_s=100.0)
    path, _ = _write(
        tmp_path, {0: (bc.rising, bc.falling)}, initial_state=0, total_samples=int(100 * SYNC_RATE)
    )
    ds = npc_sync.SyncDataset(path)
    r = ds.get_rising_edges("barcode_ephys", units="seconds")
    f = ds.get_falling_edges("barcode_ephys", units="seconds")
    for start, value in zip(bc.start_times, bc.values):
        assert _decode_generator_side(r, f, quantize(start)) == value


def test_barcode_interval_too_short_for_readers_is_a_parameter_error():
    with pytest.raises(ParameterError) as info:
        make_barcodes(np.random.default_rng(0), first_start_s=3.0, stop_s=100.0, interval_s=29.2)
    assert info.value.field == "interval_s"
