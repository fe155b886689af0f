"""CCF annotations of probe channels: where each channel sits in the Allen mouse brain atlas.

Three sources exist (docs/formats.md, "CCF annotations"):

* **TissueCyte CSVs** ``Probe_<letter><day>_channels_<subject>_….csv`` (25 µm voxels);
* **IBL probe-alignment payloads**: the JSON stored with an alignment curation, holding
  ``ccf_channel_results`` (``channel_<n>`` -> ``{x, y, z, axial, lateral, brain_region_id,
  brain_region}``), optionally wrapped as ``{"curations": [<payload or JSON string>, …]}`` (the
  last curation wins);
* **legacy IBL-GUI files** ``<probe>/ccf_channel_results.json`` whose top level is that mapping.

They are looked for in the session folder (top level, and ``annotations/``, ``annotation/``,
``ccf/``, ``tissuecyte/`` below it), in an ``annotations`` derived asset (to depth 3), and in the
files the manifest lists under ``ccf_annotations`` (a path, a list of paths, or probe -> path).
The probe of a JSON file is named by the file or its parent folder (``ProbeA``, ``probe_A``,
``ProbeA_0`` …).

Decisions (docs/quirks.md, "CCF annotation precedence")
-------------------------------------------------------
* Precedence is per probe: an IBL alignment payload, else a legacy IBL-GUI file, else TissueCyte.
  Alignments are curated against the recorded electrophysiology, which is why they are preferred.
* IBL coordinates: millimetres when every |x|, |y|, |z| < 20, micrometres when < 20 000, else the
  file is rejected; ``ccf_ap = y``, ``ccf_ml = −x``, ``ccf_dv = −z`` (scaled to µm). Legacy files
  use the same rule.
* ``location`` is the Allen acronym (IBL: by ``brain_region_id`` in the Allen structure tree,
  falling back to the payload's ``brain_region``); ``structure`` is the layer-stripped location;
  channels outside the brain (region id 0 ``void``, or no region) are ``out of brain``.
* A file that cannot be used (malformed, names no probe, names a probe that was not recorded) is
  reported as a typed error naming it; the other probes are annotated.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from npc_frames import parts
from npc_frames.errors import (
    BadFormatError,
    InconsistentDataError,
    MissingFileError,
    NpcFramesError,
)
from npc_frames.memo import Memo

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = [
    "OUT_OF_BRAIN",
    "AnnotationSet",
    "ccf_annotations",
    "collapse_prefixes",
    "is_annotated",
    "probe_letter_of",
    "read_ibl_annotation",
    "read_tissuecyte_annotation",
    "strip_layer",
    "structure_tree",
]

logger = logging.getLogger(__name__)

#: location/structure of an annotated channel outside the brain
OUT_OF_BRAIN = "out of brain"
#: CCF voxel size of TissueCyte annotations, µm
CCF_VOXEL_UM = 25.0
#: IBL coordinates below this magnitude are millimetres, below ``MAX_UM`` micrometres
MAX_MM = 20.0
MAX_UM = 20_000.0
#: acronyms starting with these are collapsed to the prefix (sub-areas and layers pooled)
COLLAPSED_PREFIXES: tuple[str, ...] = ("ACAd", "ACAv", "MOp", "ECT")
#: annotation kinds, highest precedence first
KINDS: tuple[str, ...] = ("ibl", "ibl_legacy", "tissuecyte")
#: folders below the session root that may hold annotation files
ANNOTATION_DIRS: tuple[str, ...] = ("annotations", "annotation", "ccf", "tissuecyte")

_TISSUECYTE_RE = re.compile(r"Probe_?(?P<letter>[A-F])\d*_channels_\d+.*\.csv$")
_PROBE_RE = re.compile(r"(?:^|[^A-Za-z])[Pp]robe[-_ ]?(?P<letter>[A-F])(?![A-Za-z])")
_CHANNEL_KEY_RE = re.compile(r"^channel_(\d+)$")

_COLUMNS = {
    "group_name": pl.String,
    "channel": pl.Int64,
    "x": pl.Float64,
    "y": pl.Float64,
    "z": pl.Float64,
    "location": pl.String,
    "structure": pl.String,
    "raw_structure": pl.String,
}


# ------------------------------------------------------------------------------ structure tree
@functools.cache
def structure_tree() -> pl.DataFrame:
    """Return the Allen CCF structure tree (``id``, ``acronym``, ``name``) shipped by iblatlas."""
    from importlib import resources

    try:
        path = resources.files("iblatlas").joinpath("allen_structure_tree.csv")
    except ModuleNotFoundError:
        raise MissingFileError(
            "the Allen structure tree needs the iblatlas package",
            field="iblatlas",
            expected="pip install 'npc_frames[anatomy]'",
        ) from None
    with resources.as_file(path) as p:
        tree = pl.read_csv(p, columns=["id", "acronym", "name"], infer_schema_length=None)
    return tree.with_columns(pl.col("id").cast(pl.Int64)).filter(pl.col("acronym").is_not_null())


def _strip_one(acronym: str, names: Mapping[str, str]) -> str:
    base = acronym.split("-", 1)[0]
    name = names.get(base)
    if name is not None and "layer" in name.lower():
        token = re.split(r"layer", name, flags=re.IGNORECASE)[-1].strip().split(" ")[0]
        if token:
            base = base.removesuffix(token) if base.endswith(token) else base.replace(token, "", 1)
    for prefix in COLLAPSED_PREFIXES:
        if base.startswith(prefix):
            return prefix
    return base


def strip_layer(acronyms: pl.Series) -> pl.Series:
    """Return `acronyms` with cortical layers removed (``ACAd5`` -> ``ACAd``, ``MOs2/3`` -> ``MOs``).

    The text before the first ``-`` is kept; when its full name in the Allen tree mentions a
    layer, the layer token (the word after the last "layer" in the name) is removed from the
    acronym; acronyms starting with ``ACAd``, ``ACAv``, ``MOp`` or ``ECT`` become that prefix.
    ``out of brain`` and acronyms unknown to the tree keep their text (prefix rule aside).
    """
    tree = structure_tree()
    names = dict(zip(tree["acronym"].to_list(), tree["name"].to_list(), strict=True))
    uniques = [a for a in acronyms.unique().to_list() if a is not None]
    mapping = {a: (a if a == OUT_OF_BRAIN else _strip_one(a, names)) for a in uniques}
    return acronyms.replace_strict(mapping, default=None, return_dtype=pl.String)


def collapse_prefixes(acronyms: pl.Series) -> pl.Series:
    """Return `acronyms` with those starting ``ACAd``, ``ACAv``, ``MOp`` or ``ECT`` set to that
    prefix (no structure tree needed)."""
    expr = pl.col("a")
    for prefix in COLLAPSED_PREFIXES:
        expr = pl.when(pl.col("a").str.starts_with(prefix)).then(pl.lit(prefix)).otherwise(expr)
    return pl.DataFrame({"a": acronyms.cast(pl.String)}).select(expr.alias(acronyms.name))[
        acronyms.name
    ]


# -------------------------------------------------------------------------------------- readers
def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=_COLUMNS)


def read_tissuecyte_annotation(path: str, group: str) -> pl.DataFrame:
    """Return one row per channel of a TissueCyte annotation CSV (CCF µm, location, structure)."""
    parts.record_read(path)  # Polars opens the file itself
    try:
        df = pl.read_csv(path, infer_schema_length=None)
    except Exception as exc:  # polars raises several types for bad CSVs
        raise BadFormatError(f"CCF annotation CSV cannot be read: {exc}", path=path) from exc
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

    def text(col: str) -> pl.Expr:
        return pl.col(col).cast(pl.String) if col in df.columns else pl.lit(None, pl.String)

    out = df.select(
        pl.lit(group).alias("group_name"),
        pl.col("channel").cast(pl.Int64),
        um("AP").alias("x"),
        um("DV").alias("y"),
        um("ML").alias("z"),
        text("region").fill_null(OUT_OF_BRAIN).alias("location"),
        text("region_stripped").alias("structure"),
        text("raw_structure").alias("raw_structure"),
    )
    if "region_stripped" in df.columns:  # the producer's own stripping: only pool sub-areas
        structure = collapse_prefixes(out["structure"])
    else:
        structure = strip_layer(out["location"])
    return out.with_columns(
        structure.fill_null(OUT_OF_BRAIN).alias("structure"),
        pl.when(pl.col("raw_structure").str.starts_with("ECT"))
        .then(pl.lit("ECT"))
        .otherwise(pl.col("raw_structure"))
        .alias("raw_structure"),
    )


def _ibl_channel_results(doc: Any, path: str) -> tuple[Mapping[str, Any], str]:
    """Return (the ``channel_<n>`` mapping, kind) of a parsed IBL annotation file."""
    if isinstance(doc, Mapping) and "curations" in doc:
        curations = doc["curations"]
        if not isinstance(curations, Sequence) or isinstance(curations, str) or not curations:
            raise BadFormatError(
                "alignment record has no curations",
                path=path,
                field="curations",
                expected="a non-empty list of payloads",
            )
        doc = curations[-1]
        if isinstance(doc, str):
            try:
                doc = json.loads(doc)
            except json.JSONDecodeError as exc:
                raise BadFormatError(
                    f"last curation is not JSON: {exc}", path=path, field="curations[-1]"
                ) from None
    if isinstance(doc, Mapping) and isinstance(doc.get("ccf_channel_results"), Mapping):
        return doc["ccf_channel_results"], "ibl"
    if isinstance(doc, Mapping) and doc and all(_CHANNEL_KEY_RE.match(str(k)) for k in doc):
        return doc, "ibl_legacy"
    raise BadFormatError(
        "not an IBL alignment payload",
        path=path,
        field="ccf_channel_results",
        expected="{ccf_channel_results: {channel_<n>: {x, y, z, brain_region_id, brain_region}}}"
        " or the channel_<n> mapping itself",
    )


def _load_json(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadFormatError(f"annotation JSON cannot be parsed: {exc}", path=path) from None


def read_ibl_annotation(path: str, group: str) -> tuple[pl.DataFrame, str]:
    """Return (one row per channel of an IBL alignment or legacy IBL-GUI JSON, its kind)."""
    results, kind = _ibl_channel_results(_load_json(path), path)
    keys = sorted(results, key=lambda k: int(str(k).rsplit("_", 1)[1]))
    rows = [results[k] for k in keys]
    for k, r in zip(keys, rows, strict=True):
        if not isinstance(r, Mapping) or not {"x", "y", "z"} <= set(r):
            raise BadFormatError(
                "channel entry lacks coordinates",
                path=path,
                field=str(k),
                expected="{x, y, z, brain_region_id, brain_region}",
            )
    try:
        xyz = np.array([[r["x"], r["y"], r["z"]] for r in rows], dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise BadFormatError(
            "channel coordinates are not numbers", path=path, field="x, y, z"
        ) from None
    finite = np.abs(xyz[np.isfinite(xyz)])
    peak = float(finite.max()) if finite.size else 0.0
    if peak < MAX_MM:
        scale = 1000.0
    elif peak < MAX_UM:
        scale = 1.0
    else:
        raise BadFormatError(
            f"coordinates up to {peak:g} are neither mm nor µm",
            path=path,
            field="x, y, z",
            expected=f"max |x|, |y|, |z| < {MAX_MM:g} (mm) or < {MAX_UM:g} (µm)",
        )
    tree = structure_tree()
    by_id = dict(zip(tree["id"].to_list(), tree["acronym"].to_list(), strict=True))

    def region(r: Mapping[str, Any]) -> str | None:
        rid = r.get("brain_region_id")
        acronym = by_id.get(int(rid)) if isinstance(rid, int | float) and np.isfinite(rid) else None
        acronym = acronym or r.get("brain_region") or None
        return None if acronym in (None, "void") else str(acronym)

    df = pl.DataFrame(
        {
            "group_name": [group] * len(rows),
            "channel": [int(str(k).rsplit("_", 1)[1]) for k in keys],
            "x": xyz[:, 1] * scale,
            "y": -xyz[:, 2] * scale,
            "z": -xyz[:, 0] * scale,
            "location": pl.Series([region(r) for r in rows], dtype=pl.String).fill_null(
                OUT_OF_BRAIN
            ),
        },
        schema_overrides={"channel": pl.Int64},
    )
    df = df.with_columns(
        strip_layer(df["location"]).alias("structure"),
        pl.lit(None, pl.String).alias("raw_structure"),
    )
    return df.select(list(_COLUMNS)), kind


# ------------------------------------------------------------------------------------ discovery
def probe_letter_of(path: str) -> str | None:
    """Return the probe letter a file's name (else its parent folder's name) gives, or None."""
    name = os.path.basename(path)
    m = _TISSUECYTE_RE.search(name) or _PROBE_RE.search(name)
    if m is None:
        m = _PROBE_RE.search(os.path.basename(os.path.dirname(path)))
    return m["letter"] if m else None


def _walk(folder: str, depth: int) -> list[str]:
    out: list[str] = []
    level = [folder]
    for _ in range(depth + 1):
        nxt: list[str] = []
        for d in level:
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for e in entries:
                if e.is_dir():
                    nxt.append(e.path)
                elif e.name.endswith((".csv", ".json")):
                    out.append(e.path)
        level = nxt
    return out


def annotation_files(raw: RawSession) -> list[str]:
    """Return the local paths of every candidate annotation file of a session (no parsing)."""
    found: list[str] = []
    if not raw.is_remote:
        root = raw.root
        found += [
            os.path.join(root, n)
            for n in sorted(os.listdir(root))
            if _TISSUECYTE_RE.search(n) and os.path.isfile(os.path.join(root, n))
        ]
        for d in ANNOTATION_DIRS:
            found += _walk(os.path.join(root, d), 2)
    asset = raw.assets.get("annotations")
    if asset is not None:
        found += _walk(raw.local(asset), 3)
    given = raw.annotations.get("ccf_annotations")
    if isinstance(given, str | os.PathLike):
        given = [given]
    elif isinstance(given, Mapping):
        given = list(given.values())
    for p in given or []:
        local = raw.local(os.fspath(p))
        found += _walk(local, 3) if os.path.isdir(local) else [local]
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class AnnotationSet:
    """CCF annotations of a session's recorded probes, where they came from, and what failed."""

    #: one row per annotated channel: group_name, channel, x/y/z (CCF AP/DV/ML µm), location,
    #: structure, raw_structure
    table: pl.DataFrame
    #: probe letter -> (kind, path) of the annotation used
    sources: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    #: path -> why that file was not used
    errors: Mapping[str, NpcFramesError] = field(default_factory=dict)

    @property
    def letters(self) -> tuple[str, ...]:
        """Return the letters of the annotated probes, sorted."""
        return tuple(sorted(self.sources))


