"""FORMATS §1.1: session, subject, date, probe and camera ids."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npc_frames.errors import InvalidIdError
from npc_frames.ids import (
    SessionId,
    parse_aind_session_id,
    parse_camera_name,
    parse_date,
    parse_datetime,
    parse_probe_letter,
    parse_session_id,
    parse_subject,
    safe_session_id,
)

subjects = st.integers(100_000, 9_999_999)
dates = st.dates(dt.date(2016, 1, 1), dt.date.today())
times = st.times().map(lambda t: t.replace(microsecond=0))
idxs = st.integers(0, 99)


@pytest.mark.parametrize(
    "text",
    [
        "DRPilot_366122_20220425",
        "0123456789_366122_20220425",
        "366122_2022-04-25",
        "2022-04-25_12:00:00_366122",
        "366122_2022-04-25_0",
        "366122/2022/04/25",
    ],
)
def test_reference_examples_normalise_to_the_same_id(text: str) -> None:
    assert str(parse_session_id(text)) == "366122_2022-04-25"


def test_index_suffix_is_kept_and_printed_only_when_nonzero() -> None:
    sid = parse_session_id("703882_2024-04-22_1")
    assert (sid.subject, sid.date, sid.idx) == (703882, dt.date(2024, 4, 22), 1)
    assert str(sid) == "703882_2024-04-22_1"
    assert sid.with_idx == "703882_2024-04-22_1"
    assert parse_session_id("703882_2024-04-22").with_idx == "703882_2024-04-22_0"


def test_zero_index_equals_bare_id_and_hashes_alike() -> None:
    a = parse_session_id("668755_2023-08-31_0")
    b = parse_session_id("668755_2023-08-31")
    assert a == b and hash(a) == hash(b)
    assert a == "668755_2023-08-31" and a == "668755_2023-08-31_0"
    assert {a: 1}[b] == 1
    assert a != parse_session_id("668755_2023-08-31_1")


def test_time_after_date_is_discarded_and_file_names_parse() -> None:
    sid = parse_session_id("DynamicRouting1_668755_20230831_131418")
    assert str(sid) == "668755_2023-08-31"
    assert parse_datetime("DynamicRouting1_668755_20230831_131418") == dt.datetime(
        2023, 8, 31, 13, 14, 18
    )
    assert parse_datetime("20230831T123331.h5") == dt.datetime(2023, 8, 31, 12, 33, 31)
    assert parse_datetime("2023-08-31 12:33:31.637254") == dt.datetime(2023, 8, 31, 12, 33, 31)
    assert parse_datetime("668755_2023-08-31") == dt.datetime(2023, 8, 31)


def test_aind_asset_names_parse_and_ignore_suffixes() -> None:
    aid = parse_aind_session_id("ecephys_668755_2023-08-31_12-33-31_sorted_2023-12-16_06-52-11")
    assert aid.platform == "ecephys" and aid.subject == 668755
    assert aid.start == dt.datetime(2023, 8, 31, 12, 33, 31)
    assert str(aid) == "ecephys_668755_2023-08-31_12-33-31"
    assert aid.session_id == "668755_2023-08-31"
    assert str(parse_session_id("ecephys_668755_2023-08-31_12-33-31")) == "668755_2023-08-31"
    assert parse_aind_session_id("behavior_668755_2023/08/31_12_33_31").subject == 668755


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "668755",
        "2023-08-31",
        "12345_2023-08-31",
        "668755_2015-08-31",
        "668755_2023-13-01",
        "668755_2023-02-30",
        "abc",
    ],
)
def test_malformed_ids_raise_typed_error_quoting_the_input(bad: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        parse_session_id(bad)
    assert repr(bad) in str(info.value)


def test_future_dates_are_rejected() -> None:
    next_year = dt.date.today().year + 1
    if next_year > 2029:
        pytest.skip("regex range ends at 2029")
    with pytest.raises(InvalidIdError):
        parse_date(f"668755_{next_year}-01-01")


@pytest.mark.parametrize(
    "unsafe",
    [
        "../668755_2023-08-31",
        "/abs/668755_2023-08-31",
        "668755_2023-08-31/..",
        "a\\668755_2023-08-31",
        " 668755_2023-08-31",
    ],
)
def test_safe_session_id_rejects_path_escapes(unsafe: str) -> None:
    with pytest.raises(InvalidIdError):
        safe_session_id(unsafe)


def test_safe_session_id_returns_canonical_form() -> None:
    assert safe_session_id("668755_2023-08-31_0") == "668755_2023-08-31"
    assert safe_session_id("ecephys_668755_2023-08-31_12-33-31") == "668755_2023-08-31"


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("probeA", "A"),
        ("Probe_A2", "A"),
        ("Neuropix-PXI-100.ProbeA-AP", "A"),
        ("probe-F", "F"),
        ("probe C", "C"),
        ("E", "E"),
        ("experiment1_Record Node 102#Neuropix-PXI-100.ProbeB-AP", "B"),
    ],
)
def test_probe_letters(text: str, letter: str) -> None:
    assert parse_probe_letter(text) == letter


@pytest.mark.parametrize("bad", ["probeG", "probeAB", "a", "G", "nothing"])
def test_bad_probe_letters(bad: str) -> None:
    with pytest.raises(InvalidIdError):
        parse_probe_letter(bad)


@pytest.mark.parametrize(
    ("text", "camera"),
    [
        ("Eye_20230831T123345.mp4", "eye"),
        ("Face_20230831T123345.json", "face"),
        ("Behavior_20230831T123345.mp4", "behavior"),
        ("x_box_y.avi", "behavior"),
        ("Nose_20240101T000000.mp4", "nose"),
    ],
)
def test_camera_names(text: str, camera: str) -> None:
    assert parse_camera_name(text) == camera


@settings(deadline=None)
@given(
    subject=subjects,
    date=dates,
    idx=idxs,
    prefix=st.sampled_from(["", "DRPilot_", "ecephys_", "x-"]),
    style=st.sampled_from(["%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"]),
    subject_first=st.booleans(),
)
def test_any_layout_round_trips(
    subject: int, date: dt.date, idx: int, prefix: str, style: str, subject_first: bool
) -> None:
    d = date.strftime(style)
    body = f"{subject}_{d}" if subject_first else f"{d}_{subject}"
    text = f"{prefix}{body}" + (f"_{idx}" if idx else "")
    sid = parse_session_id(text)
    assert sid == SessionId(subject, date, idx)
    assert parse_session_id(str(sid)) == sid
    assert parse_subject(text) == subject
    assert parse_date(text) == date


@settings(deadline=None)
@given(
    subject=subjects,
    date=dates,
    time=times,
    platform=st.sampled_from(["ecephys", "behavior", "multiplane-ophys"]),
    sep=st.sampled_from(["-", "_"]),
)
def test_aind_round_trip(
    subject: int, date: dt.date, time: dt.time, platform: str, sep: str
) -> None:
    start = dt.datetime.combine(date, time)
    text = f"{platform}_{subject}_{date:%Y-%m-%d}_{start.strftime(f'%H{sep}%M{sep}%S')}"
    aid = parse_aind_session_id(text)
    assert (aid.platform, aid.subject, aid.start) == (platform, subject, start)
    assert parse_aind_session_id(str(aid)) == aid
    assert parse_session_id(text) == SessionId(subject, date)
