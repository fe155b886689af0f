"""Spike-sorting output: Kilosort/phy folders and the AIND SpikeInterface pipeline output
(legacy folder layout and SortingAnalyzer zarr), one probe at a time (FORMATS §11.1–§11.2).

Every layout is read into the same :class:`SortingOutput`: units in a fixed order, spikes as flat
arrays of sample indices and unit indices, per-spike amplitudes, the dense average template per
unit and the metrics of each unit as a Polars frame. Nothing here knows about clocks.

Decisions
---------
* Unit order is the metrics index order when a metrics table exists (the pipeline writes both in
  unit order), else ascending cluster id; ``cluster_id`` is ``original_cluster_id`` (the Kilosort
  id) when the pipeline recorded it, else the unit id itself.
* Spike counts per unit must equal the metrics' ``num_spikes`` (FORMATS §14); a mismatch raises
  :class:`InconsistentDataError` naming the metrics file, because a unit table whose spike trains
  disagree with its metrics is not trustworthy.
* phy ``amplitudes.npy`` holds Kilosort template scaling factors, not µV; they are passed through
  as ``spike_amplitudes`` unchanged (the AIND ``spike_amplitudes`` extension is in µV).
* Kilosort/phy templates: ``templates_average.npy`` (units × samples × channels, µV, unit order)
  when present, else ``templates.npy`` un-whitened with ``whitening_mat_inv.npy`` and indexed by
  cluster id (valid only for uncurated sortings, where cluster id = template id).
* SortingAnalyzer zarr folders are opened with ``spikeinterface.load_sorting_analyzer`` (its own
  loader is the cleanest reader of its format); the spike vector is then plain numpy.
* Channel ids follow §11.2: digits sorted; ``1…N`` become 0-based, ``0…N−1`` stay; otherwise
  1-based is assumed for Neuropix-PXI plugin < 0.7.0 (pass ``one_based=True``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames import parts
from npc_frames._log import timed
from npc_frames.errors import (
    BadFormatError,
    InconsistentDataError,
    MissingFileError,
    NpcFramesError,
    UnsupportedVersionError,
)
from npc_frames.readers._literal import load_npy

__all__ = [
    "SortingOutput",
    "channel_indices",
    "find_sortings",
    "read_aind_analyzer",
    "read_aind_legacy",
    "read_phy",
    "read_sorting",
    "read_sortings",
    "sorting_key",
]

logger = logging.getLogger(__name__)

Layout = Literal["phy", "aind_legacy", "aind_analyzer"]
_PROBE_RE = re.compile(r"[Pp]robe[-_ ]?(?P<letter>[A-F])(?![A-Za-z])")
_SHANK_RE = re.compile(r"_group(?P<shank>\d+)$")
_AIND_SPIKE_DIRS = ("sorting_precurated", "curated")


@dataclass(frozen=True)
class SortingOutput:
    """One probe's sorted units and spikes (any layout)."""

    path: str
    layout: Layout
    #: entry/folder name, e.g. ``Neuropix-PXI-100.ProbeA-AP``
    name: str
    probe_letter: str | None
    shank: int | None
    #: Kilosort cluster id of each unit, in unit order (n_units,)
    cluster_ids: npt.NDArray[np.int64]
    #: sample index of each spike in the sorted recording (0 = first sample) (n_spikes,)
    spike_samples: npt.NDArray[np.int64]
    #: index into `cluster_ids` of each spike (n_spikes,)
    spike_units: npt.NDArray[np.integer[Any]]
    #: per-spike amplitude (µV for AIND; template scaling for phy), or None
    spike_amplitudes: npt.NDArray[np.float64] | None
    #: average template per unit (n_units, n_samples, n_channels), float32, or None
    templates: npt.NDArray[np.float32] | None
    #: 0-based probe channel of each template channel (n_channels,)
    channels: npt.NDArray[np.int64]
    #: quality + template metrics, one row per unit in unit order; first column ``cluster_id``
    metrics: pl.DataFrame
    #: sorting properties per unit in unit order (default_qc, decoder_label, decoder_probability)
    properties: pl.DataFrame = field(default_factory=pl.DataFrame)
    sample_rate: float | None = None
    #: file whose metrics were checked against the spike counts (for error messages)
    metrics_path: str | None = None

    @property
    def n_units(self) -> int:
        """Return the number of units."""
        return int(self.cluster_ids.size)

    def spike_counts(self) -> npt.NDArray[np.int64]:
        """Return the number of spikes of each unit, in unit order."""
        return np.bincount(self.spike_units, minlength=self.n_units).astype(np.int64)


