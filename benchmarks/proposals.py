"""Proposal sources on the demo data: recall at IoU 0.5 of the top 100 / 500 / 2000 boxes against the
ground-truth boxes, and milliseconds per image (one process, no cache).

    .venv/bin/python benchmarks/proposals.py [--images N] [--seed S] [--sources a,b] [--keep DIR]

Recall = share of ground-truth boxes with at least one of the first N proposals at IoU >= 0.5.
For the unscored sources "first N" is their own order (sliding windows: a fixed uniform shuffle;
selective search: its hierarchy order); EdgeBoxes ranks by objectness. Times: wall-clock and
CPU milliseconds per image (decode included), one OpenCV thread; the CPU figure is the one to
compare on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.demo import generate_demo  # noqa: E402
from engine.proposals import get_source  # noqa: E402

TOPS = (100, 500, 2000)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes a (M, 4) with b (N, 4): (M, N)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def ground_truth(root: Path) -> list[tuple[Path, np.ndarray]]:
    items = []
    for split in ("train", "val", "test"):
        document = json.loads((root / f"{split}.json").read_text())
        boxes: dict[int, list[list[float]]] = {}
        for annotation in document["annotations"]:
            x, y, w, h = annotation["bbox"]
            boxes.setdefault(annotation["image_id"], []).append([x, y, x + w, y + h])
        for image in document["images"]:
            if image["id"] in boxes:
                items.append((root / "images" / image["file_name"],
                              np.asarray(boxes[image["id"]], dtype=np.float32)))
    return sorted(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="demo images (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", default="sliding,edgeboxes,selective_search")
    parser.add_argument("--keep", type=Path, help="generate the demo into this folder and keep it")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "demo"
        if not (root / "test.json").exists():
            generate_demo(root, n_images=args.images, seed=args.seed)
        items = ground_truth(root)[: args.images]
        n_gt = sum(len(gt) for _, gt in items)
        print(f"{len(items)} demo images, {n_gt} ground-truth boxes (seed {args.seed})")
        print(f"{'source':18s} {'boxes/img':>9s} " + " ".join(f"{'R@' + str(t):>7s}" for t in TOPS)
              + f" {'ms/img':>8s} {'cpu ms':>8s}")
        for name in args.sources.split(","):
            source = get_source(name.strip())
            hits = {t: 0 for t in TOPS}
            counts = []
            started, cpu_started = time.perf_counter(), time.process_time()
            results = [source.propose(path) for path, _ in items]
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            for proposals, (_, gt) in zip(results, items):
                counts.append(len(proposals))
                for top in TOPS:
                    boxes = proposals.boxes[:top]
                    if len(boxes):
                        hits[top] += int((iou_matrix(gt, boxes).max(axis=1) >= 0.5).sum())
            print(f"{name:18s} {np.mean(counts):9.0f} "
                  + " ".join(f"{hits[t] / n_gt:7.3f}" for t in TOPS)
                  + f" {1000 * elapsed / len(items):8.1f} {1000 * cpu / len(items):8.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
