"""`--nproc N` (with `--nnodes`, `--node-rank`, `--rdzv-endpoint`): a command that relaunches
itself under `torch.distributed.run` as N processes per machine, the pattern Ultralytics uses for
multi-GPU training. The processes run the same command line; `engine.distributed` tells each one
its rank. On one machine the rendezvous is local (`--standalone`); across machines every machine
runs the same command with its own `--node-rank` and the address of machine 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

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


def launch_command(args: argparse.Namespace, argv: list[str]) -> list[str]:
    """The `torch.distributed.run` command that runs `mlic <argv>` as the job's processes."""
    if args.nnodes == 1 and not args.rdzv_endpoint:
        where = ["--standalone"]
    else:
        where = ["--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank),
                 "--rdzv-endpoint", args.rdzv_endpoint]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.nproc),
            *where, "-m", "engine", *process_argv(argv)]


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
    """Run this command as a job of several processes; its exit status (rank 0's errors are
    printed by rank 0 itself). A SIGTERM to this process (the app's Cancel) stops the job: the
    launcher passes it on to every process."""
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // args.nproc))
    job = subprocess.Popen(launch_command(args, list(args.argv)),
                           env={**os.environ, "OMP_NUM_THREADS": threads})
    previous = signal.signal(signal.SIGTERM, lambda *_: job.terminate())
    try:
        return job.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
