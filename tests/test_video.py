"""readers.mvr and components.video_frame_times: FORMATS §12.2–§12.3, one test per rule."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from helpers.s3server import s3_endpoint  # noqa: F401  (fixture)
from helpers.sync_files import write_sync_edges
from npc_frames.components.video import split_recordings, video_frame_times
from npc_frames.errors import AlignmentError, BadFormatError, MissingFileError
from npc_frames.readers.mvr import parse_lost_frames, read_mvr_json
from npc_frames.schemas import get_schema

SYNC_START = datetime.datetime(2023, 8, 31, 12, 33, 31, 637254)
LABELS = [""] * 32
LABELS[27], LABELS[28], LABELS[29] = "beh_cam_exposing", "face_cam_exposing", "eye_cam_exposing"
# label, sync bit, fingerprint (CustomInitialExposureTime, ms)
CAMS = {"Behavior": (27, 10), "Face": (28, 8), "Eye": (29, 12)}


def exposures(first: float, n: int, initial_ms: float, rng: np.random.Generator) -> tuple:
    rising = first + np.arange(n) / 60.0 + rng.normal(0, 2e-5, n)
    dur = np.full(n, 0.004)
    dur[:8] = initial_ms / 1000
    return rising, rising + dur


def write_json(path: Path, label: str, start: datetime.datetime, recorded: int, **kw: Any) -> Path:
    report = {
        "CameraLabel": label,
        "TimeStart": start.isoformat(timespec="milliseconds") + "Z",
        "FramesRecorded": recorded,
        "FramesLostCount": kw.pop("lost_count", 0),
        "LostFrames": kw.pop("lost", []),
        "FPS": 60.0,
        "CustomInitialExposureTime": CAMS[label][1],
        "FrameID imprint enabled": "false",
        "CameraInput": ["1,0"],
    }
    report.update(kw)
    path.write_text(json.dumps({"RecordingReport": report}))
    return path


def make_video_session(
    tmp: Path,
    *,
    seed: int = 0,
    n: int = 3000,
    lost: dict[str, list[int]] | None = None,
    swap: bool = False,
    second_recording: bool = False,
    recorded_delta: int = 0,
) -> tuple[Path, dict[str, np.ndarray]]:
    """Write a raw folder with a sync file and 3 MVR json sidecars; return (root, truth)."""
    rng = np.random.default_rng(seed)
    root = tmp / f"ecephys_668755_{SYNC_START:%Y-%m-%d_%H-%M-%S}"
    (root / "behavior").mkdir(parents=True)
    (root / "behavior_videos").mkdir()
    lines, truth = {}, {}
    for label, (bit, initial_ms) in CAMS.items():
        start_s = 5.0 + rng.uniform(0, 0.05)
        first = start_s + rng.uniform(0.3, 1.0)
        r, f = exposures(first, n, initial_ms, rng)
        if second_recording:  # a second, later MVR recording on the same lines
            r2, f2 = exposures(first + n / 60 + 30, 500, initial_ms, rng)
            r, f = np.concatenate([r, r2]), np.concatenate([f, f2])
        # swapped cables: the Face and Eye pulses are on each other's lines
        target = {28: 29, 29: 28}.get(bit, bit) if swap else bit
        lines[target] = (r, f)
        r_q = np.rint(r[:n] * 1e5) / 1e5
        lost_idx = np.array((lost or {}).get(label, []), dtype=np.int64)
        kept = np.delete(r_q, lost_idx)
        recorded = kept.size + recorded_delta
        times = np.concatenate([[np.nan], kept])
        if recorded_delta > 0:
            times = np.concatenate([times, np.full(recorded_delta, np.nan)])
        truth[label] = times[: recorded + 1]
        ts = SYNC_START + datetime.timedelta(seconds=start_s)
        ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        stem = f"{label}_{ts:%Y%m%dT%H%M%S}"
        (root / "behavior_videos" / f"{stem}.mp4").write_bytes(b"\x00" * 24)
        fmt = ",".join(str(i) for i in lost_idx)
        write_json(
            root / "behavior_videos" / f"{stem}.json",
            label,
            ts,
            recorded,
            lost_count=len(lost_idx),
            lost=[fmt] if fmt else [],
        )
    total = max(v[1][-1] for v in lines.values()) + 10
    write_sync_edges(
        root / "behavior" / f"{SYNC_START:%Y%m%dT%H%M%S}.h5",
        lines,
        labels=LABELS,
        start_time=SYNC_START,
        total_seconds=total,
    )
    return root, truth


def _raw(root: Path) -> Any:
    from npc_frames.paths import RawSession

    return RawSession.from_path(root)


NWB = {"Behavior": "side_camera", "Eye": "eye_camera", "Face": "front_camera"}


def _assert_truth(df: pl.DataFrame, truth: dict[str, np.ndarray]) -> None:
    for label, times in truth.items():
        got = df.filter(pl.col("camera") == NWB[label]).sort("frame_index")
        assert got["frame_index"].to_list() == list(range(times.size))
        np.testing.assert_array_equal(got["timestamp"].to_numpy(), times)


# ---------------------------------------------------------------------------------- §12.2 json
def test_lost_frames_ranges_are_inclusive() -> None:
    assert parse_lost_frames(["1-2,4-5,7"]).tolist() == [1, 2, 4, 5, 7]
    assert parse_lost_frames([]).tolist() == []
    assert parse_lost_frames("").tolist() == []


def test_read_mvr_json_fields(tmp_path: Path) -> None:
    ts = datetime.datetime(2023, 8, 31, 12, 33, 45, 123000)
    p = write_json(tmp_path / "Eye_x.json", "Eye", ts, 100, lost_count=3, lost=["4-5,9"])
    info = read_mvr_json(p)
    assert info.camera == "Eye" and info.time_start == ts and info.frames_recorded == 100
    assert info.lost_frames.tolist() == [4, 5, 9] and info.n_video_frames == 101
    assert info.custom_initial_exposure_ms == 12 and info.fps == 60.0
    assert info.frame_id_imprint is False


def test_lost_frames_ignored_when_lost_count_is_zero(tmp_path: Path) -> None:
    ts = datetime.datetime(2023, 8, 31, 12, 33, 45)
    p = write_json(tmp_path / "Eye_x.json", "Eye", ts, 100, lost_count=0, lost=["4-5"])
    assert read_mvr_json(p).lost_frames.size == 0


def test_bad_json_raises_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        read_mvr_json(tmp_path / "none.json")
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(BadFormatError):
        read_mvr_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"RecordingReport": {"CameraLabel": "Eye"}}))
    with pytest.raises(BadFormatError) as exc:
        read_mvr_json(tmp_path / "b.json")
    assert exc.value.field == "RecordingReport.TimeStart"


# ---------------------------------------------------------------------------- §12.3 timing
def test_frame_times_equal_truth_with_lost_frames(tmp_path: Path) -> None:
    root, truth = make_video_session(
        tmp_path, lost={"Behavior": [100, 101, 2000], "Eye": [57]}, seed=1
    )
    df = video_frame_times(_raw(root))
    assert df.columns == get_schema("video_frame_times").names
    assert df.schema["timestamp"] == pl.Float64 and df.schema["frame_index"] == pl.Int64
    assert set(df["session_id"]) == {"668755_2023-08-31"}
    _assert_truth(df, truth)
    # frame count = FramesRecorded + 1 and frame 0 (metadata) is NaN
    side = df.filter(pl.col("camera") == "side_camera")
    assert side.height == 3000 - 3 + 1 and np.isnan(side["timestamp"][0])


def test_camera_line_found_by_exposure_fingerprint_when_cables_swapped(tmp_path: Path) -> None:
    root, truth = make_video_session(tmp_path, swap=True, seed=2)
    _assert_truth(video_frame_times(_raw(root)), truth)


def test_ambiguous_fingerprints_fall_back_to_line_labels(tmp_path: Path) -> None:
    root, truth = make_video_session(tmp_path, seed=8)
    for js in (root / "behavior_videos").glob("*.json"):  # every camera claims 10 ms
        doc = json.loads(js.read_text())
        doc["RecordingReport"]["CustomInitialExposureTime"] = 10
        js.write_text(json.dumps(doc))
    _assert_truth(video_frame_times(_raw(root)), truth)


def test_repeated_recordings_split_and_closest_to_time_start_chosen(tmp_path: Path) -> None:
    root, truth = make_video_session(tmp_path, second_recording=True, seed=3)
    _assert_truth(video_frame_times(_raw(root)), truth)


def test_more_video_frames_than_exposures_padded_with_nan(tmp_path: Path) -> None:
    root, truth = make_video_session(tmp_path, recorded_delta=5, seed=4)
    df = video_frame_times(_raw(root))
    _assert_truth(df, truth)
    assert np.isnan(df.filter(pl.col("camera") == "eye_camera")["timestamp"].to_numpy()[-5:]).all()


def test_fewer_video_frames_than_exposures_truncated(tmp_path: Path) -> None:
    root, truth = make_video_session(tmp_path, recorded_delta=-7, seed=5)
    _assert_truth(video_frame_times(_raw(root)), truth)


def test_split_recordings_on_large_z_score_gaps() -> None:
    # one gap among N intervals has |z| ≤ sqrt(N): the rule needs > 2500 exposures to split
    t = np.concatenate([np.arange(5000) / 60, 200 + np.arange(1000) / 60])
    parts = split_recordings(t)
    assert [p.size for p in parts] == [5000, 1000]
    short = np.concatenate([np.arange(1000) / 60, 100 + np.arange(500) / 60])
    assert len(split_recordings(short)) == 1  # npc's rule, reproduced
    assert len(split_recordings(np.arange(1000) / 60)) == 1


def test_video_far_from_any_exposure_block_raises_alignment_error(tmp_path: Path) -> None:
    root, _ = make_video_session(tmp_path, seed=6)
    js = next((root / "behavior_videos").glob("Eye_*.json"))
    doc = json.loads(js.read_text())
    doc["RecordingReport"]["TimeStart"] = "2023-08-31T13:33:31.000Z"  # an hour later
    js.write_text(json.dumps(doc))
    with pytest.raises(AlignmentError) as exc:
        video_frame_times(_raw(root))
    assert exc.value.path is not None and exc.value.path.endswith(js.name)


def test_session_without_videos_returns_zero_rows(tmp_path: Path) -> None:
    root, _ = make_video_session(tmp_path, seed=7)
    for p in (root / "behavior_videos").iterdir():
        p.unlink()
    df = video_frame_times(_raw(root))
    assert df.height == 0 and df.columns == get_schema("video_frame_times").names


def _synth(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    from npc_frames.errors import NpcFramesError

    try:
        return request.getfixturevalue("synth_session"), request.getfixturevalue("synth_raw")
    except NpcFramesError as exc:  # the generator is another piece; its own tests report it
        pytest.skip(f"synthetic session could not be built: {exc}")


@pytest.mark.slow  # builds the shared 3-minute synthetic session
def test_synth_session_video_frame_times_equal_truth(request: pytest.FixtureRequest) -> None:
    synth = pytest.importorskip("npc_frames.synth")
    if not hasattr(synth, "make_session"):
        pytest.skip("npc_frames.synth.make_session not available yet")
    truth, raw = _synth(request)
    df = video_frame_times(raw)
    cams = truth.video
    assert cams, "synthetic session has no videos"
    assert set(df["camera"]) == {NWB[label] for label in cams}
    for label, cam in cams.items():
        expected = np.asarray(cam["frame_times"], dtype=np.float64)
        got = df.filter(pl.col("camera") == NWB[label]).sort("frame_index")
        assert got.height == cam["n_video_frames"] == cam["frames_recorded"] + 1
        np.testing.assert_array_equal(got["timestamp"].to_numpy(), expected)


@pytest.fixture
def fresh_s3fs() -> Any:
    """Forget cached s3fs clients before and after: each module's moto server has its own port."""
    s3fs = pytest.importorskip("s3fs")
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.s3
def test_video_frame_times_from_s3_equal_truth(
    tmp_path: Path,
    s3_endpoint: Any,  # noqa: F811
    fresh_s3fs: None,
) -> None:
    root, truth = make_video_session(tmp_path, lost={"Face": [300]}, seed=9)
    url = s3_endpoint.upload_folder(root, s3_endpoint.bucket("video"), root.name)
    _assert_truth(video_frame_times(_raw(url)), truth)
