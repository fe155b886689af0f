"""``npc-frames qc``: a static HTML QC report (PNG figures, qc.json) of one cached session."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``qc`` subcommand to `subparsers`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "qc",
        help="write the QC report of one session",
        description=(
            "Write <out>/<session_id>/index.html with PNG figures and qc.json (pass/fail per "
            "check with thresholds) from the session's cached components."
        ),
    )
    p.add_argument("session_id", help="session id, e.g. 626791_2022-08-15")
    p.add_argument("--cache", help="cache root (default: $NPC_FRAMES_CACHE or ./npc_frames_cache)")
    p.add_argument("-o", "--out", default="qc", help="output folder (default: ./qc)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``qc``; return 0 when every check passed or is not applicable, else 1."""
    from npc_frames.qc import qc_report

    index = qc_report(args.session_id, args.cache, args.out)
    summary = json.loads((index.parent / "qc.json").read_text())
    failed = [c["name"] for c in summary["checks"] if c["passed"] is False]
    print(index)
    if failed:
        print("failed checks: " + ", ".join(failed))
    return 1 if failed else 0
