"""A conversion imports no SciPy: its ~0.7-1.3 s of import CPU would be paid by every convert
worker, or serially by the fork server before the first worker forks (issue 11 benchmark)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from npc_frames.synth import make_session


def test_fork_server_preloads_no_scipy() -> None:
    from npc_frames.cache import pool

    assert not [m for m in pool.preload_modules() if m.split(".")[0] == "scipy"]


@pytest.mark.parametrize("opto", [False, True])
def test_converting_a_session_imports_no_scipy(tmp_path: Path, opto: bool) -> None:
    # a session with task, RF mapping, NI-DAQ sounds (rebuilt AM noise), running speed, video,
    # sorted units (activity_drift); opto adds the laser waveforms
    truth = make_session(
        tmp_path / "raw", seed=3, minutes=1.0, n_probes=1, units_per_probe=4, opto=opto
    )
    script = textwrap.dedent(
        f"""
        import json, sys
        import npc_frames as nf
        out = nf.convert([{str(truth.raw_path)!r}], {str(tmp_path / "cache")!r}, workers=1,
                         progress=False)
        bad = out.filter(out["status"].is_in(["failed", "partial"]))
        print(json.dumps({{
            "scipy": sorted(m for m in sys.modules if m.split(".")[0] == "scipy"),
            "ok": int((out["status"] == "ok").sum()),
            "bad": bad.select("component", "error").rows(),
        }}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["bad"] == []
    assert res["ok"] > 20  # trials, running_speed, units, ... were really converted
    assert res["scipy"] == []
