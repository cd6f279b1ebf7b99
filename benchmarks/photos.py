"""The photo benchmark: does the default path (no flags beyond the budget) work on photographs?

    .venv/bin/python benchmarks/photos.py [--images 300] [--size 160] [--teacher-size 256]
        [--test-images N] [--epochs 6] [--seeds 0 1] [--threads T] [--keep DIR] [--only MODELS]
        [--set FIELD=VALUE ...]

Generates the benchmark's data (`benchmarks/photo_data.py`: 40 confusable classes of cut-out
objects, 5-30 % of the short side, composited onto the photographs of Debian's
gnome-backgrounds, `sudo apt-get install gnome-backgrounds`), imports it into one project, and
for every seed trains with the same budget (epochs, image sizes, seed):

1. plain: the textbook fine-tuning loop of the student's backbone (`benchmarks/plain_finetune.py`:
   AdamW 2e-3 one-cycle, batch 32, random resized crops, BCE) - what a user would pick instead;
2. student, no KD: `TrainConfig(stage="student", kd="none")` with the defaults;
3. teacher: `TrainConfig(stage="teacher")` with the defaults (the command line's proposals);
4. student, KD: `TrainConfig(stage="student")` with the defaults, distilled from that teacher with
   the mode the default `kd="auto"` distils with when the teacher validates above the student
   (`feature`); `--set kd=auto` plays the default path instead (it compares that teacher with the
   seed's student without KD, trained just before, and distils only from the better one).

Every model is scored on the held-out test split through `engine.inference.evaluation` (mAP; the
teacher's CorLoc against the boxes of the test images). The table shows each seed, the means, and
in how many seeds the KD student beat the student without KD and the plain loop (paired: same
seed, data and budget). `--set FIELD=VALUE` changes a `TrainConfig` field (or `student.FIELD`, a
`StudentSettings` field) of every mlic model, to measure a recipe choice against the defaults.
The default budget runs in CPU-minutes on 2 cores; `--threads` as in benchmarks/kd_ablation.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from photo_data import BACKGROUND_DIR, SPLITS, generate_photos  # noqa: E402
from plain_finetune import plain_finetune  # noqa: E402

from engine.demo import import_demo  # noqa: E402
from engine.errors import UserError  # noqa: E402
from engine.inference.evaluation import evaluate  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.training import TrainConfig, train  # noqa: E402
from engine.training.api import RECOMMENDED_PROPOSALS, StudentSettings  # noqa: E402
from engine.training.kd_gate import AUTO_DISTILS  # noqa: E402

ROWS = ("plain fine-tuning", "student, no KD", "student, KD", "teacher", "teacher CorLoc")
MODELS = dict(zip(ROWS, ("plain", "nokd", "kd", "teacher", "teacher")))


def pct(value: float | None) -> str:
    return "   -  " if value is None or value != value else f"{100 * value:5.1f}"


def parse_sets(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`FIELD=VALUE` / `student.FIELD=VALUE` -> (TrainConfig fields, StudentSettings fields),
    values typed after the field's default."""
    config, student = {}, {}
    defaults, own = TrainConfig(), StudentSettings()
    for pair in pairs:
        key, _, text = pair.partition("=")
        target, holder, name = ((student, own, key[8:]) if key.startswith("student.")
                                else (config, defaults, key))
        current = getattr(holder, name)
        if text == "None":
            target[name] = None
        elif isinstance(current, bool):
            target[name] = text.lower() in ("1", "true", "yes")
        elif isinstance(current, (int, float)):
            target[name] = type(current)(text)
        elif current is None:                 # an open setting: a number if it reads as one
            target[name] = _number(text)
        else:
            target[name] = text
    return config, student


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def mlic_config(args: argparse.Namespace, seed: int, **fields: Any) -> TrainConfig:
    """The budget (epochs, sizes, seed, device) plus `--set` choices; everything else default."""
    config, student = parse_sets(args.set)
    settings = dataclasses.replace(StudentSettings(), **student)
    budget = dict(epochs=args.epochs, image_size=args.teacher_size, student_image_size=args.size,
                  seed=seed, device=args.device, proposals=RECOMMENDED_PROPOSALS)
    return TrainConfig(student=settings, **{**budget, **config, **fields})


