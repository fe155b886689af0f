"""NWB stimulus objects: grating and sound templates, opto stimulus sites and laser commands, and
the derived unit characterisations in ``/analysis``.

Called by :func:`npc_frames.nwb.to_nwb` (``stimulus=True`` / ``derived=True``); docs/nwb.md
("Stimulus templates") describes the layout and docs/formats.md ("Stimulus parameters of the
stim files") the stored parameters read here.

* **Gratings** (:func:`grating_frames`): one ``ImageSeries`` in ``/stimulus/templates`` per
  distinct grating shown by a DynamicRouting1 or RFMapping file (orientation, start phase,
  contrast, frames on screen), rendered with numpy from the file's parameters the way the task's
  ``GratingStim`` draws them: luminance ``contrast · cos(2π(sf·x′ − phase))`` (``sin`` texture) or
  its sign (``sqr``), ``x′`` the pixel's position along the grating's axis rotated clockwise by the
  orientation, blended with the background colour through the edge mask (``circle`` or
  ``raisedCos`` with its fringe width). A drifting grating (``gratingTF`` > 0) advances its phase
  by ``TF / frameRate`` per frame, so its template holds every frame it was on screen; a static one
  holds one frame (shown for the number of frames in the description). Values are psychopy colours
  (−1…1) stored as uint8 ``round((v + 1) / 2 · 255)``, gzip-compressed, before the monitor's
  spherical warp (which is a property of the rig's display, not of the stimulus).
* **Sounds**: one ``TimeSeries`` per distinct waveform (at ``soundSampleRate``): the saved
  ``trialSoundArray`` when the file saved it, else the waveform rebuilt by the task's recipe
  (:func:`npc_frames.components._nidaq.sound_waveform`). Tones of equal parameters share one
  template; seeded noise is distinct per seed. Noise that cannot be rebuilt (no seed) has none.
* **Opto**: one ``OptogeneticStimulusSite`` per (light source, target label) of the ``trials`` and
  ``optotagging`` frames, on a ``Device`` per light source; with the raw session's NI-DAQ copy
  of the laser command, an ``OptogeneticSeries`` per site holding the command around each of its
  trials, converted to watts by the stim file's power calibration.
* **Analysis**: ``unit_responses``, ``vis_rf_maps``, ``aud_rf_maps`` and ``opto_tagging`` as
  DynamicTables (list columns ragged).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames._log import timed
from npc_frames.errors import BadFormatError, NpcFramesError, SchemaError

if TYPE_CHECKING:
    from pynwb import NWBFile

    from npc_frames.paths import RawSession
    from npc_frames.readers.stim import StimFile

logger = logging.getLogger(__name__)

__all__ = [
    "DERIVED_TABLES",
    "GratingParams",
    "SoundTemplate",
    "add_derived",
    "add_opto_sites",
    "add_stimulus_templates",
    "grating_frames",
    "grating_templates",
    "sound_templates",
]

FloatArray = npt.NDArray[np.float64]

#: derived components written to /analysis when present
DERIVED_TABLES: tuple[str, ...] = ("unit_responses", "vis_rf_maps", "aud_rf_maps", "opto_tagging")
DERIVED_DESCRIPTIONS: dict[str, str] = {
    "unit_responses": "per unit and stimulus: baseline and response rates, paired test, AUC, "
    "latency and context modulation (npc_frames.responses)",
    "vis_rf_maps": "per unit: mean rate per grating position of the visual RF mapping, fitted 2-D "
    "Gaussian and shuffle test (npc_frames.rf_maps); list columns ordered as grid_x/grid_y",
    "aud_rf_maps": "per unit: mean rate per tone frequency of the auditory RF mapping and best "
    "frequency (npc_frames.rf_maps)",
    "opto_tagging": "per unit: response to optotagging pulses and is_opto_tagged decision "
    "(npc_frames.optotag)",
}
#: TaskControl monitor defaults, used only when a file lacks the key
DEFAULT_MON_WIDTH_CM = 52.0
DEFAULT_MON_DISTANCE_CM = 15.3
DEFAULT_MON_SIZE_PIX = (1920, 1200)
DEFAULT_FRAME_RATE = 60.0
#: RFMapping draws its gratings with psychopy's sine texture (the script hard-codes tex='sin')
RF_GRATING_TYPE = "sin"
#: grating templates are compressed (a square-wave frame compresses ~50x)
_IMAGE_COMPRESSION: dict[str, Any] = {"compression": "gzip", "compression_opts": 4}
#: seconds of laser command kept before and after each opto trial in an OptogeneticSeries
OPTO_PAD = 0.05
#: samples per second kept of the NI-DAQ laser command (every k-th sample): twice the task's
#: command update rate (``optoSampleRate``, 2 kHz), so every step of the command is kept
OPTO_COMMAND_RATE = 4000.0


# ----------------------------------------------------------------------------------- gratings
@dataclasses.dataclass(frozen=True)
class GratingParams:
    """One distinct grating as the task drew it (sizes in screen pixels, orientation in degrees
    clockwise from vertical bars, phase in cycles, colours in psychopy units −1…1)."""

    size_pix: float
    sf_cycles_per_pix: float
    ori: float
    phase: float
    contrast: float
    n_frames: int
    tf: float
    frame_rate: float
    tex: str = "sqr"
    mask: str | None = "raisedCos"
    fringe_width: float = 0.08
    background: float = 0.0

    @property
    def is_drifting(self) -> bool:
        """Return True if the phase advances from frame to frame."""
        return self.tf > 0


def pixels_per_degree(mon_width_cm: float, mon_distance_cm: float, width_pix: float) -> float:
    """Return TaskControl's pixels per degree: half the screen width over its half-angle."""
    return 0.5 * width_pix / math.degrees(math.atan(0.5 * mon_width_cm / mon_distance_cm))


