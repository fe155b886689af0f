"""``npc-frames nwb``: write one cached session as an NWB (HDF5) file."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from npc_frames.commands._common import CACHE_HELP, existing_cache


def register(subparsers: Any) -> None:
    """Add the ``nwb`` subcommand to `subparsers`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "nwb",
        help="export one cached session as NWB",
        description=(
            "Assemble the NWB file of one session from its cached component frames and write it "
            "atomically (no half-written file on failure)."
        ),
    )
    p.add_argument("session_id", metavar="SESSION_ID", help="e.g. 668755_2023-08-31")
    p.add_argument("--cache", help=CACHE_HELP)
    p.add_argument(
        "-o", "--output", metavar="FILE.nwb", help="output file (default: ./<SESSION_ID>.nwb)"
    )
    p.add_argument(
        "--include-raw",
        action="store_true",
        help="also write raw AP/LFP ElectricalSeries streamed from the raw session",
    )
    p.add_argument(
        "--raw", help="raw session folder or URL for --include-raw/--stimulus (default: catalog)"
    )
    p.add_argument(
        "--stimulus",
        action="store_true",
        help="also write grating/sound templates and opto stimulus sites from the stim files",
    )
    p.add_argument(
        "--derived",
        action="store_true",
        help="compute unit_responses, RF maps and opto_tagging if missing (written to /analysis)",
    )
    p.add_argument(
        "--compression", choices=("gzip", "lzf"), default=None, help="compress large datasets"
    )
    p.add_argument(
        "--component",
        action="append",
        dest="components",
        metavar="NAME",
        help="only this component (repeatable; default: all)",
    )
    p.add_argument("--validate", action="store_true", help="validate the written file with pynwb")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``nwb``; return 0 on success, 1 if validation found errors."""
    import warnings

    from npc_frames.nwb import PartialSessionWarning, to_nwb, validate_nwb, write_nwb

    out = args.output or f"{args.session_id}.nwb"
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PartialSessionWarning)
        nwb = to_nwb(
            args.session_id,
            cache=existing_cache(args.cache),
            include_raw=args.include_raw,
            components=args.components,
            raw=args.raw,
            stimulus=args.stimulus,
            derived=args.derived,
        )
    for w in caught:
        if issubclass(w.category, PartialSessionWarning):  # one line, like errors
            print(f"npc-frames: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    path = write_nwb(nwb, out, compression=args.compression)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    if args.validate:
        errors = validate_nwb(path)
        if errors:
            print("\n".join(errors), file=sys.stderr)
            return 1
        print("pynwb validation: ok")
    return 0
