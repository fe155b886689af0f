"""Writers of raw sync HDF5 files with chosen edges on chosen lines."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

RATE = 100_000.0


LABELS = [f"line{i}" for i in range(32)]


START = datetime.datetime(2023, 8, 31, 12, 33, 31, 637254)


def default_meta(**overrides: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "ni_daq": {
            "device": "Dev1",
            "counter_output_freq": RATE,
            "sample_rate": RATE,
            "counter_bits": 32,
            "event_bits": 32,
        },
        "start_time": str(START),
        "stop_time": str(START + datetime.timedelta(seconds=100)),
        "line_labels": list(LABELS),
        "timeouts": [],
        "version": {"dataset": 1.04, "sync": 1.05},
        "sampling_type": "frequency",
        "total_samples": 10_000_000,
    }
    meta.update(overrides)
    return meta


def write_raw_sync(path: Path, data: np.ndarray, meta: Mapping[str, Any] | str) -> Path:
    """Write a sync file from a ready `data` array (rows [sample, state]) and a meta dict."""
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.asarray(data, dtype=np.uint32))
        f.create_dataset("meta", data=meta if isinstance(meta, str) else repr(dict(meta)))
    return path


def write_sync_edges(
    path: Path,
    lines: Mapping[int, tuple[Sequence[float], Sequence[float]]],
    *,
    labels: Sequence[str] = LABELS,
    start_time: datetime.datetime = START,
    total_seconds: float = 100.0,
    initial_state: int = 0,
    rate: float = RATE,
) -> Path:
    """Write a sync file with the given {bit: (rising_s, falling_s)} edges (writer of §2.1).

    Each edge at t s is stored at sample round(t * rate), the row's state being the new word.
    """
    samples, masks = [], []
    for bit, (rising, falling) in lines.items():
        s = np.rint(np.concatenate([rising, falling]) * rate).astype(np.int64)
        samples.append(s)
        masks.append(np.full(s.size, 1 << bit, dtype=np.uint32))
    s_all = np.concatenate(samples) if samples else np.empty(0, np.int64)
    m_all = np.concatenate(masks) if masks else np.empty(0, np.uint32)
    order = np.argsort(s_all, kind="stable")
    s_all, m_all = s_all[order], m_all[order]
    uniq, inv = np.unique(s_all, return_inverse=True)
    toggles = np.zeros(uniq.size, dtype=np.uint32)
    np.bitwise_xor.at(toggles, inv, m_all)
    states = np.bitwise_xor.accumulate(np.concatenate([[initial_state], toggles]).astype(np.uint32))
    data = np.column_stack([np.concatenate([[0], uniq]), states]).astype(np.uint32)
    meta = default_meta(
        line_labels=list(labels),
        start_time=str(start_time),
        total_samples=int(total_seconds * rate),
        ni_daq={"counter_output_freq": rate, "counter_bits": 32, "event_bits": 32},
    )
    return write_raw_sync(path, data, meta)
