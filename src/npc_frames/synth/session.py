"""Make a complete synthetic raw session (FORMATS §1.2 layout) and save its ground truth.

Order of generation (each step's randomness comes from its own child of ``SeedSequence(seed)``, so
turning videos or ephys off does not change the task or the sync lines of the other devices):

1. metadata json + debug.log (+ invalid_times.yaml);
2. stim files and their sync lines (``synth.task.simulate_scripts``), first script 30–60 s after
   sync start;
3. the sync stop time: 20–40 s after the last script, and long enough that the Open Ephys
   recording holds ≥ 2 complete barcodes;
4. barcodes on bit 0, camera exposure/readout lines + MVR files;
5. Open Ephys + sorting output (``synth.ephys.make_ephys``) recording from a few seconds after
   sync start to a few seconds before its stop; some units respond to the task's stimuli
   (:func:`stimulus_onsets`: DynamicRouting1 vis1/vis2/sound1/sound2 with their block's rewarded
   modality, RFMapping gratings/flashes/tones/AM noise), see ``Truth.ephys.unit_responses``;
6. the sync file ``behavior/<YYYYMMDDTHHMMSS>.h5`` and the truth folder.

The sync start wall-clock time is the session's ``start_time`` plus a random sub-second part (as the
sync program writes ``str(datetime.now())``); the folder name and the sync file stem carry whole
seconds.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import inspect
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from npc_frames.errors import ParameterError
from npc_frames.synth.barcodes import BARCODE_INTERVAL_S, barcode_duration, make_barcodes
from npc_frames.synth.metadata import write_metadata
from npc_frames.synth.sync import LINE_LABELS, SYNC_RATE, quantize, write_sync_file
from npc_frames.synth.truth import Truth
from npc_frames.synth.video import CAMERAS, NOSE_CAMERA, make_videos

__all__ = [
    "DEFAULT_RIG",
    "DEFAULT_TASK_VERSION",
    "default_scripts",
    "make_session",
    "stimulus_onsets",
]

DEFAULT_RIG = "NP3"
DEFAULT_TASK_VERSION = "stage 5 ori AMN moving timeouts repeats"
MAX_PROBES = 6
PROBE_LETTERS = "ABCDEF"
#: an edge within this long of a stream's end is ignored by barcode decoders (FORMATS §10 step 3).
_BARCODE_CEILING_S = 2.0

Lines = dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]


def default_scripts(opto: bool = False) -> list[str]:
    """Return the default script order: RFMapping, DynamicRouting1, [OptoTagging], Spontaneous."""
    return ["RFMapping", "DynamicRouting1", *(["OptoTagging"] if opto else []), "Spontaneous"]


def _check_params(
    *,
    seed: int,
    minutes: float,
    n_probes: int,
    units_per_probe: int,
    date: Any,
    start_time: Any,
    subject: int | None,
    scripts: Sequence[str] | None,
    clip_seconds: float | None,
) -> tuple[datetime.date, datetime.time]:
    """Return (date, start_time) after raising ParameterError for impossible parameters."""
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ParameterError(f"seed={seed!r}", field="seed", expected="an int ≥ 0")
    if (
        not isinstance(minutes, int | float)
        or isinstance(minutes, bool)
        or not math.isfinite(minutes)
        or minutes <= 0
    ):
        raise ParameterError(
            f"minutes={minutes!r}", field="minutes", expected="a finite number > 0"
        )
    if minutes > 24 * 60:
        raise ParameterError(f"minutes={minutes}", field="minutes", expected="≤ 1440 (one day)")
    if not isinstance(n_probes, int | np.integer) or not 0 <= n_probes <= MAX_PROBES:
        raise ParameterError(
            f"n_probes={n_probes!r}", field="n_probes", expected=f"an int in 0…{MAX_PROBES}"
        )
    if not isinstance(units_per_probe, int | np.integer) or units_per_probe < 0:
        raise ParameterError(
            f"units_per_probe={units_per_probe!r}", field="units_per_probe", expected="an int ≥ 0"
        )
    if n_probes == 0 and units_per_probe > 0:
        raise ParameterError(
            f"units_per_probe={units_per_probe} with n_probes=0",
            field="units_per_probe",
            expected="units_per_probe=0 when there are no probes",
        )
    if isinstance(date, str):
        try:
            date = datetime.date.fromisoformat(date)
        except ValueError:
            raise ParameterError(f"date={date!r}", field="date", expected="YYYY-MM-DD") from None
    if isinstance(date, datetime.datetime):
        date = date.date()
    if not isinstance(date, datetime.date):
        raise ParameterError(f"date={date!r}", field="date", expected="a datetime.date")
    if not 2016 <= date.year <= datetime.date.today().year:
        raise ParameterError(
            f"date={date}",
            field="date",
            expected="a year from 2016 to the current year (FORMATS §1.1)",
        )
    if isinstance(start_time, str):
        try:
            start_time = datetime.time.fromisoformat(start_time)
        except ValueError:
            raise ParameterError(
                f"start_time={start_time!r}", field="start_time", expected="HH:MM:SS"
            ) from None
    if not isinstance(start_time, datetime.time):
        raise ParameterError(
            f"start_time={start_time!r}", field="start_time", expected="a datetime.time"
        )
    if subject is not None and (
        not isinstance(subject, int | np.integer) or not 100_000 <= subject <= 9_999_999
    ):
        raise ParameterError(
            f"subject={subject!r}", field="subject", expected="a 6- or 7-digit int"
        )
    if clip_seconds is not None and not (
        isinstance(clip_seconds, int | float) and 0 < clip_seconds <= 600
    ):
        raise ParameterError(
            f"clip_seconds={clip_seconds!r}",
            field="clip_seconds",
            expected="0 < clip_seconds ≤ 600",
        )
    if scripts is not None and (
        isinstance(scripts, str)
        or not all(isinstance(s, str) and s for s in scripts)
        or len(set(scripts)) != len(scripts)
    ):
        raise ParameterError(
            f"scripts={scripts!r}", field="scripts", expected="a sequence of distinct script names"
        )
    return date, start_time.replace(microsecond=0)


def _call_with_supported(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Return func(*args, **kwargs) minus keyword arguments its signature does not accept."""
    params = inspect.signature(func).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return func(*args, **kwargs)


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _merge_lines(*sources: Mapping[int, tuple[npt.ArrayLike, npt.ArrayLike]]) -> Lines:
    """Return per-bit (rising, falling) edges of all sources concatenated and sorted."""
    out: dict[int, tuple[list[npt.NDArray[np.float64]], list[npt.NDArray[np.float64]]]] = {}
    for src in sources:
        for bit, (rising, falling) in src.items():
            r, f = out.setdefault(int(bit), ([], []))
            r.append(np.asarray(rising, dtype=np.float64).ravel())
            f.append(np.asarray(falling, dtype=np.float64).ravel())
    return {
        bit: (np.sort(np.concatenate(r)), np.sort(np.concatenate(f)))
        for bit, (r, f) in sorted(out.items())
    }