def _read_annotation(path: str, letter: str) -> tuple[pl.DataFrame, str]:
    if path.endswith(".csv"):
        return read_tissuecyte_annotation(path, f"probe{letter}"), "tissuecyte"
    return read_ibl_annotation(path, f"probe{letter}")


#: parsed annotation files (local copies, keyed by content): every ephys component of a session
#: selects its probes from the same files
_ANNOTATIONS: Memo[tuple[pl.DataFrame, str]] = Memo("CCF annotation files", maxsize=64)


def ccf_annotations(raw: RawSession, letters: Iterable[str] | None = None) -> AnnotationSet:
    """Return the CCF annotations of the probes `letters` (default: the recorded probes).

    Every candidate file is read; per probe the highest-precedence kind (IBL alignment, legacy
    IBL-GUI, TissueCyte; within a kind the lexically last path) is used. Files that fail, name
    no probe, or name a probe not in `letters` are listed in ``errors`` (typed, naming the file).
    """
    if letters is None:
        from npc_frames.components.ephys import probe_setup

        letters = probe_setup(raw).recorded_letters
    wanted = set(letters)
    errors: dict[str, NpcFramesError] = {}
    candidates: dict[str, list[tuple[int, str, pl.DataFrame, str]]] = {}
    for path in annotation_files(raw):
        is_csv = path.endswith(".csv")
        if is_csv and not _TISSUECYTE_RE.search(os.path.basename(path)):
            continue
        letter = probe_letter_of(path)
        if letter is None:
            errors[path] = BadFormatError(
                "annotation file names no probe",
                path=path,
                expected="ProbeA … ProbeF in the file or folder name",
            )
            continue
        if letter not in wanted:
            errors[path] = InconsistentDataError(
                f"annotation for probe {letter}, which was not recorded (or is skipped)",
                path=path,
                field="probe",
                expected=f"one of {''.join(sorted(wanted)) or 'no probes'}",
            )
            continue
        try:
            df, kind = _ANNOTATIONS.read(path, functools.partial(_read_annotation, letter=letter))
        except NpcFramesError as exc:
            errors[path] = exc
            continue
        candidates.setdefault(letter, []).append((KINDS.index(kind), path, df, kind))
    tables: list[pl.DataFrame] = []
    sources: dict[str, tuple[str, str]] = {}
    for letter in sorted(candidates):
        # highest-precedence kind; within it the lexically last path (dated names sort later)
        newest_first = sorted(candidates[letter], key=lambda c: c[1], reverse=True)
        _, path, df, kind = min(newest_first, key=lambda c: c[0])
        tables.append(df)
        sources[letter] = (kind, path)
    for path, err in errors.items():
        logger.warning("CCF annotation %s not used: %s", path, err)
    table = pl.concat(tables, how="vertical_relaxed") if tables else _empty()
    return AnnotationSet(table=table, sources=sources, errors=errors)


def is_annotated(raw: RawSession) -> bool:
    """Return True when at least one recorded probe of the session has a CCF annotation."""
    return bool(ccf_annotations(raw).sources)
