"""Partial labels: unknown-aware training against untagged-as-negative, +/- KD.

    .venv/bin/python benchmarks/partial_labels.py [--photos] [--images N] [--seeds 0 1] [--keep DIR]

Generates the demo data, or with `--photos` the photo benchmark's data (`benchmarks/photo_data.py`:
40 confusable classes composited onto the gnome-backgrounds photographs), seed 0, every tag known
(the COCO import is exhaustive), keeps
`--train-images` of its train split for training and moves the rest to the test split (a large
test split keeps the figures steady while the training budget stays small), and then makes the
train and val splits partial, as a photo library is: every negative tag is removed and half of the
positive tags (a fixed random half) are dropped, so a missing tag is no "no". The test split keeps
every tag: it is the ground truth every model is measured on (`engine.inference.evaluation`; only
decided pairs count, and the test split has no undecided pair).

For every training seed, with the same budget and data (paired):

- students (EfficientNet-Lite0 from its bundled ImageNet weights, so it runs offline) without
  distillation: `--untagged-as-negative`, and unknown-aware with each `--unknown-weights` (the
  weight of an unknown pair as a negative in the tag loss; 0 ignores it);
- a teacher (WSDDN + OICR, EfficientNet-Lite0) per label mode, and a student distilled from it
  (KD, both terms), untagged-as-negative and unknown-aware (`--kd-unknown-weight`).

Prints test mAP, CF1 and OF1 per seed and their means, and in how many seeds each variant beat
untagged-as-negative without KD. The default budget takes about 15 minutes on 2 free CPU cores;
timings depend on what else runs (the load average is printed).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.demo import generate_demo, import_demo  # noqa: E402
from engine.errors import UserError  # noqa: E402
from engine.inference.evaluation import evaluate  # noqa: E402
from engine.store import Store, TagEdit  # noqa: E402
from engine.training import TrainConfig, train  # noqa: E402
from engine.training.api import StudentSettings  # noqa: E402

BASELINE = "untagged as negative, no KD"


@dataclass(frozen=True)
class Variant:
    name: str
    untagged_as_negative: bool
    unknown_weight: float
    kd: str


def pct(value: float | None) -> str:
    return "   -  " if value is None or value != value else f"{100 * value:5.1f}"


def make_partial(store: Store, splits: tuple[str, ...] = ("train", "val"), seed: int = 0
                 ) -> tuple[int, int]:
    """Remove every negative tag of `splits` and a fixed random half of the positives; returns
    (positives kept, positives dropped)."""
    ids = [i for split in splits for i in store.images.ids(split=split)]
    tags = store.tags.for_images(ids)
    positives = sorted((t.image_id, t.class_id) for rows in tags.values() for t in rows
                       if t.positive)
    dropped = set(random.Random(seed).sample(positives, len(positives) // 2))
    edits = [TagEdit(t.image_id, t.class_id, None) for rows in tags.values() for t in rows
             if not t.positive or (t.image_id, t.class_id) in dropped]
    store.tags.apply(edits, source="import", reviewed=False)
    return len(positives) - len(dropped), len(dropped)


def move_to_test(store: Store, train_images: int) -> None:
    """Keep the first `train_images` train images (by id) for training; the rest go to test."""
    store.images.set_split(store.images.ids(split="train")[train_images:], "test")


def variants(args: argparse.Namespace) -> list[Variant]:
    found = [Variant(BASELINE, True, 1.0, "none")]
    found += [Variant(f"unknown w={w:g}, no KD", False, w, "none") for w in args.unknown_weights]
    if not args.no_kd:
        found += [Variant(f"untagged as negative + KD ({args.kd})", True, 1.0, args.kd),
                  Variant(f"unknown w={args.kd_unknown_weight:g} + KD ({args.kd})", False,
                          args.kd_unknown_weight, args.kd)]
    return found


def train_teacher(store: Store, args: argparse.Namespace, seed: int, variant: Variant) -> str:
    config = TrainConfig(
        stage="teacher", backbone="efficientnet_lite0", pretrained=True,
        epochs=args.teacher_epochs, lr=args.teacher_lr, image_size=args.teacher_size,
        max_proposals=args.max_proposals, batch_size=8, device=args.device, seed=seed,
        untagged_as_negative=variant.untagged_as_negative, unknown_weight=variant.unknown_weight)
    return train(store, config)[0].model_version


def train_student(store: Store, args: argparse.Namespace, seed: int, variant: Variant,
                  teacher: str | None) -> dict[str, float]:
    config = TrainConfig(
        stage="student", kd=variant.kd, student_backbone="efficientnet_lite0",
        student_image_size=args.student_size, epochs=args.student_epochs,
        batch_size=args.batch_size, lr=args.student_lr, device=args.device, seed=seed,
        teacher_version=teacher, untagged_as_negative=variant.untagged_as_negative,
        unknown_weight=variant.unknown_weight, student=StudentSettings(pretrained=True))
    run = train(store, config)[0]
    report = evaluate(store, "test", student_version=run.model_version, device=args.device,
                      models=("student",))
    return report.student.report.summary()


def run_seed(store: Store, args: argparse.Namespace, seed: int,
             results: dict[str, dict[int, dict[str, float]]]) -> None:
    teachers: dict[tuple[bool, float], str] = {}
    for variant in variants(args):
        started = time.perf_counter()
        teacher = None
        if variant.kd != "none":
            key = (variant.untagged_as_negative, variant.unknown_weight)
            if key not in teachers:
                teachers[key] = train_teacher(store, args, seed, variant)
            teacher = teachers[key]
        figures = train_student(store, args, seed, variant, teacher)
        results.setdefault(variant.name, {})[seed] = figures
        print(f"seed {seed}: {variant.name:30s} test mAP {pct(figures['mAP'])} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)


def print_table(results: dict[str, dict[int, dict[str, float]]], seeds: list[int]) -> None:
    header = f"{'student':30s}" + "".join(f" | seed {s}: mAP   CF1   OF1" for s in seeds) + \
        " | mean: mAP   CF1   OF1"
    print()
    print(header)
    print("-" * len(header))
    means = {}
    for name, per_seed in results.items():
        cells = "".join(f" |      {pct(per_seed[s]['mAP'])} {pct(per_seed[s]['CF1'])} "
                        f"{pct(per_seed[s]['OF1'])}" for s in seeds)
        mean = {k: sum(per_seed[s][k] for s in seeds) / len(seeds) for k in ("mAP", "CF1", "OF1")}
        means[name] = mean["mAP"]
        print(f"{name:30s}{cells} |    {pct(mean['mAP'])} {pct(mean['CF1'])} {pct(mean['OF1'])}")
    print()
    for name, per_seed in results.items():
        if name != BASELINE:
            wins = sum(per_seed[s]["mAP"] > results[BASELINE][s]["mAP"] for s in seeds)
            print(f"{name} beats '{BASELINE}' on mAP in {wins} of {len(seeds)} seeds "
                  f"(mean {100 * (means[name] - means[BASELINE]):+.1f} points)")


def generate_data(folder: Path, args: argparse.Namespace) -> None:
    """The demo's scenes, or with --photos the photo benchmark's (needs gnome-backgrounds)."""
    if not args.photos:
        generate_demo(folder, n_images=args.images, seed=0)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from photo_data import generate_photos

    try:
        generate_photos(folder, args.images, seed=0)
    except UserError as exc:
        sys.exit(f"partial_labels.py: error: {exc}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", action="store_true",
                        help="the photo benchmark's data instead of the demo's")
    parser.add_argument("--images", type=int, default=300, help="images (default 300)")
    parser.add_argument("--train-images", type=int, default=120,
                        help="train images kept; the rest of the train split is test (default 120)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--unknown-weights", type=float, nargs="+", default=[0.0, 0.2],
                        help="unknown-aware students without KD, one per weight")
    parser.add_argument("--kd-unknown-weight", type=float, default=TrainConfig.unknown_weight)
    parser.add_argument("--no-kd", action="store_true", help="skip the teachers and KD students")
    parser.add_argument("--kd", choices=("feature", "prediction", "both"), default=TrainConfig.kd,
                        help="the KD students' distillation (default: the default's)")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--teacher-lr", type=float, default=5e-4)
    parser.add_argument("--teacher-size", type=int, default=128, help="teacher test scale")
    parser.add_argument("--max-proposals", type=int, default=48)
    parser.add_argument("--student-epochs", type=int, default=5)
    parser.add_argument("--student-size", type=int, default=112)
    parser.add_argument("--student-lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        data = work / ("photos" if args.photos else "demo")
        if not (data / "test.json").exists():
            generate_data(data, args)
        store = Store.open(work / "project")
        if not store.images.count():
            import_demo(store, data)
            move_to_test(store, args.train_images)
            kept, dropped = make_partial(store)
            print(f"partial train/val labels: {kept} positives kept, {dropped} dropped, "
                  f"no negatives; test split fully tagged", flush=True)
        counts = store.images.counts_by_split()
        print(f"{data.name} {args.images} images (train {counts.get('train', 0)}, val "
              f"{counts.get('val', 0)}, test {counts.get('test', 0)}); EfficientNet-Lite0 (ImageNet) students at "
              f"{args.student_size} px, {args.student_epochs} epochs, batch {args.batch_size}; "
              f"teachers {args.teacher_epochs} epochs at {args.teacher_size} px, "
              f"{args.max_proposals} proposals; {args.device}, {args.threads} thread(s), load "
              f"average {os.getloadavg()[0]:.1f}", flush=True)
        results: dict[str, dict[int, dict[str, float]]] = {}
        for seed in args.seeds:
            run_seed(store, args, seed, results)
        store.close()
    print_table(results, args.seeds)
    print(f"total {time.perf_counter() - started:.0f} s, load average now "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
