"""Zero-copy views of a packed list column in a local cache file, read from its Parquet pages.

A packed column (``npc_frames.cache_layout``) stores each row's numbers as one uncompressed PLAIN
``BYTE_ARRAY``: in a data page, after the definition levels, every non-null row is a 4-byte
little-endian length followed by that many bytes of little-endian values. So once the file is
memory-mapped, each unit's spike times are already a float64 array in the page cache: this module
walks the page headers (Thrift compact protocol) and the definition levels and returns, per row,
the byte offset and length of its values, without decoding or copying a single spike.

Anything this reader does not expect (a compressed or dictionary-encoded chunk, an unknown page
type, a nested column) raises :class:`_Unsupported`, and the caller falls back to the Parquet
reader, so the reader never has to be right about layouts it was not written for.
"""

from __future__ import annotations

import logging
import mmap
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

# Parquet's enums (parquet.thrift)
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
_PLAIN, _RLE = 0, 3


class _Unsupported(Exception):
    """The column chunk is not laid out as a packed column; read it the ordinary way."""


@dataclass(frozen=True)
class PackedColumn:
    """Where each row's values of one packed column sit in a memory-mapped file."""

    buffer: mmap.mmap
    start: npt.NDArray[np.int64]  # byte offset of each row's values (-1 for a null row)
    nbytes: npt.NDArray[np.int64]  # byte length of each row's values (0 for a null row)


class _Compact:
    """A reader of Thrift's compact protocol, enough for Parquet page headers."""

    def __init__(self, buf: mmap.mmap | bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos

    def byte(self) -> int:
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = out = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int) -> object:
        if kind in (1, 2):  # booleans are in the type nibble of a field header
            return kind == 1
        if kind == 3:
            return self.byte()
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            self.pos += 8
            return None
        if kind == 8:
            n = self.varint()
            self.pos += n
            return None
        if kind in (9, 10):
            head = self.byte()
            size, elem = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            for _ in range(size):
                self.value(elem if elem not in (1, 2) else 3)
            return None
        if kind == 11:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.value(types >> 4)
                    self.value(types & 0x0F)
            return None
        if kind == 12:
            return self.struct()
        raise _Unsupported(f"thrift type {kind}")

    def struct(self) -> dict[int, object]:
        out: dict[int, object] = {}
        last = 0
        while True:
            head = self.byte()
            if head == 0:
                return out
            delta, kind = head >> 4, head & 0x0F
            field = last + delta if delta else self.zigzag()
            out[field] = self.value(kind)
            last = field


def _levels(buf: mmap.mmap, pos: int, end: int, n: int) -> npt.NDArray[np.bool_]:
    """Decode `n` definition levels of bit width 1 (RLE / bit-packed hybrid) in ``buf[pos:end]``."""
    out = np.empty(n, dtype=bool)
    reader, filled = _Compact(buf, pos), 0
    while filled < n:
        if reader.pos >= end:
            raise _Unsupported("definition levels end early")
        head = reader.varint()
        if head & 1:  # bit-packed: groups of 8 values, one byte per group at bit width 1
            groups = head >> 1
            bits = np.unpackbits(
                np.frombuffer(buf, np.uint8, count=groups, offset=reader.pos), bitorder="little"
            )
            reader.pos += groups
            take = min(bits.size, n - filled)
            out[filled : filled + take] = bits[:take].astype(bool)
        else:  # a run of one repeated value
            run = head >> 1
            value = reader.byte()
            take = min(run, n - filled)
            out[filled : filled + take] = bool(value)
        filled += take
    return out


def _values(
    buf: mmap.mmap, pos: int, present: npt.NDArray[np.bool_], start: list[int], nbytes: list[int]
) -> None:
    """Append each row's (offset, length) of a PLAIN BYTE_ARRAY page body starting at `pos`."""
    unpack = struct.Struct("<I").unpack_from
    for is_set in present.tolist():  # one entry per unit row, never per spike
        if is_set:
            (n,) = unpack(buf, pos)
            start.append(pos + 4)
            nbytes.append(n)
            pos += 4 + n
        else:
            start.append(-1)
            nbytes.append(0)


def read_packed(
    path: str, column: str, buffer: mmap.mmap | None = None, meta: pq.FileMetaData | None = None
) -> PackedColumn:
    """Return per-row byte ranges of packed `column` in the local Parquet file at `path`.

    Raises ``_Unsupported`` if the column chunks are not uncompressed PLAIN byte arrays of a
    top-level column.
    """
    if meta is None:
        meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    if column not in names:
        raise _Unsupported(f"no column {column}")
    ci = names.index(column)
    col_schema = meta.schema.column(ci)
    if col_schema.physical_type != "BYTE_ARRAY" or col_schema.max_repetition_level != 0:
        raise _Unsupported("not a top-level byte array")
    max_def = col_schema.max_definition_level
    if buffer is None:
        with open(path, "rb") as f:
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    start: list[int] = []
    nbytes: list[int] = []
    for g in range(meta.num_row_groups):
        chunk = meta.row_group(g).column(ci)
        if chunk.compression != "UNCOMPRESSED" or chunk.dictionary_page_offset is not None:
            raise _Unsupported("compressed or dictionary-encoded chunk")
        pos = chunk.data_page_offset
        end = pos + chunk.total_compressed_size
        rows_left = meta.row_group(g).num_rows
        while rows_left > 0 and pos < end:
            header = _Compact(buffer, pos)
            page = header.struct()
            body, size = header.pos, int(page[3])  # type: ignore[call-overload]
            kind = page[1]
            if kind == _DATA_PAGE:
                dph = page[5]
                assert isinstance(dph, dict)
                n, p = int(dph[1]), body
                if dph[2] != _PLAIN:
                    raise _Unsupported("value encoding is not PLAIN")
                if max_def:
                    if dph[3] != _RLE:
                        raise _Unsupported("definition levels are not RLE")
                    (length,) = struct.unpack_from("<I", buffer, p)
                    present = _levels(buffer, p + 4, p + 4 + length, n)
                    p += 4 + length
                else:
                    present = np.ones(n, dtype=bool)
            elif kind == _DATA_PAGE_V2:
                dph = page[8]
                assert isinstance(dph, dict)
                n, p = int(dph[1]), body
                if dph[4] != _PLAIN:
                    raise _Unsupported("v2 page is not PLAIN/uncompressed")
                def_len, rep_len = int(dph[5]), int(dph[6])  # type: ignore[call-overload]
                p += rep_len
                present = _levels(buffer, p, p + def_len, n) if max_def else np.ones(n, bool)
                p += def_len
            else:
                raise _Unsupported(f"page type {kind}")
            _values(buffer, p, present, start, nbytes)
            rows_left -= n
            pos = body + size
        if rows_left:
            raise _Unsupported("row group pages hold fewer rows than the row group")
    return PackedColumn(
        buffer, np.asarray(start, dtype=np.int64), np.asarray(nbytes, dtype=np.int64)
    )
