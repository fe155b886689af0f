"""The ``manipulator_positions`` component: NewScale stage positions of each probe at recording start.

The rig's NewScale software logs every stage movement to a CSV (docs/formats.md, "NewScale
manipulator log"). The component keeps, per stage, its last position before the Open Ephys
recording started (settings.xml ``DATE``), maps the stage serial to its probe, and undoes the
z-axis inversion of rigs whose stages report 0 at full insertion.

Decisions (docs/quirks.md)
--------------------------
* The reference reads the log's first line as a header and so loses the first movement; we use it
  as data unless its coordinate fields are not numbers.
* Rows of skipped probes (:mod:`npc_frames.probes`) are dropped; a serial not in any rig's table
  keeps the serial as its group name (it cannot be told apart from a used probe), except that an
  inverted log with an unknown serial is an error, because its travel is unknown.
"""

from __future__ import annotations

import datetime
import io
import logging
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from npc_frames._log import timed
from npc_frames.errors import BadFormatError, InconsistentDataError
from npc_frames.schemas.ephys import MANIPULATOR_POSITIONS

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = [
    "SERIAL_TO_PROBE",
    "find_newscale_log",
    "manipulator_positions",
    "read_newscale_log",
]

logger = logging.getLogger(__name__)

#: NewScale stage serial -> probe letter, per rig (a serial is on one rig only)
RIG_SERIALS: dict[str, dict[str, str]] = {
    "NP0": {
        "SN32148": "A",
        "SN32142": "B",
        "SN32144": "C",
        "SN32149": "D",
        "SN24272": "D",
        "SN32135": "E",
        "SN24273": "F",
    },
    "NP1": {
        "SN40911": "A",
        "SN40900": "B",
        "SN40912": "C",
        "SN40913": "D",
        "SN40914": "E",
        "SN40910": "F",
    },
    "NP2": {
        "SN45356": "A",
        "SN45484": "B",
        "SN45485": "C",
        "SN45359": "D",
        "SN45482": "E",
        "SN45361": "F",
    },
    "NP3": {
        "SN40906": "A",
        "SN40908": "B",
        "SN40907": "C",
        "SN41084": "D",
        "SN40903": "E",
        "SN40902": "F",
    },
}
SERIAL_TO_PROBE: dict[str, str] = {s: p for rig in RIG_SERIALS.values() for s, p in rig.items()}
#: stages with 6 mm of z travel; every other known stage has 15 mm
SHORT_TRAVEL_SERIALS = frozenset({"SN32148", "SN32142", "SN32144", "SN32149", "SN32135", "SN24273"})
SHORT_TRAVEL_UM = 6_000.0
LONG_TRAVEL_UM = 15_000.0
#: sessions before this date have no usable log
FIRST_LOG_DATE = datetime.date(2023, 1, 30)
#: at most this many stages (the most recently moved) are kept
MAX_DEVICES = 6

_FIELDS = ("last_movement_dt", "device_name", "x", "y", "z", "x_virtual", "y_virtual", "z_virtual")
_DATETIME_FORMATS = (
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%m/%d/%Y %H:%M:%S%.f",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %I:%M:%S %p",
)


def find_newscale_log(raw: RawSession) -> str | None:
    """Return the session's NewScale log: the one ``.csv`` whose stem contains ``log``,
    ``motor-locs`` or ``motor_locs`` (BadFormatError naming them when there are several)."""
    found = raw.folder_files(
        lambda name: (
            name.endswith(".csv")
            and any(k in name[:-4] for k in ("log", "motor-locs", "motor_locs"))
        )
    )
    if len(found) > 1:
        raise BadFormatError(
            "several NewScale logs", path=", ".join(found), expected="one log.csv / motor-locs csv"
        )
    return found[0] if found else None


