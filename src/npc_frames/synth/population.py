"""A synthetic session population shaped like a lab's tracked-sessions list, with its truth.

:func:`make_population` writes `n` raw session folders side by side, as raw assets sit in one
bucket prefix, and returns a :class:`PopulationTruth` saying what each session is and what each
cache component must report for it. The mix, in order (the first five are always present when
``n >= 5``; the rest cycle through training, training, habituation, ephys, where every second
ephys session again has a probe the sorting pipeline skipped):

0. an ephys session (sync, task + RF mapping, videos, two probes) whose spike sorting is a sibling
   asset ``<raw name>_sorted_<date>_<time>`` rather than a folder inside the raw asset;
1. that day's surface-channel recording: ``<raw name>_surface_channels`` holding only an Open
   Ephys recording (no sync, no task, not sorted), session index 1; every probe but the last
   records bank 1 (channels 384–767), the last stayed on the tip bank and is skipped;
2. a behaviour-box training session (``behavior_…`` asset, no sync, a ``_box_`` video) in the
   morning, and
3. a habituation session of the same subject on the same date in the afternoon (sync, task and
   videos, no ephys): two sessions of one day, so the later one is index 1;
4. an ephys session recording three probes of which the sorting pipeline skipped one (its folder
   is missing from the sorted asset).

Sessions are small (one-minute tasks, a few units per probe, 0.2 s of continuous data) so that a
20-session population is written in seconds (``benchmarks/bench_population.py``: 10.8 s median
over three seeds, 147 MB, 224 MB peak RSS, on a shared 2-core machine). ``make_population``'s
``minutes``, ``probes`` and ``units_per_probe`` make them larger (``npc-frames synth --population
N --minutes M --probes P --units-per-probe U``). Subjects come from a small pool and each subject's
sessions fall on consecutive days; only the intended pairs share a date.

Statuses (``PopulationTruth.members[i].components``): ``ok`` (rows), ``empty`` (the input exists
and holds no rows) and ``absent`` (the session has no such modality; ``reason`` says which
input is missing). Ephys sessions also list ``units``, ``spike_amplitudes`` and
``unit_waveforms`` per probe (``probe_components``): a probe the pipeline skipped is ``absent``. Nothing in a population is damaged, so nothing is
``partial`` or ``failed``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from npc_frames.errors import ParameterError
from npc_frames.synth.box import make_box_session
from npc_frames.synth.session import make_session
from npc_frames.synth.truth import Truth

__all__ = [
    "COMPONENT_NAMES",
    "DERIVED_VIDEO_COMPONENTS",
    "KINDS",
    "MemberTruth",
    "PopulationTruth",
    "make_population",
    "move_sorting_to_sibling_asset",
]

#: the cache components a population member reports on (the library's component list, repeated
#: here because synth imports nothing from the code it tests; a test checks they agree)
COMPONENT_NAMES: tuple[str, ...] = (
    "sessions",
    "subjects",
    "epochs",
    "trials",
    "performance",
    "vis_rf_mapping",
    "aud_rf_mapping",
    "optotagging",
    "luminance_test",
    "invalid_times",
    "licks",
    "rewards",
    "running_speed",
    "quiescent_violations",
    "video_frame_times",
    "eye_tracking",
    "dlc_eye_camera",
    "lp_side_camera",
    "lp_front_camera",
    "lp_zoomed_side_camera",
    "facemap_side_camera",
    "facemap_front_camera",
    "facemap_zoomed_side_camera",
    "devices",
    "electrode_groups",
    "electrodes",
    "units",
    "spike_amplitudes",
    "unit_waveforms",
    "manipulator_positions",
    "qc",
    "qc_timing",
)
#: components read from derived video assets (eye tracking, pose, facemap) -> the process string
#: of the asset they need; a population writes no such assets, so they are all ``absent``
DERIVED_VIDEO_COMPONENTS: Mapping[str, str] = {
    "eye_tracking": "dlc_eye",
    "dlc_eye_camera": "dlc_eye",
    "lp_side_camera": "LPFaceParts",
    "lp_front_camera": "LPFaceParts",
    "lp_zoomed_side_camera": "LPFaceParts",
    "facemap_side_camera": "facemap",
    "facemap_front_camera": "facemap",
    "facemap_zoomed_side_camera": "facemap",
}
KINDS = ("ephys", "surface_channels", "training_box", "habituation")
TRUTH_FILE = "population.json"
#: the sorting pipeline ran three days after the recording, early in the morning
SORTED_DELAY = datetime.timedelta(days=3)
SORTED_TIME = datetime.time(6, 52, 11)
_TASK_MINUTES = 1.0
_EPHYS_PROBES = 2
_UNITS_PER_PROBE = 4
_CLIP_SECONDS = 0.2
_FIRST_DATE = datetime.date(2024, 4, 22)
_SURFACE_AFTER = datetime.timedelta(minutes=25)
_CYCLE = (
    "training_box",
    "training_box",
    "habituation",
    "ephys",
    "training_box",
    "training_box",
    "habituation",
    "ephys_skip",
)


@dataclasses.dataclass(frozen=True)
class MemberTruth:
    """One session of a population: what it is and what each component must report."""

    kind: str
    raw_path: str
    truth_dir: str | None
    session_id: str
    subject: int
    date: datetime.date
    start_time: datetime.time
    seed: int
    main_session_id: str | None = None
    assets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    probes: tuple[str, ...] = ()
    skipped_probes: tuple[str, ...] = ()
    #: component -> {"status": ok|empty|absent, "reason": why absent/empty, else ""}
    components: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    #: probe name -> component -> {"status", "reason"} (``units`` of ephys sessions)
    probe_components: Mapping[str, Mapping[str, Mapping[str, str]]] = dataclasses.field(
        default_factory=dict
    )

    def status(self, component: str, probe: str | None = None) -> str:
        """Return the status `component` must report (for `probe` when given)."""
        if probe is not None:
            return self.probe_components[probe][component]["status"]
        return self.components[component]["status"]


@dataclasses.dataclass(frozen=True)
class PopulationTruth:
    """The members of a synthetic population (see the module docstring) and how it was made."""

    out_dir: str
    seed: int
    members: tuple[MemberTruth, ...]

    @property
    def raw_paths(self) -> list[str]:
        """Return every member's raw folder, in member order."""
        return [m.raw_path for m in self.members]

    def by_session_id(self) -> dict[str, MemberTruth]:
        """Return {session id: member}."""
        return {m.session_id: m for m in self.members}

    def save(self, path: str | Path | None = None) -> Path:
        """Return the json file written (default ``<out_dir>/population.truth/population.json``)."""
        target = Path(path) if path else Path(self.out_dir) / "population.truth" / TRUTH_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(dataclasses.asdict(self), indent=2, default=str))
        return target

    @classmethod
    def load(cls, path: str | Path) -> PopulationTruth:
        """Return the population truth saved at `path` (a json file or the folder holding it)."""
        p = Path(path)
        if p.is_dir():
            p = (
                p / TRUTH_FILE
                if (p / TRUTH_FILE).is_file()
                else p / "population.truth" / TRUTH_FILE
            )
        doc = json.loads(p.read_text())
        members = tuple(
            MemberTruth(
                **{
                    **m,
                    "date": datetime.date.fromisoformat(m["date"]),
                    "start_time": datetime.time.fromisoformat(m["start_time"]),
                    "probes": tuple(m["probes"]),
                    "skipped_probes": tuple(m["skipped_probes"]),
                }
            )
            for m in doc["members"]
        )
        return cls(out_dir=doc["out_dir"], seed=int(doc["seed"]), members=members)


