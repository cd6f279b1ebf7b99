"""Training with two gloo processes against one, on the CPU: `mlic train --nproc 2` vs `--nproc 1`.

    .venv/bin/python benchmarks/scale_ddp.py [--images N] [--epochs E] [--seeds 0 1] [--batch B]
                                             [--threads T]

Generates the demo data (seed 0), imports it into one project, and copies that project for every
run, so each run starts from the same state. Every run trains the teacher and then the distilled
student (stage all, tiny models from random init, sliding-window proposals) through the real
command line, `python -m engine train --config C --nproc K --progress jsonl`, with the *same*
global batch, epochs, data and seed; by default both sides get all the machine's cores (one
process with all of them as intra-op threads, two with half each); `--threads T` gives every
process T threads instead (`--threads 1`: one core per process, the scaling of DDP itself, free
of what several threads per process cost on a busy machine). Each epoch's report gives the training
throughput (images per second of the epoch's training time, validation excluded) and the mean
loss; the table prints both per stage, the loss curves side by side (the same global batches are
drawn whatever the number of processes, so the curves should overlay, up to the batch-norm
statistics each process keeps over its half of a batch), and in how many seeds two processes were
faster. `ddp_section()` returns the rows for benchmarks/scale.py.

On a 2-core machine shared with other jobs the figures are upper bounds on wall time; gloo on
one machine mostly measures the cost of the gradient all-reduce against the gain of splitting
each batch, not what NCCL across GPUs gives.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY = {"stage": "all", "image_size": 96, "max_proposals": 32, "hidden": 64,
        "student_image_size": 96, "device": "cpu", "proposals": "sliding",
        "student": {"kd_boxes": 8, "region_dim": 32, "views": 1}}


@dataclass
class RunFigures:
    """One training run: per stage, each epoch's throughput and mean loss."""

    processes: int
    seed: int
    images_per_s: dict[str, list[float]] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def mean_rate(self, stage: str) -> float:
        rates = self.images_per_s.get(stage, [])
        return sum(rates) / len(rates) if rates else float("nan")


def _project(folder: Path, images: int) -> Path:
    from engine.demo import generate_demo, import_demo
    from engine.store import Store

    demo = generate_demo(folder / "demo", n_images=images, seed=0)
    with Store.open(folder / "project") as store:
        import_demo(store, demo.root)
    return folder / "project"


def train_run(template: Path, folder: Path, processes: int, seed: int, epochs: int,
              batch: int, threads: int | None = None) -> RunFigures:
    """One `mlic train --nproc` run on a copy of the template project."""
    import time

    project = folder / f"p{processes}-s{seed}"
    shutil.copytree(template, project)
    config = folder / f"config-{processes}-{seed}.json"
    config.write_text(json.dumps({**TINY, "epochs": epochs, "batch_size": batch, "seed": seed}))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = threads or max(1, (cores or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "engine", "--project", str(project), "train", "--config",
         str(config), "--nproc", str(processes), "--progress", "jsonl"],
        env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training with {processes} process(es) failed:\n{done.stderr[-2000:]}")
    figures = RunFigures(processes, seed, seconds=time.perf_counter() - started)
    for line in done.stdout.splitlines():
        if line.startswith('{"epoch"'):
            report = json.loads(line)["epoch"]
            figures.images_per_s.setdefault(report["stage"], []).append(
                report["metrics"]["images_per_s"])
            figures.losses.setdefault(report["stage"], []).append(report["losses"]["loss"])
    return figures


def ddp_section(images: int = 48, epochs: int = 3, seeds: tuple[int, ...] = (0,),
                batch: int = 8, threads: int | None = None) -> list[RunFigures]:
    """Train with 1 and 2 processes per seed on the same data; print and return the figures."""
    with tempfile.TemporaryDirectory(prefix="mlic-ddp-") as tmp:
        template = _project(Path(tmp) / "template", images)
        runs = [train_run(template, Path(tmp), processes, seed, epochs, batch, threads)
                for seed in seeds for processes in (1, 2)]
    print_table(runs, images, epochs, batch, threads)
    return runs


def print_table(runs: list[RunFigures], images: int, epochs: int, batch: int,
                threads: int | None) -> None:
    per_process = f"{threads} thread(s) per process" if threads else "all cores on each side"
    print(f"\nDDP on the CPU (gloo): {images} demo images, {epochs} epochs, global batch {batch}, "
          f"stage all, {os.cpu_count()} cores, {per_process}, load {os.getloadavg()[0]:.1f}")
    print(f"{'stage':8} {'seed':>4} {'1 proc img/s':>13} {'2 procs img/s':>14} {'speed-up':>9} "
          f"{'wall 1 / 2 (s)':>15}  loss per epoch, 1 proc | 2 procs")
    wins: dict[str, int] = {}
    for one, two in zip(runs[0::2], runs[1::2]):
        for stage in one.images_per_s:
            a, b = one.mean_rate(stage), two.mean_rate(stage)
            wins[stage] = wins.get(stage, 0) + (b > a)
            curves = (" ".join(f"{x:.3f}" for x in one.losses[stage]) + " | "
                      + " ".join(f"{x:.3f}" for x in two.losses.get(stage, [])))
            print(f"{stage:8} {one.seed:>4} {a:13.1f} {b:14.1f} {b / a:8.2f}x "
                  f"{one.seconds:7.0f} / {two.seconds:<6.0f}  {curves}")
    seeds = len(runs) // 2
    for stage, won in wins.items():
        print(f"{stage}: 2 processes faster in {won} of {seeds} seed(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads per process (default: cores / processes)")
    args = parser.parse_args()
    ddp_section(args.images, args.epochs, tuple(args.seeds), args.batch, args.threads)


if __name__ == "__main__":
    main()
