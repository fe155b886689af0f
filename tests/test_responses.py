"""``unit_responses``: statistics against scipy / brute force, classification against the truth.

Referees: ``scipy.stats.wilcoxon`` on the same counts, a brute-force pairwise ROC AUC, and the
synthetic generator's response truth (which units respond to which stimulus, their latencies,
context gains and opto tagging).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy import stats

import npc_frames as nf
import npc_frames.synth as synth
from npc_frames.errors import ParameterError
from npc_frames.responses import (
    ResponseWindows,
    auc_from_counts,
    compute_unit_responses,
    wilcoxon_from_counts,
)

# truth stim_name -> unit_responses stimulus
STIMULUS_OF = {
    "vis1": "vis_target",
    "vis2": "vis_nontarget",
    "sound1": "aud_target",
    "sound2": "aud_nontarget",
    "rf_grating": "rf_grating",
    "rf_flash": "rf_flash",
    "rf_tone": "rf_tone",
    "rf_am_noise": "rf_am_noise",
    "opto": "opto",
}


# ----------------------------------------------------------------------------- statistics
def _random_counts(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_u, n_t = 60, 80
    lam = rng.uniform(0.2, 8.0, (n_u, 1))
    base = rng.poisson(lam, (n_u, n_t))
    resp = rng.poisson(lam * rng.uniform(0.8, 1.6, (n_u, 1)), (n_u, n_t))
    valid = rng.uniform(size=(n_u, n_t)) > 0.1
    valid[0] = True
    valid[1, 5:] = False  # few trials
    return resp, base, valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wilcoxon_equals_scipy_approx_on_the_same_counts(seed: int) -> None:
    resp, base, valid = _random_counts(seed)
    w, z, p = wilcoxon_from_counts(resp, base, valid)
    for i in range(resp.shape[0]):
        r, b = resp[i, valid[i]], base[i, valid[i]]
        if np.all(r == b):
            assert p[i] == 1.0
            continue
        ref = stats.wilcoxon(
            r, b, zero_method="wilcox", correction=False, method="approx", alternative="two-sided"
        )
        assert w[i] == pytest.approx(ref.statistic, abs=1e-9)
        assert p[i] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
        # z sign: positive when the ranks of rises outweigh those of falls
        d = r - b
        ranks = stats.rankdata(np.abs(d[d != 0]))
        w_plus = ranks[d[d != 0] > 0].sum()
        assert np.sign(z[i]) == np.sign(w_plus - ranks.sum() / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_brute_force_pairwise_comparison(seed: int) -> None:
    resp, base, valid = _random_counts(seed)
    auc = auc_from_counts(resp, base, valid)
    for i in range(resp.shape[0]):
        r, b = resp[i, valid[i]], base[i, valid[i]]
        gt = (r[:, None] > b[None, :]).mean()
        eq = (r[:, None] == b[None, :]).mean()
        assert auc[i] == pytest.approx(gt + 0.5 * eq, abs=1e-12)


def test_auc_and_wilcoxon_of_rows_without_valid_trials() -> None:
    r = np.array([[1, 2, 3]])
    valid = np.zeros((1, 3), bool)
    assert np.isnan(auc_from_counts(r, r, valid)[0])
    w, z, p = wilcoxon_from_counts(r, r * 0, valid)
    assert (w[0], z[0], p[0]) == (0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(baseline=(-0.2, 0.0), response=(0.0, 0.25), bin_s=0.005, run_bins=3, bin_alpha=0.01),
        dict(baseline=(0.0, -0.2), response=(0.2, 0.0), bin_s=0.005, run_bins=3, bin_alpha=0.01),
        dict(baseline=(-0.2, 0.0), response=(0.0, 0.2), bin_s=0.0, run_bins=3, bin_alpha=0.01),
        dict(baseline=(-0.2, 0.0), response=(0.0, 0.2), bin_s=0.005, run_bins=0, bin_alpha=0.01),
    ],
)
def test_bad_windows_raise_parameter_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ParameterError) as info:
        ResponseWindows(**kwargs)
    assert info.value.field is not None and info.value.field.startswith("windows")


# ------------------------------------------------------------------ a synthetic opto session
@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A 30-minute opto session (two RF-mapping blocks), one probe of 150 units, converted."""
    root = tmp_path_factory.mktemp("responses")
    truth = synth.make_session(
        root / "raw",
        seed=21,
        minutes=30.0,
        n_probes=1,
        units_per_probe=150,
        video=False,
        clip_seconds=0.1,
        opto=True,
    )
    cache = str(root / "cache")
    catalog = nf.convert([truth.raw_path], cache=cache, executor=None, progress=False)
    needed = ["units", "trials", "vis_rf_mapping", "aud_rf_mapping", "optotagging"]
    failed = catalog.filter(pl.col("status") == "failed", pl.col("component").is_in(needed))
    assert failed.is_empty(), failed["error"].to_list()
    return truth, cache


