"""``devices``, ``electrode_groups`` and ``electrodes`` (FORMATS §9.3, §11.5): geometry equals
settings.xml, probe letters follow the slot/port rule for six probes and for fewer, CCF columns
come from an annotation CSV when one exists."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from helpers.ephys_session import clone_session, get
from npc_frames.components.ephys import devices, electrode_groups, electrodes


def settings_geometry(node_settings: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Independent read of settings.xml: serial -> (channels, x, y) in document order."""
    out = {}
    for e in ET.parse(node_settings).getroot().iter("NP_PROBE"):
        xs = e.find("ELECTRODE_XPOS")
        ys = e.find("ELECTRODE_YPOS")
        assert xs is not None and ys is not None
        keys = list(xs.attrib)
        out[e.attrib["probe_serial_number"]] = (
            np.array([int(k[2:]) for k in keys]),
            np.array([float(xs.attrib[k]) for k in keys]),
            np.array([float(ys.attrib[k]) for k in keys]),
        )
    return out


def test_electrode_geometry_equals_settings_xml(raw: Any, ephys_truth: Any) -> None:
    el = electrodes(raw)
    settings = next(Path(raw.root).glob("ecephys/ecephys_clipped/*/settings.xml"))
    geometry = settings_geometry(settings)
    probes = get(ephys_truth.ephys, "probes")
    assert el.height == 384 * len(probes)
    np.testing.assert_array_equal(el["electrode_index"].to_numpy(), np.arange(el.height))
    for p in probes:
        part = el.filter(pl.col("group_name") == f"probe{get(p, 'letter')}")
        chans, x, y = geometry[str(get(p, "serial_number"))]
        np.testing.assert_array_equal(part["channel"].to_numpy(), chans)
        np.testing.assert_array_equal(part["rel_x"].to_numpy(), x)
        np.testing.assert_array_equal(part["rel_y"].to_numpy(), y)
        np.testing.assert_array_equal(part["rel_x"].to_numpy(), np.asarray(get(p, "channel_x")))
        np.testing.assert_array_equal(part["rel_y"].to_numpy(), np.asarray(get(p, "channel_y")))
    assert set(el["reference"]) == {"tip"} and set(el["imp"]) == {150e3}
    # the generator's annotations asset gives every probe of this session a CCF position
    assert el["x"].is_not_null().all() and "unannotated" not in set(el["location"])


def test_devices_and_groups_name_each_recorded_probe(raw: Any, ephys_truth: Any) -> None:
    probes = get(ephys_truth.ephys, "probes")
    dev = devices(raw)
    assert dev["name"].to_list() == [str(get(p, "serial_number")) for p in probes]
    assert set(dev["description"]) == {"Neuropixels 1.0"} and set(dev["manufacturer"]) == {"imec"}
    groups = electrode_groups(raw)
    assert groups["name"].to_list() == [f"probe{get(p, 'letter')}" for p in probes]
    assert groups["device_name"].to_list() == dev["name"].to_list()
    assert groups["session_id"].to_list() == [str(raw.session_id)] * len(probes)


