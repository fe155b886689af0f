"""Per-session QC: checks with thresholds (``qc.json``) and a static HTML report with PNG figures.

Everything is computed from one session's cached components (``nf.read_session``): sessions
flags (sync, photodiode, engagement), running speed, units (yield per probe, QC metrics, drift map
from spike times and the ``spike_amplitudes`` component), trials (population PSTH to visual and
auditory targets), optotagging and camera frame times (dropped frames). The sync-based checks and panels (vsync
intervals and dropped/long frames, photodiode lag per stim block, sound and opto latency from the
sync lines and the NI-DAQ copy) come from the ``qc`` and ``qc_timing`` components, which convert
computes from the raw sync file and NI-DAQ recording (:mod:`npc_frames.components._qc`), so the
report never reads raw files. Each figure says what a good session looks like; each check
records its value, threshold and pass/fail (``None`` when the session lacks the data, e.g. no
optotagging).
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames.errors import CacheError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Check", "qc_checks", "qc_report", "read_qc"]

#: default_qc units a probe needs to count as recording
MIN_QC_UNITS_PER_PROBE = 5
#: fraction of running-speed samples that must be finite
MIN_RUNNING_FINITE = 0.9
#: camera frame intervals longer than this multiple of the median count as dropped frames
DROPPED_INTERVAL_FACTOR = 1.5
MAX_DROPPED_FRACTION = 0.01
#: response window / baseline window (s) and the minimum population rate ratio
RESPONSE_WINDOW = (0.0, 0.1)
BASELINE_WINDOW = (-0.1, 0.0)
MIN_RESPONSE_RATIO = 1.2
PSTH_RANGE = (-0.2, 0.5)
PSTH_BIN = 0.01
#: spikes drawn per drift map at most (every k-th spike beyond), and its image's bins
MAX_DRIFT_POINTS = 2_000_000
DRIFT_TIME_BINS = 300
DRIFT_DEPTH_BINS = 192


@dataclass
class Check:
    """One QC check: its value, the threshold it is compared with, and the verdict."""

    name: str
    passed: bool | None
    value: float | int | bool | None
    threshold: str
    description: str


def _population_rates(
    spikes: npt.NDArray[np.float64], events: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Return the mean population rate (Hz, summed over units) per bin around `events`."""
    events = events[np.isfinite(events)]
    if not events.size or not spikes.size:
        return np.full(edges.size - 1, np.nan)
    idx = np.searchsorted(spikes, events[:, None] + edges[None, :])
    counts = np.diff(idx, axis=1)
    return counts.mean(axis=0) / np.diff(edges)


def _qc_spikes(units: pl.DataFrame) -> npt.NDArray[np.float64]:
    qc = units.filter(pl.col("default_qc").fill_null(False))
    if qc.is_empty():
        return np.empty(0)
    # each unit's spike times are sorted: a stable (merge) sort of the concatenated runs is
    # several times faster than a quicksort of the same values
    values = qc["spike_times"].explode().drop_nulls().to_numpy().astype(np.float64)
    return np.sort(values, kind="stable")


def _ratio(rates: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]) -> float | None:
    centers = edges[:-1]
    base = rates[(centers >= BASELINE_WINDOW[0]) & (centers < BASELINE_WINDOW[1])]
    resp = rates[(centers >= RESPONSE_WINDOW[0]) & (centers < RESPONSE_WINDOW[1])]
    if not base.size or not np.isfinite(base).all() or np.nanmean(base) <= 0:
        return None
    return float(np.nanmean(resp) / np.nanmean(base))


def _get(tables: dict[str, pl.DataFrame], name: str) -> pl.DataFrame | None:
    df = tables.get(name)
    return None if df is None or df.is_empty() else df


