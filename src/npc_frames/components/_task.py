"""Helpers shared by the behavior components: frame-time lookup, task-file choice, invalid times.

Private to :mod:`npc_frames.components`. Everything here is a pure function of its arguments (the
I/O goes through the memoized readers and :mod:`npc_frames.timing`), so components can share these
helpers without sharing mutable state.
"""

from __future__ import annotations

import logging
import posixpath
import re
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames.errors import (
    AbsentModalityError,
    AlignmentError,
    BadFormatError,
    UnsupportedVersionError,
)

if TYPE_CHECKING:
    from npc_frames.paths import RawSession
    from npc_frames.readers.stim import StimFile
    from npc_frames.readers.sync import SyncData
    from npc_frames.timing import FrameTimes

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
_Seq = TypeVar("_Seq", npt.NDArray[Any], list[str])

#: families of task versions DynamicRouting1.py knows (first words of its version list, plus the
#: Templeton variants of the experiment); versions outside them are refused
KNOWN_TASK_VERSION_PREFIXES = (
    "stage ",
    "contrast volume",
    "opto ",
    "multimodal ",
    "no reward",
    "extinction",
    "templeton",
)

#: scripts whose stim files the task-trials logic reads
TASK_SCRIPT = "DynamicRouting1"


# ------------------------------------------------------------------------------- frame indexing
def frames_at(
    times: FloatArray, frames: npt.ArrayLike, *, path: object = None, field: str = ""
) -> FloatArray:
    """Return `times[frames]` with NaN for NaN (or out-of-range) frame indices.

    This is the reference's "safe index": a NaN frame has no time; a non-integral
    frame index is a corrupt file and raises BadFormatError naming `path` and `field`. Indices
    beyond the recorded frames (e.g. a window end after the last frame) also give NaN rather than
    raising, so that one truncated trial does not discard the table.
    """
    f = np.asarray(frames, dtype=np.float64)
    out = np.full(f.shape, np.nan)
    finite = np.isfinite(f)
    if np.any(f[finite] != np.round(f[finite])):
        raise BadFormatError(
            "frame indices are not integral",
            path=path,
            field=field or None,
            expected="integer frame indices (NaN for none)",
        )
    idx = f[finite].astype(np.int64)
    ok = (idx >= 0) & (idx < times.size)
    vals = np.full(idx.shape, np.nan)
    vals[ok] = times[idx[ok]]
    out[finite] = vals
    return out


# -------------------------------------------------------------------------------- stim access
def stim_int(stim: StimFile, key: str, n: int | None = None) -> npt.NDArray[np.int64]:
    """Return integer dataset `key` truncated to `n` (BadFormatError naming file/key if absent)."""
    arr = _first_n(stim, key, np.asarray(stim.array(key)), n)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise BadFormatError(
                f"{key} holds non-integral or NaN frame indices",
                path=stim.path,
                field=key,
                expected="integer frame indices",
            )
    elif arr.dtype.kind not in "iub":
        raise BadFormatError(
            f"{key} has dtype {arr.dtype}", path=stim.path, field=key, expected="integers"
        )
    return arr.astype(np.int64)


def stim_float(
    stim: StimFile, key: str, n: int | None = None, *, default: float | None = None
) -> FloatArray:
    """Return float dataset `key` truncated to `n`; all-`default` if absent and a default is given."""
    if not stim.has(key):
        if default is None or n is None:
            stim.array(key)  # raises the reader's typed error naming file and key
            raise BadFormatError("missing key", path=stim.path, field=key)  # pragma: no cover
        return np.full(n, default, dtype=np.float64)
    arr = np.asarray(stim.array(key), dtype=np.float64)
    return _first_n(stim, key, arr.reshape(1) if arr.ndim == 0 else arr, n)


def stim_scalar(stim: StimFile, key: str, default: Any = None) -> Any:
    """Return scalar `key` as a Python value (`default` if absent or NaN; error if no default)."""
    if not stim.has(key):
        if default is None:
            stim.array(key)  # raises the reader's typed error
            raise BadFormatError("missing key", path=stim.path, field=key)  # pragma: no cover
        return default
    val = stim.get(key, default)
    if isinstance(val, np.ndarray):
        val = val.item() if val.size == 1 else val
    if isinstance(val, bytes):
        val = val.decode()
    if val is None or (isinstance(val, float) and np.isnan(val)):
        return default
    return val


