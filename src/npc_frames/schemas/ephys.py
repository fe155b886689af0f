"""Schemas of the ephys components: devices, electrode_groups, electrodes, units.

Owned by the ephys work; see FORMATS §9–§11.
"""

from __future__ import annotations

from npc_frames.schemas import register

register([])
