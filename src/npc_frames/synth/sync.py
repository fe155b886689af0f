"""Write synthetic sync files in the layout of the AIBS ``sync`` acquisition program (FORMATS §2.1).

The writer takes edge times in seconds per line (bit), quantises them to the 100 kHz sample grid and
stores only the changes, exactly as the acquisition program does on stop:

* ``data`` is uint32 with shape ``(n_events + 1, 2)``; row 0 is ``[0, initial_word]``; row i ≥ 1 is
  ``[k, word]`` where ``k`` is the index of the *last sample before* the change and ``word`` the new
  packed state of all 32 lines. Edges on different lines that fall on the same sample collapse into
  one row.
* ``meta`` is the bytes of ``repr(dict)`` with the keys of §2.1.

Quantisation: an edge at ``t`` seconds is stored at sample ``k = round(t * rate)`` (the new state is
first seen at sample ``k + 1``); a reader that follows §2.2 reports ``k / rate``. The quantised times
(``k / rate``) are what :func:`quantize` returns and what the truth records, so truth and file agree
bit-for-bit.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt

from npc_frames.errors import ParameterError

__all__ = [
    "LINE_LABELS",
    "SYNC_RATE",
    "quantize",
    "sync_samples",
    "write_sync_file",
]

#: NI-DAQ sample (counter output) rate of the sync program on NP rigs (FORMATS §2.1).
SYNC_RATE = 100_000.0

#: Line labels by bit (FORMATS §2.3). Bits that npc addresses by index (1 sound, 9 galvo, 10 laser
#: 633, 11 laser 488, 15 solenoid) keep the label the rig file gives them or '' — npc ignores them.
LINE_LABELS: tuple[str, ...] = (
    "barcode_ephys",  # 0
    "",  # 1 sound running (by index)
    "vsync_stim",  # 2
    "",  # 3
    "stim_photodiode",  # 4
    "stim_running",  # 5
    "",  # 6
    "",  # 7
    "beh_frame_received",  # 8
    "eye_frame_received",  # 9 (galvo by index from 2024-04-19)
    "face_frame_received",  # 10 (laser 633 by index from 2024-04-19)
    "",  # 11 laser 488 / opto (by index)
    "",  # 12
    "",  # 13
    "",  # 14
    "",  # 15 reward solenoid (by index)
    "",  # 16
    "stim_running_opto",  # 17
    "stim_trial_opto",  # 18
    "",  # 19
    "",  # 20
    "beh_cam_frame_readout",  # 21
    "face_cam_frame_readout",  # 22
    "",  # 23
    "",  # 24
    "eye_cam_frame_readout",  # 25
    "",  # 26
    "beh_cam_exposing",  # 27
    "face_cam_exposing",  # 28
    "eye_cam_exposing",  # 29
    "",  # 30
    "lick_sensor",  # 31
)

#: meta['version'] written by sync 1.05 (FORMATS §2.1 example).
_META_VERSION = {"dataset": 1.04, "sync": 1.05}


def sync_samples(times_s: npt.ArrayLike, rate: float = SYNC_RATE) -> npt.NDArray[np.int64]:
    """Return the sample index (``round(t * rate)``) at which each edge time is stored."""
    return np.rint(np.asarray(times_s, dtype=np.float64) * rate).astype(np.int64)


def quantize(times_s: npt.ArrayLike, rate: float = SYNC_RATE) -> npt.NDArray[np.float64]:
    """Return edge times snapped to the sync sample grid, as a §2.2 reader reports them."""
    return sync_samples(times_s, rate) / rate


def _check_line(
    bit: int,
    rising: npt.NDArray[np.int64],
    falling: npt.NDArray[np.int64],
    initial_high: bool,
    total_samples: int,
    path: Path,
) -> None:
    """Raise ParameterError unless the line's edges alternate strictly inside the recording."""
    field = f"lines[{bit}]"
    if not 0 <= bit < 32:
        raise ParameterError(
            "sync line bit out of range", path=path, field=field, expected="0 ≤ bit < 32"
        )
    n_r, n_f = rising.size, falling.size
    expected_n_f = n_r + (1 if initial_high else 0)
    if n_f not in (expected_n_f, expected_n_f - 1):
        raise ParameterError(
            f"{n_r} rising and {n_f} falling edges cannot alternate",
            path=path,
            field=field,
            expected="rising/falling edges that alternate, starting with "
            + ("falling (line initially high)" if initial_high else "rising (line initially low)"),
        )
    # interleave: low-start lines go r0 f0 r1 f1 …; high-start lines go f0 r0 f1 r1 …
    first, second = (falling, rising) if initial_high else (rising, falling)
    seq = np.empty(first.size + second.size, dtype=np.int64)
    seq[0::2] = first
    seq[1::2] = second
    if seq.size and (np.any(np.diff(seq) <= 0) or seq[0] < 0 or seq[-1] >= total_samples - 1):
        raise ParameterError(
            "edges overlap or fall outside the recording after quantisation to the sample grid",
            path=path,
            field=field,
            expected=f"alternating edges at strictly increasing samples in [0, {total_samples - 1})",
        )


