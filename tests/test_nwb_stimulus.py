"""NWB stimulus objects of a synthetic session: grating and sound templates, opto sites and laser
commands, derived tables in /analysis. Values are checked against the stim files' saved sounds,
DynamicRoutingTask's own sound code, an independent grating formula, the synthetic truth and the
cached frames; the file must pass pynwb validation and nwbinspector and read back equal."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import polars as pl
import pytest

from helpers.nidaq_files import _write_nidaq
from helpers.nwb_frames import inspector_messages, pynwb_frame
from npc_frames import nwb_stimulus as ns
from npc_frames.memo import clear_caches
from npc_frames.nwb import to_nwb, validate_nwb, write_nwb

pytestmark = pytest.mark.slow
pynwb = pytest.importorskip("pynwb")
warnings.filterwarnings("ignore", message=".*ndx-events.*")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A converted opto session whose task saved its sounds, with laser commands on the NI-DAQ."""
    import npc_frames as nf
    from npc_frames.cache import convert, read_session

    tmp = tmp_path_factory.mktemp("nwb_stim")
    truth = nf.make_session(
        tmp,
        seed=5,
        minutes=2.0,
        n_probes=1,
        units_per_probe=8,
        video=False,
        opto=True,
        save_sound_array=True,
        clip_seconds=0.05,
    )
    cache = tmp / "cache"
    catalog = convert([truth.raw_path], cache, progress=False)
    assert catalog.filter(pl.col("status") == "failed").is_empty()
    sid = str(truth.session_id)
    frames = read_session(sid, cache)
    # the laser command of every optotagging trial: its voltage from onset to offset
    root = Path(truth.raw_path)
    tag_file = next((root / "behavior").glob("OptoTagging_*.hdf5"))
    with h5py.File(tag_file) as f:
        volts = np.asarray(f["trialOptoVoltage"][()], dtype=float).ravel()
    tag = frames["optotagging"]
    events = []
    for i, (t0, t1) in enumerate(tag.select("stim_start_time", "stim_stop_time").iter_rows()):
        v = volts[int(tag["trial_index"][i])]
        events.append((5, float(t0), np.full(int((t1 - t0) * 30000), v), 30000.0))
    with h5py.File(_stim_file(root, "DynamicRouting1")) as f:
        task_volts = np.asarray(f["trialOptoVoltage"][()], dtype=float)
    task_volts = task_volts.reshape(task_volts.shape[0], -1)[:, 0]
    opto = frames["trials"].filter(pl.col("is_opto"))
    for i, t0, t1 in opto.select("trial_index", "opto_start_time", "opto_stop_time").iter_rows():
        events.append((5, float(t0), np.full(int((t1 - t0) * 30000), task_volts[i]), 30000.0))
    stream = next(s for s in truth.ephys.streams if s.kind == "nidaq")
    _write_nidaq(root, stream, events)
    clear_caches()  # the NI-DAQ files changed under this process (stream lengths are memoized)
    nwb = to_nwb(sid, cache=cache, stimulus=True, derived=True)
    path = write_nwb(nwb, tmp / f"{sid}.nwb")
    derived = ns.derived_frames(sid, cache, compute=False)
    return {"truth": truth, "frames": frames, "path": path, "derived": derived, "root": root}


def _stim_file(root: Path, script: str) -> Path:
    return next((root / "behavior").glob(f"{script}_*.hdf5"))


def _trial_list(comments: str) -> list[int]:
    return [int(t) for t in comments.split(":", 1)[1].split(",")]


# ------------------------------------------------------------------------------------ validity
def test_file_with_stimulus_objects_passes_pynwb_validation(session: dict[str, Any]) -> None:
    assert validate_nwb(session["path"]) == []


def test_file_with_stimulus_objects_passes_nwbinspector(session: dict[str, Any]) -> None:
    pytest.importorskip("nwbinspector")
    bad = [
        (m.check_function_name, m.location, m.message)
        for m in inspector_messages(session["path"])
        if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION", "ERROR")
    ]
    assert not bad