def grating_frames(p: GratingParams) -> npt.NDArray[np.uint8]:
    """Return the frames (n, height, width) uint8 of one grating, ``round((v + 1) / 2 · 255)``.

    One frame for a static grating; `n_frames` frames (phase + k·tf/frame_rate) for a drifting
    one. Pixel (i, j) of an n × n image (n = round(size)) has its centre at x = j + ½ − n/2,
    y = n/2 − i − ½ pixels from the stimulus centre (y up, as on screen).
    """
    n = max(round(p.size_pix), 1)
    c = np.arange(n, dtype=np.float64) + 0.5 - n / 2
    x, y = c[None, :], -c[:, None]
    theta = np.deg2rad(p.ori)
    along = x * np.cos(theta) - y * np.sin(theta)  # position along the grating's axis, pixels
    r = np.hypot(x, y) / (p.size_pix / 2)
    if p.mask is None or p.mask in ("none", "None"):
        alpha = np.ones((n, n))
    elif p.mask == "circle":
        alpha = (r < 1).astype(np.float64)
    elif p.mask == "raisedCos":
        f = p.fringe_width
        alpha = np.where(r < 1 - f, 1.0, 0.0)
        edge = (r >= 1 - f) & (r <= 1)
        alpha = np.where(edge, 0.5 * (1 + np.cos(np.pi * (r - (1 - f)) / f)), alpha)
    else:
        raise SchemaError(
            f"grating mask {p.mask!r} is not supported",
            field="gratingEdge",
            expected="'raisedCos', 'circle' or None",
        )
    if p.tex not in ("sqr", "sin"):
        raise SchemaError(
            f"grating texture {p.tex!r} is not supported",
            field="gratingType",
            expected="'sqr' or 'sin'",
        )
    k = np.arange(p.n_frames if p.is_drifting else 1, dtype=np.float64)
    phases = 2 * np.pi * (p.phase + k * (p.tf / p.frame_rate))
    arg = 2 * np.pi * p.sf_cycles_per_pix * along
    # cos(arg − φ) = cos(arg)·cos φ + sin(arg)·sin φ: two products per pixel and frame instead of
    # a cosine (the frames of a drifting grating differ only in φ)
    cos_arg, sin_arg = np.cos(arg), np.sin(arg)
    gain, offset = alpha * p.contrast, (1 - alpha) * p.background
    out = np.empty((k.size, n, n), dtype=np.uint8)
    wave = np.empty((n, n))
    for j, ph in enumerate(phases):  # one frame at a time (≤ stimFrames), each vectorized
        np.multiply(cos_arg, math.cos(ph), out=wave)
        wave += sin_arg * math.sin(ph)
        if p.tex == "sqr":
            wave = np.where(wave > 0, 1.0, -1.0)
        v = gain * wave + offset
        out[j] = np.round((np.clip(v, -1, 1) + 1) * 127.5)
    return out


def _scalar(stim: StimFile, key: str, default: float | None) -> float | None:
    from npc_frames.components._task import stim_scalar

    try:
        value = stim_scalar(stim, key, default=default)
    except NpcFramesError:
        return default
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else default
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _text(stim: StimFile, key: str, default: str | None) -> str | None:
    if not stim.has(key):
        return default
    value = stim.get(key)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, list):
        value = value[0] if value else default
    return None if value is None else str(value)


def _n_trials(stim: StimFile, key: str) -> int:
    """Return the number of completed trials: len(trialEndFrame), else len(`key`)."""
    if stim.has("trialEndFrame"):
        return int(np.asarray(stim.array("trialEndFrame")).size)
    return int(np.asarray(stim.array(key)).shape[0])


def _per_trial(stim: StimFile, key: str, n: int, default: float = np.nan) -> FloatArray:
    """Return the first n values of a per-trial numeric key (first column if 2-D)."""
    if not stim.has(key):
        return np.full(n, default)
    a = np.asarray(stim.array(key), dtype=np.float64)
    if a.ndim == 0:
        return np.full(n, float(a))
    if a.ndim > 1:
        a = a.reshape(a.shape[0], -1)[:, 0]
    out = np.full(n, np.nan)
    m = min(n, a.size)
    out[:m] = a[:m]
    return out


