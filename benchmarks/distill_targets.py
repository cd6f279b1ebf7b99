"""Wall time of distillation's teacher-target pass on the demo data.

    .venv/bin/python benchmarks/distill_targets.py [--images N] [--views V] [--workers W]
                                                   [--keep DIR]
    .venv/bin/python benchmarks/distill_targets.py --synthetic N [--keep DIR]

Generates the demo (seed 0), imports it, trains a small teacher once (kept in `--keep` between
runs) with the recommended proposal source, fills the project's proposal cache for the whole
images, then times `compute_teacher_targets` on every training image, view and flip from an empty
distillation cache (the crops' cached proposals removed too), and again from the full cache.
Prints the views computed, the wall time, the views per second, the CPU seconds of the process
and its workers (the fairer figure on a shared machine) and the process's peak resident memory. The proposal cache of the whole images is
warm in both timings, so the figure is the teacher pass itself: crop proposals, decoding, forwards.
`--synthetic N` instead writes N records of the default layout and reads them as the student's
loader does (`synthetic_reads`): the memory a large project's targets take while training.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.demo import open_demo_project  # noqa: E402
from engine.models.registry import load_model  # noqa: E402
from engine.proposals.project import proposals_for_images, source_from_meta  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.training import TrainCallbacks, TrainConfig, train  # noqa: E402
from engine.training.distill import compute_teacher_targets  # noqa: E402


def teacher_of(store: Store, args: argparse.Namespace) -> str:
    """The kept project's teacher, trained on first use."""
    done = [run for run in store.runs.list()
            if run.stage == "teacher" and run.status == "completed"]
    if done:
        return done[-1].model_version
    config = TrainConfig(stage="teacher", epochs=1, image_size=args.teacher_size,
                         max_proposals=args.max_proposals, proposals="selective_search",
                         batch_size=4, device="cpu", seed=0)
    return train(store, config)[0].model_version


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the loader's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_pass(store: Store, version: str, args: argparse.Namespace) -> tuple[float, float, int]:
    teacher, _ = load_model(store, "teacher", version, device="cpu")
    matrix = store.tags.label_matrix("train")
    counted = []
    callbacks = TrainCallbacks(on_step=lambda stage, done, total: counted.append(total))
    extra = {"workers": args.workers} if args.workers is not None else {}
    started, cpu = time.perf_counter(), cpu_seconds()
    compute_teacher_targets(store, teacher, version, matrix.image_ids, matrix.paths,
                            args.kd_boxes, (False, True), torch.device("cpu"), callbacks,
                            batch_size=args.batch_size, views=args.views, **extra)
    return time.perf_counter() - started, cpu_seconds() - cpu, (counted[-1] if counted else 0)


def synthetic_reads(count: int, work: Path) -> None:
    """Write `count` records of the default layout (2 views, 2 flips, 80 classes, 48 boxes of 512
    features), then read one random view of every image in batches of 32, as the student's
    loader does: the read rate and the peak resident memory, which must not grow with `count`."""
    import numpy as np

    from engine.datasets.student import collate_student
    from engine.datasets.targets import TargetFiles, TargetLayout, TeacherTargets

    files = TargetFiles(work / "synthetic", TargetLayout(2, 2, 80, 48, 512))
    record = files.layout.empty()
    record["features"] = np.random.default_rng(0).normal(size=record["features"].shape)
    digests = [f"{i:040x}" for i in range(count)]
    started = time.perf_counter()
    for digest in digests:
        if not files.has(digest):
            files.write(digest, record)
    written = time.perf_counter() - started
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    targets = TeacherTargets(files, digests)
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    for start in range(0, count, 32):
        collate_student([{"image": torch.zeros(3, 1, 1), "labels": torch.zeros(1), "index": i,
                          "view": 0, "flip": False,
                          "targets": targets.sample(i, int(rng.integers(2)), bool(rng.integers(2)))}
                         for i in range(start, min(count, start + 32))])
    read = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = files.path(digests[0]).stat().st_size
    print(f"synthetic: {count} records of {size / 1024:.0f} KiB ({count * size / 2**30:.2f} GiB on "
          f"disk) written in {written:.1f} s; one view of each read in {read:.1f} s "
          f"({1e6 * read / count:.0f} us per sample); peak resident memory {before:.0f} MiB "
          f"before reading, {peak:.0f} MiB after")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="demo images (default 60)")
    parser.add_argument("--views", type=int, default=2, help="views per image (default 2)")
    parser.add_argument("--kd-boxes", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8, help="teacher views per forward")
    parser.add_argument("--workers", type=int, help="loader processes of the pass")
    parser.add_argument("--teacher-size", type=int, default=320)
    parser.add_argument("--max-proposals", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--synthetic", type=int, metavar="N",
                        help="instead: write N synthetic records and time the student's reads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        if args.synthetic:
            synthetic_reads(args.synthetic, work)
            return
        store = open_demo_project(work, args.images)
        version = teacher_of(store, args)
        teacher, _ = load_model(store, "teacher", version, device="cpu")
        matrix = store.tags.label_matrix("train")
        proposals_for_images(store, matrix.image_ids, matrix.paths,
                             source_from_meta(dict(teacher.meta)))
        shutil.rmtree(store.paths.cache_dir / "distill", ignore_errors=True)
        for crop in store.paths.proposals_cache.glob("*/*/*-v*-d*.npz"):   # crops' proposals
            crop.unlink()
        print(f"{len(matrix.image_ids)} training images, {args.views} view(s) x 2 flips, teacher "
              f"{version} ({args.teacher_size} px, {args.max_proposals} selective-search "
              f"proposals), {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
        cold, cpu, views = timed_pass(store, version, args)
        print(f"cold pass: {views} views in {cold:.1f} s ({views / cold:.2f} views/s), "
              f"{cpu:.1f} CPU s")
        warm, _, _ = timed_pass(store, version, args)
        print(f"cached pass: {warm:.2f} s")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak resident memory {peak:.0f} MiB, load average now {os.getloadavg()[0]:.1f}")
        store.close()


if __name__ == "__main__":
    main()
