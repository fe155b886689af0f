"""Same-day session indices (the index rule) and surface-channel linking, in ids and discovery."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from npc_frames.ids import SessionId, index_sessions
from npc_frames.paths import RawSession

DAY = dt.date(2024, 4, 22)


def _name(start: dt.datetime, platform: str = "ecephys", subject: int = 703882) -> str:
    return f"{platform}_{subject}_{start:%Y-%m-%d_%H-%M-%S}"


def test_later_recording_of_the_day_gets_index_1() -> None:
    a = _name(dt.datetime(2024, 4, 22, 9, 0, 0), "behavior")
    b = _name(dt.datetime(2024, 4, 22, 13, 5, 0))
    got = index_sessions([b, a])
    assert str(got[a]) == "703882_2024-04-22" and str(got[b]) == "703882_2024-04-22_1"


def test_surface_channel_folder_ranks_after_its_main_even_alone() -> None:
    main = _name(dt.datetime(2024, 4, 22, 13, 5, 0))
    surface = main + "_surface_channels"
    assert index_sessions([main, surface]) == {
        main: SessionId(703882, DAY, 0),
        surface: SessionId(703882, DAY, 1),
    }
    # the main recording exists by definition: a lone surface folder is still the second session
    assert index_sessions([surface])[surface].idx == 1


def test_derived_assets_and_truth_folders_take_no_index() -> None:
    main = _name(dt.datetime(2024, 4, 22, 13, 5, 0))
    names = [main, main + ".truth", main + "_sorted_2024-04-25_06-52-11", "703882_2024-04-22"]
    assert list(index_sessions(names)) == [main]


def test_assets_sharing_an_acquisition_time_are_one_session() -> None:
    t = dt.datetime(2024, 4, 22, 13, 5, 0)
    got = index_sessions([_name(t), _name(t, "behavior"), _name(t + dt.timedelta(hours=1))])
    assert sorted(s.idx for s in got.values()) == [0, 0, 1]


def test_other_subjects_and_days_do_not_interfere() -> None:
    t = dt.datetime(2024, 4, 22, 13, 5, 0)
    names = [
        _name(t),
        _name(t - dt.timedelta(hours=2), subject=703883),
        _name(t - dt.timedelta(days=1)),
    ]
    assert {s.idx for s in index_sessions(names).values()} == {0}


starts = st.lists(
    st.datetimes(dt.datetime(2024, 4, 22, 0, 0, 0), dt.datetime(2024, 4, 22, 23, 59, 59)).map(
        lambda t: t.replace(microsecond=0)
    ),
    min_size=1,
    max_size=8,
    unique=True,
)


@settings(max_examples=200, deadline=None)
@given(starts, st.integers(1, 4))
def test_index_rule_is_rank_of_start_time_and_stable_under_later_additions(
    times: list[dt.datetime], n_more: int
) -> None:
    names = [_name(t) for t in times]
    before = index_sessions(names)
    assert [before[_name(t)].idx for t in sorted(times)] == list(range(len(times)))
    later = [max(times) + dt.timedelta(seconds=k + 1) for k in range(n_more)]
    after = index_sessions(names + [_name(t) for t in later])
    assert all(after[n] == before[n] for n in names)  # earlier indices never move
    assert [after[_name(t)].idx for t in later] == list(range(len(times), len(times) + n_more))


@settings(max_examples=200, deadline=None)
@given(starts, st.datetimes(dt.datetime(2024, 4, 22), dt.datetime(2024, 4, 22, 23, 59, 59)))
def test_an_inserted_earlier_recording_shifts_exactly_the_later_ones(
    times: list[dt.datetime], new: dt.datetime
) -> None:
    new = new.replace(microsecond=0)
    if new in times:
        return
    names = [_name(t) for t in times]
    before = index_sessions(names)
    after = index_sessions([*names, _name(new)])
    for t, n in zip(times, names):
        assert after[n].idx == before[n].idx + (1 if t > new else 0)


# ------------------------------------------------------------------------------ discovery side
def _folder(parent: Path, name: str, files: dict[str, bytes]) -> Path:
    root = parent / name
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_discovery_gives_two_same_day_recordings_distinct_ids(tmp_path: Path) -> None:
    first = _folder(
        tmp_path,
        "behavior_703882_2024-04-22_09-00-00",
        {"behavior/DynamicRouting1_703882_20240422_090010.hdf5": b"x"},
    )
    second = _folder(
        tmp_path,
        "ecephys_703882_2024-04-22_13-05-00",
        {
            "behavior/20240422T130500.h5": b"x",
            "behavior/DynamicRouting1_703882_20240422_131000.hdf5": b"x",
        },
    )
    (tmp_path / "ecephys_703882_2024-04-22_13-05-00.truth").mkdir()
    a, b = RawSession.from_path(first), RawSession.from_path(second)
    assert str(a.session_id) == "703882_2024-04-22" and str(b.session_id) == "703882_2024-04-22_1"
    assert a.platform == "behavior" and b.platform == "ecephys"
    # an explicit id always wins over the sibling rule
    assert RawSession.from_path(second, session_id="703882_2024-04-22").session_id.idx == 0


def test_surface_channel_recording_is_linked_to_its_main_session(tmp_path: Path) -> None:
    oe = {"ecephys/ecephys_clipped/Record Node 102/settings.xml": b"<x/>"}
    main = _folder(
        tmp_path,
        "ecephys_703882_2024-04-22_13-05-00",
        {
            **oe,
            "behavior/20240422T130500.h5": b"x",
            "behavior/DynamicRouting1_703882_20240422_131000.hdf5": b"x",
        },
    )
    surface = _folder(tmp_path, "ecephys_703882_2024-04-22_13-05-00_surface_channels", oe)
    m, s = RawSession.from_path(main), RawSession.from_path(surface)
    assert not m.is_surface_channel and m.main_session_id is None
    assert s.is_surface_channel and str(s.session_id) == "703882_2024-04-22_1"
    assert s.main_session_id == m.session_id


def test_cloud_style_surface_channel_asset_is_recognised_by_content(tmp_path: Path) -> None:
    oe = {"ecephys/ecephys_clipped/Record Node 102/settings.xml": b"<x/>"}
    _folder(
        tmp_path,
        "ecephys_703882_2024-04-22_13-05-00",
        {
            **oe,
            "behavior/20240422T130500.h5": b"x",
            "behavior/DynamicRouting1_703882_20240422_131000.hdf5": b"x",
        },
    )
    later = _folder(tmp_path, "ecephys_703882_2024-04-22_15-10-00", oe)  # no sync, no task
    s = RawSession.from_path(later)
    assert s.is_surface_channel and str(s.main_session_id) == "703882_2024-04-22"


def test_behavior_box_session_is_recognised(tmp_path: Path) -> None:
    root = _folder(
        tmp_path,
        "behavior_703882_2024-04-22_09-00-00",
        {
            "behavior/DynamicRouting1_703882_20240422_090010.hdf5": b"x",
            "behavior-videos/703882_Box_2_20240422T090000.mp4": b"x",
            "behavior-videos/703882_Box_2_20240422T090000.json": b"{}",
        },
    )
    raw = RawSession.from_path(root)
    assert raw.is_behavior_box and raw.is_video and not raw.is_sync
    assert raw.platform == "behavior" and not raw.is_surface_channel