def _screen(stim: StimFile) -> tuple[float, float, float]:
    """Return (pixels per degree, frame rate, background colour) of a stim file."""
    width = _scalar(stim, "monWidth", DEFAULT_MON_WIDTH_CM)
    dist = _scalar(stim, "monDistance", DEFAULT_MON_DISTANCE_CM)
    size = np.asarray(stim.array("monSizePix")).ravel() if stim.has("monSizePix") else None
    width_pix = float(size[0]) if size is not None and size.size else DEFAULT_MON_SIZE_PIX[0]
    ppd = pixels_per_degree(float(width or DEFAULT_MON_WIDTH_CM), float(dist or 15.3), width_pix)
    rate = _scalar(stim, "frameRate", DEFAULT_FRAME_RATE) or DEFAULT_FRAME_RATE
    bg = stim.array("monBackgroundColor") if stim.has("monBackgroundColor") else np.zeros(1)
    bg_arr = np.asarray(bg, dtype=np.float64).ravel()
    background = float(bg_arr[0]) if bg_arr.size and np.isfinite(bg_arr[0]) else 0.0
    return ppd, float(rate), background


def grating_templates(stim: StimFile, script: str) -> list[tuple[GratingParams, list[int]]]:
    """Return each distinct grating of a DynamicRouting1 / RFMapping file with its trial indices.

    DynamicRouting1: trials with visual frames (``trialVisStimFrames`` > 0, else a ``vis`` stimulus
    name) of a ``grating`` visual stimulus; RFMapping: trials with a finite ``trialGratingOri``.
    Empty when the file shows no grating.
    """
    ppd, rate, background = _screen(stim)
    mask = _text(stim, "gratingEdge", "raisedCos")
    fringe = _scalar(stim, "gratingEdgeBlurWidth", 0.08) or 0.08
    tf = _scalar(stim, "gratingTF", 0.0) or 0.0
    size_deg = _scalar(stim, "gratingSize", None)
    sf_deg = _scalar(stim, "gratingSF", None)
    if script == "DynamicRouting1":
        if (_text(stim, "visStimType", "grating") or "grating") != "grating":
            return []
        if not stim.has("trialGratingOri"):
            return []
        n = _n_trials(stim, "trialGratingOri")
        ori = _per_trial(stim, "trialGratingOri", n)
        phase = _per_trial(stim, "trialGratingPhase", n, default=0.0)
        contrast = _per_trial(stim, "trialVisStimContrast", n, default=1.0)
        if stim.has("trialVisStimFrames"):
            frames = _per_trial(stim, "trialVisStimFrames", n, default=0.0)
        else:
            names = stim.strs("trialStim")[:n] if stim.has("trialStim") else [""] * n
            frames = np.array([30.0 if "vis" in s else 0.0 for s in names])
        shown = np.isfinite(ori) & np.isfinite(frames) & (frames > 0)
        tex = _text(stim, "gratingType", "sqr") or "sqr"
        size_pix = float(int((size_deg or 50.0) * ppd))  # the task truncates to whole pixels
    elif script == "RFMapping":
        if not stim.has("trialGratingOri"):
            return []
        n = _n_trials(stim, "trialGratingOri")
        ori = _per_trial(stim, "trialGratingOri", n)
        phase = np.zeros(n)  # each RFMapping grating starts at phase 0
        gc = _scalar(stim, "gratingContrast", 1.0)
        contrast = np.full(n, 1.0 if gc is None else gc)
        frames = np.full(n, _scalar(stim, "stimFrames", 15.0) or 15.0)
        shown = np.isfinite(ori)
        tex = RF_GRATING_TYPE
        size_pix = (size_deg or 20.0) * ppd
    else:
        return []
    if size_deg is None or sf_deg is None:
        raise BadFormatError(
            "stim file shows gratings but lacks their size or spatial frequency",
            path=stim.path,
            field="gratingSize/gratingSF",
            expected="scalar gratingSize (deg) and gratingSF (cycles/deg)",
        )
    idx = np.flatnonzero(shown)
    keys = np.stack([ori[idx], np.nan_to_num(phase[idx]), contrast[idx], frames[idx]], axis=1)
    if not idx.size:
        return []
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    out = []
    for k, (o, ph, con, nf) in enumerate(uniq):  # a handful of distinct gratings per file
        params = GratingParams(
            size_pix=size_pix,
            sf_cycles_per_pix=sf_deg / ppd,
            ori=float(o),
            phase=float(ph),
            contrast=float(con),
            n_frames=int(nf),
            tf=float(tf),
            frame_rate=rate,
            tex=tex,
            mask=mask,
            fringe_width=float(fringe),
            background=background,
        )
        out.append((params, idx[inverse.ravel() == k].tolist()))
    return out


def _num(v: float) -> str:
    return f"{v:g}".replace("-", "m")