def qc_checks(
    tables: dict[str, pl.DataFrame], *, spikes: npt.NDArray[np.float64] | None = None
) -> list[Check]:
    """Return the QC checks of one session from its component frames (name -> frame).

    `spikes`: the sorted spike times of the default_qc units when the caller has them already.
    """
    checks: list[Check] = []
    s = _get(tables, "sessions")
    row = s.row(0, named=True) if s is not None else {}

    def flag(name: str, col: str, description: str) -> None:
        v = row.get(col)
        checks.append(Check(name, None if v is None else bool(v), v, "True", description))

    flag("sync", "is_sync", "a sync file timed the session (else times are approximate)")
    flag("photodiode", "is_photodiode", "stimulus display times come from the photodiode")
    flag("engaged", "is_engaged", ">= 4 blocks with >= 10 contingent rewards")

    groups = _get(tables, "electrode_groups")
    units = _get(tables, "units")
    probes = sorted(groups["name"].unique().to_list()) if groups is not None else []
    if units is not None:
        probes = sorted(set(probes) | set(units["electrode_group_name"].drop_nulls().unique()))
    for probe in probes:
        n = 0
        if units is not None:
            n = units.filter(
                (pl.col("electrode_group_name") == probe) & pl.col("default_qc").fill_null(False)
            ).height
        checks.append(
            Check(
                f"yield_{probe}",
                n >= MIN_QC_UNITS_PER_PROBE,
                n,
                f">= {MIN_QC_UNITS_PER_PROBE} default_qc units",
                f"{probe} recorded units that pass QC (0 suggests a broken or unsorted probe)",
            )
        )

    run = _get(tables, "running_speed")
    frac = float(np.isfinite(run["speed"].to_numpy()).mean()) if run is not None else None
    checks.append(
        Check(
            "running_speed",
            None if frac is None else frac >= MIN_RUNNING_FINITE,
            frac,
            f"finite fraction >= {MIN_RUNNING_FINITE}",
            "running speed was decoded for most of the session",
        )
    )

    video = _get(tables, "video_frame_times")
    if video is not None:
        for cam, df in video.sort("camera", "frame_index").group_by("camera", maintain_order=True):
            dt = np.diff(df["timestamp"].drop_nans().drop_nulls().to_numpy())
            med = float(np.median(dt)) if dt.size else np.nan
            dropped = float((dt > DROPPED_INTERVAL_FACTOR * med).mean()) if dt.size else None
            checks.append(
                Check(
                    f"video_dropped_{cam[0]}",
                    None if dropped is None else dropped <= MAX_DROPPED_FRACTION,
                    dropped,
                    f"fraction of intervals > {DROPPED_INTERVAL_FACTOR} x median <= "
                    f"{MAX_DROPPED_FRACTION}",
                    f"camera {cam[0]} frames arrive at a steady rate",
                )
            )

    if spikes is None:
        spikes = _qc_spikes(units) if units is not None else np.empty(0)
    edges = np.arange(PSTH_RANGE[0], PSTH_RANGE[1] + PSTH_BIN / 2, PSTH_BIN)
    trials = _get(tables, "trials")
    for target, col in (("vis", "is_vis_target"), ("aud", "is_aud_target")):
        ratio = None
        if trials is not None and spikes.size:
            ev = trials.filter(pl.col(col).fill_null(False))["stim_start_time"].to_numpy()
            ratio = _ratio(_population_rates(spikes, ev.astype(np.float64), edges), edges)
        checks.append(
            Check(
                f"{target}_response",
                None if ratio is None else ratio >= MIN_RESPONSE_RATIO,
                ratio,
                f"population rate ratio (0-100 ms / -100-0 ms) >= {MIN_RESPONSE_RATIO}",
                f"QC units respond to {target} targets",
            )
        )
    opto = _get(tables, "optotagging")
    ratio = None
    if opto is not None and spikes.size:
        ev = opto["start_time"].to_numpy().astype(np.float64)
        ratio = _ratio(_population_rates(spikes, ev, edges), edges)
    checks.append(
        Check(
            "optotagging_response",
            None if ratio is None else ratio >= MIN_RESPONSE_RATIO,
            ratio,
            f"population rate ratio >= {MIN_RESPONSE_RATIO}",
            "laser pulses drive tagged units",
        )
    )
    sync_qc = _get(tables, "qc")
    if sync_qc is not None:
        for r in sync_qc.iter_rows(named=True):
            unit = f" {r['unit']}" if r["unit"] and r["unit"] != "fraction" else ""
            checks.append(
                Check(
                    r["name"],
                    r["passed"],
                    r["value"],
                    f"{r['threshold']}{unit}",
                    r["description"],
                )
            )
    return checks


# ------------------------------------------------------------------------------------ figures
def _figure() -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(7, 3.2), layout="constrained")


def _placeholder(text: str) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return fig


def _fig_running(tables: dict[str, pl.DataFrame]) -> Figure:
    run = _get(tables, "running_speed")
    if run is None:
        return _placeholder("no running speed")
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(run["timestamps"].to_numpy(), run["speed"].to_numpy(), lw=0.5)
    ax.set(xlabel="time (s)", ylabel="speed (cm/s)")
    return fig


