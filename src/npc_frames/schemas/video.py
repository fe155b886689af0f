"""Schema of the video_frame_times component (FORMATS §12)."""

from __future__ import annotations

from npc_frames.schemas import register

register([])