# ------------------------------------------------------------------------------- expectations
def _s(status: str, reason: str = "") -> dict[str, str]:
    return {"status": status, "reason": reason}


def _rows(status_if_rows: bool, reason: str) -> dict[str, str]:
    return _s("ok") if status_if_rows else _s("empty", reason)


def expected_components(
    *,
    scripts: tuple[str, ...],
    task: Mapping[str, Any] | None,
    sync: bool,
    video: bool,
    ephys: bool,
    sorted_probes: tuple[str, ...],
    metadata: bool,
    invalid_times: bool,
) -> dict[str, dict[str, str]]:
    """Return component -> expected {status, reason} of a session with these inputs."""
    no_task = "no DynamicRouting1 task file"
    out: dict[str, dict[str, str]] = {"sessions": _s("ok")}
    out["subjects"] = _s("ok") if metadata else _s("absent", "no subject.json")
    out["epochs"] = _s("ok") if scripts else _s("absent", "no stim files")
    for name in ("trials", "performance"):
        out[name] = _s("ok") if task is not None else _s("absent", no_task)
    for name, script in (
        ("vis_rf_mapping", "RFMapping"),
        ("aud_rf_mapping", "RFMapping"),
        ("optotagging", "OptoTagging"),
        ("luminance_test", "LuminanceTest"),
    ):
        out[name] = _s("ok") if script in scripts else _s("absent", f"no {script} stim file")
    out["invalid_times"] = _s("ok") if invalid_times else _s("absent", "no invalid_times file")
    if task is None:
        for name in ("licks", "rewards", "running_speed", "quiescent_violations"):
            out[name] = _s("absent", no_task)
    else:
        out["licks"] = _rows(len(task["licks"]["timestamps"]) > 0, "the mouse never licked")
        out["rewards"] = _rows(len(task["rewards"]["timestamps"]) > 0, "no reward was given")
        out["running_speed"] = _s("ok")
        out["quiescent_violations"] = _rows(
            len((task.get("quiescent_violations") or {}).get("frame", [])) > 0,
            "no quiescent-period violation in the task",
        )
    out["video_frame_times"] = _s("ok") if video else _s("absent", "no video files")
    for name, process in DERIVED_VIDEO_COMPONENTS.items():
        out[name] = _s("absent", f"no {process} asset")
    for name in ("devices", "electrode_groups", "electrodes"):
        out[name] = _s("ok") if ephys else _s("absent", "no Open Ephys recording")
    if sorted_probes:
        out["units"] = _s("ok")
    else:
        out["units"] = _s("absent", "not spike-sorted" if ephys else "no Open Ephys recording")
    # every synthetic sorting has per-spike amplitudes (amplitudes.npy): read with the units
    out["spike_amplitudes"] = dict(out["units"])
    # and average templates (templates_average.npy)
    out["unit_waveforms"] = dict(out["units"])
    # the generator writes a NewScale stage log into every ephys session (an ephys session without
    # one has an empty table: older rigs had none)
    out["manipulator_positions"] = _s("ok") if ephys else _s("absent", "no Open Ephys recording")
    # sync-based QC: every synced session with a stim file has vsync blocks to check
    for name in ("qc", "qc_timing"):
        out[name] = (
            _s("ok")
            if sync and scripts
            else _s("absent", "no sync file" if not sync else "no stim files")
        )
    return {name: out[name] for name in COMPONENT_NAMES}


