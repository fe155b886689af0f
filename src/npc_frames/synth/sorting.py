"""Synthetic spike sorting output: Kilosort 2.5 / phy folders with AIND-style metrics (FORMATS §11).

One function, :func:`make_sorting`, simulates the spike trains of one probe and writes them where a
sorted upload keeps them (``<root>/sorting/<AP stream folder name>/``) in the Kilosort/phy layout of
FORMATS §11.1, plus the ``quality_metrics.csv`` / ``template_metrics.csv`` tables (index column
``cluster_id``, columns of §11.2) and a dense ``templates_average.npy`` (units × samples × 384, µV)
whose peak channel and peak-to-peak amplitude are the truth of the §11.3 item-2 rule.

Everything is vectorized over spikes (Python loops only over the few units that need special
treatment, and over fixed-size chunks of spikes when deriving the per-spike files, which bounds the
temporaries); a 400-unit, 90-minute probe (~8 M spikes) takes ~2 s of CPU to simulate and write.

Decisions (documented here because readers of these files depend on them):

* ``spike_times.npy`` holds uint64 sample indices **relative to the probe's first continuous
  sample** (0 = ``sample_numbers.npy[0]``), on the probe's own AP clock; it is sorted by time.
  Arrays are written 1-D (``(n_spikes,)``), as phy re-saves them; Kilosort itself writes
  ``(n_spikes, 1)`` — readers should ``ravel()`` either.
* ``amplitudes.npy`` (float64 per spike) holds the per-spike amplitude in µV, the same numbers as
  the truth's ``spike_amplitude`` (both rounded to a power-of-two quantum, ~1e-4 µV, so that they
  are exact in float32); real Kilosort writes a template scaling factor here instead.
* Cluster ids are non-contiguous, as after phy curation: some templates have no spikes any more and
  merged clusters get new ids above the largest template id, their spikes carrying either source
  template in ``spike_templates.npy``.
* Firing rates are log-normal (Buzsáki & Mizuseki 2014, *Nat Rev Neurosci* 15:264): median
  2 Hz, σ = 1.15 in natural-log units (5–95 % range 0.3–13 Hz), clipped to 0.05–60 Hz, plus ~2 %
  of units with only 1–10 spikes. The clipped mean is ~3.8 Hz; with partial presence (below) a
  unit fires ~3.6 Hz on average, so the full-scale ``make_session`` case (90-minute task inside a
  ~118-minute recording, 6 × 400 units) has ~60 M spikes, like a recorded Dynamic Routing
  session. (An earlier log-uniform 0.1–50 Hz draw had a mean of ~8 Hz and twice the spikes.)
* Every unit has at least one spike; a few units (~2 %) have very few (1–10) spikes.
* The refractory period is 1.5 ms plus one sample (46 samples at 30 kHz), so a clean unit has
  exactly zero ISIs below 1.5 ms; "contaminated" units get doublets 8–40 samples after some spikes,
  so their ``isi_violations_ratio`` is computed from real violations. Some units are present only
  during part of the recording, so their ``presence_ratio`` (60 s bins) is low.
* Stimulus responses (only when :func:`simulate_spike_trains` is given :class:`StimulusOnsets`):
  ~25 % of units are visual (vis1/vis2 and RF gratings/flashes; latency 40–80 ms, +10–40 Hz for
  50–150 ms, about half of them prefer vis1 strongly), ~15 % auditory (sound1/sound2 and RF
  tones/AM noise; latency 10–30 ms), ~5 % of the units firing ≥ 5 Hz are suppressed (60–95 % of
  their spikes removed for 100–300 ms after stimuli of one modality) and the rest do not respond.
  Units with very few spikes never respond. A third of the excited units have a gain of 1.3–2 on
  trials whose block rewards their modality. Added spikes are Poisson counts per unit × trial
  (drawn as one Poisson count per unit × (stimulus, context) class, each spike then assigned to a
  uniformly chosen trial of its class — the same distribution) at uniform times in the response
  window; a partially present unit responds only while present. An added spike closer than the
  refractory period to any other spike of its unit is dropped, so responses create no ISI
  violation and the designed doublets stay the only ones. Profiles, response spikes and
  suppression draw from a child generator, so a unit's profile does not depend on its spikes and
  the first group of units (all units of a small probe) keeps the same baseline spike samples
  with or without stimuli.
* Tuning (when the onsets carry positions / tone frequencies): a visual unit's response to an
  RF-mapping grating is its peak rate times a 2-D Gaussian of the grating centre's distance from
  the unit's receptive-field centre (drawn uniformly over the RFMapping grid's extent,
  ±800 × ±440 px from screen centre, in the task's own grating coordinates; σ 150–300 px, about
  one grid step of ~320 px); an auditory unit's response to an RF-mapping tone is its peak rate
  times a Gaussian in octaves from its best frequency (log-uniform 4–16 kHz, the RFMapping tone
  range; σ 0.25–0.6 octave). Task stimuli, flashes and AM noise are untuned.
* Opto-tagged units (~10 %, drawn from the otherwise unresponsive ones) respond to ``opto``
  onsets (laser pulse starts): added spikes fall uniformly in a short window 2–8 ms after the
  pulse onset (the truth latency) and 1–4 ms wide (jitter = width / √12), with 0.3–0.9 expected
  spikes per pulse (the reliability), as for ChR2-expressing cells driven directly by light.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import logging
import types
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames.errors import ParameterError

__all__ = [
    "AUDITORY_STIMULI",
    "OPTO_STIMULI",
    "QUALITY_METRIC_COLUMNS",
    "RESPONSE_TABLE_SCHEMA",
    "TEMPLATE_METRIC_COLUMNS",
    "VISUAL_STIMULI",
    "NpyAppender",
    "ProbeSorting",
    "ResponseProfiles",
    "SpikeTrains",
    "StimulusOnsets",
    "chunk_slices",
    "draw_firing_rates",
    "draw_response_profiles",
    "make_sorting",
    "simulate_spike_trains",
]

logger = logging.getLogger(__name__)

# Kilosort 2/2.5 template length in samples (FORMATS §11.1)
KILOSORT_TEMPLATE_SAMPLES = 61
# SpikeInterface default waveform window: 1 ms before + 2 ms after the peak at 30 kHz (AIND pipeline)
AVERAGE_TEMPLATE_SAMPLES = 90
AVERAGE_TEMPLATE_PEAK_INDEX = 30
# refractory period of simulated neurons; ISIs below it count as violations (SpikeInterface default)
REFRACTORY_S = 1.5e-3
# SpikeInterface presence_ratio bin width
PRESENCE_BIN_S = 60.0
# channels farther than this from a unit's peak site carry no template signal (sparse templates)
TEMPLATE_RADIUS_UM = 100.0
# firing-rate distribution (see the module docstring): log-normal, clipped
RATE_MEDIAN_HZ = 2.0
RATE_SIGMA_LN = 1.15
MIN_RATE_HZ = 0.05
MAX_RATE_HZ = 60.0
# spikes per chunk when deriving per-spike arrays: bounds temporaries to a few tens of MB
CHUNK_SPIKES = 1 << 21
# stimulus labels each modality responds to: DynamicRouting1 stim_name (FORMATS §5.2) and the
# RFMapping stimulus kinds (make_session labels RF trials with these names)
VISUAL_STIMULI: tuple[str, ...] = ("vis1", "vis2", "rf_grating", "rf_flash")
AUDITORY_STIMULI: tuple[str, ...] = ("sound1", "sound2", "rf_tone", "rf_am_noise")
OPTO_STIMULI: tuple[str, ...] = ("opto",)  # OptoTagging laser pulse onsets
MODALITY_NAMES: tuple[str, ...] = ("", "vis", "aud", "opto")  # codes 0 (none), 1, 2, 3
# response profile draws (see the module docstring); latencies after stimulus onset
VISUAL_FRACTION = 0.25
AUDITORY_FRACTION = 0.15
SUPPRESSED_FRACTION = 0.05
SUPPRESSED_MIN_RATE_HZ = 5.0
CONTEXT_GAIN_FRACTION = 1 / 3
LATENCY_S: dict[int, tuple[float, float]] = {1: (0.040, 0.080), 2: (0.010, 0.030)}
RESPONSE_DURATION_S = (0.050, 0.150)
SUPPRESSION_DURATION_S = (0.100, 0.300)
ADDED_RATE_HZ = (10.0, 40.0)
# tuning (module docstring): RF centres over the RFMapping grid's extent (grating centres of a 20°
# grating on a 1920 × 1200 px screen lie within ±800 × ±440 px), σ about one grid step; best
# frequencies over the RFMapping tone range
RF_EXTENT_PX = (800.0, 440.0)
RF_SIGMA_PX = (150.0, 300.0)
BEST_FREQ_HZ = (4000.0, 16000.0)
FREQ_SIGMA_OCT = (0.25, 0.6)
# opto-tagged units: fraction, first-spike window after the pulse onset, spikes per pulse
OPTO_FRACTION = 0.10
OPTO_LATENCY_S = (0.002, 0.008)
OPTO_WINDOW_S = (0.001, 0.004)
OPTO_RELIABILITY = (0.3, 0.9)

QUALITY_METRIC_COLUMNS: tuple[str, ...] = (
    "amplitude_cutoff",
    "amplitude_cv_median",
    "amplitude_cv_range",
    "amplitude_median",
    "drift_ptp",
    "drift_std",
    "drift_mad",
    "firing_range",
    "firing_rate",
    "isi_violations_ratio",
    "isi_violations_count",
    "num_spikes",
    "presence_ratio",
    "rp_contamination",
    "rp_violations",
    "sliding_rp_violation",
    "snr",
    "sync_spike_2",
    "sync_spike_4",
    "sync_spike_8",
    "d_prime",
    "isolation_distance",
    "l_ratio",
    "silhouette",
    "nn_hit_rate",
    "nn_miss_rate",
)
TEMPLATE_METRIC_COLUMNS: tuple[str, ...] = (
    "exp_decay",
    "half_width",
    "num_negative_peaks",
    "num_positive_peaks",
    "peak_to_valley",
    "peak_trough_ratio",
    "recovery_slope",
    "repolarization_slope",
    "spread",
    "velocity_above",
    "velocity_below",
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class SpikeTrains:
    """Simulated spikes of several units, sorted by unit then sample.

    ``unit_index[i]`` is the unit (0..n_units-1) of spike i, ``samples[i]`` its sample index on the
    probe clock (0 = first continuous sample), ``amplitudes[i]`` its amplitude in µV.
    """

    unit_index: npt.NDArray[np.int32]
    samples: IntArray
    amplitudes: npt.NDArray[np.float32]
    rates_hz: FloatArray
    n_units: int
    n_samples: int
    sample_rate: float
    responses: ResponseProfiles | None = None  # stimulus responses (None: no stimuli given)

    @property
    def counts(self) -> IntArray:
        """Return the number of spikes of each unit (spikes are grouped by unit: no bincount)."""
        bounds = np.searchsorted(self.unit_index, np.arange(self.n_units + 1, dtype=np.int32))
        return np.diff(bounds).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class ProbeSorting:
    """Truth of one probe's sorting output (units in ascending ``cluster_id`` order)."""

    folder: Path
    cluster_ids: IntArray
    peak_channel: IntArray
    amplitude: FloatArray  # µV, peak-to-peak of templates_average on the peak channel
    spike_counts: IntArray
    spikes: SpikeTrains
    channels: tuple[IntArray, ...]  # per unit: channels whose average template is not all zero

    @property
    def n_units(self) -> int:
        """Return the number of units."""
        return int(self.cluster_ids.size)