@pytest.mark.slow
def test_ccf_annotation_csv_fills_optional_columns(
    ephys_truth: Any, tmp_path: Path, raw: Any
) -> None:
    from npc_frames.components._units import units
    from npc_frames.paths import RawSession

    root = clone_session(ephys_truth.raw_path, tmp_path / Path(ephys_truth.raw_path).name)
    subject = raw.session_id.subject
    ch = np.arange(384)
    ap = 300 + ch // 10
    ap[5] = -1  # outside the brain
    pl.DataFrame(
        {
            "channel": ch,
            "AP": ap,
            "DV": 100 + ch,
            "ML": np.full(384, 200),
            "region": np.where(ch < 100, "ECT6a", "VISp5"),
            "region_stripped": np.where(ch < 100, "ECT6a", "VISp"),
        }
    ).write_csv(root / f"Probe_A2_channels_{subject}_warped_processed_new_sorting.csv")
    session = RawSession.from_path(root)
    el = electrodes(session)
    a = el.filter(pl.col("group_name") == "probeA")
    np.testing.assert_allclose(a["x"].to_numpy()[[0, 50]], [300 * 25.0, 305 * 25.0])
    assert np.isnan(a["x"][5])
    np.testing.assert_allclose(a["y"].to_numpy(), (100 + ch) * 25.0)
    assert a["structure"][0] == "ECT" and a["structure"][200] == "VISp"
    assert a["location"][0] == "ECT6a" and a["location"][200] == "VISp5"
    b = el.filter(pl.col("group_name") == "probeB")
    assert b["x"].is_null().all() and set(b["location"]) == {"unannotated"}
    u = units(session).filter(pl.col("electrode_group_name") == "probeA")
    peak = u["peak_channel"].to_numpy()
    np.testing.assert_allclose(u["ccf_dv"].to_numpy(), (100 + peak) * 25.0)
    assert u["structure"].to_list() == np.where(peak < 100, "ECT", "VISp").tolist()


@pytest.mark.parametrize(
    ("n_probes", "date", "letters"),
    [
        (6, datetime.date(2023, 8, 31), "ABCDEF"),
        (3, datetime.date(2024, 1, 10), "ABC"),  # ports 2-4 after Nov 2023
        (4, datetime.date(2023, 8, 31), "ABCD"),
    ],
)
def test_probe_letters_follow_slot_port_rule_for_six_and_fewer(
    tmp_path: Path, n_probes: int, date: datetime.date, letters: str
) -> None:
    synth = pytest.importorskip("npc_frames.synth")
    from npc_frames.paths import RawSession
    from npc_frames.readers.openephys import probe_letters

    truth = synth.make_session(
        tmp_path,
        seed=n_probes,
        minutes=1.0,
        n_probes=n_probes,
        units_per_probe=2,
        video=False,
        clip_seconds=0.01,
        date=date,
    )
    raw_session = RawSession.from_path(truth.raw_path)
    groups = electrode_groups(raw_session)
    assert "".join(g.removeprefix("probe") for g in groups["name"]) == letters
    probes = get(truth.ephys, "probes")
    serial = {get(p, "letter"): str(get(p, "serial_number")) for p in probes}
    assert groups["device_name"].to_list() == [serial[c] for c in letters]
    # the rule, applied independently to the (slot, port) written in settings.xml
    settings = next(Path(truth.raw_path).glob("ecephys/ecephys_clipped/*/settings.xml"))
    elems = list(ET.parse(settings).getroot().iter("NP_PROBE"))
    slots = [int(e.attrib["slot"]) for e in elems]
    ports = [int(e.attrib["port"]) for e in elems]
    assert "".join(probe_letters(slots, ports)) == letters
    if date >= datetime.date(2023, 11, 1) and n_probes == 3:
        assert ports == [2, 3, 4]


def test_surface_channel_recording_offsets_channels_by_384(
    ephys_truth: Any, tmp_path: Path, raw: Any
) -> None:
    from npc_frames.components._units import units
    from npc_frames.paths import RawSession
    from npc_frames.synth.ephys import set_channel_banks

    name = Path(ephys_truth.raw_path).name + "_surface_channels"
    root = clone_session(ephys_truth.raw_path, tmp_path / name)
    set_channel_banks(root, dict.fromkeys("ABCDEF", 1))  # every probe moved to bank 1
    surface = RawSession.from_path(root)
    el = electrodes(surface)
    base = electrodes(raw)
    np.testing.assert_array_equal(el["channel"].to_numpy(), base["channel"].to_numpy() + 384)
    u = units(surface)
    assert (u["peak_channel"].to_numpy() >= 384).all()
    rows = el[u["peak_electrode"].to_numpy()]
    assert rows["channel"].to_list() == u["peak_channel"].to_list()
