"""Discovery of the raw files of one session (FORMATS §1.2), local or on any fsspec filesystem.

`RawSession.from_path` lists folders and file sizes; it never reads file contents. Components and
readers receive the RawSession and open only the files they need.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs

from npc_frames import parts, storage
from npc_frames._log import timed
from npc_frames.assets import ASSET_KINDS, choose_assets
from npc_frames.errors import InvalidIdError, MissingFileError, ParameterError
from npc_frames.ids import (
    SessionId,
    index_sessions,
    is_surface_channels_name,
    parse_date,
    parse_datetime,
    parse_session_id,
    parse_subject,
)

__all__ = ["RawSession"]

logger = logging.getLogger(__name__)

# stim files known to be corrupt in the reference's tracked sessions (FORMATS §1.2)
EXCLUDED_STIM_STEMS = frozenset({"DynamicRouting1_670248_20230802_120703"})
_VIDEO_DIRS = ("behavior_videos", "behavior-videos", "behavior")
_ECEPHYS_DIRS = ("ecephys/ecephys_clipped", "ecephys_clipped", "ecephys")
_SORTING_DIRS = ("sorting", "sorted", "spike_sorting")
_METADATA_NAMES = (
    "subject.json",
    "session.json",
    "data_description.json",
    "procedures.json",
    "rig.json",
    "invalid_times.yaml",
    "invalid_times.yml",
    "invalid_times.json",
)
_VIDEO_SUFFIXES = (".mp4", ".avi")


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


@dataclass(frozen=True)
class RawSession:
    """The raw files of one session, as discovered (frozen; holds paths, not contents).

    Paths are local absolute paths for local sessions and full URLs (``s3://bucket/…``) otherwise,
    so they can be handed to :meth:`open` or to fsspec directly.
    """

    root: str
    session_id: SessionId
    sync_path: str | None = None
    stim_paths: tuple[str, ...] = ()
    record_node_paths: tuple[str, ...] = ()
    sorting_path: str | None = None
    video_paths: tuple[str, ...] = ()
    video_json_paths: tuple[str, ...] = ()
    metadata_paths: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)
    #: derived asset kind (:data:`npc_frames.assets.ASSET_KINDS`) -> asset folder, given or found
    #: beside the raw folder; ``sorted`` is listed when the sorting output comes from an asset
    assets: Mapping[str, str] = field(default_factory=dict)
    #: path -> (size in bytes, modification stamp or etag) of every discovered file; the cache's
    #: input fingerprint is computed from it
    file_stats: Mapping[str, tuple[int, str]] = field(default_factory=dict, compare=False)

    # -------------------------------------------------------------------------------- discovery
    @classmethod
    @timed
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        session_id: str | SessionId | None = None,
        annotations: Mapping[str, Any] | None = None,
        assets: Mapping[str, str | os.PathLike[str]] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> RawSession:
        """Return the RawSession discovered in folder `path` (local path or fsspec URL).

        The session id is parsed from the folder name (e.g. an AIND asset name
        ``ecephys_668755_2023-08-31_12-33-31``) unless given; when the folder name has none, the
        first stim file's name is used. For a raw asset name (``ecephys_``/``behavior_`` +
        subject + date + time, or such a name + ``_surface_channels``) the same-day index comes
        from the raw assets beside it in the parent folder (one listing), by
        :func:`npc_frames.ids.index_sessions`: the day's second recording is ``…_1``.

        Derived assets (kinds: :data:`npc_frames.assets.ASSET_KINDS` — ``sorted``, ``dlc_eye``,
        ``dlc_side``, ``dlc_face``, ``facemap``, ``lp_face_parts``, ``gamma_encoding``,
        ``lfp_subsampled``, ``annotations``) are the sibling folders of `path` chosen by
        :func:`npc_frames.assets.choose_assets`; `assets` gives some or all of them explicitly
        (kind -> folder on the same filesystem), replacing the sibling of that kind. Sorting
        output is, in order: an explicit ``sorted`` asset, ``sorting/``, ``sorted/`` or
        ``spike_sorting/`` inside `path`, a sibling ``sorted`` asset; it is searched to depth 3
        (:func:`npc_frames.readers.sorting.find_sortings`).

        Examples
        --------
        >>> raw = nf.RawSession.from_path("raw/ecephys_603074_2023-08-31_12-33-31")  # or an s3:// URL
        >>> raw.session_id
        SessionId('603074_2023-08-31')
        >>> raw.is_sync, raw.is_ephys, len(raw.stim_paths)
        (True, True, 4)
        >>> raw.sync_path.endswith("behavior/20230831T123331.h5")
        True
        """
        url = os.fspath(path)
        fs, root = url_to_fs(url, **dict(storage_options or {}))
        root = root.rstrip("/") or "/"
        local = _is_local(fs)
        if local:
            root = os.path.abspath(root)
        if not fs.isdir(root):
            raise MissingFileError(
                "raw session folder does not exist",
                path=url,
                expected="a folder of raw session files",
            )
        prefix = "" if local else _protocol_prefix(fs)

        def full(p: str) -> str:
            if local or p.startswith(prefix):
                return p
            return prefix + p.lstrip("/")

        stats: dict[str, tuple[int, str]] = {}

        def ls(folder: str) -> list[dict[str, Any]]:
            try:
                entries = fs.ls(folder, detail=True)
            except (FileNotFoundError, NotADirectoryError):
                return []
            for e in entries:
                if e.get("type") == "file":
                    stats[full(e["name"])] = (int(e.get("size") or 0), storage.version_of(e))
            return list(entries)

        def files(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in entries if e.get("type") == "file"]

        def dirs(entries: Iterable[dict[str, Any]]) -> list[str]:
            return [e["name"].rstrip("/") for e in entries if e.get("type") == "directory"]

        top = ls(root)
        top_dirs = {posixpath.basename(d): d for d in dirs(top)}
        behavior = ls(top_dirs["behavior"]) if "behavior" in top_dirs else []
        candidates = files(top) + files(behavior)

        sid = _session_id(session_id, root, candidates)
        if session_id is None:
            sid = _same_day_index(fs, root, sid)

        sync_path = _select_sync(candidates, sid)
        stim_paths = _select_stims(candidates, sid)

        videos: list[str] = []
        video_jsons: list[str] = []
        for name in _VIDEO_DIRS:
            if name not in top_dirs:
                continue
            entries = behavior if name == "behavior" else ls(top_dirs[name])
            for e in files(entries):
                base = posixpath.basename(e["name"])
                lower = base.lower()
                if lower.endswith(_VIDEO_SUFFIXES):
                    videos.append(e["name"])
                elif lower.endswith(".json") and _is_camera_file(base):
                    video_jsons.append(e["name"])

        record_nodes: list[str] = []
        for rel in _ECEPHYS_DIRS:
            folder = posixpath.join(root, rel)
            nodes = [d for d in dirs(ls(folder)) if posixpath.basename(d).startswith("Record Node")]
            if nodes:
                record_nodes = sorted(nodes)
                break

        for node in record_nodes:  # settings.xml etc. enter the fingerprint
            ls(node)

        chosen = _sibling_assets(fs, root, full)
        for kind, given in (assets or {}).items():
            if kind not in ASSET_KINDS:
                raise ParameterError(
                    f"unknown asset kind {kind!r}", field="assets", expected=f"{list(ASSET_KINDS)}"
                )
            given = os.fspath(given).rstrip("/")
            chosen[kind] = given if "://" in given or not local else os.path.abspath(given)
        in_folder = next((top_dirs[name] for name in _SORTING_DIRS if name in top_dirs), None)
        if in_folder is not None and not (assets and "sorted" in assets):
            chosen.pop("sorted", None)
        sorting_path = chosen.get("sorted", in_folder)
        for kind, folder in chosen.items():  # asset files enter the fingerprint (depth <= 3)
            level = [folder if local else folder.split("://", 1)[-1]]
            for _ in range(4):
                level = [
                    d
                    for f in level
                    for d in dirs(ls(f))
                    if not (kind == "sorted" and d.endswith(".zarr"))
                ]
        if in_folder is not None and sorting_path == in_folder:  # per-probe folders, to depth 3
            level = [in_folder]
            for _ in range(4):
                level = [d for f in level for d in dirs(ls(f)) if not d.endswith(".zarr")]

        metadata: dict[str, str] = {}
        for e in files(top):
            base = posixpath.basename(e["name"])
            if base in _METADATA_NAMES:
                metadata[base] = full(e["name"])
        for e in files(behavior):
            if posixpath.basename(e["name"]) == "debug.log":
                metadata["debug.log"] = full(e["name"])

        return cls(
            root=full(root),
            session_id=sid,
            sync_path=full(sync_path) if sync_path else None,
            stim_paths=tuple(full(p) for p in stim_paths),
            record_node_paths=tuple(full(p) for p in record_nodes),
            sorting_path=full(sorting_path) if sorting_path else None,
            video_paths=tuple(full(p) for p in sorted(videos)),
            video_json_paths=tuple(full(p) for p in sorted(video_jsons)),
            metadata_paths=MappingProxyType(metadata),
            annotations=parts.Annotations(
                annotations.unrecorded()
                if isinstance(annotations, parts.Annotations)
                else annotations
            ),
            assets=MappingProxyType({k: full(v) for k, v in sorted(chosen.items())}),
            file_stats=MappingProxyType(stats),
        )

    # ------------------------------------------------------------------------------ properties
    @property
    def is_sync(self) -> bool:
        """Return True when a sync file was found (times are then on the sync clock)."""
        return self.sync_path is not None

    @property
    def is_ephys(self) -> bool:
        """Return True when Open Ephys record nodes were found."""
        return bool(self.record_node_paths)

    @property
    def is_sorted(self) -> bool:
        """Return True when a spike-sorting output folder was found."""
        return self.sorting_path is not None

    @property
    def is_video(self) -> bool:
        """Return True when MVR video sidecars were found."""
        return bool(self.video_json_paths)

    @property
    def platform(self) -> str | None:
        """Return the AIND platform of the folder name (``ecephys`` or ``behavior``), else None."""
        base = posixpath.basename(self.root.rstrip("/"))
        head = base.split("_", 1)[0]
        return head if head in ("ecephys", "behavior") and "_" in base else None

    @property
    def is_behavior_box(self) -> bool:
        """Return True for a behaviour-box session: no sync file and a ``_box_`` camera video."""
        return not self.is_sync and any(
            "_box_" in posixpath.basename(p).lower() for p in self.video_json_paths
        )

    @property
    def is_surface_channel(self) -> bool:
        """Return True for a surface-channel ("deep insertion") recording.

        That is a second, short Open Ephys recording of the day with the probes' channel banks
        at the brain surface: a folder named ``<main folder>_surface_channels``, or an Open Ephys
        recording with neither sync file nor stim files that is not the day's first session.
        """
        if is_surface_channels_name(self.root):
            return True
        return (
            self.is_ephys and not self.is_sync and not self.stim_paths and self.session_id.idx > 0
        )

    @property
    def main_session_id(self) -> SessionId | None:
        """Return the id of the main session a surface-channel recording belongs to, else None.

        The main session is the day's recording just before it: index − 1.
        """
        if not self.is_surface_channel or self.session_id.idx == 0:
            return None
        sid = self.session_id
        return SessionId(sid.subject, sid.date, sid.idx - 1)

    @property
    def is_task(self) -> bool:
        """Return True when a DynamicRouting1 task file was found."""
        return bool(self.stim_paths_for("DynamicRouting1"))

    def stim_paths_for(self, script: str) -> tuple[str, ...]:
        """Return the stim paths whose script name (file stem up to the first ``_``) is `script`."""
        return tuple(p for p in self.stim_paths if script_name(p) == script)

    # ------------------------------------------------------------------------------------ I/O
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """Return the fsspec filesystem the session lives on."""
        return url_to_fs(self.root)[0]

    def open(self, path: str, mode: str = "rb") -> IO[Any]:
        """Return an open file object for `path` (local or remote) — the caller closes it."""
        parts.record_read(path)
        return fsspec.open(path, mode).open()  # type: ignore[no-any-return]

    @property
    def is_remote(self) -> bool:
        """Return True when the session lives on a remote fsspec filesystem (e.g. ``s3://``)."""
        return storage.is_remote(self.root)

    def stat_key(self, path: str) -> tuple[int, str]:
        """Return (size in bytes, version stamp) of file `path`: the key of its content.

        The one file-stat key of the library: memoized readers key on it and the cache's input
        fingerprint is made of it. Remote files take the stamp recorded at discovery (no round
        trip); local files are stat-ed now, so a file rewritten since discovery gets a new key.
        """
        if storage.is_remote(path) and path in self.file_stats:
            size, stamp = self.file_stats[path]
            return (int(size), str(stamp))
        return storage.stat_key(path)

    def local(self, path: str) -> str:
        """Return a local filesystem path with the content of file or folder `path`.

        Local paths come back unchanged. A remote file or folder is downloaded once into the
        per-user download cache (``$NPC_FRAMES_DOWNLOADS``, else ``<tmp>/npc_frames_downloads``)
        under a name made of its URL and content (a file's :meth:`stat_key`; a folder's listing
        of names, sizes and stamps), and published atomically, so concurrent processes share one
        copy and a changed file gets a new one. Open Ephys record nodes, sorting folders and HDF5
        files are read through memmaps and libraries that need real files; clipped uploads keep
        them small enough to fetch whole.
        """
        if not storage.is_remote(path):
            return path.removeprefix("file://")
        parts.record_read(path)  # the local copy's opens are outside the session root
        url = path.rstrip("/")
        if url in self.file_stats:
            content: str = repr(self.stat_key(url))
        else:
            fs, remote = url_to_fs(url)
            if fs.isdir(remote):
                listing = fs.find(remote, detail=True)
                content = "|".join(
                    f"{name}:{info.get('size')}:{storage.version_of(info)}"
                    for name, info in sorted(listing.items())
                )
            else:
                content = repr(storage.stat_key(url))
        key = hashlib.sha256(f"{url}|{content}".encode()).hexdigest()[:20]
        base = os.environ.get(
            "NPC_FRAMES_DOWNLOADS", os.path.join(tempfile.gettempdir(), "npc_frames_downloads")
        )
        return storage.download(url, os.path.join(base, key, posixpath.basename(url)))

    def local_tree(self, path: str) -> str:
        """Return a local copy of folder `path` (same as :meth:`local`, kept for callers)."""
        return self.local(path)

    def folder_files(self, match: Callable[[str], bool]) -> list[str]:
        """Return the files directly in the session folder or its ``behavior/`` folder whose base
        name `match` accepts, sorted.

        Taken from discovery's listing; a session built without one (``file_stats`` empty) lists
        its local folders instead.
        """
        root = self.root.rstrip("/")
        folders = {root, posixpath.join(root, "behavior")}
        if self.file_stats:
            return sorted(
                p
                for p in self.file_stats
                if posixpath.dirname(p) in folders and match(posixpath.basename(p))
            )
        if self.is_remote:
            return []
        return sorted(
            os.path.join(folder, name)
            for folder in sorted(folders)
            if os.path.isdir(folder)
            for name in os.listdir(folder)
            if match(name) and os.path.isfile(os.path.join(folder, name))
        )

    def input_paths(self) -> list[str]:
        """Return every discovered file whose content a component may read (for fingerprints)."""
        return sorted(self.file_stats)


# ------------------------------------------------------------------------------------ helpers
def script_name(path: str) -> str:
    """Return the TaskControl script name of a stim file: its stem up to the first underscore."""
    return posixpath.basename(path).split("_", 1)[0]


def _protocol_prefix(fs: fsspec.AbstractFileSystem) -> str:
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    return f"{protocol}://"


def _sibling_assets(fs: fsspec.AbstractFileSystem, root: str, full: Any) -> dict[str, str]:
    """Return kind -> sibling asset folder of `root` (one listing of its parent; I/O)."""
    parent = posixpath.dirname(root.rstrip("/"))
    if not parent or parent == root:
        return {}
    try:
        names = [
            e["name"].rstrip("/")
            for e in fs.ls(parent, detail=True)
            if e.get("type") == "directory"
        ]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return {}
    return {k: full(v) for k, v in choose_assets(root, names).items()}


def _is_camera_file(name: str) -> bool:
    lower = name.lower()
    return any(s in lower for s in ("eye", "face", "beh", "_box_", "nose"))


def _session_id(
    given: str | SessionId | None, root: str, candidates: list[dict[str, Any]]
) -> SessionId:
    if given is not None:
        return parse_session_id(given)
    try:
        return parse_session_id(posixpath.basename(root))
    except InvalidIdError:
        pass
    for e in candidates:
        name = posixpath.basename(e["name"])
        if name.endswith(".hdf5"):
            try:
                return parse_session_id(name.rsplit(".", 1)[0])
            except InvalidIdError:
                continue
    raise InvalidIdError(
        f"no session id in folder name {posixpath.basename(root)!r} or its stim file names",
        path=root,
        field="session_id",
        expected="a folder such as ecephys_<subject>_<YYYY-MM-DD>_<HH-MM-SS>, or pass session_id=",
    )


def _same_day_index(fs: fsspec.AbstractFileSystem, root: str, sid: SessionId) -> SessionId:
    """Return `sid` with the same-day index of raw asset folder `root` among the raw assets in
    its parent folder (I/O: one listing); `sid` unchanged when `root` is no raw asset name."""
    base = posixpath.basename(root.rstrip("/"))
    if base not in index_sessions([base]):
        return sid
    parent = posixpath.dirname(root.rstrip("/"))
    prefixes = tuple(f"{p}_{sid.subject}_{sid.date:%Y-%m-%d}_" for p in ("ecephys", "behavior"))
    names = {base}
    if parent and parent != root:
        try:
            listing = fs.ls(parent, detail=False)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            listing = []
        names.update(
            b
            for b in (posixpath.basename(str(n).rstrip("/")) for n in listing)
            if b.startswith(prefixes)
        )
    return index_sessions(names)[base]


def _select_sync(candidates: list[dict[str, Any]], sid: SessionId) -> str | None:
    """FORMATS §1.2: suffix .sync, or .h5 whose stem starts with <YYYYMMDD>T of the session
    date; the largest if several."""
    prefix = f"{sid.date:%Y%m%d}T"
    found = [
        e
        for e in candidates
        if e["name"].endswith(".sync")
        or (e["name"].endswith(".h5") and posixpath.basename(e["name"]).startswith(prefix))
    ]
    if not found:
        return None
    return str(max(found, key=lambda e: int(e.get("size") or 0))["name"])


def _select_stims(candidates: list[dict[str, Any]], sid: SessionId) -> list[str]:
    """FORMATS §1.2: .hdf5 whose name yields both the session's subject and date; known corrupt
    files excluded; sorted by the time in the file name."""
    chosen: list[tuple[Any, str]] = []
    for e in candidates:
        name = posixpath.basename(e["name"])
        if not name.endswith(".hdf5"):
            continue
        stem = name[: -len(".hdf5")]
        if stem in EXCLUDED_STIM_STEMS:
            continue
        try:
            if parse_subject(stem) != sid.subject or parse_date(stem) != sid.date:
                continue
            when = parse_datetime(stem)
        except InvalidIdError:
            continue
        chosen.append((when, e["name"]))
    return [p for _, p in sorted(chosen)]
