"""npc_frames."""