def _unit_ids(truth: Any) -> list[str]:
    e = truth.ephys
    return [
        f"{truth.session_id}_{p}-{c}"
        for p, c in zip(np.asarray(e.unit_probe).astype(str), e.unit_cluster_id, strict=True)
    ]


def _truth_pairs(truth: Any) -> pl.DataFrame:
    """Return the truth per (unit_id, stimulus) it responds to, with the realized effect size."""
    ids = _unit_ids(truth)
    t = truth.ephys.unit_responses
    return t.with_columns(
        pl.Series("unit_id", [ids[i] for i in t["unit_index"].to_list()]),
        pl.col("stim_name").replace_strict(STIMULUS_OF).alias("stimulus"),
    )


@pytest.fixture(scope="module")
def responses(session: Any) -> pl.DataFrame:
    _, cache = session
    return nf.unit_responses(cache=cache)


def test_significance_classifies_truly_responsive_units(
    session: Any, responses: pl.DataFrame
) -> None:
    """Sensitivity over well-driven truth pairs (≥ 4 expected z from the realized added spikes)
    and specificity over pairs with no response in the truth."""
    truth, _ = session
    pairs = _truth_pairs(truth)
    r = responses.join(
        pairs.select("unit_id", "stimulus", "n_spikes_changed", "baseline_rate_hz", "duration_s"),
        on=["unit_id", "stimulus"],
        how="left",
    )
    width = (r["response_stop"] - r["response_start"]).to_numpy()
    n = r["n_trials"].to_numpy().astype(float)
    added = r["n_spikes_changed"].fill_null(0).to_numpy() / np.maximum(n, 1)
    base = r["baseline_rate_hz"].to_numpy() * width  # observed baseline counts per trial
    z_pred = np.abs(added) / np.sqrt(
        np.maximum(2 * np.nan_to_num(base) + np.abs(added), 1e-9) / np.maximum(n, 1)
    )
    truly = r["n_spikes_changed"].is_not_null().to_numpy()
    driven = truly & (z_pred >= 4)
    called = r["is_responsive"].to_numpy()
    sensitivity = called[driven].mean()
    specificity = 1 - called[~truly & (n >= 10)].mean()
    print(
        f"\nunit_responses vs truth: sensitivity {sensitivity:.3f} over {driven.sum()} "
        f"well-driven pairs, specificity {specificity:.3f} over {(~truly & (n >= 10)).sum()} pairs"
    )
    assert driven.sum() >= 30
    assert sensitivity >= 0.9
    assert specificity >= 0.95


def test_latency_within_10_ms_of_the_truth(session: Any, responses: pl.DataFrame) -> None:
    truth, _ = session
    pairs = _truth_pairs(truth).filter(~pl.col("is_suppressed"))
    r = responses.join(pairs, on=["unit_id", "stimulus"]).filter(
        pl.col("latency_s").is_not_null(),
        pl.col("stimulus").is_in(["vis_target", "aud_target", "rf_flash", "opto"]),
    )
    # well driven at the latency bins' resolution: the added spikes per bin (over all trials)
    # are at least 3 and 3 sd of the baseline count per bin
    r = r.with_columns(
        bin_s=pl.when(pl.col("stimulus") == "opto").then(0.001).otherwise(0.005)
    ).with_columns(
        per_bin=pl.col("n_spikes_changed") * pl.col("bin_s") / pl.col("duration_s"),
        lam=pl.col("baseline_rate_hz") * pl.col("bin_s") * pl.col("n_trials"),
    )
    r = r.filter((pl.col("per_bin") >= 3) & (pl.col("per_bin") >= 3 * pl.col("lam").sqrt()))
    err = (r["latency_s"] - r["latency_s_right"]).abs().to_numpy()
    print(
        f"\nlatency: {r.height} units, median |error| {np.median(err) * 1e3:.1f} ms, "
        f"{np.mean(err <= 0.010):.2f} within 10 ms"
    )
    assert r.height >= 10
    assert np.mean(err <= 0.010) >= 0.9


