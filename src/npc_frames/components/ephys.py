"""Ephys hardware components: ``devices``, ``electrode_groups``, ``electrodes`` (FORMATS §11.5).

A probe is *recorded* when settings.xml lists it and the main recording of a record node holds its
AP stream; only recorded probes appear (in settings.xml order). The settings.xml of every record
node of a session is identical except its DATE, so the first readable one is used.

Decisions
---------
* Electrode-group ``location`` is ``unknown``: probe-insertion records are not read yet; a manifest
  may give it as ``raw.annotations["probe_locations"] = {"A": "2002 A2", …}``.
* CCF annotation: TissueCyte CSVs ``Probe_<letter><day>_channels_<subject>_…csv`` found in the
  session root or its ``annotations``/``ccf``/``tissuecyte`` folders (FORMATS §11.5). Voxel
  coordinates (25 µm, −1 = outside the brain) become µm (NaN outside). The reference tries
  TissueCyte before IBL records **[quirk]**; we read TissueCyte only (IBL records are not part of
  the raw upload).
* Surface-channel recordings (``RawSession.is_surface_channel``: a folder ending
  ``_surface_channels``, or a later recording of the day without sync or stim files) add 384 to
  channels.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from npc_frames import parts
from npc_frames._log import timed
from npc_frames.alignment import local_record_nodes
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
#: CCF voxel size of the TissueCyte annotation, µm
CCF_VOXEL_UM = 25.0

_ANNOTATION_RE = re.compile(r"Probe_?(?P<letter>[A-F])\d*_channels_\d+.*\.csv$")


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
    """Return one row per recorded probe: serial number, model, manufacturer, group name."""
    setup = probe_setup(raw)
    _require_settings(setup, raw)
    sid = str(raw.session_id)
    df = pl.DataFrame(
        {
            "session_id": [sid] * len(setup.probes),
            "name": [p.serial for p in setup.probes],
            "description": [p.name for p in setup.probes],
            "manufacturer": [MANUFACTURER] * len(setup.probes),
            "electrode_group_name": [f"probe{p.letter}" for p in setup.probes],
        },
        schema=DEVICES.polars_schema,
    )
    return DEVICES.validate(df, source=raw.root)


@timed
def electrode_groups(raw: RawSession) -> pl.DataFrame:
    """Return one electrode group per recorded probe (``probe<letter>``)."""
    setup = probe_setup(raw)
    _require_settings(setup, raw)
    sid = str(raw.session_id)
    locations = dict(raw.annotations.get("probe_locations", {}) or {})
    df = pl.DataFrame(
        {
            "session_id": [sid] * len(setup.probes),
            "name": [f"probe{p.letter}" for p in setup.probes],
            "device_name": [p.serial for p in setup.probes],
            "description": [p.name for p in setup.probes],
            "location": [str(locations.get(p.letter, "unknown")) for p in setup.probes],
        },
        schema=ELECTRODE_GROUPS.polars_schema,
    )
    return ELECTRODE_GROUPS.validate(df, source=raw.root)


def _annotation_paths(raw: RawSession) -> dict[str, str]:
    root = raw.root
    if raw.is_remote:
        return {}
    out: dict[str, str] = {}
    patterns = [os.path.join(root, "*.csv")] + [
        os.path.join(root, d, "*.csv") for d in ("annotations", "annotation", "ccf", "tissuecyte")
    ]
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            m = _ANNOTATION_RE.search(os.path.basename(path))
            if m:
                out.setdefault(m["letter"], path)
    return out


def _read_annotation(path: str, group: str) -> pl.DataFrame:
    from npc_frames.errors import BadFormatError

    parts.record_read(path)  # Polars opens the file itself
    df = pl.read_csv(path, infer_schema_length=None)
    need = {"channel", "AP", "DV", "ML"}
    if not need <= set(df.columns):
        raise BadFormatError(
            "CCF annotation CSV lacks columns",
            path=path,
            field=", ".join(sorted(need - set(df.columns))),
            expected="channel, AP, DV, ML (25 µm voxels), region, region_stripped",
        )

    def um(col: str) -> pl.Expr:
        v = pl.col(col).cast(pl.Float64)
        return pl.when(v < 0).then(float("nan")).otherwise(v * CCF_VOXEL_UM)

    structure = (
        pl.col("region_stripped").cast(pl.String)
        if "region_stripped" in df.columns
        else pl.lit(None, pl.String)
    )
    return df.select(
        pl.lit(group).alias("group_name"),
        pl.col("channel").cast(pl.Int64),
        um("AP").alias("x"),
        um("DV").alias("y"),
        um("ML").alias("z"),
        (pl.col("region").cast(pl.String) if "region" in df.columns else pl.lit(None, pl.String))
        .fill_null("out of brain")
        .alias("location_ccf"),
        pl.when(structure.str.starts_with("ECT"))
        .then(pl.lit("ECT"))
        .otherwise(structure)
        .alias("structure"),
        (
            pl.col("raw_structure").cast(pl.String)
            if "raw_structure" in df.columns
            else pl.lit(None, pl.String)
        ).alias("raw_structure"),
    )


@timed
def electrodes(raw: RawSession) -> pl.DataFrame:
    """Return one row per channel of each recorded probe with its position on the probe (and CCF
    coordinates when an annotation CSV exists)."""
    setup = probe_setup(raw)
    _require_settings(setup, raw)
    sid = str(raw.session_id)
    parts = [
        pl.DataFrame(
            {
                "group_name": f"probe{p.letter}",
                "channel": p.channels + setup.channel_offset,
                "rel_x": p.channel_x,
                "rel_y": p.channel_y,
            }
        )
        for p in setup.probes
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
    annotations = _annotation_paths(raw)
    anns = [
        _read_annotation(path, f"probe{letter}")
        for letter, path in annotations.items()
        if letter in {p.letter for p in setup.probes}
    ]
    if anns:
        ann = pl.concat(anns, how="vertical_relaxed").with_columns(
            pl.col("channel") + setup.channel_offset
        )
        df = df.join(ann, on=["group_name", "channel"], how="left", maintain_order="left")
        df = df.with_columns(pl.col("location_ccf").fill_null("unannotated").alias("location"))
        df = df.drop("location_ccf")
    else:
        df = df.with_columns(pl.lit("unannotated").alias("location"))
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
