"""npc_frames: Mindscope Neuropixels Dynamic Routing sessions as Polars frames.

Pure functions turn raw files into component frames (``npc_frames.components``); ``convert`` keeps
them as hive-partitioned Parquet that ``scan_*`` (Polars) and ``sql`` (DuckDB) query across
sessions; ``to_nwb`` assembles NWB from the frames. Names are imported lazily so that
``import npc_frames`` stays fast.

>>> import npc_frames as nf
>>> raw = nf.RawSession.from_path("data/fixtures/ecephys_...")          # doctest: +SKIP
>>> trials = nf.components.trials(raw)                                  # doctest: +SKIP
>>> nf.convert([raw.root], cache="cache/")                              # doctest: +SKIP
>>> nf.scan_trials(cache="cache/").filter(pl.col("is_hit")).collect()   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("npc-frames")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

if TYPE_CHECKING:  # what mypy and IDEs see; at runtime the names load lazily (__getattr__)
    from npc_frames import components, errors, schemas
    from npc_frames.alignment import (
        continuous,
    )
    from npc_frames.analysis import (
        aligned_spikes,
        psth,
        spike_counts,
        spike_histograms,
        to_pynapple,
        to_pynapple_intervals,
    )
    from npc_frames.cache import (
        connect,
        read_catalog,
        read_manifest,
        read_session,
    )
    from npc_frames.cache.convert import (
        convert,
    )
    from npc_frames.cache.scan import (
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
    from npc_frames.cache.sql import (
        sql,
    )
    from npc_frames.ids import (
        SessionId,
        parse_session_id,
    )
    from npc_frames.memo import (
        clear_caches,
    )
    from npc_frames.nwb import (
        to_nwb,
        validate_nwb,
        write_nwb,
    )
    from npc_frames.optotag import (
        opto_tagging,
        scan_opto_tagging,
    )
    from npc_frames.paths import (
        RawSession,
    )
    from npc_frames.responses import (
        scan_unit_responses,
        unit_responses,
    )
    from npc_frames.rf_maps import (
        aud_rf_maps,
        scan_aud_rf_maps,
        scan_vis_rf_maps,
        vis_rf_maps,
    )
    from npc_frames.sampling import (
        sample_at,
    )
    from npc_frames.schemas import (
        SCHEMAS,
        describe,
    )
    from npc_frames.subsampled_lfp import (
        aligned_lfp,
        lfp,
    )
    from npc_frames.synth import (
        make_session,
    )
    from npc_frames.views import (
        scan_session_days,
        scan_session_records,
        sessions,
    )

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "RawSession": "npc_frames.paths",
    "SessionId": "npc_frames.ids",
    "parse_session_id": "npc_frames.ids",
    "SCHEMAS": "npc_frames.schemas",
    "describe": "npc_frames.schemas",
    "convert": "npc_frames.cache",
    "scan": "npc_frames.cache",
    "connect": "npc_frames.cache",
    "sql": "npc_frames.cache",
    "read_catalog": "npc_frames.cache",
    "read_session": "npc_frames.cache",
    "to_nwb": "npc_frames.nwb",
    "write_nwb": "npc_frames.nwb",
    "validate_nwb": "npc_frames.nwb",
    "read_manifest": "npc_frames.cache",
    "continuous": "npc_frames.alignment",
    "spike_counts": "npc_frames.analysis",
    "sample_at": "npc_frames.sampling",
    "aligned_spikes": "npc_frames.analysis",
    "psth": "npc_frames.analysis",
    "lfp": "npc_frames.subsampled_lfp",
    "aligned_lfp": "npc_frames.subsampled_lfp",
    "spike_histograms": "npc_frames.analysis",
    "unit_responses": "npc_frames.responses",
    "scan_unit_responses": "npc_frames.responses",
    "vis_rf_maps": "npc_frames.rf_maps",
    "aud_rf_maps": "npc_frames.rf_maps",
    "scan_vis_rf_maps": "npc_frames.rf_maps",
    "scan_aud_rf_maps": "npc_frames.rf_maps",
    "opto_tagging": "npc_frames.optotag",
    "scan_opto_tagging": "npc_frames.optotag",
    "to_pynapple": "npc_frames.analysis",
    "to_pynapple_intervals": "npc_frames.analysis",
    "make_session": "npc_frames.synth",
    "sessions": "npc_frames.views",
    "scan_session_days": "npc_frames.views",
    "scan_session_records": "npc_frames.views",
    "clear_caches": "npc_frames.memo",
}
_SUBMODULES = (
    "components",
    "errors",
    "schemas",
    "synth",
    "plot",
    "analysis",
    "responses",
    "cache",
    "nwb",
    "ids",
    "paths",
    "views",
)


def _component_names() -> list[str]:
    from npc_frames.components import COMPONENTS

    return list(COMPONENTS)


# static so that mypy and IDEs read it; tests/test_public_api.py checks it against the registry
__all__ = [
    "SCHEMAS",
    "RawSession",
    "SessionId",
    "__version__",
    "aligned_lfp",
    "aligned_spikes",
    "aud_rf_maps",
    "clear_caches",
    "components",
    "connect",
    "continuous",
    "convert",
    "describe",
    "errors",
    "lfp",
    "make_session",
    "opto_tagging",
    "parse_session_id",
    "psth",
    "read_catalog",
    "read_manifest",
    "read_session",
    "sample_at",
    "scan",
    "scan_aud_rf_mapping",
    "scan_aud_rf_maps",
    "scan_devices",
    "scan_dlc_eye_camera",
    "scan_electrode_groups",
    "scan_electrodes",
    "scan_epochs",
    "scan_eye_tracking",
    "scan_facemap_front_camera",
    "scan_facemap_side_camera",
    "scan_facemap_zoomed_side_camera",
    "scan_invalid_times",
    "scan_licks",
    "scan_lp_front_camera",
    "scan_lp_side_camera",
    "scan_lp_zoomed_side_camera",
    "scan_luminance_test",
    "scan_manipulator_positions",
    "scan_opto_tagging",
    "scan_optotagging",
    "scan_performance",
    "scan_qc",
    "scan_qc_timing",
    "scan_quiescent_violations",
    "scan_rewards",
    "scan_running_speed",
    "scan_session_days",
    "scan_session_records",
    "scan_sessions",
    "scan_spike_amplitudes",
    "scan_subjects",
    "scan_trials",
    "scan_unit_responses",
    "scan_unit_waveforms",
    "scan_units",
    "scan_video_frame_times",
    "scan_vis_rf_mapping",
    "scan_vis_rf_maps",
    "schemas",
    "sessions",
    "spike_counts",
    "spike_histograms",
    "sql",
    "to_nwb",
    "to_pynapple",
    "to_pynapple_intervals",
    "unit_responses",
    "validate_nwb",
    "vis_rf_maps",
    "write_nwb",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name.startswith("scan_") and name[5:] in _component_names():
        return getattr(importlib.import_module("npc_frames.cache"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"npc_frames.{name}")
    raise AttributeError(f"module 'npc_frames' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
