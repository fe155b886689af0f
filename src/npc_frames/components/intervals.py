"""Interval tables of the non-task scripts and the invalid_times table.

`vis_rf_mapping`, `aud_rf_mapping` (RFMapping), `optotagging` (OptoTagging) and `luminance_test`
(LuminanceTest) return a zero-row frame of their schema when the session has no such script with
valid timing. Several files of one script are appended (trial_index is not offset). Rows overlapping
an invalid-times interval are dropped (touching allowed).

Decisions on quirks:

* RF-mapping `stop_time` past the last frame: stim_stop_time + interStimFrames / frameRate (the
  reference multiplies by frameRate [quirk]);
* RF-mapping sounds that the sound sync line does not time (sessions before 2023-08-31, or a dead
  line) are timed from the NI-DAQ speaker copy (method 2, :mod:`~npc_frames.components._nidaq`)
  when the session's NI-DAQ stream covers the trial's window, else by the flip time of
  ``stimStartFrame`` (method 3; the order is in docs/formats.md). The expected waveform is the
  saved ``trialSoundArray[i]`` when present and non-empty
  (:func:`~npc_frames.components._nidaq.saved_sound_onsets`). Otherwise it is regenerated:
  ``trialToneFreq``/``trialSoundFreq`` → "tone" at [f, NaN]; ``trialAMNoiseFreq`` > 0 → "AM noise"
  in [2000, 20000] Hz; 0 Hz → unmodulated "noise" in [2000, 20000] Hz; ``trialNoiseFreq`` →
  "noise" in its band edges. RFMapping stores no seeds, so regenerated noise can only be matched
  by its amplitude envelope: fine for unmodulated noise (sharp Hanning edges; ~0.05 ms on
  synthetic data) but ambiguous by whole periods for AM noise (a periodic envelope against the
  random envelope of noise: errors of 1–10 AM periods, 12–125 ms, on synthetic data — worse than
  the flip time), so **AM noise (> 0 Hz) without a saved waveform keeps method 3**. Tones whose
  frequency is the NI-DAQ's Nyquist frequency (15 kHz at 30 kHz) lose their carrier in the
  sampling and are timed by their envelope (~0.2 ms). ``soundHanningDur`` defaults to 0.005 s
  (RFMapping's edges), the volume to ``soundVolume``.
* an OptoTagging file whose laser marker line has no edges is timed from the NI-DAQ laser command
  (channel 5, :func:`~npc_frames.components._nidaq.opto_starts`) before the laser is declared
  unrecorded. This departs from npc (which drops the rows): the command on the NI-DAQ is the same
  signal that drives the marker, so its onsets are as good as the line's. Only trials the NI-DAQ
  times become rows (a trial outside the recorded samples is dropped, as it has no recording);
  without sync there is no recording at all (the NI-DAQ is put on the sync clock), so no rows
  either. The NI-DAQ stream is read only when some trial needs it.
"""

from __future__ import annotations

import datetime
import logging
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames import parts
from npc_frames._log import timed
from npc_frames.components import _nidaq
from npc_frames.components import _sound_opto as so
from npc_frames.components._task import (
    drop_invalid,
    files_for,
    first_column,
    frames_at,
    invalid_intervals,
    open_stim,
    opto_power_coefficients,
    probe_label,
    stim_first_value,
    stim_float,
    stim_scalar,
    sync_data,
    sync_edges,
)
from npc_frames.errors import BadFormatError
from npc_frames.schemas.behavior import (
    AUD_RF_MAPPING,
    INVALID_TIMES,
    LUMINANCE_TEST,
    OPTOTAGGING,
    VIS_RF_MAPPING,
)

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from npc_frames.opto_calibration import RigLookup
    from npc_frames.paths import RawSession
    from npc_frames.readers.stim import StimFile
    from npc_frames.readers.sync import SyncData
    from npc_frames.timing import FrameTimes

__all__ = [
    "aud_rf_mapping",
    "build_optotagging",
    "build_rf_mapping",
    "invalid_times",
    "luminance_test",
    "optotagging",
    "vis_rf_mapping",
]

FloatArray = npt.NDArray[np.float64]

#: OptoTagging constants: censor period and longest analysis window, s; default laser
CENSOR_PERIOD = 0.0015
MAX_ANALYSIS_PERIOD = 0.2
DEFAULT_OPTO_DEVICE = "laser_488"


