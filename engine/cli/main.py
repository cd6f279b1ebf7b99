"""The `mlic` command line: global options, command dispatch and error reporting.

`mlic [--project DIR | --db-url URL] COMMAND ...`. A user error prints one line on stderr and
exits with status 2; nothing is half-written because every store write is one transaction.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from engine import __version__
from engine.cli import detect, evaluate, project, tag, train
from engine.cli.failures import failure_message
from engine.cli.launch import report_error
from engine.errors import UserError

log = logging.getLogger("mlic")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlic", description="Curate image-level multi-label tags with model assistance.")
    parser.add_argument("--version", action="version", version=f"mlic {__version__}")
    parser.add_argument("--project", metavar="DIR",
                        help="project folder (default: the default project in your data "
                             "directory); with --db-url, the folder of its models and caches")
    parser.add_argument("--db-url", metavar="URL",
                        help="SQLAlchemy database URL instead of the project's SQLite file "
                             "(models and caches: --project, else a folder of its own)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for commands in (project, evaluate, tag, train, detect):
        commands.register(subparsers)
    return parser


def _tolerant_streams() -> None:
    """File names with bytes that are not UTF-8 (kept as surrogates) print escaped, never crash."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # a command relaunching itself
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        print("mlic: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a full disk, a damaged database: one line; a bug keeps its traceback
        message = failure_message(exc)
        if message is None:
            raise
        log.debug("failure", exc_info=True)
        _error(message)
        return 2


def _error(message: str) -> None:
    """The one `mlic: error:` line (a process of a job leaves it to the launcher to print)."""
    if not report_error(message):
        print(f"mlic: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