def stim_first_value(stim: StimFile, key: str, default: float = 0.0) -> float:
    """Return the first value of `key`: a scalar, an array's first element, or a per-device group's
    first member (`default` if absent, empty or NaN)."""
    value = stim.get(key)  # BadFormatError naming the file and key if unreadable
    if isinstance(value, dict):  # one value per device
        value = next(iter(value.values()), None)
    if value is None:
        return default
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise BadFormatError(
            f"{key} is not numeric: {value!r:.80}",
            path=stim.path,
            field=key,
            expected="a number, an array of numbers or a group of numbers per device",
        ) from None
    return float(arr[0]) if arr.size and np.isfinite(arr[0]) else default


def first_column(a: FloatArray) -> FloatArray:
    """Return the first column of a per-trial (n, k) array (per-device values); 1-D as is."""
    return a[:, 0] if a.ndim == 2 else a


def stim_strs(stim: StimFile, key: str, n: int | None = None) -> list[str]:
    """Return string-list dataset `key` truncated to `n`."""
    return _first_n(stim, key, list(stim.strs(key)), n)


def _first_n(stim: StimFile, key: str, values: _Seq, n: int | None) -> _Seq:
    """Return the first `n` entries of `key` (all if `n` is None); BadFormatError if fewer."""
    if n is None:
        return values
    if len(values) < n:
        raise BadFormatError(
            f"{key} has {len(values)} entries, fewer than the {n} trials",
            path=stim.path,
            field=key,
            expected=f">= {n} entries (one per trial)",
        )
    return values[:n]


def open_stim(path: str) -> StimFile:
    """Return the StimFile accessor for `path` (typed error if it has no frames)."""
    from npc_frames.readers.stim import open_stim as _open

    stim = _open(path)
    if stim.n_frames == 0:
        raise BadFormatError(
            "stim file has zero frames", path=path, field="frameIntervals", expected="> 0 frames"
        )
    return stim


# ---------------------------------------------------------------------------------------- opto
def probe_label(label: str) -> str | None:
    """Return an opto location label as a table value: ``probeA`` for ``A``…``F``, None for none."""
    if label in ("", "no opto"):
        return None
    return f"probe{label}" if re.fullmatch(r"[A-F]", label) else label


def opto_power_coefficients(stim: StimFile) -> FloatArray | None:
    """Return the voltage -> power polynomial of ``optoPowerCalibrationData`` (highest power
    first, for np.polyval), from its first device group when there is one per device; None when
    the file has no calibration."""
    if not stim.has("optoPowerCalibrationData"):
        return None
    group = stim.group("optoPowerCalibrationData")
    coeffs = group.get("poly coefficients")
    if coeffs is None:
        coeffs = next(
            (
                v["poly coefficients"]
                for v in group.values()
                if isinstance(v, dict) and "poly coefficients" in v
            ),
            None,
        )
    return None if coeffs is None else np.asarray(coeffs, dtype=np.float64).ravel()


# ------------------------------------------------------------------------------ timing access
def valid_frame_times(raw: RawSession) -> dict[str, FrameTimes]:
    """Return the FrameTimes of every stim file with valid timing (timing.frame_times).

    Every stim file without timing is reported as a failed part (:mod:`npc_frames.parts`): a
    component built from all stim files is incomplete without it.
    """
    from npc_frames import timing

    report_timing_failures(raw)
    return dict(timing.frame_times(raw))


def report_timing_failures(raw: RawSession, scripts: tuple[str, ...] | None = None) -> None:
    """Return None after reporting each stim file of `scripts` (default all) that has no timing."""
    from npc_frames import parts, timing

    for path, reason in sorted(timing.timing_failures(raw).items()):
        if scripts is None or script_of(path) in scripts:
            parts.report_failure(
                posixpath.basename(path),
                AlignmentError(
                    f"stim file has no frame times: {reason}",
                    path=path,
                    field="frame times",
                    expected="a stim file matched to a sync vsync block",
                ),
            )


