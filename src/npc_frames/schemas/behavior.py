"""Schemas of the behavior components (owned by the behavior-components work; see FORMATS §5–§8, §13)."""

from __future__ import annotations

from npc_frames.schemas import register

register([])
