"""Barcode decoding, matching and per-stream clock fits (FORMATS §10)."""

from __future__ import annotations

import numpy as np
import pytest

from npc_frames import alignment as al
from npc_frames.errors import AlignmentError, InconsistentDataError
from npc_frames.synth.barcodes import make_barcodes

SYNC_RATE = 100_000.0


def reference_decode(
    on: np.ndarray, off: np.ndarray, total: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The FORMATS §10 decoding rule written as the reference's loop (an independent oracle)."""
    on, off = np.sort(on), np.sort(off)
    if off[0] < on[0]:
        off = off[1:]
    if on[-1] > off[-1]:
        on = on[:-1]
    if total is not None:
        on, off = on[on < total - 2], off[off < total - 2]
    starts = list(on[1:][np.diff(on) > 29])
    if on[0] > 2:
        starts.insert(0, on[0])
    times, values = [], []
    for t in starts:
        oncode = on[(on > t) & (on < t + 2)]
        offcode = off[(off > t) & (off < t + 2)]
        cur = offcode[0]
        bits = np.zeros(32)
        for b in range(32):
            nxt_on = oncode[oncode > cur]
            nxt_off = offcode[offcode > cur]
            a = nxt_on[0] if nxt_on.size else t + 29
            c = nxt_off[0] if nxt_off.size else t + 29
            bits[b] = a < c
            cur += 0.015
        times.append(t)
        values.append(int(np.sum(bits * 2 ** np.arange(32))))
    return np.array(times), np.array(values, dtype=np.int64)


def quantize(t: np.ndarray, rate: float) -> np.ndarray:
    return np.round(t * rate) / rate


@pytest.fixture
def barcodes() -> tuple[np.ndarray, np.ndarray]:
    b = make_barcodes(np.random.default_rng(7), first_start_s=4.0, stop_s=400.0)
    return quantize(b.rising, SYNC_RATE), quantize(b.falling, SYNC_RATE)


def stream_edges(
    rising: np.ndarray, falling: np.ndarray, *, start: float, rate: float, nominal: float
) -> tuple[np.ndarray, np.ndarray]:
    """Edges as a stream sees them: sample index round((t - start) * rate) / nominal rate."""

    def conv(t: np.ndarray) -> np.ndarray:
        s = np.round((t - start) * rate)
        return s[s > 0] / nominal

    return conv(rising), conv(falling)


def test_decode_equals_reference_loop(barcodes: tuple[np.ndarray, np.ndarray]) -> None:
    on, off = barcodes
    times, values = al.decode_barcodes(on, off, total_duration=400.0)
    ref_t, ref_v = reference_decode(on, off, 400.0)
    assert times.size == 14
    np.testing.assert_array_equal(times, ref_t)
    np.testing.assert_array_equal(values, ref_v)
    assert np.all(np.diff(values) != 0)  # successive codes distinct


def test_decode_drops_codes_in_last_two_seconds(barcodes: tuple[np.ndarray, np.ndarray]) -> None:
    on, off = barcodes
    times, _ = al.decode_barcodes(on, off)
    last = times[-1]
    cut, _ = al.decode_barcodes(on, off, total_duration=last + 0.3)
    assert cut.size == times.size - 1


def test_first_edge_is_a_start_only_after_two_seconds() -> None:
    b = make_barcodes(np.random.default_rng(1), first_start_s=1.5, stop_s=100.0)
    times, _ = al.decode_barcodes(b.rising, b.falling)
    assert times[0] > 29  # the code at 1.5 s is not trusted (could be cut at the line start)
    shifted, _ = al.decode_barcodes(b.rising, b.falling, line_start=-1.0)
    assert shifted[0] == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("start", "eps", "nominal"),
    [(12.3456, 3.1e-6, 30_000.0), (0.8731, -4.7e-6, 2_500.0), (20.08, 2.35e-6, 30_000.0)],
)
def test_clock_fit_recovers_start_and_rate_within_one_sample(
    barcodes: tuple[np.ndarray, np.ndarray], start: float, eps: float, nominal: float
) -> None:
    on, off = barcodes
    rate = nominal * (1 + eps)
    s_on, s_off = stream_edges(on, off, start=start, rate=rate, nominal=nominal)
    sync = al.decode_barcodes(on, off, total_duration=400.0)
    clock = al.align_stream(
        s_on, s_off, sync, name="ProbeA-AP", nominal_rate=nominal, num_samples=10
    )
    k = np.array([0, 1_000_000, int(300 * nominal)])
    truth = start + k / rate
    assert np.max(np.abs(clock.times(k) - truth)) < 0.5 / nominal
    # a rate error that moves a sample 300 s in by less than half a sample
    assert abs(clock.rate_on_sync / rate - 1) * 300 < 0.5 / nominal
    assert clock.n_barcodes >= 10