def grating_template_name(script: str, p: GratingParams) -> str:
    """Return the NWB name of a grating template (its distinguishing parameters)."""
    name = f"{script}_grating_ori{_num(p.ori)}_phase{_num(p.phase)}_contrast{_num(p.contrast)}"
    if p.is_drifting:
        name += f"_tf{_num(p.tf)}_{p.n_frames}frames"
    return name


def _grating_images(script: str, p: GratingParams, trials: Sequence[int]) -> Any:
    """Return an ``Images`` container: one GrayscaleImage per frame of the grating, in order."""
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb.base import ImageReferences, Images
    from pynwb.image import GrayscaleImage

    frames = grating_frames(p)
    shown = (
        f"{p.n_frames} frames drifting at {p.tf:g} cycles/s (one image per frame, "
        f"{p.frame_rate:g} frames/s)"
        if p.is_drifting
        else f"static, one image shown for {p.n_frames} frames at {p.frame_rate:g} frames/s"
    )
    description = (
        f"{script} grating as drawn before the monitor warp: {p.tex} texture, orientation "
        f"{p.ori:g} deg clockwise from vertical bars, start phase {p.phase:g} cycles, contrast "
        f"{p.contrast:g}, {p.sf_cycles_per_pix:.6g} cycles/pixel, {p.size_pix:.6g} pixels wide, "
        f"{p.mask} edge (fringe {p.fringe_width:g}) on background {p.background:g}; {shown}. "
        f"Pixel value = round((psychopy colour + 1) / 2 * 255). Shown in {len(trials)} trials "
        f"(trial_index in the file: {','.join(str(t) for t in trials)})"
    )
    images = [
        GrayscaleImage(
            name=f"frame{k:03d}",
            data=H5DataIO(frames[k], **_IMAGE_COMPRESSION),
            description=f"frame {k} (phase {p.phase + k * p.tf / p.frame_rate:g} cycles)",
        )
        for k in range(frames.shape[0])  # up to stimFrames images per template
    ]
    return Images(
        name=grating_template_name(script, p),
        images=images,
        description=description,
        order_of_images=ImageReferences(name="order_of_images", data=images),
    )


# -------------------------------------------------------------------------------------- sounds
@dataclasses.dataclass(frozen=True)
class SoundTemplate:
    """One distinct sound waveform of a stim file and the trials that played it."""

    name: str
    waveform: FloatArray
    sample_rate: float
    description: str
    trials: tuple[int, ...]
    saved: bool


def _sound_params(stim: StimFile, script: str) -> dict[str, Any] | None:
    """Return per-trial sound parameters (type, freq (n, 2), dur, volume, AM, seed) or None."""
    if script == "DynamicRouting1":
        if not stim.has("trialSoundType"):
            return None
        n = _n_trials(stim, "trialSoundType")
        types = (stim.strs("trialSoundType") + [""] * n)[:n]
        freq = np.full((n, 2), np.nan)
        if stim.has("trialSoundFreq"):
            f = np.asarray(stim.array("trialSoundFreq"), dtype=np.float64)
            f = f.reshape(f.shape[0], -1) if f.ndim > 1 else f[:, None]
            m = min(n, f.shape[0])
            freq[:m, : min(2, f.shape[1])] = f[:m, :2]
        seed = _per_trial(stim, "trialSoundSeed", n)
        return {
            "n": n,
            "type": types,
            "freq": freq,
            "dur": _per_trial(stim, "trialSoundDur", n),
            "volume": _per_trial(stim, "trialSoundVolume", n),
            "am": _per_trial(stim, "trialSoundAM", n),
            "seed": seed,
        }
    if script == "RFMapping":
        tone_key = next((k for k in ("trialToneFreq", "trialSoundFreq") if stim.has(k)), None)
        if tone_key is None and not stim.has("trialAMNoiseFreq"):
            return None
        key = tone_key or "trialAMNoiseFreq"
        n = (
            _n_trials(stim, key)
            if not stim.has("stimStartFrame")
            else int(np.asarray(stim.array("stimStartFrame")).size)
        )
        tone = _per_trial(stim, tone_key, n) if tone_key else np.full(n, np.nan)
        am = _per_trial(stim, "trialAMNoiseFreq", n)
        is_tone, is_am = np.isfinite(tone), np.isfinite(am)
        freq = np.full((n, 2), np.nan)
        freq[is_tone, 0] = tone[is_tone]
        freq[is_am & ~is_tone] = (2000.0, 20000.0)  # RFMapping's AM-noise band
        rf_seed = _scalar(stim, "soundRandomSeed", None)
        dur = _scalar(stim, "soundDur", None)
        vol = _scalar(stim, "soundVolume", 1.0)
        return {
            "n": n,
            "type": [
                "tone" if t else ("AM noise" if a else "")
                for t, a in zip(is_tone, is_am & ~is_tone, strict=True)
            ],
            "freq": freq,
            "dur": np.full(n, np.nan if dur is None else dur),
            "volume": np.full(n, 1.0 if vol is None else vol),
            "am": np.where(is_am & ~is_tone, am, np.nan),
            "seed": np.full(n, np.nan if rf_seed is None else rf_seed),
        }
    return None