#: a line a script leaves high (e.g. the photodiode over a white sync square) falls this long after
#: the script's last edge, when its window closes and the screen returns to grey.
_CLOSE_WINDOW_S = 0.25


def _close_open_lines(lines: Mapping[int, tuple[npt.ArrayLike, npt.ArrayLike]]) -> Lines:
    """Return one script's lines with a falling edge appended to every line it leaves high.

    Decision: every script starts with its lines low (FORMATS §2.5: the first diode toggle is
    rising), so a script with an odd number of photodiode toggles must bring the diode back down
    before the next script starts; the edge lies outside the stim_running window + 10 frames that
    npc uses to assign diode edges to a block, so it never becomes a display time.
    """
    out: Lines = {}
    ends = [float(np.max(a)) for r, f in lines.values() for a in (r, f) if np.size(a)]
    last = max(ends) if ends else 0.0
    for bit, (rising, falling) in lines.items():
        r = np.asarray(rising, dtype=np.float64).ravel()
        f = np.asarray(falling, dtype=np.float64).ravel()
        if r.size == f.size + 1:
            f = np.concatenate([f, quantize([last + _CLOSE_WINDOW_S])])
        out[int(bit)] = (r, f)
    return out


def _script_end_s(run: Any) -> float:
    """Return the last sync time touched by one ScriptRun (its last flip or line edge)."""
    ends = [float(np.max(_attr(run, "flip")))] if np.size(_attr(run, "flip")) else []
    for rising, falling in (_attr(run, "lines") or {}).values():
        for arr in (rising, falling):
            if np.size(arr):
                ends.append(float(np.max(arr)))
    return max(ends) if ends else 0.0


