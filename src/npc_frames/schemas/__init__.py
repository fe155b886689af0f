"""Declared schemas of every component frame: one dtype and one-line description per column.

The schema is the single source of truth for a component's columns: components validate their
output against it, the cache writes it, scans use it to give one stable schema across sessions, and
``to_nwb()`` copies the descriptions into the NWB file.

Schemas are declared in :mod:`npc_frames.schemas.behavior` and :mod:`npc_frames.schemas.ephys` and
collected here in :data:`SCHEMAS`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from npc_frames.errors import SchemaError

__all__ = ["SCHEMAS", "SCHEMA_VERSION", "Column", "Schema", "get_schema", "register"]

logger = logging.getLogger(__name__)

#: Bumped whenever a change to any schema would break readers of an existing cache.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Column:
    """One column of a component frame."""

    name: str
    dtype: pl.DataType | type[pl.DataType]
    description: str
    #: required columns must be present in every frame a component returns; optional columns are
    #: filled with nulls when absent (e.g. CCF coordinates in sessions without annotation).
    required: bool = True
    #: unit of measure, copied to NWB where a container has one (e.g. "seconds", "cm/s", "uV").
    unit: str | None = None


@dataclass(frozen=True)
class Schema:
    """Ordered columns of one component, plus the table-level description used in NWB."""

    name: str
    description: str
    columns: tuple[Column, ...]
    #: columns that identify a row within a session (for sorting and de-duplication)
    key: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if not names or names[0] != "session_id":
            raise ValueError(f"schema {self.name!r}: first column must be 'session_id'")
        if len(set(names)) != len(names):
            raise ValueError(f"schema {self.name!r}: duplicate column names")

    @property
    def names(self) -> list[str]:
        """Return the column names in declared order."""
        return [c.name for c in self.columns]

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


# populate the registry; these modules only call `register(...)`.
from npc_frames.schemas import behavior as _behavior  # noqa: E402,F401
from npc_frames.schemas import ephys as _ephys  # noqa: E402,F401
from npc_frames.schemas import video as _video  # noqa: E402,F401
from npc_frames.schemas import video_behavior as _video_behavior  # noqa: E402,F401
