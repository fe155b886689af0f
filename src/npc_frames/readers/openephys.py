"""Open Ephys binary recordings (GUI ≥ 0.6): record nodes, structure.oebin, sync_messages.txt,
settings.xml, TTL events and continuous data as memory maps (FORMATS §9).

Readers only: no clock alignment (see :mod:`npc_frames.alignment`), no knowledge of sorting.
Paths are local filesystem paths; components hand remote files through ``RawSession.local``.

Decisions
---------
* Several ``experimentN/recordingK`` folders may exist (aborted test recordings): the recording
  whose files take the most bytes is the real one (FORMATS §9.2).
* ``num_samples`` of a stream is the length of ``sample_numbers.npy`` (never the ``.dat`` size,
  which is clipped in AIND ``ecephys_clipped`` uploads); :func:`continuous_memmap` checks that the
  ``.dat`` holds that many samples and raises :class:`BadFormatError` when it is truncated.
* The first sample number comes from ``sample_numbers.npy[0]``; ``sync_messages.txt`` is the
  fallback when that file is absent (FORMATS §9.3: "the latter wins").
* The ``TIMESTAMPS_ADJUSTED.flag`` **[quirk]** of the reference is ignored: ``timestamps.npy`` is
  never read, so an overwritten copy cannot change our times.
* Streams of several record nodes are merged by folder name; the first record node (sorted by
  name) that holds a stream wins (the NI-DAQ is copied to every node).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from npc_frames import storage
from npc_frames._log import timed
from npc_frames.errors import BadFormatError, InconsistentDataError, MissingFileError
from npc_frames.memo import Memo
from npc_frames.readers._literal import load_npy

__all__ = [
    "ContinuousStream",
    "OpenEphysRecording",
    "ProbeInfo",
    "SettingsXml",
    "SyncMessages",
    "continuous_memmap",
    "find_recordings",
    "main_recording",
    "merge_streams",
    "probe_letters",
    "read_oebin",
    "read_recording",
    "read_settings_xml",
    "read_sync_messages",
    "read_ttl",
    "read_ttl_folder",
    "record_nodes",
    "ttl_event_folders",
]

logger = logging.getLogger(__name__)

#: a probe stream at or above this nominal rate is the AP band (npc's rule, FORMATS §9.1)
AP_MIN_RATE = 10_000.0
#: Neuropixels 1.0 channels per probe
NP1_CHANNELS = 384

StreamKind = Literal["ap", "lfp", "nidaq", "other"]

_PROBE_STREAM_RE = re.compile(r"Probe[-_ ]?(?P<letter>[A-F])(?![A-Za-z])")
_SYNC_LINE_RE = re.compile(
    r"Start Time for (?P<proc>.+?) \((?P<id>\d+)\) - (?P<stream>.+?) @ (?P<rate>[\d.]+) Hz: "
    r"(?P<start>-?\d+)"
)
_SOFTWARE_RE = re.compile(r"Software Time.*?:\s*(?P<ms>\d+)")


# ------------------------------------------------------------------------------- record nodes
def record_nodes(source: str | os.PathLike[str] | Iterable[str]) -> tuple[str, ...]:
    """Return the ``Record Node NNN`` folders of a local session folder or a list of nodes.

    A folder is searched for ``Record Node *`` in itself, ``ecephys/ecephys_clipped``,
    ``ecephys_clipped`` and ``ecephys`` (the first that has any wins, newest layout first). A
    RawSession's nodes (local copies for remote sessions) come from
    :func:`npc_frames.alignment.local_record_nodes`.
    """
    if isinstance(source, str | os.PathLike):
        root = os.fspath(source)
        if os.path.basename(root.rstrip("/")).startswith("Record Node"):
            return (root,)
        for rel in ("", "ecephys/ecephys_clipped", "ecephys_clipped", "ecephys"):
            folder = os.path.join(root, rel) if rel else root
            if not os.path.isdir(folder):
                continue
            nodes = sorted(
                os.path.join(folder, d)
                for d in os.listdir(folder)
                if d.startswith("Record Node") and os.path.isdir(os.path.join(folder, d))
            )
            if nodes:
                return tuple(nodes)
        return ()
    return tuple(os.fspath(p) for p in source)


def find_recordings(record_node: str) -> list[str]:
    """Return every ``experimentN/recordingK`` folder of a record node, in (N, K) order."""

    def num(name: str, prefix: str) -> int:
        digits = name.removeprefix(prefix)
        return int(digits) if digits.isdigit() else -1

    out: list[tuple[int, int, str]] = []
    if storage.is_remote(record_node):
        raise MissingFileError(
            "Open Ephys record nodes are read from local storage only",
            path=record_node,
            expected="a local copy of the record node (e.g. synced from the remote asset)",
        )
    if not os.path.isdir(record_node):
        raise MissingFileError(
            "record node folder does not exist", path=record_node, expected="Record Node NNN/"
        )
    for exp in os.listdir(record_node):
        exp_path = os.path.join(record_node, exp)
        if not (exp.startswith("experiment") and os.path.isdir(exp_path)):
            continue
        for rec in os.listdir(exp_path):
            rec_path = os.path.join(exp_path, rec)
            if rec.startswith("recording") and os.path.isdir(rec_path):
                out.append((num(exp, "experiment"), num(rec, "recording"), rec_path))
    return [p for *_, p in sorted(out)]


def _folder_bytes(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(dirpath, f))
    return total


def main_recording(record_node: str) -> str:
    """Return the recording folder of a record node with the most bytes (the real recording)."""
    recs = find_recordings(record_node)
    if not recs:
        raise MissingFileError(
            "record node has no experiment*/recording* folder",
            path=record_node,
            expected="experimentN/recordingK/structure.oebin",
        )
    sizes = [_folder_bytes(r) for r in recs]
    return recs[int(np.argmax(sizes))]


# ------------------------------------------------------------------------------------ oebin
@timed
def read_oebin(path: str) -> dict[str, Any]:
    """Return the parsed ``structure.oebin`` of a recording folder (or the file itself).

    Checks the fields npc needs: every continuous entry has ``folder_name``, ``sample_rate``,
    ``num_channels`` and a ``channels`` list whose length equals ``num_channels``.
    """
    file = path if path.endswith(".oebin") else os.path.join(path, "structure.oebin")
    if not os.path.isfile(file):
        raise MissingFileError(
            "structure.oebin not found", path=file, expected="structure.oebin (JSON)"
        )
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadFormatError(
            f"structure.oebin is not valid JSON: {exc}", path=file, expected="JSON object"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("continuous", []), list):
        raise BadFormatError(
            "structure.oebin lacks a 'continuous' list",
            path=file,
            field="continuous",
            expected="a JSON object with a 'continuous' list",
        )
    for i, entry in enumerate(data.get("continuous", [])):
        for key in ("folder_name", "sample_rate", "num_channels"):
            if key not in entry:
                raise BadFormatError(
                    f"continuous entry {i} lacks {key!r}",
                    path=file,
                    field=f"continuous[{i}].{key}",
                    expected="folder_name, sample_rate, num_channels, channels",
                )
        channels = entry.get("channels")
        if channels is not None and len(channels) != int(entry["num_channels"]):
            raise BadFormatError(
                f"continuous entry {entry['folder_name']!r} declares num_channels="
                f"{entry['num_channels']} but lists {len(channels)} channels",
                path=file,
                field=f"continuous[{i}].num_channels",
                expected=f"num_channels == len(channels) == {len(channels)}",
            )
    return data


# ---------------------------------------------------------------------------- sync messages
@dataclass(frozen=True)
class SyncMessages:
    """Parsed ``sync_messages.txt``: software start time and per-stream (rate, start sample)."""

    path: str
    #: milliseconds since 1970-01-01 UTC when acquisition started (None if absent)
    software_time_ms: int | None
    #: stream folder name (``Neuropix-PXI-100.ProbeA-AP``) -> (nominal rate, start sample number)
    streams: dict[str, tuple[float, int]]


@timed
def read_sync_messages(path: str) -> SyncMessages:
    """Return the parsed ``sync_messages.txt`` of a recording folder (or the file itself)."""
    file = path if path.endswith(".txt") else os.path.join(path, "sync_messages.txt")
    if not os.path.isfile(file):
        raise MissingFileError(
            "sync_messages.txt not found", path=file, expected="sync_messages.txt"
        )
    with open(file, encoding="utf-8", errors="replace") as f:
        text = f.read()
    m = _SOFTWARE_RE.search(text)
    streams: dict[str, tuple[float, int]] = {}
    for line in text.splitlines():
        s = _SYNC_LINE_RE.search(line)
        if s is None:
            continue
        proc = s["proc"].strip().replace(" ", "_")
        streams[f"{proc}-{s['id']}.{s['stream'].strip()}"] = (float(s["rate"]), int(s["start"]))
    return SyncMessages(path=file, software_time_ms=int(m["ms"]) if m else None, streams=streams)


# ------------------------------------------------------------------------------ settings.xml
@dataclass(frozen=True)
class ProbeInfo:
    """One ``NP_PROBE`` of settings.xml (document order)."""

    serial: str
    name: str
    slot: int | None
    port: int | None
    dock: int | None
    letter: str | None
    reference: str | None
    #: channel numbers (0-based, from the ``CHk`` keys in document order)
    channels: npt.NDArray[np.int64]
    channel_x: npt.NDArray[np.float64]
    channel_y: npt.NDArray[np.float64]
    #: bank per channel (-1 where the bank is not an integer, e.g. NP2 "bank:shank")
    channel_bank: npt.NDArray[np.int64]

    @property
    def is_tip_channel_bank(self) -> bool:
        """Return True when every channel is in bank 0 (nearest the tip)."""
        return bool(np.all(self.channel_bank == 0))


@dataclass(frozen=True)
class SettingsXml:
    """Parsed ``settings.xml`` of one record node."""

    path: str
    hostname: str | None
    date: datetime | None
    version: str | None
    probes: list[ProbeInfo] = field(default_factory=list)

    def probe(self, letter: str) -> ProbeInfo:
        """Return the probe with `letter` (BadFormatError listing the letters present)."""
        for p in self.probes:
            if p.letter == letter:
                return p
        raise BadFormatError(
            f"settings.xml has no probe {letter}",
            path=self.path,
            field="NP_PROBE",
            expected=f"one of {[p.letter for p in self.probes]}",
        )


def probe_letters(slots: Sequence[int], ports: Sequence[int], *, path: object = None) -> list[str]:
    """Return the probe letter of each (slot, port) by npc's rule (FORMATS §9.3).

    Six probes are A–F in the given order. Otherwise letter index = (port − 1 − shift) +
    3 × rank(slot), with shift = 1 when port 4 is used in that slot (probes moved to ports 2–4 from
    Nov 2023). A slot using only ports {2, 3} is ambiguous (could be 1–3 or 2–4): BadFormatError.
    """
    n = len(slots)
    if n != len(ports):
        raise BadFormatError("slots and ports differ in length", path=path, field="slot/port")
    if n == 6:
        return list("ABCDEF")
    ranks = {s: i for i, s in enumerate(sorted(set(slots)))}
    letters: list[str] = []
    for slot, port in zip(slots, ports):
        used = {p for s, p in zip(slots, ports) if s == slot}
        if used and used <= {2, 3} and len(used) == 2:
            raise BadFormatError(
                f"probes in slot {slot} use only ports 2 and 3: letters are ambiguous",
                path=path,
                field="NP_PROBE/@port",
                expected="port 1 or port 4 used in each slot (or six probes)",
            )
        shift = 1 if 4 in used else 0
        index = (port - 1 - shift) + 3 * ranks[slot]
        if not 0 <= index < 6:
            raise BadFormatError(
                f"slot {slot} port {port} maps to no probe letter",
                path=path,
                field="NP_PROBE/@port",
                expected="ports 1-3 (or 2-4) in at most two slots",
            )
        letters.append("ABCDEF"[index])
    if len(set(letters)) != len(letters):
        raise BadFormatError(
            f"probe letters collide: {letters}",
            path=path,
            field="NP_PROBE/@slot,@port",
            expected="distinct (slot, port) per probe",
        )
    return letters


def _channel_map(elem: ET.Element | None) -> tuple[np.ndarray, list[str]]:
    if elem is None:
        return np.zeros(0, dtype=np.int64), []
    keys = [k for k in elem.attrib if k.startswith("CH") and k[2:].isdigit()]
    return np.array([int(k[2:]) for k in keys], dtype=np.int64), [elem.attrib[k] for k in keys]


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


#: parsed settings.xml files (small; a converting process reads each several times)
_SETTINGS: Memo[SettingsXml] = Memo("settings.xml files", maxsize=64)


def _parse_settings(file: str) -> SettingsXml:
    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as exc:
        raise BadFormatError(
            f"settings.xml is not valid XML: {exc}", path=file, expected="Open Ephys settings XML"
        ) from exc
    info = root.find("INFO")
    hostname = None
    date = None
    version = None
    if info is not None:
        machine = info.find("MACHINE")
        if machine is not None:
            hostname = machine.attrib.get("name") or (machine.text or "").strip() or None
        version = (info.findtext("VERSION") or "").strip() or None
        date_text = (info.findtext("DATE") or "").strip()
        if date_text:
            try:
                date = datetime.strptime(date_text, "%d %b %Y %H:%M:%S")
            except ValueError:
                date = None
    elems = [e for e in root.iter() if "probe_serial_number" in e.attrib]
    raw: list[dict[str, Any]] = []
    for e in elems:
        chans, banks_txt = _channel_map(e.find("CHANNELS"))
        xk, xs = _channel_map(e.find("ELECTRODE_XPOS"))
        yk, ys = _channel_map(e.find("ELECTRODE_YPOS"))
        serial = e.attrib["probe_serial_number"]
        if len(xk) != len(yk) or (len(xk) and not np.array_equal(xk, yk)):
            raise BadFormatError(
                f"probe {serial}: ELECTRODE_XPOS and ELECTRODE_YPOS list different channels",
                path=file,
                field="ELECTRODE_XPOS/ELECTRODE_YPOS",
                expected="the same CHk keys in both",
            )
        if len(chans) == 0:
            chans = xk
            banks_txt = ["0"] * len(xk)
        # geometry follows ELECTRODE_XPOS key order; banks are looked up by channel number
        bank_of = dict(zip(chans.tolist(), banks_txt))
        try:
            x = np.array([float(v) for v in xs], dtype=np.float64)
            y = np.array([float(v) for v in ys], dtype=np.float64)
        except ValueError as exc:
            raise BadFormatError(
                f"probe {serial}: electrode position is not a number: {exc}",
                path=file,
                field="ELECTRODE_XPOS/ELECTRODE_YPOS",
                expected="CHk='<µm>' numbers",
            ) from exc
        banks = np.array(
            [
                int(b) if (b := bank_of.get(c, "")).lstrip("-").isdigit() else -1
                for c in xk.tolist()
            ],
            dtype=np.int64,
        )
        raw.append(
            {
                "serial": serial,
                "name": e.attrib.get("probe_name", ""),
                "slot": _int_or_none(e.attrib.get("slot")),
                "port": _int_or_none(e.attrib.get("port")),
                "dock": _int_or_none(e.attrib.get("dock")),
                "reference": e.attrib.get("referenceChannel"),
                "channels": xk,
                "channel_x": x,
                "channel_y": y,
                "channel_bank": banks,
            }
        )
    if raw and all(r["slot"] is not None and r["port"] is not None for r in raw):
        letters: list[str | None] = list(
            probe_letters([r["slot"] for r in raw], [r["port"] for r in raw], path=file)
        )
    else:
        letters = [None] * len(raw)
    probes = [ProbeInfo(letter=letter, **r) for r, letter in zip(raw, letters)]
    return SettingsXml(path=file, hostname=hostname, date=date, version=version, probes=probes)


@timed
def read_settings_xml(path: str) -> SettingsXml:
    """Return the parsed ``settings.xml`` of a record node folder (or the file itself).

    Probes are every element with a ``probe_serial_number`` attribute, in document order, with
    their channel geometry and the letter given by :func:`probe_letters`.
    """
    file = path if path.endswith(".xml") else os.path.join(path, "settings.xml")
    if not os.path.isfile(file):
        raise MissingFileError(
            "settings.xml not found in record node",
            path=file,
            expected="settings.xml (Open Ephys GUI settings with NP_PROBE elements)",
        )
    return _SETTINGS.read(file, _parse_settings)


# ---------------------------------------------------------------------------------- streams
@dataclass(frozen=True)
class ContinuousStream:
    """One continuous stream of a recording (folder under ``continuous/``)."""

    record_node: str
    recording_path: str
    #: folder name without trailing slash, e.g. ``Neuropix-PXI-100.ProbeA-AP``
    folder_name: str
    #: e.g. ``ProbeA-AP``
    stream_name: str
    sample_rate: float
    num_channels: int
    channel_names: tuple[str, ...]
    bit_volts: tuple[float, ...]
    #: sample number of the first continuous sample (since acquisition start)
    first_sample: int
    #: number of samples (length of sample_numbers.npy; else .dat size / channels)
    num_samples: int
    kind: StreamKind
    probe_letter: str | None
    #: samples of the full recording from the matching ``ecephys_compressed`` zarr, when present
    num_samples_compressed: int | None = None

    @property
    def num_samples_full(self) -> int:
        """Return the best-known length of the recording in samples (zarr, else on disk)."""
        return self.num_samples_compressed or self.num_samples

    @property
    def path(self) -> str:
        """Return the stream's continuous folder."""
        return os.path.join(self.recording_path, "continuous", self.folder_name)

    @property
    def dat_path(self) -> str:
        """Return the path of ``continuous.dat``."""
        return os.path.join(self.path, "continuous.dat")

    @property
    def events_path(self) -> str:
        """Return the stream's events folder (holding ``TTL*``)."""
        return os.path.join(self.recording_path, "events", self.folder_name)


