"""Synthetic Open Ephys recordings and Kilosort/phy output are real: independent readers agree.

Readers used as referees: ``open_ephys.analysis.Session`` (open-ephys-python-tools), neo /
spikeinterface ``read_openephys`` (with probeinterface reading settings.xml), spikeinterface
``read_phy`` / ``read_kilosort``, and ``xml.etree`` for settings.xml (FORMATS §9, §10, §11).
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import npc_frames.synth.sorting as sorting_module
from npc_frames.errors import ParameterError
from npc_frames.synth.ephys import (
    SPIKE_TRUTH_DTYPES,
    EphysTruth,
    _map_in_order,
    make_ephys,
    probe_slot_ports,
)
from npc_frames.synth.sorting import (
    MAX_RATE_HZ,
    MIN_RATE_HZ,
    QUALITY_METRIC_COLUMNS,
    RATE_MEDIAN_HZ,
    RATE_SIGMA_LN,
    TEMPLATE_METRIC_COLUMNS,
    NpyAppender,
    draw_firing_rates,
    make_sorting,
    simulate_spike_trains,
)
from npc_frames.synth.truth import Truth

DATE = datetime.date(2023, 8, 31)
LETTERS = ("A", "E")  # one probe in each record node
REC_START, REC_STOP = 4.0, 184.0  # 3-minute recording on the sync clock
UNITS = 12


def barcode_edges(
    start: float, stop: float, *, first_value: int = 7_000, interval: float = 30.0
) -> tuple[np.ndarray, np.ndarray]:
    """Edges of an Open Ephys sync-barcode train (20 ms high, 20 ms low, 32 bits × 15 ms)."""
    t0 = np.arange(start + 2.5, stop - 2.0, interval)
    values = first_value + np.arange(t0.size)
    bits = (values[:, None] >> np.arange(32)[None, :]) & 1
    ones = np.ones((t0.size, 1), dtype=np.int64)
    level = np.concatenate([ones, 0 * ones, bits, 0 * ones], axis=1)
    slot_t = np.concatenate([[0.0, 0.02], 0.04 + 0.015 * np.arange(33)])
    change = np.diff(level, axis=1)
    rows, cols = np.nonzero(change)
    t = t0[rows] + slot_t[cols + 1]
    rising = np.sort(np.concatenate([t0, t[change[rows, cols] > 0]]))
    falling = np.sort(t[change[rows, cols] < 0])
    return rising, falling


BARCODE_RISING, BARCODE_FALLING = barcode_edges(0.0, 190.0)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EphysTruth]:
    root = tmp_path_factory.mktemp("ephys") / "ecephys_123456_2023-08-31_12-00-00"
    truth = make_ephys(
        root,
        rng=np.random.default_rng(42),
        date=DATE,
        probe_letters=LETTERS,
        units_per_probe=UNITS,
        recording_start_s=REC_START,
        recording_stop_s=REC_STOP,
        barcode_rising=BARCODE_RISING,
        barcode_falling=BARCODE_FALLING,
        clip_seconds=0.1,
        aborted_recording=True,
    )
    return root, truth


def clipped(root: Path) -> Path:
    return root / "ecephys" / "ecephys_clipped"


def rec1(root: Path, node: str) -> Path:
    return clipped(root) / node / "experiment1" / "recording1"


# ---------------------------------------------------------------------------------------------
# settings.xml (FORMATS §9.3)
# ---------------------------------------------------------------------------------------------


def letters_by_rule(slots: Sequence[int], ports: Sequence[int]) -> list[str]:
    """FORMATS §9.3 letter rule, written independently of the generator (A–F by slot/port)."""
    if len(set(zip(slots, ports))) == 6:
        return list("ABCDEF")
    letters = []
    for rank, slot in enumerate(sorted(set(slots))):
        used = sorted(p for s, p in zip(slots, ports) if s == slot)
        assert used != [2, 3], "ambiguous ports"
        shift = 1 if 4 in used else 0
        letters += ["ABCDEF"[p - 1 - shift + 3 * rank] for p in used]
    return letters


def test_settings_xml_np1_bank0_geometry(session: tuple[Path, EphysTruth]) -> None:
    root, _ = session
    tree = ET.parse(clipped(root) / "Record Node 102" / "settings.xml")
    probes = list(tree.getroot().iter("NP_PROBE"))
    assert len(probes) == len(LETTERS)
    for probe in probes:
        xpos = probe.find("ELECTRODE_XPOS")
        ypos = probe.find("ELECTRODE_YPOS")
        banks = probe.find("CHANNELS")
        assert xpos is not None and ypos is not None and banks is not None
        assert list(xpos.attrib)[:3] == ["CH0", "CH1", "CH2"] and len(xpos.attrib) == 384
        assert (int(xpos.attrib["CH0"]), int(ypos.attrib["CH0"])) == (27, 0)
        k = np.arange(384)
        x = np.array([int(xpos.attrib[f"CH{i}"]) for i in k])
        y = np.array([int(ypos.attrib[f"CH{i}"]) for i in k])
        np.testing.assert_array_equal(y, 20 * (k // 2))
        np.testing.assert_array_equal(x, np.array([27, 59, 11, 43])[k % 4])
        assert set(banks.attrib.values()) == {"0"}  # all channels in the tip bank
        assert len(probe.attrib["probe_serial_number"]) == 11
        assert probe.attrib["probe_name"] == "Neuropixels 1.0"


def test_settings_xml_info_and_processor(session: tuple[Path, EphysTruth]) -> None:
    root, truth = session
    tree = ET.parse(clipped(root) / "Record Node 102" / "settings.xml")
    info = tree.getroot().find("INFO")
    assert info is not None
    assert info.findtext("VERSION", "").startswith("0.6.")
    date = datetime.datetime.strptime(info.findtext("DATE", ""), "%d %b %Y %H:%M:%S")
    assert date.date() == DATE
    machine = info.find("MACHINE")
    assert machine is not None and machine.attrib["name"] == "W10DT05516"
    pxi = [p for p in tree.getroot().iter("PROCESSOR") if p.attrib["name"] == "Neuropix-PXI"]
    assert len(pxi) == 1 and len(list(pxi[0].iter("NP_PROBE"))) == len(LETTERS)
    serials = [int(p.attrib["probe_serial_number"]) for p in pxi[0].iter("NP_PROBE")]
    assert serials == [p.serial_number for p in truth.probes]


def test_settings_xml_identical_across_nodes_except_date(session: tuple[Path, EphysTruth]) -> None:
    root, _ = session
    texts = [
        (clipped(root) / n / "settings.xml").read_text()
        for n in ("Record Node 102", "Record Node 103")
    ]
    dates = [re.search(r"<DATE>(.*)</DATE>", t) for t in texts]
    assert all(dates)
    stripped = [re.sub(r"<DATE>.*</DATE>", "", t) for t in texts]
    assert stripped[0] == stripped[1]


def test_settings_xml_letter_rule_recovers_letters(session: tuple[Path, EphysTruth]) -> None:
    root, truth = session
    tree = ET.parse(clipped(root) / "Record Node 103" / "settings.xml")
    probes = list(tree.getroot().iter("NP_PROBE"))
    slots = [int(p.attrib["slot"]) for p in probes]
    ports = [int(p.attrib["port"]) for p in probes]
    assert letters_by_rule(slots, ports) == list(LETTERS)
    assert [(p.slot, p.port) for p in truth.probes] == list(zip(slots, ports))


@pytest.mark.parametrize(
    ("letters", "date"),
    [
        ("ABCDEF", DATE),
        ("ABCDEF", datetime.date(2024, 3, 1)),
        ("ABC", datetime.date(2024, 3, 1)),
        ("AB", datetime.date(2024, 3, 1)),
        ("BC", DATE),
        ("BC", datetime.date(2024, 3, 1)),
        ("C", DATE),
        ("ACE", DATE),
        ("BDF", datetime.date(2024, 3, 1)),
        ("ABEF", DATE),
        ("A", DATE),
    ],
)
def test_probe_letter_rule_for_fewer_probes(letters: str, date: datetime.date) -> None:
    slot_ports = probe_slot_ports(list(letters), date)
    slots = [slot_ports[letter][0] for letter in letters]
    ports = [slot_ports[letter][1] for letter in letters]
    assert letters_by_rule(slots, ports) == list(letters)
    assert all(1 <= p <= 4 for p in ports)


def test_probe_ports_shift_to_2_4_from_november_2023() -> None:
    assert probe_slot_ports(list("ABC"), datetime.date(2024, 1, 5))["A"] == (2, 2)
    assert probe_slot_ports(list("ABC"), datetime.date(2023, 8, 31))["A"] == (2, 1)


# ---------------------------------------------------------------------------------------------
# structure.oebin, sync_messages.txt, continuous, TTL (FORMATS §9.2–9.3, §10)
# ---------------------------------------------------------------------------------------------


def test_oebin_lists_streams_with_required_fields(session: tuple[Path, EphysTruth]) -> None:
    root, truth = session
    for node in ("Record Node 102", "Record Node 103"):
        oebin = json.loads((rec1(root, node) / "structure.oebin").read_text())
        assert oebin["GUI version"].startswith("0.6")
        folders = [c["folder_name"] for c in oebin["continuous"]]
        expected = [s.folder_name + "/" for s in truth.streams if s.record_node == node]
        assert folders == expected
        for c in oebin["continuous"]:
            for key in (
                "sample_rate",
                "source_processor_name",
                "source_processor_id",
                "stream_name",
                "recorded_processor",
                "recorded_processor_id",
                "num_channels",
                "channels",
            ):
                assert key in c
            assert len(c["channels"]) == c["num_channels"]
            assert c["num_channels"] == (8 if c["stream_name"] == "PXI-6133" else 384)
            ch = c["channels"][0]
            assert {
                "channel_name",
                "description",
                "identifier",
                "history",
                "bit_volts",
                "units",
            } <= set(ch)
            if c["num_channels"] == 384:
                assert ch["channel_name"] == "CH1"
                assert ch["bit_volts"] == pytest.approx(0.195, rel=1e-6)
        # channel lists are pre-rendered: the text must still be exactly json.dumps(indent=4)
        text = (rec1(root, node) / "structure.oebin").read_text()
        assert text == json.dumps(oebin, indent=4)
        ttl = [e for e in oebin["events"] if e["folder_name"].endswith("/TTL/")]
        assert [e["folder_name"] for e in ttl] == [f + "TTL/" for f in expected]
        for e in oebin["events"]:
            assert {
                "folder_name",
                "channel_name",
                "description",
                "identifier",
                "sample_rate",
                "type",
                "num_channels",
                "source_processor",
                "stream_name",
            } <= set(e)


def test_sync_messages_map_onto_folders_and_first_samples(session: tuple[Path, EphysTruth]) -> None:
    root, truth = session
    for node in ("Record Node 102", "Record Node 103"):
        lines = (rec1(root, node) / "sync_messages.txt").read_text().splitlines()
        sw = re.fullmatch(
            r"Software Time \(milliseconds since midnight Jan 1st 1970 UTC\): (\d+)", lines[0]
        )
        assert sw and int(sw.group(1)) == truth.software_time_ms
        for line in lines[1:]:
            m = re.fullmatch(r"Start Time for (.+) \((\d+)\) - (.+) @ (\d+) Hz: (\d+)", line)
            assert m, line
            folder = f"{m.group(1)}-{m.group(2)}.{m.group(3)}"
            stream = truth.stream(folder, node)
            assert int(m.group(4)) == stream.nominal_rate
            first = np.load(rec1(root, node) / "continuous" / folder / "sample_numbers.npy")[0]
            assert int(m.group(5)) == first == stream.first_sample_number


def test_continuous_dat_is_clipped_int16_interleaved(session: tuple[Path, EphysTruth]) -> None:
    root, truth = session
    for s in truth.streams:
        folder = root / s.path
        data = np.fromfile(folder / "continuous.dat", dtype="<i2")
        assert data.size == s.num_samples_clipped * s.num_channels
        sample_numbers = np.load(folder / "sample_numbers.npy")
        assert sample_numbers.dtype == np.int64
        np.testing.assert_array_equal(
            sample_numbers, s.first_sample_number + np.arange(s.num_samples_clipped)
        )
        timestamps = np.load(folder / "timestamps.npy")
        assert timestamps.dtype == np.float64 and np.all(np.diff(timestamps) > 0)
        assert s.first_sample_number > 1e7  # acquisition started long before recording
        assert s.num_samples > 100 * s.num_samples_clipped  # continuous.dat is clipped


def test_each_stream_has_its_own_clock(session: tuple[Path, EphysTruth]) -> None:
    _, truth = session
    probe_streams = [s for s in truth.streams if s.kind != "nidaq"]
    errors = [s.rate_on_sync / s.nominal_rate - 1 for s in probe_streams]
    assert all(abs(e) <= 5e-6 for e in errors)
    assert len(set(np.round(errors, 12))) == len(errors)
    assert len({s.start_time_on_sync for s in probe_streams}) == len(probe_streams)
    assert all(REC_START <= s.start_time_on_sync < REC_START + 0.02 for s in truth.streams)


def test_ttl_sample_numbers_follow_the_barcode_rule(session: tuple[Path, EphysTruth]) -> None:
    root, truth = session
    edges = np.concatenate([BARCODE_RISING, BARCODE_FALLING])
    states = np.concatenate([np.ones(BARCODE_RISING.size), -np.ones(BARCODE_FALLING.size)])
    order = np.argsort(edges)
    edges, states = edges[order], states[order]
    for s in truth.streams:
        ttl = (
            clipped(root)
            / s.record_node
            / "experiment1"
            / "recording1"
            / "events"
            / s.folder_name
            / "TTL"
        )
        sn = np.load(ttl / "sample_numbers.npy")
        st = np.load(ttl / "states.npy")
        assert st.dtype == np.int16 and set(np.unique(st)) <= {-1, 1}
        stop = s.start_time_on_sync + s.num_samples / s.rate_on_sync
        inside = (edges >= s.start_time_on_sync) & (edges < stop)
        expected = (
            np.round((edges[inside] - s.start_time_on_sync) * s.rate_on_sync).astype(np.int64)
            + s.first_sample_number
        )
        np.testing.assert_array_equal(sn, expected)
        np.testing.assert_array_equal(st, states[inside])
        assert sn.size == s.num_ttl_events and sn.size >= 2 * 5
        # spans the whole recording even though continuous.dat is short
        assert sn[-1] - s.first_sample_number > 100 * s.num_samples_clipped
        # back on sync within half a sample
        back = s.start_time_on_sync + (sn - s.first_sample_number) / s.rate_on_sync
        assert np.max(np.abs(back - edges[inside])) <= 0.5 / s.rate_on_sync + 1e-9
        words = np.load(ttl / "full_words.npy")
        assert words.dtype == np.uint64
        np.testing.assert_array_equal(words, (st > 0).astype(np.uint64))


def test_open_ephys_python_tools_reads_streams_and_events(session: tuple[Path, EphysTruth]) -> None:
    from open_ephys.analysis import Session

    root, truth = session
    oe = Session(str(clipped(root)))
    nodes = {Path(rn.directory).name: rn for rn in oe.recordnodes}
    assert set(nodes) == {"Record Node 102", "Record Node 103"}
    for name, rn in nodes.items():
        assert len(rn.recordings) == 2  # real recording + aborted one
        rec = rn.recordings[0]
        expected = [s for s in truth.streams if s.record_node == name]
        assert [c.metadata.stream_name for c in rec.continuous] == [s.stream_name for s in expected]
        for c, s in zip(rec.continuous, expected):
            assert c.metadata.sample_rate == s.nominal_rate
            assert c.metadata.num_channels == s.num_channels
            assert c.samples.shape == (s.num_samples_clipped, s.num_channels)
            assert int(c.sample_numbers[0]) == s.first_sample_number
        events = rec.events
        assert events is not None
        edges = np.concatenate([BARCODE_RISING, BARCODE_FALLING])
        rising = np.concatenate([np.ones(BARCODE_RISING.size), np.zeros(BARCODE_FALLING.size)])
        for s in expected:
            ev = events[events.stream_name == s.stream_name].sort_values("sample_number")
            assert len(ev) == s.num_ttl_events
            assert set(ev.line) == {1}
            stop = s.start_time_on_sync + s.num_samples / s.rate_on_sync
            inside = (edges >= s.start_time_on_sync) & (edges < stop)
            order = np.argsort(edges[inside])
            want = np.round((edges[inside][order] - s.start_time_on_sync) * s.rate_on_sync)
            np.testing.assert_array_equal(ev.sample_number.to_numpy(), want + s.first_sample_number)
            np.testing.assert_array_equal(ev.state.to_numpy(), rising[inside][order])
        # the aborted recording is the smaller one (FORMATS §9.2: the largest wins)
        aborted = rn.recordings[1]
        assert aborted.continuous[0].samples.shape[0] < rec.continuous[0].samples.shape[0]
        sizes = [
            sum(f.stat().st_size for f in Path(r.directory).rglob("*") if f.is_file())
            for r in rn.recordings
        ]
        assert sizes[0] > sizes[1]


def test_spikeinterface_read_openephys_streams_and_probe(session: tuple[Path, EphysTruth]) -> None:
    import spikeinterface.extractors as se

    root, truth = session
    names, _ = se.get_neo_streams("openephysbinary", str(clipped(root)))
    expected = sorted(f"{s.record_node}#{s.folder_name}" for s in truth.streams)
    assert sorted(names) == expected
    for probe in truth.probes:
        ap = truth.ap_stream(probe.letter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = se.read_openephys(
                str(clipped(root)), stream_name=f"{ap.record_node}#{ap.folder_name}", block_index=0
            )
        assert rec.get_num_channels() == 384
        assert rec.get_sampling_frequency() == 30000.0
        assert rec.get_num_samples(segment_index=0) == ap.num_samples_clipped
        p = rec.get_probe()
        assert p.serial_number == str(probe.serial_number)
        assert p.annotations["slot"] == str(probe.slot) and p.annotations["port"] == str(probe.port)
        locs = rec.get_channel_locations()
        # probeinterface shifts x so the leftmost column is 0 (27, 59, 11, 43 -> 16, 48, 0, 32)
        np.testing.assert_array_equal(locs[:, 0], np.asarray(probe.channel_x) - 11)
        np.testing.assert_array_equal(locs[:, 1], np.asarray(probe.channel_y))


def test_ap_continuous_holds_spikes_of_the_truth(session: tuple[Path, EphysTruth]) -> None:
    root, truth = session
    probe = truth.probes[0]
    ap = truth.ap_stream(probe.letter)
    data = np.fromfile(root / ap.path / "continuous.dat", dtype="<i2").reshape(-1, 384) * 0.195
    rows = truth.unit_rows(probe.letter)
    in_clip = (
        np.isin(truth.spike_unit, rows)
        & (truth.spike_sample >= 30)
        & (truth.spike_sample < data.shape[0] - 60)
    )
    if not in_clip.any():
        pytest.skip("no spike inside the 0.1 s clip for this seed")
    i = np.flatnonzero(in_clip)[np.argmax(truth.spike_amplitude[in_clip])]
    unit = truth.spike_unit[i]
    ch = truth.unit_peak_channel[unit]
    trace = data[truth.spike_sample[i] - 30 : truth.spike_sample[i] + 60, ch]
    assert np.ptp(trace) > 0.5 * truth.spike_amplitude[i]


# ---------------------------------------------------------------------------------------------
# sorting output (FORMATS §11)
# ---------------------------------------------------------------------------------------------


def test_read_phy_spike_trains_equal_truth(session: tuple[Path, EphysTruth]) -> None:
    import spikeinterface.extractors as se

    root, truth = session
    for probe in truth.probes:
        sorting = se.read_phy(str(root / probe.sorting_path))
        rows = truth.unit_rows(probe.letter)
        np.testing.assert_array_equal(sorting.unit_ids, truth.unit_cluster_id[rows])
        assert sorting.get_sampling_frequency() == 30000.0
        for row in rows:
            train = sorting.get_unit_spike_train(int(truth.unit_cluster_id[row]))
            np.testing.assert_array_equal(train, truth.spike_sample[truth.spike_unit == row])
            assert train.size == truth.unit_spike_count[row]


def test_read_kilosort_counts_equal_truth(session: tuple[Path, EphysTruth]) -> None:
    import spikeinterface.extractors as se

    root, truth = session
    probe = truth.probes[-1]
    sorting = se.read_kilosort(str(root / probe.sorting_path))
    rows = truth.unit_rows(probe.letter)
    counts = sorting.count_num_spikes_per_unit(outputs="dict")
    assert {int(k): int(v) for k, v in counts.items()} == dict(
        zip(truth.unit_cluster_id[rows].tolist(), truth.unit_spike_count[rows].tolist())
    )


def test_kilosort_files_have_kilosort_dtypes(session: tuple[Path, EphysTruth]) -> None:
    root, truth = session
    folder = root / truth.probes[0].sorting_path
    times = np.load(folder / "spike_times.npy")
    assert times.dtype == np.uint64 and np.all(np.diff(times.astype(np.int64)) >= 0)
    templates = np.load(folder / "templates.npy")
    spike_templates = np.load(folder / "spike_templates.npy")
    assert templates.shape[1:] == (61, 384)
    assert spike_templates.max() < templates.shape[0]
    assert np.load(folder / "channel_positions.npy").shape == (384, 2)
    params = (folder / "params.py").read_text()
    for key in ("dat_path", "n_channels_dat", "dtype", "offset", "sample_rate", "hp_filtered"):
        assert re.search(rf"^{key} = ", params, re.M)
    amplitudes = np.load(folder / "amplitudes.npy")
    clusters = np.load(folder / "spike_clusters.npy")
    rows = truth.unit_rows(truth.probes[0].letter)
    for row in rows[:3]:
        mine = clusters == truth.unit_cluster_id[row]
        np.testing.assert_allclose(
            amplitudes[mine], truth.spike_amplitude[truth.spike_unit == row], rtol=1e-6
        )


def test_cluster_ids_are_non_contiguous(session: tuple[Path, EphysTruth]) -> None:
    _, truth = session
    ids = truth.unit_cluster_id[truth.unit_rows("A")]
    assert np.all(np.diff(ids) > 0)
    assert ids[-1] + 1 > ids.size  # gaps, as after curation


def test_metrics_tables_columns_and_counts(session: tuple[Path, EphysTruth]) -> None:
    root, truth = session
    for probe in truth.probes:
        folder = root / probe.sorting_path
        q = pl.read_csv(folder / "quality_metrics.csv")
        t = pl.read_csv(folder / "template_metrics.csv")
        assert q.columns == ["cluster_id", *QUALITY_METRIC_COLUMNS]
        assert t.columns == ["cluster_id", *TEMPLATE_METRIC_COLUMNS]
        rows = truth.unit_rows(probe.letter)
        assert q["cluster_id"].to_list() == truth.unit_cluster_id[rows].tolist()
        assert t["cluster_id"].to_list() == truth.unit_cluster_id[rows].tolist()
        assert q["num_spikes"].to_list() == truth.unit_spike_count[rows].tolist()
        for name in (
            "cluster_KSLabel.tsv",
            "cluster_group.tsv",
            "cluster_Amplitude.tsv",
            "cluster_ContamPct.tsv",
        ):
            tsv = pl.read_csv(folder / name, separator="\t")
            assert tsv.columns[0] == "cluster_id" and tsv.height == rows.size


def test_templates_average_peak_channel_and_amplitude_rule(
    session: tuple[Path, EphysTruth],
) -> None:
    root, truth = session
    for probe in truth.probes:
        templates = np.load(root / probe.sorting_path / "templates_average.npy")
        rows = truth.unit_rows(probe.letter)
        assert templates.shape == (rows.size, 90, 384)
        p2p = templates.max(axis=1) - templates.min(axis=1)
        np.testing.assert_array_equal(p2p.argmax(axis=1), truth.unit_peak_channel[rows])
        np.testing.assert_allclose(p2p.max(axis=1), truth.unit_amplitude[rows], rtol=1e-6)
        has_data = np.any(templates != 0, axis=1)
        assert np.all(has_data.sum(axis=1) < 384)  # sparse: "channels with data" is a subset


def test_spike_times_on_sync_follow_the_stream_clock(session: tuple[Path, EphysTruth]) -> None:
    _, truth = session
    for probe in truth.probes:
        ap = truth.ap_stream(probe.letter)
        rows = truth.unit_rows(probe.letter)
        sel = np.isin(truth.spike_unit, rows)
        np.testing.assert_allclose(
            truth.spike_time[sel],
            ap.start_time_on_sync + truth.spike_sample[sel] / ap.rate_on_sync,
            rtol=0,
            atol=1e-9,
        )
        assert truth.spike_time[sel].min() >= ap.start_time_on_sync
        assert truth.spike_time[sel].max() < REC_STOP
    # sorted by unit then time
    key = truth.spike_unit.astype(np.int64) * 10**12 + truth.spike_sample
    assert np.all(np.diff(key) > 0)
    np.testing.assert_array_equal(np.bincount(truth.spike_unit), truth.unit_spike_count)


def test_truth_json_round_trip(session: tuple[Path, EphysTruth]) -> None:
    _, truth = session
    data = json.loads(json.dumps(truth.to_json_dict()))
    back = EphysTruth.from_json_dict(data, truth.arrays())
    assert back.streams == truth.streams and back.probes == truth.probes
    np.testing.assert_array_equal(back.unit_probe, truth.unit_probe)
    np.testing.assert_array_equal(back.spike_time, truth.spike_time)


# ---------------------------------------------------------------------------------------------
# spike-train statistics and metrics (no Open Ephys folder needed)
# ---------------------------------------------------------------------------------------------


def test_spike_trains_rates_refractory_and_sparse_units() -> None:
    fs = 30000.0
    trains = simulate_spike_trains(
        np.random.default_rng(3), n_units=200, n_samples=int(600 * fs), sample_rate=fs
    )
    counts = trains.counts
    assert counts.min() >= 1
    assert np.sum(counts <= 10) >= 2  # a few units with very few spikes
    # rates within the clipped log-normal's bounds, except the ~2 % units of 1–10 spikes
    assert np.all(trains.rates_hz <= MAX_RATE_HZ)
    assert np.sum(trains.rates_hz < MIN_RATE_HZ) == 4
    assert np.all(np.diff(trains.unit_index) >= 0)
    np.testing.assert_array_equal(counts, np.bincount(trains.unit_index, minlength=200))
    same = trains.unit_index[1:] == trains.unit_index[:-1]
    isi = np.diff(trains.samples)
    assert np.all(isi[same] > 0)
    violating_units = np.unique(trains.unit_index[1:][same & (isi < 45)])
    assert 0 < violating_units.size < 0.3 * 200  # only "contaminated" units violate 1.5 ms
    # observed rates match the drawn ones for well-sampled units that fire all session
    well = trains.rates_hz * 600 > 2000
    observed = counts[well] / 600
    assert np.median(np.abs(observed / trains.rates_hz[well] - 1)) < 0.05


@pytest.mark.parametrize("chunk", [None, 997], ids=["default-chunks", "997-spike-chunks"])
def test_quality_metrics_make_default_qc_pass_for_some_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int | None
) -> None:
    if chunk is not None:  # chunk boundaries inside units: ISIs across them must still count
        monkeypatch.setattr(sorting_module, "CHUNK_SPIKES", chunk)
    k = np.arange(384)
    x = np.array([27.0, 59.0, 11.0, 43.0])[k % 4]
    y = 20.0 * (k // 2)
    fs = 30000.0
    result = make_sorting(
        tmp_path / "probe",
        rng=np.random.default_rng(5),
        n_units=80,
        n_samples=int(900 * fs),
        channel_x=x,
        channel_y=y,
    )
    q = pl.read_csv(tmp_path / "probe" / "quality_metrics.csv")
    assert q["num_spikes"].to_list() == result.spike_counts.tolist()
    # FORMATS §11.3 item 9 without activity_drift / decoder_label (absent in Kilosort output)
    qc = (
        (pl.col("isi_violations_ratio") <= 0.5)
        & (pl.col("amplitude_cutoff") <= 0.1)
        & (pl.col("presence_ratio") >= 0.7)
    )
    passed = q.select(qc.fill_null(False)).to_series()
    assert 0 < passed.sum() < q.height
    assert q["presence_ratio"].min() < 0.7 and q["isi_violations_ratio"].max() > 0.5
    assert (q["amplitude_cutoff"] > 0.1).any()
    # isi_violations_count recomputed independently from spike_times / spike_clusters
    times = np.load(tmp_path / "probe" / "spike_times.npy").astype(np.int64)
    clusters = np.load(tmp_path / "probe" / "spike_clusters.npy")
    order = np.lexsort((times, clusters))
    t, c = times[order], clusters[order]
    viol = (np.diff(t) < 0.0015 * fs) & (c[1:] == c[:-1])
    ids, n = np.unique(c[1:][viol], return_counts=True)
    counts = dict(zip(q["cluster_id"].to_list(), q["isi_violations_count"].to_list()))
    assert {int(i): int(v) for i, v in zip(ids, n)} == {k: v for k, v in counts.items() if v}


# ---------------------------------------------------------------------------------------------
# bad input -> typed errors naming the field
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"probe_letters": ["D", "E"]}, "probe_letters"),
        ({"probe_letters": ["A", "A"]}, "probe_letters"),
        ({"probe_letters": ["G"]}, "probe_letters"),
        ({"probe_letters": []}, "probe_letters"),
        ({"units_per_probe": 0}, "units_per_probe"),
        ({"recording_stop_s": 5.0}, "recording_stop_s"),
        ({"clip_seconds": 0.0}, "clip_seconds"),
    ],
)
def test_bad_parameters_raise_parameter_error(tmp_path: Path, kwargs: dict, field: str) -> None:
    args: dict = {
        "rng": np.random.default_rng(0),
        "date": DATE,
        "probe_letters": ["A"],
        "units_per_probe": 2,
        "recording_start_s": 1.0,
        "recording_stop_s": 60.0,
        "barcode_rising": BARCODE_RISING,
        "barcode_falling": BARCODE_FALLING,
        "clip_seconds": 0.01,
    }
    args.update(kwargs)
    with pytest.raises(ParameterError) as info:
        make_ephys(tmp_path / "s", **args)
    assert info.value.field == field
    assert not (tmp_path / "s").exists()  # nothing written on bad input


def test_truth_arrays_dir_that_is_a_file_raises_parameter_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "spikes.npy"
    not_a_folder.write_bytes(b"")
    with pytest.raises(ParameterError) as info:
        make_ephys(
            tmp_path / "s",
            rng=np.random.default_rng(0),
            date=DATE,
            probe_letters=["A"],
            units_per_probe=2,
            recording_start_s=1.0,
            recording_stop_s=60.0,
            barcode_rising=BARCODE_RISING,
            barcode_falling=BARCODE_FALLING,
            truth_arrays_dir=not_a_folder,
        )
    assert info.value.field == "truth_arrays_dir"
    assert str(not_a_folder) in str(info.value)
    assert not (tmp_path / "s").exists()


def test_software_time_defaults_to_sync_start_plus_recording_start(tmp_path: Path) -> None:
    sync_start = datetime.datetime(2023, 8, 31, 12, 33, 31)
    truth = make_ephys(
        tmp_path / "s",
        rng=np.random.default_rng(1),
        date=DATE,
        probe_letters=["A"],
        units_per_probe=2,
        recording_start_s=20.0,
        recording_stop_s=80.0,
        barcode_rising=BARCODE_RISING,
        barcode_falling=BARCODE_FALLING,
        clip_seconds=0.01,
        sync_start=sync_start,
    )
    pacific = datetime.timezone(datetime.timedelta(hours=-7))  # PDT on 2023-08-31
    expected = sync_start.replace(tzinfo=pacific) + datetime.timedelta(seconds=20)
    assert truth.software_time_ms == round(expected.timestamp() * 1000)
    settings = ET.parse(
        tmp_path / "s" / "ecephys" / "ecephys_clipped" / "Record Node 102" / "settings.xml"
    )
    assert settings.getroot().findtext("INFO/DATE") == "31 Aug 2023 12:33:51"


def test_same_seed_gives_identical_output(tmp_path: Path) -> None:
    def run(name: str) -> EphysTruth:
        return make_ephys(
            tmp_path / name,
            rng=np.random.default_rng(9),
            date=DATE,
            probe_letters=["A", "B", "D"],
            units_per_probe=3,
            recording_start_s=2.0,
            recording_stop_s=62.0,
            barcode_rising=BARCODE_RISING,
            barcode_falling=BARCODE_FALLING,
            clip_seconds=0.01,
        )

    a, b = run("a"), run("b")
    assert a.to_json_dict() == b.to_json_dict()
    for name, arr in a.arrays().items():
        np.testing.assert_array_equal(arr, b.arrays()[name], err_msg=name)
    for p in a.probes:
        for f in ("spike_times.npy", "spike_clusters.npy", "templates_average.npy"):
            np.testing.assert_array_equal(
                np.load(tmp_path / "a" / p.sorting_path / f),
                np.load(tmp_path / "b" / p.sorting_path / f),
            )


def test_sorting_bad_parameters_raise_parameter_error(tmp_path: Path) -> None:
    x = np.zeros(384)
    with pytest.raises(ParameterError) as info:
        make_sorting(
            tmp_path / "p",
            rng=np.random.default_rng(0),
            n_units=3,
            n_samples=900_000,
            channel_x=x,
            channel_y=np.zeros(10),
        )
    assert info.value.field == "channel_y"
    with pytest.raises(ParameterError) as info:
        simulate_spike_trains(np.random.default_rng(0), n_units=0, n_samples=900_000)
    assert info.value.field == "n_units"
    with pytest.raises(ParameterError) as info:
        simulate_spike_trains(np.random.default_rng(0), n_units=2, n_samples=1000)
    assert info.value.field == "n_samples"


# ---------------------------------------------------------------------------------------------
# firing rates and the memory-bounded writers
# ---------------------------------------------------------------------------------------------


def test_firing_rates_follow_the_documented_clipped_lognormal() -> None:
    from scipy import stats

    rates = draw_firing_rates(np.random.default_rng(11), 400_000)
    assert rates.min() >= MIN_RATE_HZ == 0.05 and rates.max() <= MAX_RATE_HZ == 60.0
    dist = stats.lognorm(s=RATE_SIGMA_LN, scale=RATE_MEDIAN_HZ)
    assert np.median(rates) == pytest.approx(2.0, rel=0.01)
    assert np.mean(rates == MIN_RATE_HZ) == pytest.approx(dist.cdf(0.05), abs=1e-3)
    assert np.mean(rates == MAX_RATE_HZ) == pytest.approx(dist.sf(60.0), abs=5e-4)
    # mean of the clipped distribution from the closed-form partial expectation of a log-normal:
    # ∫_a^b x f(x) dx = exp(μ + σ²/2) · [Φ((ln b − μ − σ²)/σ) − Φ((ln a − μ − σ²)/σ)]
    mu, sigma = np.log(RATE_MEDIAN_HZ), RATE_SIGMA_LN
    z = (np.log([0.05, 60.0]) - mu - sigma**2) / sigma
    body = np.exp(mu + sigma**2 / 2) * (stats.norm.cdf(z[1]) - stats.norm.cdf(z[0]))
    mean = 0.05 * dist.cdf(0.05) + body + 60.0 * dist.sf(60.0)
    assert 3.7 < mean < 3.9  # documented: ~3.8 Hz, ~60 M spikes at full scale
    assert rates.mean() == pytest.approx(mean, rel=0.01)


def test_npy_appender_writes_a_loadable_array_piece_by_piece(tmp_path: Path) -> None:
    with NpyAppender(tmp_path / "a.npy", np.int32) as out:
        out.append(np.arange(5))
        out.append(np.empty(0))
        out.append(np.arange(5, 12, dtype=np.int64))  # cast to the file's dtype
    a = np.load(tmp_path / "a.npy")
    assert a.dtype == np.int32
    np.testing.assert_array_equal(a, np.arange(12))
    assert NpyAppender(tmp_path / "e.npy", np.float64).close() == tmp_path / "e.npy"
    assert np.load(tmp_path / "e.npy").shape == (0,)


def test_map_in_order_yields_in_order_and_runs_at_most_workers_ahead() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.002 * (i % 3))  # later calls often finish first
        return i * 10

    for i, result in enumerate(_map_in_order(work, range(8), workers=2)):
        assert result == i * 10
        with lock:
            assert len(started) <= i + 2  # never more than 2 results beyond those consumed
    assert sorted(started) == list(range(8))


def test_truth_arrays_dir_streams_the_same_spike_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small chunks: several appends per probe and several unit groups per simulation
    monkeypatch.setattr(sorting_module, "CHUNK_SPIKES", 500)
    kwargs: dict = {
        "date": DATE,
        "probe_letters": ["A", "B", "D"],
        "units_per_probe": 5,
        "recording_start_s": 2.0,
        "recording_stop_s": 92.0,
        "barcode_rising": BARCODE_RISING,
        "barcode_falling": BARCODE_FALLING,
        "clip_seconds": 0.01,
    }
    in_memory = make_ephys(tmp_path / "a", rng=np.random.default_rng(9), **kwargs)
    folder = tmp_path / "truth" / "spikes"
    streamed = make_ephys(
        tmp_path / "b", rng=np.random.default_rng(9), truth_arrays_dir=folder, **kwargs
    )
    assert streamed.n_spikes > 3 * 500
    assert streamed.to_json_dict() == in_memory.to_json_dict()
    for name, dtype in SPIKE_TRUTH_DTYPES.items():
        arr = getattr(streamed, name)
        assert isinstance(arr, np.memmap) and not arr.flags.writeable
        assert arr.dtype == dtype == getattr(in_memory, name).dtype
        assert Path(arr.filename) == (folder / f"{name}.npy").resolve()
        np.testing.assert_array_equal(arr, getattr(in_memory, name), err_msg=name)
    # the sorting output does not depend on where the truth goes
    for p in in_memory.probes:
        for f in ("spike_times.npy", "spike_clusters.npy", "spike_templates.npy"):
            np.testing.assert_array_equal(
                np.load(tmp_path / "a" / p.sorting_path / f),
                np.load(tmp_path / "b" / p.sorting_path / f),
            )


def test_truth_save_references_memmapped_npy_files_inside_the_folder(tmp_path: Path) -> None:
    base = tmp_path / "s.truth"
    (base / "arrays" / "spikes").mkdir(parents=True)
    np.save(base / "arrays" / "spikes" / "inside.npy", np.arange(100.0))
    np.save(tmp_path / "outside.npy", np.arange(100.0))
    inside = np.load(base / "arrays" / "spikes" / "inside.npy", mmap_mode="r")
    outside = np.load(tmp_path / "outside.npy", mmap_mode="r")
    truth = Truth(
        raw_path=str(tmp_path / "s"),
        truth_dir=str(base),
        session_id="123456_2023-08-31",
        subject=123456,
        date=DATE,
        sync_start=datetime.datetime(2023, 8, 31, 12),
        sync_rate=100_000.0,
        sync_total_samples=1,
        sync_lines={},
        line_labels=[],
        barcodes={},
        scripts=[],
        ephys={"inside": inside, "view": inside[10:], "outside": outside, "plain": np.arange(50)},
        video={},
        metadata={},
        counts={},
        params={},
    )
    truth.save()
    doc = json.loads((base / "truth.json").read_text())
    assert doc["ephys"]["inside"] == {"__npy__": "arrays/spikes/inside.npy"}  # not copied
    for key in ("view", "outside", "plain"):  # a view, a file elsewhere, memory: saved
        assert doc["ephys"][key] == {"__npy__": f"arrays/ephys.{key}.npy"}
    loaded = Truth.load(base)
    np.testing.assert_array_equal(loaded.ephys["inside"], np.arange(100.0))
    np.testing.assert_array_equal(loaded.ephys["view"], np.arange(10.0, 100.0))
    np.testing.assert_array_equal(loaded.ephys["outside"], np.arange(100.0))
    truth.save()  # saving again over its own files keeps them intact
    np.testing.assert_array_equal(Truth.load(base).ephys["inside"], np.arange(100.0))


def test_make_session_writes_spike_truth_once(synth_session: Truth) -> None:
    truth_dir = Path(synth_session.truth_dir)
    doc = json.loads((truth_dir / "truth.json").read_text())
    for name in SPIKE_TRUTH_DTYPES:
        assert doc["ephys"][name] == {"__npy__": f"arrays/ephys_spikes/{name}.npy"}
        assert not (truth_dir / "arrays" / f"ephys.{name}.npy").exists()
    loaded = Truth.load(truth_dir)
    for name in SPIKE_TRUTH_DTYPES:
        np.testing.assert_array_equal(loaded.ephys[name], getattr(synth_session.ephys, name))
    np.testing.assert_array_equal(
        np.bincount(loaded.ephys["spike_unit"]), loaded.ephys["unit_spike_count"]
    )