def _camera_bits(label: str) -> dict[str, int | None]:
    """Return the exposing/readout sync bits of a camera label."""
    cam = next(c for c in (*CAMERAS, NOSE_CAMERA) if c.label == label)
    return {"exposing_bit": cam.exposing_bit, "readout_bit": cam.readout_bit}


def _ephys_counts(ephys: Any) -> dict[str, int]:
    """Return n_units / n_spikes from the ephys truth when it exposes them."""
    counts: dict[str, int] = {}
    for key in ("n_units", "n_spikes"):
        value = _attr(ephys, key)
        if isinstance(value, int | np.integer):
            counts[key] = int(value)
    return counts


def stimulus_onsets(runs: Sequence[Any]) -> dict[str, list[Any]]:
    """Return the stimulus onsets of the scripts' truth as ``make_ephys(stimuli=...)`` columns.

    ``start_time`` is the truth ``stim_start_time`` (sync clock: display time of a visual
    stimulus, sound onset of an auditory one); ``stim_name`` is the DynamicRouting1 trial's
    ``stim_name`` (``catch`` trials included: nothing responds to them) or, for RFMapping trials,
    ``rf_grating`` / ``rf_flash`` / ``rf_tone`` / ``rf_am_noise``, or ``opto`` for OptoTagging
    laser pulse onsets; ``rewarded_modality`` is the DynamicRouting1 block's (``None`` otherwise);
    ``position_x``/``position_y`` are an RF grating's centre (task pixels) and ``frequency_hz`` an
    RF tone's frequency (NaN otherwise). Trials without a finite onset are left out.
    """
    times: list[npt.NDArray[np.float64]] = []
    names: list[npt.NDArray[np.str_]] = []
    contexts: list[list[str | None]] = []
    feats: list[npt.NDArray[np.float64]] = []  # (n, 3): grating x, y (px), tone frequency (Hz)
    for run in runs:
        truth = _attr(run, "truth") or {}
        script = _attr(run, "script_name")
        if script == "DynamicRouting1" and truth.get("trials"):
            trials = truth["trials"]
            times.append(np.asarray(trials["stim_start_time"], dtype=np.float64))
            names.append(np.asarray(trials["stim_name"], dtype=np.str_))
            contexts.append(list(trials["rewarded_modality"]))
            feats.append(np.full((times[-1].size, 3), np.nan))
        elif script == "OptoTagging" and truth.get("optotagging"):
            t = np.asarray(truth["optotagging"]["stim_start_time"], dtype=np.float64)
            times.append(t)
            names.append(np.full(t.size, "opto"))
            contexts.append([None] * t.size)
            feats.append(np.full((t.size, 3), np.nan))
        elif script == "RFMapping":
            for key, kinds in (
                (
                    "vis_rf_mapping",
                    (("is_small_field_grating", "rf_grating"), ("is_full_field_flash", "rf_flash")),
                ),
                ("aud_rf_mapping", (("is_pure_tone", "rf_tone"), ("is_AM_noise", "rf_am_noise"))),
            ):
                table = truth.get(key) or {}
                if not table:
                    continue
                t = np.asarray(table["stim_start_time"], dtype=np.float64)
                label = np.select(
                    [np.asarray(table[flag], dtype=bool) for flag, _ in kinds],
                    [name for _, name in kinds],
                    "",
                )
                f = np.full((t.size, 3), np.nan)
                if key == "vis_rf_mapping":
                    f[:, 0] = np.asarray(table["grating_x"], dtype=np.float64)
                    f[:, 1] = np.asarray(table["grating_y"], dtype=np.float64)
                else:
                    f[:, 2] = np.where(
                        label == "rf_tone", np.asarray(table["freq"], np.float64), np.nan
                    )
                times.append(t)
                names.append(label)
                contexts.append([None] * t.size)
                feats.append(f)
    if not times:
        return {
            "start_time": [],
            "stim_name": [],
            "rewarded_modality": [],
            "position_x": [],
            "position_y": [],
            "frequency_hz": [],
        }
    t_all = np.concatenate(times)
    n_all = np.concatenate(names)
    c_all = [c for part in contexts for c in part]
    f_all = np.concatenate(feats)
    keep = np.isfinite(t_all) & (n_all != "")
    idx = np.flatnonzero(keep)
    return {
        "start_time": t_all[idx].tolist(),
        "stim_name": n_all[idx].tolist(),
        "rewarded_modality": [c_all[i] for i in idx.tolist()],
        "position_x": f_all[idx, 0].tolist(),
        "position_y": f_all[idx, 1].tolist(),
        "frequency_hz": f_all[idx, 2].tolist(),
    }


