"""Derived data assets of a session: which sibling folders hold its sorting, eye tracking, pose…

Pipelines write each derived product (spike sorting, DeepLabCut eye tracking, facemap, Lightning
Pose…) as its own data asset beside the raw one, named
``<raw asset name>_<process>_<YYYY-MM-DD>_<HH-MM-SS>`` (the time the computation ran), e.g.
``ecephys_676909_2023-12-13_13-43-40_dlc_eye_2024-03-01_10-00-00``. :func:`choose_assets` is the
one rule that picks them from a listing of the raw asset's parent folder (or S3 prefix); it does
no I/O. ``RawSession.from_path`` lists the parent and calls it.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterable, Mapping

logger = logging.getLogger(__name__)

__all__ = ["ASSET_KINDS", "asset_date_suffix", "choose_assets"]

#: asset kind (the key of ``RawSession.assets`` and of ``assets={...}``) -> the process string a
#: sibling asset's name contains
ASSET_KINDS: Mapping[str, str] = {
    "sorted": "sorted",  # spike sorting (phy folders or an AIND sorting result)
    "dlc_eye": "dlc_eye",  # DeepLabCut eye camera + ellipses_processed.h5
    "dlc_side": "dlc_side",  # DeepLabCut side camera (not read: unreliable results)
    "dlc_face": "dlc_face",  # DeepLabCut front camera (not read: unreliable results)
    "facemap": "facemap",  # facemap motion SVD per camera
    "lp_face_parts": "LPFaceParts",  # Lightning Pose face parts (side and front cameras)
    "gamma_encoding": "GammaEncoding",  # gamma-encoded videos (input of Lightning Pose)
    "lfp_subsampled": "LFP_Subsampled",  # subsampled LFP
    "annotations": "annotations",  # CCF annotations of the probes (IBL alignments, TissueCyte)
}

_DATE_SUFFIX = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})[_T ]?(\d{2})-?(\d{2})-?(\d{2})$")


def asset_date_suffix(name: str) -> str | None:
    """Return the creation date-time a derived asset's name ends with as ``YYYYMMDDHHMMSS``
    (sortable), or None when the name has no such suffix."""
    m = _DATE_SUFFIX.search(name.rstrip("/"))
    return "".join(m.groups()) if m else None


def choose_assets(
    raw_name: str, sibling_names: Iterable[str], *, kinds: Iterable[str] | None = None
) -> dict[str, str]:
    """Return asset kind -> the chosen sibling name, for every kind that has a candidate.

    A candidate for a kind is a sibling whose name starts with `raw_name` (but is not `raw_name`
    itself) and whose remainder contains the kind's process string (:data:`ASSET_KINDS`). Among
    several, the newest by the name's trailing date-time suffix wins; names without a suffix rank
    below every dated one, and ties fall to the lexically last name so the choice is
    deterministic. Names may be full paths or URLs; the basename is compared.
    """
    raw_base = posixpath.basename(raw_name.rstrip("/"))
    wanted = list(ASSET_KINDS) if kinds is None else list(kinds)
    best: dict[str, tuple[str, str, str]] = {}  # kind -> (date key, basename, name as given)
    for name in sibling_names:
        base = posixpath.basename(name.rstrip("/"))
        if base == raw_base or not base.startswith(raw_base):
            continue
        rest = base[len(raw_base) :]
        if rest.endswith(".truth"):  # ground truth written beside synthetic sessions
            continue
        for kind in wanted:
            if ASSET_KINDS[kind] not in rest:
                continue
            key = (asset_date_suffix(rest) or "", base, name.rstrip("/"))
            if kind not in best or key[:2] > best[kind][:2]:
                best[kind] = key
    return {kind: best[kind][2] for kind in wanted if kind in best}