#: columns of the per-(unit, stimulus) response table (:meth:`ResponseProfiles.table`, the ephys
#: truth's ``unit_responses``); one row per unit and stimulus label it responds to
RESPONSE_TABLE_SCHEMA: dict[str, type[pl.DataType]] = {
    "unit_index": pl.Int64,  # unit row (probe-local here; the ephys truth's global unit row)
    "stim_name": pl.String,
    "modality": pl.String,  # "vis" | "aud"
    "is_suppressed": pl.Boolean,
    "latency_s": pl.Float64,  # response window: [onset + latency, onset + latency + duration)
    "duration_s": pl.Float64,
    "rate_change_hz": pl.Float64,  # added rate outside the rewarded context; < 0 when suppressed
    "context_gain": pl.Float64,  # multiplies the added rate on trials rewarding the modality
    "suppression": pl.Float64,  # fraction of baseline spikes removed in the window (suppressed)
    "baseline_rate_hz": pl.Float64,  # the unit's drawn firing rate without stimuli
    "n_spikes_changed": pl.Int64,  # spikes added (removed, negative) over all its trials
    # tuning (NaN where it does not apply): rf_grating rate = peak · exp(-d² / 2σ²), d the
    # distance (task grating px) of the grating centre from (rf_x, rf_y); rf_tone rate = peak ·
    # exp(-Δ² / 2σ²), Δ the octaves from best_freq_hz
    "rf_x": pl.Float64,
    "rf_y": pl.Float64,
    "rf_sigma": pl.Float64,
    "best_freq_hz": pl.Float64,
    "freq_sigma_oct": pl.Float64,
}


@dataclasses.dataclass(frozen=True)
class StimulusOnsets:
    """Stimulus onsets on one probe's clock, for :func:`simulate_spike_trains`.

    ``samples[i]`` is onset i's sample index on the probe clock (0 = first continuous sample),
    ``label[i]`` its index into ``names`` and ``context[i]`` the modality its block rewards
    (0 none / unknown, 1 vis, 2 aud: :data:`MODALITY_NAMES`).
    """

    samples: IntArray
    label: IntArray
    context: npt.NDArray[np.int8]
    names: tuple[str, ...]
    #: per onset: grating centre (x, y) in task pixels (NaN: none) — RF-mapping gratings
    position: FloatArray | None = None
    #: per onset: tone frequency in Hz (NaN: none) — RF-mapping tones
    frequency_hz: FloatArray | None = None

    def __post_init__(self) -> None:
        n = np.shape(self.samples)[0] if np.ndim(self.samples) == 1 else -1
        if n < 0 or np.shape(self.label) != (n,) or np.shape(self.context) != (n,):
            raise ParameterError(
                "stimulus onsets, labels and contexts differ in shape",
                field="stimuli",
                expected="three 1-D arrays of equal length",
            )
        if self.position is not None and np.shape(self.position) != (n, 2):
            raise ParameterError(
                "stimulus positions do not match the onsets",
                field="stimuli.position",
                expected=f"shape ({n}, 2)",
            )
        if self.frequency_hz is not None and np.shape(self.frequency_hz) != (n,):
            raise ParameterError(
                "stimulus frequencies do not match the onsets",
                field="stimuli.frequency_hz",
                expected=f"shape ({n},)",
            )

    def features(self) -> FloatArray:
        """Return per onset (x, y, frequency_hz), NaN where not given (shape (n, 3))."""
        n = self.samples.size
        pos = self.position if self.position is not None else np.full((n, 2), np.nan)
        freq = self.frequency_hz if self.frequency_hz is not None else np.full(n, np.nan)
        return np.column_stack([pos, freq]).astype(np.float64)
        if n and not (int(np.min(self.label)) >= 0 and int(np.max(self.label)) < len(self.names)):
            raise ParameterError(
                "stimulus label index out of range", field="stimuli.label", expected="< len(names)"
            )


