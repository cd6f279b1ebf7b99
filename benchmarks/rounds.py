"""Rounds a person can feel: from a batch of corrections to refreshed suggestions.

    .venv/bin/python benchmarks/rounds.py [--sizes 3000,30000] [--images 300] [--epochs 3]

Part 1, scale (no decoding, so any size runs here): a project of N synthetic images (70/15/15
train/val/test, 20 classes, 1-3 positive tags each) whose student embeddings (512-d, float16) are
already cached, as after a deep round. A person makes 50 corrections; the quick round then refits
the head, scores all N images, replaces the previous suggestions, calibrates the thresholds and
measures itself on val (`engine.review.rounds.train_round`, stage quick). Printed: wall and CPU
seconds. The same time *without* cached embeddings is that plus computing them; part 2 measures
that rate on real JPEGs, and the line "uncached" extrapolates it to N.

Part 3, responsiveness: the real main window (offscreen) on demo images; the Right arrow is
pressed at a person's pace (every 250 ms) and the time to the gallery's repaint is measured, idle
and while a deep round trains in the background (median, 95th percentile, max).

Part 2, accuracy (demo photos, `engine.demo`): the demo's train tags with 25 % of the positive tags
dropped (a partially tagged library); a deep round (student, EfficientNet-Lite0 from its bundled
ImageNet weights, no distillation) from those tags. Then the person restores the dropped tags of
half of the train images, and the two ways to learn from that are timed and measured on the test
split (mAP through `engine.metrics`): a quick round, and a deep round warm-started from the first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.inference.embeddings import Embeddings, ensure_embeddings, save_embeddings  # noqa: E402,E501
from engine.models.checkpoint import save_checkpoint  # noqa: E402
from engine.models.student import Student  # noqa: E402
from engine.review.rounds import evaluate_round, train_round  # noqa: E402
from engine.store import Store, TagEdit  # noqa: E402
from engine.training import TrainConfig  # noqa: E402

CLASSES = 20
DIM = 512


def timed(function):  # noqa: ANN001, ANN201
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def synthetic_project(root: Path, n: int, seed: int = 0) -> Store:
    """N image rows with tags and cached embeddings of a registered (random-init) student."""
    rng = np.random.default_rng(seed)
    store = Store.open(root)
    names = [f"class{k:02d}" for k in range(CLASSES)]
    store.classes.ensure(names)
    root_id = store.roots.get_or_create(root).id
    splits = rng.choice(["train", "val", "test"], size=n, p=[0.7, 0.15, 0.15])
    ids = store.images.add_many([{"root_id": root_id, "rel_path": f"img{i:06d}.jpg",
                                  "content_hash": f"h{i}", "width": 640, "height": 480,
                                  "split": str(splits[i])} for i in range(n)])
    labels = np.zeros((n, CLASSES), np.float32)
    for i in range(n):
        labels[i, rng.choice(CLASSES, size=rng.integers(1, 4), replace=False)] = 1
    class_ids = [c.id for c in store.classes.list()]
    store.tags.apply([TagEdit(ids[i], class_ids[k], "positive") for i, k in zip(*labels.nonzero())],
                     source="import")
    prototypes = rng.normal(size=(CLASSES, DIM))
    features = labels @ prototypes / 2 + 4 * rng.normal(size=(n, DIM))
    run = _register_student(store, names)
    save_embeddings(store, run.model_version, Embeddings(np.array(ids, np.int64),
                                               np.array([f"h{i}" for i in range(n)], "U64"),
                                               np.maximum(features, 0).astype(np.float16)))
    return store


def _register_student(store: Store, names: list[str]):  # noqa: ANN202
    model = Student("resnet18", len(names), image_size=64)
    run = store.runs.create("student", {"student_image_size": 64}, names)
    path = store.paths.models_dir / f"{run.model_version}.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": model.config,
                           "class_names": names, "stage": "student"})
    store.runs.update(run.id, status="completed", finished=True,
                      checkpoint=str(path.relative_to(store.paths.root)))
    return store.runs.get(run.id)


def corrections(store: Store, count: int, seed: int = 1) -> None:
    """A person's burst of corrections on train images: `count` tags flipped."""
    rng = np.random.default_rng(seed)
    train = store.images.ids(split="train")
    class_ids = [c.id for c in store.classes.list()]
    edits = [TagEdit(int(i), int(rng.choice(class_ids)), str(rng.choice(["positive", "negative"])))
             for i in rng.choice(train, size=min(count, len(train)), replace=False)]
    store.tags.apply(edits, source="person")


def scale(sizes: list[int], rate: float | None) -> None:
    print("part 1: corrections -> refreshed suggestions (quick round, embeddings cached)")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = synthetic_project(Path(tmp) / "project", n)
            corrections(store, 50)
            outcome, wall, cpu = timed(lambda: train_round(  # noqa: B023
                store, TrainConfig(stage="quick", device="cpu")))
            run = outcome.runs[0]
            figures = outcome.figures.get(run.model_version)
            line = (f"  {n:>7} images: {wall:6.2f} s wall, {cpu:6.2f} s CPU; {run.status}, "
                    f"val mAP {figures.mAP:.3f}" if figures else "")
            if rate:
                line += f"; uncached (+ {n / rate:.0f} s of embeddings at {rate:.0f} img/s)"
            print(line, flush=True)
            store.close()