def run_seed(store: Store, args: argparse.Namespace, seed: int) -> dict[str, tuple[float, float]]:
    """The four models of one seed: row -> (figure, seconds)."""
    out: dict[str, tuple[float, float]] = {}
    started = time.perf_counter()
    if "plain" in args.only:
        backbone = mlic_config(args, seed).student_backbone
        figure = plain_finetune(store, backbone, args.size, args.epochs, seed)
        out[ROWS[0]] = (figure, time.perf_counter() - started)
        print(f"seed {seed}: {ROWS[0]:18s} test mAP {pct(figure)} ({out[ROWS[0]][1]:.0f} s)",
              flush=True)
    teacher = args.teachers[args.seeds.index(seed)] if args.teachers else None
    kd_mode = parse_sets(args.set)[0].get("kd", AUTO_DISTILS)   # `--set kd=...`: the KD row's
    for row, stage, kd in ((ROWS[1], "student", "none"), (ROWS[3], "teacher", "none"),
                           (ROWS[2], "student", kd_mode)):
        if MODELS[row] not in args.only:
            continue
        started = time.perf_counter()
        run = train(store, mlic_config(args, seed, stage=stage, kd=kd, teacher_version=teacher))[0]
        seconds = time.perf_counter() - started
        report = evaluate(store, "test", device=args.device, models=(stage,),
                          **{f"{stage}_version": run.model_version})
        model = report.teacher if stage == "teacher" else report.student
        out[row] = (model.report.mAP, seconds)
        if stage == "teacher":
            teacher = run.model_version
            out[ROWS[4]] = (model.corloc.corloc if model.corloc else float("nan"), 0.0)
        print(f"seed {seed}: {row:18s} {run.model_version:11s} test mAP {pct(out[row][0])} "
              f"({seconds:.0f} s)", flush=True)
    return out


def print_table(results: dict[int, dict[str, tuple[float, float]]], seeds: list[int]) -> None:
    header = f"{'model':20s}" + "".join(f" | seed {s}" for s in seeds) + " |  mean | s/seed"
    print("\n" + header + "\n" + "-" * len(header))
    for row in (r for r in ROWS if all(r in results[s] for s in seeds)):
        values = [results[s][row][0] for s in seeds]
        seconds = sum(results[s][row][1] for s in seeds) / len(seeds)
        print(f"{row:20s}" + "".join(f" | {pct(v):>6s}" for v in values)
              + f" | {pct(sum(values) / len(values))} | {seconds:6.0f}")
    for other in (r for r in (ROWS[1], ROWS[0]) if all(r in results[s] and ROWS[2] in results[s]
                                                         for s in seeds)):
        gains = [results[s][ROWS[2]][0] - results[s][other][0] for s in seeds]
        wins = sum(g > 0 for g in gains)
        print(f"student, KD beats {other}: {wins} of {len(seeds)} seeds, mean "
              f"{100 * sum(gains) / len(gains):+.1f} mAP")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=160, help="student input (default 160)")
    parser.add_argument("--teacher-size", type=int, default=256,
                        help="teacher test scale (default 256)")
    parser.add_argument("--test-images", type=int, default=None,
                        help="size of the test split: extra images rendered for it alone (the "
                             "train and val splits stay those of --images); default 15 %% of "
                             "--images")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backgrounds", type=Path, default=BACKGROUND_DIR)
    parser.add_argument("--keep", type=Path, help="keep data and project here (reused)")
    parser.add_argument("--only", type=lambda text: text.split(","),
                        default=["plain", "nokd", "teacher", "kd"],
                        help="comma-separated models to train: plain,nokd,teacher,kd (kd needs "
                             "teacher; default all)")
    parser.add_argument("--teachers", nargs="+", metavar="VERSION",
                        help="with --only kd: distil from these teachers of the kept project, "
                             "one per seed (their targets are cached)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainConfig field, or student.FIELD, for every mlic model")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(args.threads or (1 if os.getloadavg()[0] > 0.5 * cores else cores))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        name = f"{args.images}" + (f"-test{args.test_images}" if args.test_images else "")
        extra_test = max(0, (args.test_images or 0)
                         - (args.images - round(args.images * (1 - SPLITS["test"]))))
        data = work / f"photos-{name}"
        if not (data / "test.json").exists():
            try:
                dataset = generate_photos(data, args.images, seed=0,
                                          backgrounds_dir=args.backgrounds, extra_test=extra_test)
            except UserError as exc:
                sys.exit(f"photos.py: error: {exc}")
        else:
            from photo_data import CLASS_NAMES, PhotoDataset

            dataset = PhotoDataset(data, data / "images", list(CLASS_NAMES),
                                   args.images + extra_test, data / "train_partial.json")
        store = Store.open(work / f"project-{name}")
        if not store.images.count():
            import_demo(store, dataset.as_demo().root)
        counts = store.images.counts_by_split()
        print(f"photos: {args.images} images (train {counts.get('train', 0)}, val "
              f"{counts.get('val', 0)}, test {counts.get('test', 0)}), 40 classes; student "
              f"{args.size} px, teacher {args.teacher_size} px, {args.epochs} epochs, seeds "
              f"{args.seeds}, set {args.set or 'nothing'}; {torch.get_num_threads()} thread(s), "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        try:
            results = {seed: run_seed(store, args, seed) for seed in args.seeds}
        finally:
            store.close()
    print_table(results, args.seeds)


if __name__ == "__main__":
    main()