@dataclasses.dataclass(frozen=True)
class ResponseProfiles:
    """Per-unit stimulus response parameters of one probe (drawn by :func:`draw_response_profiles`).

    ``modality`` codes index :data:`MODALITY_NAMES` (0: unresponsive). ``rate_hz[u, k]`` is the rate
    added in unit u's window after an onset of ``names[k]`` (0: no response), multiplied by
    ``context_gain[u]`` on trials whose block rewards the unit's modality. Suppressed units lose a
    fraction ``suppression[u]`` of their spikes in the window after every stimulus of their
    modality. ``n_changed[u, k]`` counts the spikes actually added (removed, negative); it is filled
    in while the trains are simulated.
    """

    names: tuple[str, ...]
    modality: npt.NDArray[np.int8]
    suppressed: npt.NDArray[np.bool_]
    latency_s: FloatArray
    duration_s: FloatArray
    rate_hz: FloatArray
    context_gain: FloatArray
    suppression: FloatArray
    baseline_rate_hz: FloatArray
    n_changed: IntArray
    rf_x: FloatArray | None = None  # tuning (see RESPONSE_TABLE_SCHEMA); NaN: untuned unit
    rf_y: FloatArray | None = None
    rf_sigma: FloatArray | None = None
    best_freq_hz: FloatArray | None = None
    freq_sigma_oct: FloatArray | None = None

    def _tuning_column(self, name: str) -> FloatArray:
        values = getattr(self, name)
        return values if values is not None else np.full(self.modality.size, np.nan)

    def tuning(self, label: str, features: FloatArray) -> FloatArray:
        """Return the (units, onsets) factor scaling ``rate_hz`` for `label` at `features`.

        `features` is (n, 3): grating x, y (px) and tone frequency (Hz), as
        :meth:`StimulusOnsets.features`. Only ``rf_grating`` and ``rf_tone`` are tuned.
        """
        n_u, n = self.modality.size, features.shape[0]
        out = np.ones((n_u, n))
        if label == "rf_grating":
            cx, cy = self._tuning_column("rf_x"), self._tuning_column("rf_y")
            sig = self._tuning_column("rf_sigma")
            d2 = (features[None, :, 0] - cx[:, None]) ** 2 + (
                features[None, :, 1] - cy[:, None]
            ) ** 2
            g = np.exp(-d2 / (2 * sig[:, None] ** 2))
            out = np.where(np.isfinite(g), g, 1.0)
        elif label == "rf_tone":
            bf, sig = self._tuning_column("best_freq_hz"), self._tuning_column("freq_sigma_oct")
            octs = np.log2(features[None, :, 2]) - np.log2(bf[:, None])
            g = np.exp(-(octs**2) / (2 * sig[:, None] ** 2))
            out = np.where(np.isfinite(g), g, 1.0)
        return out

    def responds(self) -> npt.NDArray[np.bool_]:
        """Return (units, names) booleans: True where unit u responds to stimulus k."""
        excited = self.rate_hz > 0
        labels = np.array([_modality_of(name) for name in self.names], dtype=np.int8)
        suppressed = self.suppressed[:, None] & (labels[None, :] == self.modality[:, None])
        return excited | suppressed

    def table(self, unit_offset: int = 0) -> pl.DataFrame:
        """Return one row per (unit, stimulus) response (:data:`RESPONSE_TABLE_SCHEMA`)."""
        unit, k = np.nonzero(self.responds())
        sup = self.suppressed[unit]
        rate = np.where(
            sup, -self.suppression[unit] * self.baseline_rate_hz[unit], self.rate_hz[unit, k]
        )
        return pl.DataFrame(
            {
                "unit_index": unit.astype(np.int64) + unit_offset,
                "stim_name": [self.names[i] for i in k.tolist()],
                "modality": [MODALITY_NAMES[m] for m in self.modality[unit].tolist()],
                "is_suppressed": sup,
                "latency_s": self.latency_s[unit],
                "duration_s": self.duration_s[unit],
                "rate_change_hz": rate,
                "context_gain": self.context_gain[unit],
                "suppression": self.suppression[unit],
                "baseline_rate_hz": self.baseline_rate_hz[unit],
                "n_spikes_changed": self.n_changed[unit, k],
                **{c: self._tuning_column(c)[unit] for c in _TUNING_COLUMNS},
            },
            schema=RESPONSE_TABLE_SCHEMA,
        )


_TUNING_COLUMNS = ("rf_x", "rf_y", "rf_sigma", "best_freq_hz", "freq_sigma_oct")


def empty_response_table() -> pl.DataFrame:
    """Return a zero-row response table (:data:`RESPONSE_TABLE_SCHEMA`)."""
    return pl.DataFrame(schema=RESPONSE_TABLE_SCHEMA)


def _modality_of(name: str) -> int:
    """Return the modality code of a stimulus label (0 for labels no unit responds to)."""
    if name in VISUAL_STIMULI:
        return 1
    if name in AUDITORY_STIMULI:
        return 2
    return 3 if name in OPTO_STIMULI else 0


def draw_response_profiles(
    rng: np.random.Generator,
    names: Sequence[str],
    rates_hz: FloatArray,
    eligible: npt.NDArray[np.bool_],
) -> ResponseProfiles:
    """Return response profiles of ``rates_hz.size`` units for stimuli ``names``.

    A unit is visual with probability :data:`VISUAL_FRACTION`, auditory with
    :data:`AUDITORY_FRACTION`, suppressed with :data:`SUPPRESSED_FRACTION` (only when its baseline
    rate is at least :data:`SUPPRESSED_MIN_RATE_HZ`, so the dip is measurable), else unresponsive;
    units not ``eligible`` (those with very few spikes) never respond. The draws do not depend on
    ``names``, so a unit's profile is the same whichever stimuli a session has.
    """
    n = int(rates_hz.size)
    kind = rng.uniform(size=n)
    is_vis = kind < VISUAL_FRACTION
    is_aud = (kind >= VISUAL_FRACTION) & (kind < VISUAL_FRACTION + AUDITORY_FRACTION)
    is_sup = (
        (kind >= VISUAL_FRACTION + AUDITORY_FRACTION)
        & (kind < VISUAL_FRACTION + AUDITORY_FRACTION + SUPPRESSED_FRACTION)
        & (rates_hz >= SUPPRESSED_MIN_RATE_HZ)
    )
    sup_modality = np.where(rng.uniform(size=n) < 0.5, 1, 2)
    # opto-tagged units come from the otherwise unresponsive range of `kind`
    lo_opto = VISUAL_FRACTION + AUDITORY_FRACTION + SUPPRESSED_FRACTION
    is_opto = (kind >= lo_opto) & (kind < lo_opto + OPTO_FRACTION)
    modality = np.select([is_vis, is_aud, is_sup, is_opto], [1, 2, sup_modality, 3], 0).astype(
        np.int8
    )
    modality[~eligible] = 0
    is_sup &= eligible
    excited = (modality > 0) & ~is_sup

    u_lat = rng.uniform(size=n)
    lo = np.array([np.nan, LATENCY_S[1][0], LATENCY_S[2][0], np.nan])[modality]
    hi = np.array([np.nan, LATENCY_S[1][1], LATENCY_S[2][1], np.nan])[modality]
    latency = lo + u_lat * (hi - lo)
    duration = np.where(
        is_sup,
        rng.uniform(*SUPPRESSION_DURATION_S, n),
        rng.uniform(*RESPONSE_DURATION_S, n),
    )
    duration[modality == 0] = np.nan
    # rates per stimulus of the unit's modality, in the order of VISUAL/AUDITORY_STIMULI:
    # the first stimulus (vis1/sound1) sets the scale; about half the units prefer it strongly
    peak = rng.uniform(*ADDED_RATE_HZ, n)
    prefers_first = rng.uniform(size=n) < 0.5
    second = peak * np.where(prefers_first, rng.uniform(0.2, 0.6, n), rng.uniform(0.8, 1.0, n))
    rf = peak[:, None] * rng.uniform(0.4, 1.0, (n, 2))
    per_stim = np.column_stack([peak, second, rf])  # (n, 4)
    gain = np.where(rng.uniform(size=n) < CONTEXT_GAIN_FRACTION, rng.uniform(1.3, 2.0, n), 1.0)
    suppression = np.where(is_sup, rng.uniform(0.6, 0.95, n), 0.0)

    rate = np.zeros((n, len(names)))
    for k, name in enumerate(names):  # a handful of labels
        code = _modality_of(name)
        if code in (1, 2):
            pos = (VISUAL_STIMULI if code == 1 else AUDITORY_STIMULI).index(name)
            rate[:, k] = np.where(excited & (modality == code), per_stim[:, pos], 0.0)
    # tuning and opto draws come last, so the draws above keep their values
    rf_x = rng.uniform(-RF_EXTENT_PX[0], RF_EXTENT_PX[0], n)
    rf_y = rng.uniform(-RF_EXTENT_PX[1], RF_EXTENT_PX[1], n)
    rf_sigma = rng.uniform(*RF_SIGMA_PX, n)
    best = np.exp2(rng.uniform(np.log2(BEST_FREQ_HZ[0]), np.log2(BEST_FREQ_HZ[1]), n))
    freq_sigma = rng.uniform(*FREQ_SIGMA_OCT, n)
    opto_latency = rng.uniform(*OPTO_LATENCY_S, n)
    opto_window = rng.uniform(*OPTO_WINDOW_S, n)
    reliability = rng.uniform(*OPTO_RELIABILITY, n)
    opto = modality == 3
    latency = np.where(opto, opto_latency, latency)
    duration = np.where(opto, opto_window, duration)
    for k, name in enumerate(names):
        if _modality_of(name) == 3:
            rate[:, k] = np.where(opto, reliability / opto_window, 0.0)
    vis_tuned = excited & (modality == 1)
    aud_tuned = excited & (modality == 2)
    return ResponseProfiles(
        names=tuple(names),
        modality=modality,
        suppressed=is_sup,
        latency_s=np.where(modality > 0, latency, np.nan),
        duration_s=duration,
        rate_hz=rate,
        context_gain=np.where(excited & ~opto, gain, 1.0),
        suppression=suppression,
        baseline_rate_hz=np.asarray(rates_hz, dtype=np.float64).copy(),
        n_changed=np.zeros((n, len(names)), dtype=np.int64),
        rf_x=np.where(vis_tuned, rf_x, np.nan),
        rf_y=np.where(vis_tuned, rf_y, np.nan),
        rf_sigma=np.where(vis_tuned, rf_sigma, np.nan),
        best_freq_hz=np.where(aud_tuned, best, np.nan),
        freq_sigma_oct=np.where(aud_tuned, freq_sigma, np.nan),
    )


