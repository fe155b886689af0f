"""``npc-frames plot``: session summary and unit raster/PSTH figures as PNG."""

from __future__ import annotations

import argparse

import polars as pl

from npc_frames.commands._common import existing_cache


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``plot`` subcommand and its figure kinds to `sub`."""
    p = sub.add_parser("plot", help="draw figures from a cache as PNG files")
    kinds = p.add_subparsers(dest="figure", metavar="FIGURE", required=True)
    s = kinds.add_parser(
        "session-summary",
        help="per-block hit/false-alarm rates and d′, lick raster, running speed, rewards",
    )
    s.add_argument("session_id", help="session id, e.g. 668755_2023-08-31")
    s.add_argument(
        "--cache",
        default=None,
        help="cache folder or URL (default $NPC_FRAMES_CACHE or ./npc_frames_cache)",
    )
    s.add_argument("-o", "--output", required=True, help="PNG file to write")
    s.set_defaults(func=run)
    r = kinds.add_parser("raster", help="one unit's spike raster and PSTH around a trial event")
    r.add_argument("unit_id", help="unit id, e.g. 668755_2023-08-31_A-12")
    r.add_argument("--cache", default=None, help="cache folder or URL")
    r.add_argument(
        "--event",
        default="stim_start_time",
        help="trials column to align to (default stim_start_time)",
    )
    r.add_argument(
        "--start",
        type=float,
        default=-0.5,
        help="window start relative to the event, s (default -0.5)",
    )
    r.add_argument(
        "--stop", type=float, default=1.0, help="window stop relative to the event, s (default 1.0)"
    )
    r.add_argument("--bin-size", type=float, default=0.025, help="PSTH bin, s (default 0.025)")
    r.add_argument(
        "--by",
        default="stim_name",
        help="trials column(s), comma-separated, that group the raster and PSTH "
        "(default stim_name; '' for no grouping)",
    )
    r.add_argument("-o", "--output", required=True, help="PNG file to write")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Return 0 after writing the requested figure."""
    from npc_frames import cache, plot

    root = existing_cache(args.cache)
    if args.figure == "session-summary":
        fig = plot.session_summary(args.session_id, cache=root)
    else:
        session = args.unit_id.rsplit("_", 1)[0]
        units = cache.scan("units", cache=root).filter(pl.col("session_id") == session)
        trials = cache.scan("trials", cache=root).filter(pl.col("session_id") == session)
        fig = plot.raster_psth(
            units,
            trials,
            args.unit_id,
            event=args.event,
            start=args.start,
            stop=args.stop,
            bin_size=args.bin_size,
            by=[c.strip() for c in args.by.split(",") if c.strip()] if args.by else None,
        )
    print(plot.save(fig, args.output))
    return 0
