"""Scans of a cache on S3 (or any fsspec object store) with few requests and few wasted bytes.

Polars' own object-store reader fetches every row group of a Parquet file with its own GET and
re-reads every footer on every query. On a cache whose ``units`` files hold dozens of small row
groups (``npc_frames.cache_layout``) a query touching one structure costs one request per row
group. This module plans the reads itself, per query:

1. **One listing** of the component's prefix (``ListObjectsV2``: one request per 1,000 files)
   gives every file's size and ETag; ``session_id`` filters prune files by their hive folder
   before anything is read.
2. **Footers are cached** in the process, keyed by (path, ETag): a file replaced in the cache has
   a new ETag, so its stale footer is never used. A footer not in the cache costs one suffix-range
   GET sized from the footers already seen (two for the very first file of a component whose
   footer is larger than 64 KiB).
3. The row groups the filter may match are chosen from the footer's statistics (pyarrow's
   ``ParquetFileFragment.subset``), and the **column chunks the query needs** (projected and
   filtered columns of those row groups) are computed from the footer.
4. Those byte ranges are **merged**: the smallest gaps between them are bridged first, as long as
   the bridged bytes stay within :data:`GAP_BUDGET` of the needed bytes. Column chunks of
   consecutive row groups are near each other in the cache's layout, so a query usually needs one
   or two GETs per file. The merged ranges of all files are fetched concurrently.
5. pyarrow decodes the row groups from memory (a read outside the fetched ranges, which the plan
   should never cause, falls back to one more ranged GET and is logged).

Files smaller than :data:`WHOLE_FILE_BYTES` are fetched whole in one GET.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from npc_frames import storage
from npc_frames.errors import CacheError

logger = logging.getLogger(__name__)

#: bridged gap bytes allowed when merging ranges, as a fraction of the bytes a file's query needs
GAP_BUDGET = 0.2
#: files at most this large are fetched whole with one GET (footer and data together)
WHOLE_FILE_BYTES = 128 * 1024
#: first suffix read of a footer before any footer of the component has been seen
FIRST_FOOTER_BYTES = 64 * 1024
#: bytes fetched at once by one scan (files are fetched in groups of about this size)
IN_FLIGHT_BYTES = 1024**3
#: bytes of cached footers kept per process (least recently used dropped first)
FOOTER_CACHE_BYTES = 256 * 1024**2
PARQUET_MAGIC = b"PAR1"


# ------------------------------------------------------------------------------- listing
@dataclass(frozen=True)
class RemoteObject:
    """One cache file on the object store, as the listing describes it."""

    path: str  # in the filesystem's terms (``bucket/key``)
    size: int
    version: str  # ETag (else last-modified)
    session_id: str


def list_component(root: str, component: str) -> list[RemoteObject]:
    """Return every ``<root>/<component>/session_id=*/data.parquet`` object (one listing)."""
    from npc_frames.cache.catalog import DATA_FILE

    fs, base = storage.filesystem(storage.join(root, component))
    try:
        found = fs.find(base, detail=True)
    except FileNotFoundError:
        return []
    out = []
    for name, info in found.items():
        parts = name.rsplit("/", 2)
        if len(parts) != 3 or parts[2] != DATA_FILE or not parts[1].startswith("session_id="):
            continue
        version = info.get("ETag") or info.get("etag") or storage.version_of(info)
        out.append(
            RemoteObject(
                name, int(info.get("size") or 0), str(version), parts[1][len("session_id=") :]
            )
        )
    return sorted(out, key=lambda o: o.path)


# ------------------------------------------------------------------------------- footers
@dataclass(frozen=True)
class Footer:
    """The footer bytes of one object version (the last ``len(tail)`` bytes of the file)."""

    tail: bytes
    metadata: pq.FileMetaData


class _FooterCache:
    """LRU of footers by (path, version), bounded by their bytes; remembers footer sizes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], Footer] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        #: largest footer (+ 8 bytes) seen per component: the size of the next suffix read
        self.sizes: dict[str, int] = {}

    def get(self, key: tuple[str, str]) -> Footer | None:
        with self._lock:
            footer = self._items.get(key)
            if footer is not None:
                self._items.move_to_end(key)
            return footer

    def put(self, key: tuple[str, str], footer: Footer) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old.tail)
            self._items[key] = footer
            self._bytes += len(footer.tail)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped.tail)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.sizes.clear()

    def __len__(self) -> int:
        return len(self._items)