@dataclasses.dataclass(frozen=True)
class _ResponsePlan:
    """Everything :func:`_apply_responses` needs, drawn before any spike (counts included)."""

    profiles: ResponseProfiles
    onsets: StimulusOnsets
    class_of: IntArray  # per onset: its (label, context) class
    class_label: IntArray
    class_context: IntArray
    class_trials: IntArray  # onset indices grouped by class
    class_start: IntArray
    class_size: IntArray
    counts: IntArray  # (units, classes) Poisson numbers of added spikes
    windows: dict[int, IntArray]  # modality -> sorted onset indices of that modality


def _plan_responses(
    rng: np.random.Generator,
    stimuli: StimulusOnsets,
    rates_hz: FloatArray,
    eligible: npt.NDArray[np.bool_],
) -> _ResponsePlan:
    """Return the response plan: profiles and the number of spikes each unit gains per class."""
    profiles = draw_response_profiles(rng, stimuli.names, rates_hz, eligible)
    n_ctx = len(MODALITY_NAMES)
    # a class is (label, context, feature): onsets of one class share every unit's rate
    feats = stimuli.features()
    uniq_feats, feat_of = np.unique(np.nan_to_num(feats, nan=-1e300), axis=0, return_inverse=True)
    n_feat = max(uniq_feats.shape[0], 1)
    class_key = (
        stimuli.label.astype(np.int64) * n_ctx + stimuli.context.astype(np.int64)
    ) * n_feat + feat_of.reshape(-1).astype(np.int64)
    keys, class_of, class_size = np.unique(class_key, return_inverse=True, return_counts=True)
    class_feat = keys % n_feat
    class_label, class_context = (keys // n_feat) // n_ctx, (keys // n_feat) % n_ctx
    gain = np.where(
        class_context[None, :] == profiles.modality[:, None], profiles.context_gain[:, None], 1.0
    )
    rate = profiles.rate_hz[:, class_label] * gain  # (units, classes)
    class_features = (
        np.where(uniq_feats == -1e300, np.nan, uniq_feats)[class_feat] if keys.size else feats[:0]
    )
    for k, name in enumerate(stimuli.names):  # a handful of labels; only two are tuned
        cols = np.flatnonzero(class_label == k)
        if cols.size and name in ("rf_grating", "rf_tone"):
            rate[:, cols] *= profiles.tuning(name, class_features[cols])
    dur = np.nan_to_num(profiles.duration_s)[:, None]
    counts = rng.poisson(rate * dur * class_size[None, :]).astype(np.int64)
    label_modality = np.array([_modality_of(x) for x in stimuli.names], dtype=np.int64)
    onset_modality = label_modality[stimuli.label] if stimuli.label.size else stimuli.label
    order = np.argsort(stimuli.samples, kind="stable")
    windows = {m: order[onset_modality[order] == m] for m in (1, 2)}
    return _ResponsePlan(
        profiles=profiles,
        onsets=stimuli,
        class_of=class_of.astype(np.int64),
        class_label=class_label,
        class_context=class_context,
        class_trials=np.argsort(class_of, kind="stable").astype(np.int64),
        class_start=(np.cumsum(class_size) - class_size).astype(np.int64),
        class_size=class_size.astype(np.int64),
        counts=counts,
        windows=windows,
    )


def _apply_responses(
    rng: np.random.Generator,
    plan: _ResponsePlan,
    p: _UnitParams,
    lo: int,
    hi: int,
    samples: IntArray,
    units: npt.NDArray[np.int32],
    sample_rate: float,
) -> tuple[IntArray, npt.NDArray[np.int32]]:
    """Return units ``lo``…``hi - 1``'s spikes with suppression applied and responses merged in.

    Input and output are sorted by unit then time. Suppressed units (a few) are handled one
    contiguous slice at a time; added spikes are drawn for the whole group at once.
    """
    prof = plan.profiles
    onsets = plan.onsets
    n_samples = p.n_samples
    # -- suppression: drop a fraction of baseline spikes in the window after each stimulus -------
    sup_units = lo + np.flatnonzero(prof.suppressed[lo:hi])
    if sup_units.size:
        bounds = np.searchsorted(units, np.arange(lo, hi + 1, dtype=np.int32))
        keep = np.ones(samples.size, dtype=bool)
        for u in sup_units.tolist():
            sl = slice(bounds[u - lo], bounds[u - lo + 1])
            idx = plan.windows[int(prof.modality[u])]
            start = onsets.samples[idx] + round(prof.latency_s[u] * sample_rate)
            width = round(prof.duration_s[u] * sample_rate)
            j = np.searchsorted(start, samples[sl], side="right") - 1
            inside = (j >= 0) & (samples[sl] - start[np.maximum(j, 0)] < width)
            drop = inside & (rng.uniform(size=inside.size) < prof.suppression[u])
            keep[sl] = ~drop
            removed = np.bincount(onsets.label[idx[j[drop]]], minlength=len(prof.names))
            prof.n_changed[u] -= removed
        samples, units = samples[keep], units[keep]

    # -- excitation: Poisson numbers per (unit, class), uniform trial of the class and time ------
    counts = plan.counts[lo:hi]
    n_classes = counts.shape[1]
    flat = counts.ravel()
    if flat.sum() == 0:
        return samples, units
    x_unit = np.repeat(np.repeat(np.arange(lo, hi, dtype=np.int64), n_classes), flat)
    x_class = np.repeat(np.tile(np.arange(n_classes, dtype=np.int64), hi - lo), flat)
    pick = (rng.uniform(size=x_unit.size) * plan.class_size[x_class]).astype(np.int64)
    trial = plan.class_trials[plan.class_start[x_class] + pick]
    offset_s = prof.latency_s[x_unit] + rng.uniform(size=x_unit.size) * prof.duration_s[x_unit]
    x_samples = onsets.samples[trial] + np.rint(offset_s * sample_rate).astype(np.int64)
    ok = (x_samples >= 0) & (x_samples < n_samples)
    partial = p.partial[x_unit]
    ok &= ~partial | ((x_samples >= p.w_start[x_unit]) & (x_samples < p.w_stop[x_unit]))
    x_unit, x_samples, trial = x_unit[ok], x_samples[ok], trial[ok]

    # merge on (unit, sample) keys; drop added spikes within the refractory period of any other
    key_x = x_unit * n_samples + x_samples
    order = np.argsort(key_x, kind="stable")
    key_x, x_unit, x_samples, trial = key_x[order], x_unit[order], x_samples[order], trial[order]
    keep_x = np.ones(key_x.size, dtype=bool)
    keep_x[1:] = ~((np.diff(key_x) < p.dead) & (x_unit[1:] == x_unit[:-1]))
    key_base = units.astype(np.int64) * n_samples + samples
    pos = np.searchsorted(key_base, key_x)
    n_base = key_base.size
    if n_base:
        prev = np.maximum(pos - 1, 0)
        close_prev = (pos > 0) & (units[prev] == x_unit) & (key_x - key_base[prev] < p.dead)
        nxt = np.minimum(pos, n_base - 1)
        close_next = (pos < n_base) & (units[nxt] == x_unit) & (key_base[nxt] - key_x < p.dead)
        keep_x &= ~(close_prev | close_next)
    del key_base
    np.add.at(
        prof.n_changed,
        (x_unit[keep_x], onsets.label[trial[keep_x]]),
        1,
    )
    samples = np.insert(samples, pos[keep_x], x_samples[keep_x])
    units = np.insert(units, pos[keep_x], x_unit[keep_x].astype(np.int32))
    return samples, units


def nearest_sites(channel_x: FloatArray, channel_y: FloatArray, peak: IntArray) -> FloatArray:
    """Return the distance (µm) of every channel to each unit's peak site, shape (units, channels)."""
    dx = channel_x[None, :] - channel_x[peak][:, None]
    dy = channel_y[None, :] - channel_y[peak][:, None]
    return np.hypot(dx, dy)


def _segment_starts(counts: IntArray) -> IntArray:
    return np.cumsum(counts) - counts


def chunk_slices(n: int, size: int | None = None) -> Iterator[slice]:
    """Yield consecutive slices of at most ``size`` (default :data:`CHUNK_SPIKES`) over ``range(n)``."""
    size = size or CHUNK_SPIKES
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class NpyAppender:
    """A 1-D ``.npy`` file written piece by piece; its length goes into the header on close.

    Lets a writer stream an array it never holds whole (a probe's spikes, or every probe's spikes
    one probe at a time). The ``.npy`` 1.0 header of a 1-D array is 128 bytes for any length below
    10**15, so the placeholder written first is overwritten in place.
    """

    def __init__(self, path: Path, dtype: npt.DTypeLike) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.size = 0
        self._file = self.path.open("wb")
        self._header_len = self._file.write(self._header(0))

    def _header(self, n: int) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf,
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (n,),
            },
        )
        return buf.getvalue()

    def append(self, values: npt.ArrayLike) -> None:
        """Append values (cast to the file's dtype; 1-D arrays of that dtype are not copied)."""
        arr = np.ascontiguousarray(values, dtype=self.dtype).reshape(-1)
        arr.tofile(self._file)
        self.size += arr.size

    def close(self) -> Path:
        """Return the path after writing the final header and closing the file."""
        if not self._file.closed:
            header = self._header(self.size)
            if len(header) != self._header_len:  # pragma: no cover - needs >= 10**15 items
                raise ValueError(f"npy header of {self.path} changed length")
            self._file.seek(0)
            self._file.write(header)
            self._file.close()
        return self.path

    def __enter__(self) -> NpyAppender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()


