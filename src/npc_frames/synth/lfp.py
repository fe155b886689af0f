"""Synthetic LFP content with known truth, and the pipeline's ``LFP_Subsampled`` asset.

Every probe channel carries, in µV on the sync clock ``t``:

* an oscillation set by the channel's structure (:data:`OSCILLATIONS`: theta in the hippocampus,
  spindle-band in thalamus, beta in striatum, slow waves of different frequency per cortical area)
  ``A·sin(2π f t + φ)`` with a per-channel phase;
* an evoked potential after every visual stimulus onset (:data:`EVOKING_STIMULI`) in visual
  structures (:data:`EVOKED`): a negative Gaussian deflection of the given amplitude peaking at
  the given latency, width :data:`EVOKED_WIDTH_S`;
* in the raw band only, a common-mode 60 Hz hum of :data:`COMMON_UV` on every channel (in and
  out of the brain), which the pipeline's median reference removes;
* the generator's smoothed noise (``synth.ephys``).

Channels outside the brain (and probes without annotation) carry no oscillation or evoked
potential. Structures come from :mod:`npc_frames.synth.anatomy` (the annotation files' truth).

:func:`write_lfp_subsampled` writes ``<raw asset name>_LFP_Subsampled_<date + 4 days>_08-00-00/``
with, per annotated probe, ``Probe<X>_lfp_subsampled.zarr`` (``traces_seg0`` int16 samples × 96 and
``channel_ids`` ``LFP1``, ``LFP5`` …), in SpikeInterface's layout (1 s chunks, Blosc zstd bit
shuffle): the subsampled model (every 4th channel, half the raw rate) plus noise, without the
common mode — what the pipeline's recipe returns from the raw band.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "COMMON_HZ",
    "COMMON_UV",
    "EVOKED",
    "EVOKED_WIDTH_S",
    "EVOKING_STIMULI",
    "OSCILLATIONS",
    "LfpModel",
    "lfp_model",
    "write_lfp_subsampled",
]

FloatArray = npt.NDArray[np.float64]

#: layer-stripped structure -> (frequency Hz, amplitude µV) of its oscillation
OSCILLATIONS: Mapping[str, tuple[float, float]] = {
    "DG": (8.0, 220.0),  # hippocampal theta
    "LP": (12.0, 70.0),  # thalamic spindle band
    "CP": (21.0, 45.0),  # striatal beta
    "MOs": (3.0, 130.0),
    "ACAd": (5.0, 100.0),
    "MOp": (2.5, 110.0),
    "VISp": (4.0, 90.0),
}
#: structure -> (latency s, amplitude µV) of the negative potential evoked by a visual stimulus
EVOKED: Mapping[str, tuple[float, float]] = {"VISp": (0.045, 160.0), "LP": (0.030, 90.0)}
#: standard deviation of the evoked deflection, s
EVOKED_WIDTH_S = 0.010
#: stimulus names that evoke potentials: the task's visual stimuli and the RF-mapping gratings and flashes
EVOKING_STIMULI: tuple[str, ...] = ("vis1", "vis2", "rf_grating", "rf_flash")
#: common-mode hum on every raw channel
COMMON_HZ = 60.0
COMMON_UV = 30.0
#: asset time stamp: the pipeline ran four days after the recording
ASSET_DELAY = datetime.timedelta(days=4)
ASSET_TIME = datetime.time(8, 0, 0)
#: noise added to the asset's samples (µV rms, white)
ASSET_NOISE_UV = 8.0
_GOLDEN = 0.6180339887498949


@dataclasses.dataclass(frozen=True)
class LfpModel:
    """The LFP content of one probe's channels (see the module docstring)."""

    letter: str
    #: per channel: layer-stripped structure, ``out of brain`` or None (no annotation)
    structure: tuple[str | None, ...]
    frequency_hz: FloatArray
    amplitude_uv: FloatArray
    phase_rad: FloatArray
    evoked_latency_s: FloatArray
    evoked_amplitude_uv: FloatArray
    #: sync times of the evoking stimulus onsets
    onsets: FloatArray

    def uv(
        self,
        t: FloatArray,
        channels: npt.NDArray[np.int64] | None = None,
        *,
        common: bool = True,
    ) -> npt.NDArray[np.float32]:
        """Return µV (len(t) × channels) of the model at sync times `t` (all channels by default;
        without the common-mode hum when `common` is False)."""
        ch = np.arange(len(self.structure)) if channels is None else np.asarray(channels)
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros((t.size, ch.size), dtype=np.float32)
        freq, amp, phase = self.frequency_hz[ch], self.amplitude_uv[ch], self.phase_rad[ch]
        for f in np.unique(freq[amp > 0]):  # a handful of distinct frequencies per probe
            cols = np.flatnonzero((freq == f) & (amp > 0))
            w = 2 * np.pi * f * t
            # A·sin(w + φ) = A·cos φ·sin w + A·sin φ·cos w: two columns, not one sin per channel
            basis = np.column_stack([np.sin(w), np.cos(w)]).astype(np.float32)
            coef = np.vstack([amp[cols] * np.cos(phase[cols]), amp[cols] * np.sin(phase[cols])])
            out[:, cols] += basis @ coef.astype(np.float32)
        lat, eamp = self.evoked_latency_s[ch], self.evoked_amplitude_uv[ch]
        for latency in np.unique(lat[eamp > 0]):
            cols = np.flatnonzero((lat == latency) & (eamp > 0))
            wave = evoked_course(t, self.onsets + latency)
            out[:, cols] -= wave[:, None].astype(np.float32) * eamp[cols].astype(np.float32)
        if common:
            out += (COMMON_UV * np.sin(2 * np.pi * COMMON_HZ * t)).astype(np.float32)[:, None]
        return out

    def truth(self) -> dict[str, Any]:
        """Return the model as JSON-serialisable lists (per channel) and constants."""
        return {
            "structure": list(self.structure),
            "frequency_hz": self.frequency_hz.tolist(),
            "amplitude_uv": self.amplitude_uv.tolist(),
            "phase_rad": self.phase_rad.tolist(),
            "evoked_latency_s": self.evoked_latency_s.tolist(),
            "evoked_amplitude_uv": self.evoked_amplitude_uv.tolist(),
            "evoked_width_s": EVOKED_WIDTH_S,
            "evoking_stimuli": list(EVOKING_STIMULI),
            "onsets": self.onsets.tolist(),
            "common_hz": COMMON_HZ,
            "common_uv": COMMON_UV,
        }