FOOTERS = _FooterCache(FOOTER_CACHE_BYTES)


def _parse_footer(obj: RemoteObject, tail: bytes) -> Footer:
    if len(tail) < 12 or tail[-4:] != PARQUET_MAGIC:
        raise CacheError(
            "cache file is not a Parquet file (no PAR1 magic at its end)",
            path=obj.path,
            expected="a Parquet file written by npc_frames.convert (reconvert it)",
        )
    try:
        metadata = pq.read_metadata(pa.BufferReader(tail))
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for a damaged footer
        raise CacheError(
            f"cache file footer cannot be read: {type(exc).__name__}: {exc}",
            path=obj.path,
            expected="a Parquet file written by npc_frames.convert (reconvert it)",
        ) from exc
    return Footer(tail, metadata)


def _footer_length(obj: RemoteObject, tail: bytes) -> int:
    if len(tail) < 8 or tail[-4:] != PARQUET_MAGIC:
        raise CacheError(
            "cache file is not a Parquet file (no PAR1 magic at its end)",
            path=obj.path,
            expected="a Parquet file written by npc_frames.convert (reconvert it)",
        )
    return int.from_bytes(tail[-8:-4], "little") + 8


def footers(fs: Any, component: str, objects: Sequence[RemoteObject]) -> dict[str, Footer]:
    """Return path -> footer of `objects`, from the cache or with one suffix GET per file
    (fetched concurrently; a second GET only when the footer is longer than the first read)."""
    out: dict[str, Footer] = {}
    missing = []
    for obj in objects:
        cached = FOOTERS.get((obj.path, obj.version))
        if cached is not None:
            out[obj.path] = cached
        else:
            missing.append(obj)
    if not missing:
        return out
    if component not in FOOTERS.sizes and len(missing) > 1:
        # learn the component's footer size from one file before sizing the others' reads
        out.update(footers(fs, component, missing[:1]))
        missing = missing[1:]
    # files of one component have similar footers: a quarter more than the largest seen
    learned = FOOTERS.sizes.get(component)
    guess = FIRST_FOOTER_BYTES if learned is None else learned + learned // 4 + 4096
    starts = [0 if o.size <= WHOLE_FILE_BYTES else max(0, o.size - guess) for o in missing]
    tails = _cat_ranges(fs, [o.path for o in missing], starts, [o.size for o in missing])
    short = []
    for obj, start, tail in zip(missing, starts, tails, strict=True):
        need = _footer_length(obj, tail)
        if need > len(tail) and start > 0:
            short.append((obj, tail, need))
            continue
        if start == 0:  # a whole small file: keep it all, its data is served from the tail too
            footer = _parse_footer(obj, tail)
        else:
            footer = _parse_footer(obj, tail[len(tail) - need :])
        FOOTERS.sizes[component] = max(FOOTERS.sizes.get(component, 0), need)
        FOOTERS.put((obj.path, obj.version), footer)
        out[obj.path] = footer
    if short:
        rest = _cat_ranges(
            fs,
            [o.path for o, _, _ in short],
            [o.size - need for o, _, need in short],
            [o.size - len(t) for o, t, _ in short],
        )
        for (obj, tail, need), head in zip(short, rest, strict=True):
            footer = _parse_footer(obj, head + tail)
            FOOTERS.sizes[component] = max(FOOTERS.sizes.get(component, 0), need)
            FOOTERS.put((obj.path, obj.version), footer)
            out[obj.path] = footer
    return out


def _cat_ranges(fs: Any, paths: list[str], starts: list[int], ends: list[int]) -> list[bytes]:
    """Return the bytes of each ``[start, end)`` range (one ranged GET each, concurrently)."""
    if not paths:
        return []
    try:
        got = fs.cat_ranges(paths, starts, ends, on_error="raise")
    except FileNotFoundError as exc:
        raise CacheError(
            "cache file disappeared while it was read (a concurrent convert replaced it?)",
            path=str(exc),
            expected="the file the listing named (run the query again)",
        ) from exc
    return [bytes(b) for b in got]