def draw_firing_rates(rng: np.random.Generator, n_units: int) -> FloatArray:
    """Return ``n_units`` firing rates (Hz): log-normal, median 2 Hz, σ_ln 1.15, in 0.05–60 Hz."""
    rates = rng.lognormal(np.log(RATE_MEDIAN_HZ), RATE_SIGMA_LN, n_units)
    np.clip(rates, MIN_RATE_HZ, MAX_RATE_HZ, out=rates)
    return rates


@dataclasses.dataclass(frozen=True)
class _UnitParams:
    """Per-unit parameters of :func:`simulate_spike_trains`, all drawn before any spike."""

    n_samples: int
    dead: int  # refractory period in samples
    isi_scale: npt.NDArray[np.float32]  # mean ISI minus the dead time, samples
    n_gen: IntArray  # ISIs generated per unit (enough to pass the end of the recording)
    first: IntArray  # first spike sample
    partial: npt.NDArray[np.bool_]
    w_start: IntArray
    w_stop: IntArray
    contaminated: npt.NDArray[np.bool_]
    doublet_frac: FloatArray
    amp_sigma: npt.NDArray[np.float32]
    amp_uv: npt.NDArray[np.float32]


def simulate_spike_trains(
    rng: np.random.Generator,
    *,
    n_units: int,
    n_samples: int,
    sample_rate: float = 30_000.0,
    unit_amplitudes_uv: FloatArray | None = None,
    stimuli: StimulusOnsets | None = None,
) -> SpikeTrains:
    """Return simulated spike trains (sorted by unit, then time) for ``n_units`` units.

    Rates come from :func:`draw_firing_rates` (log-normal, median 2 Hz, 0.05–60 Hz). ISIs are
    whole samples: a refractory period (1.5 ms + 1 sample = 46 samples at 30 kHz) plus a rounded
    exponential, so a clean unit has no ISI violation and the mean ISI is kept to within half a
    sample. About 2 % of units have 1–10 spikes, ~15 % get refractory-violating doublets and ~10 %
    fire only during part of the recording. With ``stimuli``, some units respond to them (see the
    module docstring; ``SpikeTrains.responses`` holds the profiles and the spikes changed).

    Vectorized over spikes: units are simulated in groups of about :data:`CHUNK_SPIKES` generated
    ISIs (one restarting cumulative sum per group) written straight into the result arrays, so the
    temporaries stay small and are reused instead of spanning the whole probe.
    """
    if n_units < 1:
        raise ParameterError("need at least one unit", field="n_units", expected=">= 1")
    if n_samples < 10 * sample_rate:
        raise ParameterError(
            f"recording of {n_samples} samples is too short to simulate spike trains",
            field="n_samples",
            expected=">= 10 s of samples",
        )
    duration_s = n_samples / sample_rate
    rates = draw_firing_rates(rng, n_units)
    n_few = max(1, round(0.02 * n_units)) if n_units >= 4 else 0
    few = np.zeros(n_units, dtype=bool)
    few[rng.choice(n_units, n_few, replace=False)] = True
    rates[few] = rng.uniform(1.0, 10.0, n_few) / duration_s

    dead = int(np.ceil(REFRACTORY_S * sample_rate)) + 1
    mean_isi = sample_rate / rates  # samples
    expected = rates * duration_s
    n_gen = np.ceil(expected + 6.0 * np.sqrt(expected) + 10.0).astype(np.int64)
    # first spike: uniform within one-to-two mean ISIs (always inside the recording for sparse units)
    first = rng.uniform(0.0, 1.0, n_units) * np.minimum(n_samples - 1.0, 2.0 * mean_isi)
    # partial presence: ~10 % of well-sampled units fire only inside a window
    partial = (~few) & (rng.uniform(size=n_units) < 0.10) & (expected > 300)
    w_start = (rng.uniform(0.0, 0.5, n_units) * n_samples).astype(np.int64)
    w_stop = w_start + (rng.uniform(0.2, 0.5, n_units) * n_samples).astype(np.int64)
    # doublets: contaminated units get a spike 8–40 samples after a fraction of their spikes
    contaminated = (~few) & (rng.uniform(size=n_units) < 0.15)
    frac = 10 ** rng.uniform(np.log10(0.002), np.log10(0.05), n_units)
    sigma = rng.uniform(0.05, 0.25, n_units).astype(np.float32)
    amp_uv = np.ones(n_units) if unit_amplitudes_uv is None else unit_amplitudes_uv
    params = _UnitParams(
        n_samples=int(n_samples),
        dead=dead,
        isi_scale=(mean_isi - dead).astype(np.float32),
        n_gen=n_gen,
        first=first.astype(np.int64),
        partial=partial,
        w_start=w_start,
        w_stop=w_stop,
        contaminated=contaminated,
        doublet_frac=frac,
        amp_sigma=sigma,
        amp_uv=np.asarray(amp_uv, dtype=np.float32),
    )

    plan = None
    if stimuli is not None:
        # a child generator: the baseline spike samples do not depend on the stimuli
        resp_rng = rng.spawn(1)[0]
        plan = _plan_responses(resp_rng, stimuli, rates, ~few)

    # result arrays sized for the worst case (a doublet after every generated spike, every drawn
    # response spike kept); pages past the spikes actually written are never touched, so they
    # cost address space, not memory
    capacity = 2 * int(n_gen.sum()) + (int(plan.counts.sum()) if plan is not None else 0)
    samples = np.empty(capacity, dtype=np.int64)
    unit_index = np.empty(capacity, dtype=np.int32)
    amplitudes = np.empty(capacity, dtype=np.float32)
    group = (np.cumsum(n_gen) - n_gen) // CHUNK_SPIKES  # units grouped by ~CHUNK_SPIKES ISIs
    edges = [0, *(np.flatnonzero(np.diff(group)) + 1).tolist(), n_units]
    n = 0
    for lo, hi in itertools.pairwise(edges):
        g_samples, g_units = _simulate_units(rng, params, lo, hi)
        if plan is not None:
            g_samples, g_units = _apply_responses(
                resp_rng, plan, params, lo, hi, g_samples, g_units, float(sample_rate)
            )
        k = g_samples.size
        samples[n : n + k] = g_samples
        unit_index[n : n + k] = g_units
        # amplitudes: log-normal around the unit's amplitude
        amps = amplitudes[n : n + k]
        rng.standard_normal(k, dtype=np.float32, out=amps)
        amps *= params.amp_sigma[g_units]
        np.exp(amps, out=amps)
        amps *= params.amp_uv[g_units]
        n += k
    return SpikeTrains(
        unit_index=unit_index[:n],
        samples=samples[:n],
        amplitudes=amplitudes[:n],
        rates_hz=rates,
        n_units=n_units,
        n_samples=int(n_samples),
        sample_rate=float(sample_rate),
        responses=plan.profiles if plan is not None else None,
    )


