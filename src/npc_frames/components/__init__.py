"""Component functions: ``component(raw: RawSession) -> pl.DataFrame``, one per NWB component.

Each component is a pure function of the raw files it needs, returns a frame conformed to its
schema in :mod:`npc_frames.schemas`, and raises a typed :mod:`npc_frames.errors` error when its
inputs are bad. ``npc_frames.components.trials(raw)`` etc. are resolved lazily so that importing the
package stays cheap. A module that holds a component of the same name is private (``_trials.py``
for ``trials``): a public submodule would shadow the function as a package attribute once imported.

Examples
--------
>>> raw = nf.RawSession.from_path("raw/ecephys_603074_2023-08-31_12-33-31")
>>> trials = nf.components.trials(raw)
>>> trials.height, trials["stim_name"].value_counts().sort("stim_name").rows()
(18, [('catch', 1), ('sound1', 5), ('sound2', 3), ('vis1', 7), ('vis2', 2)])
>>> nf.components.get("units")(raw).height  # get(name) is the same function as the attribute
8
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from npc_frames.paths import RawSession

__all__ = ["COMPONENTS", "get", "names"]

#: component name -> "module:function". Order = the order `convert` computes and NWB assembles.
COMPONENTS: dict[str, str] = {
    "sessions": "npc_frames.components.session:sessions",
    "subjects": "npc_frames.components.session:subjects",
    "epochs": "npc_frames.components._epochs:epochs",
    "trials": "npc_frames.components._trials:trials",
    "performance": "npc_frames.components._performance:performance",
    "vis_rf_mapping": "npc_frames.components.intervals:vis_rf_mapping",
    "aud_rf_mapping": "npc_frames.components.intervals:aud_rf_mapping",
    "optotagging": "npc_frames.components.intervals:optotagging",
    "luminance_test": "npc_frames.components.intervals:luminance_test",
    "invalid_times": "npc_frames.components.intervals:invalid_times",
    "licks": "npc_frames.components.behavior:licks",
    "rewards": "npc_frames.components.behavior:rewards",
    "running_speed": "npc_frames.components.behavior:running_speed",
    "quiescent_violations": "npc_frames.components.behavior:quiescent_violations",
    "video_frame_times": "npc_frames.components.video:video_frame_times",
    "eye_tracking": "npc_frames.components.video_behavior:eye_tracking",
    "dlc_eye_camera": "npc_frames.components.video_behavior:dlc_eye_camera",
    "lp_side_camera": "npc_frames.components.video_behavior:lp_side_camera",
    "lp_front_camera": "npc_frames.components.video_behavior:lp_front_camera",
    "lp_zoomed_side_camera": "npc_frames.components.video_behavior:lp_zoomed_side_camera",
    "facemap_side_camera": "npc_frames.components.video_behavior:facemap_side_camera",
    "facemap_front_camera": "npc_frames.components.video_behavior:facemap_front_camera",
    "facemap_zoomed_side_camera": "npc_frames.components.video_behavior:facemap_zoomed_side_camera",
    "devices": "npc_frames.components.ephys:devices",
    "electrode_groups": "npc_frames.components.ephys:electrode_groups",
    "electrodes": "npc_frames.components.ephys:electrodes",
    "units": "npc_frames.components._units:units",
    "spike_amplitudes": "npc_frames.components._units:spike_amplitudes",
    "unit_waveforms": "npc_frames.components._units:unit_waveforms",
    "manipulator_positions": "npc_frames.components.manipulators:manipulator_positions",
    "qc": "npc_frames.components._qc:qc",
    "qc_timing": "npc_frames.components._qc:qc_timing",
}


def names() -> list[str]:
    """Return every component name, in computation order."""
    return list(COMPONENTS)


def get(name: str) -> Callable[[RawSession], pl.DataFrame]:
    """Return the function that computes component `name` from a RawSession."""
    from npc_frames.errors import SchemaError

    try:
        target = COMPONENTS[name]
    except KeyError:
        raise SchemaError(
            f"unknown component {name!r}", field=name, expected=f"one of {list(COMPONENTS)}"
        ) from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def __getattr__(name: str) -> Any:
    if name in COMPONENTS:
        return get(name)
    raise AttributeError(f"module 'npc_frames.components' has no attribute {name!r}")