def sync_data(raw: RawSession) -> SyncData | None:
    """Return the session's SyncData (None for behavior-only sessions)."""
    if raw.sync_path is None:
        return None
    from npc_frames import timing

    return timing.sync_data(raw)


def script_of(path: str) -> str:
    """Return the script name of a stim file: its file stem up to the first underscore."""
    return posixpath.basename(path).split("_")[0].split(".")[0]


def files_for(raw: RawSession, script: str) -> list[tuple[str, FrameTimes]]:
    """Return (path, FrameTimes) of the valid-timing stim files of `script`, in time order.

    The files of `script` without timing are reported as failed parts.
    """
    from npc_frames import timing

    report_timing_failures(raw, (script,))
    ft = timing.frame_times(raw)
    out = [(p, t) for p, t in ft.items() if script_of(p) == script]
    return sorted(out, key=lambda pt: float(np.nanmin(pt[1].flip)) if pt[1].flip.size else 0.0)


def task_file(raw: RawSession) -> tuple[str, FrameTimes]:
    """Return the DynamicRouting1 file to use and its frame times (largest if several).

    Raises AbsentModalityError if the session has no task file, AlignmentError (with the timing
    failure reason) if none of its task files has valid timing.
    """
    candidates = [p for p in raw.stim_paths if script_of(p) == TASK_SCRIPT]
    if not candidates:
        raise AbsentModalityError(
            "session has no DynamicRouting1 stim file",
            path=raw.root,
            field="stim_paths",
            expected="DynamicRouting1_<subject>_<date>_<time>.hdf5",
        )
    from npc_frames import timing

    report_timing_failures(raw, (TASK_SCRIPT,))
    ft = timing.frame_times(raw)
    valid = [p for p in candidates if p in ft]
    if not valid:
        failures = timing.timing_failures(raw)
        reasons = "; ".join(f"{posixpath.basename(p)}: {failures.get(p, '?')}" for p in candidates)
        raise AlignmentError(
            f"no DynamicRouting1 file has valid timing ({reasons})",
            path=candidates[0],
            field="frame times",
            expected="a task file matched to a sync vsync block",
        )
    best = max(valid, key=lambda p: (raw.stat_key(p)[0], p))
    return best, ft[best]


# ------------------------------------------------------------------------------ invalid times
def invalid_intervals(raw: RawSession) -> pl.DataFrame:
    """Return the session's invalid-time intervals: start_time, stop_time, reason (f64/f64/str).

    From ``raw.annotations["invalid_times"]`` when given, else from an ``invalid_times.yaml``/
    ``.yml``/``.json`` file at the raw root. ``stop_time == -1`` means the end of the sync
    recording (or of the last stim file without sync).
    """
    from npc_frames.readers.metadata import parse_invalid_times, read_invalid_times

    annotations = raw.annotations
    if "invalid_times" in annotations:
        entries = parse_invalid_times(
            annotations["invalid_times"], source=f"{raw.root} (annotations)"
        )
    else:
        entries = []
        for name in ("invalid_times.yaml", "invalid_times.yml", "invalid_times.json"):
            p = raw.metadata_paths.get(name)
            if p:
                with raw.open(p) as f:
                    entries = read_invalid_times(_named(f, p))
                break
    df = pl.DataFrame(
        {
            "start_time": [e.start_time for e in entries],
            "stop_time": [e.stop_time for e in entries],
            "reason": [e.reason for e in entries],
        },
        schema={"start_time": pl.Float64, "stop_time": pl.Float64, "reason": pl.String},
    )
    if df.height and (df["stop_time"] == -1).any():
        end = session_end_time(raw)
        df = df.with_columns(
            pl.when(pl.col("stop_time") == -1)
            .then(pl.lit(end))
            .otherwise(pl.col("stop_time"))
            .alias("stop_time")
        )
    return df.sort("start_time")


class _NamedFile:
    """A bytes-reading wrapper that carries a name (so the reader can choose YAML or JSON)."""

    def __init__(self, f: Any, name: str) -> None:
        self._f = f
        self.name = name

    def read(self) -> bytes:
        return bytes(self._f.read())


def _named(f: Any, name: str) -> Any:
    return _NamedFile(f, name)