def write_sync_file(
    path: str | Path,
    *,
    lines: Mapping[int, tuple[npt.ArrayLike, npt.ArrayLike]],
    initial_state: int = 0,
    start_time: datetime.datetime,
    total_samples: int,
    line_labels: Sequence[str] = LINE_LABELS,
    rate: float = SYNC_RATE,
    compression: str | None = None,
) -> dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """Return the quantised (rising, falling) edge times per bit after writing them as a sync file.

    Parameters
    ----------
    path:
        Destination ``.h5`` file (overwritten). By convention named ``<YYYYMMDDTHHMMSS>.h5``.
    lines:
        ``{bit: (rising_s, falling_s)}`` in seconds since the first sample. Edges on one line must
        alternate (after quantisation) starting with the edge opposite to the line's initial state.
    initial_state:
        Packed 32-bit state of all lines at sample 0 (row 0 of ``data``; never yields an edge).
    start_time:
        Wall-clock (naive, local) time of sample 0; written as ``str(start_time)``.
    total_samples:
        Number of samples acquired; every edge must be stored before the last sample.
    line_labels:
        32 labels, index = bit.
    rate:
        Sample rate in Hz (``counter_output_freq``).
    compression:
        HDF5 filter for ``data`` (e.g. ``"gzip"``; transparent to every h5py reader). The sync
        program writes uncompressed files; compression only keeps committed fixtures small.

    Returns
    -------
    dict
        ``{bit: (rising_s, falling_s)}`` quantised to ``k / rate`` — exactly what a §2.2 reader
        returns for the file (every bit in ``lines``, including empty ones).
    """
    path = Path(path)
    if len(line_labels) != 32:
        raise ParameterError(
            f"{len(line_labels)} line labels", path=path, field="line_labels", expected="32 labels"
        )
    if total_samples < 2 or total_samples >= 2**32:
        raise ParameterError(
            f"total_samples={total_samples}",
            path=path,
            field="total_samples",
            expected="2 ≤ total_samples < 2**32 (the counter is 32-bit)",
        )
    if not 0 <= int(initial_state) < 2**32:
        raise ParameterError(
            f"initial_state={initial_state}",
            path=path,
            field="initial_state",
            expected="a uint32 word",
        )

    keys: list[npt.NDArray[np.int64]] = []
    quantised: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
    for bit, (rising_s, falling_s) in sorted(lines.items()):
        bit = int(bit)
        rising = np.sort(sync_samples(rising_s, rate))
        falling = np.sort(sync_samples(falling_s, rate))
        _check_line(bit, rising, falling, bool((initial_state >> bit) & 1), total_samples, path)
        quantised[bit] = (rising / rate, falling / rate)
        # one sortable key per edge: sample in the high bits, line in the low 5 bits
        keys.append(np.concatenate([rising, falling]) * 32 + bit)

    all_keys = np.sort(np.concatenate(keys)) if keys else np.empty(0, np.int64)
    all_samples = all_keys >> 5
    all_masks = np.left_shift(np.uint32(1), (all_keys & 31).astype(np.uint32))
    # one row per distinct sample; lines changing on the same sample are distinct bits, so their
    # toggle masks combine by XOR (== OR) and the running state is a cumulative XOR
    starts = np.flatnonzero(np.diff(all_samples, prepend=-1))
    event_samples = all_samples[starts]
    toggles = np.bitwise_xor.reduceat(all_masks, starts) if starts.size else np.empty(0, np.uint32)
    words = np.bitwise_xor.accumulate(
        np.concatenate([np.array([initial_state], np.uint32), toggles.astype(np.uint32)])
    )
    data = np.empty((event_samples.size + 1, 2), dtype=np.uint32)
    data[0, 0] = 0
    data[1:, 0] = event_samples
    data[:, 1] = words

    stop_time = start_time + datetime.timedelta(seconds=total_samples / rate)
    meta = {
        "ni_daq": {
            "device": "Dev1",
            "counter_output_freq": float(rate),
            "sample_rate": float(rate),
            "counter_bits": 32,
            "event_bits": 32,
        },
        "start_time": str(start_time),
        "stop_time": str(stop_time),
        "line_labels": [str(label) for label in line_labels],
        "timeouts": [],
        "version": dict(_META_VERSION),
        "sampling_type": "frequency",
        "total_samples": int(total_samples),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "data", data=data, compression=compression, shuffle=compression is not None
        )
        f.create_dataset("meta", data=np.bytes_(repr(meta).encode()))
    return quantised
