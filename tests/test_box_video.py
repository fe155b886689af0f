"""Behaviour-box sessions (no sync): video frame times reconstructed from licks, against truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npc_frames.components._box_video import align_lick_trains, camera_lick_frames
from npc_frames.components.video import video_frame_times
from npc_frames.errors import AlignmentError
from npc_frames.paths import RawSession
from npc_frames.readers.mvr import read_mvr_json
from npc_frames.synth.box import make_box_session
from npc_frames.synth.truth import Truth

#: a lick's camera frame and task frame each trail the contact onset by < 1 frame, so a matched
#: lick's times differ by < 1/60 s (+ the task's ~2 ms poll-to-flip offset); frames between licks
#: are convex combinations of those errors, extrapolated ones add the camera clock error (< 1 ms)
TOLERANCE_S = 1 / 60 + 0.005


@pytest.fixture(scope="module", params=[3, 11])
def box(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Truth:
    return make_box_session(tmp_path_factory.mktemp("box"), seed=request.param, minutes=2.0)


def test_box_session_is_discovered_as_a_behavior_box(box: Truth) -> None:
    raw = RawSession.from_path(box.raw_path)
    assert raw.is_behavior_box and raw.is_task and not raw.is_sync and not raw.is_ephys
    assert raw.platform == "behavior" and str(raw.session_id) == box.session_id


def test_box_frame_times_match_truth_within_one_frame(box: Truth) -> None:
    df = video_frame_times(RawSession.from_path(box.raw_path))
    truth = np.asarray(box.video["Behavior"]["frame_times"])
    assert df["camera"].unique().to_list() == ["side_camera"]
    got = df["timestamp"].to_numpy()
    assert got.size == truth.size == box.video["Behavior"]["n_video_frames"]
    assert np.isnan(got[0]) and np.isfinite(got[1:]).all()
    err = np.abs(got[1:] - truth[1:])
    assert err.max() < TOLERANCE_S
    # the video before the first and after the last task lick carries that lick's error
    assert np.median(err) < 0.010
    assert box.video["Behavior"]["lost_frames"].size > 0  # lost exposures were accounted for
    assert np.all(np.diff(got[1:]) > 0)


def test_video_with_more_licks_than_the_task_is_aligned(box: Truth) -> None:
    info = read_mvr_json(box.video["Behavior"]["json_path"])
    v = camera_lick_frames(info)
    assert v.size == box.video["Behavior"]["n_camera_licks"] > box.video["Behavior"]["n_task_licks"]


def _rewrite_input(box: Truth, tmp_path: Path, change) -> RawSession:  # type: ignore[no-untyped-def]
    import shutil

    root = tmp_path / Path(box.raw_path).name
    shutil.copytree(box.raw_path, root)
    jpath = root / "behavior-videos" / Path(box.video["Behavior"]["json_path"]).name
    doc = json.loads(jpath.read_text())
    pairs = np.array(doc["RecordingReport"]["CameraInput"][0].split(","), dtype=np.int64)
    frames, states = change(pairs[0::2], pairs[1::2])
    doc["RecordingReport"]["CameraInput"] = [
        ",".join(f"{a},{b}" for a, b in zip(frames.tolist(), states.tolist()))
    ]
    jpath.write_text(json.dumps(doc))
    return RawSession.from_path(root)


def test_video_with_fewer_licks_than_the_task_raises(box: Truth, tmp_path: Path) -> None:
    raw = _rewrite_input(box, tmp_path, lambda f, s: (f[:10], s[:10]))
    with pytest.raises(AlignmentError, match="licks") as info:
        video_frame_times(raw)
    assert info.value.path is not None and str(info.value.path).endswith(".json")


def test_licks_that_do_not_correspond_raise(box: Truth, tmp_path: Path) -> None:
    # the camera's inter-lick intervals in reverse order: same span, same count, no 60 fps
    # camera clock fits the pairs
    def reverse(f: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        on = f[s == 1]
        new = on[0] + np.concatenate([[0], np.cumsum(np.diff(on)[::-1])])
        return new, np.ones(new.size, np.int64)

    raw = _rewrite_input(box, tmp_path, reverse)
    with pytest.raises(AlignmentError, match="do not correspond"):
        video_frame_times(raw)


def test_box_videos_without_a_task_file_raise(box: Truth, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / Path(box.raw_path).name
    shutil.copytree(box.raw_path, root)
    for p in (root / "behavior").glob("*.hdf5"):
        p.unlink()
    with pytest.raises(AlignmentError, match="no clock"):
        video_frame_times(RawSession.from_path(root))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(5, 400), min_size=3, max_size=60),
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 2**31 - 1),
)
def test_lick_trains_align_at_the_true_offset(
    intervals: list[int], n_before: int, n_after: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    task = np.cumsum([100, *intervals]).astype(np.int64)
    before = -np.cumsum(rng.integers(5, 400, n_before))[::-1]
    after = task[-1] + np.cumsum(rng.integers(5, 400, n_after))
    # the camera sees each lick within ±1 frame of the task
    video = np.concatenate([task[0] + before, task + rng.integers(-1, 2, task.size), after]) + 1000
    video = np.sort(video)
    if np.any(np.diff(video) <= 0):
        return
    got = align_lick_trains(video, task, video_fps=60.0)
    window = np.diff(video[got : got + task.size]).astype(float)
    true = np.diff(video[n_before : n_before + task.size]).astype(float)
    # the chosen window fits the task at least as well as the true one (it is the true one
    # unless the random trains contain an equally good copy of the task's intervals)
    d = np.diff(task).astype(float)
    assert np.sum((window - d) ** 2) <= np.sum((true - d) ** 2)