def _move_sorting_to_asset(root: Path, ephys_truth: Any, *, date: datetime.date) -> dict[str, Any]:
    """Return the truth of a sorted asset after moving ``<root>/sorting/*`` into
    ``<root name>_sorted_<date + 3 days>_<06-52-11>/phy/`` (probe truth paths updated)."""
    from npc_frames.synth.population import move_sorting_to_sibling_asset

    asset = move_sorting_to_sibling_asset(root, date)
    ephys_truth.probes = type(ephys_truth.probes)(
        dataclasses.replace(
            probe,
            sorting_path=os.path.relpath(
                asset / "phy" / Path(probe.sorting_path).relative_to("sorting"), root
            ),
        )
        for probe in ephys_truth.probes
    )
    return {"path": str(asset)}


def make_session(
    out_dir: str | Path,
    *,
    seed: int = 0,
    minutes: float = 2.0,
    n_probes: int = 1,
    units_per_probe: int = 8,
    date: datetime.date | str = datetime.date(2023, 8, 31),
    start_time: datetime.time | str = datetime.time(12, 33, 31),
    subject: int | None = None,
    scripts: Sequence[str] | None = None,
    opto: bool = False,
    video: bool = True,
    ephys: bool = True,
    invalid_times: Sequence[Mapping[str, Any]] | None = None,
    rig: str = DEFAULT_RIG,
    task_version: str = DEFAULT_TASK_VERSION,
    clip_seconds: float | None = None,
    compress: bool = False,
    sorted_as_asset: bool = False,
    annotations: bool = True,
    video_behavior: bool = False,
    video_behavior_length_delta: Mapping[str, int] | None = None,
    nose_camera: bool = False,
    save_sound_array: bool = False,
    lfp_subsampled: bool = False,
) -> Truth:
    """Return the truth of a synthetic raw session written under `out_dir` (deterministic per seed).

    Writes ``<out_dir>/ecephys_<subject>_<YYYY-MM-DD>_<HH-MM-SS>/`` (FORMATS §1.2: ``behavior/``
    with the sync file and stim files, ``behavior_videos/``, ``ecephys/ecephys_clipped/``,
    ``sorting/``, top-level json) and ``<same name>.truth/`` (see :class:`Truth`). Existing folders
    of the same name are replaced. Some sorted units respond to the DynamicRouting1 and RFMapping
    stimuli (:func:`stimulus_onsets`); which, when and how much is in
    ``Truth.ephys.unit_responses``.

    Parameters
    ----------
    out_dir:
        Parent folder (created).
    seed:
        Seed of every random choice; equal seeds give identical files.
    minutes:
        Length of the DynamicRouting1 task.
    n_probes, units_per_probe:
        Probes A… (≤ 6) recorded by Open Ephys and sorted units per probe.
    date, start_time:
        Session date and sync start (whole seconds; the sync file adds a sub-second part).
    subject:
        6–7 digit subject id; default derived from `seed`.
    scripts:
        Stim scripts in order; default :func:`default_scripts` (OptoTagging only with `opto`).
    video, ephys:
        Write the MVR videos / the Open Ephys recording and sorting output.
    invalid_times:
        Rows ``{start_time, stop_time, reason}`` written to ``invalid_times.yaml``.
    rig, task_version:
        Rig name and ``taskVersion`` stored in the stim files.
    clip_seconds:
        Length of each clipped ``continuous.dat`` (``None``: the ephys writer's default); small
        values keep fixtures small and fast.
    compress:
        gzip the sync file's ``data`` (transparent to h5py readers) and store truth arrays as
        compressed ``.npz`` — for fixtures committed to git.
    sorted_as_asset:
        Write the phy folders into a sibling sorted asset
        ``<raw name>_sorted_<date + 3 days>_06-52-11/phy/<stream folder>/`` (as the sorting
        pipeline names its output), not into ``<raw>/sorting/``; ``Truth.assets["sorted"]``
        records it.
    annotations:
        Write CCF annotations of the probes, in every file format (``synth.anatomy``), into a
        sibling ``<raw name>_annotations_<date + 5 days>_10-00-00/`` asset;
        ``Truth.assets["annotations"]`` holds the expected per-channel anatomy.
    opto:
        Opto session: OptoTagging script, opto line (bit 11), opsin genotype; the rig's OptoGui
        calibration files are written to ``<out_dir>/OptoGui/<rig>/``
        (``Truth.assets["opto_calibration"]``).
    lfp_subsampled:
        Also write the pipeline's ``LFP_Subsampled`` asset of the annotated probes
        (:func:`npc_frames.synth.lfp.write_lfp_subsampled`; ``Truth.assets["lfp_subsampled"]``).
        The raw LFP band always carries the content of :mod:`npc_frames.synth.lfp`, whose
        per-channel truth is ``Truth.lfp``.
    video_behavior, video_behavior_length_delta:
        Also write the video-derived assets (DeepLabCut eye tracking, Lightning Pose, facemap;
        :func:`npc_frames.synth.video_behavior.make_video_behavior`) beside the raw folder;
        ``{kind: n}`` gives an asset ``n`` rows more (or fewer) than its video. Needs `video`.
        ``Truth.assets[kind]`` records what was written.
    nose_camera:
        Also record the fourth MVR camera of newer rigs, ``Nose`` (NWB ``zoomed_side_camera``):
        its video + json and exposure pulses on sync line 30 (labelled ``nose_cam_exposing``;
        the line keeps an empty label otherwise) and, with `video_behavior`, its Lightning Pose
        and facemap outputs. The other cameras' files and truth do not change.
    save_sound_array:
        The DynamicRouting1 file saves every trial's sound waveform in ``trialSoundArray``
        (``saveSoundArray``), as some task versions do; RFMapping files always save theirs.

    Examples
    --------
    >>> t = nf.make_session("tiny/", seed=2, minutes=0.5, ephys=False, video=False)
    >>> t.session_id, t.raw_path.endswith("tiny/ecephys_649614_2023-08-31_12-33-31")
    ('649614_2023-08-31', True)
    >>> nf.RawSession.from_path(t.raw_path).is_ephys
    False
    """
    date, start_time = _check_params(
        seed=seed,
        minutes=minutes,
        n_probes=n_probes,
        units_per_probe=units_per_probe,
        date=date,
        start_time=start_time,
        subject=subject,
        scripts=scripts,
        clip_seconds=clip_seconds,
    )
    ss = np.random.SeedSequence(int(seed))
    rng_meta, rng_task, rng_sync, rng_barcode, rng_video, rng_ephys = (
        np.random.default_rng(s) for s in ss.spawn(6)
    )
    if subject is None:
        subject = int(rng_meta.integers(600_000, 800_000))
    scripts = list(scripts) if scripts is not None else default_scripts(opto)
    sync_start = datetime.datetime.combine(date, start_time) + datetime.timedelta(
        microseconds=int(rng_sync.integers(0, 1_000_000))
    )
    asset_name = f"ecephys_{subject}_{date:%Y-%m-%d}_{start_time:%H-%M-%S}"
    out_dir = Path(out_dir).absolute()
    root = out_dir / asset_name
    truth_dir = out_dir / f"{asset_name}.truth"
    derived = ("sorted", "dlc_eye", "LPFaceParts", "facemap", "annotations", "LFP_Subsampled")
    old_assets = [p for d in derived for p in out_dir.glob(f"{asset_name}_{d}_*")]
    for folder in (root, truth_dir, *old_assets):
        if folder.exists():
            shutil.rmtree(folder)
    behavior_dir = root / "behavior"
    behavior_dir.mkdir(parents=True)

    # --- task: stim files and their sync lines ---------------------------------------------------
    task = importlib.import_module("npc_frames.synth.task")
    first_start_s = float(rng_sync.uniform(30.0, 60.0))
    runs = list(
        _call_with_supported(
            task.simulate_scripts,
            behavior_dir,
            rng=rng_task,
            subject=subject,
            sync_start=sync_start,
            first_start_s=first_start_s,
            task_minutes=float(minutes),
            scripts=scripts,
            opto=opto,
            rig=rig,
            task_version=task_version,
            date=date,
            save_sound_array=save_sound_array,
        )
    )
    task_end_s = max((_script_end_s(r) for r in runs), default=first_start_s) + _CLOSE_WINDOW_S

    # --- sync window: long enough for ≥ 2 barcodes inside the ephys recording ---------------------
    rec_start_pad = float(rng_sync.uniform(1.0, 4.0))
    rec_stop_pad = float(rng_sync.uniform(2.0, 5.0))
    # decoders skip a first barcode < 2 s after a stream starts (FORMATS §10 step 2)
    first_barcode_s = rec_start_pad + float(rng_barcode.uniform(2.5, 6.0))
    min_stop_s = (
        first_barcode_s
        + BARCODE_INTERVAL_S * 1.01
        + barcode_duration()
        + _BARCODE_CEILING_S
        + rec_stop_pad
        + 1.0
    )
    sync_stop_s = max(task_end_s + float(rng_sync.uniform(20.0, 40.0)), min_stop_s)
    total_samples = math.ceil(sync_stop_s * SYNC_RATE)
    sync_duration_s = total_samples / SYNC_RATE
    session_end = sync_start + datetime.timedelta(seconds=sync_duration_s)

    metadata = write_metadata(
        root,
        rng=rng_meta,
        subject=subject,
        session_start=sync_start,
        session_end=session_end,
        asset_name=asset_name,
        rig=rig,
        opto=opto,
        invalid_times=invalid_times,
    )

    # --- barcodes, cameras ------------------------------------------------------------------------
    barcodes = make_barcodes(
        rng_barcode, first_start_s=first_barcode_s, stop_s=sync_duration_s - 1.0
    )
    barcode_rising, barcode_falling = quantize(barcodes.rising), quantize(barcodes.falling)
    video_result = (
        make_videos(
            root / "behavior_videos",
            rng=rng_video,
            sync_start=sync_start,
            sync_duration_s=sync_duration_s,
            cameras=(*CAMERAS, NOSE_CAMERA) if nose_camera else CAMERAS,
        )
        if video
        else None
    )
    line_labels = list(LINE_LABELS)
    if video_result is not None and NOSE_CAMERA.label in video_result.cameras:
        line_labels[NOSE_CAMERA.exposing_bit] = "nose_cam_exposing"

    # --- ephys ------------------------------------------------------------------------------------
    ephys_truth: Any = None
    rec_start_s, rec_stop_s = rec_start_pad, sync_duration_s - rec_stop_pad
    lfp_models: dict[str, Any] = {}
    if ephys and n_probes > 0:
        from npc_frames.synth.lfp import EVOKING_STIMULI, lfp_model

        onsets = stimulus_onsets(runs)
        evoking = [
            t
            for t, name in zip(onsets["start_time"], onsets["stim_name"], strict=True)
            if name in EVOKING_STIMULI
        ]
        lfp_models = {c: lfp_model(c, 384, evoking) for c in PROBE_LETTERS[:n_probes]}
        ephys_mod = importlib.import_module("npc_frames.synth.ephys")
        ephys_truth = _call_with_supported(
            ephys_mod.make_ephys,
            root,
            rng=rng_ephys,
            date=date,
            probe_letters=list(PROBE_LETTERS[:n_probes]),
            units_per_probe=int(units_per_probe),
            recording_start_s=rec_start_s,
            recording_stop_s=rec_stop_s,
            barcode_rising=barcode_rising,
            barcode_falling=barcode_falling,
            sync_start=sync_start,
            sync_duration_s=sync_duration_s,
            subject=subject,
            seed=int(seed),
            stimuli=stimulus_onsets(runs),
            lfp_models=lfp_models,
            # per-spike truth goes straight to the truth folder, probe by probe, and Truth.save
            # references those files instead of copying them (compressed fixtures excepted)
            truth_arrays_dir=None if compress else truth_dir / "arrays" / "ephys_spikes",
            **({} if clip_seconds is None else {"clip_seconds": float(clip_seconds)}),
        )

    assets: dict[str, Any] = {}
    if sorted_as_asset and ephys_truth is not None:
        assets["sorted"] = _move_sorting_to_asset(root, ephys_truth, date=date)
    probe_record: dict[str, Any] = {}
    if ephys_truth is not None:
        from npc_frames.synth.anatomy import write_newscale_log, write_probe_insertions

        letters = [p.letter for p in ephys_truth.probes]
        probe_record = write_probe_insertions(root, letters, date)
        # an own generator: the other streams (and so every other truth) stay as they were
        probe_record["newscale_log"] = write_newscale_log(
            root, letters, np.random.default_rng([int(seed), 13])
        )
    if opto:
        from npc_frames.synth.task_mapping import write_optogui_files

        # the rig's calibration files (not part of the upload): give them as the manifest's
        # ``opto_calibration``
        assets["opto_calibration"] = write_optogui_files(out_dir, rig)
    if lfp_subsampled and ephys_truth is not None:
        from npc_frames.synth.ephys import NP_BIT_VOLTS
        from npc_frames.synth.lfp import write_lfp_subsampled

        assets["lfp_subsampled"] = write_lfp_subsampled(
            out_dir,
            asset_name,
            date=date,
            models=lfp_models,
            streams={
                s.probe_letter: dataclasses.asdict(s)
                for s in ephys_truth.streams
                if s.kind == "lfp" and s.probe_letter
            },
            bit_volts_uv=NP_BIT_VOLTS,
            rng=np.random.default_rng([int(seed), 17]),
        )
    if annotations and ephys_truth is not None:
        from npc_frames.synth.anatomy import write_annotations

        assets["annotations"] = write_annotations(
            out_dir,
            asset_name,
            subject=int(subject),
            date=date,
            channel_y={p.letter: p.channel_y for p in ephys_truth.probes},
        )

    # --- sync file --------------------------------------------------------------------------------
    lines = _merge_lines(
        {0: (barcode_rising, barcode_falling)},
        *(_close_open_lines(_attr(r, "lines") or {}) for r in runs),
        video_result.lines if video_result else {},
    )
    sync_path = behavior_dir / f"{sync_start:%Y%m%dT%H%M%S}.h5"
    sync_lines = write_sync_file(
        sync_path,
        lines=lines,
        initial_state=0,
        start_time=sync_start,
        total_samples=total_samples,
        line_labels=line_labels,
        compression="gzip" if compress else None,
    )

    if video_behavior and video_result is not None:
        from npc_frames.synth.video_behavior import make_video_behavior

        dr = [_attr(r, "truth") for r in runs if _attr(r, "script_name") == "DynamicRouting1"]
        assets.update(
            make_video_behavior(
                root,
                rng=np.random.default_rng(ss.spawn(1)[0]),
                video={k: dataclasses.asdict(c) for k, c in video_result.cameras.items()},
                task=dr[0] if dr else None,
                subject=int(subject),
                date=date,
                length_delta=video_behavior_length_delta,
            )
        )

    # --- truth ------------------------------------------------------------------------------------
    script_truths = []
    for run in runs:
        flip = quantize(_attr(run, "flip"))
        script_truths.append(
            {
                "script_name": _attr(run, "script_name"),
                "path": str(_attr(run, "path")),
                "start_time": _attr(run, "start_time"),
                "flip": flip,
                "vsync_rise": quantize(_attr(run, "vsync_rise")),
                "display": np.asarray(_attr(run, "display"), dtype=np.float64),
                "n_frames": int(flip.size),
                "truth": _attr(run, "truth") or {},
            }
        )
    # exposure times are sync_lines[exposing_bit][0]; the truth keeps only the bits, not a copy
    video_truth = (
        {
            label: {
                **{k: v for k, v in dataclasses.asdict(cam).items() if k != "exposure_times"},
                **_camera_bits(label),
            }
            for label, cam in video_result.cameras.items()
        }
        if video_result
        else {}
    )
    in_recording = (barcodes.start_times >= rec_start_s) & (
        barcodes.start_times + barcode_duration() < rec_stop_s - _BARCODE_CEILING_S
    )
    counts: dict[str, Any] = {
        "n_scripts": len(runs),
        "n_vsyncs": {s["script_name"]: s["n_frames"] for s in script_truths},
        "n_barcodes": int(barcodes.start_times.size),
        "n_barcodes_in_recording": int(in_recording.sum()) if ephys_truth is not None else 0,
        "n_video_frames": {k: v["n_video_frames"] for k, v in video_truth.items()},
        "n_probes": int(n_probes) if ephys_truth is not None else 0,
        **_ephys_counts(ephys_truth),
    }
    truth = Truth(
        raw_path=str(root),
        truth_dir=str(truth_dir),
        session_id=f"{subject}_{date:%Y-%m-%d}",
        subject=int(subject),
        date=date,
        sync_start=sync_start,
        sync_rate=SYNC_RATE,
        sync_total_samples=total_samples,
        sync_lines=sync_lines,
        line_labels=line_labels,
        barcodes={
            "start_times": quantize(barcodes.start_times),
            "values": barcodes.values,
            "recording_start_s": rec_start_s,
            "recording_stop_s": rec_stop_s,
        },
        scripts=script_truths,
        ephys=ephys_truth,
        video=video_truth,
        metadata=metadata,
        counts=counts,
        params={
            "seed": int(seed),
            "minutes": float(minutes),
            "n_probes": int(n_probes),
            "units_per_probe": int(units_per_probe),
            "date": date,
            "start_time": start_time.isoformat(),
            "subject": int(subject),
            "scripts": scripts,
            "opto": bool(opto),
            "video": bool(video),
            "ephys": bool(ephys),
            "invalid_times": [dict(r) for r in invalid_times] if invalid_times else None,
            "rig": rig,
            "task_version": task_version,
            "clip_seconds": clip_seconds,
            "compress": bool(compress),
            "sorted_as_asset": bool(sorted_as_asset),
            "annotations": bool(annotations),
            "video_behavior": bool(video_behavior),
            "save_sound_array": bool(save_sound_array),
            "video_behavior_length_delta": dict(video_behavior_length_delta or {}),
            "nose_camera": bool(nose_camera),
            "lfp_subsampled": bool(lfp_subsampled),
        },
        assets=assets,
        probe_insertions=probe_record,
        lfp={c: m.truth() for c, m in lfp_models.items()} if ephys_truth is not None else {},
    )
    truth.save(truth_dir, compress=compress)
    return truth
