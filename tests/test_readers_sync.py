"""readers.sync: one test per FORMATS §2.1–§2.2 rule, plus bad input."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.sync_files import LABELS, RATE, START, default_meta, write_raw_sync, write_sync_edges
from npc_frames.errors import BadFormatError, MissingFileError, NpcFramesError
from npc_frames.readers.sync import SyncData, decode_edges, read_sync


def brute_force_edges(data: np.ndarray, bit: int) -> tuple[list[int], list[int]]:
    """Reference decoder: walk rows one by one (row 0 only sets the initial state)."""
    rising, falling = [], []
    prev = (int(data[0, -1]) >> bit) & 1
    for row in data[1:]:
        cur = (int(row[-1]) >> bit) & 1
        if cur and not prev:
            rising.append(int(row[0]))
        elif prev and not cur:
            falling.append(int(row[0]))
        prev = cur
    return rising, falling


# ------------------------------------------------------------------------- §2.2 edge semantics
@st.composite
def event_arrays(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(0, 60))
    gaps = draw(st.lists(st.integers(1, 5000), min_size=n, max_size=n))
    samples = np.cumsum([0, *gaps])
    # states either fully random or sparse (few lines toggling), like real files
    sparse = draw(st.booleans())
    states = []
    word = draw(st.integers(0, 2**32 - 1))
    states.append(word)
    for _ in range(n):
        if sparse:
            word ^= 1 << draw(st.integers(0, 31))
        else:
            word = draw(st.integers(0, 2**32 - 1))
        states.append(word)
    return np.column_stack([samples, states]).astype(np.uint32)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=event_arrays())
def test_edges_equal_brute_force_decoder_on_random_event_arrays(
    tmp_path: Path, data: np.ndarray
) -> None:
    path = write_raw_sync(tmp_path / "random.h5", data, default_meta())
    sync = read_sync(h5py.File(path, "r"))  # h5py input: not memoized (file rewritten per example)
    for bit in range(32):
        rising, falling = brute_force_edges(data, bit)
        np.testing.assert_array_equal(sync.rising(bit), np.array(rising) / RATE)
        np.testing.assert_array_equal(sync.falling(bit), np.array(falling) / RATE)


def test_first_row_never_yields_an_edge(tmp_path: Path) -> None:
    # line 3 high from sample 0 (initial state) then falls; line 4 rises at row 1
    data = np.array([[0, 0b1000], [10, 0b11000], [20, 0b10000]])
    sync = read_sync(write_raw_sync(tmp_path / "a.h5", data, default_meta()))
    assert sync.rising(3).size == 0
    np.testing.assert_array_equal(sync.falling(3), [20 / RATE])
    np.testing.assert_array_equal(sync.rising(4), [10 / RATE])


def test_edge_time_is_counter_of_the_changed_row_over_rate(tmp_path: Path) -> None:
    data = np.array([[0, 0], [123_456, 1], [223_456, 0]])
    sync = read_sync(write_raw_sync(tmp_path / "a.h5", data, default_meta()))
    assert sync.rising(0).tolist() == [1.23456]
    assert sync.falling(0).tolist() == [2.23456]


def test_lines_addressed_by_label_or_bit(tmp_path: Path) -> None:
    labels = [""] * 32
    labels[2] = "vsync_stim"
    path = write_sync_edges(tmp_path / "a.h5", {2: ([1.0, 2.0], [1.5, 2.5])}, labels=labels)
    sync = read_sync(path)
    np.testing.assert_array_equal(sync.falling("vsync_stim"), sync.falling(2))
    assert sync.falling(2).tolist() == [1.5, 2.5]
    assert sync.has_line("vsync_stim") and not sync.has_line("lick_sensor")
    assert not sync.has_line("")  # unlabeled lines cannot be addressed by the empty label


def test_sample_rate_prefers_sample_freq_over_counter_output_freq(tmp_path: Path) -> None:
    meta = default_meta()
    meta["ni_daq"] = {"sample_freq": 50_000.0, "counter_output_freq": 100_000.0, "counter_bits": 32}
    sync = read_sync(write_raw_sync(tmp_path / "a.h5", np.array([[0, 0], [50_000, 1]]), meta))
    assert sync.sample_rate == 50_000.0
    assert sync.rising(0).tolist() == [1.0]


def test_metadata_fields(tmp_path: Path) -> None:
    sync = read_sync(write_raw_sync(tmp_path / "a.h5", np.array([[0, 0]]), default_meta()))
    assert sync.start_time == START
    assert sync.total_samples == 10_000_000
    assert sync.total_seconds == 100.0
    assert sync.line_labels == LABELS
    assert sync.edges().height == 0


NEAR_WRAP = 2**32 - 100


def _wrapping_file(tmp_path: Path) -> Path:
    data = np.array([[0, 0], [NEAR_WRAP, 1], [50, 0], [150, 1]], dtype=np.uint64)
    return write_raw_sync(tmp_path / "wrap.h5", data, default_meta())


def test_counter_rollover_is_corrected(tmp_path: Path) -> None:
    """Decision on the §2.2 [quirk]: we always unwrap a 32-bit counter that steps backwards."""
    sync = read_sync(_wrapping_file(tmp_path))
    expected = np.array([NEAR_WRAP, 2**32 + 150]) / RATE
    np.testing.assert_array_equal(sync.rising(0), expected)
    assert np.all(np.diff(sync.edges()["time"].to_numpy()) > 0)


@pytest.mark.slow  # importing npc_sync (scipy.signal) costs several seconds
def test_counter_rollover_differs_from_npc_sync_by_design(tmp_path: Path) -> None:
    npc_sync = pytest.importorskip("npc_sync")
    npc = npc_sync.SyncDataset(_wrapping_file(tmp_path))
    # npc skips its correction when counter_bits == 32: its second rising edge jumps back to 1.5 ms
    assert npc.get_rising_edges(0, units="samples").tolist() == [NEAR_WRAP, 150]


def test_edges_frame_lists_every_edge_of_every_line(tmp_path: Path) -> None:
    path = write_sync_edges(
        tmp_path / "a.h5", {0: ([1.0], [2.0]), 31: ([0.5, 1.0], [0.75, 3.0])}, labels=LABELS
    )
    df = read_sync(path).edges()
    assert df.columns == ["line", "label", "time", "rising"]
    assert df.rows() == [
        (31, "line31", 0.5, True),
        (31, "line31", 0.75, False),
        (0, "line0", 1.0, True),
        (31, "line31", 1.0, True),
        (0, "line0", 2.0, False),
        (31, "line31", 3.0, False),
    ]


@pytest.mark.slow  # importing npc_sync (scipy.signal) costs several seconds
def test_same_edges_as_npc_sync_syncdataset(tmp_path: Path) -> None:
    npc_sync = pytest.importorskip("npc_sync")
    rng = np.random.default_rng(7)
    lines = {}
    for bit in (0, 2, 4, 5, 27, 31):
        t = np.sort(rng.choice(np.arange(1, 9_000_000), 2 * rng.integers(5, 400), replace=False))
        lines[bit] = (t[0::2] / RATE, t[1::2] / RATE)
    path = write_sync_edges(tmp_path / "cmp.h5", lines)
    ours = read_sync(path)
    npc = npc_sync.SyncDataset(path)
    for bit in range(32):
        np.testing.assert_array_equal(ours.rising(bit), npc.get_rising_edges(bit, units="seconds"))
        np.testing.assert_array_equal(
            ours.falling(bit), npc.get_falling_edges(bit, units="seconds")
        )
    assert ours.start_time == npc.start_time
    assert ours.total_seconds == npc.total_seconds


def test_decode_edges_is_vectorized_over_rows_with_many_changed_bits() -> None:
    counter = np.array([0, 5, 9])
    state = np.array([0, 0xFFFFFFFF, 0], dtype=np.uint32)
    samples, bits, rising = decode_edges(counter, state)
    assert samples.tolist() == [5] * 32 + [9] * 32
    assert sorted(bits[:32].tolist()) == list(range(32))
    assert rising[:32].all() and not rising[32:].any()


def test_decode_edges_equals_a_row_by_row_decoder() -> None:
    """Rows changing 0, 1 or several lines (some of them many), against a plain loop."""
    rng = np.random.default_rng(5)
    n = 3000
    flips = np.zeros(n, dtype=np.uint32)
    one = rng.random(n) < 0.6
    flips[one] = np.uint32(1) << rng.integers(0, 32, one.sum()).astype(np.uint32)
    many = rng.random(n) < 0.05
    flips[many] |= rng.integers(0, 2**32, many.sum(), dtype=np.uint64).astype(np.uint32)
    state = np.bitwise_xor.accumulate(flips)
    counter = np.cumsum(rng.integers(1, 50, n)).astype(np.uint32)
    want_s, want_b, want_r = [], [], []
    for i in range(1, n):
        changed = int(state[i] ^ state[i - 1])
        for b in range(32):
            if changed >> b & 1:
                want_s.append(int(counter[i]))
                want_b.append(b)
                want_r.append(bool(int(state[i]) >> b & 1))
    samples, bits, rising = decode_edges(counter, state)
    assert samples.tolist() == want_s
    assert bits.tolist() == want_b
    assert rising.tolist() == want_r


# ------------------------------------------------------------------------------ memoization
def test_read_is_memoized_by_path_size_and_mtime(tmp_path: Path) -> None:
    path = write_sync_edges(tmp_path / "m.h5", {0: ([1.0], [2.0])})
    first = read_sync(path)
    assert read_sync(str(path)) is first
    write_sync_edges(path, {0: ([1.0, 3.0], [2.0, 4.0])})
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10_000_000))
    second = read_sync(path)
    assert second is not first
    assert second.rising(0).tolist() == [1.0, 3.0]


def test_returned_arrays_are_read_only(tmp_path: Path) -> None:
    sync = read_sync(write_sync_edges(tmp_path / "ro.h5", {0: ([1.0], [2.0])}))
    with pytest.raises(ValueError):
        sync.rising(0)[0] = 5.0


def test_reads_open_binary_file_objects(tmp_path: Path) -> None:
    path = write_sync_edges(tmp_path / "fo.h5", {5: ([1.0], [2.0])})
    with open(path, "rb") as fh:
        sync = read_sync(fh)
    assert isinstance(sync, SyncData)
    assert sync.falling(5).tolist() == [2.0]


# -------------------------------------------------------------------------------- bad input
def test_missing_file_raises_missing_file_error(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError) as exc:
        read_sync(tmp_path / "nope.h5")
    assert exc.value.path == str(tmp_path / "nope.h5")


def test_truncated_hdf5_raises_bad_format_naming_the_file(tmp_path: Path) -> None:
    good = write_sync_edges(tmp_path / "good.h5", {0: ([1.0], [2.0])})
    bad = tmp_path / "20230831T123331.h5"
    bad.write_bytes(good.read_bytes()[:700])
    with pytest.raises(BadFormatError) as exc:
        read_sync(bad)
    assert exc.value.path == str(bad)
    assert "HDF5" in str(exc.value)


@pytest.mark.parametrize("missing", ["data", "meta"])
def test_missing_dataset_raises_bad_format_naming_the_field(tmp_path: Path, missing: str) -> None:
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        if missing != "data":
            f["data"] = np.zeros((1, 2), np.uint32)
        if missing != "meta":
            f["meta"] = repr(default_meta())
    with pytest.raises(BadFormatError) as exc:
        read_sync(path)
    assert exc.value.field == missing
    assert exc.value.path == str(path)


def test_meta_is_parsed_with_literal_eval_never_eval(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    meta = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    path = write_raw_sync(tmp_path / "evil.h5", np.array([[0, 0]]), meta)
    with pytest.raises(BadFormatError) as exc:
        read_sync(path)
    assert exc.value.field == "meta"
    assert not marker.exists()


def test_meta_without_sample_rate_is_bad_format(tmp_path: Path) -> None:
    meta = default_meta(ni_daq={"device": "Dev1"})
    with pytest.raises(BadFormatError) as exc:
        read_sync(write_raw_sync(tmp_path / "r.h5", np.array([[0, 0]]), meta))
    assert "counter_output_freq" in (exc.value.field or "")


def test_unknown_line_label_raises_naming_file_and_label(tmp_path: Path) -> None:
    path = write_sync_edges(tmp_path / "l.h5", {0: ([1.0], [2.0])})
    sync = read_sync(path)
    with pytest.raises(BadFormatError) as exc:
        sync.rising("vsync_stim")
    assert "vsync_stim" in (exc.value.field or "")
    assert exc.value.path == str(path)
    with pytest.raises(NpcFramesError):
        sync.falling(32)


def test_bad_data_shape_is_bad_format(tmp_path: Path) -> None:
    path = tmp_path / "shape.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros(5, np.uint32)
        f["meta"] = repr(default_meta())
    with pytest.raises(BadFormatError) as exc:
        read_sync(path)
    assert exc.value.field == "data"


def test_sync_meta_parses_in_concurrent_threads() -> None:
    # CPython 3.11 shares the AST builder's recursion counter between threads: a thread switch
    # inside ast.literal_eval (here forced by finalizers that the garbage collector runs) made
    # concurrent converts fail with "SystemError: AST constructor recursion depth mismatch"
    import gc
    import sys
    import threading

    from npc_frames.readers.sync import _parse_meta

    meta = {f"line{i}": [i, {"label": "x" * 5, "rate": 100000.0}, None] for i in range(300)}
    text = repr(meta).encode()
    errors: list[BaseException] = []

    class Finalized:
        me: object

        def __del__(self) -> None:
            sum(range(50))  # Python code run by the collector: a chance to switch threads

    def work() -> None:
        for _ in range(25):
            junk = [Finalized() for _ in range(20)]
            for j in junk:
                j.me = j  # a cycle: freed by the collector, which runs __del__
            del junk
            try:
                assert _parse_meta(text, "sync.h5") == meta
            except BaseException as exc:  # collected and reported below
                errors.append(exc)

    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(50, 2, 2)
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]


def test_every_literal_parse_of_the_package_goes_through_the_locked_helpers() -> None:
    # np.load parses each .npy header with ast.literal_eval: a direct call in a reader would
    # reopen the race the test above closes
    import re

    import npc_frames

    root = Path(npc_frames.__file__).parent
    direct = re.compile(r"\b(np|numpy)\.load\(|\bast\.(literal_eval|parse)\(|from ast import")
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel == "readers/_literal.py" or rel.startswith("synth/"):
            continue  # the helpers themselves; synth writes files, it parses none
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if direct.search(line.split("#", 1)[0]):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, offenders
