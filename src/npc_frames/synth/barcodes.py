"""Generate the barcode TTL train fed to sync bit 0 and every Open Ephys stream (FORMATS §10).

The generator (open-ephys "sync-barcodes" Arduino design) emits, about every 30 s, a 20 ms high start
pulse, 20 ms low, then the 32 bits of an incrementing counter LSB-first, 15 ms per bit (high = 1),
then returns low. The counter starts at a random value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from npc_frames.errors import ParameterError

__all__ = [
    "BARCODE_BIT_S",
    "BARCODE_INTERVAL_S",
    "BARCODE_N_BITS",
    "BARCODE_START_HIGH_S",
    "BARCODE_START_LOW_S",
    "Barcodes",
    "barcode_duration",
    "make_barcodes",
]

#: start pulse high / low durations of the generator (FORMATS §10).
BARCODE_START_HIGH_S = 0.020
BARCODE_START_LOW_S = 0.020
#: width of one bit of the counter (FORMATS §10: 0.015 s).
BARCODE_BIT_S = 0.015
BARCODE_N_BITS = 32
#: nominal period between barcode starts; readers look for gaps > 29 s (FORMATS §10).
BARCODE_INTERVAL_S = 30.0
#: the period varies by at most this much, so every inter-barcode gap stays well above 29 s.
_INTERVAL_JITTER_S = 0.05


def barcode_duration() -> float:
    """Return the duration in seconds from a barcode's start pulse to the end of its last bit."""
    return BARCODE_START_HIGH_S + BARCODE_START_LOW_S + BARCODE_N_BITS * BARCODE_BIT_S


@dataclass(frozen=True)
class Barcodes:
    """A barcode TTL train: edge times (s, on the clock of `start_times`) and what was encoded."""

    rising: npt.NDArray[np.float64]
    falling: npt.NDArray[np.float64]
    start_times: npt.NDArray[np.float64]
    values: npt.NDArray[np.int64]


def make_barcodes(
    rng: np.random.Generator,
    *,
    first_start_s: float,
    stop_s: float,
    interval_s: float = BARCODE_INTERVAL_S,
) -> Barcodes:
    """Return the rising/falling edges of barcodes starting at `first_start_s`, ending before `stop_s`.

    Parameters
    ----------
    rng:
        Source of the random initial counter value and the small period jitter.
    first_start_s:
        Time of the first start pulse (must be > 2 s after the line starts, FORMATS §10 step 2).
    stop_s:
        No barcode may extend past this time.
    interval_s:
        Nominal period between start pulses (≥ 29.6 s so that readers' 29 s gap rule holds).
    """
    if interval_s - _INTERVAL_JITTER_S - barcode_duration() <= 29.0:
        raise ParameterError(
            f"interval_s={interval_s}",
            field="interval_s",
            expected="a barcode period that leaves gaps > 29 s between barcodes",
        )
    if stop_s <= first_start_s:
        return Barcodes(np.empty(0), np.empty(0), np.empty(0), np.empty(0, dtype=np.int64))
    n_max = int((stop_s - first_start_s) // (interval_s - _INTERVAL_JITTER_S)) + 2
    periods = interval_s + rng.uniform(-_INTERVAL_JITTER_S, _INTERVAL_JITTER_S, n_max)
    starts = first_start_s + np.concatenate([[0.0], np.cumsum(periods[:-1])])
    starts = starts[starts + barcode_duration() < stop_s]
    n = starts.size
    first_value = int(rng.integers(0, 2**31))
    values = first_value + np.arange(n, dtype=np.int64)

    # level of each segment: start-high, start-low, 32 bits, trailing low; prepend the idle low
    bits = ((values[:, None] >> np.arange(BARCODE_N_BITS)) & 1).astype(np.int8)
    levels = np.concatenate(
        [
            np.zeros((n, 1), np.int8),
            np.ones((n, 1), np.int8),
            np.zeros((n, 1), np.int8),
            bits,
            np.zeros((n, 1), np.int8),
        ],
        axis=1,
    )
    offsets = np.concatenate(
        [
            [0.0, BARCODE_START_HIGH_S],
            BARCODE_START_HIGH_S
            + BARCODE_START_LOW_S
            + BARCODE_BIT_S * np.arange(BARCODE_N_BITS + 1),
        ]
    )  # boundary k sits between segment k and k + 1 of `levels`
    change = np.diff(levels, axis=1)  # (n, 35): +1 rising, -1 falling at boundary k
    times = starts[:, None] + offsets[None, :]
    return Barcodes(
        rising=times[change == 1],
        falling=times[change == -1],
        start_times=starts,
        values=values,
    )