# ------------------------------------------------------------------------------- helpers
def _probe_letter(name: str) -> str | None:
    m = _PROBE_RE.search(name)
    return m["letter"] if m else None


def _shank(name: str) -> int | None:
    m = _SHANK_RE.search(name)
    return int(m["shank"]) if m else None


def channel_indices(
    channel_ids: Sequence[Any], *, one_based: bool | None = None
) -> npt.NDArray[np.int64]:
    """Return 0-based probe channel indices of channel ids like ``"AP1"``, ``"CH0"`` or ``3``.

    Digits are extracted; ``1…N`` (as a set) become 0-based, ``0…N−1`` are kept; any other set is
    shifted by one when `one_based` is True (settings.xml plugin < 0.7.0) and kept otherwise.
    """
    digits = np.array([int(re.sub(r"\D", "", str(c)) or -1) for c in channel_ids], dtype=np.int64)
    if digits.size == 0:
        return digits
    s = np.sort(digits)
    n = s.size
    if np.array_equal(s, np.arange(1, n + 1)):
        return digits - 1
    if np.array_equal(s, np.arange(n)):
        return digits
    return digits - 1 if one_based else digits


def _ids_as_int(ids: Sequence[Any], path: str) -> npt.NDArray[np.int64]:
    try:
        return np.array([int(u) for u in ids], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise BadFormatError(
            "unit ids are not integers and no original_cluster_id property exists",
            path=path,
            field="unit_ids",
            expected="integer unit ids or properties/original_cluster_id",
        ) from exc


def _read_metrics_csv(path: str) -> pl.DataFrame:
    try:
        parts.record_read(path)  # Polars opens the file itself
        df = pl.read_csv(path, infer_schema_length=None)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise BadFormatError(
            f"metrics CSV cannot be parsed: {exc}", path=path, expected="CSV indexed by cluster id"
        ) from exc
    if df.width == 0:
        raise BadFormatError("metrics CSV has no columns", path=path, expected="cluster_id,…")
    first = df.columns[0]
    if first != "cluster_id":
        if "cluster_id" in df.columns:
            df = df.drop("cluster_id")
        df = df.rename({first: "cluster_id"})
    try:
        df = df.with_columns(pl.col("cluster_id").cast(pl.Int64, strict=True))
    except pl.exceptions.InvalidOperationError as exc:
        raise BadFormatError(
            "metrics CSV index is not an integer cluster id",
            path=path,
            field="cluster_id",
            expected="integer cluster ids in the first column",
        ) from exc
    return df


def _join_metrics(quality: pl.DataFrame | None, template: pl.DataFrame | None) -> pl.DataFrame:
    if quality is None and template is None:
        return pl.DataFrame({"cluster_id": pl.Series([], dtype=pl.Int64)})
    if quality is None:
        assert template is not None
        return template
    if template is None:
        return quality
    dup = [c for c in template.columns if c in quality.columns and c != "cluster_id"]
    return quality.join(template.drop(dup), on="cluster_id", how="left", maintain_order="left")


def _as_int64(a: np.ndarray) -> npt.NDArray[np.int64]:
    if a.dtype == np.int64:
        return a
    if a.dtype == np.uint64 and a.dtype.isnative:
        return a.view(np.int64)  # sample indices never reach 2**63
    return a.astype(np.int64)


def _unit_index(
    spike_clusters: npt.NDArray[np.integer[Any]], cluster_ids: npt.NDArray[np.int64], path: str
) -> npt.NDArray[np.integer[Any]]:
    """Map each spike's cluster id to its position in `cluster_ids` (vectorized)."""
    if spike_clusters.size == 0:
        return np.zeros(0, np.int64)
    c_min, c_max = int(spike_clusters.min()), int(spike_clusters.max())
    if np.array_equal(cluster_ids, np.arange(cluster_ids.size)) and (
        c_min >= 0 and c_max < cluster_ids.size
    ):
        return spike_clusters  # ids are already unit indices: no gather
    lo = int(cluster_ids.min(initial=0))
    hi = int(cluster_ids.max(initial=0))
    if lo >= 0 and hi < 10_000_000 and np.unique(cluster_ids).size == cluster_ids.size:
        # small non-negative ids (Kilosort): an O(n) lookup table instead of a binary search
        lut = np.full(max(hi, c_max) + 1, -1, dtype=np.int32)
        lut[cluster_ids] = np.arange(cluster_ids.size, dtype=np.int32)
        idx = lut[spike_clusters] if c_min >= 0 else np.full(spike_clusters.size, -1, np.int32)
        if (idx < 0).any():
            bad_ids = np.unique(spike_clusters[idx < 0])[:10].tolist()
            raise InconsistentDataError(
                f"spikes belong to clusters absent from the unit list: {bad_ids}",
                path=path,
                field="cluster_id",
                expected="every spike cluster listed in the metrics index",
            )
        return idx
    order = np.argsort(cluster_ids, kind="stable")
    sorted_ids = cluster_ids[order]
    pos = np.searchsorted(sorted_ids, spike_clusters)
    pos_c = np.minimum(pos, sorted_ids.size - 1)
    bad = (pos >= sorted_ids.size) | (sorted_ids[pos_c] != spike_clusters)
    if bad.any():
        missing = np.unique(spike_clusters[bad])[:10].tolist()
        raise InconsistentDataError(
            f"spikes belong to clusters absent from the unit list: {missing}",
            path=path,
            field="cluster_id",
            expected="every spike cluster listed in the metrics index",
        )
    return order[pos_c].astype(np.int64)


def _check_counts(out: SortingOutput) -> SortingOutput:
    if "num_spikes" not in out.metrics.columns or out.metrics.height == 0:
        return out
    expected = out.metrics["num_spikes"].cast(pl.Int64).to_numpy()
    counts = out.spike_counts()
    if expected.shape != counts.shape or not np.array_equal(expected, counts):
        bad: list[int] = (
            np.flatnonzero(expected != counts)[:5].tolist()
            if expected.shape == counts.shape
            else []
        )
        detail = ", ".join(
            f"cluster {int(out.cluster_ids[i])}: {int(counts[i])} spikes vs num_spikes "
            f"{int(expected[i])}"
            for i in bad
        )
        raise InconsistentDataError(
            f"spike counts disagree with the metrics' num_spikes ({detail or 'unit counts differ'})",
            path=out.metrics_path or out.path,
            field="num_spikes",
            expected="num_spikes == number of spikes of each unit",
        )
    return out


def _load_npy(path: str, *, required: bool = True) -> np.ndarray | None:
    if not os.path.isfile(path):
        if required:
            raise MissingFileError(
                f"{os.path.basename(path)} not found", path=path, expected="a .npy array"
            )
        return None
    try:
        return load_npy(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
        raise BadFormatError(
            f"cannot read .npy: {exc}", path=path, expected="a NumPy .npy array"
        ) from exc


def _sample_rate_from_params(folder: str) -> float | None:
    params = os.path.join(folder, "params.py")
    if not os.path.isfile(params):
        return None
    with open(params, encoding="utf-8", errors="replace") as f:
        m = re.search(r"sample_rate\s*=\s*([\d.eE+-]+)", f.read())
    return float(m.group(1)) if m else None


# ----------------------------------------------------------------------------- Kilosort/phy
@timed
def read_phy(path: str, *, name: str | None = None) -> SortingOutput:
    """Return the units and spikes of a Kilosort/phy folder (plus optional
    ``quality_metrics.csv``, ``template_metrics.csv`` and ``templates_average.npy``)."""
    name = name or os.path.basename(path.rstrip("/"))
    times = _load_npy(os.path.join(path, "spike_times.npy"))
    assert times is not None
    clusters = _load_npy(os.path.join(path, "spike_clusters.npy"), required=False)
    if clusters is None:
        clusters = _load_npy(os.path.join(path, "spike_templates.npy"))
    assert clusters is not None
    # memory-mapped views, no copies: uint64 sample indices < 2**63 reinterpret as int64
    samples = _as_int64(times.ravel())
    spike_clusters = np.asarray(clusters).ravel()
    if spike_clusters.dtype.kind not in "iu" or spike_clusters.dtype.itemsize == 8:
        spike_clusters = _as_int64(spike_clusters)
    if samples.size != spike_clusters.size:
        raise BadFormatError(
            f"spike_times.npy has {samples.size} spikes, spike_clusters.npy {spike_clusters.size}",
            path=os.path.join(path, "spike_clusters.npy"),
            expected="one cluster per spike",
        )
    q_path = os.path.join(path, "quality_metrics.csv")
    t_path = os.path.join(path, "template_metrics.csv")
    quality = _read_metrics_csv(q_path) if os.path.isfile(q_path) else None
    template = _read_metrics_csv(t_path) if os.path.isfile(t_path) else None
    metrics = _join_metrics(quality, template)
    if metrics.height:
        cluster_ids = metrics["cluster_id"].to_numpy().astype(np.int64)
    else:
        cluster_ids = np.unique(spike_clusters)
        metrics = pl.DataFrame({"cluster_id": cluster_ids})
    spike_units = _unit_index(spike_clusters, cluster_ids, q_path)
    amps = _load_npy(os.path.join(path, "amplitudes.npy"), required=False)
    amplitudes = None if amps is None else np.asarray(amps, dtype=np.float64).ravel()
    if amplitudes is not None and amplitudes.size != samples.size:
        raise BadFormatError(
            f"amplitudes.npy has {amplitudes.size} values for {samples.size} spikes",
            path=os.path.join(path, "amplitudes.npy"),
            expected="one amplitude per spike",
        )
    chan_map = _load_npy(os.path.join(path, "channel_map.npy"), required=False)
    templates = _phy_templates(path, cluster_ids)
    if chan_map is not None:
        channels = np.asarray(chan_map, dtype=np.int64).ravel()
    else:
        channels = np.arange(templates.shape[2] if templates is not None else 0, dtype=np.int64)
    if templates is not None and templates.shape[2] != channels.size:
        raise BadFormatError(
            f"templates have {templates.shape[2]} channels, channel_map.npy {channels.size}",
            path=os.path.join(path, "channel_map.npy"),
            expected="one channel-map entry per template channel",
        )
    props = {
        c: metrics[c]
        for c in ("default_qc", "decoder_label", "decoder_probability")
        if c in metrics.columns
    }
    out = SortingOutput(
        path=path,
        layout="phy",
        name=name,
        probe_letter=_probe_letter(name),
        shank=_shank(name),
        cluster_ids=cluster_ids,
        spike_samples=samples,
        spike_units=spike_units,
        spike_amplitudes=amplitudes,
        templates=templates,
        channels=channels,
        metrics=metrics.drop(list(props)),
        properties=pl.DataFrame(props) if props else pl.DataFrame(),
        sample_rate=_sample_rate_from_params(path),
        metrics_path=q_path if quality is not None else None,
    )
    return _check_counts(out)


def _phy_templates(path: str, cluster_ids: npt.NDArray[np.int64]) -> np.ndarray | None:
    avg_path = os.path.join(path, "templates_average.npy")
    avg = _load_npy(avg_path, required=False)
    if avg is not None:
        if avg.ndim != 3 or avg.shape[0] != cluster_ids.size:
            raise BadFormatError(
                f"templates_average.npy has shape {avg.shape}",
                path=avg_path,
                expected=f"({cluster_ids.size} units, samples, channels)",
            )
        return np.asarray(avg, dtype=np.float32)
    tpl = _load_npy(os.path.join(path, "templates.npy"), required=False)
    if tpl is None or tpl.ndim != 3 or cluster_ids.max(initial=-1) >= tpl.shape[0]:
        return None
    tpl = np.asarray(tpl, dtype=np.float32)[cluster_ids]
    winv = _load_npy(os.path.join(path, "whitening_mat_inv.npy"), required=False)
    if winv is not None and winv.shape == (tpl.shape[2], tpl.shape[2]):
        tpl = tpl @ np.asarray(winv, dtype=np.float32)
    return tpl


# ------------------------------------------------------------------------ AIND pipeline
@timed
def read_aind_legacy(root: str, name: str, *, one_based: bool | None = None) -> SortingOutput:
    """Return one probe entry of an AIND pipeline result in the legacy folder layout
    (``sorting_precurated|curated/<name>/spikes.npy`` + ``postprocessed/<name>/``)."""
    spikes_dir = next(
        (
            os.path.join(root, d, name)
            for d in _AIND_SPIKE_DIRS
            if os.path.isdir(os.path.join(root, d, name))
        ),
        None,
    )
    if spikes_dir is None:
        raise MissingFileError(
            f"no sorted spikes for {name}",
            path=os.path.join(root, "sorting_precurated", name),
            expected="sorting_precurated/<name>/ or curated/<name>/ with spikes.npy",
        )
    info_path = os.path.join(spikes_dir, "numpysorting_info.json")
    info: dict[str, Any] = {}
    if os.path.isfile(info_path):
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        if int(info.get("num_segments", 1)) != 1:
            raise UnsupportedVersionError(
                f"sorting has {info.get('num_segments')} segments",
                path=info_path,
                field="num_segments",
                expected="1",
            )
    spikes_path = os.path.join(spikes_dir, "spikes.npy")
    spikes = _load_npy(spikes_path)
    assert spikes is not None
    if spikes.dtype.names:
        samples = np.asarray(spikes["sample_index"], dtype=np.int64)
        units = np.asarray(spikes["unit_index"], dtype=np.int64)
    elif spikes.ndim == 2 and spikes.shape[1] >= 2:
        samples = np.asarray(spikes[:, 0], dtype=np.int64)
        units = np.asarray(spikes[:, 1], dtype=np.int64)
    else:
        raise BadFormatError(
            f"spikes.npy has shape {spikes.shape} and no fields",
            path=spikes_path,
            expected="structured (sample_index, unit_index, segment_index) or (n, 3) int64",
        )
    props_dir = os.path.join(spikes_dir, "properties")
    props: dict[str, np.ndarray] = {}
    if os.path.isdir(props_dir):
        for p in ("original_cluster_id", "default_qc", "decoder_label", "decoder_probability"):
            arr = _load_npy(os.path.join(props_dir, f"{p}.npy"), required=False)
            if arr is not None:
                props[p] = np.asarray(arr)
    unit_ids = info.get("unit_ids")
    post = os.path.join(root, "postprocessed", name)
    q_path = os.path.join(post, "quality_metrics", "metrics.csv")
    t_path = os.path.join(post, "template_metrics", "metrics.csv")
    quality = _read_metrics_csv(q_path) if os.path.isfile(q_path) else None
    template = _read_metrics_csv(t_path) if os.path.isfile(t_path) else None
    metrics = _join_metrics(quality, template)
    if "original_cluster_id" in props:
        cluster_ids = props.pop("original_cluster_id").astype(np.int64)
    elif metrics.height:
        cluster_ids = metrics["cluster_id"].to_numpy().astype(np.int64)
    elif unit_ids is not None:
        cluster_ids = _ids_as_int(unit_ids, info_path)
    else:
        cluster_ids = np.arange(int(units.max(initial=-1)) + 1, dtype=np.int64)
    if metrics.height and not np.array_equal(
        metrics["cluster_id"].to_numpy().astype(np.int64), cluster_ids
    ):
        raise InconsistentDataError(
            "metrics index differs from the sorting's original_cluster_id order",
            path=q_path,
            field="cluster_id",
            expected="metrics rows in unit order, indexed by original_cluster_id",
        )
    if not metrics.height:
        metrics = pl.DataFrame({"cluster_id": cluster_ids})
    amps = _load_npy(
        os.path.join(post, "spike_amplitudes", "amplitude_segment_0.npy"), required=False
    )
    tpl = _load_npy(os.path.join(post, "templates_average.npy"), required=False)
    channels = np.arange(tpl.shape[2] if tpl is not None else 0, dtype=np.int64)
    rec_info = os.path.join(post, "recording_info", "recording_attributes.json")
    if os.path.isfile(rec_info):
        with open(rec_info, encoding="utf-8") as f:
            ids = json.load(f).get("channel_ids")
        if ids is not None:
            channels = channel_indices(ids, one_based=one_based)
    out = SortingOutput(
        path=spikes_dir,
        layout="aind_legacy",
        name=name,
        probe_letter=_probe_letter(name),
        shank=_shank(name),
        cluster_ids=cluster_ids,
        spike_samples=samples,
        spike_units=units,
        spike_amplitudes=None if amps is None else np.asarray(amps, dtype=np.float64),
        templates=None if tpl is None else np.asarray(tpl, dtype=np.float32),
        channels=channels,
        metrics=metrics,
        properties=pl.DataFrame({k: v for k, v in props.items()}),
        sample_rate=float(info["sampling_frequency"]) if "sampling_frequency" in info else None,
        metrics_path=q_path if quality is not None else None,
    )
    return _check_counts(out)


@timed
def read_aind_analyzer(path: str, *, name: str | None = None) -> SortingOutput:
    """Return one probe's SortingAnalyzer (``postprocessed/<name>.zarr`` or a binary folder),
    read with ``spikeinterface.load_sorting_analyzer``."""
    name = name or os.path.basename(path.rstrip("/")).removesuffix(".zarr")
    try:
        import spikeinterface.core as si
    except ImportError as exc:  # pragma: no cover - spikeinterface is a test/extra dependency
        raise UnsupportedVersionError(
            "reading a SortingAnalyzer needs spikeinterface",
            path=path,
            expected="pip install spikeinterface",
        ) from exc
    if not os.path.exists(path):
        raise MissingFileError("SortingAnalyzer not found", path=path, expected="<name>.zarr")
    try:
        analyzer = si.load_sorting_analyzer(path, load_extensions=False)
    except Exception as exc:
        raise BadFormatError(
            f"cannot open SortingAnalyzer: {exc}",
            path=path,
            expected="a spikeinterface SortingAnalyzer (zarr or binary folder)",
        ) from exc
    sorting = analyzer.sorting
    if sorting.get_num_segments() != 1:
        raise UnsupportedVersionError(
            f"sorting has {sorting.get_num_segments()} segments",
            path=path,
            field="sorting/num_segments",
            expected="1",
        )
    vec = sorting.to_spike_vector()
    samples = np.asarray(vec["sample_index"], dtype=np.int64)
    units = np.asarray(vec["unit_index"], dtype=np.int64)
    keys = set(sorting.get_property_keys())
    props: dict[str, np.ndarray] = {}
    for p in ("default_qc", "decoder_label", "decoder_probability"):
        if p in keys:
            props[p] = np.asarray(sorting.get_property(p))
    if "original_cluster_id" in keys:
        cluster_ids = np.asarray(sorting.get_property("original_cluster_id"), dtype=np.int64)
    else:
        cluster_ids = _ids_as_int(list(sorting.unit_ids), path)

    def ext_frame(ext_name: str) -> pl.DataFrame | None:
        if not analyzer.has_extension(ext_name):
            return None
        df = analyzer.get_extension(ext_name).get_data()
        frame = pl.from_pandas(df.reset_index(drop=True))
        return frame.with_columns(pl.Series("cluster_id", cluster_ids)).select(
            "cluster_id", pl.exclude("cluster_id")
        )

    metrics = _join_metrics(ext_frame("quality_metrics"), ext_frame("template_metrics"))
    if not metrics.height:
        metrics = pl.DataFrame({"cluster_id": cluster_ids})
    amps = None
    if analyzer.has_extension("spike_amplitudes"):
        amps = np.asarray(analyzer.get_extension("spike_amplitudes").get_data(), np.float64)
    tpl = None
    if analyzer.has_extension("templates"):
        tpl = np.asarray(
            analyzer.get_extension("templates").get_data(operator="average"), dtype=np.float32
        )
    out = SortingOutput(
        path=path,
        layout="aind_analyzer",
        name=name,
        probe_letter=_probe_letter(name),
        shank=_shank(name),
        cluster_ids=cluster_ids,
        spike_samples=samples,
        spike_units=units,
        spike_amplitudes=amps,
        templates=tpl,
        channels=channel_indices(list(analyzer.channel_ids), one_based=False),
        metrics=metrics,
        properties=pl.DataFrame(props),
        sample_rate=float(analyzer.sampling_frequency),
        metrics_path=path,
    )
    return _check_counts(out)


# ---------------------------------------------------------------------------- discovery
def _is_aind_root(path: str) -> bool:
    return any(os.path.isdir(os.path.join(path, d)) for d in (*_AIND_SPIKE_DIRS, "postprocessed"))


#: how deep below a sorting folder or asset sorting output is looked for
MAX_SORTING_DEPTH = 3


def _is_phy(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "spike_times.npy")) and os.path.isfile(
        os.path.join(path, "params.py")
    )


def _aind_entries(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    post = os.path.join(path, "postprocessed")
    if os.path.isdir(post):
        for e in sorted(os.listdir(post)):
            if e.endswith(".zarr"):
                out[e.removesuffix(".zarr")] = os.path.join(post, e)
    for d in _AIND_SPIKE_DIRS:
        folder = os.path.join(path, d)
        if os.path.isdir(folder):
            for e in sorted(os.listdir(folder)):
                if "sorting" not in e and e not in out:
                    out[e] = path
            break
    return out


@timed
def find_sortings(path: str, *, max_depth: int = MAX_SORTING_DEPTH) -> dict[str, str]:
    """Return entry name -> location of every per-probe sorting at depth ≤ `max_depth` below a
    sorting folder or sorting asset.

    A folder holding ``spike_times.npy`` and ``params.py`` is a phy folder (entry = its name). A
    folder with ``postprocessed/``, ``curated/`` or ``sorting_precurated/`` is an AIND result root:
    its entries are those of ``sorting_precurated/`` (or ``curated/``) — entries whose name
    contains "sorting" are ignored — and analyzer zarrs of ``postprocessed/``. Neither is searched
    further down; other folders are, breadth-first, and the shallowest entry of a name wins.
    """
    if not os.path.isdir(path):
        raise MissingFileError("sorting folder not found", path=path, expected="a folder")
    out: dict[str, str] = {}
    level = [path.rstrip("/") or "/"]
    for depth in range(max_depth + 1):
        below: list[str] = []
        for folder in level:
            if _is_aind_root(folder):
                for entry, location in _aind_entries(folder).items():
                    out.setdefault(entry, location)
            elif _is_phy(folder):
                out.setdefault(os.path.basename(folder), folder)
            elif depth < max_depth:
                below.extend(
                    sub
                    for e in sorted(os.listdir(folder))
                    if not e.endswith(".zarr") and os.path.isdir(sub := os.path.join(folder, e))
                )
        level = below
    return out


def read_sorting(path: str, *, name: str | None = None) -> SortingOutput:
    """Return the SortingOutput at `path`: a phy folder, an analyzer ``.zarr``, or an AIND result
    root plus the entry `name`."""
    if path.rstrip("/").endswith(".zarr"):
        return read_aind_analyzer(path, name=name)
    if os.path.isfile(os.path.join(path, "spike_times.npy")):
        return read_phy(path, name=name)
    if _is_aind_root(path) and name is not None:
        zarr_path = os.path.join(path, "postprocessed", f"{name}.zarr")
        if os.path.exists(zarr_path):
            return read_aind_analyzer(zarr_path, name=name)
        return read_aind_legacy(path, name)
    raise MissingFileError(
        "no sorting output found",
        path=path,
        expected="a phy folder (spike_times.npy), <name>.zarr, or an AIND result root + name",
    )


def sorting_key(entry: str) -> str | None:
    """Return the probe key of a sorting entry: ``<letter>`` or ``<letter>-<shank>`` (None if the
    entry names no probe)."""
    letter = _probe_letter(entry)
    if letter is None:
        return None
    shank = _shank(entry)
    return letter if shank is None else f"{letter}-{shank}"


def read_sortings(path: str) -> tuple[dict[str, SortingOutput], dict[str, NpcFramesError]]:
    """Return (probe letter -> SortingOutput, entry -> error) for every entry under `path`.

    Entries that fail to read are reported, not raised, so the other probes still convert.
    Several entries for one probe (multi-shank ``_group<k>``) are keyed ``<letter>-<shank>``.
    """
    ok: dict[str, SortingOutput] = {}
    failed: dict[str, NpcFramesError] = {}
    for entry, location in find_sortings(path).items():
        key = sorting_key(entry)
        if key is None:
            continue
        try:
            ok[key] = read_sorting(location, name=entry)
        except NpcFramesError as exc:
            failed[key] = exc
    return ok, failed
