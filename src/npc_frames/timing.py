"""Stimulus frame times on the sync clock (FORMATS §2.4, §2.5, §3.4, §3.5).

Pipeline, each step a pure function of the previous one's output:

1. :func:`vsync_blocks` — falling edges of ``vsync_stim`` split into one block per stim script
   (gaps > 1 s), trimmed to ``stim_running`` windows (§2.4).
2. :func:`match_stims_to_blocks` — each stim file assigned to at most one block by start time and
   frame count (§3.5).
3. :func:`display_times_for_block` — photodiode edges turned into one display time per vsync
   (§2.5), every frame (N = 1) or every N frames (N = 3 from 2025-07-15), + 0.008 s.
4. :func:`frame_times` / :func:`timing_failures` — per stim file, flip / input / display times
   (:class:`FrameTimes`), or the reason a file has none.

Sessions without sync are timed from ``frameIntervals`` alone (§3.4).

Decisions on the **[quirk]**s of the reference implementation, in one place:

* *Behaviour-only flip times* (§3.4): npc uses ``cumsum(frameIntervals)`` as flip times, so frame
  0 flips one interval after its input read, and appends ``last + median(diff(frameIntervals))``
  (≈ 0 s after the previous flip). npc_frames uses the same convention as with sync: flip[0] = 0
  (time origin = first flip), flip[i] = ``sum(frameIntervals[:i])``; input[i] = flip[i − 1]
  (NaN for i = 0). Our times are therefore one frame interval (~16.7 ms) *earlier* than npc's
  flip times in behaviour-only sessions, consistent with the synced case, and equal to the task
  package's own ``DynRoutData.frameTimes`` (``[0, cumsum(frameIntervals)]``).
* *"Truncated" matches* (§3.5): when the file's frame count differs from its only plausible block
  by ≤ 60 frames npc returns the whole block (so flip times no longer have one entry per frame).
  npc_frames accepts the match but returns exactly ``n_frames`` times: the block's first
  ``n_frames`` vsyncs, padded with NaN if the block is shorter; ``FrameTimes.vsync_mismatch``
  records the difference and display times fall back to flip times (``display_source="flip"``)
  because the diode cannot be trusted to line up with frames when counts disagree.
* *A block claimed twice*: npc silently lets a later file overwrite an earlier file's block;
  here a block is assigned to at most one file and a later claimant is a timing failure.
* *Stim start before sync start within the same second* (``startTime`` has whole seconds, the sync
  start has microseconds): npc's ``timedelta.seconds`` wraps to ~86 399 s; we use 0 s. Files whose
  start differs from the sync start by a day or more are timing failures ("different day").
* *Diode blocks* (§2.5 step 1): each vsync block's diode edges are taken directly from the window
  ``(first vsync + 0.015 s, last vsync + 5 frames)`` of step 2; that window lies inside npc's
  stim_running/gap-based diode blocks, so the separate splitting step changes nothing for
  well-formed sessions and is not reproduced.
* *N* (diode-box frame interval): the stim file's ``diodeBoxFrameInterval`` when present, else
  inferred from the median diode interval (× 59.95 frames/s) for sessions on/after 2025-07-15,
  else 1.
* The constant-lag fallback (``SYNC_FALLBACK_CONSTANT_LAG``) is not offered: a block whose
  photodiode fails gets display = flip times and ``display_source="flip"``, with the reason in
  ``FrameTimes.display_note``.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from npc_frames._log import timed
from npc_frames.errors import AlignmentError, BadFormatError, NpcFramesError
from npc_frames.memo import Memo
from npc_frames.readers.stim import StimFile, open_stim
from npc_frames.readers.sync import SyncData, read_sync

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = [
    "FrameTimes",
    "StimTimingInfo",
    "display_times_for_block",
    "frame_times",
    "frame_times_from_stim",
    "match_stims_to_blocks",
    "stim_running_windows",
    "sync_data",
    "timing_failures",
    "vsync_blocks",
]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

# --- constants of the reference implementation (npc_sync), named once -----------------------
#: vsyncs further apart than this split stim blocks (s)
BLOCK_GAP = 1.0
#: empirical monitor frame rate used by the photodiode logic (frames/s)
FRAME_RATE = 59.95
FRAME_INTERVAL = 1 / FRAME_RATE
#: average latency from vsync fall to diode edge (s); vsyncs are shifted by it before comparing
AVERAGE_VSYNC_TO_DIODE = 0.01955
#: screen refresh from the top of the monitor to its centre, added to diode times (s)
MONITOR_CENTER_REFRESH = 0.008
#: diode edges earlier than first vsync + this are not frame flips (s)
MIN_VSYNC_DIODE_SEPARATION = 0.015
#: diode edges later than last vsync + this are not frame flips (s)
MAX_VSYNC_DIODE_SEPARATION = 5 / FRAME_RATE
#: diode intervals shorter than this fraction of a frame are suspicious / certainly spurious
SUSPICIOUS_INTERVAL = 0.3 / FRAME_RATE
DEFINITE_SHORT_INTERVAL = 0.05 / FRAME_RATE
#: a block whose diode edge count differs from its vsync count by more is skipped (N = 1)
MAX_EDGE_COUNT_MISMATCH = 5
#: matched files whose frame count differs from the block's by up to this are "truncated" (§3.5)
TRUNCATED_MATCH_FRAMES = 60
#: monitor frame periods a vsync line may have (s, ±10 %; only 60 Hz occurs on NP rigs)
VSYNC_PERIODS = (1 / 60, 1 / 120, 1 / 144, 1 / 300)
#: the diode box toggles every 3 frames in sessions from this date (§2.5)
FIRST_DIODE_EVERY_3_FRAMES = datetime.date(2025, 7, 15)

VSYNC_LINE = "vsync_stim"
DIODE_LINE = "stim_photodiode"
STIM_RUNNING_LINE = "stim_running"


@dataclass(frozen=True)
class FrameTimes:
    """Times (s, sync clock) of every frame of one stim file.

    ``flip[i]``: vsync falling edge of frame i (no sync: sum of the first i frameIntervals).
    ``input[i]``: when frame i's inputs were read = flip[i − 1] (NaN for frame 0).
    ``display[i]``: photodiode-corrected time frame i appeared at the screen centre, or = flip
    when ``display_source == "flip"`` (no photodiode, no sync, or the diode decoding failed; the
    reason is in ``display_note``).
    """

    path: str
    script_name: str
    flip: F64
    input: F64
    display: F64
    display_source: Literal["photodiode", "flip"]
    block_index: int | None
    #: vsyncs in the matched block − frames in the file (0 unless a "truncated" match, §3.5)
    vsync_mismatch: int = 0
    #: why display fell back to flip times (None when photodiode times are used)
    display_note: str | None = None
    #: frames per diode-box toggle used for display times (None without photodiode)
    diode_frames_per_flip: int | None = None

    @property
    def n_frames(self) -> int:
        """Return the number of frames (length of every time vector)."""
        return int(self.flip.size)


@dataclass(frozen=True)
class StimTimingInfo:
    """What matching needs from one stim file: path, frame count and start time."""

    path: str
    n_frames: int
    start_time: datetime.datetime


# ---------------------------------------------------------------------------------- blocks
def reshape_into_blocks(times: F64, min_gap: float = BLOCK_GAP) -> list[F64]:
    """Return `times` split wherever consecutive values are more than `min_gap` apart.

    Blocks with a single time, and blocks whose median interval exceeds `min_gap`, are dropped
    (npc's generic splitter, §2.4).
    """
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(times) > min_gap) + 1
    blocks = np.split(times, cuts)
    return [b for b in blocks if b.size > 1 and np.median(np.diff(b)) < min_gap]


def stim_running_windows(sync: SyncData) -> tuple[F64, F64]:
    """Return (on, off) times of ``stim_running`` pulses, cleaned per §2.4.

    A leading falling edge is dropped; an unterminated last rising edge ends at the file end;
    pulses containing exactly one vsync (an aborted stim) are discarded. Both arrays are empty
    when the line is absent or silent.
    """
    if not sync.has_line(STIM_RUNNING_LINE):
        return np.empty(0), np.empty(0)
    on = np.asarray(sync.rising(STIM_RUNNING_LINE))
    off = np.asarray(sync.falling(STIM_RUNNING_LINE))
    if on.size and off.size:
        if on[0] > off[0]:
            off = off[1:]
        if off.size == 0 or off[-1] < on[-1]:
            off = np.append(off, sync.total_seconds)
    elif on.size:
        off = np.append(off, sync.total_seconds)
    else:
        return np.empty(0), np.empty(0)
    if on.size != off.size:
        raise BadFormatError(
            f"stim_running has {on.size} rising but {off.size} falling edges after cleaning",
            path=sync.source,
            field=STIM_RUNNING_LINE,
            expected="alternating rising/falling edges, one pulse per stim script",
        )
    vs = _vsync_falling(sync)
    n_in = np.searchsorted(vs, off, side="right") - np.searchsorted(vs, on, side="left")
    keep = n_in != 1
    return on[keep], off[keep]


def _vsync_falling(sync: SyncData) -> F64:
    rising = np.asarray(sync.rising(VSYNC_LINE))
    falling = np.asarray(sync.falling(VSYNC_LINE))
    if falling.size and (rising.size == 0 or falling[0] < rising[0]):
        falling = falling[1:]  # a vsync already high at the start has no frame
    return falling


def vsync_blocks(sync: SyncData) -> list[F64]:
    """Return the vsync (frame flip) times of each stim block, in seconds (§2.4).

    Raises BadFormatError if the file has no ``vsync_stim`` line (naming it), and
    InconsistentDataError-derived AlignmentError if ``stim_running`` pulses cannot be paired with
    vsync blocks.
    """
    falling = _vsync_falling(sync)
    if falling.size > 1:
        period = float(np.median(np.diff(falling)))
        if not any(abs(period - p) <= 0.1 * p for p in VSYNC_PERIODS):
            raise BadFormatError(
                f"median vsync interval {period * 1000:.2f} ms is not a monitor frame period",
                path=sync.source,
                field=VSYNC_LINE,
                expected="within ±10 % of 1/60, 1/120, 1/144 or 1/300 s (§2.4)",
            )
    blocks = reshape_into_blocks(falling, BLOCK_GAP)
    on, off = stim_running_windows(sync)
    if on.size:
        if on.size != len(blocks):
            raise AlignmentError(
                f"{on.size} stim_running pulses but {len(blocks)} vsync blocks",
                path=sync.source,
                field=STIM_RUNNING_LINE,
                expected="one stim_running pulse per block of vsyncs (gaps > 1 s)",
            )
        blocks = [b[(b >= a) & (b <= z)] for b, a, z in zip(blocks, on, off)]
        if any(b.size == 0 for b in blocks):
            raise AlignmentError(
                "a stim_running pulse contains none of its block's vsyncs",
                path=sync.source,
                field=STIM_RUNNING_LINE,
                expected="vsync blocks inside stim_running pulses",
            )
    return blocks


# -------------------------------------------------------------------------------- matching
def stim_start_on_sync(stim_start: datetime.datetime, sync_start: datetime.datetime) -> float:
    """Return the stim file's start in seconds after the sync start (``timedelta.seconds``).

    Raises AlignmentError when the two are on different days (see module docstring).
    """
    delta = stim_start - sync_start
    if delta.days == 0:
        return float(delta.seconds)
    if delta.days == -1 and delta.total_seconds() > -1.0:
        return 0.0  # same wall-clock second: startTime has no sub-second part
    raise AlignmentError(
        f"stim startTime {stim_start} is not on the day of the sync start {sync_start}",
        field="startTime",
        expected="a stim file started after the sync recording started, the same day",
    )


def match_stims_to_blocks(
    stims: Sequence[StimTimingInfo], blocks: Sequence[F64], sync_start: datetime.datetime
) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Return ({path: (block index, vsync count − frame count)}, {path: failure reason}).

    Rules of §3.5, in file order: candidate A = block whose first vsync is closest to the file's
    start, B = block whose vsync count is closest to its frame count. Assign A when (count(A) ==
    n or |count(B) − n| ≤ 1) and not (A ≠ B with B's count unique among blocks). Otherwise, if
    A == B and |n − count(A)| ≤ 60 assign A as "truncated"; else the file fails. A block is given
    to at most one file.
    """
    matched: dict[str, tuple[int, int]] = {}
    failures: dict[str, str] = {}
    if not blocks:
        for s in stims:
            failures[s.path] = "sync file has no blocks of vsyncs"
        return matched, failures
    counts = np.array([b.size for b in blocks])
    firsts = np.array([b[0] for b in blocks])
    taken: set[int] = set()
    for s in stims:
        try:
            t0 = stim_start_on_sync(s.start_time, sync_start)
        except AlignmentError as exc:
            failures[s.path] = exc.message
            continue
        n = s.n_frames
        a = int(np.argmin(np.abs(firsts - t0)))
        b = int(np.argmin(np.abs(counts - n)))
        b_unique = int(np.count_nonzero(counts == counts[b])) == 1
        disagree = a != b and b_unique
        if (counts[a] == n or abs(int(counts[b]) - n) <= 1) and not disagree:
            choice: int | None = a
        elif a == b and abs(n - int(counts[a])) <= TRUNCATED_MATCH_FRAMES:
            choice = a
        else:
            choice = None
        if choice is None:
            failures[s.path] = (
                f"no vsync block matches: {n} frames starting {t0:.0f} s after sync start; "
                f"closest block by start has {counts[a]} vsyncs at {firsts[a]:.1f} s, closest by "
                f"count has {counts[b]} vsyncs at {firsts[b]:.1f} s"
            )
        elif choice in taken:
            failures[s.path] = f"vsync block {choice} already matched to another stim file"
        else:
            taken.add(choice)
            matched[s.path] = (choice, int(counts[choice]) - n)
    return matched, failures


# ------------------------------------------------------------------------------- photodiode
class DiodeError(NpcFramesError):
    """The photodiode signal of one block cannot be turned into display times."""


def _asym_round(x: F64, threshold: float) -> npt.NDArray[np.int64]:
    """Return x rounded down unless its fractional part is ≥ threshold; never below 1."""
    fl = np.floor(x)
    return np.where(x < fl + threshold, np.maximum(fl, 1), np.ceil(x)).astype(np.int64)


def _is_normal_pair(prev: float | None, mid: float, nxt: float | None) -> bool:
    # a short interval is real if with a neighbour it sums to an integer number (≥ 2) of frames
    if mid < DEFINITE_SHORT_INTERVAL:
        return False
    for other in (prev, nxt):
        if other is None:
            continue
        total = mid + other
        if total < 2 * FRAME_INTERVAL - SUSPICIOUS_INTERVAL:
            continue
        if round(total * FRAME_RATE, 1) % 1 != 0:
            continue
        return True
    return False


def _anomalous_intervals(flips: F64, n: int) -> list[int]:
    intervals = np.diff(flips)
    short = np.flatnonzero(intervals < (n - 1) * FRAME_INTERVAL + SUSPICIOUS_INTERVAL)
    out = []
    for i in short.tolist():
        if n > 1 and i == intervals.size - 1:
            continue  # the last interval may be short: screen returns to grey before N frames
        if n == 1 and _is_normal_pair(
            float(intervals[i - 1]) if i >= 1 else None,
            float(intervals[i]),
            float(intervals[i + 1]) if i + 1 < intervals.size else None,
        ):
            continue
        out.append(i)
    return out


def _remove_anomalous(flips: F64, first_on: bool, n: int) -> tuple[F64, bool]:
    # delete one short on/off blip at a time (a blip is always an edge pair), then re-check
    while flips.size > 2:
        bad = _anomalous_intervals(flips, n)
        if not bad:
            break
        i = bad[0]
        flips = np.delete(flips, [i, i + 1])
        if i == 0:
            first_on = not first_on
    return flips, first_on


def _display_every_frame(
    vsyncs: F64, flips: F64, first_on: bool, *, check_long_intervals: bool = True
) -> F64:
    """N = 1: ON edges trusted, OFF frames between them (§2.5 step 4); no end fix-ups."""
    v = vsyncs + AVERAGE_VSYNC_TO_DIODE
    first_off = not first_on
    on = flips[1::2] if first_off else flips[0::2]
    off = flips[0::2] if first_off else flips[1::2]
    if on.size < 2:
        raise DiodeError("fewer than 2 rising photodiode edges in block")
    last_on = bool(flips[-1] == on[-1])
    on_iv = np.diff(on)
    fake_off = on[:-1] + 0.5 * on_iv
    if not last_on:
        fake_off = np.append(fake_off, fake_off[-1] + on_iv[-1])
    if first_off:
        fake_off = np.insert(fake_off, 0, fake_off[0] - on_iv[0])
    median_refresh = float(np.median(on_iv)) / 2
    long_idx = np.flatnonzero(on_iv > 2.5 * median_refresh)
    if long_idx.size:
        # dropped frame(s) inside an ON-ON interval: OFF goes an integer number of refreshes
        # after ON, located with the measured OFF edge (rounding up from 0.9)
        off_idx = long_idx + int(first_off)
        ok = off_idx < off.size
        long_idx, off_idx = long_idx[ok], off_idx[ok]
        n_refresh = np.round(on_iv[long_idx] / median_refresh)
        to_off = _asym_round((off[off_idx] - on[long_idx]) / median_refresh, 0.9)
        if np.any(to_off >= n_refresh):
            raise DiodeError("photodiode OFF edge lies beyond the following ON edge")
        fake_off[off_idx] = on[long_idx] + to_off * (on_iv[long_idx] / n_refresh)
    display = np.empty(on.size + fake_off.size)
    if first_off:
        display[0::2], display[1::2] = fake_off, on
    else:
        display[0::2], display[1::2] = on, fake_off

    # cross-check long display intervals against long vsync intervals (±5 frames)
    long_thr = 1.1 * median_refresh
    long_disp = np.flatnonzero(np.diff(display) > long_thr)
    v_iv = np.diff(v)
    if long_disp.size and check_long_intervals:
        shifts = np.array([0, -1, -2, -3, -4, -5, 1, 2, 3, 4, 5])
        cand = long_disp[:, None] + shifts[None, :]
        valid = (cand > 0) & (cand < v_iv.size)
        vals = np.where(valid, v_iv[np.clip(cand, 0, max(v_iv.size - 1, 0))], -np.inf)
        best = np.argmax(vals, axis=1)
        if np.any(vals[np.arange(best.size), best] < long_thr):
            raise DiodeError("a long display interval has no long vsync interval within 5 frames")
        misalignment = -shifts[best]
        if misalignment.size < 3:
            if np.count_nonzero(v_iv > long_thr) >= 6:
                raise DiodeError(
                    "photodiode shows fewer than 3 long intervals but vsyncs show 6 or more"
                )
        else:
            smooth = _medfilt3(misalignment)
            if np.count_nonzero(smooth == 1) > 0.9 * smooth.size:
                if not display[0] < v[0]:
                    raise DiodeError("extra first diode flip expected before the first vsync")
                display = display[1:]
            elif np.count_nonzero(smooth == -1) > 0.9 * smooth.size:
                if not display[0] - v[0] > 0.5 * FRAME_INTERVAL:
                    raise DiodeError("missed first diode flip expected a late first display")
                display = np.insert(display, 0, display[0] - median_refresh)
            elif np.count_nonzero(smooth == 0) < 0.75 * misalignment.size:
                raise DiodeError("too many long display intervals misaligned with vsyncs")
    return display


def _medfilt3(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    # scipy.signal.medfilt(kernel_size=3): zero-padded running median of 3
    p = np.concatenate([[0], x, [0]])
    return np.asarray(np.median(np.stack([p[:-2], p[1:-1], p[2:]]), axis=0), dtype=np.int64)


def _fix_every_frame_ends(display: F64, vsyncs: F64) -> F64:
    """N = 1 end fix-ups (§2.5 step 4): synthesise ≤ 3 missing last frames, drop surplus."""
    m = vsyncs.size
    if display.size < m:
        if m - display.size > 3:
            raise DiodeError(f"{display.size} display times for {m} vsyncs: too many missing")
        lag = float(np.mean(display - vsyncs[: display.size]))
        display = np.concatenate([display, vsyncs[display.size :] + lag])
    if display.size == m + 1 and display[-1] > vsyncs[-1] + float(np.mean(display[:-1] - vsyncs)):
        display = display[:-1]
    if 0 < display.size - m < 5:
        display = display[:m]
    if display.size != m:
        raise DiodeError(f"{display.size} display times for {m} vsyncs")
    return display


def _display_every_n_frames(vsyncs: F64, on: F64, off: F64, n: int) -> F64:
    """N > 1: N frame times per diode interval at FRAME_INTERVAL spacing (§2.5 step 5)."""
    if on.size == 0:
        raise DiodeError("no rising photodiode edges in block")
    if off.size and off[0] < on[0]:
        raise DiodeError("first photodiode edge of the block is falling")
    off = off[: on.size]
    n_on_off = np.round((off - on[: off.size]) / FRAME_INTERVAL)
    if n_on_off.size > 1 and n_on_off[:-1].min() < n:
        raise DiodeError(f"a diode box state lasted fewer than {n} frames")
    flips = np.sort(np.concatenate([on, on[: off.size] + n_on_off * FRAME_INTERVAL]))
    if flips.size > 2 and np.any(np.diff(flips[:-1]) <= (n - 0.75) * FRAME_INTERVAL):
        raise DiodeError("photodiode intervals shorter than N frames")
    n_ref = np.round(np.diff(flips) / FRAME_INTERVAL).astype(np.int64)
    base = np.arange(n) * FRAME_INTERVAL
    # regular intervals (exactly N refreshes) vectorized; the few others one by one
    per_interval: list[F64] = [flips[:-1, None] + base[None, :]] if flips.size > 1 else []
    out = per_interval[0] if per_interval else np.empty((0, n))
    pieces: dict[int, F64] = {}
    for i in np.flatnonzero(n_ref != n).tolist():
        dropped = int(n_ref[i]) - n
        if dropped < 0:
            if i != n_ref.size - 1:
                raise DiodeError("a diode interval shorter than N frames before the last")
            pieces[i] = flips[i] + base[:dropped]
            continue
        v_iv = np.diff(vsyncs[i * n : (i + 1) * n + 1])
        if v_iv.size < n:
            if i == n_ref.size - 1:  # box held after the last frame: no more frames to place
                pieces[i] = flips[i] + base
                continue
            raise DiodeError("more diode intervals than vsyncs")
        long_at = np.zeros(n, dtype=np.int64)  # extra refreshes after frame k
        if dropped == 1:
            long_at[int(np.argmax(v_iv))] = 1
        else:
            idx = np.flatnonzero(v_iv > 1.1 * FRAME_INTERVAL)
            reps = np.round(v_iv[idx] / FRAME_INTERVAL).astype(np.int64) - 1
            if idx.size == 0:
                long_at[n // 2] = dropped
            elif reps.sum() != dropped:
                reps = np.maximum(1, np.round(reps / max(reps.sum(), 1) * dropped)).astype(np.int64)
                while reps.sum() > dropped:
                    reps[int(np.argmax(reps))] -= 1
                while reps.sum() < dropped:
                    reps[int(np.argmax(v_iv[idx]))] += 1
                long_at[idx] = reps
            else:
                long_at[idx] = reps
        steps = np.concatenate([[0], np.cumsum(1 + long_at[:-1])])
        pieces[i] = flips[i] + steps * (flips[i + 1] - flips[i]) / int(n_ref[i])
    if pieces:
        chunks = [pieces[i] if i in pieces else out[i] for i in range(out.shape[0])]
        display = np.concatenate(chunks) if chunks else np.empty(0)
    else:
        display = out.ravel()
    missing = vsyncs.size - display.size
    if missing > 0:  # last box state never terminated: frames continue at 1-frame spacing
        display = np.concatenate([display, flips[-1] + np.arange(missing) * FRAME_INTERVAL])
    elif missing < 0:
        display = display[: vsyncs.size]
    return display


def diode_frames_per_flip(sync: SyncData, stim: StimFile | None, rising: F64, falling: F64) -> int:
    """Return N, the number of frames per diode-box toggle, for one block (see module doc)."""
    if stim is not None:
        value = stim.get("diodeBoxFrameInterval")
        if value is not None:
            try:
                return max(1, int(np.asarray(value).ravel()[0]))
            except (TypeError, ValueError, IndexError):
                pass
    if sync.start_time.date() >= FIRST_DIODE_EVERY_3_FRAMES:
        edges = np.sort(np.concatenate([rising, falling]))
        if edges.size > 2:
            return max(1, round(float(np.median(np.diff(edges))) * FRAME_RATE))
    return 1


def display_times_for_block(
    vsyncs: F64,
    rising: F64,
    falling: F64,
    *,
    frames_per_flip: int = 1,
    check_long_intervals: bool = True,
) -> F64:
    """Return one display time per vsync (s) from the block's photodiode edges (§2.5).

    `rising`/`falling` may be all diode edges of the recording; only those inside
    (first vsync + 0.015 s, last vsync + 5 frames) are used. The result includes the 0.008 s
    top-to-centre refresh. Raises :class:`DiodeError` (an NpcFramesError) when the block's diode
    signal cannot be decoded. `check_long_intervals=False` skips the N = 1 cross-check of long
    display intervals against long vsync intervals (npc skips it for Spontaneous scripts, whose
    frame timing does not matter).
    """
    vsyncs = np.asarray(vsyncs, dtype=np.float64)
    lo, hi = vsyncs[0] + MIN_VSYNC_DIODE_SEPARATION, vsyncs[-1] + MAX_VSYNC_DIODE_SEPARATION
    r = np.asarray(rising)[(rising > lo) & (rising < hi)]
    f = np.asarray(falling)[(falling > lo) & (falling < hi)]
    if r.size + f.size < 2 or r.size == 0:
        raise DiodeError("no photodiode edges in the block")
    first_on = bool(f.size == 0 or r[0] < f[0])
    flips = np.sort(np.concatenate([r, f]))
    n = int(frames_per_flip)
    flips, first_on = _remove_anomalous(flips, first_on, n)
    if n == 1:
        if abs(flips.size - vsyncs.size) > MAX_EDGE_COUNT_MISMATCH:
            raise DiodeError(f"{flips.size} diode edges for {vsyncs.size} vsyncs")
        display = _display_every_frame(
            vsyncs, flips, first_on, check_long_intervals=check_long_intervals
        )
        display = _fix_every_frame_ends(display, vsyncs)
    else:
        on = flips[0::2] if first_on else flips[1::2]
        off = flips[1::2] if first_on else flips[0::2]
        if not first_on:
            raise DiodeError("first photodiode edge of the block is falling")
        display = _display_every_n_frames(vsyncs, on, off, n)
    if np.any(~np.isfinite(display)) or np.any(np.diff(display) <= 0):
        raise DiodeError("display times are not strictly increasing")
    return display + MONITOR_CENTER_REFRESH


# ----------------------------------------------------------------------------- frame times
def frame_times_from_stim(stim: StimFile) -> FrameTimes:
    """Return frame times of a stim file timed by its own ``frameIntervals`` (no sync, §3.4)."""
    fi = np.asarray(stim.frame_intervals, dtype=np.float64)
    flip = np.concatenate([[0.0], np.cumsum(fi)])
    return FrameTimes(
        path=stim.path,
        script_name=stim.script_name,
        flip=_ro(flip),
        input=_ro(_input_from_flip(flip)),
        display=_ro(flip),
        display_source="flip",
        block_index=None,
        display_note="no sync file: times from frameIntervals",
    )


def _input_from_flip(flip: F64) -> F64:
    return np.concatenate([[np.nan], flip[:-1]])


def _ro(a: F64) -> F64:
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def _fit(a: F64, n: int) -> F64:
    if a.size >= n:
        return a[:n]
    return np.concatenate([a, np.full(n - a.size, np.nan)])


@dataclass(frozen=True)
class _Timing:
    times: dict[str, FrameTimes]
    failures: dict[str, str]


def compute_timing(
    sync: SyncData | None,
    stim_paths: Sequence[str],
    *,
    opener: Callable[[str], StimFile] = open_stim,
    names: Mapping[str, str] | None = None,
) -> tuple[dict[str, FrameTimes], dict[str, str]]:
    """Return ({path: FrameTimes}, {path: failure reason}) for stim files against a sync file.

    `opener` opens a stim path (default :func:`open_stim`); `names` maps an opened path back to
    the key to report (e.g. a remote URL whose local copy was opened). Without sync, every file
    that opens is timed from its frameIntervals.
    """
    names = dict(names or {})
    stims: dict[str, StimFile] = {}
    failures: dict[str, str] = {}
    for p in stim_paths:
        key = names.get(p, p)
        try:
            stims[key] = opener(p)
        except NpcFramesError as exc:
            failures[key] = str(exc)
    if sync is None:
        return {k: _rename(frame_times_from_stim(s), k) for k, s in stims.items()}, failures
    try:
        blocks = vsync_blocks(sync)
    except NpcFramesError as exc:
        for k in stims:
            failures[k] = f"vsync blocks unavailable: {exc}"
        return {}, failures
    infos = []
    for k, s in stims.items():
        try:
            infos.append(StimTimingInfo(k, s.n_frames, s.start_time))
        except NpcFramesError as exc:
            failures[k] = str(exc)
    matched, unmatched = match_stims_to_blocks(infos, blocks, sync.start_time)
    failures.update(unmatched)
    has_diode = sync.has_line(DIODE_LINE)
    d_rise = np.asarray(sync.rising(DIODE_LINE)) if has_diode else np.empty(0)
    d_fall = np.asarray(sync.falling(DIODE_LINE)) if has_diode else np.empty(0)
    times: dict[str, FrameTimes] = {}
    for k, (block_idx, mismatch) in matched.items():
        stim = stims[k]
        n = stim.n_frames
        vs = blocks[block_idx]
        flip = _fit(vs, n)
        note: str | None = None
        display = flip
        source: Literal["photodiode", "flip"] = "flip"
        n_per_flip: int | None = None
        if not has_diode or d_rise.size == 0:
            note = "sync file has no stim_photodiode edges"
        elif mismatch != 0:
            note = f"block has {vs.size} vsyncs for {n} frames (truncated match)"
        elif stim.get("drawDiodeBox", True) in (False, 0):
            note = "stim file did not draw the diode box (drawDiodeBox is False)"
        elif abs(d_rise.size - d_fall.size) >= 2:
            note = f"photodiode has {d_rise.size} rising but {d_fall.size} falling edges"
        else:
            n_per_flip = diode_frames_per_flip(sync, stim, d_rise, d_fall)
            try:
                display = _fit(
                    display_times_for_block(
                        vs,
                        d_rise,
                        d_fall,
                        frames_per_flip=n_per_flip,
                        check_long_intervals="spontaneous" not in stim.script_name.lower(),
                    ),
                    n,
                )
                source = "photodiode"
            except (DiodeError, IndexError, ValueError) as exc:
                note = f"photodiode decoding failed: {exc}"
                n_per_flip = None
        times[k] = FrameTimes(
            path=k,
            script_name=stim.script_name,
            flip=_ro(flip),
            input=_ro(_input_from_flip(flip)),
            display=_ro(display),
            display_source=source,
            block_index=block_idx,
            vsync_mismatch=mismatch,
            display_note=note,
            diode_frames_per_flip=n_per_flip,
        )
    return dict(sorted(times.items(), key=lambda kv: float(np.nanmin(kv[1].flip)))), failures


def _rename(t: FrameTimes, path: str) -> FrameTimes:
    if t.path == path:
        return t
    return FrameTimes(
        path=path,
        script_name=t.script_name,
        flip=t.flip,
        input=t.input,
        display=t.display,
        display_source=t.display_source,
        block_index=t.block_index,
        vsync_mismatch=t.vsync_mismatch,
        display_note=t.display_note,
        diode_frames_per_flip=t.diode_frames_per_flip,
    )


# ------------------------------------------------------------------------ RawSession level
#: frame times per session, keyed by the content of its sync and stim files
_MEMO: Memo[_Timing] = Memo("frame times", maxsize=16)


@timed
def sync_data(raw: RawSession) -> SyncData | None:
    """Return the session's decoded sync file, or None for a session without one.

    Memoized by :func:`~npc_frames.readers.sync.read_sync` on the (local copy of the) file.
    """
    if raw.sync_path is None:
        return None
    return read_sync(raw.local(raw.sync_path), source=raw.sync_path)


def _timing(raw: RawSession) -> _Timing:
    key = (
        (raw.sync_path, raw.stat_key(raw.sync_path)) if raw.sync_path else None,
        tuple((p, raw.stat_key(p)) for p in raw.stim_paths),
    )

    def compute() -> _Timing:
        sync = sync_data(raw)
        local = {raw.local(p): p for p in raw.stim_paths}
        times, failures = compute_timing(sync, list(local), names=local)
        return _Timing(times, failures)

    return _MEMO.get(key, compute)


@timed
def frame_times(raw: RawSession) -> dict[str, FrameTimes]:
    """Return {stim path: FrameTimes} for every stim file of `raw` with valid timing.

    Ordered by first flip time. Files that could not be timed are in :func:`timing_failures`.
    With sync, times are seconds on the sync clock; without, seconds from the file's first flip.
    Memoized by the sync and stim files' paths, sizes and modification stamps.
    """
    return dict(_timing(raw).times)


@timed
def timing_failures(raw: RawSession) -> dict[str, str]:
    """Return {stim path: reason} for every stim file of `raw` that has no frame times."""
    return dict(_timing(raw).failures)