# -------------------------------------------------------------------------------------- sounds
def test_sound_templates_equal_the_saved_trialSoundArray_of_each_trial(
    session: dict[str, Any],
) -> None:
    checked = 0
    with pynwb.NWBHDF5IO(str(session["path"]), "r") as io:
        nwb = io.read()
        for script in ("DynamicRouting1", "RFMapping"):
            with h5py.File(_stim_file(session["root"], script)) as f:
                saved = [np.asarray(a, dtype=float) for a in f["trialSoundArray"][()]]
            templates = [
                t for n, t in nwb.stimulus_template.items() if n.startswith(f"{script}_sound")
            ]
            assert templates
            covered = set()
            for t in templates:
                data = np.asarray(t.data[:], dtype=np.float64)
                assert t.rate == 48000.0
                for i in _trial_list(t.comments):
                    np.testing.assert_allclose(data, saved[i], rtol=0, atol=1e-6)
                    covered.add(i)
                    checked += 1
            assert covered == {i for i, a in enumerate(saved) if a.size}
    assert checked > 20


def test_rebuilt_sounds_equal_DynamicRoutingTask_makeSoundArray(
    session: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without saved arrays the templates are rebuilt; the task's own TaskUtils is the reference."""
    TaskUtils = pytest.importorskip("DynamicRoutingTask.TaskUtils")
    from npc_frames.components import intervals
    from npc_frames.readers.stim import open_stim

    monkeypatch.setattr(intervals, "_saved_sound_arrays", lambda stim, n: [None] * n)
    path = _stim_file(session["root"], "DynamicRouting1")
    with open_stim(str(path)) as stim:
        templates = ns.sound_templates(stim, "DynamicRouting1")
    with h5py.File(path) as f:
        kind = f["trialSoundType"].asstr()[()]
        dur, vol, am = (f[k][()] for k in ("trialSoundDur", "trialSoundVolume", "trialSoundAM"))
        freq, seed = f["trialSoundFreq"][()], f["trialSoundSeed"][()]
    assert templates and not any(t.saved for t in templates)
    for t in templates:
        for i in t.trials:
            f_i = freq[i] if kind[i] != "tone" else freq[i][0]
            want = TaskUtils.makeSoundArray(
                kind[i], 48000, dur[i], 0.005, vol[i], f_i, am[i], int(seed[i])
            )
            np.testing.assert_allclose(t.waveform, want, rtol=0, atol=1e-9)
    # the sounds of the synthetic truth: one AM frequency per target
    truth = session["truth"].script("DynamicRouting1")["truth"]["trials"]
    got_am = {float(am[i]) for t in templates for i in t.trials}
    assert got_am <= {12.0, 70.0} and got_am
    assert sum(len(t.trials) for t in templates) == sum(
        1 for s in truth["stim_name"] if "sound" in s
    )


# ------------------------------------------------------------------------------------ gratings
def _independent_grating(size: float, sf: float, ori: float, phase: float, tex: str) -> np.ndarray:
    """A sinusoidal / square grating evaluated on a meshgrid with a rotation matrix (not our code):
    psychopy's texture is sin(2π u − π/2) with u = sf·x′ − phase + ½ along the rotated x axis."""
    n = round(size)
    xs = np.linspace(-(n - 1) / 2, (n - 1) / 2, n)
    gx, gy = np.meshgrid(xs, -xs)  # y up
    a = np.radians(-ori)  # clockwise rotation of the stimulus
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    local = np.einsum("ij,jkl->ikl", rot.T, np.stack([gx, gy]))
    u = sf * local[0] - phase + 0.5
    lum = np.sin(2 * np.pi * u - np.pi / 2)
    if tex == "sqr":
        lum = np.where(lum > 0, 1.0, -1.0)
    r = np.sqrt(gx**2 + gy**2) / (size / 2)
    fringe = 0.08
    mask = np.clip((1 - r) / fringe, 0, 1)
    mask = np.sin(mask * np.pi / 2) ** 2  # raised cosine over the outer 8 % of the radius
    return (mask * lum + 1) / 2 * 255


def test_psychopy_is_not_installed_so_the_task_grating_cannot_render() -> None:
    """DynamicRoutingTask's grating is psychopy's GratingStim (OpenGL); its TaskControl imports
    psychopy at module level. If this starts failing, compare against GratingStim instead."""
    with pytest.raises(ImportError, match="psychopy"):
        import DynamicRoutingTask.TaskControl  # noqa: F401


def test_grating_templates_match_an_independent_grating_formula(session: dict[str, Any]) -> None:
    seen = 0
    with pynwb.NWBHDF5IO(str(session["path"]), "r") as io:
        nwb = io.read()
        for name, images in nwb.stimulus_template.items():
            if "_grating_" not in name:
                continue
            script = name.split("_")[0]
            with h5py.File(_stim_file(session["root"], script)) as f:
                ppd = (
                    0.5
                    * 1920
                    / np.degrees(np.arctan(0.5 * f["monWidth"][()] / f["monDistance"][()]))
                )
                size = f["gratingSize"][()] * ppd
                size = float(int(size)) if script == "DynamicRouting1" else size
                sf = f["gratingSF"][()] / ppd
                tf = float(f["gratingTF"][()])
                tex = "sqr" if script == "DynamicRouting1" else "sin"
            ori = float(name.split("_ori")[1].split("_")[0].replace("m", "-"))
            phase0 = float(name.split("_phase")[1].split("_")[0])
            for k, ref in enumerate(images.order_of_images.data):
                got = np.asarray(ref.data[:], dtype=float)
                want = _independent_grating(size, sf, ori, phase0 + k * tf / 60.0, tex)
                diff = np.abs(got - want)
                if tex == "sin":
                    assert diff.max() <= 1.0
                else:  # a pixel centre exactly on a bar edge may round either way
                    assert np.mean(diff > 1.0) < 1e-3
                seen += 1
    assert seen >= 30


def test_grating_templates_are_the_orientations_the_truth_showed(session: dict[str, Any]) -> None:
    truth = session["truth"]
    dr = truth.script("DynamicRouting1")["truth"]["trials"]
    want_dr = {0.0 if s == "vis1" else 90.0 for s in dr["stim_name"] if "vis" in s}
    rf = session["frames"]["vis_rf_mapping"].filter(pl.col("is_small_field_grating"))
    want_rf = set(rf["grating_orientation"].unique().to_list())
    with pynwb.NWBHDF5IO(str(session["path"]), "r") as io:
        names = list(io.read().stimulus_template)
    got = {
        s: {float(n.split("_ori")[1].split("_")[0]) for n in names if n.startswith(f"{s}_grating")}
        for s in ("DynamicRouting1", "RFMapping")
    }
    assert got["DynamicRouting1"] == want_dr
    assert got["RFMapping"] == want_rf


def test_grating_templates_are_one_per_distinct_stimulus_and_compressed(
    session: dict[str, Any],
) -> None:
    with h5py.File(session["path"]) as f:
        group = f["stimulus/templates"]
        gratings = [k for k in group if "_grating_" in k]
        stored = sum(
            group[k][img].id.get_storage_size()
            for k in gratings
            for img in group[k]
            if img.startswith("frame")
        )
        raw = sum(
            group[k][img].size for k in gratings for img in group[k] if img.startswith("frame")
        )
    rf_oris = session["frames"]["vis_rf_mapping"]["grating_orientation"].drop_nans().n_unique()
    assert len([g for g in gratings if g.startswith("RFMapping")]) == rf_oris
    assert stored < raw / 2


# ---------------------------------------------------------------------------------------- opto
def test_one_opto_site_per_device_and_location_of_the_truth(session: dict[str, Any]) -> None:
    frames = session["frames"]
    want = set(frames["optotagging"]["location"].unique().to_list())
    want |= set(frames["trials"].filter(pl.col("is_opto"))["opto_label"].unique().to_list())
    with pynwb.NWBHDF5IO(str(session["path"]), "r") as io:
        nwb = io.read()
        sites = dict(nwb.ogen_sites)
        assert {s.location for s in sites.values()} == want
        assert {s.device.name for s in sites.values()} == {"laser_488"}
        assert {s.excitation_lambda for s in sites.values()} == {488.0}
        referenced = {s.site.name for s in nwb.stimulus.values() if hasattr(s, "site")}
        assert referenced == set(sites)


def test_nidaq_laser_command_is_written_in_watts_by_the_power_calibration(
    session: dict[str, Any],
) -> None:
    frames = session["frames"]
    tag = frames["optotagging"].select(
        "location", start="stim_start_time", stop="stim_stop_time", power="power"
    )
    task = frames["trials"].filter(pl.col("is_opto"))
    task = task.select(
        location="opto_label", start="opto_start_time", stop="opto_stop_time", power="opto_power"
    )
    trials = pl.concat([tag, task])
    with pynwb.NWBHDF5IO(str(session["path"]), "r") as io:
        nwb = io.read()
        series = {n: s for n, s in nwb.stimulus.items() if n.endswith("_command")}
        assert {s.site.location for s in series.values()} == set(trials["location"].unique())
        for s in series.values():
            t = np.asarray(s.timestamps[:])
            w = np.asarray(s.data[:], dtype=float)
            rows = trials.filter(pl.col("location") == s.site.location)
            for t0, t1, mw in rows.select("start", "stop", "power").iter_rows():
                inside = (t > t0 + 1e-3) & (t < t1 - 1e-3)
                assert inside.sum() >= 0.8 * (t1 - t0 - 2e-3) * ns.OPTO_COMMAND_RATE
                # int16 steps of 0.3 mV + 5 mV noise on the command around the trial's voltage
                assert np.median(w[inside]) == pytest.approx(mw * 1e-3, rel=0.02)
                before = (t < t0 - 2e-3) & (t > t0 - ns.OPTO_PAD)
                assert before.any() and np.all(w[before] < 0.05 * mw * 1e-3)


# ------------------------------------------------------------------------------------ analysis
@pytest.mark.parametrize("name", ["unit_responses", "vis_rf_maps", "aud_rf_maps"])
def test_derived_tables_round_trip_with_pynwb_and_lazynwb(
    session: dict[str, Any], name: str
) -> None:
    want = session["derived"].get(name)
    assert want is not None and want.height
    with pynwb.NWBHDF5IO(str(session["path"]), "r") as io:
        got = pynwb_frame(io.read().analysis[name])
    assert got.height == want.height
    for col in want.columns:
        if col == "session_id":
            continue
        w, g = want[col], got[col]
        if isinstance(w.dtype, pl.List):
            for a, b in zip(w.to_list(), g.to_list(), strict=True):
                np.testing.assert_array_equal(np.asarray(a or [], float), np.asarray(b, float))
        elif w.dtype.is_numeric() or w.dtype == pl.Boolean:
            np.testing.assert_array_equal(
                w.cast(pl.Float64).fill_null(np.nan).to_numpy(), g.cast(pl.Float64).to_numpy()
            )
        else:
            assert w.cast(pl.String).fill_null("").to_list() == g.cast(pl.String).to_list()
    lazynwb = pytest.importorskip("lazynwb")
    lz = lazynwb.scan_nwb(str(session["path"]), f"/analysis/{name}").collect()
    assert lz.height == want.height
    num = [c for c in want.columns if want[c].dtype.is_float()]
    for col in num:
        np.testing.assert_array_equal(
            want[col].fill_null(np.nan).to_numpy(), lz[col].cast(pl.Float64).to_numpy()
        )
