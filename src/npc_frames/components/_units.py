"""The ``units`` component: spike-sorted units of every sorted probe with spike times on the sync
clock (FORMATS §11.3–§11.4).

One pass of numpy per probe: spikes are grouped by unit with one stable sort, converted to sync
seconds with the probe's AP clock (§10), and handed to Polars as Arrow list arrays built from
flat values + offsets (no Python loop over units or spikes).

Decisions
---------
* A probe whose sorting or clock cannot be read is **reported, not dropped silently**: the units
  of healthy probes are returned, a ``UserWarning`` names each failed or unsorted probe, and
  :func:`units_with_report` returns the reasons as data (also on ``df.attrs`` of the result).
  When no probe yields units and some failed, the first failure is raised.
* ``default_qc`` is overwritten by npc's rule (§11.3 item 9). ``activity_drift`` needs trials: it
  is computed when a ``trials`` frame is passed, else null and excluded from the rule (so a
  session converted without trials does not fail every unit, unlike the reference, where it is
  False for every unit of a non-task session). A missing ``decoder_label`` counts as not noise; a
  missing metric fails the unit.
* CCF columns are a *left* join on (probe, peak_channel) with the annotated electrodes: units on
  unannotated channels are kept with null CCF, where the reference's inner merge drops them
  **[quirk]**.
* ``waveform_mean`` is the average template restricted to the unit's own channels (where it is
  not all zero), with those channels in ``channels``; ``waveform_sd`` is not carried. Both are
  the ``unit_waveforms`` component, not columns of ``units`` (as the per-spike amplitudes are
  ``spike_amplitudes``): in the units file they sat between the spike-time chunks of
  consecutive row groups, so a query of spike times over S3 needed one ranged GET per row group.
  Both components are taken from the units' sorting read (one decode per convert).
* The AP stream's clock is used for spikes; a sorting whose sample rate differs from the stream's
  nominal rate by > 0.1 % is rejected as belonging to another stream.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from npc_frames import parts
from npc_frames._log import timed
from npc_frames._stats import anderson_ksamp_midrank
from npc_frames.alignment import SessionClocks, StreamClock, session_clocks
from npc_frames.components.ephys import electrode_lookup, electrodes, probe_setup
from npc_frames.errors import (
    AbsentModalityError,
    InconsistentDataError,
    NpcFramesError,
)
from npc_frames.lists import flat_list_chunks
from npc_frames.memo import Memo
from npc_frames.probes import probe_selection, report_skipped
from npc_frames.readers.sorting import SortingOutput, find_sortings, read_sorting, sorting_key
from npc_frames.schemas.ephys import METRIC_COLUMNS, SPIKE_AMPLITUDES, UNIT_WAVEFORMS, UNITS

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = [
    "UnitsReport",
    "list_series",
    "spike_amplitudes",
    "unit_waveforms",
    "units",
    "units_with_report",
]

logger = logging.getLogger(__name__)

#: npc QC thresholds (FORMATS §11.3 item 9)
MAX_ISI_VIOLATIONS_RATIO = 0.5
MAX_AMPLITUDE_CUTOFF = 0.1
MIN_PRESENCE_RATIO = 0.7
MAX_ACTIVITY_DRIFT = 0.1
#: activity_drift counting window around each stim start, s (the code's [−1.5, +2) **[quirk]**)
DRIFT_WINDOW = (-1.5, 2.0)


@dataclass(frozen=True)
class UnitsReport:
    """What happened to each probe: converted, failed (with the error) or not sorted."""

    converted: tuple[str, ...] = ()
    failures: dict[str, NpcFramesError] = field(default_factory=dict)
    unsorted: tuple[str, ...] = ()
    #: letter -> why the probe is left out (npc_frames.probes); its sorting is not read
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data (probe -> message)."""
        return {
            "converted": list(self.converted),
            "failed": {k: str(v) for k, v in self.failures.items()},
            "unsorted": list(self.unsorted),
            "skipped": dict(self.skipped),
        }