def _stream_kind(folder: str, rate: float) -> tuple[StreamKind, str | None]:
    m = _PROBE_STREAM_RE.search(folder)
    if m is None:
        return ("nidaq" if "NI-DAQ" in folder or "PXI-6" in folder else "other"), None
    letter = m["letter"]
    if folder.endswith("-LFP"):
        return "lfp", letter
    if folder.endswith("-AP") or rate >= AP_MIN_RATE:
        return "ap", letter
    return "lfp", letter


def _npy_length(file: str) -> int:
    arr = load_npy(file, mmap_mode="r")
    return int(arr.shape[0])


def _first_npy_value(file: str) -> int:
    arr = load_npy(file, mmap_mode="r")
    if arr.shape[0] == 0:
        raise BadFormatError(
            "sample_numbers.npy is empty", path=file, expected="at least one sample number"
        )
    return int(arr[0])


def _compressed_num_samples(record_node: str, recording: str, folder: str) -> int | None:
    """Return the sample count of ``ecephys_compressed/<experimentN>_<node>#<folder>.zarr``
    (FORMATS §1.2) from its array metadata, or None when there is no such zarr."""
    node_dir = os.path.dirname(os.path.abspath(record_node))
    if os.path.basename(node_dir) != "ecephys_clipped":
        return None
    experiment = os.path.basename(os.path.dirname(recording))
    name = f"{experiment}_{os.path.basename(record_node)}#{folder}.zarr"
    zarr_dir = os.path.join(os.path.dirname(node_dir), "ecephys_compressed", name, "traces_seg0")
    for meta in (".zarray", "zarr.json"):
        file = os.path.join(zarr_dir, meta)
        if os.path.isfile(file):
            try:
                with open(file, encoding="utf-8") as f:
                    return int(json.load(f)["shape"][0])
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise BadFormatError(
                    f"compressed traces metadata unreadable: {exc}",
                    path=file,
                    field="shape",
                    expected="zarr array metadata with shape [samples, channels]",
                ) from exc
    return None


