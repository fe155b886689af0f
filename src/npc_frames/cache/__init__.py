"""The Parquet cache: ``convert`` raw sessions into it, ``scan_*``/``sql`` across sessions.

Layout (``docs/cache.md``)::

    <cache>/catalog.parquet                              one row per (session_id, component)
    <cache>/<component>/session_id=<id>/data.parquet     one file per component per session

Files are replaced atomically (:mod:`npc_frames.storage`), so scans never see half a session; the
catalog is merged on write under a file lock (locally) or by re-reading before each PUT (S3), so
two converts into one cache leave it consistent. The cache knows nothing about how a component is
computed: it calls ``npc_frames.components`` and conforms to ``npc_frames.schemas``.

Modules: :mod:`.catalog` (layout, catalog), :mod:`.manifest` (tracked-sessions files),
:mod:`.convert` (conversion, worker pool), :mod:`.scan` (Polars scans, ``read_session``),
:mod:`.sql` (DuckDB views, queries, connection cache). Every public name is re-exported here.
"""

from __future__ import annotations

from typing import Any

from npc_frames import storage
from npc_frames.cache.catalog import (
    BAD_STATUSES,
    CATALOG_FILE,
    CATALOG_LOCK,
    CATALOG_SCHEMA,
    DATA_FILE,
    DEFAULT_CACHE,
    ENV_CACHE,
    STATUSES,
    WORKER_MEMORY_BYTES,
    SessionStatus,
    _check_component,
    _component_names,
    _glob,
    _safe_id,
    cache_root,
    data_path,
    read_catalog,
    session_status,
)
from npc_frames.cache.convert import convert, default_workers, fingerprint
from npc_frames.cache.manifest import read_manifest
from npc_frames.cache.pool import WorkerCrashedError
from npc_frames.cache.scan import (
    _make_scan,
    read_session,
    scan,
    scan_aud_rf_mapping,
    scan_devices,
    scan_dlc_eye_camera,
    scan_electrode_groups,
    scan_electrodes,
    scan_epochs,
    scan_eye_tracking,
    scan_facemap_front_camera,
    scan_facemap_side_camera,
    scan_facemap_zoomed_side_camera,
    scan_invalid_times,
    scan_licks,
    scan_lp_front_camera,
    scan_lp_side_camera,
    scan_lp_zoomed_side_camera,
    scan_luminance_test,
    scan_manipulator_positions,
    scan_optotagging,
    scan_performance,
    scan_qc,
    scan_qc_timing,
    scan_quiescent_violations,
    scan_rewards,
    scan_running_speed,
    scan_sessions,
    scan_spike_amplitudes,
    scan_subjects,
    scan_trials,
    scan_unit_waveforms,
    scan_units,
    scan_video_frame_times,
    scan_vis_rf_mapping,
)
from npc_frames.cache.sql import _unpack_udf, connect, sql

__all__ = [
    "CATALOG_FILE",
    "CATALOG_SCHEMA",
    "DATA_FILE",
    "STATUSES",
    "SessionStatus",
    "WorkerCrashedError",
    "cache_root",
    "connect",
    "convert",
    "data_path",
    "read_catalog",
    "read_manifest",
    "read_session",
    "scan",
    "session_status",
    "sql",
]

# names kept importable from npc_frames.cache for callers that used the single-module layout
_REEXPORTED = (
    storage,
    BAD_STATUSES,
    CATALOG_LOCK,
    DEFAULT_CACHE,
    ENV_CACHE,
    STATUSES,
    WORKER_MEMORY_BYTES,
    SessionStatus,
    _check_component,
    _glob,
    _safe_id,
    _unpack_udf,
    default_workers,
    fingerprint,
    scan_aud_rf_mapping,
    scan_devices,
    scan_electrode_groups,
    scan_electrodes,
    scan_epochs,
    scan_invalid_times,
    scan_licks,
    scan_luminance_test,
    scan_optotagging,
    scan_performance,
    scan_quiescent_violations,
    scan_rewards,
    scan_running_speed,
    scan_sessions,
    scan_subjects,
    scan_trials,
    scan_unit_waveforms,
    scan_units,
    scan_spike_amplitudes,
    scan_manipulator_positions,
    scan_qc,
    scan_qc_timing,
    scan_eye_tracking,
    scan_dlc_eye_camera,
    scan_lp_side_camera,
    scan_lp_front_camera,
    scan_lp_zoomed_side_camera,
    scan_facemap_side_camera,
    scan_facemap_front_camera,
    scan_facemap_zoomed_side_camera,
    scan_video_frame_times,
    scan_vis_rf_mapping,
)


def __getattr__(name: str) -> Any:
    # scan_<component> for components registered after this module was written
    if name.startswith("scan_") and name[5:] in _component_names():
        return _make_scan(name[5:])
    raise AttributeError(f"module 'npc_frames.cache' has no attribute {name!r}")