def _simulate_units(
    rng: np.random.Generator, p: _UnitParams, lo: int, hi: int
) -> tuple[IntArray, npt.NDArray[np.int32]]:
    """Return (samples, unit index) of units ``lo``…``hi - 1``, sorted by unit then time."""
    n_gen = p.n_gen[lo:hi]
    starts = _segment_starts(n_gen)
    # ISIs in whole samples: dead time + rounded exponential
    draw = rng.standard_exponential(int(n_gen.sum()), dtype=np.float32)
    draw *= np.repeat(p.isi_scale[lo:hi], n_gen)
    np.rint(draw, out=draw)
    samples = draw.astype(np.int64)
    del draw
    samples += p.dead
    # one cumulative sum restarts at each unit: each segment's first increment cancels the
    # previous segment's last value, so the running sum stays within one recording's length
    samples[starts] = 0
    seg_sum = np.add.reduceat(samples, starts)
    first = p.first[lo:hi]
    prev_last = np.concatenate([[0], (first + seg_sum)[:-1]])
    samples[starts] = first - prev_last
    np.cumsum(samples, out=samples)
    keep = samples < p.n_samples
    for u in np.flatnonzero(p.partial[lo:hi]):  # a few units; each is a contiguous slice
        sl = slice(starts[u], starts[u] + n_gen[u])
        keep[sl] &= (samples[sl] >= p.w_start[lo + u]) & (samples[sl] < p.w_stop[lo + u])
    # guarantee at least one spike per unit (the first generated one is inside the recording)
    counts = np.add.reduceat(keep, starts, dtype=np.int64)
    keep[starts[counts == 0]] = True
    counts[counts == 0] = 1
    samples = samples[keep]
    del keep
    starts = _segment_starts(counts)

    chosen = [
        starts[u] + np.flatnonzero(rng.uniform(size=counts[u]) < p.doublet_frac[lo + u])
        for u in np.flatnonzero(p.contaminated[lo:hi])
    ]
    first_of = np.concatenate([np.zeros(0, np.int64), *chosen])
    extra = samples[first_of] + rng.integers(8, 41, first_of.size)
    inside = extra < p.n_samples
    first_of, extra = first_of[inside], extra[inside]
    if first_of.size:
        # insert each doublet right after its spike: order by unit then time is kept
        samples = np.insert(samples, first_of + 1, extra)
        owner = np.searchsorted(starts, first_of, side="right") - 1
        counts += np.bincount(owner, minlength=counts.size)
    units = np.repeat(np.arange(lo, hi, dtype=np.int32), counts)
    return samples, units


def _waveforms(rng: np.random.Generator, n: int, n_t: int, peak_index: int) -> FloatArray:
    """Return n extracellular spike shapes (trough then repolarization peak), p2p normalized to 1."""
    t = np.arange(n_t, dtype=np.float64)[None, :] - peak_index
    width = rng.uniform(1.5, 4.5, n)[:, None]  # samples: narrow- and broad-spiking units
    delay = width * rng.uniform(2.0, 4.0, n)[:, None]
    ratio = rng.uniform(0.2, 0.6, n)[:, None]
    w = -np.exp(-0.5 * (t / width) ** 2) + ratio * np.exp(-0.5 * ((t - delay) / (2.0 * width)) ** 2)
    w /= np.ptp(w, axis=1, keepdims=True)
    return w


def _write_tsv(path: Path, cluster_ids: IntArray, name: str, values: Sequence[object]) -> None:
    pl.DataFrame({"cluster_id": cluster_ids, name: list(values)}).write_csv(path, separator="\t")