def _fig_yield(tables: dict[str, pl.DataFrame]) -> Figure:
    units = _get(tables, "units")
    if units is None:
        return _placeholder("no units")
    by = (
        units.group_by("electrode_group_name")
        .agg(pl.len().alias("n"), pl.col("default_qc").fill_null(False).sum().alias("qc"))
        .sort("electrode_group_name")
    )
    fig = _figure()
    ax = fig.add_subplot()
    x = np.arange(by.height)
    ax.bar(x, by["n"].to_numpy(), color="lightgray", label="all units")
    ax.bar(x, by["qc"].to_numpy(), color="tab:green", label="default_qc")
    ax.axhline(MIN_QC_UNITS_PER_PROBE, color="k", ls=":", lw=1)
    ax.set_xticks(x, by["electrode_group_name"].to_list())
    ax.set(ylabel="units")
    ax.legend(frameon=False)
    return fig


_METRICS = (
    ("isi_violations_ratio", 0.5),
    ("amplitude_cutoff", 0.1),
    ("presence_ratio", 0.7),
    ("firing_rate", None),
)


def _fig_metrics(tables: dict[str, pl.DataFrame]) -> Figure:
    units = _get(tables, "units")
    if units is None:
        return _placeholder("no units")
    fig = _figure()
    axes = fig.subplots(1, len(_METRICS))
    for ax, (name, line) in zip(axes, _METRICS, strict=True):
        v = units[name].cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
        ax.hist(v, bins=20, color="tab:blue")
        if line is not None:
            ax.axvline(line, color="k", ls=":")
        ax.set_title(name, fontsize=8)
    return fig


def _fig_drift(units: pl.DataFrame, probe: str, amplitudes: pl.DataFrame | None = None) -> Figure:
    """Spike depth x time of the probe's default_qc units: a 2-D histogram (time bins x peak
    channels) coloured by the mean spike amplitude of each bin (the ``spike_amplitudes``
    component's, matched by unit_id; 1 when the probe has none); empty bins are blank."""
    u = units.filter(
        (pl.col("electrode_group_name") == probe) & pl.col("default_qc").fill_null(False)
    )
    if u.is_empty():
        return _placeholder(f"{probe}: no default_qc units")
    if "spike_amplitudes" not in u.columns and amplitudes is not None:
        u = u.join(
            amplitudes.select("unit_id", "spike_amplitudes"),
            on="unit_id",
            how="left",
            maintain_order="left",
        )
    lens = u["spike_times"].list.len().fill_null(0).to_numpy()
    t = u["spike_times"].explode().drop_nulls().to_numpy().astype(np.float64)
    depth = np.repeat(u["peak_channel"].fill_null(-1).to_numpy(), lens).astype(np.float64)
    amp = (
        u["spike_amplitudes"].explode().drop_nulls().to_numpy().astype(np.float64)
        if "spike_amplitudes" in u.columns
        else np.ones_like(t)
    )
    if amp.size != t.size:
        amp = np.ones_like(t)
    step = max(1, t.size // MAX_DRIFT_POINTS)
    t, depth, amp = t[::step], depth[::step], amp[::step]
    fig = _figure()
    ax = fig.add_subplot()
    if not t.size:
        return _placeholder(f"{probe}: default_qc units without spikes")
    t_edges = np.linspace(t.min(), t.max() + 1e-9, DRIFT_TIME_BINS + 1)
    lo, hi = float(depth.min()), float(depth.max())
    d_edges = np.arange(lo - 0.5, hi + 1.5, max(1.0, (hi - lo + 1) / DRIFT_DEPTH_BINS))
    n, _, _ = np.histogram2d(t, depth, bins=(t_edges, d_edges))
    total, _, _ = np.histogram2d(t, depth, bins=(t_edges, d_edges), weights=amp)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / n, np.nan)
    im = ax.imshow(
        mean.T,
        origin="lower",
        aspect="auto",
        extent=(t_edges[0], t_edges[-1], d_edges[0], d_edges[-1]),
        cmap="viridis",
        interpolation="nearest",
    )
    fig.colorbar(im, ax=ax, label="mean amplitude")
    ax.set(xlabel="time (s)", ylabel="peak channel", title=probe)
    return fig


def _fig_psth(
    spikes: npt.NDArray[np.float64], events: dict[str, npt.NDArray[np.float64]], title: str
) -> Figure:
    if not spikes.size or not any(e.size for e in events.values()):
        return _placeholder(f"{title}: no QC units or no events")
    edges = np.arange(PSTH_RANGE[0], PSTH_RANGE[1] + PSTH_BIN / 2, PSTH_BIN)
    fig = _figure()
    ax = fig.add_subplot()
    for label, ev in events.items():
        ax.plot(edges[:-1], _population_rates(spikes, ev, edges), label=label)
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel="time from onset (s)", ylabel="population rate (Hz)", title=title)
    ax.legend(frameon=False)
    return fig


