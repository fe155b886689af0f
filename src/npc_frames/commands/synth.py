"""``npc-frames synth``: write synthetic raw sessions (and their ground truth) to a folder."""

from __future__ import annotations

import argparse
import datetime
from typing import Any


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def register(subparsers: Any) -> None:
    """Add the ``synth`` subcommand to `subparsers`."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "synth",
        help="write synthetic raw sessions with known ground truth",
        description=(
            "Write realistic synthetic raw sessions (sync file, stim files, MVR videos, Open Ephys "
            "recording, sorting output, metadata) in the AIND upload layout, each next to a "
            "'.truth' folder holding what the files encode. Equal seeds give identical sessions."
        ),
    )
    p.add_argument("out", metavar="OUT", help="folder to write the sessions into (created)")
    p.add_argument(
        "--sessions",
        type=int,
        default=1,
        help="number of sessions; session k uses seed S+k and the date D+k days (default: 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the first session (default: 0)")
    p.add_argument(
        "--population",
        type=int,
        default=None,
        metavar="N",
        help=(
            "write N sessions shaped like a lab's tracked sessions instead (ephys with a sibling "
            "sorted asset, a surface-channel recording, box training, habituation, two sessions "
            "on one day), seeded by --seed; the truth goes to OUT/population.truth/"
        ),
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="length of the DynamicRouting1 task in minutes (default: 2.0; 1.0 with --population)",
    )
    p.add_argument(
        "--probes",
        type=int,
        default=None,
        help=(
            "Neuropixels probes A… to record, 0–6 (default: 1); with --population, of each ephys "
            "session, 1-5 (default: 2; a session with a skipped probe records one more)"
        ),
    )
    p.add_argument(
        "--units-per-probe",
        type=int,
        default=None,
        help="sorted units per probe (default: 8, or 0 with --probes 0; 4 with --population)",
    )
    p.add_argument(
        "--date",
        type=_date,
        default=datetime.date(2023, 8, 31),
        help="session date YYYY-MM-DD of the first session (default: 2023-08-31)",
    )
    p.add_argument(
        "--opto",
        action="store_true",
        help="opto session: OptoTagging script, opto sync line and an opsin genotype",
    )
    p.add_argument("--no-video", action="store_true", help="do not write MVR videos")
    p.add_argument(
        "--no-ephys", action="store_true", help="do not write the Open Ephys recording or sorting"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``synth``: write the sessions, print where each went; return 0."""
    from npc_frames.errors import ParameterError
    from npc_frames.synth import make_session

    if args.population is not None:
        from npc_frames.synth.population import make_population

        size = {
            k: v
            for k, v in (
                ("minutes", args.minutes),
                ("probes", args.probes),
                ("units_per_probe", args.units_per_probe),
            )
            if v is not None
        }
        population = make_population(args.out, args.population, seed=args.seed, **size)
        for m in population.members:
            print(f"{m.session_id}\t{m.raw_path}\t({m.kind})")
        return 0
    if args.sessions < 1:
        raise ParameterError(
            f"--sessions {args.sessions}", field="--sessions", expected="at least 1 session"
        )
    minutes = 2.0 if args.minutes is None else args.minutes
    n_probes = 1 if args.probes is None else args.probes
    units = args.units_per_probe
    if units is None:
        units = 8 if n_probes > 0 else 0
    for k in range(args.sessions):
        truth = make_session(
            args.out,
            seed=args.seed + k,
            minutes=minutes,
            n_probes=n_probes,
            units_per_probe=units,
            date=args.date + datetime.timedelta(days=k),
            opto=args.opto,
            video=not args.no_video,
            ephys=not args.no_ephys,
        )
        print(f"{truth.session_id}\t{truth.raw_path}\t(truth: {truth.truth_dir})")
    return 0