# ---------------------------------------------------------------------------- list helpers
_ARROW_TYPES = {
    np.dtype(np.float64): pa.float64(),
    np.dtype(np.float32): pa.float32(),
    np.dtype(np.int64): pa.int64(),
}


def _arrow(values: np.ndarray) -> pa.Array:
    # from_buffers is zero-copy and, unlike pa.array(ndarray), does not import pandas
    values = np.ascontiguousarray(values)
    if values.dtype not in _ARROW_TYPES:
        values = values.astype(np.float64)
    arrow_type = _ARROW_TYPES[values.dtype]
    return pa.Array.from_buffers(arrow_type, values.size, [None, pa.py_buffer(values)])


def _large_list(offsets: npt.NDArray[np.int64], child: pa.Array) -> pa.Array:
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    return pa.LargeListArray.from_buffers(
        pa.large_list(child.type), offsets.size - 1, [None, pa.py_buffer(offsets)], children=[child]
    )


def list_series(
    name: str, values: np.ndarray, offsets: npt.NDArray[np.int64], *, inner: int | None = None
) -> pl.Series:
    """Return a Polars list Series from flat `values` and row `offsets` (len rows + 1).

    With `inner`, values are first grouped into fixed-length lists of `inner` items, giving a
    list of lists (e.g. channels × samples waveforms); `offsets` then count inner lists.
    Zero-copy through Arrow buffers.
    """
    vals = _arrow(values)
    if inner is not None:
        n_inner = values.size // inner if inner else 0
        vals = _large_list(np.arange(n_inner + 1, dtype=np.int64) * inner, vals)
    return pl.Series(name, _large_list(offsets, vals))