# ------------------------------------------------------------------------------- planning
def merge_ranges(
    ranges: Sequence[tuple[int, int]], budget: float = GAP_BUDGET
) -> list[tuple[int, int]]:
    """Return `ranges` (``[start, stop)``) merged: touching ones always, then across the smallest
    gaps first while the bridged bytes stay within `budget` × the bytes of `ranges`."""
    if not ranges:
        return []
    spans: list[list[int]] = []
    for a, b in sorted(ranges):
        if spans and a <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    needed = sum(b - a for a, b in spans)
    gaps = sorted(range(len(spans) - 1), key=lambda i: spans[i + 1][0] - spans[i][1])
    allowed = budget * needed
    bridge = set()
    for i in gaps:
        gap = spans[i + 1][0] - spans[i][1]
        if gap > allowed:
            break
        allowed -= gap
        bridge.add(i)
    out = [tuple(spans[0])]
    for i in range(1, len(spans)):
        if i - 1 in bridge:
            out[-1] = (out[-1][0], spans[i][1])
        else:
            out.append(tuple(spans[i]))
    return [(int(a), int(b)) for a, b in out]


def column_chunk_ranges(
    metadata: pq.FileMetaData, row_groups: Sequence[int], columns: Sequence[str] | None
) -> list[tuple[int, int]]:
    """Return the ``[start, stop)`` byte ranges of the chunks of top-level `columns` (None: all)
    in `row_groups`, as the footer records them (dictionary page included)."""
    wanted = None if columns is None else set(columns)
    leaves = [
        j
        for j in range(metadata.num_columns)
        if wanted is None or metadata.schema.column(j).path.split(".")[0] in wanted
    ]
    out = []
    for g in row_groups:
        rg = metadata.row_group(g)
        for j in leaves:
            chunk = rg.column(j)
            start = chunk.data_page_offset
            if chunk.dictionary_page_offset is not None and chunk.dictionary_page_offset > 0:
                start = min(start, chunk.dictionary_page_offset)
            out.append((int(start), int(start + chunk.total_compressed_size)))
    return out


def _filter_columns(filter_: ds.Expression | None, names: Sequence[str]) -> set[str]:
    """Return the column names `filter_` may reference (a superset: names found in its text)."""
    if filter_ is None:
        return set()
    text = str(filter_)
    return {n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", text)}


# ------------------------------------------------------------------- in-memory file access
class _Ranges:
    """Byte ranges of one file held in memory, with a fallback GET for anything else."""

    def __init__(self, fs: Any, obj: RemoteObject, footer: Footer) -> None:
        self.fs, self.obj = fs, obj
        self.starts: list[int] = []
        self.data: list[bytes] = []
        self.lock = threading.Lock()
        self.unplanned = 0
        self.tail_start = obj.size - len(footer.tail)
        self.tail = footer.tail
        self.add(self.tail_start, footer.tail)

    def add(self, start: int, data: bytes) -> None:
        with self.lock:
            i = bisect.bisect_left(self.starts, start)
            self.starts.insert(i, start)
            self.data.insert(i, data)

    def read(self, pos: int, n: int) -> bytes:
        n = max(0, min(n, self.obj.size - pos))
        with self.lock:
            i = bisect.bisect_right(self.starts, pos) - 1
            if i >= 0 and pos + n <= self.starts[i] + len(self.data[i]):
                off = pos - self.starts[i]
                return self.data[i][off : off + n]
        if pos + n == self.obj.size and pos < self.tail_start:
            # pyarrow's speculative footer read (the last 64 KiB): only the footer at the end of
            # it is parsed, and that is cached; the bytes before it are never looked at
            return bytes(self.tail_start - pos) + self.tail
        logger.debug("%s: unplanned read of %d bytes at %d", self.obj.path, n, pos)
        self.unplanned += 1
        data = _cat_ranges(self.fs, [self.obj.path], [pos], [pos + n])[0]
        self.add(pos, data)
        return data


class _RangeFile:
    """A read-only file object over :class:`_Ranges` (what pyarrow's PythonFile wraps)."""

    def __init__(self, ranges: _Ranges) -> None:
        self.ranges, self.pos, self.closed = ranges, 0, False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.ranges.obj.size - self.pos
        data = self.ranges.read(self.pos, n)
        self.pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.ranges.obj.size}[whence]
        self.pos = base + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def size(self) -> int:
        return self.ranges.obj.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


