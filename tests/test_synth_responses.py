"""Stimulus-responsive units in synthetic sessions: the truth predicts which units respond.

Referees: plain numpy counts of the truth spike times in each unit's truth response window,
``nf.spike_counts`` (the analysis module) in fixed windows, spikeinterface ``read_phy`` for the
written files, and the same simulation without stimuli for exact bookkeeping of added spikes.
"""

from __future__ import annotations

import datetime
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import npc_frames.synth as synth
from npc_frames.errors import ParameterError
from npc_frames.synth.ephys import UNIT_RESPONSES_SCHEMA, EphysTruth, make_ephys
from npc_frames.synth.session import stimulus_onsets
from npc_frames.synth.sorting import (
    AUDITORY_STIMULI,
    REFRACTORY_S,
    SUPPRESSED_MIN_RATE_HZ,
    VISUAL_STIMULI,
    SpikeTrains,
    StimulusOnsets,
    draw_firing_rates,
    draw_response_profiles,
    simulate_spike_trains,
)
from npc_frames.synth.truth import Truth

FS = 30_000.0
MODALITY_STIMULI = {"vis": VISUAL_STIMULI, "aud": AUDITORY_STIMULI}
# windows (s from onset) holding every possible response of a modality, and baselines as long
FIXED_WINDOWS = {
    "vis": {"resp": (0.04, 0.23), "base": (-0.19, 0.0)},
    "aud": {"resp": (0.01, 0.18), "base": (-0.17, 0.0)},
}


@pytest.fixture(scope="module")
def responsive_session(tmp_path_factory: pytest.TempPathFactory) -> Truth:
    """A 6-minute, 1-probe session with 60 units (enough trials per unit for a 3-sem test)."""
    return synth.make_session(
        tmp_path_factory.mktemp("responses"),
        seed=5,
        minutes=6.0,
        n_probes=1,
        units_per_probe=60,
        video=False,
        clip_seconds=0.1,
    )


def _stim_table(truth: Truth) -> pl.DataFrame:
    return pl.DataFrame(stimulus_onsets(truth.scripts)).with_row_index("trial_index")


def _unit_spikes(ephys: EphysTruth) -> list[np.ndarray]:
    bounds = np.searchsorted(ephys.spike_unit, np.arange(ephys.n_units + 1))
    times = np.asarray(ephys.spike_time)
    return [times[a:b] for a, b in itertools.pairwise(bounds)]


def _counts(spikes: np.ndarray, starts: np.ndarray, width: float) -> np.ndarray:
    return np.searchsorted(spikes, starts + width) - np.searchsorted(spikes, starts)


def _predicted_z(trials: pl.DataFrame, width: float | None = None) -> tuple[float, np.ndarray]:
    """Return (expected z of response − baseline, expected added spikes per trial) from the truth.

    `trials` holds one unit's trials joined with its response rows (``rate_change_hz``,
    ``context_gain``, ``modality``, ``duration_s``, ``baseline_rate_hz``) and the trials'
    ``rewarded_modality``. Windows are the unit's own response window, or `width` seconds long
    (holding the whole response).
    """
    gain = np.where(
        trials["rewarded_modality"].eq_missing(trials["modality"]).to_numpy(),
        trials["context_gain"].to_numpy(),
        1.0,
    )
    dur = trials["duration_s"].to_numpy()
    added = trials["rate_change_hz"].to_numpy() * gain * dur * _tuning(trials)
    base = trials["baseline_rate_hz"].to_numpy() * (dur if width is None else width)
    var = np.mean(added + 2 * base) + np.var(added)
    return float(np.mean(added) / np.sqrt(var / added.size)), added