def _task_truth(truth: Truth) -> Mapping[str, Any] | None:
    for script in truth.scripts:
        if script["script_name"] == "DynamicRouting1":
            return script["truth"]  # type: ignore[no-any-return]
    return None


# ------------------------------------------------------------------------------------ writers
def move_sorting_to_sibling_asset(root: str | Path, date: datetime.date) -> Path:
    """Return the sorted asset folder after moving ``<root>/sorting/*`` into a sibling asset.

    The sorting pipeline names its output ``<raw asset name>_sorted_<YYYY-MM-DD>_<HH-MM-SS>``
    (the time it ran) beside the raw asset; the phy folders go under its ``phy/``.
    """
    root = Path(root)
    when = datetime.datetime.combine(date + SORTED_DELAY, SORTED_TIME)
    asset = root.with_name(f"{root.name}_sorted_{when:%Y-%m-%d_%H-%M-%S}")
    if asset.exists():
        shutil.rmtree(asset)
    asset.mkdir(parents=True)
    shutil.move(str(root / "sorting"), str(asset / "phy"))
    return asset


def _ephys_member(
    out: Path,
    *,
    seed: int,
    subject: int,
    date: datetime.date,
    start_time: datetime.time,
    n_probes: int,
    minutes: float,
    units_per_probe: int,
) -> tuple[Truth, Path]:
    truth = make_session(
        out,
        seed=seed,
        minutes=minutes,
        n_probes=n_probes,
        units_per_probe=units_per_probe,
        date=date,
        start_time=start_time,
        subject=subject,
        scripts=["RFMapping", "DynamicRouting1", "Spontaneous"],
        clip_seconds=_CLIP_SECONDS,
    )
    asset = move_sorting_to_sibling_asset(truth.raw_path, date)
    return truth, asset