def _group_by_unit(
    so: SortingOutput,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
    """Return (spike order grouping spikes by unit with ascending samples, row offsets)."""
    units = so.spike_units
    samples = so.spike_samples
    n = so.n_units
    if samples.size and not np.all(samples[1:] >= samples[:-1]):
        order = np.lexsort((samples, units))
    else:
        key = units.astype(np.uint16) if n < 2**16 else units  # 16-bit keys: radix sort
        order = np.argsort(key, kind="stable")
    counts = np.bincount(units, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return order, offsets


#: spikes gathered per step when building times (bounds the temporary int64 copy to 8 MB)
_GATHER_CHUNK = 1 << 20


def _gather(src: np.ndarray, order: np.ndarray) -> npt.NDArray[np.float64]:
    """Return src[order] as float64, gathered in chunks so that no full-length temporary is made
    (a loop over ~10 chunks per probe, never over spikes)."""
    out = np.empty(order.size, dtype=np.float64)
    for lo in range(0, order.size, _GATHER_CHUNK):
        hi = min(lo + _GATHER_CHUNK, order.size)
        out[lo:hi] = src[order[lo:hi]]
    return out


def _gather_times(clock: StreamClock, samples: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Return sync times (s) of samples[order], computed in place."""
    t = _gather(samples, order)
    t /= clock.rate_on_sync
    t += clock.start_time
    return t


def _has_templates(so: SortingOutput) -> bool:
    """Return True if the sorting has an average template (samples × channels) per unit."""
    tpl = so.templates
    return tpl is not None and tpl.shape[0] == so.n_units and tpl.shape[2] > 0


def _peaks(
    so: SortingOutput,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (peak channel, amplitude, channels offsets, channels values, waveform values)."""
    n = so.n_units
    tpl = so.templates
    if tpl is None or not _has_templates(so):
        empty = np.zeros(0)
        return (
            np.full(n, -1, np.int64),
            np.full(n, np.nan),
            np.zeros(n + 1, np.int64),
            empty.astype(np.int64),
            empty.astype(np.float32),
        )
    p2p = tpl.max(axis=1) - tpl.min(axis=1)  # (units, channels)
    peak = np.argmax(p2p, axis=1)
    amplitude = p2p[np.arange(n), peak].astype(np.float64)
    mask = np.any(tpl != 0, axis=1)  # channels with data
    per_unit = mask.sum(axis=1)
    ch_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(per_unit, out=ch_offsets[1:])
    unit_idx, ch_idx = np.nonzero(mask)
    channels = so.channels[ch_idx]
    waveforms = np.ascontiguousarray(tpl.transpose(0, 2, 1)[unit_idx, ch_idx, :], np.float32)
    has_data = per_unit > 0  # an all-zero template has no peak
    peak_channel = np.where(has_data, so.channels[peak], -1)
    amplitude[~has_data] = np.nan
    return peak_channel, amplitude, ch_offsets, channels, waveforms.ravel()


def _probe_units(
    so: SortingOutput,
    clock: StreamClock,
    *,
    session_id: str,
    letter: str,
    device_name: str | None,
    lookup: tuple[np.ndarray, np.ndarray] | None,
    sync_total_seconds: float,
    channel_offset: int,
) -> tuple[pl.DataFrame, pl.Series | None, tuple[pl.Series, pl.Series] | None]:
    """Return (the probe's units frame, its per-spike amplitudes in unit order or None, its
    (channels, waveform_mean) in unit order or None when the sorting has no templates)."""
    if so.sample_rate and abs(so.sample_rate / clock.nominal_rate - 1) > 1e-3:
        raise InconsistentDataError(
            f"sorting sample rate {so.sample_rate} Hz differs from the AP stream's "
            f"{clock.nominal_rate} Hz",
            path=so.path,
            field="sample_rate",
            expected=f"the nominal rate of {clock.name}",
        )
    n = so.n_units
    order, offsets = _group_by_unit(so)
    times = _gather_times(clock, so.spike_samples, order)
    cols_spikes = list_series("spike_times", times, offsets)
    del times
    cols: dict[str, Any] = {}
    cluster = so.cluster_ids
    prefix = f"{session_id}_{letter}-" if so.shank is None else f"{session_id}_{letter}-{so.shank}-"
    cols["unit_id"] = pl.Series("unit_id", np.char.add(prefix, cluster.astype(str)))
    cols["cluster_id"] = pl.Series(cluster, dtype=pl.Int64)
    cols["electrode_group_name"] = pl.Series([f"probe{letter}"] * n, dtype=pl.String)
    cols["device_name"] = pl.Series([device_name] * n, dtype=pl.String)
    cols["shank"] = pl.Series([so.shank] * n, dtype=pl.Int64)
    peak, amplitude, ch_offsets, channels, waveforms = _peaks(so)
    has_peak = peak >= 0
    peak_channel = np.where(has_peak, peak + channel_offset, -1)
    cols["peak_channel"] = pl.Series(peak_channel).set(pl.Series(~has_peak), None)
    if lookup is not None and has_peak.any():
        chs, idx = lookup
        pos = np.clip(np.searchsorted(chs, peak_channel), 0, max(chs.size - 1, 0))
        found = has_peak & (chs[pos] == peak_channel) if chs.size else np.zeros(n, bool)
        pe = np.where(found, idx[pos], -1) if chs.size else np.full(n, -1)
        cols["peak_electrode"] = pl.Series(pe).set(pl.Series(~found), None)
    else:
        cols["peak_electrode"] = pl.Series([None] * n, dtype=pl.Int64)
    cols["amplitude"] = pl.Series(amplitude).fill_nan(None)
    cols["spike_times"] = cols_spikes
    amplitudes = None
    if so.spike_amplitudes is not None:
        amps = _gather(np.asarray(so.spike_amplitudes), order)
        amplitudes = list_series("spike_amplitudes", amps, offsets)
        del amps
    del order
    # clipped uploads: the last spike is later evidence of recording than the last TTL event
    last = int(so.spike_samples.max(initial=-1)) + 1
    stop = min(clock.times(max(clock.num_samples, last)).item(), sync_total_seconds)
    obs = np.tile(np.array([clock.start_time, stop]), n)
    cols["obs_intervals"] = list_series(
        "obs_intervals", obs, np.arange(n + 1, dtype=np.int64), inner=2
    )
    waveform_cols = None
    if so.templates is not None and _has_templates(so):
        n_samples = so.templates.shape[1]
        waveform_cols = (
            list_series("channels", channels + channel_offset, ch_offsets),
            list_series("waveform_mean", waveforms, ch_offsets, inner=n_samples),
        )
    cols["num_spikes"] = pl.Series(np.diff(offsets), dtype=pl.Int64)
    df = pl.DataFrame(cols)
    metrics = so.metrics.select(
        [
            pl.col(c).cast(pl.Float64, strict=False)
            for c in METRIC_COLUMNS
            if c in so.metrics.columns
        ]
    )
    props = so.properties
    extra = []
    if "decoder_label" in props.columns:
        extra.append(props["decoder_label"].cast(pl.String).alias("decoder_label"))
    if "decoder_probability" in props.columns:
        extra.append(props["decoder_probability"].cast(pl.Float64).alias("decoder_probability"))
    if metrics.width:
        df = pl.concat([df, metrics], how="horizontal")
    if extra:
        df = df.with_columns(extra)
    return df, amplitudes, waveform_cols


def _qc(df: pl.DataFrame) -> pl.DataFrame:
    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in df.columns else pl.lit(None, pl.Float64)

    rule = (
        (col("isi_violations_ratio") <= MAX_ISI_VIOLATIONS_RATIO)
        & (col("amplitude_cutoff") <= MAX_AMPLITUDE_CUTOFF)
        & (col("presence_ratio") >= MIN_PRESENCE_RATIO)
    ).fill_null(False)
    label = pl.col("decoder_label") if "decoder_label" in df.columns else pl.lit(None, pl.String)
    rule = rule & (label != "noise").fill_null(True)
    drift = pl.col("activity_drift") if "activity_drift" in df.columns else pl.lit(None, pl.Float64)
    rule = rule & (drift < MAX_ACTIVITY_DRIFT).fill_null(True)
    return df.with_columns(rule.alias("default_qc"), rule.alias("is_qc_pass"))


@dataclass(frozen=True)
class _Handoff:
    """The per-spike amplitudes (or the average templates) read with one session's sortings, and
    what happened to each probe (so that ``spike_amplitudes`` and ``unit_waveforms`` report the
    same parts as ``units``)."""

    frame: pl.DataFrame
    report: UnitsReport
    #: the parts reported while the sortings were read (failed, absent and skipped probes,
    #: damaged electrodes), reported again by the component that takes the frame
    reported: tuple[parts.Part, ...] = ()
    #: probe keys whose sorting has no per-spike amplitudes (no templates)
    without: tuple[str, ...] = ()


#: the amplitudes of the session whose units were computed last, handed to ``spike_amplitudes``
#: (taken, so released, when it runs): one decode of the sortings serves every component. One
#: entry: a full-scale session's amplitudes are ~0.5 GB.
_AMPLITUDES: Memo[_Handoff] = Memo("spike amplitudes from the units' sorting read", maxsize=1)
#: the average templates of the same session, handed to ``unit_waveforms`` (~30 MB at full scale)
_WAVEFORMS: Memo[_Handoff] = Memo("unit waveforms from the units' sorting read", maxsize=1)


def _amplitudes_key(raw: RawSession) -> tuple[str, str, tuple[tuple[str, Any], ...]]:
    """Return the memo key of a session's sorting read: its root, id and every file's size and
    modification stamp at discovery (a rewritten sorting file gives a new key)."""
    return (str(raw.root), str(raw.session_id), tuple(sorted(raw.file_stats.items())))


def _keyed_rows(frame: pl.DataFrame, *columns: pl.Series) -> pl.DataFrame:
    """Return the rows of a component keyed like one probe's units `frame` (same row order):
    session_id, unit_id, electrode_group_name, structure, then `columns`."""
    structure = (
        frame["structure"] if "structure" in frame.columns else pl.Series([None] * frame.height)
    )
    return pl.DataFrame(
        [
            frame["session_id"],
            frame["unit_id"],
            frame["electrode_group_name"],
            structure.cast(pl.String).alias("structure"),
            *columns,
        ]
    )


@timed
def units_with_report(
    raw: RawSession, *, trials: pl.DataFrame | None = None, clocks: SessionClocks | None = None
) -> tuple[pl.DataFrame, UnitsReport]:
    """Return (units of every sorted, alignable probe; report of failed/unsorted probes).

    The per-spike amplitudes and average templates read with the sortings are handed to
    :func:`spike_amplitudes` and :func:`unit_waveforms` (when `clocks` is not given), which take
    them instead of decoding the sortings again.
    """
    sid = str(raw.session_id)
    sorting_path = raw.sorting_path
    if sorting_path is None:
        raise AbsentModalityError(
            "session has no spike-sorting output",
            path=raw.root,
            expected="<root>/sorting/<stream folder>/ (phy) or an AIND sorting result",
        )
    handoff = clocks is None
    # the files read and the parts reported here are those of spike_amplitudes and
    # unit_waveforms too
    reported: list[parts.Part] = []
    try:
        with parts.record_reads() as reads, parts.collect() as reported:
            clocks = clocks if clocks is not None else session_clocks(raw)
            setup = probe_setup(raw)
            try:
                el = electrodes(raw)
                lookups = electrode_lookup(el)
            except NpcFramesError as exc:
                logger.warning("electrodes unavailable for %s: %s", sid, exc)
                parts.report_failure("electrodes", exc)
                el, lookups = None, {}
            serials = {p.letter: p.serial for p in setup.settings.probes} if setup.settings else {}
            ccf = _ccf_table(el)
            entries = {
                key: (entry, location)
                for entry, location in find_sortings(raw.local(sorting_path)).items()
                if (key := sorting_key(entry)) is not None
            }
            failures: dict[str, NpcFramesError] = {}
            frames: list[pl.DataFrame] = []
            amplitude_frames: list[pl.DataFrame] = []
            waveform_frames: list[pl.DataFrame] = []
            without: list[str] = []
            without_templates: list[str] = []
            converted: list[str] = []
            skipped = dict(probe_selection(raw).skipped)
            for key, (entry, location) in sorted(entries.items()):  # one iteration per probe (≤ 6)
                letter = key[0]
                if letter in skipped:
                    continue
                try:
                    # read one probe at a time: its spikes are released before the next is read
                    so = read_sorting(location, name=entry)
                    stream = clocks.probe_stream(letter, "ap")
                    clock = clocks.clock(stream)
                    frame, amplitudes, waveforms = _probe_units(
                        so,
                        clock,
                        session_id=sid,
                        letter=letter,
                        device_name=serials.get(letter),
                        lookup=lookups.get(f"probe{letter}"),
                        sync_total_seconds=clocks.sync_total_seconds,
                        channel_offset=setup.channel_offset,
                    )
                    del so
                    if ccf is not None:
                        frame = frame.join(
                            ccf,
                            on=["electrode_group_name", "peak_channel"],
                            how="left",
                            maintain_order="left",
                        )
                    # validated per probe: a frame validated after concatenation is copied whole
                    frame = UNITS.validate(
                        _qc(frame).with_columns(pl.lit(sid).alias("session_id")), source=location
                    )
                    if amplitudes is None:
                        without.append(key)
                    else:
                        amplitude_frames.append(_keyed_rows(frame, amplitudes))
                    del amplitudes
                    if waveforms is None:
                        without_templates.append(key)
                    else:
                        waveform_frames.append(_keyed_rows(frame, *waveforms))
                    del waveforms
                    frames.append(frame)
                    converted.append(key)
                except NpcFramesError as exc:
                    failures[key] = exc
            recorded = set(setup.recorded_letters)
            sorted_letters = {k[0] for k in entries}
            unsorted = tuple(sorted(recorded - sorted_letters))
            for key, err in failures.items():
                warnings.warn(f"units of probe {key} in {sid} not converted: {err}", stacklevel=2)
                parts.report_failure(f"probe{key}", err, probe=key[0])
            report_skipped(raw)
            for letter in unsorted:
                warnings.warn(
                    f"probe {letter} in {sid} was recorded but has no sorting output", stacklevel=2
                )
                if letter not in skipped:  # a skipped probe was reported by report_skipped
                    parts.report_absent(
                        f"probe{letter}", "recorded but has no sorting output", probe=letter
                    )
    finally:
        parts.replay_parts(reported)  # units reports them as before
    report = UnitsReport(
        converted=tuple(converted), failures=failures, unsorted=unsorted, skipped=skipped
    )
    if handoff:
        memo_key = _amplitudes_key(raw)
        for memo, pieces, schema, missing in (
            (_AMPLITUDES, amplitude_frames, SPIKE_AMPLITUDES, without),
            (_WAVEFORMS, waveform_frames, UNIT_WAVEFORMS, without_templates),
        ):
            frame = pl.concat(pieces, how="vertical", rechunk=False) if pieces else schema.empty()
            memo.put(memo_key, _Handoff(frame, report, tuple(reported), tuple(missing)), reads)
            del frame
    del amplitude_frames, waveform_frames
    if not frames:
        if failures:
            raise next(iter(failures.values()))
        out = UNITS.empty()
    else:
        out = pl.concat(frames, how="vertical", rechunk=False)
        del frames
        if trials is not None:
            drift = activity_drift(out, trials)
            out = _qc(
                out.with_columns(
                    drift.alias("activity_drift"),
                    (drift < MAX_ACTIVITY_DRIFT).alias("is_not_drift"),
                )
            )
    out.attrs = report.as_dict()  # type: ignore[attr-defined]
    return out, report


def _take(raw: RawSession, memo: Memo[_Handoff], name: str) -> _Handoff:
    """Return what units' sorting read handed on to component `name` through `memo`, reading
    the sortings now when it was not (the parts are reported by the caller from the stored
    report, as on the handed-on path)."""
    key = _amplitudes_key(raw)
    found, got = memo.pop(key)
    if not found:
        with parts.collect(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                units_with_report(raw, trials=None)
            except NpcFramesError:
                found, got = memo.pop(key)
                if not found:
                    raise  # raised before any sorting was read: the same error as units
            else:
                found, got = memo.pop(key)
    if not found or got is None:
        raise InconsistentDataError(
            f"the sortings' {name} were not kept after they were read (a concurrent read of "
            "the same session replaced them?)",
            path=raw.root,
            field=name,
            expected="one reader of a session's sortings at a time",
        )
    return got


def _report_handoff(raw: RawSession, got: _Handoff, missing: str) -> None:
    """Return None after reporting the parts of units again, each probe of `got.without` as an
    absent part (`missing` says what its sorting lacks), and the component as absent when no
    probe has it; raise the first failure when every probe failed."""
    report = got.report
    parts.replay_parts(got.reported)
    for probe in got.without:
        parts.report_absent(f"probe{probe}", f"the sorting has no {missing}", probe=probe[0])
    if got.frame.height == 0:
        if report.failures and not report.converted:
            raise next(iter(report.failures.values()))
        if got.without and not report.failures:
            parts.report_absent_component(
                f"no sorted probe of {raw.session_id} has {missing} in its sorting"
            )


@timed
def spike_amplitudes(raw: RawSession) -> pl.DataFrame:
    """Return one row per sorted unit with its per-spike amplitudes in spike-time order.

    Rows: (session_id, unit_id, electrode_group_name, structure, spike_amplitudes), the units
    of ``units`` whose sorting has per-spike amplitudes. The parts are those of ``units``: a probe
    whose sorting or clock fails is the same failed part, a recorded probe without sorting or a
    skipped probe is absent, and a probe whose sorting has no per-spike amplitudes is an absent
    part (``the sorting has no per-spike amplitudes``); when no probe has them the component is
    absent. Right after ``units`` of the same session (as ``convert`` runs them) the amplitudes
    read with its sortings are taken from memory; otherwise the sortings are read again.
    """
    got = _take(raw, _AMPLITUDES, "spike_amplitudes")
    _report_handoff(raw, got, "per-spike amplitudes")
    return SPIKE_AMPLITUDES.validate(got.frame, source=raw.root)


@timed
def unit_waveforms(raw: RawSession) -> pl.DataFrame:
    """Return one row per sorted unit with its average template on its own channels.

    Rows: (session_id, unit_id, electrode_group_name, structure, channels, waveform_mean), the
    units of ``units`` whose sorting has templates, in the order of ``units``. ``channels`` are
    the probe channels where the unit's average template is not all zero and ``waveform_mean``
    the template on them (channels × samples). The parts are those of ``units`` (see
    :func:`spike_amplitudes`); a probe whose sorting has no templates is an absent part (``the
    sorting has no templates``), and when no probe has them the component is absent. Right
    after ``units`` of the same session the templates read with its sortings are taken from
    memory; otherwise the sortings are read again.
    """
    got = _take(raw, _WAVEFORMS, "unit_waveforms")
    _report_handoff(raw, got, "templates")
    return UNIT_WAVEFORMS.validate(got.frame, source=raw.root)


def _ccf_table(el: pl.DataFrame | None) -> pl.DataFrame | None:
    """Return the annotated electrodes keyed like units (None when nothing is annotated)."""
    if el is None or "x" not in el.columns or not el["x"].is_not_null().any():
        return None
    return el.select(
        pl.col("group_name").alias("electrode_group_name"),
        pl.col("channel").alias("peak_channel"),
        pl.col("x").alias("ccf_ap"),
        pl.col("y").alias("ccf_dv"),
        pl.col("z").alias("ccf_ml"),
        "structure",
        "location",
    )


@timed
def units(raw: RawSession, *, trials: pl.DataFrame | str | None = "auto") -> pl.DataFrame:
    """Return one row per sorted unit with spike times on the sync clock (FORMATS §11.3–11.4).

    Probes that fail (sorting unreadable, clock not alignable) or were not sorted are reported by
    a warning and in ``df.attrs``; the units of the other probes are returned. Per-spike
    amplitudes and average templates are not columns: they are the ``spike_amplitudes`` and
    ``unit_waveforms`` components (keyed by ``unit_id``), handed to them from this same read of
    the sortings.

    ``activity_drift`` (and so the reference's ``default_qc`` rule) needs the session's trials:
    with ``trials="auto"`` (the default, used by ``convert``) they are computed from `raw` when the
    session has a task file, and drift is null when they cannot be; pass a ``trials`` frame to
    reuse one, or ``None`` to skip drift.
    """
    if isinstance(trials, str):
        if trials != "auto":
            raise ValueError(f"trials must be a frame, None or 'auto', not {trials!r}")
        trials = _trials_or_none(raw)
    return units_with_report(raw, trials=trials)[0]


def _trials_or_none(raw: RawSession) -> pl.DataFrame | None:
    """Return the session's trials, or None when it has no task or they cannot be computed."""
    if not raw.is_task:
        return None
    from npc_frames.components import get

    try:
        return get("trials")(raw)
    except NpcFramesError as exc:
        logger.warning("activity_drift skipped for %s: trials unavailable: %s", raw.session_id, exc)
        parts.report_failure("activity_drift", exc)
        return None


def activity_drift(df: pl.DataFrame, trials: pl.DataFrame) -> pl.Series:
    """Return activity_drift per unit of `df` from the task `trials` (FORMATS §11.3 item 8).

    Spike counts in [stim − 1.5 s, stim + 2 s) of every non-catch trial (NaN outside the unit's
    obs_intervals, then dropped); trials grouped by (rewarded_modality, stim_name); per group the
    Anderson–Darling k-sample statistic (midrank) across blocks (or 3 chronological chunks when
    the group has one block; a group whose counts are all equal scores 0, as scipy rejects it);
    the maximum over groups / 100, clipped to [0, 1]. Counting and the
    statistic loop over units (two searchsorted calls; scipy's statistic has no batched form),
    never over spikes.
    """
    need = {"stim_start_time", "is_catch", "rewarded_modality", "stim_name", "block_index"}
    n = df.height
    if not need <= set(trials.columns) or n == 0:
        return pl.Series("activity_drift", [None] * n, dtype=pl.Float64)
    tr = trials.filter(~pl.col("is_catch").fill_null(False)).drop_nulls("stim_start_time")
    if tr.height == 0:
        return pl.Series("activity_drift", [None] * n, dtype=pl.Float64)
    stim = tr["stim_start_time"].to_numpy()
    lo, hi = stim + DRIFT_WINDOW[0], stim + DRIFT_WINDOW[1]
    # per-unit counting on zero-copy views of the list column (no 60 M-spike temporaries)
    counts = np.zeros((n, stim.size), dtype=np.float64)
    row = 0
    for values, offsets in flat_list_chunks(df["spike_times"]):
        for u in range(offsets.size - 1):  # per unit: two searchsorted calls over its slice
            t = values[offsets[u] : offsets[u + 1]]
            counts[row] = np.searchsorted(t, hi) - np.searchsorted(t, lo)
            row += 1
    obs = df["obs_intervals"].list.first().list.to_struct(fields=["a", "b"]).struct.unnest()
    start = obs["a"].to_numpy()[:, None]
    stop = obs["b"].to_numpy()[:, None]
    counts[(lo[None, :] < start) | (hi[None, :] > stop)] = np.nan
    groups = (
        tr.select(pl.struct("rewarded_modality", "stim_name").rank("dense").cast(pl.Int64) - 1)
        .to_series()
        .to_numpy()
    )
    block = tr["block_index"].to_numpy()
    out = np.full(n, np.nan)
    for g in np.unique(groups):  # a handful of (modality, stim) groups
        cols = np.flatnonzero(groups == g)
        blocks = block[cols]
        labels = (
            np.searchsorted(np.unique(blocks), blocks)
            if np.unique(blocks).size > 1
            else np.minimum(np.arange(cols.size) * 3 // max(cols.size, 1), 2)
        )
        for u in range(n):  # per unit: scipy's statistic has no batched form
            row = counts[u, cols]
            samples = [row[(labels == k) & ~np.isnan(row)] for k in np.unique(labels)]
            samples = [x for x in samples if x.size]
            n_obs = sum(x.size for x in samples)
            if len(samples) < 2 or n_obs < 4:
                # scipy's k-sample variance term divides by (N-1)(N-2)(N-3): undefined below 4
                # observations (and it raises IndexError for N = 2)
                stat = np.nan
            elif np.unique(np.concatenate(samples)).size < 2:
                stat = 0.0
            else:
                stat = anderson_ksamp_midrank(samples)  # = scipy.stats.anderson_ksamp's
            out[u] = np.fmax(out[u], stat)
    drift = np.clip(out / 100.0, 0.0, 1.0)
    return pl.Series("activity_drift", drift).fill_nan(None)