def test_fewer_than_two_matching_barcodes_raise_alignment_error_naming_stream(
    barcodes: tuple[np.ndarray, np.ndarray],
) -> None:
    on, off = barcodes
    sync = al.decode_barcodes(on, off, total_duration=400.0)
    # the stream only saw the first 45 s: one barcode
    s_on, s_off = stream_edges(on[on < 45], off[off < 45.1], start=1.0, rate=30_000.0, nominal=3e4)
    with pytest.raises(AlignmentError) as info:
        al.align_stream(
            s_on, s_off, sync, name="Neuropix-PXI-100.ProbeC-AP", nominal_rate=3e4, num_samples=1
        )
    assert "Neuropix-PXI-100.ProbeC-AP" in str(info.value)
    assert info.value.field == "Neuropix-PXI-100.ProbeC-AP"
    assert "two barcodes" in (info.value.expected or "")
    assert isinstance(info.value, InconsistentDataError)


def test_no_common_values_raise_alignment_error() -> None:
    with pytest.raises(AlignmentError, match="0 barcode"):
        al.match_barcodes(
            np.array([1.0, 31.0, 61.0]),
            np.array([1, 2, 3]),
            np.array([5.0, 35.0, 65.0]),
            np.array([7, 8, 9]),
            name="x",
        )


def test_duplicate_sync_barcode_picks_occurrence_consistent_with_offset() -> None:
    # sync repeats value 11 (e.g. a generator restart); the stream saw only one of them
    sync_t = np.array([10.0, 40.0, 70.0, 100.0, 130.0, 160.0])
    sync_v = np.array([11, 12, 13, 11, 15, 16])
    offset = 7.25
    stream_t = np.array([40.0, 70.0, 100.0, 130.0]) - offset
    stream_v = np.array([12, 13, 11, 15])
    pairs = al.match_barcodes(stream_t, stream_v, sync_t, sync_v, name="s")
    np.testing.assert_allclose(pairs[:, 1] - pairs[:, 0], offset)
    assert 100.0 in pairs[:, 1] and 10.0 not in pairs[:, 1]


def test_duplicates_on_both_lines_pair_in_order() -> None:
    sync_t = np.array([10.0, 40.0, 70.0, 100.0])
    sync_v = np.array([5, 6, 5, 6])
    stream_t = sync_t - 3.0
    pairs = al.match_barcodes(stream_t, sync_v.copy(), sync_t, sync_v, name="s")
    np.testing.assert_allclose(pairs[:, 1] - pairs[:, 0], 3.0)
    assert pairs.shape == (4, 2)


def test_only_ambiguous_duplicates_raise_alignment_error() -> None:
    # every value occurs twice on sync and once on the stream: no unambiguous anchor
    sync_t = np.array([10.0, 40.0, 70.0, 100.0])
    sync_v = np.array([5, 6, 5, 6])
    with pytest.raises(AlignmentError):
        al.match_barcodes(np.array([1.0, 31.0]), np.array([5, 6]), sync_t, sync_v, name="dup")


def test_false_match_far_from_consensus_offset_is_discarded() -> None:
    sync_t = np.array([10.0, 40.0, 70.0, 100.0, 130.0])
    sync_v = np.array([1, 2, 3, 4, 5])
    stream_t = np.array([8.0, 38.0, 68.0, 98.0, 128.0])
    stream_v = np.array([1, 2, 3, 5, 4])  # two corrupted codes swap places
    pairs = al.match_barcodes(stream_t, stream_v, sync_t, sync_v, name="s")
    assert pairs.shape[0] == 3
    np.testing.assert_allclose(pairs[:, 1] - pairs[:, 0], 2.0)


def test_ttl_edges_split_by_sign_relative_to_first_sample() -> None:
    rising, falling = al.ttl_edge_times(
        np.array([1000, 1600, 4000, 4300]),
        np.array([1, -1, 3, -3]),
        first_sample=1000,
        sample_rate=30_000.0,
    )
    np.testing.assert_allclose(rising, [0.0, 0.1])
    np.testing.assert_allclose(falling, [0.02, 0.11])


def test_stream_clock_stop_time() -> None:
    c = al.StreamClock("s", 3e4, 30_000.3, 5.0, num_samples=300_003)
    assert c.stop_time == pytest.approx(15.0)