class _MemoryHandler(pafs.FileSystemHandler):
    """A pyarrow filesystem whose files are the planned ranges of one query."""

    def __init__(self, files: dict[str, _Ranges]) -> None:
        self.files = files

    def get_type_name(self) -> str:
        return "npc-frames-ranges"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return [
            pafs.FileInfo(p, pafs.FileType.File, size=self.files[p].obj.size)
            if p in self.files
            else pafs.FileInfo(p, pafs.FileType.NotFound)
            for p in paths
        ]

    def open_input_file(self, path: str) -> pa.NativeFile:
        return pa.PythonFile(_RangeFile(self.files[path]), mode="r")

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.open_input_file(path)

    def _read_only(self, *args: object, **kwargs: object) -> Any:
        raise NotImplementedError("the planned-range filesystem is read-only")

    get_file_info_selector = create_dir = delete_dir = delete_dir_contents = _read_only
    delete_root_dir_contents = delete_file = move = copy_file = _read_only
    open_output_stream = open_append_stream = _read_only


# ------------------------------------------------------------------------------- dataset
@dataclass
class RemoteDataset:
    """A duck-typed pyarrow dataset over one component of a remote cache, for
    ``pl.scan_pyarrow_dataset``: each ``to_batches`` call lists, plans and fetches afresh."""

    root: str
    component: str
    schema: pa.Schema
    #: the listing made when the scan was created, used by its first query
    objects: list[RemoteObject] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        # a plan shipped to another process (Dask, LazyFrame.serialize) lists afresh there
        return {"root": self.root, "component": self.component, "schema": self.schema}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["component"], state["schema"])  # type: ignore[misc]

    def _objects(self) -> list[RemoteObject]:
        with self._lock:
            objects, self.objects = self.objects, None
        return objects if objects is not None else list_component(self.root, self.component)

    def to_batches(
        self,
        columns: list[str] | None = None,
        filter: ds.Expression | None = None,
        batch_size: int | None = None,
        **_: Any,
    ) -> Iterator[pa.RecordBatch]:
        """Yield the batches of the rows matching `filter`, with `columns` (None: all)."""
        for table in self.tables(columns, filter):
            yield from table.to_batches(max_chunksize=batch_size)

    def to_table(
        self,
        columns: list[str] | None = None,
        filter: ds.Expression | None = None,
    ) -> pa.Table:
        """Return the rows matching `filter` with `columns` as one table."""
        tables = list(self.tables(columns, filter))
        if not tables:
            return self.schema.empty_table().select(columns or self.schema.names)
        return pa.concat_tables(tables)

    def tables(
        self, columns: Sequence[str] | None, filter_: ds.Expression | None
    ) -> Iterator[pa.Table]:
        """Yield one table per file that may hold matching rows (planned, fetched, decoded)."""
        names = list(self.schema.names)
        columns = list(columns) if columns is not None else names
        objects = self._objects()
        if not objects:
            return
        fs, _ = storage.filesystem(self.root)
        # prune files by their hive folder before anything is read
        part = {o.path: ds.field("session_id") == o.session_id for o in objects}
        if filter_ is not None:
            probe = ds.FileSystemDataset(
                [
                    ds.ParquetFileFormat().make_fragment(
                        o.path, pafs.LocalFileSystem(), part[o.path]
                    )
                    for o in objects
                ],
                schema=self.schema,
                format=ds.ParquetFileFormat(),
                filesystem=pafs.LocalFileSystem(),
            )
            keep = {f.path for f in probe.get_fragments(filter=filter_)}
            objects = [o for o in objects if o.path in keep]
        if not objects:
            return
        feet = footers(fs, self.component, objects)
        files = {o.path: _Ranges(fs, o, feet[o.path]) for o in objects}
        handler_fs = pafs.PyFileSystem(_MemoryHandler(files))
        fmt = ds.ParquetFileFormat(
            default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False)
        )
        # session_id is the hive folder's: never read from the files
        physical = [c for c in columns if c != "session_id"]
        needed = sorted(set(physical) | (_filter_columns(filter_, names) - {"session_id"}))
        # per file: its fragment (row groups the statistics admit) and its merged ranges
        plans: list[tuple[RemoteObject, ds.Fragment, list[tuple[int, int]]]] = []
        for obj in objects:
            frag = fmt.make_fragment(obj.path, handler_fs, part[obj.path], file_size=obj.size)
            if filter_ is not None:
                frag = frag.subset(filter=filter_, schema=self.schema)
            row_groups = [rg.id for rg in frag.row_groups]
            if not row_groups:
                continue
            ranges: list[tuple[int, int]] = []
            if obj.size > WHOLE_FILE_BYTES:  # else fetched whole with its footer
                tail_start = obj.size - len(feet[obj.path].tail)
                wanted = [
                    (a, min(b, tail_start))
                    for a, b in column_chunk_ranges(feet[obj.path].metadata, row_groups, needed)
                    if a < tail_start
                ]
                ranges = merge_ranges(wanted)
            plans.append((obj, frag, ranges))
        # the filter is applied after the read, with session_id from the folder: pyarrow would
        # otherwise read the files' own session_id column, chunk by chunk, to evaluate it
        session_field = self.schema.field("session_id")
        with_session = "session_id" in columns or "session_id" in _filter_columns(filter_, names)
        for group in _groups(plans, IN_FLIGHT_BYTES):
            paths = [obj.path for obj, _, ranges in group for _ in ranges]
            starts = [a for _, _, ranges in group for a, _ in ranges]
            ends = [b for _, _, ranges in group for _, b in ranges]
            for path, a, data in zip(
                paths, starts, _cat_ranges(fs, paths, starts, ends), strict=True
            ):
                files[path].add(a, data)
            for obj, frag, _ in group:
                table = ds.Scanner.from_fragment(
                    frag, schema=self.schema, columns=needed, use_threads=False
                ).to_table()
                if with_session:
                    sid = pa.array([obj.session_id] * table.num_rows, session_field.type)
                    table = table.append_column(session_field, sid)
                if filter_ is not None:
                    table = table.filter(filter_)
                files.pop(obj.path, None)  # free the fetched bytes of this file
                yield table.select(columns)