def test_context_modulation_follows_the_truth_gain(session: Any, responses: pl.DataFrame) -> None:
    truth, _ = session
    pairs = _truth_pairs(truth).filter(~pl.col("is_suppressed"), pl.col("stimulus") == "vis_target")
    r = responses.join(pairs, on=["unit_id", "stimulus"]).filter(pl.col("is_responsive"))
    gained = r.filter(pl.col("context_gain") > 1.5)["context_modulation"].to_numpy()
    plain = r.filter(pl.col("context_gain") == 1.0)["context_modulation"].to_numpy()
    assert gained.size >= 3 and plain.size >= 3
    assert np.nanmean(gained) > np.nanmean(plain) + 0.05
    assert abs(np.nanmedian(plain)) < 0.1


def test_rows_cover_every_unit_and_stimulus_present(session: Any, responses: pl.DataFrame) -> None:
    truth, cache = session
    n_units = truth.ephys.n_units
    assert set(responses["stimulus"]) == set(STIMULUS_OF.values())
    assert responses.height == n_units * len(STIMULUS_OF)
    # rates equal plain counts of the cached spikes for one unit and stimulus
    units = nf.scan_units(cache=cache).collect()
    trials = nf.scan_trials(cache=cache).collect().filter(pl.col("is_vis_target"))
    row = responses.filter(pl.col("stimulus") == "vis_target").sort("response_rate_hz")[-1]
    spikes = np.asarray(units.filter(pl.col("unit_id") == row["unit_id"][0])["spike_times"][0])
    t = trials["stim_start_time"].to_numpy()
    c = np.searchsorted(spikes, t + 0.25, "left") - np.searchsorted(spikes, t, "left")
    assert row["response_rate_hz"][0] == pytest.approx(c.mean() / 0.25)


def _written_at(cache: Any, sid: str) -> Any:
    """Return when the catalog says the session's unit_responses were last written."""
    cat = nf.read_catalog(cache).filter(pl.col("component") == "unit_responses")
    return cat.filter(pl.col("session_id") == sid)["written_at"][0]


def test_cached_result_is_reused_until_an_input_changes(
    session: Any, responses: pl.DataFrame
) -> None:
    truth, cache = session
    sid = str(truth.session_id)

    def stamp() -> Any:
        return _written_at(cache, sid)

    first = stamp()
    again = nf.unit_responses(cache=cache)
    assert stamp() == first and again.equals(responses)
    # a rewritten trials file (new mtime) changes the fingerprint: recomputed, same values
    path = next(Path(cache, "trials").glob("session_id=*/data.parquet"))
    copy = path.with_suffix(".bak")
    shutil.copy(path, copy)
    os.replace(copy, path)
    os.utime(path, (1e9, 1e9))
    redo = nf.unit_responses(cache=cache)
    assert stamp() > first
    assert redo.equals(responses)
    cat = nf.read_catalog(cache).filter(pl.col("component") == "unit_responses")
    assert cat["status"].to_list() == ["ok"] and cat["rows"][0] == responses.height