def make_sorting(
    folder: Path,
    *,
    rng: np.random.Generator,
    n_units: int,
    n_samples: int,
    channel_x: FloatArray,
    channel_y: FloatArray,
    sample_rate: float = 30_000.0,
    dat_path: str = "continuous.dat",
    noise_uv: float = 10.0,
    stimuli: StimulusOnsets | None = None,
) -> ProbeSorting:
    """Return the truth of one probe's sorting after writing its Kilosort/phy folder to ``folder``.

    Writes (FORMATS §11.1–11.2): ``spike_times.npy`` (uint64), ``spike_clusters.npy`` (int32),
    ``spike_templates.npy`` (uint32), ``amplitudes.npy`` (float64), ``templates.npy`` (n_templates ×
    61 × n_ch float32), ``channel_map.npy``, ``channel_positions.npy``, ``whitening_mat_inv.npy``,
    ``params.py``, ``cluster_KSLabel.tsv``, ``cluster_group.tsv``, ``cluster_Amplitude.tsv``,
    ``cluster_ContamPct.tsv``, ``quality_metrics.csv``, ``template_metrics.csv`` and
    ``templates_average.npy`` (n_units × 90 × n_ch float32, µV). ``stimuli`` (onsets on this
    probe's clock) make some units stimulus-responsive (:func:`simulate_spike_trains`).
    """
    n_ch = int(channel_x.size)
    if channel_y.size != n_ch:
        raise ParameterError(
            "channel_x and channel_y differ in length", field="channel_y", expected=f"{n_ch} values"
        )
    folder.mkdir(parents=True, exist_ok=True)
    duration_s = n_samples / sample_rate

    # -- units: ids, geometry, amplitudes ------------------------------------------------------
    n_merged = round(0.04 * n_units)
    n_removed = round(0.08 * n_units)
    n_kept = n_units - n_merged
    n_templates = n_kept + 2 * n_merged + n_removed
    template_perm = rng.permutation(n_templates)
    kept_templates = np.sort(template_perm[:n_kept])
    merged_templates = template_perm[n_kept : n_kept + 2 * n_merged].reshape(n_merged, 2)
    cluster_ids = np.concatenate(
        [kept_templates, n_templates + np.arange(n_merged, dtype=np.int64)]
    ).astype(np.int64)  # ascending: merged ids are above every template id

    peak = rng.integers(0, n_ch, n_units)
    amplitude = np.clip(rng.lognormal(np.log(120.0), 0.5, n_units), 30.0, 800.0)
    dist = nearest_sites(channel_x, channel_y, peak)
    decay_um = rng.uniform(20.0, 40.0, n_units)[:, None]
    footprint = np.where(dist <= TEMPLATE_RADIUS_UM, np.exp(-dist / decay_um), 0.0)

    # -- dense average templates (µV) ---------------------------------------------------------
    shapes = _waveforms(rng, n_units, AVERAGE_TEMPLATE_SAMPLES, AVERAGE_TEMPLATE_PEAK_INDEX)
    templates_average = (
        shapes[:, :, None].astype(np.float32)
        * (footprint * amplitude[:, None]).astype(np.float32)[:, None, :]
    )
    np.save(folder / "templates_average.npy", templates_average)
    # truth is read off the written array so that float32 rounding cannot move the peak
    p2p = np.ptp(templates_average, axis=1)
    peak_channel = np.argmax(p2p, axis=1).astype(np.int64)
    amplitude_uv = p2p[np.arange(n_units), peak_channel].astype(np.float64)
    channels = tuple(np.flatnonzero(row).astype(np.int64) for row in footprint > 0)
    del templates_average, p2p

    # -- spikes --------------------------------------------------------------------------------
    spikes = simulate_spike_trains(
        rng,
        n_units=n_units,
        n_samples=n_samples,
        sample_rate=sample_rate,
        unit_amplitudes_uv=amplitude_uv,
        stimuli=stimuli,
    )
    quantum = _quantize_amplitudes(spikes)
    counts = spikes.counts
    _write_spike_files(folder, rng, spikes, quantum, cluster_ids, kept_templates, merged_templates)

    # -- Kilosort templates (whitened, unit norm) --------------------------------------------
    template_peak = rng.integers(0, n_ch, n_templates)
    template_peak[kept_templates] = peak[:n_kept]
    template_peak[merged_templates[:, 0]] = peak[n_kept:]
    template_peak[merged_templates[:, 1]] = np.clip(peak[n_kept:] + 2, 0, n_ch - 1)
    t_dist = nearest_sites(channel_x, channel_y, template_peak)
    t_foot = np.where(t_dist <= TEMPLATE_RADIUS_UM, np.exp(-t_dist / 30.0), 0.0)
    t_shapes = _waveforms(rng, n_templates, KILOSORT_TEMPLATE_SAMPLES, 20)
    templates = t_shapes[:, :, None].astype(np.float32) * t_foot.astype(np.float32)[:, None, :]
    templates /= np.linalg.norm(templates.reshape(n_templates, -1), axis=1)[:, None, None]
    np.save(folder / "templates.npy", templates.astype(np.float32))
    del templates, t_dist, t_foot

    np.save(folder / "channel_map.npy", np.arange(n_ch, dtype=np.int32))
    np.save(
        folder / "channel_positions.npy", np.column_stack([channel_x, channel_y]).astype(np.float64)
    )
    whitening_inv = np.eye(n_ch) * rng.uniform(8.0, 14.0, n_ch) + rng.normal(0, 0.05, (n_ch, n_ch))
    np.save(folder / "whitening_mat_inv.npy", whitening_inv)
    (folder / "params.py").write_text(
        f"dat_path = {dat_path!r}\n"
        f"n_channels_dat = {n_ch}\n"
        "dtype = 'int16'\n"
        "offset = 0\n"
        f"sample_rate = {float(sample_rate)!r}\n"
        "hp_filtered = False\n"
    )

    # -- metrics ---------------------------------------------------------------------------------
    quality = _quality_metrics(rng, spikes, counts, amplitude_uv, noise_uv, duration_s)
    template = _template_metrics(rng, shapes, footprint, sample_rate)
    pl.DataFrame({"cluster_id": cluster_ids, **quality}).write_csv(folder / "quality_metrics.csv")
    pl.DataFrame({"cluster_id": cluster_ids, **template}).write_csv(folder / "template_metrics.csv")

    isi_ratio = quality["isi_violations_ratio"]
    is_good = (isi_ratio < 0.2) & (counts >= 100)
    ks_label = np.where(is_good, "good", "mua")
    group = np.where(quality["snr"] < 2.0, "noise", ks_label)
    _write_tsv(folder / "cluster_KSLabel.tsv", cluster_ids, "KSLabel", ks_label.tolist())
    _write_tsv(folder / "cluster_group.tsv", cluster_ids, "group", group.tolist())
    _write_tsv(
        folder / "cluster_Amplitude.tsv",
        cluster_ids,
        "Amplitude",
        np.round(amplitude_uv / 4.0, 1).tolist(),
    )
    contam = np.round(np.clip(100.0 * isi_ratio, 0.0, 100.0), 1)
    _write_tsv(folder / "cluster_ContamPct.tsv", cluster_ids, "ContamPct", contam.tolist())

    return ProbeSorting(
        folder=folder,
        cluster_ids=cluster_ids,
        peak_channel=peak_channel,
        amplitude=amplitude_uv,
        spike_counts=counts,
        spikes=spikes,
        channels=channels,
    )


# bits of a packed spike key used for amplitude codes (float32-exact: <= 24 bits)
_AMP_BITS = 24


def _key_layout(n_units: int, n_samples: int) -> tuple[int, int]:
    """Return (unit_bits, amp_bits) of a uint64 spike key ``sample | unit | amplitude code``."""
    unit_bits = max(1, (n_units - 1).bit_length())
    sample_bits = max(1, (n_samples - 1).bit_length())
    amp_bits = min(_AMP_BITS, 64 - unit_bits - sample_bits)
    if amp_bits < 12:
        raise ParameterError(
            f"{n_units} units × {n_samples} samples do not fit a 64-bit spike key",
            field="n_samples",
            expected="n_samples < 2**40 / n_units",
        )
    return unit_bits, amp_bits


def _quantize_amplitudes(spikes: SpikeTrains) -> float:
    """Return the power-of-two quantum after rounding the amplitudes to it in place (fits the key)."""
    _, amp_bits = _key_layout(spikes.n_units, spikes.n_samples)
    amps = spikes.amplitudes
    top = float(amps.max()) if amps.size else 1.0
    quantum = np.float32(2.0 ** np.ceil(np.log2(top / (2**amp_bits - 1))))
    amps /= quantum  # exact: dividing by a power of two
    np.round(amps, out=amps)
    amps *= quantum
    return float(quantum)