def _groups(
    plans: list[tuple[RemoteObject, ds.Fragment, list[tuple[int, int]]]], limit: int
) -> Iterator[list[tuple[RemoteObject, ds.Fragment, list[tuple[int, int]]]]]:
    """Yield consecutive plans whose ranges add up to at most `limit` bytes (at least one each),
    so that a scan of many large files never holds all their bytes at once."""
    group: list[tuple[RemoteObject, ds.Fragment, list[tuple[int, int]]]] = []
    total = 0
    for plan in plans:
        size = sum(b - a for a, b in plan[2])
        if group and total + size > limit:
            yield group
            group, total = [], 0
        group.append(plan)
        total += size
    if group:
        yield group


def arrow_schema(schema: pl.Schema) -> pa.Schema:
    """Return the Arrow schema (large types) that a Polars `schema` scans as."""
    return pl.DataFrame(schema=schema).to_arrow(compat_level=pl.CompatLevel.oldest()).schema


def scan_remote(
    root: str, component: str, schema: pl.Schema, objects: list[RemoteObject]
) -> pl.LazyFrame:
    """Return a LazyFrame over `component` of the remote cache `root` read by :class:`RemoteDataset`."""
    dataset = RemoteDataset(root, component, arrow_schema(schema), objects)
    return pl.scan_pyarrow_dataset(dataset)  # type: ignore[arg-type]
