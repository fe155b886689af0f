"""FORMATS §1.2: discovery of a session's raw files."""

from __future__ import annotations

from pathlib import Path

import pytest

from npc_frames.errors import InvalidIdError, MissingFileError
from npc_frames.paths import RawSession


def _touch(path: Path, size: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    root = tmp_path / "ecephys_668755_2023-08-31_12-33-31"
    b = root / "behavior"
    _touch(b / "20230831T123331.h5", 100)
    _touch(b / "20230831T150000.h5", 10)  # a smaller second sync file: the largest wins
    _touch(b / "20230830T123331.h5", 1000)  # another date: not this session's sync file
    _touch(b / "DynamicRouting1_668755_20230831_131418.hdf5")
    _touch(b / "RFMapping_668755_20230831_124434.hdf5")
    _touch(b / "OptoTagging_668755_20230831_141000.hdf5")
    _touch(b / "DynamicRouting1_123456_20230831_131418.hdf5")  # another subject
    _touch(b / "DynamicRouting1_668755_20230830_131418.hdf5")  # another date
    _touch(b / "debug.log")
    _touch(root / "behavior_videos" / "Behavior_20230831T123345.mp4")
    _touch(root / "behavior_videos" / "Behavior_20230831T123345.json")
    _touch(root / "behavior_videos" / "Eye_20230831T123345.json")
    for node in ("Record Node 102", "Record Node 103"):
        _touch(root / "ecephys" / "ecephys_clipped" / node / "settings.xml")
    _touch(
        root / "ecephys_clipped" / "Record Node 999" / "settings.xml"
    )  # older copy: not preferred
    _touch(root / "sorting" / "Neuropix-PXI-100.ProbeA-AP" / "spike_times.npy", 8)
    _touch(root / "subject.json")
    _touch(root / "invalid_times.yaml")
    return root


def test_discovers_aind_layout(layout: Path) -> None:
    raw = RawSession.from_path(layout)
    assert raw.session_id == "668755_2023-08-31"
    assert raw.sync_path == str(layout / "behavior" / "20230831T123331.h5")
    assert [Path(p).name for p in raw.stim_paths] == [
        "RFMapping_668755_20230831_124434.hdf5",
        "DynamicRouting1_668755_20230831_131418.hdf5",
        "OptoTagging_668755_20230831_141000.hdf5",
    ]
    assert [Path(p).name for p in raw.stim_paths_for("DynamicRouting1")] == [
        "DynamicRouting1_668755_20230831_131418.hdf5"
    ]
    assert [Path(p).name for p in raw.record_node_paths] == ["Record Node 102", "Record Node 103"]
    assert raw.sorting_path == str(layout / "sorting")
    assert [Path(p).name for p in raw.video_json_paths] == [
        "Behavior_20230831T123345.json",
        "Eye_20230831T123345.json",
    ]
    assert set(raw.metadata_paths) == {"subject.json", "debug.log", "invalid_times.yaml"}
    assert raw.is_sync and raw.is_ephys and raw.is_video and raw.is_task and raw.is_sorted
    # the fingerprint inputs include sorting output one level down
    assert (
        str(layout / "sorting" / "Neuropix-PXI-100.ProbeA-AP" / "spike_times.npy") in raw.file_stats
    )


def test_behavior_only_folder_takes_id_from_stim_file(tmp_path: Path) -> None:
    _touch(tmp_path / "training" / "DynamicRouting1_700000_20240102_101010.hdf5")
    raw = RawSession.from_path(tmp_path / "training")
    assert raw.session_id == "700000_2024-01-02"
    assert not raw.is_sync and not raw.is_ephys and raw.is_task


def test_known_corrupt_stim_file_is_excluded(tmp_path: Path) -> None:
    root = tmp_path / "670248_2023-08-02"
    _touch(root / "behavior" / "DynamicRouting1_670248_20230802_120703.hdf5")
    assert RawSession.from_path(root).stim_paths == ()


def test_missing_folder_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError) as info:
        RawSession.from_path(tmp_path / "nope")
    assert "nope" in str(info.value)


def test_folder_without_any_id_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "something").mkdir()
    with pytest.raises(InvalidIdError):
        RawSession.from_path(tmp_path / "something")


def test_explicit_session_id_and_annotations(layout: Path) -> None:
    raw = RawSession.from_path(layout, session_id="668755_2023-08-31_1", annotations={"notes": "x"})
    assert str(raw.session_id) == "668755_2023-08-31_1"
    assert raw.annotations["notes"] == "x"