def read_newscale_log(path: str) -> pl.DataFrame:
    """Return every row of a NewScale log: movement time, serial, x/y/z (µm) and virtual x/y/z."""
    try:
        with open(path, "rb") as f:
            text = f.read()
        df = pl.read_csv(
            io.BytesIO(text),
            has_header=False,
            new_columns=list(_FIELDS),
            schema_overrides=dict.fromkeys(_FIELDS, pl.String),
            truncate_ragged_lines=True,
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise BadFormatError(f"NewScale log cannot be read: {exc}", path=path) from None
    if df.width != len(_FIELDS):
        raise BadFormatError(f"NewScale log has {df.width} fields per row", path=path, expected="8")
    df = df.with_columns(pl.col(c).str.strip_chars() for c in _FIELDS)
    num = [pl.col(c).cast(pl.Float64, strict=False) for c in _FIELDS[2:]]
    df = df.with_columns(num)
    if df.height and df.row(0, named=True)["x"] is None:  # a header line
        df = df.slice(1)
    dt = pl.coalesce(
        [pl.col("last_movement_dt").str.to_datetime(f, strict=False) for f in _DATETIME_FORMATS]
    )
    return df.with_columns(dt.alias("last_movement_dt"))


@timed
def manipulator_positions(raw: RawSession) -> pl.DataFrame:
    """Return one row per probe stage: its x/y/z (µm) and last movement time (s, before the
    recording start) — empty when the session has no log or no movement on its date."""
    from npc_frames.components.ephys import probe_setup
    from npc_frames.probes import probe_selection

    sid = str(raw.session_id)
    date = raw.session_id.date
    path = find_newscale_log(raw)
    settings = probe_setup(raw).settings
    if path is None or settings is None or settings.date is None or date < FIRST_LOG_DATE:
        return MANIPULATOR_POSITIONS.empty()
    path = raw.local(path)
    log = read_newscale_log(path).filter(pl.col("last_movement_dt").is_not_null())
    reference = settings.date.replace(tzinfo=None)
    today = log.filter(pl.col("last_movement_dt").dt.date() >= reference.date())
    if today.is_empty():
        return MANIPULATOR_POSITIONS.empty()
    z100 = (today["z"].drop_nulls() / 100).round() * 100
    travel = LONG_TRAVEL_UM if (z100 == LONG_TRAVEL_UM).any() else SHORT_TRAVEL_UM
    inverted = bool((z100 == travel).sum() > (z100 == 0).sum())
    rows = (
        log.filter(pl.col("last_movement_dt") < reference)
        .sort("last_movement_dt")
        .group_by("device_name", maintain_order=True)
        .last()
        .sort("last_movement_dt", descending=True)
        .head(MAX_DEVICES)
    )
    serials = rows["device_name"].to_list()
    unknown = sorted(s for s in serials if s not in SERIAL_TO_PROBE)
    if inverted and unknown:
        raise InconsistentDataError(
            f"unknown NewScale serial {', '.join(unknown)}: its z travel (to undo the inverted "
            "z axis) is not known",
            path=path,
            field="device_name",
            expected=f"one of {sorted(SERIAL_TO_PROBE)}",
        )
    travel_of = np.array(
        [SHORT_TRAVEL_UM if s in SHORT_TRAVEL_SERIALS else LONG_TRAVEL_UM for s in serials]
    )
    z = rows["z"].to_numpy()
    group = [f"probe{SERIAL_TO_PROBE[s]}" if s in SERIAL_TO_PROBE else s for s in serials]
    out = pl.DataFrame(
        {
            "session_id": [sid] * rows.height,
            "electrode_group_name": group,
            "device_name": serials,
            "x": rows["x"],
            "y": rows["y"],
            "z": travel_of - z if inverted else z,
            "last_movement_time": (rows["last_movement_dt"] - reference).dt.total_microseconds()
            / 1e6,
        },
        schema_overrides={"z": pl.Float64},
    )
    skipped = {f"probe{k}" for k in probe_selection(raw).skipped}
    out = out.filter(~pl.col("electrode_group_name").is_in(list(skipped))).sort(
        "electrode_group_name"
    )
    return MANIPULATOR_POSITIONS.validate(out, source=path)