# ------------------------------------------------------------------------------- RF mapping
def build_rf_mapping(
    stim: StimFile,
    ft: FrameTimes,
    sync: SyncData | None,
    *,
    session_id: str,
    session_date: datetime.date,
    nidaq: _nidaq.NidaqSource = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (vis, aud) RF-mapping frames of one RFMapping file.

    `nidaq` (the session's NI-DAQ recording, or a function returning it, called only when a sound
    is not timed by the sound line) enables method 2 for the sound onsets (docs/formats.md).
    """
    path = stim.path
    sf = np.asarray(stim.array("stimStartFrame"), dtype=np.float64).ravel()
    n = sf.size
    flip = np.asarray(ft.flip, dtype=np.float64)
    disp = np.asarray(ft.display, dtype=np.float64)
    stim_frames = int(stim_scalar(stim, "stimFrames"))
    inter_frames = int(stim_scalar(stim, "interStimFrames"))
    frame_rate = float(stim_scalar(stim, "frameRate", default=60))

    flash = stim_float(stim, "trialFullFieldContrast", n, default=np.nan)
    ori = stim_float(stim, "trialGratingOri", n, default=np.nan)
    xy = (
        np.asarray(stim.array("trialVisXY"), dtype=np.float64)[:n]
        if stim.has("trialVisXY")
        else np.full((n, 2), np.nan)
    )
    xy = xy.reshape(n, -1) if n else np.zeros((0, 2))
    tone_key = "trialToneFreq" if stim.has("trialToneFreq") else "trialSoundFreq"
    tone = first_column(stim_float(stim, tone_key, n, default=np.nan))
    am = stim_float(stim, "trialAMNoiseFreq", n, default=np.nan)
    noise = (
        np.asarray(stim.array("trialNoiseFreq"), dtype=np.float64)[:n].reshape(n, -1)
        if stim.has("trialNoiseFreq")
        else np.full((n, 2), np.nan)
    )
    is_flash = np.isfinite(flash)
    is_grating = np.isfinite(ori)
    is_vis = is_flash ^ is_grating
    is_noise = np.asarray(np.isfinite(noise).any(axis=1), dtype=bool)
    is_aud = np.isfinite(tone) | np.isfinite(am) | is_noise

    start = frames_at(flip, sf, path=path, field="stimStartFrame")
    stop = frames_at(flip, sf + stim_frames + inter_frames, path=path, field="stimStartFrame")

    # visual
    v_start = frames_at(disp, sf, path=path, field="stimStartFrame")
    v_stop = frames_at(disp, sf + stim_frames, path=path, field="stimFrames")
    v_end = np.where(np.isfinite(stop), stop, v_stop + inter_frames / frame_rate)
    vis = pl.DataFrame(
        {
            "session_id": [session_id] * int(is_vis.sum()),
            "start_time": start[is_vis],
            "stop_time": v_end[is_vis],
            "stim_start_time": v_start[is_vis],
            "stim_stop_time": v_stop[is_vis],
            "trial_index": np.flatnonzero(is_vis),
            "is_small_field_grating": is_grating[is_vis],
            "grating_orientation": ori[is_vis],
            "grating_x": xy[is_vis, 0] if xy.shape[1] else np.full(int(is_vis.sum()), np.nan),
            "grating_y": xy[is_vis, 1] if xy.shape[1] > 1 else np.full(int(is_vis.sum()), np.nan),
            "is_full_field_flash": is_flash[is_vis],
            "flash_contrast": flash[is_vis],
        }
    )

    # auditory
    sound_dur = float(stim_scalar(stim, "soundDur", default=0.25))
    rate = float(stim_scalar(stim, "soundSampleRate", default=so.DEFAULT_SOUND_SAMPLE_RATE))
    trigger = np.where(is_aud, start, np.nan)
    rising = None
    if sync is not None and session_date >= so.FIRST_SOUND_ON_SYNC_DATE:
        rising = sync_edges(sync, so.SOUND_LINE)
    nominal = np.full(n, sound_dur)
    daq = _nidaq.NidaqOnDemand(nidaq)
    a_on, a_off, _ = so.sound_times(
        trigger,
        nominal,
        so.sound_waveform_duration(nominal, rate),
        rising,
        nidaq_onset=lambda untimed: _rf_sound_nidaq(
            stim, untimed, tone, am, noise, sound_dur, rate, daq
        ),
    )
    a_end = np.where(np.isfinite(stop), stop, a_off + inter_frames / frame_rate)
    freq = np.where(np.isfinite(tone), tone, am)
    aud = pl.DataFrame(
        {
            "session_id": [session_id] * int(is_aud.sum()),
            "start_time": start[is_aud],
            "stop_time": a_end[is_aud],
            "stim_start_time": a_on[is_aud],
            "stim_stop_time": a_off[is_aud],
            "trial_index": np.flatnonzero(is_aud),
            "is_AM_noise": np.asarray(np.isfinite(am), dtype=bool)[is_aud],
            "is_white_noise": is_noise[is_aud],
            "is_pure_tone": np.asarray(np.isfinite(tone), dtype=bool)[is_aud],
            "freq": freq[is_aud],
        }
    )
    return vis, aud


def _rf_mapping(raw: RawSession) -> tuple[pl.DataFrame, pl.DataFrame]:
    sid = str(raw.session_id)
    sync = sync_data(raw)
    daq = _nidaq.NidaqOnDemand(lambda: _nidaq.nidaq_stream(raw))
    vis = [VIS_RF_MAPPING.empty()]
    aud = [AUD_RF_MAPPING.empty()]
    for path, ft in files_for(raw, "RFMapping"):
        v, a = build_rf_mapping(
            open_stim(path),
            ft,
            sync,
            session_id=sid,
            session_date=raw.session_id.date,
            nidaq=daq.get,
        )
        vis.append(VIS_RF_MAPPING.validate(v, source=path))
        aud.append(AUD_RF_MAPPING.validate(a, source=path))
    invalid = invalid_intervals(raw)
    return drop_invalid(pl.concat(vis), invalid), drop_invalid(pl.concat(aud), invalid)


@timed
def vis_rf_mapping(raw: RawSession) -> pl.DataFrame:
    """Return the visual RF-mapping trials (gratings and flashes) of every RFMapping file."""
    return _rf_mapping(raw)[0]


@timed
def aud_rf_mapping(raw: RawSession) -> pl.DataFrame:
    """Return the auditory RF-mapping trials (tones, AM noise) of every RFMapping file."""
    return _rf_mapping(raw)[1]


# ------------------------------------------------------------------------------ optotagging
def _wavelength(device: str) -> int:
    m = re.search(r"(\d{3})", device)
    if m:
        return int(m.group(1))
    if "led" in device.lower():
        return 470
    raise BadFormatError(
        f"cannot parse a wavelength from device {device!r}",
        field="optoDev",
        expected="a device name like laser_488",
    )


def build_optotagging(
    stim: StimFile,
    ft: FrameTimes,
    sync: SyncData | None,
    *,
    session_id: str,
    nidaq: _nidaq.NidaqSource = None,
    rig: RigLookup | None = None,
) -> pl.DataFrame:
    """Return the optotagging trials of one OptoTagging file.

    Power: the file's calibration polynomial at the trial voltage, else the rig's OptoGui power
    file of the device (`rig`), else the file's requested ``optoPower`` of the nearest
    ``optoVoltage``. Bregma: the file's bregma table matched to the trial's galvo voltage, else
    galvo -> bregma by the file's (else the rig's) bregma-galvo calibration.

    Onsets come from the laser's marker line; trials it does not time use the laser command on
    the NI-DAQ (`nidaq`: the recording, or a function returning it, called only when needed;
    method 2, docs/formats.md). When the marker line has no edges, only the trials the NI-DAQ times
    are rows (zero rows without an NI-DAQ recording: unrecorded); zero rows without sync.
    """
    path = stim.path
    device = str(stim_scalar(stim, "optoDev", default=DEFAULT_OPTO_DEVICE))
    device = device.strip("[]' ").split(",")[0].strip("' ") or DEFAULT_OPTO_DEVICE
    try:
        wavelength = _wavelength(device)
    except BadFormatError as exc:
        raise BadFormatError(
            exc.message, path=path, field="optoDev", expected=exc.expected
        ) from None
    if sync is None:
        return OPTOTAGGING.empty()
    line = so.OPTO_LINE_633 if wavelength == 633 else so.OPTO_LINE_488
    rising = sync_edges(sync, line)
    falling = sync_edges(sync, line, rising=False)
    line_dead = rising.size == 0
    daq = _nidaq.NidaqOnDemand(nidaq)
    if line_dead and daq.source_is_none:
        return OPTOTAGGING.empty()

    onset_frame = first_column(np.asarray(stim.array("trialOptoOnsetFrame"), dtype=np.float64))
    n = onset_frame.size
    flip = np.asarray(ft.flip, dtype=np.float64)
    dur = first_column(stim_float(stim, "trialOptoDur", n))
    voltage = first_column(stim_float(stim, "trialOptoVoltage", n))
    on_ramp = float(stim_scalar(stim, "optoOnRamp", default=0.0))
    off_ramp = float(stim_scalar(stim, "optoOffRamp", default=0.0))
    sin_freq = first_column(stim_float(stim, "trialOptoSinFreq", n, default=0.0))
    offset_v = stim_first_value(stim, "optoOffsetVoltage")
    rate = float(stim_scalar(stim, "optoSampleRate", default=so.DEFAULT_OPTO_SAMPLE_RATE))
    a_start, a_stop = so.opto_active_window(
        voltage,
        dur,
        np.zeros(n),
        np.full(n, on_ramp),
        np.full(n, off_ramp),
        sin_freq,
        offset_v,
        rate,
    )
    trigger = frames_at(flip, onset_frame, path=path, field="trialOptoOnsetFrame")

    def nidaq_starts(untimed: FloatArray) -> FloatArray | None:
        rec = daq.get()
        if rec is None:
            return None
        zeros = np.zeros(n)
        ramps = np.full(n, on_ramp), np.full(n, off_ramp)
        return _nidaq.opto_starts(
            rec, untimed, voltage, dur, zeros, *ramps, sin_freq, offset_v, sample_rate=rate
        )

    method2: so.Method2 = nidaq_starts
    keep = np.ones(n, dtype=bool)
    if line_dead:  # unrecorded unless the NI-DAQ times the trial (no flip-time rows)
        has_opto = np.isfinite(trigger) & np.isfinite(a_start)
        got = nidaq_starts(np.where(has_opto, trigger, np.nan))  # the line times no trial
        method2 = np.full(n, np.nan) if got is None else got
        keep = has_opto & np.isfinite(method2)
    onset, offset, _ = so.opto_times(
        trigger, a_start, a_stop, dur, rising, falling, nidaq_start=method2
    )

    interval = float(stim_scalar(stim, "optoInterval", default=60))
    frame_rate = float(stim_scalar(stim, "frameRate", default=60))
    analysis = min(MAX_ANALYSIS_PERIOD, 0.5 * interval / frame_rate)

    location, bx, by = _tagging_locations(stim, n, rig)
    power = _tagging_power(stim, voltage, None if rig is None else rig.power(device))
    df = pl.DataFrame(
        {
            "session_id": [session_id] * n,
            "start_time": onset - analysis,
            "stop_time": offset + analysis,
            "stim_start_time": onset,
            "stim_stop_time": offset,
            "baseline_start_time": onset - analysis,
            "baseline_stop_time": onset - CENSOR_PERIOD,
            "response_start_time": onset + CENSOR_PERIOD,
            "response_stop_time": offset - CENSOR_PERIOD,
            "trial_index": np.arange(n),
            "stim_name": np.where(np.nan_to_num(sin_freq) > 0, "sine", "square"),
            "nominal_duration": dur,
            "location": pl.Series(location, dtype=pl.String),
            "bregma_x": bx,
            "bregma_y": by,
            "power": power,
            "wavelength": np.full(n, wavelength),
        }
    )
    if not keep.all():
        df = df.filter(pl.Series(keep))
    return OPTOTAGGING.validate(df, source=path)


def _tagging_locations(
    stim: StimFile, n: int, rig: RigLookup | None = None
) -> tuple[list[str | None], FloatArray, FloatArray]:
    from npc_frames.opto_calibration import legacy_bregma

    labels: list[str | None] = [None] * n
    bx = np.full(n, np.nan)
    by = np.full(n, np.nan)
    if stim.has("trialOptoLabel"):
        labels = [probe_label(s) for s in stim.strs("trialOptoLabel")[:n]]
    if stim.has("trialGalvoVoltage") and stim.has("galvoVoltage"):
        trial_gv = np.asarray(stim.array("trialGalvoVoltage"), dtype=np.float64)[:n].reshape(n, -1)
        gv = np.asarray(stim.array("galvoVoltage"), dtype=np.float64).reshape(-1, trial_gv.shape[1])
        match = np.all(np.isclose(trial_gv[:, None, :], gv[None, :, :]), axis=2)  # (n, m)
        has = match.any(axis=1)
        row = np.argmax(match, axis=1)
        bregma_key = next((k for k in ("bregmaXY", "optoBregma") if stim.has(k)), None)
        cal_key = "bregmaGalvoCalibrationData"
        got = legacy_bregma(
            trial_gv[:, :2] if trial_gv.shape[1] >= 2 else trial_gv,  # one location per trial
            galvo_voltage=gv.reshape(-1, 2),
            bregma_xy=stim.array(bregma_key) if bregma_key else None,
            file_calibration=stim.group(cal_key) if stim.has(cal_key) else None,
            rig=rig,
            path=stim.path,
        )
        if got is not None:
            bx, by = got[0][:, 0], got[1][:, 0]
        if not stim.has("trialOptoLabel") and stim.has("optoTaggingLocs"):
            locs = stim.group("optoTaggingLocs")
            names = list(locs.get("label", []))
            if len(names) == gv.shape[0]:
                labels = [
                    probe_label(names[r]) if h else None for r, h in zip(row, has, strict=True)
                ]
    return labels, bx, by


def _tagging_power(
    stim: StimFile, voltage: FloatArray, rig_coeffs: FloatArray | None = None
) -> FloatArray:
    power = np.full(voltage.shape, np.nan)
    coeffs = opto_power_coefficients(stim)
    if coeffs is None:
        coeffs = rig_coeffs
    finite = np.isfinite(voltage)
    if coeffs is not None:
        power[finite] = np.polyval(coeffs, voltage[finite])
    elif stim.has("optoPower") and stim.has("optoVoltage"):
        p = np.asarray(stim.array("optoPower"), dtype=np.float64).ravel()
        v = np.asarray(stim.array("optoVoltage"), dtype=np.float64).ravel()
        if p.size == v.size and p.size:
            idx = np.argmin(np.abs(voltage[finite, None] - v[None, :]), axis=1)
            power[finite] = p[idx]
    rounded = np.round(power, 3)
    if np.all(np.isnan(power) | (np.abs(rounded - power) < 1e-3)):
        power = rounded
    return power


@timed
def optotagging(raw: RawSession) -> pl.DataFrame:
    """Return the optotagging trials of every OptoTagging file (zero rows if none/unrecorded)."""
    sid = str(raw.session_id)
    sync = sync_data(raw)
    daq = _nidaq.NidaqOnDemand(lambda: _nidaq.nidaq_stream(raw))
    frames = [OPTOTAGGING.empty()]
    for path, ft in files_for(raw, "OptoTagging"):
        from npc_frames.opto_calibration import RigLookup

        stim = open_stim(path)
        rig = RigLookup(raw, stim.strs("rigName")[0] if stim.has("rigName") else None)
        frames.append(build_optotagging(stim, ft, sync, session_id=sid, nidaq=daq.get, rig=rig))
    return drop_invalid(pl.concat(frames), invalid_intervals(raw))


# ------------------------------------------------------------------- RF-mapping sounds, method 2
#: noise band of RFMapping's AM / unmodulated noise, Hz
RF_NOISE_BAND = (2000.0, 20000.0)
#: Hanning edges of RFMapping sounds when the file has no soundHanningDur, s
RF_HANNING_DUR = 0.005


def _saved_sound_arrays(stim: StimFile, n: int) -> list[FloatArray | None]:
    """Return per trial the saved ``trialSoundArray`` waveform (None where absent/empty/zero)."""
    out: list[FloatArray | None] = [None] * n
    if not stim.has("trialSoundArray"):
        return out
    value = stim.get("trialSoundArray")  # BadFormatError naming the file and key if unreadable
    if isinstance(value, np.ndarray) and value.dtype != object and value.ndim == 2:
        rows: list[Any] = list(value)
    elif isinstance(value, (np.ndarray, list, tuple)) and (
        not isinstance(value, np.ndarray) or value.dtype == object
    ):
        rows = list(value)
    else:
        return out  # a scalar / empty placeholder: nothing saved
    for i, row in enumerate(rows[:n]):  # one entry per trial (hundreds), not per sample
        try:
            a = np.asarray(row, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            continue
        if a.size and np.all(np.isfinite(a)) and np.any(a != 0):
            out[i] = a
    return out


def _rf_sound_nidaq(
    stim: StimFile,
    trigger: FloatArray,
    tone: FloatArray,
    am: FloatArray,
    noise: FloatArray,
    sound_dur: float,
    rate: float,
    daq: _nidaq.NidaqOnDemand,
) -> FloatArray | None:
    """Return method-2 onsets of RFMapping sounds with a finite `trigger` (None: no NI-DAQ).

    Saved ``trialSoundArray`` waveforms are the templates where present; the other trials use
    the regenerated sound (module docstring). NaN where the NI-DAQ does not time the trial.
    """
    if not np.isfinite(trigger).any():
        return None
    rec = daq.get()
    if rec is None:
        return None
    n = trigger.size
    is_tone = np.isfinite(tone)
    saved = _saved_sound_arrays(stim, n)
    has_saved = np.isfinite(trigger) & np.array([a is not None for a in saved], dtype=bool)
    onset = np.full(n, np.nan)
    if has_saved.any():
        onset = _nidaq.saved_sound_onsets(
            rec, np.where(has_saved, trigger, np.nan), saved, tone, rate
        )
    is_am = ~is_tone & np.isfinite(am)
    # AM noise without its samples: only the periodic envelope could be matched (no seeds), which
    # is ambiguous by whole AM periods -> method 3 (module docstring)
    rest = np.isfinite(trigger) & ~has_saved & ~(is_am & (np.nan_to_num(am) > 0))
    if rest.any():
        band = np.full((n, 2), np.nan)
        band[:, : min(2, noise.shape[1])] = noise[:, :2]
        types = np.where(
            is_tone, "tone", np.where(is_am & (np.nan_to_num(am) > 0), "AM noise", "noise")
        )
        freq = np.where(
            is_tone[:, None],
            np.stack([tone, np.full(n, np.nan)], axis=1),
            np.where(is_am[:, None], np.array(RF_NOISE_BAND)[None, :], band),
        )
        am_freq = np.where(is_am & (np.nan_to_num(am) > 0), am, np.nan)
        hanning = stim_scalar(stim, "soundHanningDur", default=RF_HANNING_DUR)
        volume = stim_scalar(stim, "soundVolume", default=1.0)
        regen = _nidaq.sound_onsets(
            rec,
            np.where(rest, trigger, np.nan),
            [str(t) for t in types],
            freq,
            np.full(n, sound_dur),
            np.full(n, float(volume) if volume is not None else 1.0),
            am_freq,
            None,
            sample_rate=rate,
            hanning_dur=float(hanning) if hanning is not None else RF_HANNING_DUR,
        )
        onset = np.where(rest, regen, onset)
    return onset


# ---------------------------------------------------------------------------- luminance test
@timed
def luminance_test(raw: RawSession) -> pl.DataFrame:
    """Return the luminance-test trials (one per level) of every LuminanceTest file."""
    sid = str(raw.session_id)
    frames = [LUMINANCE_TEST.empty()]
    for path, ft in files_for(raw, "LuminanceTest"):
        stim = open_stim(path)
        start_frame = np.asarray(stim.array("trialStartFrame"), dtype=np.float64).ravel()
        n = start_frame.size
        per_level = int(stim_scalar(stim, "framesPerLevel"))
        flip = np.asarray(ft.flip, dtype=np.float64)
        level = stim_float(stim, "trialLevel", n)
        df = pl.DataFrame(
            {
                "session_id": [sid] * n,
                "start_time": frames_at(flip, start_frame, path=path, field="trialStartFrame"),
                "stop_time": frames_at(
                    flip, start_frame + per_level, path=path, field="framesPerLevel"
                ),
                "trial_index": np.arange(n),
                "level": np.round(level, 3),
            }
        )
        frames.append(LUMINANCE_TEST.validate(df, source=path))
    return drop_invalid(pl.concat(frames), invalid_intervals(raw))


# ----------------------------------------------------------------------------- invalid times
@timed
def invalid_times(raw: RawSession) -> pl.DataFrame:
    """Return the session's invalid-time intervals (manifest annotations, else invalid_times file).

    stop_time -1 in the source means the end of the sync recording (or of the last stim file).
    Zero rows (catalog status ``absent``) when the session has neither.
    """
    if "invalid_times" not in raw.annotations and not any(
        raw.metadata_paths.get(f"invalid_times.{ext}") for ext in ("yaml", "yml", "json")
    ):
        parts.report_absent_component("no invalid_times file")
    df = invalid_intervals(raw)
    df = df.with_columns(pl.lit(str(raw.session_id)).alias("session_id"))
    return INVALID_TIMES.validate(df.select(INVALID_TIMES.names), source=raw.root)