def _write_spike_files(
    folder: Path,
    rng: np.random.Generator,
    spikes: SpikeTrains,
    quantum: float,
    cluster_ids: IntArray,
    kept_templates: IntArray,
    merged_templates: IntArray,
) -> None:
    """Write the per-spike Kilosort arrays in time order.

    Time order comes from one in-place sort of packed uint64 keys (sample | unit | amplitude code)
    rather than an argsort and four random gathers: several times faster on ~10 M spikes. The keys
    are built and the four files derived chunk by chunk, so the only full-size temporary is the
    key array itself.
    """
    unit_bits, amp_bits = _key_layout(spikes.n_units, spikes.n_samples)
    sample_shift = np.uint64(unit_bits + amp_bits)
    amp_shift = np.uint64(amp_bits)
    unit_mask = np.uint64(2**unit_bits - 1)
    amp_mask = np.uint64(2**amp_bits - 1)
    q = np.float32(quantum)
    n = spikes.samples.size
    key = np.empty(n, dtype=np.uint64)
    for sl in chunk_slices(n):
        k = key[sl]
        np.left_shift(spikes.samples[sl].view(np.uint64), sample_shift, out=k)
        k |= spikes.unit_index[sl].astype(np.uint64) << amp_shift
        # amplitudes are exact multiples of the power-of-two quantum: the division is exact
        k |= (spikes.amplitudes[sl] / q).astype(np.uint64)
    key.sort()

    n_kept = kept_templates.size
    cluster_of_unit = cluster_ids.astype(np.int32)
    template_of_unit = np.concatenate([kept_templates, merged_templates[:, 0]]).astype(np.uint32)
    second_of_merged = merged_templates[:, 1].astype(np.uint32)
    with (
        NpyAppender(folder / "spike_times.npy", np.uint64) as times,
        NpyAppender(folder / "spike_clusters.npy", np.int32) as clusters,
        NpyAppender(folder / "spike_templates.npy", np.uint32) as templates,
        NpyAppender(folder / "amplitudes.npy", np.float64) as amplitudes,
    ):
        for sl in chunk_slices(n):
            k = key[sl]
            times.append(k >> sample_shift)
            unit = ((k >> amp_shift) & unit_mask).astype(np.intp)
            clusters.append(cluster_of_unit[unit])
            spike_templates = template_of_unit[unit]
            if merged_templates.size:
                # a merged cluster's spikes come from either source template
                merged = np.flatnonzero(unit >= n_kept)
                second = merged[rng.uniform(size=merged.size) < 0.4]
                spike_templates[second] = second_of_merged[unit[second] - n_kept]
            templates.append(spike_templates)
            del unit, spike_templates
            amps = (k & amp_mask).astype(np.float64)
            amps *= quantum
            amplitudes.append(amps)


def _quality_metrics(
    rng: np.random.Generator,
    spikes: SpikeTrains,
    counts: IntArray,
    amplitude_uv: FloatArray,
    noise_uv: float,
    duration_s: float,
) -> dict[str, np.ndarray]:
    """Return the §11.2 quality-metric columns: spike-derived where cheap, plausible draws else."""
    n = spikes.n_units
    fs = spikes.sample_rate
    unit = spikes.unit_index
    samples = spikes.samples
    threshold = REFRACTORY_S * fs
    n_bins = max(1, int(duration_s // PRESENCE_BIN_S))
    isi_count = np.zeros(n, dtype=np.int64)
    per_bin = np.zeros(n * n_bins, dtype=np.int64)
    for sl in chunk_slices(samples.size):  # chunks bound the temporaries
        # ISIs of this chunk's spikes to their successors (the next chunk's first one included)
        u = unit[sl.start : sl.stop + 1]
        violation = (u[1:] == u[:-1]) & (np.diff(samples[sl.start : sl.stop + 1]) < threshold)
        isi_count += np.bincount(u[1:][violation], minlength=n)
        bin_index = (samples[sl] * (n_bins / spikes.n_samples)).astype(np.int64)
        np.minimum(bin_index, n_bins - 1, out=bin_index)
        bin_index += unit[sl].astype(np.int64) * n_bins
        per_bin += np.bincount(bin_index, minlength=n * n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        isi_ratio = isi_count * duration_s / (2.0 * counts.astype(np.float64) ** 2 * REFRACTORY_S)
    isi_ratio = np.nan_to_num(isi_ratio)
    presence = (per_bin.reshape(n, n_bins) > 0).sum(axis=1) / n_bins

    firing_rate = counts / duration_s
    snr = amplitude_uv / noise_uv * rng.uniform(0.15, 0.35, n)
    # small units lose spikes below detection threshold
    cutoff = np.clip(
        rng.beta(0.6, 12.0, n) + np.where(amplitude_uv < 70.0, rng.uniform(0.05, 0.4, n), 0.0),
        0.0,
        0.5,
    )
    cutoff[rng.uniform(size=n) < 0.05] = (
        np.nan
    )  # SpikeInterface yields NaN for degenerate histograms
    drift_std = rng.gamma(2.0, 2.0, n)
    return {
        "amplitude_cutoff": cutoff,
        "amplitude_cv_median": rng.uniform(0.05, 0.3, n),
        "amplitude_cv_range": rng.uniform(0.02, 0.2, n),
        "amplitude_median": amplitude_uv,
        "drift_ptp": drift_std * rng.uniform(3.0, 5.0, n),
        "drift_std": drift_std,
        "drift_mad": drift_std * rng.uniform(0.5, 0.8, n),
        "firing_range": firing_rate * rng.uniform(0.3, 2.0, n),
        "firing_rate": firing_rate,
        "isi_violations_ratio": isi_ratio,
        "isi_violations_count": isi_count,
        "num_spikes": counts,
        "presence_ratio": presence,
        "rp_contamination": np.clip(isi_ratio * rng.uniform(0.5, 1.0, n), 0.0, 1.0),
        "rp_violations": isi_count,
        "sliding_rp_violation": np.clip(isi_ratio * rng.uniform(0.3, 0.8, n), 0.0, 1.0),
        "snr": snr,
        "sync_spike_2": rng.uniform(0.0, 0.05, n),
        "sync_spike_4": rng.uniform(0.0, 0.01, n),
        "sync_spike_8": rng.uniform(0.0, 0.002, n),
        "d_prime": rng.gamma(4.0, 1.2, n),
        "isolation_distance": rng.gamma(3.0, 20.0, n),
        "l_ratio": rng.gamma(1.0, 0.05, n),
        "silhouette": rng.uniform(0.0, 0.6, n),
        "nn_hit_rate": rng.uniform(0.6, 1.0, n),
        "nn_miss_rate": rng.uniform(0.0, 0.05, n),
    }


def _template_metrics(
    rng: np.random.Generator, shapes: FloatArray, footprint: FloatArray, sample_rate: float
) -> dict[str, np.ndarray]:
    """Return the §11.2 template-metric columns, timing ones measured on the peak waveform."""
    n = shapes.shape[0]
    trough = np.argmin(shapes, axis=1)
    after = np.where(np.arange(shapes.shape[1])[None, :] > trough[:, None], shapes, -np.inf)
    peak_after = np.argmax(after, axis=1)
    trough_v = shapes[np.arange(n), trough]
    peak_v = shapes[np.arange(n), peak_after]
    below_half = shapes < 0.5 * trough_v[:, None]
    half_width = below_half.sum(axis=1) / sample_rate
    spread = (footprint > 0.1).sum(axis=1) * 10.0
    return {
        "exp_decay": rng.uniform(0.01, 0.1, n),
        "half_width": half_width,
        "num_negative_peaks": np.ones(n, dtype=np.int64),
        "num_positive_peaks": rng.integers(0, 3, n),
        "peak_to_valley": (peak_after - trough) / sample_rate,
        "peak_trough_ratio": peak_v / trough_v,
        "recovery_slope": -rng.uniform(10.0, 80.0, n),
        "repolarization_slope": rng.uniform(100.0, 600.0, n),
        "spread": spread,
        "velocity_above": rng.uniform(0.2, 1.5, n),
        "velocity_below": rng.uniform(0.2, 1.5, n),
    }
