"""Synthetic Open Ephys GUI 0.6.x recordings and their sorting output (FORMATS §9, §10, §11).

:func:`make_ephys` writes what the Open Ephys GUI writes for a Dynamic Routing rig —
``<root>/ecephys/ecephys_clipped/Record Node 102/`` (probes A–C) and ``Record Node 103/`` (D–F),
each with ``settings.xml`` and ``experiment1/recording1/`` (``structure.oebin``,
``sync_messages.txt``, ``continuous/``, ``events/``) — and, per probe, a Kilosort/phy folder under
``<root>/sorting/<AP stream folder>/`` (see :mod:`npc_frames.synth.sorting`). It returns an
:class:`EphysTruth` with every stream's clock, every probe's identity and geometry, and every unit
and spike, times given on the sync clock.

Clocks (FORMATS §0, §10): every stream (each probe's AP and LFP, and the NI-DAQ card) runs on its
own crystal: ``rate_on_sync = nominal × (1 + ε)`` with a distinct ε in ±5e-6, and its continuous
sample 0 lies at ``start_time_on_sync`` on the sync clock. Sample numbers count since acquisition
start, so they begin at a large value (~2.1e8 on AP). The same barcode TTL that sync records on
bit 0 is written to every stream's ``events/<stream>/TTL`` as
``round((t_sync − start_time_on_sync) × rate_on_sync) + first_sample_number``, over the WHOLE
recording, although ``continuous.dat`` keeps only ``clip_seconds`` (as in clipped uploads).

Decisions on FORMATS quirks and open points:

* Probe letters (§9.3): npc derives letters from (slot, port) — 6 probes → A–F in order, otherwise
  ``(port − 1 − shift) + 3 × rank(slot)``, shift = 1 when port 4 is used in that slot, and ports
  {2, 3} alone are ambiguous. We put A–C in PXI slot 2 and D–F in slot 3; a slot that holds its
  third probe (C or F) uses ports 2–4 on sessions from 2023-11-01 (and B+C alone always use 3–4),
  otherwise ports 1–3. The rank rule cannot express D–F without any of A–C (the only slot would
  rank 0), so such sets raise :class:`ParameterError`. ``NP_PROBE`` elements are written in
  (slot, port) order, which is also letter order — npc pairs its slot-sorted indices with serial
  numbers in document order, so any other order would mislabel probes.
* settings.xml keeps ``NP_PROBE`` under ``PROCESSOR/EDITOR`` as GUI 0.6.x does (probeinterface
  reads it there), with a ``STREAM`` element per probe stream; both record nodes' settings list the
  whole rig and differ only in ``DATE`` (node 103's is one second later).
* Plugin version 0.4.0 (< 0.7.0), so continuous channel names are 1-based ``CH1``…``CH384`` while
  settings.xml keys are ``CH0``…``CH383``.
* ``timestamps.npy`` holds seconds on the record node's main-stream clock (the node's first AP
  stream): sample_number / nominal rate for the main stream, other streams mapped onto it through
  the true clocks. npc never uses these; they exist because the GUI writes them.
* Both record nodes hold the same NI-DAQ stream (same source processor, same clock and sample
  numbers); record node 103 is written even when no probe D–F is used (it then holds only the
  NI-DAQ copy), as on a rig whose second node is always in the signal chain.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime
import functools
import json
import xml.etree.ElementTree as ET
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames.errors import ParameterError
from npc_frames.synth.sorting import (
    AVERAGE_TEMPLATE_PEAK_INDEX,
    AVERAGE_TEMPLATE_SAMPLES,
    MODALITY_NAMES,
    RESPONSE_TABLE_SCHEMA,
    NpyAppender,
    ProbeSorting,
    SpikeTrains,
    StimulusOnsets,
    chunk_slices,
    make_sorting,
)

__all__ = [
    "UNIT_RESPONSES_SCHEMA",
    "EphysTruth",
    "ProbeTruth",
    "StreamTruth",
    "make_ephys",
    "np1_bank0_geometry",
    "probe_slot_ports",
    "set_channel_banks",
]

PROBE_LETTERS = "ABCDEF"
# FORMATS §9.1: Neuropixels 1.0 AP / LFP bands and the PXI-6133 NI-DAQ card
AP_RATE = 30_000.0
LFP_RATE = 2_500.0
NIDAQ_RATE = 30_000.0
N_PROBE_CHANNELS = 384
N_NIDAQ_CHANNELS = 8
NP_BIT_VOLTS = 0.19499999284744263  # µV per bit, float32(0.195) as the GUI writes it
NIDAQ_BIT_VOLTS = 0.00030517578125  # V per bit: ±10 V over int16
LFP_NOISE_UV = 15.0  # rms of the raw LFP band's noise (synth.lfp adds its content on top)
NEUROPIX_PROCESSOR = "Neuropix-PXI"
NEUROPIX_NODE_ID = 100
NIDAQ_PROCESSOR = "NI-DAQmx"
NIDAQ_NODE_ID = 105
NIDAQ_STREAM = "PXI-6133"
GUI_VERSION = "0.6.4"
NEUROPIX_PLUGIN_VERSION = "0.4.0"
PROBE_NAME = "Neuropixels 1.0"
PROBE_PART_NUMBER = "PRB_1_4_0480_1"
# record node -> probe letters it records (FORMATS §1.2: typically A–C and D–F)
RECORD_NODES: Mapping[int, str] = {102: "ABC", 103: "DEF"}
PXI_SLOTS: Mapping[str, int] = {"ABC": 2, "DEF": 3}
# probes moved from ports 1–3 to ports 2–4 in November 2023 (FORMATS §9.3)
PORT_SHIFT_DATE = datetime.date(2023, 11, 1)
# NP1.0 bank-0 site columns, cycling with channel index (FORMATS §9.3)
NP1_X_CYCLE = (27.0, 59.0, 11.0, 43.0)
NP1_ROW_PITCH_UM = 20.0
# acquisition runs long before recording starts: AP sample numbers begin near this value
FIRST_SAMPLE_BASE = 210_000_000
CLOCK_ERROR_MAX = 5e-6
RIG_TIMEZONE = zoneinfo.ZoneInfo("America/Los_Angeles")
# probes whose sorting output is simulated concurrently (bounded: each holds its spikes in memory)
SORTING_THREADS = 2
# dtypes of the per-spike truth arrays (EphysTruth fields, also the .npy files of truth_arrays_dir)
SPIKE_TRUTH_DTYPES: Mapping[str, type[np.generic]] = {
    "spike_unit": np.int32,
    "spike_sample": np.int64,
    "spike_time": np.float64,
    "spike_amplitude": np.float32,
}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: columns of ``EphysTruth.unit_responses``: the sorting response table
#: (:data:`npc_frames.synth.sorting.RESPONSE_TABLE_SCHEMA`, ``unit_index`` = the truth's unit row)
#: plus each unit's probe letter and cluster id
UNIT_RESPONSES_SCHEMA: dict[str, type[pl.DataType]] = {
    "unit_index": pl.Int64,
    "probe_letter": pl.String,
    "cluster_id": pl.Int64,
    **{k: v for k, v in RESPONSE_TABLE_SCHEMA.items() if k != "unit_index"},
}


@dataclasses.dataclass(frozen=True)
class StreamTruth:
    """One Open Ephys stream of one record node and its true clock on sync."""

    record_node: str  # "Record Node 102"
    folder_name: str  # "Neuropix-PXI-100.ProbeA-AP" (no trailing slash)
    stream_name: str  # "ProbeA-AP"
    kind: str  # "ap" | "lfp" | "nidaq"
    probe_letter: str | None
    nominal_rate: float
    rate_on_sync: float
    start_time_on_sync: float  # sync time of continuous sample 0
    first_sample_number: int
    num_channels: int
    num_samples: int  # samples of the full recording (what the compressed zarr would hold)
    num_samples_clipped: int  # samples in the clipped continuous.dat
    num_ttl_events: int
    path: str  # continuous folder relative to the session root

    def sync_time(self, sample_index: npt.ArrayLike) -> FloatArray:
        """Return sync-clock seconds of continuous sample indices (0 = first sample)."""
        return self.start_time_on_sync + np.asarray(sample_index, dtype=np.float64) / (
            self.rate_on_sync
        )


@dataclasses.dataclass(frozen=True)
class ProbeTruth:
    """One Neuropixels probe: identity, hardware address, record node, geometry, sorting folder."""

    letter: str
    serial_number: int
    slot: int
    port: int
    dock: int
    record_node: str
    probe_name: str
    part_number: str
    channel_x: tuple[float, ...]
    channel_y: tuple[float, ...]
    sorting_path: str  # relative to the session root
    n_units: int


@dataclasses.dataclass
class EphysTruth:
    """Ground truth of :func:`make_ephys`.

    Small fields go to JSON via :meth:`to_json_dict`; per-spike arrays (and per-unit arrays, for
    convenience) come from :meth:`arrays` for saving as ``.npy``. Units are ordered by probe letter
    then ascending ``cluster_id``; spikes by unit row then time. ``spike_sample`` is the sample on
    the probe's AP clock relative to its first continuous sample (== ``spike_times.npy``),
    ``spike_time`` = ``start_time_on_sync + spike_sample / rate_on_sync`` of that AP stream,
    ``spike_amplitude`` is µV (== ``amplitudes.npy``). When :func:`make_ephys` is given
    ``truth_arrays_dir``, the four per-spike arrays are read-only memory maps of ``.npy`` files there.

    ``unit_responses`` has one row per (unit, stimulus label) the unit responds to
    (:data:`UNIT_RESPONSES_SCHEMA`: response window ``[onset + latency_s, onset + latency_s +
    duration_s)`` on the sync clock, signed ``rate_change_hz``, ``context_gain``, the spikes added or
    removed); units absent from it do not respond. It is empty when no stimuli were given.
    """

    software_time_ms: int
    recording_start_s: float
    recording_stop_s: float
    streams: list[StreamTruth]
    probes: list[ProbeTruth]
    unit_probe: npt.NDArray[np.str_]
    unit_cluster_id: IntArray
    unit_peak_channel: IntArray
    unit_amplitude: FloatArray
    unit_spike_count: IntArray
    spike_unit: npt.NDArray[np.int32]
    spike_sample: IntArray
    spike_time: FloatArray
    spike_amplitude: npt.NDArray[np.float32]
    unit_responses: pl.DataFrame = dataclasses.field(
        default_factory=lambda: pl.DataFrame(schema=UNIT_RESPONSES_SCHEMA)
    )

    ARRAY_FIELDS: ClassVar[tuple[str, ...]] = (
        "unit_cluster_id",
        "unit_peak_channel",
        "unit_amplitude",
        "unit_spike_count",
        "spike_unit",
        "spike_sample",
        "spike_time",
        "spike_amplitude",
    )

    @property
    def n_units(self) -> int:
        """Return the number of units over all probes."""
        return int(self.unit_cluster_id.size)

    @property
    def n_spikes(self) -> int:
        """Return the number of spikes over all probes."""
        return int(self.spike_unit.size)

    def stream(self, folder_name: str, record_node: str | None = None) -> StreamTruth:
        """Return the stream with that folder name (first match unless a record node is given)."""
        for s in self.streams:
            if s.folder_name == folder_name and record_node in (None, s.record_node):
                return s
        raise KeyError(folder_name)

    def ap_stream(self, letter: str) -> StreamTruth:
        """Return the AP stream of probe ``letter``."""
        return self.stream(f"{NEUROPIX_PROCESSOR}-{NEUROPIX_NODE_ID}.Probe{letter}-AP")

    def probe(self, letter: str) -> ProbeTruth:
        """Return the probe with that letter."""
        for p in self.probes:
            if p.letter == letter:
                return p
        raise KeyError(letter)

    def unit_rows(self, letter: str) -> IntArray:
        """Return the unit row indices of probe ``letter``."""
        return np.flatnonzero(self.unit_probe == letter).astype(np.int64)

    def to_json_dict(self) -> dict[str, Any]:
        """Return the small fields (streams, probes, per-unit table) as JSON-serialisable data."""
        return {
            "software_time_ms": self.software_time_ms,
            "recording_start_s": self.recording_start_s,
            "recording_stop_s": self.recording_stop_s,
            "streams": [dataclasses.asdict(s) for s in self.streams],
            "probes": [
                {
                    **dataclasses.asdict(p),
                    "channel_x": list(p.channel_x),
                    "channel_y": list(p.channel_y),
                }
                for p in self.probes
            ],
            "units": {
                "probe_letter": self.unit_probe.tolist(),
                "cluster_id": self.unit_cluster_id.tolist(),
                "peak_channel": self.unit_peak_channel.tolist(),
                "amplitude": self.unit_amplitude.tolist(),
                "spike_count": self.unit_spike_count.tolist(),
            },
            "n_spikes": int(self.spike_unit.size),
            "unit_responses": self.unit_responses.to_dict(as_series=False),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the array fields by name (for ``np.save(f"{name}.npy", array)``)."""
        return {name: getattr(self, name) for name in self.ARRAY_FIELDS}

    @classmethod
    def from_json_dict(
        cls, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> EphysTruth:
        """Return the truth rebuilt from :meth:`to_json_dict` output and :meth:`arrays`."""
        probes = [
            ProbeTruth(
                **{
                    **p,
                    "channel_x": tuple(p["channel_x"]),
                    "channel_y": tuple(p["channel_y"]),
                }
            )
            for p in data["probes"]
        ]
        return cls(
            software_time_ms=int(data["software_time_ms"]),
            recording_start_s=float(data["recording_start_s"]),
            recording_stop_s=float(data["recording_stop_s"]),
            streams=[StreamTruth(**s) for s in data["streams"]],
            probes=probes,
            unit_probe=np.asarray(data["units"]["probe_letter"], dtype=np.str_),
            **{name: np.asarray(arrays[name]) for name in cls.ARRAY_FIELDS},
            unit_responses=pl.DataFrame(
                data.get("unit_responses") or {}, schema=UNIT_RESPONSES_SCHEMA
            ),
        )


def np1_bank0_geometry(n_channels: int = N_PROBE_CHANNELS) -> tuple[FloatArray, FloatArray]:
    """Return (x, y) in µm of Neuropixels 1.0 bank-0 channels: CH0 = (27, 0), y = 20·(k // 2)."""
    k = np.arange(n_channels)
    x = np.asarray(NP1_X_CYCLE, dtype=np.float64)[k % 4]
    y = NP1_ROW_PITCH_UM * (k // 2)
    return x, y.astype(np.float64)


def probe_slot_ports(letters: Sequence[str], date: datetime.date) -> dict[str, tuple[int, int]]:
    """Return {letter: (slot, port)} such that the §9.3 letter rule recovers ``letters``.

    A–C sit in PXI slot 2 and D–F in slot 3. A slot whose third probe (C/F) is present uses
    ports 2–4 from 2023-11-01 (the port-4 shift), otherwise ports 1–3; B and C alone always use
    ports 3–4, because ports {2, 3} alone are ambiguous to the rule.
    """
    _validate_letters(letters)
    out: dict[str, tuple[int, int]] = {}
    for group, slot in PXI_SLOTS.items():
        present = [letter for letter in letters if letter in group]
        idx = [group.index(letter) for letter in present]
        shift = 1 if (2 in idx and (date >= PORT_SHIFT_DATE or idx == [1, 2])) else 0
        for letter, i in zip(present, idx):
            out[letter] = (slot, i + 1 + shift)
    return out


def _validate_letters(letters: Sequence[str]) -> None:
    if not letters:
        raise ParameterError("no probe letters given", field="probe_letters", expected="A–F")
    bad = [letter for letter in letters if letter not in PROBE_LETTERS or len(letter) != 1]
    if bad:
        raise ParameterError(
            f"invalid probe letters {bad!r}", field="probe_letters", expected="letters A–F"
        )
    if len(set(letters)) != len(letters) or list(letters) != sorted(letters):
        raise ParameterError(
            f"probe letters {list(letters)!r} are repeated or unsorted",
            field="probe_letters",
            expected="distinct letters in A–F order",
        )
    if not any(letter in "ABC" for letter in letters):
        raise ParameterError(
            f"probe letters {list(letters)!r} use only slot 3 (D–F): the slot/port rule of "
            "FORMATS §9.3 would read them back as A–C",
            field="probe_letters",
            expected="at least one of A, B, C",
        )


@dataclasses.dataclass(frozen=True)
class _Clock:
    nominal_rate: float
    rate_on_sync: float
    start_time_on_sync: float
    first_sample_number: int
    num_samples: int

    def samples_of(self, t_sync: FloatArray) -> IntArray:
        """Return stream sample numbers of sync times (TTL rule of the brief / FORMATS §10)."""
        idx = np.round((t_sync - self.start_time_on_sync) * self.rate_on_sync).astype(np.int64)
        return idx + self.first_sample_number

    def sync_of(self, sample_numbers: IntArray) -> FloatArray:
        """Return sync times of stream sample numbers."""
        return self.start_time_on_sync + (sample_numbers - self.first_sample_number) / (
            self.rate_on_sync
        )


def _make_clock(
    nominal: float,
    error: float,
    start: float,
    stop: float,
    first_sample: int,
) -> _Clock:
    rate = nominal * (1.0 + error)
    return _Clock(
        nominal_rate=nominal,
        rate_on_sync=rate,
        start_time_on_sync=start,
        first_sample_number=int(first_sample),
        num_samples=int(np.floor((stop - start) * rate)),
    )


def _distinct_errors(rng: np.random.Generator, n: int) -> FloatArray:
    """Return n clock errors in ±5e-6, at least 1e-7 apart (distinct per stream)."""
    grid = rng.choice(np.arange(-49, 50), size=n, replace=False)
    return (grid + rng.uniform(-0.4, 0.4, n)) * 1e-7


@dataclasses.dataclass
class _Stream:
    node_id: int
    processor: str
    processor_id: int
    stream_name: str
    kind: str
    letter: str | None
    num_channels: int
    clock: _Clock

    @property
    def folder_name(self) -> str:
        return f"{self.processor}-{self.processor_id}.{self.stream_name}"


def make_ephys(
    root: Path,
    *,
    rng: np.random.Generator,
    date: datetime.date,
    probe_letters: Sequence[str],
    units_per_probe: int,
    recording_start_s: float,
    recording_stop_s: float,
    barcode_rising: np.ndarray,
    barcode_falling: np.ndarray,
    clip_seconds: float = 2.0,
    software_time_ms: int | None = None,
    sync_start: datetime.datetime | None = None,
    hostname: str = "W10DT05516",
    aborted_recording: bool = False,
    truth_arrays_dir: str | Path | None = None,
    stimuli: Mapping[str, Any] | pl.DataFrame | None = None,
    lfp_models: Mapping[str, Any] | None = None,
) -> EphysTruth:
    """Return the ground truth after writing Open Ephys record nodes and sorting output under root.

    Parameters
    ----------
    root:
        Session folder; writes ``ecephys/ecephys_clipped/Record Node 10[23]/`` and ``sorting/``.
    rng:
        Source of all randomness (clock errors, serial numbers, spikes, noise).
    date:
        Session date (selects the port layout, see :func:`probe_slot_ports`).
    probe_letters:
        Probes on the rig, e.g. ``"ABCDEF"`` or ``["A", "B"]`` (sorted, at least one of A–C).
    units_per_probe:
        Units sorted on each probe (~400–800 at full scale).
    recording_start_s, recording_stop_s:
        The Open Ephys recording on the sync clock (s); every stream starts within 10 ms after
        ``recording_start_s`` and runs to ``recording_stop_s``.
    barcode_rising, barcode_falling:
        Barcode TTL edges on the sync clock (s), the same pulses that sync bit 0 records; those
        inside the recording are written to every stream's TTL folder.
    clip_seconds:
        Length of every ``continuous.dat`` (clipped upload); TTL and spikes span the whole recording.
    software_time_ms:
        ``sync_messages.txt`` software time (ms since the epoch, UTC); default: ``sync_start``
        (naive local rig time, America/Los_Angeles) plus ``recording_start_s``, or 12:00 local
        time on ``date`` plus ``recording_start_s`` when ``sync_start`` is not given either.
    sync_start:
        Wall-clock start of the sync recording (naive, rig-local), only used for the default
        ``software_time_ms`` and the settings.xml ``DATE``.
    hostname:
        ``MACHINE name`` in settings.xml (W10DT05516 is rig NP3).
    aborted_recording:
        Also write a short aborted ``recording2`` after the real one (smaller than recording1).
    truth_arrays_dir:
        Folder (created) for the per-spike truth arrays: each probe's spikes are appended to
        ``spike_unit.npy``, ``spike_sample.npy``, ``spike_time.npy`` and ``spike_amplitude.npy``
        there as soon as the probe is sorted, then dropped from memory, and the returned truth holds
        read-only memory maps of the files. Default: hold every spike in memory (~24 bytes each).
    stimuli:
        Stimulus onsets that some units respond to: a frame or column mapping with ``start_time``
        (s, sync clock, finite), ``stim_name`` (``vis1``, ``vis2``, ``sound1``, ``sound2``,
        ``rf_grating``, ``rf_flash``, ``rf_tone``, ``rf_am_noise``; other labels, e.g. ``catch``,
        evoke nothing) and optionally ``rewarded_modality`` (``"vis"``/``"aud"``/null: the
        rewarded context of the trial's block). Default: no unit responds to anything. The
        response profiles are in ``EphysTruth.unit_responses``.
    lfp_models:
        Probe letter -> :class:`npc_frames.synth.lfp.LfpModel` whose content is added to that
        probe's raw LFP band (default: noise only).

    Memory: probes are simulated on :data:`SORTING_THREADS` threads and consumed in letter order,
    so at most that many probes' spike trains (plus the one being stored) exist at once; after a
    probe is stored only its spikes inside the ``continuous.dat`` clip are kept (to draw them).
    """
    _validate_letters(probe_letters)
    if units_per_probe < 1:
        raise ParameterError(
            f"units_per_probe = {units_per_probe}", field="units_per_probe", expected=">= 1"
        )
    if not recording_stop_s - recording_start_s >= 10.0:
        raise ParameterError(
            f"recording [{recording_start_s}, {recording_stop_s}] s is shorter than 10 s",
            field="recording_stop_s",
            expected="recording_stop_s >= recording_start_s + 10",
        )
    if clip_seconds <= 0:
        raise ParameterError(f"clip_seconds = {clip_seconds}", field="clip_seconds", expected="> 0")
    stim_times, stim_label, stim_context, stim_names, stim_features = _stimulus_columns(stimuli)
    spikes_dir = None if truth_arrays_dir is None else Path(truth_arrays_dir)
    if spikes_dir is not None and spikes_dir.exists() and not spikes_dir.is_dir():
        raise ParameterError(
            f"truth_arrays_dir {spikes_dir} is not a folder",
            path=spikes_dir,
            field="truth_arrays_dir",
            expected="a folder (created if missing)",
        )
    rising = np.asarray(barcode_rising, dtype=np.float64)
    falling = np.asarray(barcode_falling, dtype=np.float64)
    if rising.ndim != 1 or falling.ndim != 1:
        raise ParameterError(
            "barcode edges must be 1-D arrays of seconds", field="barcode_rising", expected="1-D"
        )
    if software_time_ms is None:
        t0 = sync_start or datetime.datetime.combine(date, datetime.time(12, 0))
        t0 = t0.replace(tzinfo=RIG_TIMEZONE) if t0.tzinfo is None else t0
        software_time_ms = round((t0.timestamp() + recording_start_s) * 1000)

    root = Path(root)
    clipped = root / "ecephys" / "ecephys_clipped"
    slot_ports = probe_slot_ports(probe_letters, date)
    serials = _serial_numbers(rng, len(probe_letters))
    channel_x, channel_y = np1_bank0_geometry()

    # -- clocks: one per stream, all distinct ----------------------------------------------------
    n_streams = 2 * len(probe_letters) + 1
    errors = _distinct_errors(rng, n_streams)
    starts = recording_start_s + rng.uniform(0.0, 0.01, n_streams)
    ap_first = FIRST_SAMPLE_BASE + rng.integers(0, 5_000_000, len(probe_letters))
    streams_by_node: dict[int, list[_Stream]] = {node: [] for node in RECORD_NODES}
    for i, letter in enumerate(probe_letters):
        node = next(n for n, group in RECORD_NODES.items() if letter in group)
        ap = _make_clock(AP_RATE, errors[2 * i], starts[2 * i], recording_stop_s, ap_first[i])
        lfp_first = int(ap_first[i]) // 12 + int(rng.integers(0, 3))
        lfp = _make_clock(
            LFP_RATE, errors[2 * i + 1], starts[2 * i + 1], recording_stop_s, lfp_first
        )
        for kind, clock in (("ap", ap), ("lfp", lfp)):
            streams_by_node[node].append(
                _Stream(
                    node_id=node,
                    processor=NEUROPIX_PROCESSOR,
                    processor_id=NEUROPIX_NODE_ID,
                    stream_name=f"Probe{letter}-{kind.upper()}",
                    kind=kind,
                    letter=letter,
                    num_channels=N_PROBE_CHANNELS,
                    clock=clock,
                )
            )
    nidaq_clock = _make_clock(
        NIDAQ_RATE,
        errors[-1],
        starts[-1],
        recording_stop_s,
        FIRST_SAMPLE_BASE + int(rng.integers(0, 5_000_000)),
    )
    for node in RECORD_NODES:
        streams_by_node[node].append(
            _Stream(
                node_id=node,
                processor=NIDAQ_PROCESSOR,
                processor_id=NIDAQ_NODE_ID,
                stream_name=NIDAQ_STREAM,
                kind="nidaq",
                letter=None,
                num_channels=N_NIDAQ_CHANNELS,
                clock=nidaq_clock,
            )
        )

    # -- sorting: spikes on each AP clock ----------------------------------------------------
    ap_streams = {
        s.letter: s for ss in streams_by_node.values() for s in ss if s.kind == "ap" and s.letter
    }

    def sort_probe(letter: str, probe_rng: np.random.Generator) -> ProbeSorting:
        ap_stream = ap_streams[letter]
        rel_dat = (
            f"../../ecephys/ecephys_clipped/Record Node {ap_stream.node_id}/experiment1/"
            f"recording1/continuous/{ap_stream.folder_name}/continuous.dat"
        )
        return make_sorting(
            root / "sorting" / ap_stream.folder_name,
            rng=probe_rng,
            n_units=units_per_probe,
            n_samples=ap_stream.clock.num_samples,
            channel_x=channel_x,
            channel_y=channel_y,
            sample_rate=AP_RATE,
            dat_path=rel_dat,
            stimuli=None
            if stimuli is None
            else _onsets_on_clock(
                ap_stream.clock, stim_times, stim_label, stim_context, stim_names, stim_features
            ),
        )

    # probes are independent: one child generator each keeps results identical however the
    # threads are scheduled; numpy releases the GIL in the heavy array work
    probe_rngs = rng.spawn(len(probe_letters))
    sink = _SpikeTruthSink(spikes_dir)
    sortings: dict[str, ProbeSorting] = {}
    try:
        for letter, sorting in zip(
            probe_letters,
            _map_in_order(sort_probe, probe_letters, probe_rngs, workers=SORTING_THREADS),
        ):
            clock = ap_streams[letter].clock
            sink.add(sorting.spikes, clock)
            # only spikes inside the clipped continuous.dat are needed from here on
            n_clip = _clip_samples(clip_seconds, clock)
            sortings[letter] = dataclasses.replace(
                sorting, spikes=_spikes_before(sorting.spikes, n_clip + AVERAGE_TEMPLATE_SAMPLES)
            )
            del sorting
        spike_arrays = sink.finish()
    finally:
        sink.close()

    # -- record nodes --------------------------------------------------------------------------
    stream_truths: list[StreamTruth] = []
    for node, node_streams in streams_by_node.items():
        node_dir = clipped / f"Record Node {node}"
        rec_dir = node_dir / "experiment1" / "recording1"
        truths = _write_recording(
            rec_dir,
            rng=rng,
            node=node,
            streams=node_streams,
            sortings=sortings,
            rising=rising,
            falling=falling,
            clip_seconds=clip_seconds,
            software_time_ms=software_time_ms,
            root=root,
            lfp_models=lfp_models,
        )
        stream_truths.extend(truths)
        if aborted_recording:
            _write_aborted_recording(
                node_dir / "experiment1" / "recording2",
                rng=rng,
                node=node,
                streams=node_streams,
                software_time_ms=software_time_ms,
                after_s=recording_stop_s + 30.0,
                clip_seconds=clip_seconds,
            )
        settings_time = datetime.datetime.fromtimestamp(
            software_time_ms / 1000 + (node - min(RECORD_NODES)), tz=RIG_TIMEZONE
        )
        _write_settings_xml(
            node_dir / "settings.xml",
            when=settings_time,
            hostname=hostname,
            letters=probe_letters,
            slot_ports=slot_ports,
            serials=serials,
            channel_x=channel_x,
            channel_y=channel_y,
        )

    probes = [
        ProbeTruth(
            letter=letter,
            serial_number=serials[i],
            slot=slot_ports[letter][0],
            port=slot_ports[letter][1],
            dock=1,
            record_node=f"Record Node {ap_streams[letter].node_id}",
            probe_name=PROBE_NAME,
            part_number=PROBE_PART_NUMBER,
            channel_x=tuple(channel_x.tolist()),
            channel_y=tuple(channel_y.tolist()),
            sorting_path=f"sorting/{ap_streams[letter].folder_name}",
            n_units=units_per_probe,
        )
        for i, letter in enumerate(probe_letters)
    ]
    return _assemble_truth(
        probes=probes,
        streams=stream_truths,
        sortings=sortings,
        spike_arrays=spike_arrays,
        software_time_ms=software_time_ms,
        recording_start_s=recording_start_s,
        recording_stop_s=recording_stop_s,
    )


StimulusColumns = tuple[FloatArray, IntArray, npt.NDArray[np.int8], tuple[str, ...], FloatArray]
#: optional ``make_ephys`` stimulus columns the tuned responses depend on (NaN/null: none)
FEATURE_COLUMNS: tuple[str, ...] = ("position_x", "position_y", "frequency_hz")


def _stimulus_columns(stimuli: Mapping[str, Any] | pl.DataFrame | None) -> StimulusColumns:
    """Return (start times, label indices, context codes, label names, features (n, 3)) of
    ``make_ephys`` stimuli; features are the optional :data:`FEATURE_COLUMNS` (NaN where absent).

    Raises :class:`ParameterError` naming the column when one is missing, of unequal length,
    non-finite or not a known modality.
    """
    if stimuli is None:
        return np.empty(0), np.empty(0, np.int64), np.empty(0, np.int8), (), np.empty((0, 3))
    columns = stimuli.to_dict(as_series=False) if isinstance(stimuli, pl.DataFrame) else stimuli
    if not isinstance(columns, Mapping):
        raise ParameterError(
            f"stimuli of type {type(stimuli).__name__}",
            field="stimuli",
            expected="a polars DataFrame or a mapping of columns",
        )
    for name in ("start_time", "stim_name"):
        if name not in columns:
            raise ParameterError(
                f"stimuli lack column {name!r}",
                field=f"stimuli.{name}",
                expected="columns start_time, stim_name [, rewarded_modality]",
            )
    try:
        times = np.asarray(columns["start_time"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(
            "stimulus start times are not numbers",
            field="stimuli.start_time",
            expected="seconds on the sync clock",
        ) from None
    names = np.asarray(columns["stim_name"], dtype=np.str_)
    n = times.size
    context_raw = columns.get("rewarded_modality")
    context_arr = np.asarray(
        [""] * n if context_raw is None else ["" if c is None else str(c) for c in context_raw],
        dtype=np.str_,
    )
    if times.ndim != 1 or names.shape != (n,) or context_arr.shape != (n,):
        raise ParameterError(
            f"stimulus columns of lengths {times.shape}, {names.shape}, {context_arr.shape}",
            field="stimuli.stim_name",
            expected="1-D columns of equal length",
        )
    if not np.all(np.isfinite(times)):
        raise ParameterError(
            f"{int(np.sum(~np.isfinite(times)))} non-finite stimulus start times",
            field="stimuli.start_time",
            expected="finite seconds on the sync clock",
        )
    bad = sorted(set(context_arr.tolist()) - set(MODALITY_NAMES))
    if bad:
        raise ParameterError(
            f"unknown rewarded modalities {bad!r}",
            field="stimuli.rewarded_modality",
            expected="'vis', 'aud' or null",
        )
    features = np.full((n, len(FEATURE_COLUMNS)), np.nan)
    for j, name in enumerate(FEATURE_COLUMNS):
        raw = columns.get(name)
        if raw is None:
            continue
        try:
            col = np.asarray([np.nan if v is None else v for v in raw], dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError(
                f"stimulus column {name!r} is not numeric",
                field=f"stimuli.{name}",
                expected="numbers or nulls",
            ) from None
        if col.shape != (n,):
            raise ParameterError(
                f"stimulus column {name!r} of length {col.shape}",
                field=f"stimuli.{name}",
                expected=f"{n} values",
            )
        features[:, j] = col
    labels, label_index = np.unique(names, return_inverse=True)
    context = np.select(
        [context_arr == name for name in MODALITY_NAMES[1:]], range(1, len(MODALITY_NAMES)), 0
    ).astype(np.int8)
    return times, label_index.astype(np.int64), context, tuple(labels.tolist()), features


def _onsets_on_clock(
    clock: _Clock,
    times: FloatArray,
    label: IntArray,
    context: npt.NDArray[np.int8],
    names: tuple[str, ...],
    features: FloatArray | None = None,
) -> StimulusOnsets:
    """Return the stimulus onsets inside a stream's recording as its sample indices."""
    samples = np.round((times - clock.start_time_on_sync) * clock.rate_on_sync).astype(np.int64)
    inside = (samples >= 0) & (samples < clock.num_samples)
    feats = features[inside] if features is not None else None
    return StimulusOnsets(
        samples=samples[inside],
        label=label[inside],
        context=context[inside],
        names=names,
        position=feats[:, :2] if feats is not None else None,
        frequency_hz=feats[:, 2] if feats is not None else None,
    )


def _serial_numbers(rng: np.random.Generator, n: int) -> list[int]:
    """Return n distinct 11-digit probe serial numbers (like 18005123131)."""
    values = rng.choice(100_000_000, size=n, replace=False)
    prefixes = rng.choice([180, 181, 191, 192], size=n)
    return [int(p) * 100_000_000 + int(v) for p, v in zip(prefixes, values)]


_T = TypeVar("_T")


def _map_in_order(fn: Callable[..., _T], *iterables: Iterable[Any], workers: int) -> Iterator[_T]:
    """Yield ``fn(*args)`` in input order, running at most ``workers`` calls ahead of the consumer.

    Unlike ``Executor.map`` (which submits everything at once, so finished results pile up while
    an earlier one is still running), a call is only submitted when the consumer has taken a
    result: at most ``workers`` results exist besides the one being consumed.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending: collections.deque[concurrent.futures.Future[_T]] = collections.deque()
        for args in zip(*iterables):
            if len(pending) >= workers:
                yield pending.popleft().result()
            pending.append(pool.submit(fn, *args))
        while pending:
            yield pending.popleft().result()


def _clip_samples(clip_seconds: float, clock: _Clock) -> int:
    """Return the number of samples of a stream's clipped ``continuous.dat``."""
    return int(min(round(clip_seconds * clock.nominal_rate), clock.num_samples))


def _spikes_before(spikes: SpikeTrains, n: int) -> SpikeTrains:
    """Return the spikes whose sample is below ``n`` (copies: the full arrays can be freed)."""
    keep = spikes.samples < n
    return dataclasses.replace(
        spikes,
        unit_index=spikes.unit_index[keep],
        samples=spikes.samples[keep],
        amplitudes=spikes.amplitudes[keep],
    )


class _SpikeTruthSink:
    """Collects each probe's spikes, in probe order, into the four per-spike truth arrays.

    With a folder, every probe is appended to ``.npy`` files at once (its arrays can then be
    freed) and :meth:`finish` returns read-only memory maps; without, the probes' arrays are kept
    and concatenated field by field in :meth:`finish`, freeing each field's parts as it goes, so
    the peak stays near the size of the result.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.unit_offset = 0
        self._files: dict[str, NpyAppender] = {}
        self._parts: list[tuple[SpikeTrains, _Clock, int]] = []
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self._files = {
                name: NpyAppender(folder / f"{name}.npy", dtype)
                for name, dtype in SPIKE_TRUTH_DTYPES.items()
            }

    def add(self, spikes: SpikeTrains, clock: _Clock) -> None:
        """Store one probe's spikes (its units follow the previous probes' units)."""
        offset = self.unit_offset
        self.unit_offset += spikes.n_units
        if not self._files:
            self._parts.append((spikes, clock, offset))
            return
        self._files["spike_sample"].append(spikes.samples)
        self._files["spike_amplitude"].append(spikes.amplitudes)
        for sl in chunk_slices(spikes.samples.size):
            self._files["spike_unit"].append(spikes.unit_index[sl] + np.int32(offset))
            self._files["spike_time"].append(_sync_times(spikes.samples[sl], clock))

    def finish(self) -> dict[str, np.ndarray]:
        """Return the per-spike truth arrays by field name."""
        if self._files:
            paths = {name: f.close() for name, f in self._files.items()}
            return {name: np.load(path, mmap_mode="r") for name, path in paths.items()}
        parts, self._parts = self._parts, []
        sizes = [spikes.samples.size for spikes, _, _ in parts]
        bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        samples = [spikes.samples for spikes, _, _ in parts]
        units = [spikes.unit_index for spikes, _, _ in parts]
        amplitudes = [spikes.amplitudes for spikes, _, _ in parts]
        clocks = [(clock, offset) for _, clock, offset in parts]
        del parts
        out: dict[str, np.ndarray] = {}
        out["spike_sample"] = _concatenate(samples, np.int64)
        out["spike_amplitude"] = _concatenate(amplitudes, np.float32)
        spike_unit = _concatenate(units, np.int32)
        spike_time = np.empty(spike_unit.size, dtype=np.float64)
        for (clock, offset), lo, hi in zip(clocks, bounds[:-1], bounds[1:]):
            spike_unit[lo:hi] += np.int32(offset)
            spike_time[lo:hi] = _sync_times(out["spike_sample"][lo:hi], clock)
        out["spike_unit"] = spike_unit
        out["spike_time"] = spike_time
        return out

    def close(self) -> None:
        """Close any open ``.npy`` file (after an error, or a second time: harmless)."""
        for f in self._files.values():
            f.close()


def _concatenate(parts: list[np.ndarray], dtype: type[np.generic]) -> np.ndarray:
    """Return the parts concatenated, emptying the list so each part can be freed right away."""
    out = np.concatenate(parts, dtype=dtype) if parts else np.empty(0, dtype=dtype)
    parts.clear()
    return out


def _sync_times(samples: IntArray, clock: _Clock) -> FloatArray:
    """Return sync-clock seconds of AP samples counted from the stream's first sample."""
    t = samples / clock.rate_on_sync
    t += clock.start_time_on_sync
    return t


def _assemble_truth(
    *,
    probes: list[ProbeTruth],
    streams: list[StreamTruth],
    sortings: Mapping[str, ProbeSorting],
    spike_arrays: Mapping[str, np.ndarray],
    software_time_ms: int,
    recording_start_s: float,
    recording_stop_s: float,
) -> EphysTruth:
    letters = [p.letter for p in probes]
    return EphysTruth(
        software_time_ms=software_time_ms,
        recording_start_s=recording_start_s,
        recording_stop_s=recording_stop_s,
        streams=streams,
        probes=probes,
        unit_probe=np.concatenate(
            [np.full(sortings[letter].n_units, letter, dtype="<U1") for letter in letters]
        ),
        unit_cluster_id=np.concatenate([sortings[letter].cluster_ids for letter in letters]),
        unit_peak_channel=np.concatenate([sortings[letter].peak_channel for letter in letters]),
        unit_amplitude=np.concatenate([sortings[letter].amplitude for letter in letters]),
        unit_spike_count=np.concatenate([sortings[letter].spike_counts for letter in letters]),
        spike_unit=spike_arrays["spike_unit"],
        spike_sample=spike_arrays["spike_sample"],
        spike_time=spike_arrays["spike_time"],
        spike_amplitude=spike_arrays["spike_amplitude"],
        unit_responses=_unit_responses(letters, sortings),
    )


def _unit_responses(letters: Sequence[str], sortings: Mapping[str, ProbeSorting]) -> pl.DataFrame:
    """Return every probe's response table with truth unit rows, probe letters and cluster ids."""
    parts = []
    offset = 0
    for letter in letters:
        sorting = sortings[letter]
        profiles = sorting.spikes.responses
        if profiles is not None:
            table = profiles.table()
            local = table["unit_index"].to_numpy()
            parts.append(
                table.with_columns(
                    pl.Series("unit_index", local + offset, dtype=pl.Int64),
                    pl.lit(letter, dtype=pl.String).alias("probe_letter"),
                    pl.Series("cluster_id", sorting.cluster_ids[local], dtype=pl.Int64),
                ).select(list(UNIT_RESPONSES_SCHEMA))
            )
        offset += sorting.n_units
    if not parts:
        return pl.DataFrame(schema=UNIT_RESPONSES_SCHEMA)
    return pl.concat(parts)


# ------------------------------------------------------------------------------------------------
# one recording folder
# ------------------------------------------------------------------------------------------------


def _main_time(main: _Clock, t_sync: FloatArray) -> FloatArray:
    """Return seconds on a record node's main-stream clock for sync times (GUI `timestamps`)."""
    return (
        main.first_sample_number / main.nominal_rate
        + (t_sync - main.start_time_on_sync) * main.rate_on_sync / main.nominal_rate
    )


def _write_recording(
    rec_dir: Path,
    *,
    rng: np.random.Generator,
    node: int,
    streams: Sequence[_Stream],
    sortings: Mapping[str, ProbeSorting],
    rising: FloatArray,
    falling: FloatArray,
    clip_seconds: float,
    software_time_ms: int,
    root: Path,
    lfp_models: Mapping[str, Any] | None = None,
) -> list[StreamTruth]:
    """Return stream truths after writing one recording folder (continuous, events, metadata)."""
    main = streams[0].clock
    truths: list[StreamTruth] = []
    for stream in streams:
        clock = stream.clock
        cont_dir = rec_dir / "continuous" / stream.folder_name
        cont_dir.mkdir(parents=True, exist_ok=True)
        n_clip = _clip_samples(clip_seconds, clock)
        data = _continuous_data(
            rng,
            stream,
            n_clip,
            sortings.get(stream.letter or ""),
            (lfp_models or {}).get(stream.letter or ""),
        )
        data.tofile(cont_dir / "continuous.dat")
        del data
        sample_numbers = clock.first_sample_number + np.arange(n_clip, dtype=np.int64)
        np.save(cont_dir / "sample_numbers.npy", sample_numbers)
        np.save(cont_dir / "timestamps.npy", _main_time(main, clock.sync_of(sample_numbers)))

        n_ttl = _write_ttl(
            rec_dir / "events" / stream.folder_name / "TTL", clock, main, rising, falling
        )
        truths.append(
            StreamTruth(
                record_node=f"Record Node {node}",
                folder_name=stream.folder_name,
                stream_name=stream.stream_name,
                kind=stream.kind,
                probe_letter=stream.letter,
                nominal_rate=clock.nominal_rate,
                rate_on_sync=clock.rate_on_sync,
                start_time_on_sync=clock.start_time_on_sync,
                first_sample_number=clock.first_sample_number,
                num_channels=stream.num_channels,
                num_samples=clock.num_samples,
                num_samples_clipped=n_clip,
                num_ttl_events=n_ttl,
                path=cont_dir.relative_to(root).as_posix(),
            )
        )
    _write_message_center(rec_dir / "events" / "MessageCenter", main, ["Recording started"])
    _write_oebin(rec_dir / "structure.oebin", node, streams)
    _write_sync_messages(rec_dir / "sync_messages.txt", software_time_ms, streams)
    return truths


def _write_aborted_recording(
    rec_dir: Path,
    *,
    rng: np.random.Generator,
    node: int,
    streams: Sequence[_Stream],
    software_time_ms: int,
    after_s: float,
    clip_seconds: float,
) -> None:
    """Write a short aborted recording (a quarter of the clip, no TTL) after the real one."""
    aborted = []
    for s in streams:
        c = s.clock
        start = after_s + float(rng.uniform(0.0, 0.01))
        first = c.first_sample_number + round((start - c.start_time_on_sync) * c.rate_on_sync)
        clock = dataclasses.replace(
            c, start_time_on_sync=start, first_sample_number=first, num_samples=0
        )
        aborted.append(dataclasses.replace(s, clock=clock))
    main = aborted[0].clock
    for stream in aborted:
        clock = stream.clock
        cont_dir = rec_dir / "continuous" / stream.folder_name
        cont_dir.mkdir(parents=True, exist_ok=True)
        n = max(1, round(0.25 * clip_seconds * clock.nominal_rate))
        _continuous_data(rng, stream, n, None).tofile(cont_dir / "continuous.dat")
        sample_numbers = clock.first_sample_number + np.arange(n, dtype=np.int64)
        np.save(cont_dir / "sample_numbers.npy", sample_numbers)
        np.save(cont_dir / "timestamps.npy", _main_time(main, clock.sync_of(sample_numbers)))
        empty = np.empty(0)
        _write_ttl(rec_dir / "events" / stream.folder_name / "TTL", clock, main, empty, empty)
    _write_message_center(rec_dir / "events" / "MessageCenter", main, [])
    _write_oebin(rec_dir / "structure.oebin", node, aborted)
    elapsed_ms = round((after_s - streams[0].clock.start_time_on_sync) * 1000)
    _write_sync_messages(rec_dir / "sync_messages.txt", software_time_ms + elapsed_ms, aborted)


def _noise(rng: np.random.Generator, n: int, n_ch: int, sd_counts: float) -> npt.NDArray[np.int16]:
    """Return (n, n_ch) int16 Gaussian noise, drawn as random rows of a 4096-row noise bank.

    Drawing every sample is the slowest part of writing a clip; rows of a bank are
    indistinguishable from fresh noise for anything that reads these files.
    """
    bank = rng.standard_normal((min(n, 4096), n_ch), dtype=np.float32) * np.float32(sd_counts)
    bank_i16 = np.clip(np.round(bank), -32768, 32767).astype(np.int16)
    return bank_i16[rng.integers(0, bank_i16.shape[0], n)]


def _continuous_data(
    rng: np.random.Generator,
    stream: _Stream,
    n: int,
    sorting: ProbeSorting | None,
    lfp_model: Any = None,
) -> npt.NDArray[np.int16]:
    """Return (n, channels) int16 samples: band-appropriate noise plus the AP spikes in the clip
    (AP) or the LFP model's content at the samples' sync times (LFP, :mod:`synth.lfp`)."""
    n_ch = stream.num_channels
    if stream.kind == "nidaq":
        return _noise(rng, n, n_ch, 0.005 / NIDAQ_BIT_VOLTS)  # ~5 mV
    if stream.kind == "lfp":
        # slow fluctuations: a 20-sample moving average of white noise, ~15 µV
        white = rng.standard_normal((n + 20, n_ch), dtype=np.float32)
        cs = np.cumsum(white, axis=0, dtype=np.float32)
        uv = (cs[20:] - cs[:-20]) * (LFP_NOISE_UV / np.sqrt(20.0))
        if lfp_model is not None:
            clock = stream.clock
            t = clock.sync_of(clock.first_sample_number + np.arange(n, dtype=np.int64))
            uv += lfp_model.uv(t)
        return np.clip(np.round(uv / NP_BIT_VOLTS), -32768, 32767).astype(np.int16)
    data = _noise(rng, n, n_ch, 10.0 / NP_BIT_VOLTS)  # ~10 µV rms
    if sorting is not None:
        _add_spikes(data, sorting)
    return data


# at most this many spikes are drawn into a clipped AP continuous.dat (largest first)
MAX_SPIKES_IN_CLIP = 2000


def _add_spikes(data: npt.NDArray[np.int16], sorting: ProbeSorting) -> None:
    """Add each unit's average template at its spikes inside the clip (int16 counts, in place)."""
    n = data.shape[0]
    templates = np.load(sorting.folder / "templates_average.npy", mmap_mode="r")
    spikes = sorting.spikes
    start = spikes.samples - AVERAGE_TEMPLATE_PEAK_INDEX
    sel = np.flatnonzero((start >= 0) & (start + AVERAGE_TEMPLATE_SAMPLES <= n))
    if sel.size == 0:
        return
    if sel.size > MAX_SPIKES_IN_CLIP:
        sel = sel[np.argsort(spikes.amplitudes[sel])[-MAX_SPIKES_IN_CLIP:]]
    s_start = start[sel]
    s_unit = spikes.unit_index[sel].astype(np.int64)
    s_scale = (spikes.amplitudes[sel] / sorting.amplitude[s_unit]).astype(np.float32)
    units = np.unique(s_unit)
    dense = np.asarray(templates[units]) / np.float32(NP_BIT_VOLTS)  # (u, t, ch) in counts
    row = np.searchsorted(units, s_unit)
    # (spike, channel) pairs on the units' nonzero channels
    nz_unit, nz_ch = np.nonzero(np.any(dense != 0, axis=1))
    per_unit = np.bincount(nz_unit, minlength=units.size)
    first = np.cumsum(per_unit) - per_unit
    reps = per_unit[row]
    pair_spike = np.repeat(np.arange(s_start.size), reps)
    pair_k = np.arange(pair_spike.size) - np.repeat(np.cumsum(reps) - reps, reps)
    pair_ch = nz_ch[first[row][pair_spike] + pair_k]
    # (pairs, samples) waveforms and their flat positions in the (n, n_ch) array
    waves = dense[row[pair_spike], :, pair_ch] * s_scale[pair_spike][:, None]
    lags = np.arange(AVERAGE_TEMPLATE_SAMPLES)
    flat = (s_start[pair_spike][:, None] + lags[None, :]) * data.shape[1] + pair_ch[:, None]
    # spikes of at most a few mV on ~10 µV noise stay far inside the int16 range
    np.add.at(data.reshape(-1), flat.ravel(), np.round(waves.ravel()).astype(np.int16))


def _write_ttl(
    ttl_dir: Path,
    clock: _Clock,
    main: _Clock,
    rising: FloatArray,
    falling: FloatArray,
) -> int:
    """Return the number of TTL events after writing barcode edges inside the stream's recording."""
    ttl_dir.mkdir(parents=True, exist_ok=True)
    stop = clock.start_time_on_sync + clock.num_samples / clock.rate_on_sync
    times = np.concatenate([rising, falling])
    states = np.concatenate(
        [np.ones(rising.size, dtype=np.int16), -np.ones(falling.size, dtype=np.int16)]
    )
    order = np.argsort(times, kind="stable")
    times, states = times[order], states[order]
    inside = (times >= clock.start_time_on_sync) & (times < stop)
    times, states = times[inside], states[inside]
    sample_numbers = clock.samples_of(times)
    np.save(ttl_dir / "states.npy", states)
    np.save(ttl_dir / "sample_numbers.npy", sample_numbers)
    np.save(ttl_dir / "timestamps.npy", _main_time(main, clock.sync_of(sample_numbers)))
    np.save(ttl_dir / "full_words.npy", (states > 0).astype(np.uint64))
    return int(states.size)


def _write_message_center(folder: Path, main: _Clock, messages: Sequence[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = np.array([m.encode() for m in messages], dtype="S512")
    sample_numbers = np.full(len(messages), main.first_sample_number, dtype=np.int64)
    np.save(folder / "text.npy", text)
    np.save(folder / "sample_numbers.npy", sample_numbers)
    np.save(folder / "timestamps.npy", sample_numbers / main.nominal_rate)


def _channel_entries(processor: str, kind: str, num_channels: int) -> list[dict[str, Any]]:
    """Return the oebin ``channels`` entries of a stream."""
    history = f"{processor} -> Record Node"
    if kind == "nidaq":
        return [
            {
                "channel_name": f"AI{k}",
                "description": "Analog Input channel from a NIDAQ device",
                "identifier": "",
                "history": history,
                "bit_volts": NIDAQ_BIT_VOLTS,
                "units": "V",
                "type": 2,
            }
            for k in range(num_channels)
        ]
    band = "AP" if kind == "ap" else "LFP"
    return [
        {
            "channel_name": f"CH{k + 1}",
            "description": f"Neuropixels {band} channel",
            "identifier": f"neuropixels.{band.lower()}",
            "history": history,
            "bit_volts": NP_BIT_VOLTS,
            "units": "uV",
            "type": 0,
        }
        for k in range(num_channels)
    ]


# depth of a continuous stream's "channels" key in structure.oebin (document > list > stream)
_OEBIN_CHANNELS_DEPTH = 3


@functools.lru_cache(maxsize=16)
def _channels_json(processor: str, kind: str, num_channels: int) -> str:
    """Return a stream's channel list exactly as ``json.dumps(oebin, indent=4)`` renders it.

    ``json`` has no C encoder for indented output; rendering each distinct list once (AP, LFP,
    NI-DAQ) instead of 384 channels × every stream × both record nodes saves ~2 s per session.
    """
    text = json.dumps(_channel_entries(processor, kind, num_channels), indent=4)
    return text.replace("\n", "\n" + " " * (4 * _OEBIN_CHANNELS_DEPTH))


def _write_oebin(path: Path, node: int, streams: Sequence[_Stream]) -> None:
    """Write structure.oebin (4-space indented JSON, as the GUI writes it)."""
    continuous = []
    events = []
    channel_lists: dict[str, str] = {}  # JSON string placeholder -> rendered channel list
    for s in streams:
        marker = f"@@channels {s.processor} {s.kind} {s.num_channels}@@"
        channel_lists[json.dumps(marker)] = _channels_json(s.processor, s.kind, s.num_channels)
        continuous.append(
            {
                "folder_name": f"{s.folder_name}/",
                "sample_rate": s.clock.nominal_rate,
                "source_processor_name": s.processor,
                "source_processor_id": s.processor_id,
                "stream_name": s.stream_name,
                "recorded_processor": "Record Node",
                "recorded_processor_id": node,
                "num_channels": s.num_channels,
                "channels": marker,
            }
        )
        if s.kind == "nidaq":
            ttl_name = f"{NIDAQ_STREAM}Digital Input Line"
            description = "Digital Line from a NIDAQ device containing 8 inputs"
            identifier = "identifier"
            n_lines = 8
        else:
            ttl_name = "Neuropixels PXI Sync"
            description = "Status of SMA sync line on PXI card"
            identifier = "neuropixels.sync"
            n_lines = 1
        events.append(
            {
                "folder_name": f"{s.folder_name}/TTL/",
                "channel_name": ttl_name,
                "description": description,
                "identifier": identifier,
                "sample_rate": s.clock.nominal_rate,
                "type": "int16",
                "num_channels": n_lines,
                "source_processor": s.processor,
                "stream_name": s.stream_name,
                "initial_state": 0,
            }
        )
    events.append(
        {
            "folder_name": "MessageCenter/",
            "channel_name": "Messages",
            "description": "Broadcasts messages from the MessageCenter",
            "identifier": "messagecenter.events",
            "sample_rate": streams[0].clock.nominal_rate,
            "type": "string",
            "num_channels": 1,
            "source_processor": "Message Center",
            "stream_name": streams[0].stream_name,
        }
    )
    oebin = {"GUI version": GUI_VERSION, "continuous": continuous, "events": events, "spikes": []}
    text = json.dumps(oebin, indent=4)
    for marker, rendered in channel_lists.items():
        text = text.replace(marker, rendered)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _write_sync_messages(path: Path, software_time_ms: int, streams: Sequence[_Stream]) -> None:
    lines = [f"Software Time (milliseconds since midnight Jan 1st 1970 UTC): {software_time_ms}"]
    for s in streams:
        lines.append(
            f"Start Time for {s.processor} ({s.processor_id}) - {s.stream_name} "
            f"@ {int(s.clock.nominal_rate)} Hz: {s.clock.first_sample_number}"
        )
    path.write_text("\n".join(lines) + "\n")


def _write_settings_xml(
    path: Path,
    *,
    when: datetime.datetime,
    hostname: str,
    letters: Sequence[str],
    slot_ports: Mapping[str, tuple[int, int]],
    serials: Sequence[int],
    channel_x: FloatArray,
    channel_y: FloatArray,
) -> None:
    """Write a GUI 0.6.x settings.xml describing the whole rig (FORMATS §9.3)."""
    root = ET.Element("SETTINGS")
    info = ET.SubElement(root, "INFO")
    ET.SubElement(info, "VERSION").text = GUI_VERSION
    ET.SubElement(info, "PLUGIN_API_VERSION").text = "8"
    ET.SubElement(info, "DATE").text = when.strftime("%d %b %Y %H:%M:%S")
    ET.SubElement(info, "OS").text = "Windows 10"
    ET.SubElement(
        info, "MACHINE", name=hostname, cpu_model="Intel(R) Xeon(R) W-2145 CPU @ 3.70GHz"
    ).set("cpu_num_cores", "16")
    chain = ET.SubElement(root, "SIGNALCHAIN")

    pxi = ET.SubElement(
        chain,
        "PROCESSOR",
        name=NEUROPIX_PROCESSOR,
        insertionPoint="0",
        pluginName="Neuropix-PXI",
        type="4",
        index="0",
        libraryName="Neuropix-PXI",
        libraryVersion=NEUROPIX_PLUGIN_VERSION,
        processorType="2",
        nodeId=str(NEUROPIX_NODE_ID),
    )
    for letter in letters:
        for band, rate in (("AP", AP_RATE), ("LFP", LFP_RATE)):
            ET.SubElement(
                pxi,
                "STREAM",
                name=f"Probe{letter}-{band}",
                description=f"Neuropixels {band} band data stream",
                sample_rate=repr(rate),
                channel_count=str(N_PROBE_CHANNELS),
            )
    editor = ET.SubElement(pxi, "EDITOR", isCollapsed="0", displayName="Neuropix-PXI")
    keys = [f"CH{k}" for k in range(N_PROBE_CHANNELS)]
    for i, letter in enumerate(letters):  # letter order == (slot, port) order
        slot, port = slot_ports[letter]
        probe = ET.SubElement(
            editor,
            "NP_PROBE",
            slot=str(slot),
            port=str(port),
            dock="1",
            probe_serial_number=str(serials[i]),
            headstage_serial_number=str(23_000_000_000 + serials[i] % 1_000_000),
            probe_part_number=PROBE_PART_NUMBER,
            probe_name=PROBE_NAME,
            headstage_part_number="NP2_HS_30",
            flex_part_number="NP2_FLEX_0",
            apGainValue="500x",
            lfpGainValue="250x",
            referenceChannel="Ext",
            filterCut="ON",
            isEnabled="1",
        )
        ET.SubElement(probe, "CHANNELS", dict.fromkeys(keys, "0"))
        ET.SubElement(probe, "ELECTRODE_XPOS", {k: str(int(v)) for k, v in zip(keys, channel_x)})
        ET.SubElement(probe, "ELECTRODE_YPOS", {k: str(int(v)) for k, v in zip(keys, channel_y)})

    daq = ET.SubElement(
        chain,
        "PROCESSOR",
        name=NIDAQ_PROCESSOR,
        insertionPoint="0",
        pluginName="NI-DAQmx",
        type="4",
        index="1",
        libraryName="NI-DAQmx",
        libraryVersion="0.3.0",
        processorType="2",
        nodeId=str(NIDAQ_NODE_ID),
    )
    ET.SubElement(
        daq,
        "STREAM",
        name=NIDAQ_STREAM,
        description="Analog input channels from a NIDAQ device",
        sample_rate=repr(NIDAQ_RATE),
        channel_count=str(N_NIDAQ_CHANNELS),
    )
    ET.SubElement(daq, "EDITOR", isCollapsed="0", displayName="NI-DAQmx")
    ET.SubElement(
        chain,
        "PROCESSOR",
        name="Merger",
        insertionPoint="1",
        pluginName="Merger",
        type="0",
        index="4",
        libraryName="",
        libraryVersion="",
        processorType="6",
        nodeId="101",
    )
    for node, group in RECORD_NODES.items():
        rec = ET.SubElement(
            chain,
            "PROCESSOR",
            name="Record Node",
            insertionPoint="1",
            pluginName="Record Node",
            type="0",
            index="3",
            libraryName="",
            libraryVersion="",
            processorType="8",
            nodeId=str(node),
        )
        custom = ET.SubElement(
            rec,
            "CUSTOM_PARAMETERS",
            path="D:\\",
            engine="BINARY",
            recordEvents="1",
            recordSpikes="1",
        )
        main_set = False
        for letter in letters:
            for band, rate in (("AP", AP_RATE), ("LFP", LFP_RATE)):
                recorded = letter in group
                is_main = recorded and not main_set
                main_set = main_set or is_main
                ET.SubElement(
                    custom,
                    "STREAM",
                    isMainStream="1" if is_main else "0",
                    sync_line="0",
                    name=f"Probe{letter}-{band}",
                    source_node_id=str(NEUROPIX_NODE_ID),
                    sample_rate=repr(rate),
                    channel_count=str(N_PROBE_CHANNELS),
                    recording_state="ALL" if recorded else "NONE",
                )
        ET.SubElement(
            custom,
            "STREAM",
            isMainStream="0" if main_set else "1",
            sync_line="0",
            name=NIDAQ_STREAM,
            source_node_id=str(NIDAQ_NODE_ID),
            sample_rate=repr(NIDAQ_RATE),
            channel_count=str(N_NIDAQ_CHANNELS),
            recording_state="ALL",
        )
    ET.indent(root, space="  ")
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ET.tostring(root, encoding="unicode")
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n\n' + body + "\n")


def set_channel_banks(root: str | Path, banks: Mapping[str, int]) -> list[Path]:
    """Return the settings.xml files rewritten so that probe ``letter``'s channels record bank
    ``banks[letter]`` (electrode = channel + 384 × bank) at that bank's site positions.

    A surface-channel recording moves the probes' channels up the shank (bank 1); a probe left in
    bank 0 is still on the tip. ``NP_PROBE`` elements are in letter order (see the module notes).
    """
    out: list[Path] = []
    for path in sorted(Path(root).glob("ecephys/**/settings.xml")):
        tree = ET.parse(path)
        probes = list(tree.getroot().iter("NP_PROBE"))
        letters = PROBE_LETTERS[: len(probes)]
        for letter, elem in zip(letters, probes, strict=True):
            if letter not in banks:
                continue
            bank = int(banks[letter])
            electrode = np.arange(N_PROBE_CHANNELS) + N_PROBE_CHANNELS * bank
            keys = [f"CH{k}" for k in range(N_PROBE_CHANNELS)]
            x = np.asarray(NP1_X_CYCLE)[electrode % len(NP1_X_CYCLE)]
            y = NP1_ROW_PITCH_UM * (electrode // 2)
            for tag, values in (
                ("CHANNELS", [str(bank)] * N_PROBE_CHANNELS),
                ("ELECTRODE_XPOS", [str(int(v)) for v in x]),
                ("ELECTRODE_YPOS", [str(int(v)) for v in y]),
            ):
                child = elem.find(tag)
                assert child is not None
                child.attrib.clear()
                child.attrib.update(zip(keys, values, strict=True))
        body = ET.tostring(tree.getroot(), encoding="unicode")
        path.unlink()  # a new file: a hard-linked copy of a session keeps its own
        path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n\n' + body + "\n")
        out.append(path)
    return out