def _fig_vsync(timing: pl.DataFrame | None) -> Figure:
    rows = None if timing is None else timing.filter(pl.col("measure") == "vsync_interval")
    if rows is None or rows.is_empty():
        return _placeholder("no vsync blocks (no sync file or no matched stim file)")
    fig = _figure()
    ax = fig.add_subplot()
    for r in rows.sort("block_index").iter_rows(named=True):
        edges = np.asarray(r["hist_edges"]) * 1000
        counts = np.asarray(r["hist_counts"], dtype=np.float64)
        ax.stairs(
            np.maximum(counts, 0.5),
            edges,
            label=f"{r['script_name']} ({r['n_outliers']} dropped)",
        )
    ax.set_yscale("log")
    ax.set(xlabel="flip-to-flip interval (ms)", ylabel="intervals", title="vsync intervals")
    ax.legend(frameon=False, fontsize=7)
    return fig


def _fig_errorbars(
    timing: pl.DataFrame | None, measures: Sequence[str], title: str, by_block: bool
) -> Figure:
    rows = None if timing is None else timing.filter(pl.col("measure").is_in(list(measures)))
    if rows is None or rows.is_empty():
        return _placeholder(f"{title}: not recorded in this session")
    rows = rows.sort("block_index", "measure", nulls_last=True)
    fig = _figure()
    ax = fig.add_subplot()
    med = rows["median"].to_numpy() * 1000
    lo = med - rows["p05"].to_numpy() * 1000
    hi = rows["p95"].to_numpy() * 1000 - med
    x = np.arange(rows.height)
    ax.errorbar(x, med, yerr=[lo, hi], fmt="o", capsize=3)
    labels = [
        f"{s}\n#{b}" if by_block else m
        for s, b, m in zip(rows["script_name"], rows["block_index"], rows["measure"], strict=True)
    ]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set(ylabel="ms (median, 5-95 %)", title=title)
    return fig


#: panel title -> what a good session shows
GOOD = {
    "Vsync intervals": "one narrow peak at the frame period (16.7 ms at 60 Hz) in every block; "
    "a few dropped frames (one period longer) at most, no long frames (> 100 ms).",
    "Photodiode lag": "the same lag (~20 ms) in every stim block with a narrow 5-95 % range; a "
    "missing block means its display times fell back to flips.",
    "Sound and opto latency": "sound onsets a few ms after the stimulus flip, laser onsets "
    "within ~2 ms of their commanded time, and the sync line and NI-DAQ copy agreeing to "
    "within 1 ms.",
    "Running speed": "a continuous trace without long gaps; bouts of running separated by rest.",
    "Probe yield": f"every probe with at least {MIN_QC_UNITS_PER_PROBE} default_qc units (dotted "
    "line); a probe at zero is broken, unsorted or out of the brain.",
    "Unit metrics": "most units left of the dotted QC thresholds (ISI violations, amplitude "
    "cutoff) and right of the presence-ratio threshold.",
    "Drift map": "horizontal bands of spikes at stable depths; bands that bend or fade mean probe "
    "drift or units lost during the session.",
    "Sensory responses": "a sharp rise of the population rate within 100 ms of visual and "
    "auditory target onsets.",
    "Optotagging": "a rise of the population rate during the laser pulse in tagged sessions.",
}


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=100)
    return path.name


