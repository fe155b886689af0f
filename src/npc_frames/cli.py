"""The ``npc-frames`` command: each subcommand lives in ``npc_frames.commands.<name>``.

Exit status: 0 on success, 1 when the command failed (bad input data, a failed component, an
unreadable cache), 2 on a usage error (unknown option, impossible parameter, unknown column).
Every error is one line on stderr, ``npc-frames: error: <ErrorType>: <message>``; ``--debug``
adds the traceback. A closed output pipe (``npc-frames info | head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

logger = logging.getLogger(__name__)

#: subcommands in help order; a module that is absent (optional extra missing) is skipped.
SUBCOMMANDS = ("demo", "synth", "convert", "sql", "describe", "info", "nwb", "plot", "qc")

#: exit status of a failure (bad data, failed component) and of a usage error
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: exit status after a closed output pipe: 128 + SIGPIPE, what a shell reports for other tools
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line (and exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            EXIT_USAGE,
            f"npc-frames: error: usage: {message} (see `{self.prog} --help`)\n",
        )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``npc-frames`` command with every subcommand."""
    parser = _Parser(
        prog="npc-frames",
        description=(
            "Turn Mindscope Neuropixels Dynamic Routing sessions into Polars frames, keep them in a "
            "partitioned Parquet cache, query across sessions with DuckDB, and export NWB."
        ),
        epilog="exit status: 0 success, 1 failure, 2 usage error",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an error (default: one line)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"npc_frames.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("npc_frames.commands"):
                continue
            raise
        module.register(sub)
    _add_debug(parser, top=True)
    return parser


def _add_debug(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """Accept ``--debug`` anywhere on the command line: on every (nested) subcommand too."""
    if not top:
        # SUPPRESS: a subcommand without the flag leaves the top-level value alone
        parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_debug(child)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or repr(exc)
    return f"npc-frames: error: {type(exc).__name__}: {text}"


def _quiet_broken_pipe() -> int:
    # the reader went away: point stdout at /dev/null so the interpreter's final flush of
    # the buffered output cannot raise again at exit
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured in tests)
        pass
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Return the exit status of running the ``npc-frames`` command with `argv`."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from npc_frames.errors import ParameterError

    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        print("npc-frames: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(_one_line(exc), file=sys.stderr)
        # a ParameterError is a usage error; any other error (typed NpcFramesError or not) is a
        # failure of the command
        return EXIT_USAGE if isinstance(exc, ParameterError) else EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