def accuracy(images: int, epochs: int, size: int) -> float:
    """Part 2; returns the embedding rate (images/s) measured in the deep round."""
    from engine.demo import generate_demo, import_demo

    print(f"part 2: {images} demo images, student efficientnet_lite0 at {size} px, "
          f"{epochs} epochs, 25 % of the positive train tags missing")
    with tempfile.TemporaryDirectory() as tmp:
        demo = generate_demo(Path(tmp) / "demo", n_images=images, seed=0)
        store = Store.open(Path(tmp) / "project")
        import_demo(store, demo.root)
        dropped = _drop_positives(store, 0.25)
        config = TrainConfig(stage="student", kd="none", student_backbone="efficientnet_lite0",
                             pretrained=True, student_image_size=size, epochs=epochs,
                             batch_size=16, lr=2e-3, device="cpu")
        first, wall, _ = timed(lambda: train_round(store, config))
        version = first.runs[0].model_version
        deep_map = evaluate_round(store, version, split="test").mAP
        print(f"  deep round 1: {wall:6.1f} s (training, then every image embedded and scored), "
              f"test mAP {deep_map:.3f}")
        shutil.rmtree(store.paths.cache_dir / "embeddings" / version)
        _, e_wall, _ = timed(lambda: ensure_embeddings(store, version, device="cpu"))
        rate = images / max(e_wall, 1e-9)
        print(f"  embeddings of {images} images, uncached: {e_wall:.1f} s ({rate:.0f} img/s)")
        store.tags.apply(dropped[: len(dropped) // 2], source="person")
        quick, q_wall, _ = timed(lambda: train_round(store, TrainConfig(stage="quick",
                                                                         device="cpu")))
        quick_map = evaluate_round(store, quick.runs[0].model_version, split="test").mAP
        print(f"  after corrections, quick round: {q_wall:6.1f} s, test mAP {quick_map:.3f}")
        deep, d_wall, _ = timed(lambda: train_round(store, config))
        deep2_map = evaluate_round(store, deep.runs[0].model_version, split="test").mAP
        print(f"  after corrections, deep round: {d_wall:6.1f} s, test mAP {deep2_map:.3f}")
        print(f"  quick/deep time {q_wall / max(d_wall, 1e-9):.3f}; mAP quick - deep "
              f"{quick_map - deep2_map:+.3f}", flush=True)
        store.close()
        return rate


def _drop_positives(store: Store, share: float) -> list[TagEdit]:
    """Turn `share` of the train split's positive tags into negatives (the demo is exhaustive, so a
    positive left out would be unknown, not the missed tag it stands for here); returns the edits
    that restore them."""
    rng = np.random.default_rng(0)
    train = set(store.images.ids(split="train"))
    tags = [t for rows in store.tags.for_images(sorted(train)).values() for t in rows
            if t.positive]
    chosen = [tags[i] for i in rng.choice(len(tags), size=int(len(tags) * share), replace=False)]
    store.tags.apply([TagEdit(t.image_id, t.class_id, "negative") for t in chosen],
                     source="import")
    return [TagEdit(t.image_id, t.class_id, "positive") for t in chosen]


def latency(images: int, epochs: int, size: int) -> None:
    """Part 3: key-to-repaint latency of the gallery (Right arrow: the next image) in the real
    window, offscreen, before and while a deep round trains in the background."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QSettings, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from engine.demo import generate_demo, import_demo

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        demo = generate_demo(Path(tmp) / "demo", n_images=images, seed=0)
        with Store.open(Path(tmp) / "project") as store:
            import_demo(store, demo.root)
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(project_dir=Path(tmp) / "project", settings=settings,
                            offer_demo=False)
        window.resize(1400, 860)
        window.show()
        painted = [0.0]
        window.gallery.painted.connect(lambda: painted.__setitem__(0, time.perf_counter()))

        def wait(condition, seconds: float) -> None:  # noqa: ANN001
            deadline = time.perf_counter() + seconds
            while not condition() and time.perf_counter() < deadline:
                app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 10)

        def press() -> float:
            started = time.perf_counter()
            QTest.keyClick(window.gallery, Qt.Key.Key_Right)
            wait(lambda: painted[0] > started, 2.0)
            wait(lambda: time.perf_counter() - started > 0.25, 1.0)      # a person's pace
            return (painted[0] - started) * 1000 if painted[0] > started else 2000.0

        wait(lambda: window.model.rowCount() == images, 60)
        window.gallery.select_row(0)
        idle = [press() for _ in range(20)]
        panel = window.loop_docks.training
        panel.start(TrainConfig(stage="student", kd="none", student_backbone="resnet18",
                                pretrained=False, student_image_size=size,
                                epochs=epochs, batch_size=16, device="cpu"))
        busy = []
        while panel.running and len(busy) < 400:
            busy.append(press())
            if window.gallery.currentIndex().row() >= images - 2:
                window.gallery.select_row(0)
        wait(lambda: not panel.running, 600)
        window.close()
    for label, values in (("idle", idle), ("while a deep round trains", busy)):
        if values:
            ordered = sorted(values)
            print(f"  key-to-repaint {label}: median {ordered[len(values) // 2]:.0f} ms, "
                  f"95th {ordered[int(len(values) * 0.95) - 1]:.0f} ms, max {ordered[-1]:.0f} ms "
                  f"({len(values)} key presses)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="3000,30000", help="part 1 project sizes")
    parser.add_argument("--images", type=int, default=300, help="part 2 demo images (0: skip)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=128, help="student input size, part 2")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--latency-images", type=int, default=200,
                        help="part 3 demo images (0: skip)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    rate = accuracy(args.images, args.epochs, args.size) if args.images else None
    scale([int(n) for n in args.sizes.split(",") if n], rate)
    if args.latency_images:
        print("part 3: the gallery's key-to-repaint latency (offscreen window)")
        latency(args.latency_images, args.epochs, args.size)


if __name__ == "__main__":
    main()
