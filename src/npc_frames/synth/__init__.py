"""Synthetic raw Dynamic Routing sessions with their ground truth.

``make_session(out_dir, seed=…)`` writes a raw session folder in the FORMATS §1.2 layout (sync file,
stim files, MVR videos, Open Ephys recording, sorting output, metadata) next to a ``.truth`` folder
holding what every file encodes; ``Truth.load(truth_dir)`` reads that back.

This package imports nothing from ``npc_frames.readers``, ``timing``, ``components`` or
``alignment``: it is the independent side that those modules are tested against.
"""

from __future__ import annotations

from npc_frames.synth.session import default_scripts, make_session
from npc_frames.synth.truth import Record, Truth

__all__ = ["Record", "Truth", "default_scripts", "make_session"]
