"""Proposal sources on the demo data: recall at IoU 0.5 of the top 100 / 500 / 2000 boxes against the
ground-truth boxes, and milliseconds per image (one process, no cache).

    .venv/bin/python benchmarks/proposals.py [--images N] [--seed S] [--sources a,b] [--keep DIR]
    .venv/bin/python benchmarks/proposals.py --photos [--images N] [--sources a,b@max_side=256]

Recall = share of ground-truth boxes with at least one of the first N proposals at IoU >= 0.5.
For the unscored sources "first N" is their own order (sliding windows: a fixed uniform shuffle;
selective search: its hierarchy order); EdgeBoxes ranks by objectness. Times: wall-clock and
CPU milliseconds per image (decode included), one OpenCV thread; the CPU figure is the one to
compare on a busy machine, and "CPU min / 1000" is what 1,000 images cost one core, in minutes.

`--photos`: photographs instead of the small demo scenes: the GNOME wallpapers
(/usr/share/backgrounds/gnome, 4096 px), random crops of them saved as 1600 x 1200 JPEGs, with
1-4 demo objects painted in at 8-35 % of the short side (their tight boxes are the ground
truth). A source may carry settings: `selective_search@max_side=256` (see
`engine.proposals`); `mlic train --fast-proposals` is the fast preset measured here.
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


PHOTOS = Path("/usr/share/backgrounds/gnome")


def photographs(root: Path, count: int, seed: int) -> list[tuple[Path, np.ndarray]]:
    """`count` 1600 x 1200 JPEGs cut from the GNOME wallpapers, demo objects painted in."""
    from PIL import Image

    from engine.demo import CLASS_NAMES, _render_object  # noqa: PLC2701 - the demo's painter

    backgrounds = sorted(PHOTOS.glob("*.webp")) + sorted(PHOTOS.glob("*.jpg"))
    if not backgrounds:
        raise SystemExit(f"No wallpapers under {PHOTOS} (install gnome-backgrounds).")
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        with Image.open(backgrounds[index % len(backgrounds)]) as wallpaper:
            wallpaper = wallpaper.convert("RGB")
            side = int(rng.uniform(0.4, 1.0) * min(wallpaper.size))
            x, y = (int(rng.integers(0, wallpaper.size[i] - side + 1)) for i in (0, 1))
            crop = wallpaper.crop((x, y, x + side, y + side * 3 // 4)).resize((1600, 1200))
        canvas = np.asarray(crop, dtype=np.float32).copy()
        boxes = []
        for _ in range(int(rng.integers(1, 5))):
            size = int(rng.uniform(0.08, 0.35) * 1200)
            box = (int(rng.integers(0, 1600 - size)), int(rng.integers(0, 1200 - size)), size, size)
            found = _render_object(canvas, rng, CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))],
                                   box)
            if found is not None:
                bx, by, bw, bh = found
                boxes.append([bx, by, bx + bw, by + bh])
        path = root / f"photo-{index:04d}.jpg"
        Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).save(path, quality=90)
        if boxes:
            items.append((path, np.asarray(boxes, dtype=np.float32)))
    return items


def source_of(spec: str):  # noqa: ANN201
    """`name` or `name@key=value,key=value` (numbers as numbers)."""
    name, _, settings = spec.strip().partition("@")
    params = {}
    for pair in filter(None, settings.split(",")):
        key, _, value = pair.partition("=")
        params[key] = float(value) if "." in value else int(value)
    return get_source(name, **params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="demo images (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", default="sliding,edgeboxes,selective_search")
    parser.add_argument("--keep", type=Path, help="generate the demo into this folder and keep it")
    parser.add_argument("--photos", action="store_true",
                        help="photographs (GNOME wallpapers with demo objects) instead of the demo")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "demo"
        if args.photos:
            items = photographs(root / "photos", args.images, args.seed)
        else:
            if not (root / "test.json").exists():
                generate_demo(root, n_images=args.images, seed=args.seed)
            items = ground_truth(root)[: args.images]
        n_gt = sum(len(gt) for _, gt in items)
        kind = "photographs (1600 x 1200)" if args.photos else "demo images"
        print(f"{len(items)} {kind}, {n_gt} ground-truth boxes (seed {args.seed})")
        print(f"{'source':34s} {'boxes/img':>9s} "
              + " ".join(f"{'R@' + str(t):>7s}" for t in TOPS)
              + f" {'ms/img':>8s} {'cpu ms':>8s} {'CPU min / 1000':>15s}")
        for name in args.sources.split(","):
            source = source_of(name)
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
            print(f"{name.strip():34s} {np.mean(counts):9.0f} "
                  + " ".join(f"{hits[t] / n_gt:7.3f}" for t in TOPS)
                  + f" {1000 * elapsed / len(items):8.1f} {1000 * cpu / len(items):8.1f}"
                  + f" {1000 * cpu / len(items) / 60:15.1f}", flush=True)


if __name__ == "__main__":
    main()
