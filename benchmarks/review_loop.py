"""Does the review loop put the person's time where it matters? A simulated person on demo data.

    .venv/bin/python benchmarks/review_loop.py [--images 600] [--rounds 3] [--fix 40]
        [--noise 0.1] [--modes random,uncertain,mistakes] [--epochs 10] [--warm-epochs 5]
        [--size 64] [--device cpu] [--seeds 0 1 2 3 4] [--keep DIR]

Set-up (the same for every ordering mode):
- `engine.demo.generate_demo` writes N procedural multi-object images with their ground truth and
  train/val/test splits (70/15/15); `import_demo` imports them (tags source 'import').
- Hidden ground truth = the demo's labels. Noise: every imported positive tag of a train or val
  image is, with probability `--noise`, swapped for a class the image does not contain (a
  confusion: one false positive and one missing positive). The test split stays clean and is
  never shown to the simulated person: it is the held-out set the mAP is measured on.
- Round 0: the real student (`engine.training`, stage 'student', tags only: `kd='none'`,
  resnet18 at `--size` px, `--epochs` epochs, from scratch) trained on the noisy train split,
  evaluated, its thresholds calibrated on the (noisy) val split. Round 0 is trained once and copied
  for every mode, so all modes start from the same model.

Each round, per mode:
1. the review queue (`engine.review.queue.review_queue`) orders the train and val images a person has not
   reviewed yet: `random` (the baseline), `uncertain` (suggestion closest to its class threshold),
   `mistakes` (cleanlab on out-of-fold predictions of a linear probe cross-fitted on frozen
   ImageNet EfficientNet-Lite0 features, `engine.review.label_issues`), or `unreviewed`/`disagreement`;
2. the simulated person reviews the first `--fix` images of the queue: sets each one's tags to the
   ground truth (source 'person', reviewed);
3. the next round warm-starts from the previous student (`engine.review.rounds.train_round`,
   `--warm-epochs` epochs) on the corrected tags, then every image is tagged (`tag_paths`), the
   thresholds are recalibrated, and mAP is measured on the clean test split.

Every seed is a new demo (its own images, noise and training seed). It prints, per mode and
round, the held-out mAP and the share of the wrong (image, class) entries that the person has
corrected so far, as a markdown table per seed and one of the means over the seeds, then how
often each order beat random order in the last round. One round's mAP moves by a few points
with the training run alone, so the means over seeds are the figures to read. What it uses: the
student alone (no teacher; `disagreement` needs one and is not in the default modes), small
images and few epochs, so that one seed takes about 3 minutes on 2 idle CPU cores (13 minutes
for the default five seeds).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from engine.store import Store, TagEdit  # noqa: E402

MODES = ("random", "uncertain", "mistakes", "unreviewed", "disagreement")


@dataclass
class Truth:
    """Hidden ground truth and the injected mistakes."""

    positives: dict[int, set[int]]                  # image id -> class ids present
    wrong: set[tuple[int, int]] = field(default_factory=set)   # (image, class) entries wrong now


@dataclass
class RoundRow:
    mode: str
    round: int
    reviewed: int
    found: float            # share of the injected wrong entries corrected so far
    test_map: float
    seconds: float


def ground_truth(store: Store) -> Truth:
    matrix = store.tags.label_matrix()
    class_ids = [c.id for c in store.classes.list()]
    return Truth({image_id: {class_ids[k] for k in np.flatnonzero(row)}
                  for image_id, row in zip(matrix.image_ids, matrix.labels)})


def inject_noise(store: Store, truth: Truth, rate: float, seed: int) -> None:
    """Swap each imported positive tag of train/val images for an absent class with prob. `rate`."""
    rng = np.random.default_rng(seed)
    class_ids = [c.id for c in store.classes.list()]
    edits: list[TagEdit] = []
    for split in ("train", "val"):
        for image_id in store.images.ids(split=split):
            present = truth.positives.get(image_id, set())
            absent = [c for c in class_ids if c not in present]
            for class_id in sorted(present):
                if absent and rng.random() < rate:
                    wrong = int(rng.choice(absent))
                    absent.remove(wrong)
                    edits += [TagEdit(image_id, class_id, "negative"),   # the demo is exhaustive:
                              TagEdit(image_id, wrong, "positive")]      # a wrong "no", a wrong "yes"
                    truth.wrong |= {(image_id, class_id), (image_id, wrong)}
    store.tags.apply(edits, source="import", reviewed=False)


def person_fixes(store: Store, truth: Truth, image_ids: list[int]) -> int:
    """The simulated person reviews `image_ids`: every class set to the truth. Returns how many
    wrong entries were corrected."""
    class_ids = [c.id for c in store.classes.list()]
    current = store.tags.for_images(image_ids)
    edits: list[TagEdit] = []
    fixed = 0
    for image_id in image_ids:
        have = {t.class_id: t.positive for t in current.get(image_id, [])}
        for class_id in class_ids:
            want = class_id in truth.positives.get(image_id, set())
            if want != have.get(class_id, False):
                edits.append(TagEdit(image_id, class_id, "positive" if want else "negative"))
            if (image_id, class_id) in truth.wrong:
                truth.wrong.discard((image_id, class_id))
                fixed += 1
    store.tags.apply(edits, source="person", reviewed=True)
    store.tags.mark_reviewed(image_ids)
    return fixed


def measure(store: Store, truth: Truth, device: str) -> float:
    """Tag every image with the active student (stored as suggestions), recalibrate thresholds on
    the val split, and return the mAP on the clean test split."""
    from engine.inference.tagging import tag_paths
    from engine.metrics import mean_average_precision
    from engine.review.thresholds import calibrate_thresholds

    paths = store.images.paths(store.images.ids())
    tag_paths(store, list(paths.values()), device=device)
    calibrate_thresholds(store, mode="f1")
    test_ids = store.images.ids(split="test")
    from engine.review.scores import active_version, score_table

    table = score_table(store, test_ids, active_version(store, "student"))
    labels = np.array([[c in truth.positives.get(i, set()) for c in table.class_ids]
                       for i in test_ids], dtype=float)
    return mean_average_precision(np.nan_to_num(table.scores), labels)


def train(store: Store, args, warm: bool) -> None:
    from engine.review.rounds import train_round
    from engine.training import TrainConfig

    config = TrainConfig(stage="student", kd="none", student_backbone="resnet18",
                         pretrained=False,
                         student_image_size=args.size, epochs=args.epochs, batch_size=32,
                         device=args.device, seed=args.seed)
    outcome = train_round(store, config, warm_start=warm, evaluate=False,
                          warm_epochs=args.warm_epochs)
    if not outcome.completed:
        raise SystemExit("training did not complete")


def run_mode(mode: str, base: Path, work: Path, truth0: Truth, args) -> list[RoundRow]:
    from engine.review.label_issues import out_of_fold_predictions
    from engine.review.queue import review_queue

    project = work / f"project-{mode}"
    shutil.copytree(base, project)
    store = Store.open(project)
    truth = Truth(dict(truth0.positives), set(truth0.wrong))
    total_wrong = len(truth.wrong)
    pool = store.images.ids(split="train") + store.images.ids(split="val")
    rows = [RoundRow(mode, 0, 0, 0.0, args.round0_map, args.round0_seconds)]
    reviewed: set[int] = set()
    for round_index in range(1, args.rounds + 1):
        started = time.perf_counter()
        oof = None
        if mode == "mistakes":
            oof = out_of_fold_predictions(store, image_ids=pool, device=args.device,
                                          seed=args.seed)
        queue = review_queue(store, mode, image_ids=pool, out_of_fold=oof, seed=args.seed + round_index)
        chosen = [i for i in queue.image_ids if i not in reviewed][:args.fix]
        person_fixes(store, truth, chosen)
        reviewed |= set(chosen)
        train(store, args, warm=True)
        test_map = measure(store, truth, args.device)
        found = 1 - len(truth.wrong) / max(total_wrong, 1)
        rows.append(RoundRow(mode, round_index, len(reviewed), found, test_map,
                             time.perf_counter() - started))
        print(f"  {mode} round {round_index}: reviewed {len(reviewed)}, wrong found {found:.1%}, "
              f"test mAP {test_map:.3f} ({rows[-1].seconds:.0f} s)", flush=True)
    store.close()
    return rows


def table(rows: list[RoundRow], total_wrong: float, pool: int) -> str:
    lines = ["| order | round | images reviewed | wrong tags found | test mAP |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row.mode} | {row.round} | {row.reviewed} / {pool} | "
                     f"{row.found:.1%} of {total_wrong:.0f} | {row.test_map:.3f} |")
    return "\n".join(lines)


def mean_rows(per_seed: list[list[RoundRow]]) -> list[RoundRow]:
    """Row-by-row means over seeds (every seed has the same modes and rounds, in order)."""
    return [RoundRow(group[0].mode, group[0].round, group[0].reviewed,
                     float(np.mean([r.found for r in group])),
                     float(np.mean([r.test_map for r in group])),
                     float(np.mean([r.seconds for r in group])))
            for group in zip(*per_seed)]


def wins_over_random(per_seed: list[list[RoundRow]], modes: list[str]) -> list[str]:
    """Per mode, in the last round: in how many seeds it beat random order, on each figure."""
    if "random" not in modes:
        return []
    lines = []
    for mode in (m for m in modes if m != "random"):
        found_wins = map_wins = 0
        found_gap = map_gap = 0.0
        for rows in per_seed:
            last = {r.mode: r for r in rows if r.round == max(x.round for x in rows)}
            found_wins += last[mode].found > last["random"].found
            map_wins += last[mode].test_map > last["random"].test_map
            found_gap += (last[mode].found - last["random"].found) / len(per_seed)
            map_gap += (last[mode].test_map - last["random"].test_map) / len(per_seed)
        lines.append(f"{mode} vs random, last round: wrong tags found higher in {found_wins} of "
                     f"{len(per_seed)} seeds (mean {100 * found_gap:+.1f} points), test mAP "
                     f"higher in {map_wins} of {len(per_seed)} (mean {map_gap:+.3f})")
    return lines


def run_seed(seed: int, modes: list[str], work: Path, args) -> tuple[list[RoundRow], int, int]:
    """One simulated person on one demo: (rows, wrong entries injected, review pool size)."""
    from engine.demo import generate_demo, import_demo
    from engine.review.label_issues import image_features

    args.seed = seed
    work = work / f"seed-{seed}"
    work.mkdir(parents=True, exist_ok=True)
    demo = generate_demo(work / "demo", n_images=args.images, seed=seed)
    base = work / "base"
    if base.exists():
        shutil.rmtree(base)
    store = Store.open(base)
    import_demo(store, demo.root)
    truth = ground_truth(store)
    inject_noise(store, truth, args.noise, seed)
    pool = len(store.images.ids(split="train")) + len(store.images.ids(split="val"))
    print(f"seed {seed}: {args.images} demo images, {pool} train+val with {len(truth.wrong)} wrong "
          f"(image, class) entries from {args.noise:.0%} swapped tags; test split clean.",
          flush=True)
    t0 = time.perf_counter()
    train(store, args, warm=False)
    args.round0_map = measure(store, truth, args.device)
    if "mistakes" in modes:                       # features depend only on the images: once
        image_features(store, store.images.ids(), device=args.device)
    args.round0_seconds = time.perf_counter() - t0
    print(f"round 0: test mAP {args.round0_map:.3f} ({args.round0_seconds:.0f} s)", flush=True)
    store.close()
    rows: list[RoundRow] = []
    for mode in modes:
        rows += run_mode(mode, base, work, truth, args)
    return rows, len(truth.wrong), pool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fix", type=int, default=40, help="images the person reviews per round")
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--modes", default="random,uncertain,mistakes")
    parser.add_argument("--epochs", type=int, default=10, help="round 0, from scratch")
    parser.add_argument("--warm-epochs", type=int, default=5, help="later rounds, warm started")
    parser.add_argument("--size", type=int, default=64, help="student input size (px)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; use {', '.join(MODES)}")
    logging.basicConfig(level=logging.WARNING)
    work = args.keep or Path(tempfile.mkdtemp(prefix="review-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    per_seed, wrong, pools = [], [], []
    for seed in args.seeds:
        rows, total_wrong, pool = run_seed(seed, modes, work, args)
        per_seed.append(rows)
        wrong.append(total_wrong)
        pools.append(pool)
        print()
        print(table(rows, total_wrong, pool))
        print()
    print(f"Review loop on {args.images} demo images per seed ({pools[0]} train+val, "
          f"{args.noise:.0%} of imported tags swapped), student resnet18 at {args.size} px "
          f"tags-only, {args.epochs} + {args.warm_epochs} epochs per round, {args.fix} images "
          f"reviewed per round, device {args.device}, seeds {' '.join(map(str, args.seeds))}; "
          f"{time.perf_counter() - started:.0f} s in all. Means over the seeds:")
    print()
    print(table(mean_rows(per_seed), float(np.mean(wrong)), pools[0]))
    print()
    print("\n".join(wins_over_random(per_seed, modes)))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
