"""Ephys hardware components: ``devices``, ``electrode_groups``, ``electrodes`` (FORMATS §11.5).

A probe is *recorded* when settings.xml lists it and the main recording of a record node holds its
AP stream; only recorded probes appear (in settings.xml order). The settings.xml of every record
node of a session is identical except its DATE, so the first readable one is used.

Decisions
---------
* Electrode-group ``location`` is ``"<implant> <hole>"`` from the raw ``probe_insertions.json``
  (:mod:`npc_frames.probes`), else ``unknown``; a manifest may override it as
  ``raw.annotations["probe_locations"] = {"A": "2002 A2", …}``.
* Only *used* probes appear: recorded and not skipped (:func:`npc_frames.probes.skip_reasons`).
* CCF annotation: per probe, from an IBL alignment payload, a legacy IBL-GUI JSON or a TissueCyte
  CSV, in that order of precedence (:mod:`npc_frames.anatomy`; docs/formats.md "CCF
  annotations"). A file that cannot be used is reported by a warning naming it; the other probes
  are still annotated.
* Surface-channel recordings (``RawSession.is_surface_channel``: a folder ending
  ``_surface_channels``, or a later recording of the day without sync or stim files) add 384 to
  channels, so a channel is the electrode number (bank 1 starts at electrode 384). Annotation rows
  match electrodes by that number: the main recording's annotations describe electrodes 0–383, so
  surface electrodes (and their units) have null anatomy unless a file annotates their numbers —
  the reference gives surface units the anatomy of the tip electrode 384 below (docs/quirks.md).
  Probes still on the tip bank are skipped (:mod:`npc_frames.probes`).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from npc_frames import parts
from npc_frames._log import timed
from npc_frames.alignment import local_record_nodes
from npc_frames.anatomy import ccf_annotations
from npc_frames.errors import MissingFileError, NpcFramesError
from npc_frames.readers import openephys as oe
from npc_frames.schemas.ephys import DEVICES, ELECTRODE_GROUPS, ELECTRODES

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = ["ProbeSetup", "devices", "electrode_groups", "electrodes", "probe_setup"]

logger = logging.getLogger(__name__)

#: manufacturer of Neuropixels probes (NWB device)
MANUFACTURER = "imec"
#: nominal electrode impedance written by the reference (not measured), ohms
NOMINAL_IMPEDANCE = 150e3
#: channel offset of surface-channel recordings (FORMATS §1.2)
SURFACE_CHANNEL_OFFSET = 384


@dataclass(frozen=True)
class ProbeSetup:
    """Probes of a session: settings.xml contents, recorded letters, and what could not be read."""

    settings: oe.SettingsXml | None
    #: letters of probes with an AP stream, sorted
    recorded_letters: tuple[str, ...]
    #: recorded probes in settings.xml order (empty when settings.xml is unreadable)
    probes: tuple[oe.ProbeInfo, ...]
    channel_offset: int = 0
    errors: dict[str, NpcFramesError] = field(default_factory=dict)


def _surface_offset(raw: RawSession) -> int:
    # discovery decides: a `_surface_channels` folder, or an Open Ephys recording without sync or
    # stim files later in the day
    return SURFACE_CHANNEL_OFFSET if raw.is_surface_channel else 0


@timed
def probe_setup(raw: RawSession) -> ProbeSetup:
    """Return the session's recorded probes and their settings.xml entries (errors collected).

    Raises AbsentModalityError when the session has no Open Ephys record nodes (behavior-only);
    an unreadable record node is reported as a failed part (:mod:`npc_frames.parts`).
    """
    nodes = local_record_nodes(raw)
    errors: dict[str, NpcFramesError] = {}
    letters: set[str] = set()
    for node in nodes:
        try:
            rec = oe.read_recording(node)
        except NpcFramesError as exc:
            errors[node] = exc
            parts.report_failure(os.path.basename(node.rstrip("/")), exc)
            continue
        letters.update(s.probe_letter for s in rec.streams if s.kind == "ap" and s.probe_letter)
    settings = None
    for node in nodes:
        try:
            settings = oe.read_settings_xml(node)
            break
        except NpcFramesError as exc:
            errors[os.path.join(node, "settings.xml")] = exc
            parts.report_failure(f"{os.path.basename(node.rstrip('/'))}/settings.xml", exc)
    probes: tuple[oe.ProbeInfo, ...] = ()
    if settings is not None:
        probes = tuple(p for p in settings.probes if p.letter in letters)
    return ProbeSetup(
        settings=settings,
        recorded_letters=tuple(sorted(letters)),
        probes=probes,
        channel_offset=_surface_offset(raw),
        errors=errors,
    )


def used_probes(raw: RawSession, setup: ProbeSetup | None = None) -> tuple[oe.ProbeInfo, ...]:
    """Return the recorded probes that are not skipped (:mod:`npc_frames.probes`), in
    settings.xml order; each skipped probe is reported as an absent part of the calling component."""
    from npc_frames.probes import probe_selection, report_skipped

    setup = setup if setup is not None else probe_setup(raw)
    report_skipped(raw)
    used = set(probe_selection(raw).used)
    return tuple(p for p in setup.probes if p.letter in used)


def _require_settings(setup: ProbeSetup, raw: RawSession) -> oe.SettingsXml:
    if setup.settings is not None:
        return setup.settings
    first = next(iter(setup.errors.values()), None)
    if first is not None:
        raise first
    raise MissingFileError(  # pragma: no cover - probe_setup always records why
        "settings.xml not found", path=raw.root, expected="settings.xml"
    )


@timed
def devices(raw: RawSession) -> pl.DataFrame:
    """Return one row per used probe: serial number, model, manufacturer, group name."""
    setup = probe_setup(raw)
    _require_settings(setup, raw)
    sid = str(raw.session_id)
    probes = used_probes(raw, setup)
    df = pl.DataFrame(
        {
            "session_id": [sid] * len(probes),
            "name": [p.serial for p in probes],
            "description": [p.name for p in probes],
            "manufacturer": [MANUFACTURER] * len(probes),
            "electrode_group_name": [f"probe{p.letter}" for p in probes],
        },
        schema=DEVICES.polars_schema,
    )
    return DEVICES.validate(df, source=raw.root)


@timed
def electrode_groups(raw: RawSession) -> pl.DataFrame:
    """Return one electrode group per used probe (``probe<letter>``), located ``"<implant> <hole>"``
    by the probe-insertion record when it has both (a manifest ``probe_locations`` mapping
    overrides it), else ``unknown``."""
    from npc_frames.probes import probe_selection

    setup = probe_setup(raw)
    _require_settings(setup, raw)
    sid = str(raw.session_id)
    probes = used_probes(raw, setup)
    insertions = probe_selection(raw).insertions
    locations = {
        p.letter: insertions.location(str(p.letter)) if insertions is not None else "unknown"
        for p in probes
    }
    locations.update(dict(raw.annotations.get("probe_locations", {}) or {}))
    df = pl.DataFrame(
        {
            "session_id": [sid] * len(probes),
            "name": [f"probe{p.letter}" for p in probes],
            "device_name": [p.serial for p in probes],
            "description": [p.name for p in probes],
            "location": [str(locations.get(p.letter, "unknown")) for p in probes],
        },
        schema=ELECTRODE_GROUPS.polars_schema,
    )
    return ELECTRODE_GROUPS.validate(df, source=raw.root)


@timed
def electrodes(raw: RawSession) -> pl.DataFrame:
    """Return one row per channel of each used probe with its position on the probe (and CCF
    coordinates when the probe is annotated)."""
    setup = probe_setup(raw)
    _require_settings(setup, raw)
    sid = str(raw.session_id)
    probes = used_probes(raw, setup)
    parts = [
        pl.DataFrame(
            {
                "group_name": f"probe{p.letter}",
                "channel": p.channels + setup.channel_offset,
                "rel_x": p.channel_x,
                "rel_y": p.channel_y,
            }
        )
        for p in probes
    ]
    if parts:
        df = pl.concat(parts)
    else:
        df = pl.DataFrame(
            schema={
                "group_name": pl.String,
                "channel": pl.Int64,
                "rel_x": pl.Float64,
                "rel_y": pl.Float64,
            }
        )
    df = df.with_columns(
        pl.lit(sid).alias("session_id"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("electrode_index"),
        pl.lit("tip").alias("reference"),
        pl.lit(NOMINAL_IMPEDANCE).alias("imp"),
    )
    # annotations of every recorded probe are read (a skipped probe's file is not an error)
    ann = ccf_annotations(raw, setup.recorded_letters)
    if ann.sources:
        # annotation channels are electrode numbers: never shifted by the surface offset
        df = df.join(
            ann.table.rename({"location": "location_ccf"}),
            on=["group_name", "channel"],
            how="left",
            maintain_order="left",
        )
        df = df.with_columns(pl.col("location_ccf").fill_null("unannotated").alias("location"))
        df = df.drop("location_ccf")
    else:
        df = df.with_columns(pl.lit("unannotated").alias("location"))
    for path, err in ann.errors.items():
        warnings.warn(f"CCF annotation not used for {sid}: {err}", stacklevel=2)
        logger.debug("annotation error %s", path)
    return ELECTRODES.validate(df, source=raw.root)


def electrode_lookup(electrodes_df: pl.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return group name -> (sorted channels, their electrode_index) for vectorized lookups."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (group,), part in electrodes_df.group_by(["group_name"], maintain_order=True):
        ch = part["channel"].to_numpy()
        idx = part["electrode_index"].to_numpy()
        order = np.argsort(ch, kind="stable")
        out[str(group)] = (ch[order], idx[order])
    return out
