"""Polars scans of the cache (``scan``, ``scan_<component>``) and ``read_session``."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import polars as pl

from npc_frames import storage
from npc_frames.cache.catalog import (
    _check_component,
    _component_names,
    _glob,
    _safe_id,
    cache_root,
    data_path,
)
from npc_frames.cache_layout import (
    LAYOUTS,
    PACKED_KEY,
    packed_columns,
    unpack,
    unpack_expr,
)
from npc_frames.errors import CacheError

logger = logging.getLogger(__name__)


def _schema_of(component: str) -> pl.Schema | None:
    from npc_frames.schemas import SCHEMAS

    s = SCHEMAS.get(component)
    return s.polars_schema if s is not None else None


def scan(component: str, cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame:
    """Return a LazyFrame over one component of every session in the cache.

    The schema is the registered one (``npc_frames.schemas``) whatever the files hold: columns
    missing from older files come back null, undeclared extra columns are dropped. Filters on
    ``session_id`` prune whole files (hive partitioning); other filters and projections are pushed
    into the Parquet reader (row-group statistics, column selection). A component with no files yet
    gives an empty frame of its schema. On S3 the reads are planned by
    :mod:`npc_frames.cache.remote`: one listing per query, footers cached by ETag, and the needed
    column chunks fetched with a few merged ranged GETs per file.

    Examples
    --------
    >>> trials = nf.scan("trials", cache="cache/")  # the same as nf.scan_trials(cache="cache/")
    >>> trials.collect_schema().names()[:3]
    ['session_id', 'start_time', 'stop_time']
    >>> n_trials = truth.script("DynamicRouting1")["truth"]["n_trials"]
    >>> trials.select(pl.len()).collect().item() == n_trials
    True
    """
    _check_component(component)
    root = cache_root(cache)
    schema = _schema_of(component)
    if storage.is_remote(root) and schema is not None:
        return _scan_remote(root, component, schema)
    pattern = _glob(root, component)
    files = storage.glob(pattern)
    _verify_local_files(component, files)
    if not files:
        return pl.LazyFrame(schema=schema if schema is not None else {"session_id": pl.String})
    packed = _packed(component, schema, files[0])
    kwargs: dict[str, Any] = {
        "hive_partitioning": True,
        "hive_schema": {"session_id": pl.String},
        "storage_options": storage.polars_storage_options(root),
        "missing_columns": "insert",
        "extra_columns": "ignore",
    }
    if schema is not None:
        # packed list columns are byte arrays on disk (cache_layout); unpacked after the scan,
        # which keeps filters on other columns and projections pushed into the reader
        kwargs["schema"] = pl.Schema(
            {n: (pl.Binary() if n in packed else t) for n, t in schema.items()}
        )
    lf = pl.scan_parquet(pattern, **kwargs)
    if packed:
        lf = lf.with_columns(unpack_expr(n, e) for n, e in packed.items())
    return lf


def _scan_remote(root: str, component: str, schema: pl.Schema) -> pl.LazyFrame:
    """Return the scan of a component on an object store, read with planned, merged ranged GETs
    and cached footers (:mod:`npc_frames.cache.remote`)."""
    from npc_frames.cache.remote import list_component, scan_remote

    objects = list_component(root, component)
    if not objects:
        return pl.LazyFrame(schema=schema)
    layout = LAYOUTS.get(component)
    packed = packed_columns(layout, schema) if layout is not None and layout.packed else {}
    on_disk = pl.Schema({n: (pl.Binary() if n in packed else t) for n, t in schema.items()})
    lf = scan_remote(root, component, on_disk, objects)
    if packed:
        lf = lf.with_columns(unpack_expr(n, e) for n, e in packed.items())
    return lf


def corrupt_file(path: str) -> str | None:
    """Return why the Parquet footer of `path` cannot be read, or None when it can.

    Reads only the footer (a ranged read on S3): a truncated, overwritten or non-Parquet file is
    caught; damage inside a data page is found only when the page is decoded.
    """
    import pyarrow.parquet as pq

    try:
        fs, p = storage.filesystem(path)
        with fs.open(p, "rb") as f:
            pq.read_metadata(f)
    except FileNotFoundError:
        return "the file does not exist"
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for a damaged footer
        return f"{type(exc).__name__}: {exc}"
    return None


def corrupt_file_error(path: str, component: str) -> CacheError | None:
    """Return the CacheError naming `path` of `component` when its Parquet footer cannot be read
    (see :func:`corrupt_file`), or None when it can."""
    problem = corrupt_file(path)
    if problem is None:
        return None
    return CacheError(
        f"cache file cannot be read: {problem}",
        path=path,
        field=component,
        expected="a Parquet file written by npc_frames.convert (reconvert it)",
    )


#: (path, size, mtime_ns) of local files whose footer was read: files are replaced atomically,
#: so a changed file has a new key and is checked again
_VERIFIED: set[tuple[str, int, int]] = set()
_VERIFIED_LOCK = threading.Lock()


def _verify_local_files(component: str, files: Sequence[str]) -> None:
    """Raise CacheError naming the first local file of `component` whose footer is unreadable.

    Polars' own error does not name the file. Each file is checked once per (size, mtime);
    remote files are not checked here (DuckDB's and the convert check name them).
    """
    for path in files:
        if storage.is_remote(path):
            return
        try:
            st = os.stat(path)
        except OSError:
            continue  # removed since the listing; the scan will not see it either
        key = (path, st.st_size, st.st_mtime_ns)
        with _VERIFIED_LOCK:
            if key in _VERIFIED:
                continue
        error = corrupt_file_error(path, component)
        if error is not None:
            raise error
        with _VERIFIED_LOCK:
            _VERIFIED.add(key)


def _packed(component: str, schema: pl.Schema | None, sample_file: str) -> dict[str, str]:
    """Return {column: element dtype} of the packed columns of a component's files."""
    layout = LAYOUTS.get(component)
    if layout is None or not layout.packed:
        return {}
    if schema is not None:
        return packed_columns(layout, schema)
    # no registered schema: the file's own metadata says what is packed
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(sample_file)
    with fs.open(path, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    raw = meta.get(PACKED_KEY.encode())
    return dict(json.loads(raw)) if raw else {}


class ScanFunction(Protocol):
    """The type of every ``scan_<component>`` function."""

    __name__: str

    def __call__(self, cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame: ...


def _make_scan(component: str) -> ScanFunction:
    def scan_component(cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame:
        return scan(component, cache)

    scan_component.__name__ = scan_component.__qualname__ = f"scan_{component}"
    scan_component.__doc__ = (
        f"Return a LazyFrame over the ``{component}`` component of every cached session "
        f"(see :func:`scan`).\n\n"
        f"Examples\n--------\n"
        f'>>> lf = nf.scan_{component}(cache="cache/")\n'
        f">>> lf.collect_schema() == nf.SCHEMAS[{component!r}].polars_schema\n"
        f"True\n"
    )
    return scan_component


# one explicit name per component so that type checkers see them (tests/test_public_api.py)
scan_sessions = _make_scan("sessions")
scan_subjects = _make_scan("subjects")
scan_epochs = _make_scan("epochs")
scan_trials = _make_scan("trials")
scan_performance = _make_scan("performance")
scan_vis_rf_mapping = _make_scan("vis_rf_mapping")
scan_aud_rf_mapping = _make_scan("aud_rf_mapping")
scan_optotagging = _make_scan("optotagging")
scan_luminance_test = _make_scan("luminance_test")
scan_invalid_times = _make_scan("invalid_times")
scan_licks = _make_scan("licks")
scan_rewards = _make_scan("rewards")
scan_running_speed = _make_scan("running_speed")
scan_quiescent_violations = _make_scan("quiescent_violations")
scan_video_frame_times = _make_scan("video_frame_times")
scan_eye_tracking = _make_scan("eye_tracking")
scan_dlc_eye_camera = _make_scan("dlc_eye_camera")
scan_lp_side_camera = _make_scan("lp_side_camera")
scan_lp_front_camera = _make_scan("lp_front_camera")
scan_lp_zoomed_side_camera = _make_scan("lp_zoomed_side_camera")
scan_facemap_side_camera = _make_scan("facemap_side_camera")
scan_facemap_front_camera = _make_scan("facemap_front_camera")
scan_facemap_zoomed_side_camera = _make_scan("facemap_zoomed_side_camera")
scan_devices = _make_scan("devices")
scan_electrode_groups = _make_scan("electrode_groups")
scan_electrodes = _make_scan("electrodes")
scan_units = _make_scan("units")
scan_spike_amplitudes = _make_scan("spike_amplitudes")
scan_unit_waveforms = _make_scan("unit_waveforms")
scan_manipulator_positions = _make_scan("manipulator_positions")
scan_qc = _make_scan("qc")
scan_qc_timing = _make_scan("qc_timing")


def read_session(
    session_id: object, cache: str | os.PathLike[str] | None = None
) -> dict[str, pl.DataFrame]:
    """Return every cached component of one session as name -> DataFrame.

    Components that failed or were never converted are absent; the catalog says why. Raises
    InvalidIdError for an unsafe id, CacheError when the cache holds nothing for the session.

    Examples
    --------
    >>> frames = nf.read_session("603074_2023-08-31", cache="cache/")
    >>> frames["trials"].height, frames["units"].height
    (18, 8)
    """
    root = cache_root(cache)
    sid = _safe_id(session_id)
    out: dict[str, pl.DataFrame] = {}
    for name in _component_names():
        path = data_path(root, name, sid)
        try:
            data = storage.read_bytes(path)
        except FileNotFoundError:
            continue
        try:
            df = pl.read_parquet(io.BytesIO(data))
        except Exception as exc:  # Polars raises ComputeError without naming the file
            raise CacheError(
                f"cache file cannot be read: {type(exc).__name__}: {exc}",
                path=path,
                field=name,
                expected="a Parquet file written by npc_frames.convert (reconvert it)",
            ) from exc
        schema = _schema_of(name)
        layout = LAYOUTS.get(name)
        if layout is not None and layout.packed:
            packed = packed_columns(layout, schema) if schema is not None else {}
            df = df.with_columns(
                unpack(df[c], e) for c, e in packed.items() if df.schema.get(c) == pl.Binary
            )
        if schema is not None:
            df = df.select(
                pl.col(c).cast(t) if c in df.columns else pl.lit(None, dtype=t).alias(c)
                for c, t in schema.items()
            )
        out[name] = df
    if not out:
        raise CacheError(
            f"no component of session {sid} in the cache",
            path=root,
            field=sid,
            expected="a session converted with npc_frames.convert",
        )
    return out
