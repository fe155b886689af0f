"""Declared schemas of every component frame: dtype, unit and one-line description per column.

The schema is the single source of truth for a component's columns: components validate their
output against it, the cache writes it (with each column's description and unit in the Parquet
field metadata), scans use it to give one stable schema across sessions, the DuckDB views carry
its descriptions as column comments, and ``to_nwb()`` copies the descriptions into the NWB file.
:func:`describe` lists every column as a frame (``npc-frames describe [COMPONENT]`` prints it).

Schemas are declared in :mod:`npc_frames.schemas.behavior` and :mod:`npc_frames.schemas.ephys` and
collected here in :data:`SCHEMAS`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from npc_frames.errors import SchemaError

__all__ = [
    "SCHEMAS",
    "SCHEMA_VERSION",
    "Column",
    "Schema",
    "describe",
    "get_schema",
    "register",
    "structure_digest",
]

logger = logging.getLogger(__name__)

#: Bumped whenever a change to any schema would break readers of an existing cache. A change to
#: one component's columns needs no bump to be picked up: the component's
#: :func:`structure_digest` is part of its fingerprint, so ``convert`` recomputes it.
SCHEMA_VERSION = 1


def structure_digest(columns: Iterable[tuple[str, object, bool]]) -> str:
    """Return a short sha256 hex of ``(name, dtype, required)`` triples, in order.

    The digest of a component's column structure (not its descriptions): joined to the
    component's input fingerprint, so a cache computed before a column was added, removed,
    renamed or retyped is recomputed rather than reported unchanged.
    """
    text = json.dumps([[str(n), str(d), bool(r)] for n, d, r in columns])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Column:
    """One column of a component frame."""

    name: str
    dtype: pl.DataType | type[pl.DataType]
    description: str
    #: required columns must be present in every frame a component returns; optional columns are
    #: filled with nulls when absent (e.g. CCF coordinates in sessions without annotation).
    required: bool = True
    #: unit of measure as a short symbol ("s", "Hz", "µm", "µV", "cm/s"); None for counts, flags,
    #: names and ratios. Copied to NWB where a container has one.
    unit: str | None = None
    #: the column may hold nulls (always True for optional columns); NaN in a float column is a
    #: value, not a null
    nullable: bool = False

    def __post_init__(self) -> None:
        if not self.required and not self.nullable:
            object.__setattr__(self, "nullable", True)

    @property
    def dtype_name(self) -> str:
        """Return the Polars dtype as text, e.g. ``Float64`` or ``List(Float64)``."""
        return str(self.dtype() if isinstance(self.dtype, type) else self.dtype)

    @property
    def comment(self) -> str:
        """Return the description with the unit appended in brackets (DuckDB column comment)."""
        return f"{self.description} [{self.unit}]" if self.unit else self.description


@dataclass(frozen=True, repr=False)
class Schema:
    """Ordered columns of one component, plus the table-level description used in NWB."""

    name: str
    description: str
    columns: tuple[Column, ...]
    #: columns that identify a row within a session (for sorting and de-duplication)
    key: tuple[str, ...] = field(default_factory=tuple)

    #: at most this many columns are listed by ``repr``
    REPR_COLUMNS = 12

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if not names or names[0] != "session_id":
            raise ValueError(f"schema {self.name!r}: first column must be 'session_id'")
        if len(set(names)) != len(names):
            raise ValueError(f"schema {self.name!r}: duplicate column names")

    def __repr__(self) -> str:
        """Return a multi-line summary: name, description, then one line per column (truncated)."""
        return _schema_repr(self, self.REPR_COLUMNS)

    @property
    def names(self) -> list[str]:
        """Return the column names in declared order."""
        return [c.name for c in self.columns]

    @property
    def digest(self) -> str:
        """Return the :func:`structure_digest` of this schema's columns."""
        return structure_digest((c.name, c.dtype, c.required) for c in self.columns)

    @property
    def polars_schema(self) -> pl.Schema:
        """Return the Polars schema (name -> dtype) in declared order."""
        return pl.Schema({c.name: c.dtype for c in self.columns})

    def column(self, name: str) -> Column:
        """Return the declared column called `name` (SchemaError if undeclared)."""
        for c in self.columns:
            if c.name == name:
                return c
        raise SchemaError(
            f"component {self.name!r} has no column {name!r}",
            field=name,
            expected=f"one of {self.names}",
        )

    def descriptions(self) -> dict[str, str]:
        """Return a mapping column name -> description."""
        return {c.name: c.description for c in self.columns}

    def empty(self) -> pl.DataFrame:
        """Return a zero-row frame with this schema."""
        return pl.DataFrame(schema=self.polars_schema)

    def validate(self, df: pl.DataFrame, *, source: object | None = None) -> pl.DataFrame:
        """Return `df` conformed to this schema: declared order, declared dtypes, nulls for
        absent optional columns.

        Raises SchemaError naming the missing required columns, undeclared extra columns, or a
        column that cannot be cast to its declared dtype. ``source`` (a path or session id) is
        quoted in the error.
        """
        present = set(df.columns)
        missing = [c.name for c in self.columns if c.required and c.name not in present]
        if missing:
            raise SchemaError(
                f"component {self.name!r} frame lacks required columns {missing}",
                path=source,
                field=", ".join(missing),
                expected=f"columns {self.names}",
            )
        extra = sorted(present - set(self.names))
        if extra:
            raise SchemaError(
                f"component {self.name!r} frame has undeclared columns {extra}",
                path=source,
                field=", ".join(extra),
                expected="only columns declared in npc_frames.schemas",
            )
        exprs = []
        for c in self.columns:
            if c.name in present:
                exprs.append(pl.col(c.name).cast(c.dtype, strict=True))
            else:
                exprs.append(pl.lit(None, dtype=c.dtype).alias(c.name))
        try:
            return df.select(exprs)
        except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
            raise SchemaError(
                f"component {self.name!r}: a column cannot be cast to its declared dtype: {exc}",
                path=source,
                expected=str(dict(self.polars_schema)),
            ) from exc