def sound_templates(stim: StimFile, script: str) -> list[SoundTemplate]:
    """Return each distinct sound of a DynamicRouting1 / RFMapping file with its trial indices.

    The saved ``trialSoundArray`` of a trial is its waveform when present; otherwise the waveform
    is rebuilt from the trial's parameters (tones: frequency, duration, volume, Hanning edges or
    AM; noise: also the seed). Trials whose sound can be neither read nor rebuilt get none.
    """
    from npc_frames.components._nidaq import sound_waveform
    from npc_frames.components.intervals import _saved_sound_arrays

    p = _sound_params(stim, script)
    if p is None:
        return []
    n = int(p["n"])
    rate = _scalar(stim, "soundSampleRate", 48000.0) or 48000.0
    hanning = _scalar(stim, "soundHanningDur", 0.005)
    hanning = 0.005 if hanning is None else hanning
    saved = _saved_sound_arrays(stim, n)
    by_key: dict[str, list[int]] = {}
    waves: dict[str, tuple[FloatArray, str, bool]] = {}
    for i in range(n):  # per trial (hundreds), each a vectorized waveform
        kind = p["type"][i]
        if not kind:
            continue
        am = float(p["am"][i])
        f0, f1 = (float(v) for v in p["freq"][i])
        seed = p["seed"][i]
        has_seed = np.isfinite(seed)
        uses_seed = kind in ("noise", "AM noise")
        desc = (
            f"{script} {kind}: "
            + (f"{f0:g} Hz" if kind == "tone" else f"band {f0:g}-{f1:g} Hz")
            + (f", AM {am:g} Hz" if np.isfinite(am) and am > 0 else "")
            + f", {float(p['dur'][i]):g} s, volume {float(p['volume'][i]):.6g}"
            + (f", seed {int(seed)}" if uses_seed and has_seed else "")
        )
        wave = saved[i]
        from_file = wave is not None
        if wave is None:
            wave = sound_waveform(
                kind,
                sample_rate=rate,
                dur=float(p["dur"][i]),
                hanning_dur=hanning,
                volume=float(p["volume"][i]),
                freq=[f0, f1],
                am=am,
                seed=int(seed) if (uses_seed and has_seed) else None,
            )
        if wave is None:
            continue
        wave32 = np.ascontiguousarray(wave, dtype=np.float32)
        key = hashlib.sha1(wave32.tobytes()).hexdigest()
        by_key.setdefault(key, []).append(i)
        if key not in waves:
            waves[key] = (np.asarray(wave, dtype=np.float64), desc, from_file)
    out = []
    for k, (key, trials) in enumerate(sorted(by_key.items(), key=lambda kv: kv[1][0])):
        wave, desc, from_file = waves[key]
        out.append(
            SoundTemplate(
                name=f"{script}_sound{k}",
                waveform=wave,
                sample_rate=float(rate),
                description=desc,
                trials=tuple(trials),
                saved=from_file,
            )
        )
    return out


def _sound_series(t: SoundTemplate) -> Any:
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import TimeSeries

    source = "saved trialSoundArray" if t.saved else "rebuilt by the task's recipe"
    return TimeSeries(
        name=t.name,
        data=H5DataIO(t.waveform.astype(np.float32), compression="gzip", compression_opts=4),
        unit="fraction of the sound card's full scale",
        rate=t.sample_rate,
        starting_time=0.0,
        description=f"{t.description} ({source}); played in {len(t.trials)} trials",
        comments=f"trial_index: {','.join(str(i) for i in t.trials)}",
    )


# ------------------------------------------------------------------------------ the templates
#: scripts whose stim files hold gratings and/or sounds
TEMPLATE_SCRIPTS = ("DynamicRouting1", "RFMapping")


@timed
def add_stimulus_templates(nwb: NWBFile, raw: RawSession) -> dict[str, int]:
    """Return the number of templates added per kind after adding the session's grating and sound
    templates to ``nwb.stimulus_template`` (reads the raw session's stim files)."""
    from npc_frames.readers.stim import open_stim

    counts = {"grating": 0, "sound": 0}
    for script in TEMPLATE_SCRIPTS:
        for k, path in enumerate(sorted(raw.stim_paths_for(script))):
            prefix = script if k == 0 else f"{script}{k + 1}"  # several files of one script
            with open_stim(path) as stim:
                for params, trials in grating_templates(stim, script):
                    nwb.add_stimulus_template(_grating_images(prefix, params, trials))
                    counts["grating"] += 1
                for t in sound_templates(stim, script):
                    t = dataclasses.replace(t, name=t.name.replace(script, prefix, 1))
                    nwb.add_stimulus_template(_sound_series(t))
                    counts["sound"] += 1
    logger.debug("stimulus templates: %s", counts)
    return counts