def evoked_course(t: FloatArray, peaks: FloatArray) -> FloatArray:
    """Return Σ over `peaks` of exp(−½((t − peak)/width)²) at sorted-or-not times `t`."""
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros(t.size)
    if t.size == 0 or np.size(peaks) == 0:
        return out
    order = np.argsort(t, kind="stable")
    ts = t[order]
    reach = 6 * EVOKED_WIDTH_S
    lo = np.searchsorted(ts, np.asarray(peaks) - reach)
    hi = np.searchsorted(ts, np.asarray(peaks) + reach)
    counts = hi - lo
    if counts.sum() == 0:
        return out
    which = np.repeat(np.arange(lo.size), counts)
    idx = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    vals = np.exp(-0.5 * ((ts[idx] - np.asarray(peaks)[which]) / EVOKED_WIDTH_S) ** 2)
    acc = np.zeros(t.size)
    np.add.at(acc, idx, vals)
    out[order] = acc
    return out


def lfp_model(letter: str, n_channels: int, onsets: Sequence[float]) -> LfpModel:
    """Return the LFP model of probe `letter` (structures from the synthetic annotations)."""
    from npc_frames.synth.anatomy import channel_structures

    structure = channel_structures(letter, n_channels)
    freq = np.full(n_channels, np.nan)
    amp = np.zeros(n_channels)
    lat = np.full(n_channels, np.nan)
    eamp = np.zeros(n_channels)
    for c, s in enumerate(structure):  # 384 channels, once per probe
        if s is not None and s in OSCILLATIONS:
            freq[c], amp[c] = OSCILLATIONS[s]
        if s is not None and s in EVOKED:
            lat[c], eamp[c] = EVOKED[s]
    k = np.arange(n_channels)
    phase = (2 * np.pi * ((k + 1 + "ABCDEF".index(letter) * 7) * _GOLDEN % 1.0)).astype(np.float64)
    return LfpModel(
        letter=letter,
        structure=tuple(structure),
        frequency_hz=freq,
        amplitude_uv=amp,
        phase_rad=phase,
        evoked_latency_s=lat,
        evoked_amplitude_uv=eamp,
        onsets=np.sort(np.asarray(onsets, dtype=np.float64)),
    )


def write_lfp_subsampled(
    out_dir: Path,
    asset_name: str,
    *,
    date: datetime.date,
    models: Mapping[str, LfpModel],
    streams: Mapping[str, Mapping[str, Any]],
    bit_volts_uv: float,
    rng: np.random.Generator,
    chunk_seconds: float = 1.0,
) -> dict[str, Any]:
    """Write the ``LFP_Subsampled`` asset of the annotated probes; return its truth.

    `streams` maps a probe letter to its LFP stream truth (``rate_on_sync``,
    ``start_time_on_sync``, ``num_samples``): sample k of the asset is at ``start + k / (rate /
    2)``, and there are ``num_samples // 2`` samples.
    """
    import zarr
    from numcodecs import Blosc

    when = datetime.datetime.combine(date + ASSET_DELAY, ASSET_TIME)
    asset = out_dir / f"{asset_name}_LFP_Subsampled_{when:%Y-%m-%d_%H-%M-%S}"
    asset.mkdir(parents=True)
    probes: dict[str, Any] = {}
    for letter, model in sorted(models.items()):
        if all(s is None for s in model.structure):
            continue  # the pipeline skips unannotated probes
        st = streams[letter]
        rate = float(st["rate_on_sync"]) / 2
        n = int(st["num_samples"]) // 2
        channels = np.arange(0, len(model.structure), 4)
        path = asset / f"Probe{letter}_lfp_subsampled.zarr"
        group = zarr.open_group(str(path), mode="w")
        chunk = round(chunk_seconds * rate)
        traces = group.create_dataset(
            "traces_seg0",
            shape=(n, channels.size),
            chunks=(chunk, channels.size),
            dtype="int16",
            compressor=Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE),
        )
        step = chunk * 60
        for i in range(0, n, step):  # a minute at a time
            k = np.arange(i, min(n, i + step))
            t = float(st["start_time_on_sync"]) + k / rate
            uv = model.uv(t, channels, common=False)
            uv += rng.normal(0.0, ASSET_NOISE_UV, uv.shape).astype(np.float32)
            traces[i : i + k.size] = np.clip(np.round(uv / bit_volts_uv), -32768, 32767)
        group.create_dataset(
            "channel_ids", data=np.array([f"LFP{c + 1}" for c in channels]), compressor=None
        )
        probes[letter] = {
            "zarr": str(path),
            "num_samples": n,
            "rate": rate,
            "start_time": float(st["start_time_on_sync"]),
            "channels": channels.tolist(),
            "noise_uv": ASSET_NOISE_UV,
        }
    return {"path": str(asset), "probes": probes}