SCHEMAS: dict[str, Schema] = {}


def register(schemas: Iterable[Schema]) -> None:
    """Add schemas to the registry (called by the declaring modules at import)."""
    for s in schemas:
        SCHEMAS[s.name] = s


def get_schema(name: str) -> Schema:
    """Return the schema of component `name` (SchemaError listing known components if unknown)."""
    try:
        return SCHEMAS[name]
    except KeyError:
        raise SchemaError(
            f"unknown component {name!r}", field=name, expected=f"one of {sorted(SCHEMAS)}"
        ) from None


def describe(component: str | None = None) -> pl.DataFrame:
    """Return one row per column of `component` (all components when None) from the schemas.

    Columns: ``component``, ``column``, ``dtype`` (Polars dtype as text), ``unit`` (null when the
    column has none), ``description``, ``nullable`` (the column may hold nulls; NaN in a float
    column is a value). Rows follow the registry's component order, then each schema's column
    order. Raises SchemaError listing the known components for an unknown `component`.

    Examples
    --------
    >>> import npc_frames as nf
    >>> d = nf.describe("running_speed")
    >>> d.select("column", "dtype", "unit").rows()
    [('session_id', 'String', None), ('timestamps', 'Float64', 's'), ('speed', 'Float64', 'cm/s')]
    """
    chosen = list(SCHEMAS.values()) if component is None else [get_schema(component)]
    rows = [
        (s.name, c.name, c.dtype_name, c.unit, c.description, c.nullable)
        for s in chosen
        for c in s.columns
    ]
    return pl.DataFrame(rows, schema=DESCRIBE_SCHEMA, orient="row")


#: columns of the frame returned by :func:`describe`
DESCRIBE_SCHEMA = pl.Schema(
    {
        "component": pl.String(),
        "column": pl.String(),
        "dtype": pl.String(),
        "unit": pl.String(),
        "description": pl.String(),
        "nullable": pl.Boolean(),
    }
)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _schema_repr(schema: Schema, max_columns: int) -> str:
    """Return the multi-line repr of `schema`, listing at most `max_columns` columns."""
    n = len(schema.columns)
    head = f"Schema({schema.name!r}, {n} columns, key={schema.key!r})"
    lines = [head, f"  {_shorten(schema.description, 96)}"]
    shown = schema.columns[:max_columns]
    name_w = max(len(c.name) for c in shown)
    type_w = max(len(c.dtype_name) for c in shown)
    unit_w = max((len(c.unit) + 2 for c in shown if c.unit), default=0)
    for c in shown:
        unit = f"[{c.unit}]" if c.unit else ""
        null = "?" if c.nullable else " "
        lines.append(
            f"  {c.name:<{name_w}} {c.dtype_name:<{type_w}}{null} {unit:<{unit_w}} "
            f"{_shorten(c.description, 60)}".rstrip()
        )
    if n > len(shown):
        lines.append(f"  … {n - len(shown)} more columns (npc_frames.describe({schema.name!r}))")
    return "\n".join(lines)


# populate the registry; these modules only call `register(...)`.
from npc_frames.schemas import behavior as _behavior  # noqa: E402,F401
from npc_frames.schemas import ephys as _ephys  # noqa: E402,F401
from npc_frames.schemas import qc as _qc  # noqa: E402,F401
from npc_frames.schemas import video as _video  # noqa: E402,F401
from npc_frames.schemas import video_behavior as _video_behavior  # noqa: E402,F401