@dataclass(frozen=True)
class OpenEphysRecording:
    """The streams of one record node's main recording plus its settings and sync messages."""

    record_node: str
    recording_path: str
    gui_version: str | None
    streams: list[ContinuousStream]
    sync_messages: SyncMessages | None


#: decoded record nodes: every ephys component of a session reads the same nodes again
_RECORDINGS: Memo[OpenEphysRecording] = Memo("Open Ephys recordings", maxsize=16)


def _node_key(record_node: str) -> tuple[tuple[str, int, int], ...]:
    """Return (relative path, size, mtime ns) of every file a record node's recording is read
    from: the files under the node (the main recording is the one with the most bytes) and, for
    a clipped node, the compressed traces' array metadata beside it."""
    node = os.path.abspath(record_node)
    parent = os.path.dirname(node)
    paths: list[str] = []
    for dirpath, dirs, files in os.walk(node):
        dirs.sort()
        paths.extend(os.path.join(dirpath, f) for f in sorted(files))
    if os.path.basename(parent) == "ecephys_clipped":
        compressed = os.path.join(os.path.dirname(parent), "ecephys_compressed")
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(compressed)):
                for meta in (".zarray", "zarr.json"):  # metadata only, not the chunks
                    paths.append(os.path.join(compressed, name, "traces_seg0", meta))
    out: list[tuple[str, int, int]] = []
    for path in paths:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            out.append((os.path.relpath(path, parent), st.st_size, st.st_mtime_ns))
    return tuple(out)


