"""Every component computed from a raw session on S3 (moto on 127.0.0.1) equals the local result."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import pytest
from polars.testing import assert_frame_equal

import npc_frames.components as C
from helpers.s3server import S3Server, s3_endpoint  # noqa: F401  (fixture)
from npc_frames.paths import RawSession

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def remote_raw(
    synth_session: Any,
    s3_endpoint: S3Server,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> RawSession:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    bucket = s3_endpoint.bucket("raw")
    local = Path(synth_session.raw_path)
    url = s3_endpoint.upload_folder(local, bucket, local.name)
    for asset in synth_session.assets.values():  # derived assets beside it (CCF annotations)
        s3_endpoint.upload_folder(Path(asset["path"]), bucket, Path(asset["path"]).name)
    import os

    os.environ["NPC_FRAMES_DOWNLOADS"] = str(tmp_path_factory.mktemp("downloads"))
    return RawSession.from_path(url)


def test_discovery_on_s3_finds_the_same_files(
    remote_raw: RawSession, synth_raw: RawSession
) -> None:
    assert remote_raw.session_id == synth_raw.session_id
    assert remote_raw.root.startswith("s3://")

    def rel(raw: RawSession, paths: tuple[str, ...]) -> list[str]:
        return [p[len(raw.root) :] for p in paths]

    assert rel(remote_raw, remote_raw.stim_paths) == rel(synth_raw, synth_raw.stim_paths)
    assert rel(remote_raw, remote_raw.record_node_paths) == rel(
        synth_raw, synth_raw.record_node_paths
    )
    assert rel(remote_raw, remote_raw.video_json_paths) == rel(
        synth_raw, synth_raw.video_json_paths
    )
    assert remote_raw.sync_path is not None and remote_raw.sorting_path is not None


@pytest.mark.parametrize(
    "component",
    ["trials", "licks", "running_speed", "epochs", "electrodes", "units", "video_frame_times"],
)
def test_component_from_s3_equals_local(
    component: str, remote_raw: RawSession, synth_raw: RawSession
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = C.get(component)(synth_raw)
        remote = C.get(component)(remote_raw)
    assert remote.height == local.height > 0
    assert_frame_equal(remote, local)


def test_local_tree_is_downloaded_once(remote_raw: RawSession) -> None:
    node = remote_raw.record_node_paths[0]
    first = remote_raw.local_tree(node)
    assert Path(first, "settings.xml").exists()
    assert remote_raw.local_tree(node) == first


def test_local_copy_of_a_remote_file_is_fetched_once_and_keyed_by_content(
    remote_raw: RawSession, synth_raw: RawSession
) -> None:
    assert remote_raw.is_remote and remote_raw.sync_path is not None
    url = remote_raw.sync_path
    first = remote_raw.local(url)
    assert Path(first).read_bytes() == Path(str(synth_raw.sync_path)).read_bytes()
    mtime = Path(first).stat().st_mtime_ns
    assert remote_raw.local(url) == first and Path(first).stat().st_mtime_ns == mtime
    # the content key is discovery's stamp (no round trip); another stamp names another copy
    assert remote_raw.stat_key(url) == remote_raw.file_stats[url]
    changed = dataclasses.replace(
        remote_raw, file_stats={**remote_raw.file_stats, url: (remote_raw.stat_key(url)[0], "x")}
    )
    assert changed.local(url) != first
    assert Path(changed.local(url)).read_bytes() == Path(first).read_bytes()