def _surface_member(
    out: Path, main: Truth, *, seed: int, start: datetime.time, n_probes: int
) -> Path:
    """Write ``<main raw>_surface_channels/`` (an Open Ephys recording + AIND metadata)."""
    scratch = out / f".surface_scratch_{seed}"
    if scratch.exists():
        shutil.rmtree(scratch)
    rec = make_session(
        scratch,
        seed=seed,
        minutes=0.5,
        n_probes=n_probes,
        units_per_probe=1,
        date=main.date,
        start_time=start,
        subject=main.subject,
        scripts=["Spontaneous"],
        video=False,
        clip_seconds=_CLIP_SECONDS,
    )
    target = Path(f"{main.raw_path}_surface_channels")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    shutil.move(str(Path(rec.raw_path) / "ecephys"), str(target / "ecephys"))
    from npc_frames.synth.ephys import set_channel_banks

    letters = "ABCDEF"[:n_probes]
    set_channel_banks(target, {c: 1 if c != letters[-1] else 0 for c in letters})
    for name in ("subject.json", "data_description.json", "procedures.json"):
        shutil.copy2(Path(main.raw_path) / name, target / name)
    shutil.rmtree(scratch)
    return target


def _subject_pool(rng: np.random.Generator, n: int) -> list[int]:
    return sorted(int(s) for s in rng.choice(np.arange(600_000, 800_000), size=n, replace=False))