def qc_report(
    session_id: object,
    cache: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "qc",
) -> Path:
    """Return the path of the written ``index.html`` of one session's QC report.

    Writes ``index.html``, one PNG per panel and ``qc.json`` (checks with values, thresholds and
    pass/fail) into ``out_dir/<session_id>/``. Raises CacheError when the cache holds nothing for
    the session.
    """
    from npc_frames.cache.scan import read_session
    from npc_frames.ids import safe_session_id

    sid = safe_session_id(session_id)
    tables = read_session(sid, cache)
    if "sessions" not in tables:
        raise CacheError(
            f"session {sid} has no sessions component in the cache",
            path=str(cache),
            field="sessions",
            expected="a converted session",
        )
    out = Path(out_dir) / sid
    out.mkdir(parents=True, exist_ok=True)
    units = _get(tables, "units")
    spikes = _qc_spikes(units) if units is not None else np.empty(0)
    checks = qc_checks(tables, spikes=spikes)
    (out / "qc.json").write_text(
        json.dumps(
            {
                "session_id": sid,
                "passed": all(c.passed is not False for c in checks),
                "checks": [asdict(c) for c in checks],
            },
            indent=1,
        )
    )
    trials = _get(tables, "trials")
    events: dict[str, npt.NDArray[np.float64]] = {}
    if trials is not None:
        for label, col in (("vis target", "is_vis_target"), ("aud target", "is_aud_target")):
            ev = trials.filter(pl.col(col).fill_null(False))["stim_start_time"]
            events[label] = ev.to_numpy().astype(np.float64)
    opto = _get(tables, "optotagging")
    opto_events = (
        {"laser": opto["start_time"].to_numpy().astype(np.float64)} if opto is not None else {}
    )
    timing = _get(tables, "qc_timing")
    latency = [
        f"{kind}_{m}"
        for kind in ("sound", "opto")
        for m in ("latency_line", "latency_nidaq", "line_minus_nidaq")
    ]
    panels: list[tuple[str, list[str]]] = [
        ("Vsync intervals", [_save(_fig_vsync(timing), out / "vsync_intervals.png")]),
        (
            "Photodiode lag",
            [
                _save(
                    _fig_errorbars(timing, ["photodiode_lag"], "photodiode lag per block", True),
                    out / "photodiode_lag.png",
                )
            ],
        ),
        (
            "Sound and opto latency",
            [
                _save(
                    _fig_errorbars(timing, latency, "latency after the flip", False),
                    out / "latency.png",
                )
            ],
        ),
        ("Running speed", [_save(_fig_running(tables), out / "running_speed.png")]),
        ("Probe yield", [_save(_fig_yield(tables), out / "probe_yield.png")]),
        ("Unit metrics", [_save(_fig_metrics(tables), out / "unit_metrics.png")]),
    ]
    if units is not None:
        probes = sorted(units["electrode_group_name"].drop_nulls().unique())
        panels.append(
            (
                "Drift map",
                [
                    _save(
                        _fig_drift(units, p, _get(tables, "spike_amplitudes")),
                        out / f"drift_{p}.png",
                    )
                    for p in probes
                ],
            )
        )
    panels.append(
        ("Sensory responses", [_save(_fig_psth(spikes, events, "targets"), out / "psth.png")])
    )
    panels.append(
        ("Optotagging", [_save(_fig_psth(spikes, opto_events, "optotagging"), out / "opto.png")])
    )
    (out / "index.html").write_text(_html(sid, checks, panels))
    return out / "index.html"


def _html(sid: str, checks: list[Check], panels: list[tuple[str, list[str]]]) -> str:
    def verdict(c: Check) -> str:
        return {True: "pass", False: "FAIL", None: "n/a"}[c.passed]

    rows = "\n".join(
        f"<tr class='{verdict(c).lower()}'><td>{html.escape(c.name)}</td><td>{verdict(c)}</td>"
        f"<td>{html.escape(_fmt(c.value))}</td><td>{html.escape(c.threshold)}</td>"
        f"<td>{html.escape(c.description)}</td></tr>"
        for c in checks
    )
    sections = "\n".join(
        f"<section><h2>{html.escape(title)}</h2>"
        + "".join(f"<img src='{html.escape(img)}' alt='{html.escape(title)}'>" for img in imgs)
        + f"<p class='good'>Good: {html.escape(GOOD[title])}</p></section>"
        for title, imgs in panels
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>QC {html.escape(sid)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; background: #fff; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
tr.fail td {{ background: #fdd; }} tr.pass td:nth-child(2) {{ color: #070; }}
img {{ max-width: 48%; margin: 4px; }} .good {{ color: #555; font-style: italic; }}
</style></head>
<body><h1>QC report: {html.escape(sid)}</h1>
<table><tr><th>check</th><th>result</th><th>value</th><th>threshold</th><th>meaning</th></tr>
{rows}
</table>
{sections}
</body></html>
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def read_qc(out_dir: str | os.PathLike[str] = "qc") -> pl.DataFrame:
    """Return every check of every report under `out_dir` as one frame (one row per session and
    check): ``session_id, name, passed, value, threshold, description`` — QC across sessions."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(out_dir).glob("*/qc.json")):
        doc = json.loads(path.read_text())
        for c in doc["checks"]:
            v = c["value"]
            rows.append(
                {
                    "session_id": doc["session_id"],
                    **{k: c[k] for k in ("name", "passed", "threshold", "description")},
                    "value": None if v is None else float(v),
                }
            )
    schema = {
        "session_id": pl.String,
        "name": pl.String,
        "passed": pl.Boolean,
        "threshold": pl.String,
        "description": pl.String,
        "value": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)