@timed
def read_recording(record_node: str) -> OpenEphysRecording:
    """Return the streams of the main (largest) recording of one record node.

    Memoized by the node's files (names, sizes and modification times, :func:`_node_key`), so
    the components of one session decode each node once.
    """
    key = (os.path.abspath(record_node), _node_key(record_node))
    return _RECORDINGS.get(key, lambda: _read_recording(record_node))


def _read_recording(record_node: str) -> OpenEphysRecording:
    rec = main_recording(record_node)
    oebin = read_oebin(rec)
    try:
        msgs: SyncMessages | None = read_sync_messages(rec)
    except MissingFileError:
        msgs = None
    streams: list[ContinuousStream] = []
    for entry in oebin.get("continuous", []):
        folder = str(entry["folder_name"]).rstrip("/")
        rate = float(entry["sample_rate"])
        nch = int(entry["num_channels"])
        chans = entry.get("channels") or []
        names = tuple(str(c.get("channel_name", f"CH{i}")) for i, c in enumerate(chans))
        bits = tuple(float(c.get("bit_volts", np.nan)) for c in chans)
        cont = os.path.join(rec, "continuous", folder)
        sn_file = os.path.join(cont, "sample_numbers.npy")
        dat = os.path.join(cont, "continuous.dat")
        if os.path.isfile(sn_file):
            first = _first_npy_value(sn_file)
            n = _npy_length(sn_file)
        else:
            if msgs is None or folder not in msgs.streams:
                raise MissingFileError(
                    "stream has neither sample_numbers.npy nor a sync_messages.txt entry",
                    path=sn_file,
                    field=folder,
                    expected="sample_numbers.npy, or 'Start Time for …' in sync_messages.txt",
                )
            first = msgs.streams[folder][1]
            if not os.path.isfile(dat):
                raise MissingFileError(
                    "continuous.dat not found", path=dat, expected="int16 continuous.dat"
                )
            n = os.path.getsize(dat) // (2 * max(nch, 1))
        kind, letter = _stream_kind(folder, rate)
        compressed = _compressed_num_samples(record_node, rec, folder)
        streams.append(
            ContinuousStream(
                record_node=record_node,
                recording_path=rec,
                folder_name=folder,
                stream_name=str(entry.get("stream_name", folder.split(".", 1)[-1])),
                sample_rate=rate,
                num_channels=nch,
                channel_names=names,
                bit_volts=bits,
                first_sample=first,
                num_samples=n,
                kind=kind,
                probe_letter=letter,
                num_samples_compressed=compressed,
            )
        )
    return OpenEphysRecording(
        record_node=record_node,
        recording_path=rec,
        gui_version=oebin.get("GUI version"),
        streams=streams,
        sync_messages=msgs,
    )


