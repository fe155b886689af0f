"""Open Ephys binary reader (FORMATS §9): record nodes, recordings, oebin, sync messages,
settings.xml (geometry, probe letters), TTL events, continuous memmaps; real GUI recordings from
the open-ephys-python-tools sdist are checked against that package's own reader.

``write_record_node`` is a small writer of Open Ephys folders used by the other ephys tests.
"""

from __future__ import annotations

import json
import os
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from npc_frames.errors import BadFormatError, InconsistentDataError, MissingFileError
from npc_frames.readers import openephys as oe


# ------------------------------------------------------------------------------ local writer
@dataclass
class StreamSpec:
    folder: str  # "Neuropix-PXI-100.ProbeA-AP"
    rate: float
    n_channels: int
    n_samples: int
    first_sample: int = 210_069_564
    ttl: tuple[np.ndarray, np.ndarray] | None = None  # (sample numbers, states)


@dataclass
class ProbeSpec:
    letter: str
    slot: int
    port: int
    serial: str


def np1_geometry(n: int = 384) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n)
    return np.array([27.0, 59.0, 11.0, 43.0])[k % 4], 20.0 * (k // 2)


def write_settings(path: Path, probes: Sequence[ProbeSpec], *, n_channels: int = 384) -> None:
    root = ET.Element("SETTINGS")
    info = ET.SubElement(root, "INFO")
    ET.SubElement(info, "VERSION").text = "0.6.6"
    ET.SubElement(info, "DATE").text = "31 Aug 2023 12:33:40"
    ET.SubElement(info, "MACHINE", name="W10DT05516")
    chain = ET.SubElement(root, "SIGNALCHAIN")
    proc = ET.SubElement(chain, "PROCESSOR", name="Neuropix-PXI", libraryVersion="0.4.0")
    editor = ET.SubElement(proc, "EDITOR")
    x, y = np1_geometry(n_channels)
    for p in probes:
        e = ET.SubElement(
            editor,
            "NP_PROBE",
            slot=str(p.slot),
            port=str(p.port),
            dock="1",
            probe_serial_number=p.serial,
            probe_name="Neuropixels 1.0",
            referenceChannel="Tip",
        )
        ET.SubElement(e, "CHANNELS", {f"CH{k}": "0" for k in range(n_channels)})
        ET.SubElement(e, "ELECTRODE_XPOS", {f"CH{k}": f"{x[k]:g}" for k in range(n_channels)})
        ET.SubElement(e, "ELECTRODE_YPOS", {f"CH{k}": f"{y[k]:g}" for k in range(n_channels)})
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def write_recording(rec: Path, streams: Sequence[StreamSpec], *, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rec.mkdir(parents=True, exist_ok=True)
    continuous = []
    events = []
    lines = ["Software Time (milliseconds since midnight Jan 1st 1970 UTC): 1693510411000"]
    for s in streams:
        proc, stream_name = s.folder.split(".", 1)
        proc_name, proc_id = proc.rsplit("-", 1)
        cont = rec / "continuous" / s.folder
        cont.mkdir(parents=True)
        rng.integers(-500, 500, (s.n_samples, s.n_channels), dtype=np.int16).tofile(
            cont / "continuous.dat"
        )
        np.save(
            cont / "sample_numbers.npy", s.first_sample + np.arange(s.n_samples, dtype=np.int64)
        )
        np.save(cont / "timestamps.npy", np.arange(s.n_samples) / s.rate)
        continuous.append(
            {
                "folder_name": s.folder + "/",
                "sample_rate": s.rate,
                "source_processor_name": proc_name,
                "source_processor_id": int(proc_id),
                "stream_name": stream_name,
                "recorded_processor": "Record Node",
                "recorded_processor_id": 102,
                "num_channels": s.n_channels,
                "channels": [
                    {"channel_name": f"CH{k + 1}", "bit_volts": 0.195, "units": "uV"}
                    for k in range(s.n_channels)
                ],
            }
        )
        lines.append(
            f"Start Time for {proc_name} ({proc_id}) - {stream_name} @ {int(s.rate)} Hz: "
            f"{s.first_sample}"
        )
        if s.ttl is not None:
            ttl = rec / "events" / s.folder / "TTL"
            ttl.mkdir(parents=True)
            samples, states = s.ttl
            np.save(ttl / "sample_numbers.npy", np.asarray(samples, np.int64))
            np.save(ttl / "states.npy", np.asarray(states, np.int16))
            np.save(ttl / "timestamps.npy", np.asarray(samples, np.float64) / s.rate)
            np.save(ttl / "full_words.npy", (np.asarray(states) > 0).astype(np.uint64))
            events.append(
                {"folder_name": s.folder + "/TTL/", "type": "int16", "sample_rate": s.rate}
            )
    (rec / "structure.oebin").write_text(
        json.dumps(
            {"GUI version": "0.6.6", "continuous": continuous, "events": events, "spikes": []}
        )
    )
    (rec / "sync_messages.txt").write_text("\n".join(lines) + "\n")


def write_record_node(
    node: Path,
    streams: Sequence[StreamSpec],
    probes: Sequence[ProbeSpec],
    *,
    settings: bool = True,
) -> Path:
    """Write ``node/settings.xml`` and ``node/experiment1/recording1``; return the recording."""
    node.mkdir(parents=True, exist_ok=True)
    if settings:
        write_settings(node / "settings.xml", probes)
    rec = node / "experiment1" / "recording1"
    write_recording(rec, streams)
    return rec


def small_streams(letters: str = "AB", n: int = 3000) -> list[StreamSpec]:
    out = []
    for letter in letters:
        ttl = (np.array([210_069_600, 210_069_900]), np.array([1, -1]))
        out.append(StreamSpec(f"Neuropix-PXI-100.Probe{letter}-AP", 30_000.0, 4, n, ttl=ttl))
        out.append(StreamSpec(f"Neuropix-PXI-100.Probe{letter}-LFP", 2_500.0, 4, n // 12))
    out.append(StreamSpec("NI-DAQmx-105.PXI-6133", 30_000.0, 8, n, first_sample=1_000))
    return out


def default_probes(letters: str = "AB") -> list[ProbeSpec]:
    return [ProbeSpec(c, 2, i + 1, f"1806620{i}") for i, c in enumerate(letters)]


@pytest.fixture
def node(tmp_path: Path) -> Path:
    path = tmp_path / "ecephys" / "ecephys_clipped" / "Record Node 102"
    write_record_node(path, small_streams(), default_probes())
    return path


# ------------------------------------------------------------------------------------ tests
def test_record_nodes_found_under_newest_layout(node: Path, tmp_path: Path) -> None:
    assert oe.record_nodes(tmp_path) == (str(node),)
    assert oe.record_nodes(str(node)) == (str(node),)


def test_streams_rates_counts_kinds_and_letters(node: Path) -> None:
    rec = oe.read_recording(str(node))
    by = {s.folder_name: s for s in rec.streams}
    ap = by["Neuropix-PXI-100.ProbeA-AP"]
    assert (ap.kind, ap.probe_letter, ap.sample_rate, ap.num_channels) == ("ap", "A", 3e4, 4)
    assert ap.num_samples == 3000 and ap.first_sample == 210_069_564
    assert by["Neuropix-PXI-100.ProbeB-LFP"].kind == "lfp"
    assert by["Neuropix-PXI-100.ProbeB-LFP"].num_samples == 250
    daq = by["NI-DAQmx-105.PXI-6133"]
    assert (daq.kind, daq.probe_letter, daq.first_sample) == ("nidaq", None, 1_000)
    assert ap.channel_names[0] == "CH1" and ap.bit_volts[0] == pytest.approx(0.195)


def test_read_recording_is_memoized_until_a_file_of_the_node_changes(node: Path) -> None:
    """Components of one session read each node once; a rewritten file is decoded again, as is
    a changed compressed-array shape beside a clipped node."""
    first = oe.read_recording(str(node))
    assert oe.read_recording(str(node)) is first
    ap = next(s for s in first.streams if s.folder_name.endswith("ProbeA-AP"))
    np.save(
        ap.recording_path + "/continuous/" + ap.folder_name + "/sample_numbers.npy",
        np.arange(7, 7 + 1234, dtype=np.int64),
    )
    again = oe.read_recording(str(node))
    ap2 = next(s for s in again.streams if s.folder_name.endswith("ProbeA-AP"))
    assert again is not first and (ap2.num_samples, ap2.first_sample) == (1234, 7)
    exp = os.path.basename(os.path.dirname(ap.recording_path))
    meta = (
        node.parent.parent
        / "ecephys_compressed"
        / f"{exp}_{node.name}#{ap.folder_name}.zarr"
        / "traces_seg0"
        / ".zarray"
    )
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"shape": [5000, 4]}))
    got = {s.folder_name: s for s in oe.read_recording(str(node)).streams}
    assert got[ap.folder_name].num_samples_compressed == 5000
    meta.write_text(json.dumps({"shape": [6000, 4]}))
    got = {s.folder_name: s for s in oe.read_recording(str(node)).streams}
    assert got[ap.folder_name].num_samples_compressed == 6000


def test_ap_by_rate_when_suffix_missing(tmp_path: Path) -> None:
    streams = [StreamSpec("Neuropix-PXI-100.ProbeC", 30_000.0, 2, 30)]
    write_record_node(tmp_path / "Record Node 102", streams, default_probes("C"))
    (s,) = oe.read_recording(str(tmp_path / "Record Node 102")).streams
    assert (s.kind, s.probe_letter) == ("ap", "C")


def test_continuous_memmap_is_lazy_and_exact(node: Path) -> None:
    rec = oe.read_recording(str(node))
    s = next(x for x in rec.streams if x.folder_name.endswith("ProbeA-AP"))
    data = oe.continuous_memmap(s)
    assert isinstance(data, np.memmap) and data.shape == (3000, 4) and data.dtype == np.int16
    raw = np.fromfile(s.dat_path, dtype="<i2").reshape(-1, 4)
    np.testing.assert_array_equal(data[1234], raw[1234])


def test_truncated_continuous_dat_raises_bad_format_naming_file(node: Path) -> None:
    rec = oe.read_recording(str(node))
    s = next(x for x in rec.streams if x.folder_name.endswith("ProbeA-AP"))
    with open(s.dat_path, "r+b") as f:
        f.truncate(2 * 4 * 2000)
    with pytest.raises(BadFormatError) as info:
        oe.continuous_memmap(s)
    assert info.value.path == s.dat_path and "truncated" in str(info.value)
    assert str(3000 * 4 * 2) in (info.value.expected or "")
    with open(s.dat_path, "r+b") as f:  # not a whole number of samples
        f.truncate(2 * 4 * 2000 + 3)
    with pytest.raises(BadFormatError, match="not a multiple"):
        oe.continuous_memmap(s)


def test_dat_longer_than_sample_numbers_is_inconsistent(node: Path) -> None:
    rec = oe.read_recording(str(node))
    s = next(x for x in rec.streams if x.folder_name.endswith("ProbeA-AP"))
    with open(s.dat_path, "ab") as f:
        f.write(b"\0" * 8 * 10)
    with pytest.raises(InconsistentDataError, match="sample_numbers"):
        oe.continuous_memmap(s)


def test_oebin_channel_count_mismatch_raises_naming_file_and_field(node: Path) -> None:
    oebin = node / "experiment1" / "recording1" / "structure.oebin"
    data = json.loads(oebin.read_text())
    data["continuous"][0]["num_channels"] = 384
    oebin.write_text(json.dumps(data))
    with pytest.raises(BadFormatError) as info:
        oe.read_recording(str(node))
    assert info.value.path == str(oebin)
    assert info.value.field == "continuous[0].num_channels"
    assert "384" in str(info.value)


def test_oebin_missing_or_not_json(tmp_path: Path) -> None:
    rec = tmp_path / "Record Node 1" / "experiment1" / "recording1"
    rec.mkdir(parents=True)
    with pytest.raises(MissingFileError, match=r"structure\.oebin"):
        oe.read_recording(str(tmp_path / "Record Node 1"))
    (rec / "structure.oebin").write_text("{not json")
    with pytest.raises(BadFormatError, match="not valid JSON"):
        oe.read_oebin(str(rec))


def test_missing_settings_xml_raises_missing_file(tmp_path: Path) -> None:
    node = tmp_path / "Record Node 103"
    write_record_node(node, small_streams("D"), default_probes("D"), settings=False)
    with pytest.raises(MissingFileError) as info:
        oe.read_settings_xml(str(node))
    assert info.value.path == str(node / "settings.xml")
    assert "NP_PROBE" in (info.value.expected or "")


def test_largest_recording_wins(node: Path) -> None:
    # an aborted, smaller recording2 and an experiment2 test recording
    write_recording(node / "experiment1" / "recording2", small_streams(n=300))
    write_recording(node / "experiment2" / "recording1", small_streams(n=600))
    assert len(oe.find_recordings(str(node))) == 3
    assert oe.main_recording(str(node)).endswith(os.path.join("experiment1", "recording1"))


def test_sync_messages_map_onto_folder_names(node: Path) -> None:
    msgs = oe.read_sync_messages(str(node / "experiment1" / "recording1"))
    assert msgs.software_time_ms == 1693510411000
    assert msgs.streams["Neuropix-PXI-100.ProbeA-AP"] == (30000.0, 210_069_564)
    assert msgs.streams["NI-DAQmx-105.PXI-6133"] == (30000.0, 1_000)
    rec = oe.read_recording(str(node))
    assert set(msgs.streams) == {s.folder_name for s in rec.streams}


def test_ttl_states_and_samples(node: Path) -> None:
    rec = oe.read_recording(str(node))
    s = next(x for x in rec.streams if x.folder_name.endswith("ProbeB-AP"))
    samples, states = oe.read_ttl(s)
    np.testing.assert_array_equal(samples, [210_069_600, 210_069_900])
    np.testing.assert_array_equal(states, [1, -1])
    lfp = next(x for x in rec.streams if x.folder_name.endswith("ProbeB-LFP"))
    with pytest.raises(MissingFileError, match="no TTL"):
        oe.read_ttl(lfp)


def test_settings_geometry_equals_written_xml(node: Path) -> None:
    settings = oe.read_settings_xml(str(node))
    assert settings.hostname == "W10DT05516" and settings.version == "0.6.6"
    assert settings.date is not None and settings.date.isoformat() == "2023-08-31T12:33:40"
    x, y = np1_geometry()
    for p, spec in zip(settings.probes, default_probes()):
        assert (p.serial, p.letter, p.slot, p.port) == (spec.serial, spec.letter, 2, spec.port)
        np.testing.assert_array_equal(p.channels, np.arange(384))
        np.testing.assert_array_equal(p.channel_x, x)
        np.testing.assert_array_equal(p.channel_y, y)
        assert p.is_tip_channel_bank and p.name == "Neuropixels 1.0"
    assert (settings.probes[0].channel_x[0], settings.probes[0].channel_y[0]) == (27.0, 0.0)


def test_probe_letters_six_probes_in_order() -> None:
    assert oe.probe_letters([2, 2, 2, 3, 3, 3], [2, 3, 4, 2, 3, 4]) == list("ABCDEF")


@pytest.mark.parametrize(
    ("slots", "ports", "letters"),
    [
        ([2, 2, 3], [1, 2, 1], "ABD"),  # ports 1-3: letter = port - 1 + 3 * slot rank
        ([2, 2, 2, 3, 3], [2, 3, 4, 1, 2], "ABCDE"),  # port 4 used in slot 2: shifted
        ([2, 3, 3], [1, 2, 4], "ADF"),  # slot 3 uses port 4: ports 2, 4 -> D, F
        ([2], [3], "C"),
        ([3, 2], [1, 1], "DA"),  # rank of slot, not document order
    ],
)
def test_probe_letters_fewer_than_six_follow_slot_port_rule(
    slots: list[int], ports: list[int], letters: str
) -> None:
    assert "".join(oe.probe_letters(slots, ports)) == letters


def test_probe_letters_ports_2_and_3_alone_are_ambiguous() -> None:
    with pytest.raises(BadFormatError, match="ambiguous"):
        oe.probe_letters([2, 2], [2, 3], path="settings.xml")


def test_settings_letters_from_slots_and_ports(tmp_path: Path) -> None:
    probes = [ProbeSpec("A", 2, 1, "1"), ProbeSpec("B", 2, 2, "2"), ProbeSpec("D", 3, 1, "3")]
    write_settings(tmp_path / "settings.xml", probes, n_channels=8)
    settings = oe.read_settings_xml(str(tmp_path / "settings.xml"))
    assert [p.letter for p in settings.probes] == ["A", "B", "D"]
    assert settings.probe("D").serial == "3"
    with pytest.raises(BadFormatError, match="no probe C"):
        settings.probe("C")


# ------------------------------------------------------------------- real GUI recordings
@pytest.fixture(scope="module")
def real_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    candidates = [
        os.environ.get("NPC_FRAMES_OE_SDIST", ""),
        str(Path(__file__).parents[1] / ".external" / "open_ephys_python_tools-1.0.1.tar.gz"),
    ]
    sdist = next((c for c in candidates if c and Path(c).exists()), None)
    if sdist is None:
        pytest.skip("open-ephys-python-tools sdist absent (set NPC_FRAMES_OE_SDIST)")
    out = tmp_path_factory.mktemp("oe_sdist")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/tests/data/v0.6.7_Binary/" in m.name]
        tar.extractall(out, members=members, filter="data")
    (found,) = list(out.glob("*/tests/data/v0.6.7_Binary"))
    return found


def test_real_recordings_agree_with_open_ephys_python_tools(real_binary: Path) -> None:
    analysis = pytest.importorskip("open_ephys.analysis")
    session = analysis.Session(str(real_binary))
    nodes = oe.record_nodes(real_binary)
    assert [os.path.basename(n) for n in nodes] == ["Record Node 101", "Record Node 105"]
    theirs_by_node = {os.path.basename(rn.directory): rn for rn in session.recordnodes}
    for node in nodes:
        rec = oe.read_recording(node)
        theirs = theirs_by_node[os.path.basename(node)].recordings[0]
        assert len(rec.streams) == len(theirs.continuous) == 1
        mine, cont = rec.streams[0], theirs.continuous[0]
        assert mine.folder_name + "/" == cont.name
        assert mine.sample_rate == cont.metadata.sample_rate == 40000.0
        assert mine.num_channels == cont.metadata.num_channels == 16
        assert list(mine.channel_names) == list(cont.metadata.channel_names)
        assert list(mine.bit_volts) == list(cont.metadata.bit_volts)
        assert mine.num_samples == len(cont.sample_numbers) == 131362
        assert mine.first_sample == int(cont.sample_numbers[0]) == 40091
        data = oe.continuous_memmap(mine)
        assert data.shape == cont.samples.shape
        np.testing.assert_array_equal(data[::997], np.asarray(cont.samples)[::997])
        # events: every TTL folder listed in the oebin, against the package's event table
        ev = theirs.events
        samples, lines, states = [], [], []
        for folder in oe.ttl_event_folders(rec.recording_path):
            s, st = oe.read_ttl_folder(folder)
            samples.append(s)
            lines.append(np.abs(st))
            states.append((st > 0).astype(int))
        mine_ev = np.column_stack([np.concatenate(x) for x in (samples, lines, states)])
        theirs_ev = ev[["sample_number", "line", "state"]].to_numpy().astype(np.int64)
        assert mine_ev.shape == theirs_ev.shape == (128, 3)
        np.testing.assert_array_equal(
            mine_ev[np.lexsort(mine_ev.T[::-1])], theirs_ev[np.lexsort(theirs_ev.T[::-1])]
        )
        msgs = rec.sync_messages
        assert msgs is not None and msgs.streams["File_Reader-100.example_data"] == (40000.0, 40091)
        settings = oe.read_settings_xml(node)
        hostnames = {"Record Node 101": "B-SCHMIEDT", "Record Node 105": "COMPUTERNAME"}
        assert (settings.hostname, settings.version, settings.probes) == (
            hostnames[os.path.basename(node)],
            "0.6.7",
            [],
        )
        assert settings.date is not None and settings.date.isoformat() == "2025-04-03T13:38:24"