def _start(rng: np.random.Generator, lo_hour: int, hi_hour: int) -> datetime.time:
    seconds = int(rng.integers(lo_hour * 3600, hi_hour * 3600))
    return datetime.time(seconds // 3600, seconds // 60 % 60, seconds % 60)


def _skip_probe(asset: Path, letter: str) -> None:
    """Remove probe `letter`'s phy folder from a sorted asset (the pipeline skipped it)."""
    for folder in (asset / "phy").iterdir():
        if f"Probe{letter}" in folder.name:
            shutil.rmtree(folder)


def make_population(
    out_dir: str | Path,
    n: int,
    *,
    seed: int = 0,
    minutes: float = _TASK_MINUTES,
    probes: int = _EPHYS_PROBES,
    units_per_probe: int = _UNITS_PER_PROBE,
) -> PopulationTruth:
    """Return the truth of `n` synthetic raw sessions written into `out_dir` (seeded mix).

    Deterministic per `seed`. The truth is also saved to
    ``<out_dir>/population.truth/population.json`` (:meth:`PopulationTruth.load`). Members are
    described in the module docstring; ``n < 5`` keeps the first `n` of the fixed mix.

    Size: each task lasts `minutes`; ephys sessions record `probes` probes (one more for those
    with a probe the pipeline skipped) of `units_per_probe` sorted units. The defaults are small
    (fast tests); ``minutes=60, probes=6, units_per_probe=60`` approaches a real session's work.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ParameterError(f"n={n!r}", field="n", expected="an int ≥ 1 (sessions to write)")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ParameterError(f"seed={seed!r}", field="seed", expected="an int ≥ 0")
    if not (isinstance(minutes, int | float) and np.isfinite(minutes) and minutes > 0):
        raise ParameterError(f"minutes={minutes!r}", field="minutes", expected="a number > 0")
    if not isinstance(probes, int) or isinstance(probes, bool) or not 1 <= probes <= 5:
        raise ParameterError(
            f"probes={probes!r}",
            field="probes",
            expected="an int 1-5 (ephys sessions with a skipped probe record one more, ≤ 6)",
        )
    if (
        not isinstance(units_per_probe, int)
        or isinstance(units_per_probe, bool)
        or units_per_probe < 1
    ):
        raise ParameterError(
            f"units_per_probe={units_per_probe!r}", field="units_per_probe", expected="an int ≥ 1"
        )
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7_011]))
    plan = ["ephys", "surface_channels", "training_box", "habituation", "ephys_skip"]
    plan += [_CYCLE[i % len(_CYCLE)] for i in range(max(0, n - len(plan)))]
    plan = plan[:n]
    subjects = _subject_pool(rng, max(2, n // 4 + 1))
    next_day = dict.fromkeys(subjects, _FIRST_DATE)
    seeds = [int(x) for x in rng.integers(0, 2**31 - 1, len(plan))]

    def fresh_day(i: int) -> tuple[int, datetime.date]:
        subject = subjects[i % len(subjects)]
        day = next_day[subject]
        next_day[subject] = day + datetime.timedelta(days=1)
        return subject, day

    members: list[MemberTruth] = []
    ephys_main: tuple[Truth, MemberTruth] | None = None
    box_day: tuple[int, datetime.date] | None = None
    for i, kind in enumerate(plan):
        s = seeds[i]
        if kind == "surface_channels" and ephys_main is not None:
            main_truth, main = ephys_main
            # the surface recording follows the main one (whose folder name it keeps)
            after = datetime.datetime.combine(main.date, main.start_time) + _SURFACE_AFTER
            path = _surface_member(
                out, main_truth, seed=s, start=after.time(), n_probes=len(main.probes)
            )
            members.append(
                MemberTruth(
                    kind=kind,
                    raw_path=str(path),
                    truth_dir=None,
                    session_id=f"{main.session_id}_1",
                    subject=main.subject,
                    date=main.date,
                    start_time=after.time(),
                    seed=s,
                    main_session_id=main.session_id,
                    # the last probe stayed on the tip bank: skipped
                    probes=main.probes,
                    skipped_probes=main.probes[-1:],
                    components={
                        **expected_components(
                            scripts=(),
                            task=None,
                            sync=False,
                            video=False,
                            ephys=True,
                            sorted_probes=(),
                            metadata=True,
                            invalid_times=False,
                        ),
                        # only the Open Ephys recording is kept: no NewScale log beside it
                        "manipulator_positions": _s("empty", "no NewScale log"),
                    },
                )
            )
            continue
        second_of_day = kind == "habituation" and box_day is not None
        if second_of_day:
            assert box_day is not None
            subject, day = box_day
            box_day = None  # one pair per population
            start = _start(rng, 13, 16)
        else:
            subject, day = fresh_day(i)
            start = _start(rng, 8, 12) if kind == "training_box" else _start(rng, 8, 16)
        sid = f"{subject}_{day:%Y-%m-%d}" + ("_1" if second_of_day else "")
        assets: dict[str, str] = {}
        probe_names: tuple[str, ...] = ()
        skipped: tuple[str, ...] = ()
        if kind == "training_box":
            truth = make_box_session(
                out, seed=s, minutes=minutes, date=day, start_time=start, subject=subject
            )
            if box_day is None and not any(m.kind == "habituation" for m in members):
                box_day = (subject, day)
            expected = expected_components(
                scripts=("DynamicRouting1",),
                task=_task_truth(truth),
                sync=False,
                video=True,
                ephys=False,
                sorted_probes=(),
                metadata=True,
                invalid_times=False,
            )
        elif kind == "habituation":
            truth = make_session(
                out,
                minutes=minutes,
                n_probes=0,
                units_per_probe=0,
                ephys=False,
                scripts=["RFMapping", "DynamicRouting1"],
                seed=s,
                date=day,
                start_time=start,
                subject=subject,
            )
            expected = expected_components(
                scripts=("RFMapping", "DynamicRouting1"),
                task=_task_truth(truth),
                sync=True,
                video=True,
                ephys=False,
                sorted_probes=(),
                metadata=True,
                invalid_times=False,
            )
        else:  # ephys, ephys_skip
            n_probes = probes + 1 if kind == "ephys_skip" else probes
            truth, asset = _ephys_member(
                out,
                seed=s,
                subject=subject,
                date=day,
                start_time=start,
                n_probes=n_probes,
                minutes=minutes,
                units_per_probe=units_per_probe,
            )
            probe_names = tuple(f"probe{c}" for c in "ABCDEF"[:n_probes])
            if kind == "ephys_skip":
                letter = "ABCDEF"[int(rng.integers(0, n_probes))]
                _skip_probe(asset, letter)
                skipped = (f"probe{letter}",)
            assets = {"sorted": str(asset)}
            expected = expected_components(
                scripts=("RFMapping", "DynamicRouting1", "Spontaneous"),
                task=_task_truth(truth),
                sync=True,
                video=True,
                ephys=True,
                sorted_probes=tuple(p for p in probe_names if p not in skipped),
                metadata=True,
                invalid_times=False,
            )
        member = MemberTruth(
            kind="ephys" if kind == "ephys_skip" else kind,
            raw_path=truth.raw_path,
            truth_dir=truth.truth_dir,
            session_id=sid,
            subject=subject,
            date=day,
            start_time=start,
            seed=s,
            assets=assets,
            probes=probe_names,
            skipped_probes=skipped,
            components=expected,
            probe_components={
                p: {
                    name: _s("absent", "skipped by the sorting pipeline")
                    if p in skipped
                    else _s("ok")
                    for name in ("units", "spike_amplitudes", "unit_waveforms")
                }
                for p in probe_names
            },
        )
        members.append(member)
        if kind == "ephys" and ephys_main is None:
            ephys_main = (truth, member)
    truth_ = PopulationTruth(out_dir=str(out), seed=int(seed), members=tuple(members))
    truth_.save()
    return truth_