def merge_streams(recordings: Iterable[OpenEphysRecording]) -> dict[str, ContinuousStream]:
    """Return streams by folder name across record nodes (first node holding a stream wins)."""
    out: dict[str, ContinuousStream] = {}
    for rec in recordings:
        for s in rec.streams:
            out.setdefault(s.folder_name, s)
    return out


# ------------------------------------------------------------------------------ data access
@timed
def read_ttl(stream: ContinuousStream) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int16]]:
    """Return (sample_numbers, states) of the stream's TTL events (``events/<stream>/TTL*``).

    States are +line for rising and −line for falling edges (lines 1-based), as written.
    """
    folder = stream.events_path
    ttl_dirs = (
        sorted(d for d in os.listdir(folder) if d.startswith("TTL"))
        if os.path.isdir(folder)
        else []
    )
    if not ttl_dirs:
        raise MissingFileError(
            f"no TTL events for stream {stream.folder_name}",
            path=folder,
            expected="events/<stream>/TTL/{sample_numbers,states}.npy",
        )
    return read_ttl_folder(os.path.join(folder, ttl_dirs[0]))


def read_ttl_folder(base: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int16]]:
    """Return (sample_numbers, states) of one TTL event folder (``…/TTL/``)."""
    files = {k: os.path.join(base, f"{k}.npy") for k in ("sample_numbers", "states")}
    for k, f in files.items():
        if not os.path.isfile(f):
            # GUI 0.5 wrote sample numbers to timestamps.npy and states to channel_states.npy
            alt = {"sample_numbers": "timestamps.npy", "states": "channel_states.npy"}[k]
            if os.path.isfile(os.path.join(base, alt)):
                files[k] = os.path.join(base, alt)
            else:
                raise MissingFileError(f"TTL {k}.npy not found", path=f, expected=f"{k}.npy")
    try:
        samples = np.asarray(load_npy(files["sample_numbers"]), dtype=np.int64)
        states = np.asarray(load_npy(files["states"]), dtype=np.int16)
    except (ValueError, OSError, EOFError) as exc:  # truncated or not a .npy file
        raise BadFormatError(
            f"TTL event file cannot be read: {exc}",
            path=base,
            field="sample_numbers/states",
            expected="complete .npy arrays",
        ) from exc
    if samples.shape != states.shape:
        raise BadFormatError(
            "TTL sample_numbers and states differ in length",
            path=base,
            field="sample_numbers/states",
            expected=f"equal lengths (got {samples.shape[0]} and {states.shape[0]})",
        )
    return samples, states