def _tuning(trials: pl.DataFrame) -> np.ndarray:
    """Return per trial the truth's tuning factor: a Gaussian of the RF grating's distance from
    the unit's RF centre, or of the RF tone's octaves from its best frequency; 1 otherwise."""
    if "position_x" not in trials.columns:
        return np.ones(trials.height)
    names = ("position_x", "position_y", "frequency_hz", "rf_x", "rf_y", "rf_sigma")
    col = {
        c: trials[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
        for c in (*names, "best_freq_hz", "freq_sigma_oct")
    }
    d2 = (col["position_x"] - col["rf_x"]) ** 2 + (col["position_y"] - col["rf_y"]) ** 2
    vis = np.exp(-d2 / (2 * col["rf_sigma"] ** 2))
    octs = np.log2(col["frequency_hz"] / col["best_freq_hz"])
    aud = np.exp(-(octs**2) / (2 * col["freq_sigma_oct"] ** 2))
    name = trials["stim_name"].to_numpy()
    return np.where(name == "rf_grating", vis, np.where(name == "rf_tone", aud, 1.0))


def _observed(trials: pl.DataFrame, spikes: np.ndarray) -> pl.DataFrame:
    """Return the trials while the unit was present (first to last spike, ±1 s): a unit present
    in part of the recording only responds while present."""
    return trials.filter(pl.col("start_time").is_between(spikes[0] - 1.0, spikes[-1] + 1.0))


def _z(response: np.ndarray, baseline: np.ndarray) -> float:
    diff = response.astype(np.float64) - baseline
    sem = diff.std(ddof=1) / np.sqrt(diff.size)
    return float(diff.mean() / sem) if sem > 0 else 0.0


# --------------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------------


def test_profile_fractions_latencies_and_rates_follow_the_specification() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    rates = draw_firing_rates(rng, n)
    names = ("vis1", "vis2", "sound1", "sound2", "rf_grating", "rf_tone", "catch")
    prof = draw_response_profiles(rng, names, rates, np.ones(n, dtype=bool))
    vis = (prof.modality == 1) & ~prof.suppressed
    aud = (prof.modality == 2) & ~prof.suppressed
    assert abs(vis.mean() - 0.25) < 0.015 and abs(aud.mean() - 0.15) < 0.015
    fast = rates >= SUPPRESSED_MIN_RATE_HZ
    assert not prof.suppressed[~fast].any()
    assert abs(prof.suppressed[fast].mean() - 0.05) < 0.02
    assert np.all((prof.latency_s[vis] >= 0.04) & (prof.latency_s[vis] <= 0.08))
    assert np.all((prof.latency_s[aud] >= 0.01) & (prof.latency_s[aud] <= 0.03))
    assert np.all((prof.duration_s[vis | aud] >= 0.05) & (prof.duration_s[vis | aud] <= 0.15))
    k = {name: i for i, name in enumerate(names)}
    assert np.all((prof.rate_hz[vis, k["vis1"]] >= 10) & (prof.rate_hz[vis, k["vis1"]] <= 40))
    assert np.all(prof.rate_hz[vis][:, [k["sound1"], k["sound2"], k["rf_tone"]]] == 0)
    assert np.all(prof.rate_hz[aud][:, [k["vis1"], k["vis2"], k["rf_grating"]]] == 0)
    assert np.all(prof.rate_hz[:, k["catch"]] == 0)
    # about half the visual units prefer vis1 strongly (vis2 at most 60 % of vis1)
    ratio = prof.rate_hz[vis, k["vis2"]] / prof.rate_hz[vis, k["vis1"]]
    assert 0.4 < np.mean(ratio <= 0.6) < 0.6 and np.all(ratio <= 1.0)
    unresponsive = prof.modality == 0
    assert np.all(prof.rate_hz[unresponsive] == 0) and np.isnan(prof.latency_s[unresponsive]).all()
    gained = prof.context_gain > 1
    assert abs(gained[vis | aud].mean() - 1 / 3) < 0.03 and not gained[~(vis | aud)].any()


def test_units_with_few_spikes_never_respond() -> None:
    rng = np.random.default_rng(1)
    rates = np.full(1000, 10.0)
    eligible = np.arange(1000) % 2 == 0
    prof = draw_response_profiles(rng, ("vis1", "sound1"), rates, eligible)
    assert np.all(prof.modality[~eligible] == 0) and not prof.suppressed[~eligible].any()
    assert prof.responds()[eligible].any()


# --------------------------------------------------------------------------------------------
# spike trains: exact bookkeeping against the same simulation without stimuli
# --------------------------------------------------------------------------------------------

N_UNITS = 300
N_SAMPLES = int(900 * FS)  # 15 minutes: one group of units, so baselines are identical


@pytest.fixture(scope="module")
def trains() -> tuple[SpikeTrains, SpikeTrains, StimulusOnsets]:
    rng = np.random.default_rng(7)
    names = ("catch", "rf_grating", "sound1", "sound2", "vis1", "vis2")
    n = 800
    onsets = np.sort(rng.choice(np.arange(2, 890) * int(FS), n, replace=False)).astype(np.int64)
    onsets += rng.integers(0, int(FS) // 2, n)
    stimuli = StimulusOnsets(
        samples=onsets,
        label=rng.integers(0, len(names), n),
        context=rng.integers(1, 3, n).astype(np.int8),
        names=names,
    )
    plain = simulate_spike_trains(np.random.default_rng(3), n_units=N_UNITS, n_samples=N_SAMPLES)
    with_stim = simulate_spike_trains(
        np.random.default_rng(3), n_units=N_UNITS, n_samples=N_SAMPLES, stimuli=stimuli
    )
    return plain, with_stim, stimuli


def _violations(t: SpikeTrains) -> np.ndarray:
    u = t.unit_index
    bad = (u[1:] == u[:-1]) & (np.diff(t.samples) < REFRACTORY_S * FS)
    return np.bincount(u[1:][bad], minlength=t.n_units)


def test_trains_stay_sorted_and_gain_exactly_the_recorded_spikes(trains: Any) -> None:
    plain, with_stim, _ = trains
    key = with_stim.unit_index.astype(np.int64) * N_SAMPLES + with_stim.samples
    assert np.all(np.diff(key) > 0)
    assert with_stim.samples.min() >= 0 and with_stim.samples.max() < N_SAMPLES
    prof = with_stim.responses
    assert prof is not None
    np.testing.assert_array_equal(with_stim.counts - plain.counts, prof.n_changed.sum(axis=1))
    np.testing.assert_array_equal(with_stim.rates_hz, plain.rates_hz)
    # unresponsive units keep their baseline train exactly
    none = np.flatnonzero(~prof.responds().any(axis=1))
    assert none.size > 100
    for u in none[:20]:
        np.testing.assert_array_equal(
            with_stim.samples[with_stim.unit_index == u], plain.samples[plain.unit_index == u]
        )


def test_added_spikes_lie_in_response_windows_and_baseline_spikes_are_kept(trains: Any) -> None:
    plain, with_stim, stimuli = trains
    prof = with_stim.responses
    excited = np.flatnonzero((prof.rate_hz > 0).any(axis=1))
    assert excited.size > 60
    for u in excited:
        base = plain.samples[plain.unit_index == u]
        new = with_stim.samples[with_stim.unit_index == u]
        assert np.isin(base, new).all()  # excitation never removes a spike
        added = np.setdiff1d(new, base)
        assert added.size == prof.n_changed[u].sum()
        # each added spike follows an onset the unit responds to, inside its window
        responsive_onsets = np.sort(stimuli.samples[prof.rate_hz[u, stimuli.label] > 0])
        j = np.searchsorted(responsive_onsets, added, side="right") - 1
        assert np.all(j >= 0)
        lag = (added - responsive_onsets[j]) / FS
        lo, hi = prof.latency_s[u], prof.latency_s[u] + prof.duration_s[u]
        assert np.all((lag >= lo - 1 / FS) & (lag <= hi + 1 / FS))


def test_responses_create_no_refractory_violations(trains: Any) -> None:
    plain, with_stim, _ = trains
    np.testing.assert_array_equal(_violations(with_stim), _violations(plain))


def test_suppressed_units_lose_spikes_only_in_their_window(trains: Any) -> None:
    plain, with_stim, stimuli = trains
    prof = with_stim.responses
    sup = np.flatnonzero(prof.suppressed)
    assert sup.size >= 1
    label_modality = np.array(
        [1 if n in VISUAL_STIMULI else 2 if n in AUDITORY_STIMULI else 0 for n in stimuli.names]
    )
    for u in sup:
        base = plain.samples[plain.unit_index == u]
        new = with_stim.samples[with_stim.unit_index == u]
        assert np.isin(new, base).all()
        removed = np.setdiff1d(base, new)
        assert removed.size == -prof.n_changed[u].sum() > 0
        onsets = np.sort(stimuli.samples[label_modality[stimuli.label] == prof.modality[u]])
        starts = onsets + round(prof.latency_s[u] * FS)
        width = round(prof.duration_s[u] * FS)
        in_window = _counts(base, starts, width)
        after = _counts(new, starts, width)
        assert np.isin(removed, base).all()
        # the dropped fraction matches the profile's suppression (binomial, 4 sd)
        n_in, n_removed = in_window.sum(), removed.size
        p = prof.suppression[u]
        assert abs(n_removed - p * n_in) < 4 * np.sqrt(n_in * p * (1 - p)) + 1
        assert after.sum() == n_in - n_removed


def test_rewarded_context_gain_scales_added_spikes(trains: Any) -> None:
    _, with_stim, stimuli = trains
    prof = with_stim.responses
    k_vis1 = stimuli.names.index("vis1")
    units = np.flatnonzero((prof.rate_hz[:, k_vis1] > 0) & (prof.context_gain > 1.5))
    assert units.size >= 3
    is_vis1 = stimuli.label == k_vis1
    rewarded = is_vis1 & (stimuli.context == 1)
    other = is_vis1 & (stimuli.context == 2)
    ratios = []
    for u in units:
        spikes = with_stim.samples[with_stim.unit_index == u]
        lat = round(prof.latency_s[u] * FS)
        width = round(prof.duration_s[u] * FS)
        resp_r = _counts(spikes, stimuli.samples[rewarded] + lat, width).mean()
        resp_o = _counts(spikes, stimuli.samples[other] + lat, width).mean()
        base = prof.baseline_rate_hz[u] * prof.duration_s[u]
        ratios.append((resp_r - base) / (resp_o - base))
    expected = prof.context_gain[units]
    assert np.median(np.asarray(ratios) / expected) == pytest.approx(1.0, abs=0.25)


# --------------------------------------------------------------------------------------------
# a generated session
# --------------------------------------------------------------------------------------------


def test_session_has_visual_auditory_and_unresponsive_units(responsive_session: Truth) -> None:
    table = responsive_session.ephys.unit_responses
    assert table.schema == pl.Schema(UNIT_RESPONSES_SCHEMA)
    kinds = table.group_by("unit_index").agg(pl.col("modality").first())
    n_units = responsive_session.ephys.n_units
    assert (kinds["modality"] == "vis").sum() >= 8 and (kinds["modality"] == "aud").sum() >= 4
    assert kinds.height < n_units * 0.7
    assert set(table["stim_name"]) <= set(VISUAL_STIMULI) | set(AUDITORY_STIMULI)
    assert {"vis1", "vis2", "sound1", "sound2", "rf_grating", "rf_tone"} <= set(table["stim_name"])
    rows = table["unit_index"].to_numpy()
    np.testing.assert_array_equal(
        table["cluster_id"].to_numpy(), responsive_session.ephys.unit_cluster_id[rows]
    )


def test_responsive_units_fire_above_baseline_in_their_truth_window(
    responsive_session: Truth,
) -> None:
    """Every unit whose truth predicts a clear effect (z ≥ 5) shows mean difference > 3 sem, and
    the summed excess over all excited units matches the truth's expected added spikes."""
    ephys = responsive_session.ephys
    stims = _stim_table(responsive_session)
    spikes = _unit_spikes(ephys)
    table = ephys.unit_responses.filter(~pl.col("is_suppressed"))
    n_clear = 0
    observed_excess = expected_excess = 0.0
    for (unit,), rows in table.group_by("unit_index"):
        trials = _observed(stims.join(rows, on="stim_name"), spikes[int(unit)])
        onsets = trials["start_time"].to_numpy()
        lat, dur = rows["latency_s"][0], rows["duration_s"][0]
        resp = _counts(spikes[int(unit)], onsets + lat, dur)
        base = _counts(spikes[int(unit)], onsets - dur, dur)
        predicted_z, added = _predicted_z(trials)
        observed_excess += float(resp.sum() - base.sum())
        expected_excess += float(added.sum())
        if predicted_z >= 5:
            n_clear += 1
            assert _z(resp, base) > 3, (unit, rows["stim_name"].to_list(), predicted_z)
    assert n_clear >= 8  # RF gratings/tones drive a unit only near its RF centre / best frequency
    # Poisson noise of ~thousands of spikes: within 10 %
    assert observed_excess == pytest.approx(expected_excess, rel=0.1)


def test_unresponsive_units_show_no_response_with_nf_spike_counts(
    responsive_session: Truth,
) -> None:
    """``nf.spike_counts`` in fixed windows: responsive units up, the others flat."""
    import npc_frames as nf

    ephys = responsive_session.ephys
    sid = responsive_session.session_id
    spikes = _unit_spikes(ephys)
    units = pl.DataFrame(
        {
            "session_id": [sid] * ephys.n_units,
            "unit_id": [f"u{i}" for i in range(ephys.n_units)],
            "spike_times": [s.tolist() for s in spikes],
            # some units are present during part of the recording only (like obs_intervals)
            "obs_intervals": [[[s[0] - 1.0, s[-1] + 1.0]] for s in spikes],
        },
        schema={
            "session_id": pl.String,
            "unit_id": pl.String,
            "spike_times": pl.List(pl.Float64),
            "obs_intervals": pl.List(pl.List(pl.Float64)),
        },
    )
    stims = _stim_table(responsive_session)
    intervals = stims.select(
        pl.lit(sid).alias("session_id"), pl.col("trial_index").cast(pl.Int64), "start_time"
    )
    counts = nf.spike_counts(
        units,
        intervals,
        windows={
            f"{modality}_{kind}": ("start_time", *bounds)
            for modality, spans in FIXED_WINDOWS.items()
            for kind, bounds in spans.items()
        },
    )
    wide = (
        counts.with_columns(pl.col("count").cast(pl.Int64)).pivot(
            on="window", index=["unit_id", "trial_index"], values="count"
        )
    ).join(stims.select(pl.col("trial_index").cast(pl.Int64), "stim_name"), on="trial_index")
    # the numpy referee agrees with nf.spike_counts
    u0 = wide.filter(pl.col("unit_id") == "u0").sort("trial_index")
    np.testing.assert_array_equal(
        u0["vis_resp"].to_numpy(), _counts(spikes[0], stims["start_time"].to_numpy() + 0.04, 0.19)
    )
    table = ephys.unit_responses
    for modality, names in MODALITY_STIMULI.items():
        part = wide.filter(pl.col("stim_name").is_in(list(names)))
        diff = pl.col(f"{modality}_resp") - pl.col(f"{modality}_base")
        z = part.group_by("unit_id").agg(
            (diff.mean() / diff.std() * diff.count().sqrt()).alias("z")
        )
        z_of = dict(zip(z["unit_id"].to_list(), np.nan_to_num(z["z"].to_numpy()).tolist()))
        excited = set(
            table.filter((pl.col("modality") == modality) & ~pl.col("is_suppressed"))[
                "unit_index"
            ].to_list()
        )
        responsive = set(table["unit_index"].to_list())
        width = FIXED_WINDOWS[modality]["resp"][1] - FIXED_WINDOWS[modality]["resp"][0]
        n_clear = 0
        for i in range(ephys.n_units):
            if i in excited:
                rows = table.filter(pl.col("unit_index") == i)
                trials = _observed(stims.join(rows, on="stim_name"), spikes[i])
                predicted, _ = _predicted_z(trials, width)
                if predicted >= 5:
                    n_clear += 1
                    assert z_of[f"u{i}"] > 3, (modality, i, predicted)
            elif i not in responsive:
                # one-sided, ~100 comparisons: 3.5 sem keeps chance failures below 1 in 40
                assert z_of[f"u{i}"] < 3.5, (modality, i)
        assert n_clear >= 3


def test_phy_files_read_by_spikeinterface_equal_truth(responsive_session: Truth) -> None:
    import spikeinterface.extractors as se

    ephys = responsive_session.ephys
    raw = Path(responsive_session.raw_path)
    responsive = set(ephys.unit_responses["unit_index"].to_list())
    for probe in ephys.probes:
        folder = raw / probe.sorting_path
        sorting = se.read_phy(str(folder))
        rows = ephys.unit_rows(probe.letter)
        counts = sorting.count_num_spikes_per_unit(outputs="dict")
        assert {int(k): int(v) for k, v in counts.items()} == dict(
            zip(ephys.unit_cluster_id[rows].tolist(), ephys.unit_spike_count[rows].tolist())
        )
        for row in [r for r in rows.tolist() if r in responsive][:5]:
            train = sorting.get_unit_spike_train(int(ephys.unit_cluster_id[row]))
            np.testing.assert_array_equal(train, ephys.spike_sample[ephys.spike_unit == row])
        # quality metrics describe the written spikes, response spikes included
        qm = pl.read_csv(folder / "quality_metrics.csv")
        np.testing.assert_array_equal(qm["num_spikes"].to_numpy(), ephys.unit_spike_count[rows])
        dur = ephys.ap_stream(probe.letter).num_samples / FS
        np.testing.assert_allclose(
            qm["firing_rate"].to_numpy(), ephys.unit_spike_count[rows] / dur, rtol=1e-12
        )
        unit = np.asarray(ephys.spike_unit)
        sample = np.asarray(ephys.spike_sample)
        same = unit[1:] == unit[:-1]
        bad = same & (np.diff(sample) < REFRACTORY_S * FS)
        isi = np.bincount(unit[1:][bad], minlength=ephys.n_units)[rows]
        np.testing.assert_array_equal(qm["isi_violations_count"].to_numpy(), isi)


def test_truth_round_trips_the_response_table(responsive_session: Truth) -> None:
    loaded = Truth.load(responsive_session.truth_dir)
    assert loaded.ephys.unit_responses.equals(responsive_session.ephys.unit_responses)
    import json

    ephys = responsive_session.ephys
    back = EphysTruth.from_json_dict(json.loads(json.dumps(ephys.to_json_dict())), ephys.arrays())
    assert back.unit_responses.equals(ephys.unit_responses)


def test_stimulus_onsets_cover_task_and_rf_mapping_trials(responsive_session: Truth) -> None:
    onsets = stimulus_onsets(responsive_session.scripts)
    trials = responsive_session.script("DynamicRouting1")["truth"]["trials"]
    rf = responsive_session.script("RFMapping")["truth"]
    n_rf = len(rf["vis_rf_mapping"]["trial_index"]) + len(rf["aud_rf_mapping"]["trial_index"])
    assert len(onsets["start_time"]) == len(trials["stim_name"]) + n_rf
    dr = [i for i, c in enumerate(onsets["rewarded_modality"]) if c is not None]
    assert [onsets["stim_name"][i] for i in dr] == list(trials["stim_name"])
    np.testing.assert_array_equal(
        np.asarray(onsets["start_time"])[dr], np.asarray(trials["stim_start_time"])
    )
    assert set(onsets["stim_name"]) - {"catch"} <= set(VISUAL_STIMULI) | set(AUDITORY_STIMULI)


def test_same_seed_gives_identical_responses(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = dict(
        seed=3, minutes=2.0, n_probes=1, units_per_probe=12, video=False, clip_seconds=0.05
    )
    a = synth.make_session(tmp_path / "a", **kwargs)
    b = synth.make_session(tmp_path / "b", **kwargs)
    assert a.ephys.unit_responses.equals(b.ephys.unit_responses)
    assert a.ephys.unit_responses.height > 0
    np.testing.assert_array_equal(a.ephys.spike_time, b.ephys.spike_time)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stimuli", "field"),
    [
        ({"stim_name": ["vis1"]}, "stimuli.start_time"),
        ({"start_time": [1.0]}, "stimuli.stim_name"),
        ({"start_time": [1.0, np.nan], "stim_name": ["vis1", "vis2"]}, "stimuli.start_time"),
        ({"start_time": ["x"], "stim_name": ["vis1"]}, "stimuli.start_time"),
        ({"start_time": [1.0, 2.0], "stim_name": ["vis1"]}, "stimuli.stim_name"),
        (
            {"start_time": [1.0], "stim_name": ["vis1"], "rewarded_modality": ["smell"]},
            "stimuli.rewarded_modality",
        ),
        ([1.0, 2.0], "stimuli"),
    ],
)
def test_bad_stimuli_raise_parameter_error_naming_the_column(
    tmp_path: Path, stimuli: Any, field: str
) -> None:
    with pytest.raises(ParameterError) as info:
        make_ephys(
            tmp_path,
            rng=np.random.default_rng(0),
            date=datetime.date(2023, 8, 31),
            probe_letters=["A"],
            units_per_probe=2,
            recording_start_s=1.0,
            recording_stop_s=30.0,
            barcode_rising=np.empty(0),
            barcode_falling=np.empty(0),
            stimuli=stimuli,
        )
    assert info.value.field == field
    assert not (tmp_path / "sorting").exists()


def test_stimulus_onsets_with_mismatched_columns_raise() -> None:
    with pytest.raises(ParameterError) as info:
        StimulusOnsets(
            samples=np.zeros(3, np.int64),
            label=np.zeros(2, np.int64),
            context=np.zeros(3, np.int8),
            names=("vis1",),
        )
    assert info.value.field == "stimuli"


# --------------------------------------------------------------------------------------------
# tuning (RF gratings, RF tones) and opto-tagged units
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned_trains() -> tuple[SpikeTrains, StimulusOnsets]:
    rng = np.random.default_rng(11)
    names = ("opto", "rf_grating", "rf_tone")
    n = 3000
    onsets = np.sort(rng.choice(np.arange(4, 3590) * (int(FS) // 2), n, replace=False))
    label = rng.integers(0, 3, n)
    grid_x, grid_y = np.linspace(-800, 800, 6), np.linspace(-440, 440, 4)
    pos = np.column_stack([rng.choice(grid_x, n), rng.choice(grid_y, n)])
    pos[label != 1] = np.nan
    freq = np.where(label == 2, rng.choice(np.arange(4000, 16001, 1000), n), np.nan)
    stimuli = StimulusOnsets(
        samples=onsets.astype(np.int64),
        label=label.astype(np.int64),
        context=np.zeros(n, np.int8),
        names=names,
        position=pos,
        frequency_hz=freq.astype(np.float64),
    )
    spikes = simulate_spike_trains(
        np.random.default_rng(4), n_units=400, n_samples=int(1800 * FS), stimuli=stimuli
    )
    return spikes, stimuli


def test_tuned_units_gain_spikes_by_their_gaussian_tuning(tuned_trains: Any) -> None:
    spikes, stimuli = tuned_trains
    prof = spikes.responses
    feats = stimuli.features()
    # units present throughout (partially present units respond only while present)
    bounds = np.searchsorted(spikes.unit_index, np.arange(spikes.n_units + 1))
    first = spikes.samples[np.minimum(bounds[:-1], spikes.samples.size - 1)]
    last = spikes.samples[np.maximum(bounds[1:] - 1, 0)]
    whole = (first < 30 * FS) & (last > 1770 * FS)
    for k, name in ((1, "rf_grating"), (2, "rf_tone")):
        sel = stimuli.label == k
        tuning = prof.tuning(name, feats[sel])  # (units, trials of the label)
        expected = prof.rate_hz[:, k] * prof.duration_s * tuning.sum(axis=1)
        expected = np.nan_to_num(expected)
        units = np.flatnonzero((expected > 30) & whole)
        assert units.size >= 10
        got = prof.n_changed[units, k]
        # Poisson counts (4 sd), a few lost to the refractory rule
        assert np.all(np.abs(got - expected[units]) < 4 * np.sqrt(expected[units]) + 3)
    table = prof.table()
    vis = table.filter((pl.col("stim_name") == "rf_grating") & ~pl.col("is_suppressed"))
    assert vis["rf_x"].is_between(-800, 800).all() and vis["rf_sigma"].is_between(150, 300).all()
    aud = table.filter((pl.col("stim_name") == "rf_tone") & ~pl.col("is_suppressed"))
    assert aud["best_freq_hz"].is_between(4000, 16000).all()


def test_opto_tagged_units_fire_in_a_short_window_after_pulses(tuned_trains: Any) -> None:
    spikes, stimuli = tuned_trains
    prof = spikes.responses
    opto = np.flatnonzero(prof.modality == 3)
    assert abs(opto.size / 400 - 0.10) < 0.05
    assert np.all((prof.latency_s[opto] >= 0.002) & (prof.latency_s[opto] <= 0.008))
    assert np.all((prof.duration_s[opto] >= 0.001) & (prof.duration_s[opto] <= 0.004))
    pulses = stimuli.samples[stimuli.label == 0]
    # spikes per pulse = rate · window = the drawn reliability (0.3–0.9)
    reliability = prof.rate_hz[opto, 0] * prof.duration_s[opto]
    assert np.all((reliability >= 0.3) & (reliability <= 0.9))
    bounds = np.searchsorted(spikes.unit_index, np.arange(spikes.n_units + 1))
    first = spikes.samples[np.minimum(bounds[:-1], spikes.samples.size - 1)]
    last = spikes.samples[np.maximum(bounds[1:] - 1, 0)]
    whole = ((first < 30 * FS) & (last > 1770 * FS))[opto]
    got = (prof.n_changed[opto, 0] / pulses.size)[whole]
    # Poisson spikes per pulse, minus those dropped by the refractory rule inside the short
    # window: between P(≥ 1 spike) and the mean
    r = reliability[whole]
    assert whole.sum() >= 10
    assert np.all((got <= r + 0.05) & (got >= 1 - np.exp(-r) - 0.08)), (got, r)
    assert not (prof.rate_hz[prof.modality != 3, 0] > 0).any()