def session_end_time(raw: RawSession) -> float:
    """Return the end of the session clock: sync total seconds, else the last frame time."""
    sync = sync_data(raw)
    if sync is not None:
        return float(sync.total_seconds)
    ends = [float(np.nanmax(t.flip)) for t in valid_frame_times(raw).values() if t.flip.size]
    return max(ends) if ends else float("inf")


def overlaps_invalid(
    start: npt.ArrayLike, stop: npt.ArrayLike, invalid: pl.DataFrame
) -> npt.NDArray[np.bool_]:
    """Return, per [start, stop] row, whether it strictly overlaps any invalid interval.

    Touching endpoints are allowed: a row is dropped only if start < inv_stop and
    stop > inv_start. Rows with NaN bounds never overlap.
    """
    s = np.asarray(start, dtype=np.float64)
    e = np.asarray(stop, dtype=np.float64)
    bad = np.zeros(s.shape, dtype=bool)
    if invalid.height == 0:
        return bad
    inv_s = invalid["start_time"].to_numpy()[None, :]
    inv_e = invalid["stop_time"].to_numpy()[None, :]
    return np.any((s[:, None] < inv_e) & (e[:, None] > inv_s), axis=1)


def drop_invalid(
    df: pl.DataFrame,
    invalid: pl.DataFrame,
    *,
    start: str = "start_time",
    stop: str = "stop_time",
) -> pl.DataFrame:
    """Return `df` without the rows whose [start, stop] strictly overlaps an invalid interval."""
    if invalid.height == 0 or df.height == 0:
        return df
    bad = overlaps_invalid(df[start].to_numpy(), df[stop].to_numpy(), invalid)
    return df.filter(pl.Series(~bad))


# ---------------------------------------------------------------------------------- sync edges
def first_after(edges: FloatArray, t: FloatArray) -> FloatArray:
    """Return, per time in `t`, the first edge strictly after it (NaN if none or `t` is NaN)."""
    t = np.asarray(t, dtype=np.float64)
    out = np.full(t.shape, np.nan)
    if edges.size == 0:
        return out
    ok = np.isfinite(t)
    i = np.searchsorted(edges, t[ok], side="right")
    vals = np.full(i.shape, np.nan)
    inside = i < edges.size
    vals[inside] = edges[i[inside]]
    out[ok] = vals
    return out


def sync_edges(sync: SyncData, line: str | int, *, rising: bool = True) -> FloatArray:
    """Return the rising (or falling) edge times of `line`, empty if the line does not exist."""
    try:
        if isinstance(line, str) and not sync.has_line(line):
            return np.empty(0)
        arr = sync.rising(line) if rising else sync.falling(line)
    except (KeyError, IndexError, ValueError, BadFormatError):
        return np.empty(0)
    return np.asarray(arr, dtype=np.float64)


def check_task_version(stim: StimFile) -> str | None:
    """Return the task's `taskVersion` (None if unset); raise for versions we cannot read.

    DynamicRouting1 refuses to run with a version outside its list (DynamicRouting1.py
    `setDefaultParams`); every family on that list (:data:`KNOWN_TASK_VERSION_PREFIXES`) shares
    the keys we read. An unset version (custom parameters) is accepted. A version of another family,
    a non-text version, or a file lacking the per-trial keys raises UnsupportedVersionError.
    """
    version = stim_scalar(stim, "taskVersion", default="") if stim.has("taskVersion") else ""
    if not isinstance(version, str):
        raise UnsupportedVersionError(
            f"taskVersion {version!r} is not a string",
            path=stim.path,
            field="taskVersion",
            expected="a DynamicRouting1 task version string",
        )
    for key in ("trialEndFrame", "trialStimStartFrame", "trialStim", "trialBlock"):
        if not stim.has(key):
            raise UnsupportedVersionError(
                f"task file (taskVersion {version!r}) lacks {key}",
                path=stim.path,
                field=key,
                expected="a DynamicRouting1 file with per-trial frame keys",
            )
    if version and not version.lower().startswith(KNOWN_TASK_VERSION_PREFIXES):
        raise UnsupportedVersionError(
            f"unknown DynamicRouting1 taskVersion {version!r}",
            path=stim.path,
            field="taskVersion",
            expected=f"a version starting with one of {KNOWN_TASK_VERSION_PREFIXES}",
        )
    return version or None
