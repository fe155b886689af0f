"""Ground truth of a synthetic session: what the generator put into every raw file.

A truth folder ``<…>.truth/`` holds ``truth.json`` (small values, readable by eye) and ``arrays/``
with one ``.npy`` (or compressed ``.npz``) per large numeric array, ``.parquet`` per frame, and
ragged lists (e.g. spike times per unit) as one ``values``/``offsets`` array pair. In ``truth.json`` such an item is a
reference object (``{"__npy__": "arrays/…"}``, ``{"__parquet__": …}``, ``{"__ragged__": …}``).

:meth:`Truth.load` reads ``truth.json`` only; every referenced array is opened (memory-mapped) the
first time its key is accessed. Paths inside the raw session are stored relative to it and resolve
against the raw folder next to the truth folder, so a session + truth pair can be moved (e.g. the
committed fixture in ``data/fixtures``). Nested records load as :class:`Record`, a read-only mapping that
also allows attribute access (``truth.ephys.probes`` == ``truth.ephys["probes"]``), so code written
against the in-memory truth (dataclasses / dicts) works on a loaded one. Long numeric lists (more
than 32 numbers) are stored as ``.npy`` and load as numpy arrays.

An array that is already a whole ``.npy`` file inside the truth folder, memory-mapped (as the ephys
generator's per-spike arrays are: ``make_session`` has them written to ``arrays/ephys_spikes/``
probe by probe), is referenced where it lies instead of being copied — saving ~1.4 GB of spike
truth at full scale costs nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import mmap
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from npc_frames.errors import BadFormatError, MissingFileError

__all__ = ["Record", "Truth"]

#: arrays up to this many elements stay inline in truth.json
_INLINE_MAX = 32
TRUTH_VERSION = 1


class Record(Mapping[str, Any]):
    """Read-only mapping whose reference values load on first access; keys also work as attributes."""

    def __init__(self, raw: Mapping[str, Any], base: Path, raw_root: str = "") -> None:
        self._raw = dict(raw)
        self._base = base
        self._raw_root = raw_root
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        skey = str(key)
        if skey not in self._cache:
            if skey not in self._raw:
                raise KeyError(key)
            self._cache[skey] = _decode(self._raw[skey], self._base, self._raw_root)
        return self._cache[skey]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"Record({list(self._raw)})"


class IntKeyRecord(Record):
    """A :class:`Record` whose keys are ints (sync bits), stored as strings in JSON."""

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(str(int(key)))

    def __iter__(self) -> Iterator[Any]:
        return (int(k) for k in self._raw)

    def __contains__(self, key: object) -> bool:
        try:
            return str(int(key)) in self._raw  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False


#: sync sample rate: truth times on this grid are stored as sample counts when compressing
_GRID_RATE = 100_000.0


def _on_sync_grid(arr: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]] | None:
    """Return delta-encoded sample counts if every finite value of a 1-D float array is k / rate."""
    if arr.ndim != 1 or arr.dtype != np.float64 or arr.size < 2:
        return None
    finite = np.isfinite(arr)
    k = np.rint(arr[finite] * _GRID_RATE)
    if not np.array_equal(k / _GRID_RATE, arr[finite]) or np.abs(k).max(initial=0) > 2**52:
        return None
    samples = k.astype(np.int64)
    return {
        "deltas": np.diff(samples, prepend=0),
        "size": np.array(arr.size),
        "nan_idx": np.flatnonzero(~finite),
    }


class _Encoder:
    """Turn a truth tree into JSON-able data, writing large arrays to ``arrays/``."""

    def __init__(self, base: Path, raw_root: str = "", compress: bool = False) -> None:
        self.base = base
        self.compress = compress
        self.raw_root = raw_root.rstrip("/")
        self.names: set[str] = set()
        (base / "arrays").mkdir(parents=True, exist_ok=True)

    def _name(self, key: str, suffix: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._") or "item"
        name, i = f"arrays/{stem}{suffix}", 1
        while name in self.names:
            i += 1
            name = f"arrays/{stem}_{i}{suffix}"
        self.names.add(name)
        return name

    def encode(self, obj: Any, key: str) -> Any:
        import polars as pl

        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {
                f.name: self.encode(getattr(obj, f.name), f"{key}.{f.name}")
                for f in dataclasses.fields(obj)
            }
        if isinstance(obj, Mapping):
            keys = list(obj)
            if keys and all(isinstance(k, int | np.integer) for k in keys):
                return {
                    "__intkeys__": {
                        str(int(k)): self.encode(obj[k], f"{key}.{int(k)}") for k in keys
                    }
                }
            return {str(k): self.encode(v, f"{key}.{k}") for k, v in obj.items()}
        if isinstance(obj, pl.DataFrame):
            name = self._name(key, ".parquet")
            obj.write_parquet(self.base / name)
            return {"__parquet__": name}
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind not in "biufcM?" and obj.dtype != np.bool_:
                return [self.encode(v, f"{key}.{i}") for i, v in enumerate(obj.tolist())]
            if obj.ndim == 1 and obj.size <= _INLINE_MAX and obj.dtype.kind in "biuf?":
                return {"__array__": obj.tolist(), "dtype": obj.dtype.str}
            existing = None if self.compress else self._npy_in_base(obj)
            if existing is not None:
                self.names.add(existing)
                return {"__npy__": existing}
            if self.compress:
                name = self._name(key, ".npz")
                grid = _on_sync_grid(obj)
                if grid is not None:
                    # sync-quantised times compress ~50x as first value + sample-count deltas
                    np.savez_compressed(self.base / name, **grid)  # type: ignore[arg-type]
                    return {"__npz__": name, "grid": _GRID_RATE}
                np.savez_compressed(self.base / name, a=np.ascontiguousarray(obj))
                return {"__npz__": name}
            name = self._name(key, ".npy")
            np.save(self.base / name, np.ascontiguousarray(obj))
            return {"__npy__": name}
        if isinstance(obj, list | tuple):
            if len(obj) > _INLINE_MAX and isinstance(obj[0], np.ndarray):
                if all(isinstance(v, np.ndarray) and v.ndim == 1 for v in obj):
                    return self._ragged(obj, key)
            elif len(obj) > _INLINE_MAX and isinstance(obj[0], bool | int | float | np.generic):
                # long numeric lists (e.g. per-frame columns) go to .npy and load as arrays
                try:
                    arr = np.asarray(obj)
                except (ValueError, TypeError):
                    arr = np.empty(0, dtype=object)
                if arr.ndim == 1 and arr.dtype.kind in "biuf":
                    return self.encode(arr, key)
            return [self.encode(v, f"{key}.{i}") for i, v in enumerate(obj)]
        if isinstance(obj, datetime.datetime):
            return {"__datetime__": obj.isoformat()}
        if isinstance(obj, datetime.date):
            return {"__date__": obj.isoformat()}
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, Path):
            obj = str(obj)
        if (
            isinstance(obj, str)
            and self.raw_root
            and (obj == self.raw_root or obj.startswith(self.raw_root + "/"))
        ):
            # paths inside the raw session are stored relative, so a moved session still loads
            return {"__raw__": obj[len(self.raw_root) :].lstrip("/")}
        if isinstance(obj, str) and self.raw_root and obj.startswith(self.raw_root + "_"):
            # derived assets beside the raw folder (``<raw name>_<process>_…``) move with it too
            return {"__sibling__": obj[len(self.raw_root) :]}
        if obj is None or isinstance(obj, str | int | float | bool):
            return obj
        return str(obj)

    def _npy_in_base(self, arr: npt.NDArray[Any]) -> str | None:
        """Return the path (relative to the truth folder) of the ``.npy`` file that `arr` maps.

        Only a read-only memory map of a whole ``.npy`` file (as ``np.load(mmap_mode="r")``
        returns; not a slice or view of one) that lies inside the truth folder qualifies; anything
        else returns ``None`` and is saved as usual.
        """
        if not (
            isinstance(arr, np.memmap)
            and isinstance(arr.base, mmap.mmap)
            and arr.filename
            and arr.mode == "r"
        ):
            return None
        path = Path(arr.filename).resolve()
        try:
            rel = path.relative_to(self.base.resolve())
        except ValueError:
            return None
        if path.suffix != ".npy" or not path.is_file():
            return None
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version != (1, 0):
                return None
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            header_end = f.tell()
        whole = (
            shape == arr.shape
            and dtype == arr.dtype
            and (not fortran or arr.ndim <= 1)
            and header_end == arr.offset
            and path.stat().st_size == header_end + arr.nbytes
        )
        return rel.as_posix() if whole else None

    def _ragged(
        self, arrays: list[npt.NDArray[Any]] | tuple[npt.NDArray[Any], ...], key: str
    ) -> Any:
        lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = np.concatenate(arrays) if arrays else np.empty(0)
        return {
            "__ragged__": {
                "values": self.encode(values, f"{key}.values"),
                "offsets": self.encode(offsets, f"{key}.offsets"),
            }
        }


def _decode(obj: Any, base: Path, raw_root: str = "") -> Any:
    """Return the value of one JSON item, opening referenced arrays (memory-mapped)."""
    if isinstance(obj, list):
        return [_decode(v, base, raw_root) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__npy__" in obj:
        return np.load(base / obj["__npy__"], mmap_mode="r")
    if "__array__" in obj:
        return np.asarray(obj["__array__"], dtype=np.dtype(obj["dtype"]))
    if "__parquet__" in obj:
        import polars as pl

        return pl.read_parquet(base / obj["__parquet__"])
    if "__npz__" in obj:
        with np.load(base / obj["__npz__"]) as npz:
            if "grid" not in obj:
                return npz["a"]
            samples = np.cumsum(npz["deltas"])
            out = np.full(int(npz["size"]), np.nan)
            mask = np.ones(out.size, dtype=bool)
            mask[npz["nan_idx"]] = False
            out[mask] = samples / float(obj["grid"])
            return out
    if "__ragged__" in obj:
        values = _decode(obj["__ragged__"]["values"], base)
        offsets = np.asarray(_decode(obj["__ragged__"]["offsets"], base))
        return np.split(values, offsets[1:-1])
    if "__sibling__" in obj:
        return raw_root.rstrip("/") + obj["__sibling__"]
    if "__datetime__" in obj:
        return datetime.datetime.fromisoformat(obj["__datetime__"])
    if "__date__" in obj:
        return datetime.date.fromisoformat(obj["__date__"])
    if "__raw__" in obj:
        return str(Path(raw_root, obj["__raw__"])) if obj["__raw__"] else raw_root
    if "__intkeys__" in obj:
        return IntKeyRecord(obj["__intkeys__"], base, raw_root)
    return Record(obj, base, raw_root)


@dataclasses.dataclass
class Truth:
    """Everything the generator put into one synthetic raw session (times in s on the sync clock).

    Attributes
    ----------
    raw_path:
        The raw session folder ``…/ecephys_<subject>_<YYYY-MM-DD>_<HH-MM-SS>``.
    truth_dir:
        The folder this truth is (or will be) saved in.
    session_id:
        ``<subject>_<YYYY-MM-DD>``.
    subject, date:
        Subject id and session date.
    sync_start:
        Naive local wall-clock time of sync sample 0 (``meta['start_time']``).
    sync_rate, sync_total_samples:
        Sample rate and number of samples of the sync file.
    sync_lines:
        ``{bit: (rising_s, falling_s)}``: every edge in the sync file, sample-quantised, exactly as
        a §2.2 reader returns them.
    line_labels:
        The 32 labels written to ``meta['line_labels']``.
    barcodes:
        ``start_times`` (s, sync clock) and generator ``values`` of every barcode on bit 0.
    scripts:
        One record per stim file (ScriptRun of ``synth.task``): ``script_name``, ``path``,
        ``start_time``, ``flip`` and ``vsync_rise`` (sync-quantised), ``display``, ``truth``.
    ephys:
        The ephys generator's truth (``None`` without ephys).
    video:
        Per camera label: ``frame_times`` (one per video frame, NaN for the metadata frame),
        ``lost_frames`` (0-based positions in the exposure-pulse list), ``exposing_bit`` and
        ``readout_bit`` (exposure times = ``sync_lines[exposing_bit][0]``), ``frames_recorded``,
        ``n_video_frames``, ``time_start``, ``video_path``, ``json_path``.
    metadata:
        Subject facts, experimenter, rig, invalid times.
    counts:
        Expected counts (vsyncs per script, frames per camera, barcodes, units, spikes …).
    params:
        The arguments of ``make_session`` that produced this session.
    assets:
        Derived assets written beside the raw folder, per kind (``sorted``, ``dlc_eye`` …):
        ``path`` (the asset folder) and what the generator put into it.
    probe_insertions:
        The raw upload's probe-insertion record: ``path``, ``implant``, ``holes`` and the expected
        electrode-group ``locations`` per probe letter (empty without ephys).
    lfp:
        Per probe letter, the content of the raw LFP band (:mod:`npc_frames.synth.lfp`): each
        channel's structure, oscillation frequency/amplitude/phase, evoked latency/amplitude, the
        evoking onsets and the common-mode hum (empty without ephys).
    """

    raw_path: str
    truth_dir: str
    session_id: str
    subject: int
    date: datetime.date
    sync_start: datetime.datetime
    sync_rate: float
    sync_total_samples: int
    sync_lines: Mapping[int, Any]
    line_labels: list[str]
    barcodes: Mapping[str, Any]
    scripts: list[Any]
    ephys: Any
    video: Mapping[str, Any]
    metadata: Any
    counts: Mapping[str, Any]
    params: Mapping[str, Any]
    assets: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    probe_insertions: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    lfp: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def sync_duration_s(self) -> float:
        """Return the length of the sync recording in seconds."""
        return self.sync_total_samples / self.sync_rate

    def script(self, name: str) -> Any:
        """Return the first script record whose ``script_name`` is `name` (KeyError if none)."""
        for s in self.scripts:
            if _get(s, "script_name") == name:
                return s
        raise KeyError(name)

    def save(self, truth_dir: str | Path | None = None, *, compress: bool = False) -> Path:
        """Return the truth folder after writing ``truth.json`` and ``arrays/`` into it.

        With `compress`, arrays are written as compressed ``.npz`` (loaded whole on first access
        instead of memory-mapped) — for committed fixtures.
        """
        base = Path(truth_dir or self.truth_dir)
        base.mkdir(parents=True, exist_ok=True)
        enc = _Encoder(base, str(self.raw_path), compress=compress)
        doc = {
            "truth_version": TRUTH_VERSION,
            **{
                f.name: enc.encode(getattr(self, f.name), f.name)
                for f in dataclasses.fields(self)
                if f.name not in ("truth_dir", "raw_path")
            },
            "raw_path": str(self.raw_path),
        }
        (base / "truth.json").write_text(json.dumps(doc, indent=1))
        return base

    @classmethod
    def load(cls, truth_dir: str | Path) -> Truth:
        """Return the truth saved in `truth_dir`; big arrays load lazily when first accessed."""
        base = Path(truth_dir).absolute()
        path = base / "truth.json"
        if not path.is_file():
            raise MissingFileError("no truth.json in truth folder", path=path)
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise BadFormatError(f"truth.json is not JSON: {exc}", path=path) from exc
        if doc.get("truth_version") != TRUTH_VERSION:
            raise BadFormatError(
                "unknown truth version",
                path=path,
                field="truth_version",
                expected=str(TRUTH_VERSION),
            )
        # the raw folder sits next to its truth folder (``<name>`` and ``<name>.truth``); fall back
        # to the recorded absolute path when the pair was separated
        sibling = base.with_name(base.name.removesuffix(".truth"))
        raw_root = str(sibling) if base.name.endswith(".truth") and sibling.is_dir() else ""
        raw_root = raw_root or str(doc.get("raw_path", ""))
        kwargs: dict[str, Any] = {"raw_path": raw_root}
        for f in dataclasses.fields(cls):
            if f.name in ("truth_dir", "raw_path"):
                continue
            if f.name not in doc and f.default_factory is not dataclasses.MISSING:
                continue
            if f.name not in doc:
                raise BadFormatError(
                    "truth.json lacks a field",
                    path=path,
                    field=f.name,
                    expected="every Truth field",
                )
            kwargs[f.name] = _decode(doc[f.name], base, raw_root)
        return cls(truth_dir=str(base), **kwargs)


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj[key]
    return getattr(obj, key)