def test_a_changed_output_schema_recomputes_the_cached_result(
    session: Any, responses: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a library upgrade that adds a result column must recompute, not serve the old file (whose
    # scan would then fail: the column is missing) although no input changed
    import npc_frames.responses as resp

    truth, cache = session
    sid = str(truth.session_id)

    def stamp() -> Any:
        return _written_at(cache, sid)

    nf.unit_responses(cache=cache)
    first = stamp()
    real = resp.compute_unit_responses

    def upgraded(*args: Any, **kw: Any) -> pl.DataFrame:
        return real(*args, **kw).with_columns(upgrade_flag=pl.lit(True))

    import npc_frames.derived as derived

    real_derived = derived.compute_derived

    def with_new_column(component: str, target: str, params: Any, schema: Any, **kw: Any) -> Any:
        return real_derived(
            component, target, params, {**schema, "upgrade_flag": pl.Boolean()}, **kw
        )

    monkeypatch.setattr(resp, "compute_unit_responses", upgraded)
    monkeypatch.setattr(derived, "compute_derived", with_new_column)
    redo = nf.unit_responses(cache=cache)
    assert stamp() > first
    assert redo["upgrade_flag"].all()
    assert redo.drop("upgrade_flag").equals(responses)
    second = stamp()
    nf.unit_responses(cache=cache)  # unchanged again
    assert stamp() == second


def test_compute_without_interval_tables_gives_no_rows(session: Any) -> None:
    _, cache = session
    units = nf.scan_units(cache=cache).collect()
    out = compute_unit_responses(units, {})
    assert out.is_empty() and out.columns[0] == "session_id"


def test_dask_local_cluster_equals_serial_run(
    session: Any, responses: pl.DataFrame, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    _, cache = session
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    shutil.rmtree(copy / "unit_responses")
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        out = nf.unit_responses(cache=str(copy), executor=client.get_executor(), overwrite=True)
    assert out.equals(responses)


# --------------------------------------------------------------------------------- RF maps
@pytest.fixture(scope="module")
def vis_maps(session: Any) -> pl.DataFrame:
    _, cache = session
    return nf.vis_rf_maps(cache=cache)


def test_vis_rf_centres_within_one_grid_step_for_well_driven_units(
    session: Any, vis_maps: pl.DataFrame
) -> None:
    truth, _ = session
    pairs = _truth_pairs(truth).filter(pl.col("stimulus") == "rf_grating", ~pl.col("is_suppressed"))
    m = vis_maps.join(pairs, on="unit_id")
    # well driven: ≥ 100 added spikes over the grating trials, a significant map
    good = m.filter(pl.col("n_spikes_changed") >= 100, pl.col("is_significant"))
    grid_x = np.asarray(vis_maps["grid_x"][0])
    grid_y = np.asarray(vis_maps["grid_y"][0])
    step_x, step_y = np.diff(grid_x).min(), np.diff(grid_y).min()
    dx = (good["rf_x"] - good["rf_x_right"]).abs().to_numpy()
    dy = (good["rf_y"] - good["rf_y_right"]).abs().to_numpy()
    within = (dx <= step_x) & (dy <= step_y)
    print(f"\nvis RF centres: {within.mean():.2f} of {good.height} well-driven units within a step")
    assert good.height >= 5
    assert within.mean() >= 0.9
    # significance: well-driven tuned units are significant, untuned units mostly not
    untuned_ids = set(vis_maps["unit_id"]) - set(pairs["unit_id"])
    untuned = vis_maps.filter(pl.col("unit_id").is_in(untuned_ids))
    assert untuned["is_significant"].mean() <= 0.05
    driven = m.filter(pl.col("n_spikes_changed") >= 100)
    assert driven["is_significant"].mean() >= 0.8


def test_vis_rf_map_rates_equal_plain_counts(session: Any, vis_maps: pl.DataFrame) -> None:
    _, cache = session
    units = nf.scan_units(cache=cache).collect()
    rf = nf.scan_vis_rf_mapping(cache=cache).collect().filter(pl.col("is_small_field_grating"))
    row = vis_maps.sort("rf_amplitude_hz", nulls_last=True)[-1]
    spikes = np.asarray(units.filter(pl.col("unit_id") == row["unit_id"][0])["spike_times"][0])
    t = rf["stim_start_time"].to_numpy()
    c = np.searchsorted(spikes, t + 0.25) - np.searchsorted(spikes, t)
    gx, gy = np.asarray(row["grid_x"][0]), np.asarray(row["grid_y"][0])
    ix = np.searchsorted(gx, rf["grating_x"].to_numpy())
    iy = np.searchsorted(gy, rf["grating_y"].to_numpy())
    expected = np.array(
        [c[(iy * gx.size + ix) == k].mean() / 0.25 for k in range(gx.size * gy.size)]
    )
    np.testing.assert_allclose(np.asarray(row["rate_map"][0]), expected)


def test_gaussian_fit_recovers_a_known_surface() -> None:
    from npc_frames.rf_maps import fit_gaussian_2d

    gx, gy = np.linspace(-800, 800, 6), np.linspace(-440, 440, 4)
    px, py = (a.ravel() for a in np.meshgrid(gx, gy))
    centres = np.array([[-300.0, 100.0], [500.0, -200.0], [0.0, 0.0]])
    sig = np.array([250.0, 200.0, 300.0])
    maps = 3 + 20 * np.exp(
        -((px[None] - centres[:, :1]) ** 2 + (py[None] - centres[:, 1:]) ** 2)
        / (2 * sig[:, None] ** 2)
    )
    fit = fit_gaussian_2d(maps, px, py, n_grid=65, n_sigma=40)
    np.testing.assert_allclose(fit["x"], centres[:, 0], atol=30)
    np.testing.assert_allclose(fit["y"], centres[:, 1], atol=30)
    np.testing.assert_allclose(fit["sigma"], sig, rtol=0.1)
    assert np.all(fit["r_squared"] > 0.98)


def test_shuffle_p_values_are_uniform_without_structure() -> None:
    from npc_frames.rf_maps import condition_maps

    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, (400, 240)).astype(float)
    cond = np.tile(np.arange(24), 10)
    _, n_per, p = condition_maps(counts, cond, 24, n_shuffles=200)
    assert np.all(n_per == 10)
    assert abs(np.mean(p < 0.05) - 0.05) < 0.03
    counts[:10, cond == 3] += 4  # a strong condition effect
    _, _, p2 = condition_maps(counts, cond, 24, n_shuffles=200)
    assert np.all(p2[:10] < 0.01)


def test_aud_best_frequency_near_the_truth(session: Any) -> None:
    truth, cache = session
    maps = nf.aud_rf_maps(cache=cache)
    pairs = _truth_pairs(truth).filter(pl.col("stimulus") == "rf_tone", ~pl.col("is_suppressed"))
    good = maps.join(pairs, on="unit_id").filter(
        pl.col("n_spikes_changed") >= 60, pl.col("is_significant")
    )
    octs = np.abs(np.log2(good["best_freq_hz"].to_numpy() / good["best_freq_hz_right"].to_numpy()))
    print(f"\naud best frequency: {np.mean(octs <= 0.5):.2f} of {good.height} within 0.5 octave")
    assert good.height >= 3
    assert np.mean(octs <= 0.5) >= 0.8


# ------------------------------------------------------------------------------ opto tagging
def test_opto_tagging_recall_precision_and_latency(session: Any) -> None:
    truth, cache = session
    tags = nf.opto_tagging(cache=cache)
    pairs = _truth_pairs(truth).filter(pl.col("stimulus") == "opto")
    is_true = tags["unit_id"].is_in(pairs["unit_id"].implode()).to_numpy()
    # recall over units the laser actually drove (≥ 0.2 added spikes per pulse: a unit present
    # only outside the OptoTagging run has none); precision over every call
    driven = pairs.filter(pl.col("n_spikes_changed") >= 0.2 * tags["n_pulses"].max())
    is_driven = tags["unit_id"].is_in(driven["unit_id"].implode()).to_numpy()
    called = tags["is_opto_tagged"].to_numpy()
    recall = called[is_driven].mean()
    precision = is_true[called].mean()
    j = tags.join(pairs, on="unit_id").filter(pl.col("is_opto_tagged"))
    # truth latency: start of the uniform spike window; the first spike lies inside it
    err = (j["latency_s"] - (j["latency_s_right"] + j["duration_s"] / 2)).abs().to_numpy()
    print(
        f"\nopto tagging: recall {recall:.2f} of {is_driven.sum()} driven units ({is_true.sum()} "
        f"opto units in truth), precision "
        f"{precision:.2f} of {called.sum()} calls; latency median |error| "
        f"{np.median(err) * 1e3:.1f} ms"
    )
    assert is_driven.sum() >= 5
    assert recall >= 0.8 and precision >= 0.9
    assert np.all(err <= 0.010)


def test_rf_map_figures_draw_the_stored_maps(
    session: Any, vis_maps: pl.DataFrame, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    from npc_frames import plot

    truth, cache = session
    best = vis_maps.sort("rf_amplitude_hz", nulls_last=True)[-1]
    fig = plot.rf_map(best["unit_id"][0], cache=cache)
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(
        np.asarray(image).ravel(), np.asarray(best["rate_map"][0]), rtol=1e-12
    )
    grid = plot.rf_grid(str(truth.session_id), maps=vis_maps)
    n_sig = int(vis_maps["is_significant"].sum())
    assert sum(1 for ax in grid.axes if ax.images) == min(n_sig, 100)
    assert Path(plot.save(grid, tmp_path / "grid.png")).stat().st_size > 0
    with pytest.raises(ParameterError):
        plot.rf_map("nope", maps=vis_maps)
