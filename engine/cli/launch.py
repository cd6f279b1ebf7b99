"""`--nproc N` (with `--nnodes`, `--node-rank`, `--rdzv-endpoint`): a command that relaunches
itself under `torch.distributed.run` as N processes per machine, the pattern Ultralytics uses for
multi-GPU training (the launcher runs in this process, so its errors become one `mlic: error:`
line). The processes run the same command line without the launch options; `engine.distributed`
tells each one its rank. On one machine the rendezvous is local (`--standalone`); across machines every machine
runs the same command with its own `--node-rank` and the address of machine 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from engine import distributed
from engine.errors import UserError

LAUNCH_OPTIONS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint")


def add_launch_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("several processes (torch.distributed)")
    group.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="processes on this machine, one per GPU (on the CPU: gloo); default 1")
    group.add_argument("--nnodes", type=int, default=1, metavar="N",
                       help="machines taking part (default 1)")
    group.add_argument("--node-rank", type=int, default=0, metavar="R",
                       help="this machine's rank, 0 to nnodes - 1 (default 0)")
    group.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                       help="address of machine 0 for the rendezvous (needed with --nnodes > 1)")


def wants_launch(args: argparse.Namespace) -> bool:
    """Whether this command should start the processes (and is not one of them already);
    UserError on impossible options."""
    if args.nproc < 1 or args.nnodes < 1:
        raise UserError("--nproc and --nnodes must be at least 1.")
    if not 0 <= args.node_rank < args.nnodes:
        raise UserError(f"--node-rank must be between 0 and {args.nnodes - 1}.")
    if args.nnodes > 1 and not args.rdzv_endpoint:
        raise UserError("Several machines need --rdzv-endpoint HOST:PORT (machine 0's address).")
    return not distributed.launched() and args.nproc * args.nnodes > 1


def torchrun_arguments(args: argparse.Namespace, argv: list[str]) -> list[str]:
    """The arguments of `torch.distributed.run` (`torchrun`) that run `mlic <argv>` as the
    job's processes."""
    if args.nnodes == 1 and not args.rdzv_endpoint:
        where = ["--standalone"]
    else:
        where = ["--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank),
                 "--rdzv-endpoint", args.rdzv_endpoint]
    return ["--nproc-per-node", str(args.nproc), *where, "-m", "engine", *process_argv(argv)]


def process_argv(argv: list[str]) -> list[str]:
    """The command line each process runs: `argv` without the launch options (the processes
    know their place from torch.distributed.run, which would also take `--nproc` for its own)."""
    kept: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in LAUNCH_OPTIONS:
            skip = True
        elif not token.startswith(tuple(f"{option}=" for option in LAUNCH_OPTIONS)):
            kept.append(token)
    return kept


def relaunch(args: argparse.Namespace) -> int:
    """Run this command as a job of several processes (`torch.distributed.run`, in this process)
    and return its exit status. A process's error reaches the person as this command's one
    `mlic: error:` line (exit status 2), not once per process with the launcher's report; a
    SIGTERM (the app's Cancel) stops every process."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // args.nproc))
    quiet = logging.getLogger("torch.distributed.elastic")
    level = quiet.level
    with tempfile.TemporaryDirectory(prefix="mlic-job-") as errors, \
            _environment(OMP_NUM_THREADS=threads, MLIC_JOB_ERRORS=errors):
        quiet.setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
        try:
            run(get_args_parser().parse_args(torchrun_arguments(args, list(args.argv))))
            return 0
        except SignalException as exc:
            return 128 + int(exc.sigval)
        except ChildFailedError as exc:
            message = _first_error(Path(errors))
            if message is None:
                return exc.get_first_failure()[1].exitcode or 1
            raise UserError(message) from None
        finally:
            quiet.setLevel(level)


def report_error(message: str) -> bool:
    """In a process of a job: keep `message` for the launcher to print once (True); outside a
    job False, and the caller prints it."""
    folder = os.environ.get("MLIC_JOB_ERRORS")
    if not (distributed.launched() and folder):
        return False
    rank = os.environ.get("RANK", "0")
    (Path(folder) / f"{int(rank):06d}").write_text(message, encoding="utf-8")
    return True


def _first_error(folder: Path) -> str | None:
    """The error message of the lowest rank that reported one."""
    reports = sorted(folder.glob("[0-9]*"))
    return reports[0].read_text(encoding="utf-8") if reports else None


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """These environment variables set for the processes, restored afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