# ---------------------------------------------------------------------------------------- opto
def _opto_rows(frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Return one row per opto trial: table, trial, device wavelength, label, bregma x/y, start,
    stop (sync s), from the ``trials`` and ``optotagging`` frames."""
    parts = []
    schema = pl.Schema(
        {
            "table": pl.String,
            "trial": pl.Int64,
            "wavelength": pl.Int64,
            "label": pl.String,
            "bregma_x": pl.Float64,
            "bregma_y": pl.Float64,
            "start": pl.Float64,
            "stop": pl.Float64,
            "power": pl.Float64,
        }
    )
    t = frames.get("trials")
    if t is not None and t.height and {"opto_start_time", "opto_wavelength"} <= set(t.columns):
        bx = (
            pl.col("opto_location_bregma_x").list.first()
            if "opto_location_bregma_x" in t.columns
            and isinstance(t.schema["opto_location_bregma_x"], pl.List)
            else pl.lit(None, pl.Float64)
        )
        by = (
            pl.col("opto_location_bregma_y").list.first()
            if "opto_location_bregma_y" in t.columns
            and isinstance(t.schema["opto_location_bregma_y"], pl.List)
            else pl.lit(None, pl.Float64)
        )
        parts.append(
            t.filter(
                pl.col("opto_start_time").is_not_nan() & pl.col("opto_wavelength").is_not_null()
            )
            .with_row_index("_i")
            .select(
                pl.lit("trials").alias("table"),
                (pl.col("trial_index") if "trial_index" in t.columns else pl.col("_i"))
                .cast(pl.Int64)
                .alias("trial"),
                pl.col("opto_wavelength").cast(pl.Int64).alias("wavelength"),
                (pl.col("opto_label") if "opto_label" in t.columns else pl.lit(None))
                .cast(pl.String)
                .fill_null("opto")
                .alias("label"),
                bx.cast(pl.Float64).alias("bregma_x"),
                by.cast(pl.Float64).alias("bregma_y"),
                pl.col("opto_start_time").cast(pl.Float64).alias("start"),
                pl.col("opto_stop_time").cast(pl.Float64).alias("stop"),
                (pl.col("opto_power") if "opto_power" in t.columns else pl.lit(None))
                .cast(pl.Float64)
                .alias("power"),
            )
        )
    o = frames.get("optotagging")
    if o is not None and o.height and "wavelength" in o.columns:
        parts.append(
            o.with_row_index("_i").select(
                pl.lit("optotagging").alias("table"),
                (pl.col("trial_index") if "trial_index" in o.columns else pl.col("_i"))
                .cast(pl.Int64)
                .alias("trial"),
                pl.col("wavelength").cast(pl.Int64).alias("wavelength"),
                (pl.col("location") if "location" in o.columns else pl.lit(None))
                .cast(pl.String)
                .fill_null("optotagging")
                .alias("label"),
                *(
                    (pl.col(c) if c in o.columns else pl.lit(None)).cast(pl.Float64).alias(c)
                    for c in ("bregma_x", "bregma_y")
                ),
                pl.col("stim_start_time").cast(pl.Float64).alias("start"),
                pl.col("stim_stop_time").cast(pl.Float64).alias("stop"),
                (pl.col("power") if "power" in o.columns else pl.lit(None))
                .cast(pl.Float64)
                .alias("power"),
            )
        )
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat([p.cast(schema) for p in parts]).filter(pl.col("wavelength").is_not_null())


def device_name(wavelength: int) -> str:
    """Return the NWB device name of a light source: ``laser_<wavelength>`` (the task's name)."""
    return f"laser_{int(wavelength)}"


def site_name(wavelength: int, label: str) -> str:
    """Return the NWB name of the stimulus site of a light source and target label."""
    return f"{device_name(wavelength)}_{label}".replace("/", "_").replace(" ", "_")


@timed
def add_opto_sites(
    nwb: NWBFile, frames: Mapping[str, pl.DataFrame], raw: RawSession | None = None
) -> dict[str, Any]:
    """Return the OptogeneticStimulusSites added (name -> site), one per light source and target
    label of the opto trials; with `raw`, also each site's laser command as an OptogeneticSeries
    where the NI-DAQ copy exists (see :func:`add_opto_series`)."""
    from pynwb.ogen import OptogeneticStimulusSite

    rows = _opto_rows(frames)
    if rows.is_empty():
        return {}
    sites: dict[str, Any] = {}
    groups = (
        rows.group_by("wavelength", "label", maintain_order=True)
        .agg(
            pl.col("bregma_x").drop_nans().drop_nulls().unique().sort(),
            pl.col("bregma_y").drop_nans().drop_nulls().unique().sort(),
            pl.col("table").unique().sort(),
            pl.len().alias("n"),
        )
        .sort("wavelength", "label")
    )
    for wl, label, bx, by, tables, n in groups.iter_rows():
        dev = device_name(wl)
        if dev not in nwb.devices:
            nwb.create_device(name=dev, description=f"{wl} nm laser (task device name {dev})")
        where = (
            f"bregma x {', '.join(f'{v:g}' for v in bx)} mm, y {', '.join(f'{v:g}' for v in by)} mm"
            if bx and by
            else "coordinates not recorded"
        )
        name = site_name(wl, label)
        site = OptogeneticStimulusSite(
            name=name,
            device=nwb.devices[dev],
            description=f"target {label!r} of {dev} ({where}); {n} trials in {', '.join(tables)}",
            excitation_lambda=float(wl),
            location=str(label),
        )
        nwb.add_ogen_site(site)
        sites[name] = site
    recorded = add_opto_series(nwb, rows, sites, raw) if raw is not None else set()
    named = rows.with_columns(
        pl.concat_str(  # = site_name(wavelength, label)
            pl.lit("laser_"),
            pl.col("wavelength").cast(pl.String),
            pl.lit("_"),
            pl.col("label").str.replace_all("[/ ]", "_"),
        ).alias("_site")
    )
    for key, part in named.partition_by("_site", as_dict=True, maintain_order=True).items():
        site = str(key[0])
        if site not in recorded:
            nwb.add_stimulus(_nominal_series(site, sites[site], part))
    return sites


def _nominal_series(name: str, site: Any, rows: pl.DataFrame) -> Any:
    """Return the OptogeneticSeries of a site's trials as timed: the trial's power (W) from its
    onset to its offset, 0 W otherwise (two samples per trial: power at onset, 0 at offset)."""
    from pynwb.ogen import OptogeneticSeries

    rows = rows.filter(pl.col("start").is_not_nan() & pl.col("stop").is_not_nan()).sort("start")
    start, stop = rows["start"].to_numpy(), rows["stop"].to_numpy()
    power_w = np.nan_to_num(rows["power"].to_numpy().astype(np.float64), nan=np.nan) * 1e-3
    times = np.stack([start, stop], axis=1).ravel()
    data = np.stack([power_w, np.zeros_like(power_w)], axis=1).ravel()
    return OptogeneticSeries(
        name=f"{name}_trials",
        data=data,
        timestamps=times,
        site=site,
        description=(
            "light power of each trial at this site as the trial tables time it (sync clock): "
            "the trial's power at its onset and 0 W at its offset, constant in between (sample "
            "and hold); NaN where the power is unknown. Not a recording of the laser command."
        ),
    )


def _power_coefficients(raw: RawSession, wavelength: int) -> FloatArray | None:
    """Return the volts -> mW polynomial of a light source from the session's stim files."""
    from npc_frames.readers.stim import open_stim

    dev = device_name(wavelength)
    for script in ("OptoTagging", "DynamicRouting1"):
        for path in raw.stim_paths_for(script):
            with open_stim(path) as stim:
                if not stim.has("optoPowerCalibrationData"):
                    continue
                cal = stim.group("optoPowerCalibrationData")
                cal = cal.get(dev, cal) if isinstance(cal.get(dev), dict) else cal
                poly = cal.get("poly coefficients")
                if poly is not None:
                    return np.asarray(poly, dtype=np.float64).ravel()
    return None


def add_opto_series(
    nwb: NWBFile, rows: pl.DataFrame, sites: Mapping[str, Any], raw: RawSession
) -> set[str]:
    """Return the sites given an OptogeneticSeries: per site, the NI-DAQ laser command around
    each of its trials ([start − 50 ms, stop + 50 ms], every k-th sample for ~4 kHz), in watts by
    the power calibration.

    Nothing is added when the session has no NI-DAQ recording, when it used more than one light
    source (the command channel cannot be attributed), or without a power calibration. Command
    volts at or below the calibration's zero-power point give 0 W.
    """
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb.ogen import OptogeneticSeries

    from npc_frames.components._nidaq import OPTO_CHANNEL, nidaq_stream

    added: set[str] = set()
    if rows.is_empty() or rows["wavelength"].n_unique() != 1:
        return added
    rec = nidaq_stream(raw)
    if rec is None:
        return added
    wl = int(rows["wavelength"][0])
    coef = _power_coefficients(raw, wl)
    if coef is None:
        logger.info("no power calibration for %s: no OptogeneticSeries", device_name(wl))
        return added
    bit_volts = _nidaq_bit_volts(raw, rec.folder_name)
    for label, part in rows.partition_by("label", as_dict=True, maintain_order=True).items():
        start = part["start"].to_numpy() - OPTO_PAD
        stop = part["stop"].to_numpy() + OPTO_PAD
        ok = np.isfinite(start) & np.isfinite(stop)
        k0 = np.ceil((start[ok] - rec.start_time) * rec.rate_on_sync).astype(np.int64)
        k1 = np.floor((stop[ok] - rec.start_time) * rec.rate_on_sync).astype(np.int64) + 1
        inside = (k0 >= 0) & (k1 <= rec.num_samples) & (k1 > k0)
        k0, k1 = k0[inside], k1[inside]
        if not k0.size:
            continue
        order = np.argsort(k0)
        k0, k1 = k0[order], k1[order]
        k1 = np.maximum.accumulate(k1)
        starts = np.maximum(k0, np.concatenate(([0], k1[:-1])))  # overlapping windows once
        lengths = np.maximum(k1 - starts, 0)
        idx = np.repeat(starts - np.cumsum(np.concatenate(([0], lengths[:-1]))), lengths)
        idx = idx + np.arange(int(lengths.sum()))
        idx = idx[:: max(int(rec.rate_on_sync // OPTO_COMMAND_RATE), 1)]
        if not idx.size:
            continue
        volts = np.asarray(rec.data[idx, OPTO_CHANNEL], dtype=np.float64) * bit_volts
        zero = _zero_power_volts(coef)
        mw = np.where(volts > zero, np.polyval(coef, volts), 0.0)
        name = site_name(wl, str(label[0] if isinstance(label, tuple) else label))
        series = OptogeneticSeries(
            name=f"{name}_command",
            data=H5DataIO(mw.astype(np.float32) * np.float32(1e-3), compression="gzip"),
            timestamps=H5DataIO(rec.times(idx), compression="gzip"),
            site=sites[name],
            description=(
                f"laser command of {device_name(wl)} recorded by the NI-DAQ (channel "
                f"{OPTO_CHANNEL}, every {max(int(rec.rate_on_sync // OPTO_COMMAND_RATE), 1)}th "
                f"sample), {OPTO_PAD * 1e3:g} ms before to {OPTO_PAD * 1e3:g} ms after "
                "each trial at this site, converted from volts by the power calibration "
                f"polynomial {', '.join(f'{c:.6g}' for c in coef)} (mW); sync clock"
            ),
        )
        nwb.add_stimulus(series)
        added.add(name)
    return added


def _zero_power_volts(coef: FloatArray) -> float:
    """Return the volts of zero power: the smallest real root of the power polynomial (the
    calibration fits power rising from that point; 0 if it has no real root)."""
    roots = np.roots(coef)
    real = roots[np.isclose(roots.imag, 0)].real
    return float(real.min()) if real.size else 0.0


def _nidaq_bit_volts(raw: RawSession, folder_name: str) -> float:
    """Return volts per bit of the NI-DAQ's laser-command channel (structure.oebin)."""
    from npc_frames.alignment import session_clocks
    from npc_frames.components._nidaq import OPTO_CHANNEL

    stream = session_clocks(raw).streams[folder_name]
    bv = getattr(stream, "bit_volts", ())
    if len(bv) > OPTO_CHANNEL:
        return float(bv[OPTO_CHANNEL])
    raise BadFormatError(
        "NI-DAQ stream lacks per-channel bit_volts",
        path=folder_name,
        field="bit_volts",
        expected=f"at least {OPTO_CHANNEL + 1} channels in structure.oebin",
    )


# ------------------------------------------------------------------------------------ analysis
def derived_frames(
    session_id: str,
    cache: str | os.PathLike[str] | None,
    *,
    compute: bool,
    names: Iterable[str] = DERIVED_TABLES,
) -> dict[str, pl.DataFrame]:
    """Return the session's derived components `names` (unit_responses, RF maps, opto_tagging)
    from the cache; with `compute`, those missing or stale are computed and cached first."""
    from npc_frames import optotag, responses, rf_maps
    from npc_frames.ids import SessionId

    scans: dict[str, tuple[Callable[..., Any], Callable[..., pl.LazyFrame]]] = {
        "unit_responses": (responses.unit_responses, responses.scan_unit_responses),
        "vis_rf_maps": (rf_maps.vis_rf_maps, rf_maps.scan_vis_rf_maps),
        "aud_rf_maps": (rf_maps.aud_rf_maps, rf_maps.scan_aud_rf_maps),
        "opto_tagging": (optotag.opto_tagging, optotag.scan_opto_tagging),
    }
    sid = str(SessionId.parse(session_id))
    out = {}
    wanted = set(names)
    for name, (compute_fn, scan_fn) in scans.items():
        if name not in wanted:
            continue
        if compute:
            compute_fn(cache, [sid])
        try:
            df = scan_fn(cache).filter(pl.col("session_id") == sid).collect()
        except (NpcFramesError, OSError, pl.exceptions.PolarsError):
            continue  # the cache holds none of this component
        if df.height:
            out[name] = df
    return out


def add_derived(nwb: NWBFile, frames: Mapping[str, pl.DataFrame]) -> list[str]:
    """Return the names of the derived tables added to ``/analysis`` (those present in `frames`,
    zero-row tables skipped); list columns become ragged columns."""
    from hdmf.common import DynamicTable

    from npc_frames.nwb_tables import build_table

    added = []
    for name in DERIVED_TABLES:
        df = frames.get(name)
        if df is None or df.height == 0:
            continue
        nwb.add_analysis(
            build_table(DynamicTable, df, name, name=name, description=DERIVED_DESCRIPTIONS[name])
        )
        added.append(name)
    return added
