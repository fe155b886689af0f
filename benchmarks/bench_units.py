"""Benchmark: the ``units`` component of a full-scale session (6 probes, ~60 M spikes).

Target: < 20 s and < 2 GB peak RSS on 2 cores. The session is written once with numpy (a sync file
with barcodes, two Open Ephys record nodes with clipped continuous data and barcode TTLs, one
Kilosort/phy folder per probe with metrics and sparse average templates) into ``--data`` (reused
when present); the measurement runs in a fresh subprocess pinned to 2 cores so that neither the
generation nor earlier imports count towards its time or peak memory.

It then times what ``convert`` does next with the same sorting read: the ``spike_amplitudes``
component (handed on by ``units``: no second decode) and the encoding of both files with the
cache's layouts, against the encoding of one units file holding the amplitudes too (the layout
before ``spike_amplitudes`` was a component), so that the CPU cost of the split is measured.

    python benchmarks/bench_units.py                     # full scale
    python benchmarks/bench_units.py --spikes 5e6        # quicker
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

SESSION = "ecephys_668755_2023-08-31_12-33-31"
AP_RATE = 30_000.0
N_CH = 384
TEMPLATE_SAMPLES = 90


def _write_sync(root: Path, barcodes: object, total_s: float) -> None:
    from npc_frames.synth.sync import write_sync_file

    (root / "behavior").mkdir(parents=True, exist_ok=True)
    write_sync_file(
        root / "behavior" / "20230831T123331.h5",
        lines={0: (barcodes.rising, barcodes.falling)},  # type: ignore[attr-defined]
        start_time=datetime.datetime(2023, 8, 31, 12, 33, 31),
        total_samples=int(total_s * 100_000),
    )


def _write_settings(path: Path, letters: str, serials: list[int]) -> None:
    root = ET.Element("SETTINGS")
    info = ET.SubElement(root, "INFO")
    ET.SubElement(info, "VERSION").text = "0.6.6"
    ET.SubElement(info, "MACHINE", name="W10DT05516")
    editor = ET.SubElement(
        ET.SubElement(ET.SubElement(root, "SIGNALCHAIN"), "PROCESSOR", name="Neuropix-PXI"),
        "EDITOR",
    )
    k = np.arange(N_CH)
    x = np.array([27, 59, 11, 43])[k % 4]
    y = 20 * (k // 2)
    for i, _ in enumerate(letters):
        e = ET.SubElement(
            editor,
            "NP_PROBE",
            slot=str(2 + i // 3),
            port=str(1 + i % 3),
            probe_serial_number=str(serials[i]),
            probe_name="Neuropixels 1.0",
        )
        ET.SubElement(e, "ELECTRODE_XPOS", {f"CH{c}": str(x[c]) for c in k})
        ET.SubElement(e, "ELECTRODE_YPOS", {f"CH{c}": str(y[c]) for c in k})
    ET.ElementTree(root).write(path)


def generate(data: Path, *, probes: int, units: int, spikes: float, minutes: float) -> Path:
    """Write the benchmark session under `data` and return its root."""
    from npc_frames.synth.barcodes import make_barcodes

    root = data / SESSION
    if (root / "done").exists():
        return root
    rng = np.random.default_rng(0)
    total_s = minutes * 60 + 60
    barcodes = make_barcodes(rng, first_start_s=5.0, stop_s=total_s - 5)
    _write_sync(root, barcodes, total_s)
    letters = "ABCDEF"[:probes]
    serials = [18005100000 + i for i in range(probes)]
    n_rec = int(minutes * 60 * AP_RATE)
    per_probe = int(spikes / probes)
    for node_i, node in enumerate(("Record Node 102", "Record Node 103")):
        node_letters = letters[node_i * 3 : node_i * 3 + 3]
        rec = root / "ecephys" / "ecephys_clipped" / node / "experiment1" / "recording1"
        rec.mkdir(parents=True, exist_ok=True)
        _write_settings(
            root / "ecephys" / "ecephys_clipped" / node / "settings.xml", letters, serials
        )
        continuous = []
        for letter in node_letters:
            folder = f"Neuropix-PXI-100.Probe{letter}-AP"
            start = 20.0 + rng.uniform(0, 0.01)
            rate = AP_RATE * (1 + rng.uniform(-5e-6, 5e-6))
            first = 210_000_000 + int(rng.integers(0, 1000))
            cont = rec / "continuous" / folder
            cont.mkdir(parents=True, exist_ok=True)
            clip = int(0.1 * AP_RATE)
            np.zeros((clip, N_CH), np.int16).tofile(cont / "continuous.dat")
            np.save(cont / "sample_numbers.npy", first + np.arange(clip, dtype=np.int64))
            edges = np.concatenate([barcodes.rising, barcodes.falling])
            states = np.concatenate(
                [np.ones(barcodes.rising.size), -np.ones(barcodes.falling.size)]
            ).astype(np.int16)
            samples = np.round((edges - start) * rate).astype(np.int64)
            keep = (samples > 0) & (samples < n_rec)
            order = np.argsort(samples[keep], kind="stable")
            ttl = rec / "events" / folder / "TTL"
            ttl.mkdir(parents=True, exist_ok=True)
            np.save(ttl / "sample_numbers.npy", samples[keep][order] + first)
            np.save(ttl / "states.npy", states[keep][order])
            continuous.append(
                {"folder_name": folder + "/", "sample_rate": AP_RATE, "num_channels": N_CH}
            )
            _write_phy(
                root / "sorting" / folder, rng, units=units, n_spikes=per_probe, n_samples=n_rec
            )
        (rec / "structure.oebin").write_text(json.dumps({"continuous": continuous, "events": []}))
    (root / "done").write_text("ok")
    return root


def _write_phy(
    folder: Path, rng: np.random.Generator, *, units: int, n_spikes: int, n_samples: int
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rates = rng.lognormal(0, 1, units)
    clusters = rng.choice(units, n_spikes, p=rates / rates.sum()).astype(np.int32)
    samples = np.sort(rng.integers(0, n_samples, n_spikes)).astype(np.uint64)
    np.save(folder / "spike_times.npy", samples)
    np.save(folder / "spike_clusters.npy", clusters)
    np.save(folder / "amplitudes.npy", rng.uniform(10, 40, n_spikes))
    np.save(folder / "channel_map.npy", np.arange(N_CH, dtype=np.int32))
    counts = np.bincount(clusters, minlength=units)
    import polars as pl

    pl.DataFrame(
        {
            "cluster_id": np.arange(units),
            "num_spikes": counts,
            "isi_violations_ratio": rng.uniform(0, 1, units),
            "amplitude_cutoff": rng.uniform(0, 0.2, units),
            "presence_ratio": rng.uniform(0.5, 1, units),
            "firing_rate": counts / (n_samples / AP_RATE),
        }
    ).write_csv(folder / "quality_metrics.csv")
    tpl = np.zeros((units, TEMPLATE_SAMPLES, N_CH), np.float32)
    peak = rng.integers(10, N_CH - 10, units)
    wave = np.sin(np.linspace(0, 2 * np.pi, TEMPLATE_SAMPLES, dtype=np.float32))
    for offset in range(-8, 9):  # 17 channels around each unit's peak
        tpl[np.arange(units), :, peak + offset] = wave * (50.0 / (1 + abs(offset)))
    np.save(folder / "templates_average.npy", tpl)
    (folder / "params.py").write_text("sample_rate = 30000.0\n")


def measure(root: Path) -> None:
    """Time the units component of `root` and print time and peak RSS (run in a subprocess)."""
    import warnings

    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:2]
        os.sched_setaffinity(0, cpus)
    import polars as pl  # noqa: F401  (import cost is not the component's)
    import pyarrow  # noqa: F401

    from npc_frames.components._units import units_with_report
    from npc_frames.paths import RawSession

    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    raw = RawSession.from_path(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df, report = units_with_report(raw)
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    n_spikes = int(df["num_spikes"].sum())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"units: {df.height} units, {n_spikes / 1e6:.1f} M spikes, probes {report.converted}, "
        f"{elapsed:.2f} s wall ({cpu:.2f} s CPU; wall exceeds CPU when the machine is shared), "
        f"peak RSS {peak_mb:.0f} MB (target < 20 s, < 2048 MB, 2 cores)"
    )
    _measure_split(raw, df)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _measure_split(raw: object, units: object) -> None:
    """Print the CPU of spike_amplitudes after units, and of encoding units + spike_amplitudes
    against one units file that holds the amplitudes too."""
    import dataclasses

    import polars as pl

    from npc_frames.cache_layout import LAYOUTS, to_parquet_bytes
    from npc_frames.components._units import spike_amplitudes

    assert isinstance(units, pl.DataFrame)
    t0, c0 = time.perf_counter(), _cpu()
    amps = spike_amplitudes(raw)  # type: ignore[arg-type]
    took, cpu = time.perf_counter() - t0, _cpu() - c0
    print(
        f"spike_amplitudes after units: {amps.height} units, {took:.2f} s wall, {cpu:.2f} s CPU "
        "(the amplitudes units read, handed on: no second decode of the sortings)"
    )
    t0, c0 = time.perf_counter(), _cpu()
    n_new = len(to_parquet_bytes(units, component="units"))
    n_new += len(to_parquet_bytes(amps, component="spike_amplitudes"))
    new_wall, new_cpu = time.perf_counter() - t0, _cpu() - c0
    both = units.join(
        amps.select("unit_id", "spike_amplitudes"), on="unit_id", how="left", maintain_order="left"
    )
    LAYOUTS["_units_with_amplitudes"] = dataclasses.replace(
        LAYOUTS["units"],
        packed=("spike_times", "spike_amplitudes"),
        column_compression={"spike_times": "none", "spike_amplitudes": "none"},
    )
    t0, c0 = time.perf_counter(), _cpu()
    n_old = len(to_parquet_bytes(both, component="_units_with_amplitudes", schema=None))
    old_wall, old_cpu = time.perf_counter() - t0, _cpu() - c0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"encode units + spike_amplitudes: {new_wall:.2f} s wall, {new_cpu:.2f} s CPU, "
        f"{n_new / 1e6:.0f} MB; one units file with the amplitudes: {old_wall:.2f} s wall, "
        f"{old_cpu:.2f} s CPU, {n_old / 1e6:.0f} MB; peak RSS {peak_mb:.0f} MB"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "npc_bench_units"
    )
    p.add_argument("--probes", type=int, default=6)
    p.add_argument("--units", type=int, default=600, help="units per probe")
    p.add_argument("--spikes", type=float, default=60e6, help="total spikes")
    p.add_argument("--minutes", type=float, default=90.0)
    p.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        measure(args.measure)
        return
    data = args.data / f"p{args.probes}_u{args.units}_s{args.spikes:.0f}_m{args.minutes:g}"
    t0 = time.perf_counter()
    root = generate(
        data, probes=args.probes, units=args.units, spikes=args.spikes, minutes=args.minutes
    )
    print(f"session ready in {time.perf_counter() - t0:.1f} s: {root}")
    env = {**os.environ, "POLARS_MAX_THREADS": "2", "OMP_NUM_THREADS": "2"}
    subprocess.run([sys.executable, __file__, "--measure", str(root)], check=True, env=env)


if __name__ == "__main__":
    main()