def ttl_event_folders(recording_path: str) -> list[str]:
    """Return the TTL event folders a recording's structure.oebin lists (``events/<…>/TTL``)."""
    oebin = read_oebin(recording_path)
    out = []
    for entry in oebin.get("events", []):
        folder = str(entry.get("folder_name", "")).rstrip("/")
        if folder and entry.get("type") != "string" and "TTL" in folder:
            out.append(os.path.join(recording_path, "events", folder))
    return out


def continuous_memmap(stream: ContinuousStream) -> np.memmap[Any, np.dtype[np.int16]]:
    """Return ``continuous.dat`` as a read-only int16 memmap of shape (num_samples, channels).

    Raises BadFormatError when the file is not a whole number of samples or holds fewer samples
    than ``sample_numbers.npy`` lists (a truncated/clipped copy).
    """
    dat = stream.dat_path
    if not os.path.isfile(dat):
        raise MissingFileError("continuous.dat not found", path=dat, expected="int16 samples")
    size = os.path.getsize(dat)
    frame = 2 * stream.num_channels
    if size % frame:
        raise BadFormatError(
            f"continuous.dat size {size} is not a multiple of {frame} bytes "
            f"({stream.num_channels} int16 channels)",
            path=dat,
            field="num_channels",
            expected=f"size = samples x {stream.num_channels} channels x 2 bytes",
        )
    n = size // frame
    if n < stream.num_samples:
        raise BadFormatError(
            f"continuous.dat is truncated: {n} samples on disk, sample_numbers.npy lists "
            f"{stream.num_samples}",
            path=dat,
            field="continuous.dat",
            expected=f"{stream.num_samples * frame} bytes",
        )
    if n > stream.num_samples:
        raise InconsistentDataError(
            f"continuous.dat holds {n} samples, sample_numbers.npy lists {stream.num_samples}",
            path=dat,
            field="sample_numbers.npy",
            expected="equal sample counts",
        )
    return np.memmap(dat, dtype="<i2", mode="r", shape=(n, stream.num_channels))
