"""The photo benchmark's data: cut-out objects composited onto real photographs, COCO ground truth.

    generate_photos(out_dir, n_images=300, seed=0, extra_test=0) -> PhotoDataset

Backgrounds are the photographs of Debian's `gnome-backgrounds` package (`sudo apt-get install
gnome-backgrounds`, files in /usr/share/backgrounds/gnome; the raster ones, .webp/.jpg/.png, are
used): each image is a random crop of one of them at a random zoom, so the same photograph gives
many different scenes. The photograph is the scene type: each favours its own 10 classes (80 %
of the labelled objects are drawn from them), so classes co-occur by scene as in a photo library.

Objects are the demo's procedural shapes and textures (`engine.demo`), recombined into 40
classes in confusable groups: 10 shapes, each in 4 variants that share the shape and differ only
in texture (2 textures) or only in colour (2 palettes), e.g. `warm_stripes_circle` against
`cool_stripes_circle` and `warm_dots_circle`. Each image holds 1-5 labelled objects, 5-30 % of the
image's short side, softly alpha-matted with random shading, plus 0-3 unlabelled distractors
(shapes and textures of no class, in other colours) that a model must learn to ignore.

Files: `images/*.jpg`, `train.json`, `val.json`, `test.json` (70 / 15 / 15 %), COCO with one
`bbox` per labelled object and the image-level `labels` field of the demo, and
`extra_test` more images rendered after those join the test split only (the first `n_images`, and
so the train and val splits, stay the same): a larger test split steadies the figures without
changing what is trained. `train_partial.json`: the train split with half of each image's positive labels (and their boxes)
dropped at random (at least one kept) and no negatives, flagged `"mlic_labels": "partial"` in
its `info`: a missing label there means unknown, not absent.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.demo import _CLASSES as DEMO_FIELDS
from engine.demo import DemoDataset
from engine.errors import UserError
from engine.files import write_json_atomic

BACKGROUND_DIR = Path("/usr/share/backgrounds/gnome")
INSTALL_HINT = "sudo apt-get install gnome-backgrounds"
RASTER = (".webp", ".jpg", ".jpeg", ".png")

# shape -> (demo class whose mask it borrows, two textures); distractor shapes are the other two
SHAPES = {
    "circle": ("striped_circle", ("stripes", "dots")),
    "square": ("checkered_square", ("checker", "hatch")),
    "triangle": ("dotted_triangle", ("dots", "waves")),
    "star": ("star", ("glow", "zigzag")),
    "ring": ("ring", ("bands", "stripes")),
    "cross": ("cross", ("hatch", "grid")),
    "hexagon": ("hexagon", ("grid", "checker")),
    "crescent": ("crescent", ("waves", "bands")),
    "heart": ("heart", ("speckle", "stripes")),
    "arrow": ("arrow", ("zigzag", "dots")),
}
DISTRACTOR_SHAPES = ("gradient_ellipse", "diamond")
TEXTURES = {"stripes": "striped_circle", "dots": "dotted_triangle", "checker": "checkered_square",
            "hatch": "cross", "waves": "crescent", "glow": "star", "zigzag": "arrow",
            "bands": "ring", "grid": "hexagon", "speckle": "heart", "diamonds": "diamond"}
PALETTES = {"warm": ((225, 70, 35), (250, 215, 70)), "cool": ((35, 90, 210), (150, 230, 240))}
DISTRACTOR_PALETTES = (((60, 160, 60), (230, 240, 200)), ((130, 60, 160), (240, 200, 240)),
                       ((90, 90, 90), (250, 250, 250)))
CLASS_NAMES = tuple(f"{palette}_{texture}_{shape}" for shape, (_, textures) in SHAPES.items()
                    for texture in textures for palette in PALETTES)
SPLITS = {"train": 0.70, "val": 0.15, "test": 0.15}
FAVOURED = 10            # classes a scene favours
FAVOUR = 0.8             # share of labelled objects drawn from them
OBJECT_SIDE = (0.05, 0.30)
SIZE = (320, 240)        # generated image size (width, height); either orientation


@dataclass(frozen=True)
class PhotoDataset:
    """Where `generate_photos` wrote its files."""

    root: Path
    images_dir: Path
    class_names: list[str]
    n_images: int
    partial_json: Path

    def as_demo(self) -> DemoDataset:
        """The same files as a `DemoDataset`, for `engine.demo.import_demo`."""
        return DemoDataset(self.root, self.images_dir, self.class_names,
                           {s: self.root / f"{s}.json" for s in SPLITS}, self.n_images)


def background_files(directory: Path = BACKGROUND_DIR) -> list[Path]:
    """The raster photographs of the backgrounds package; UserError (with the install line)
    when there are none."""
    files = sorted(p for p in directory.glob("*") if p.suffix.lower() in RASTER) \
        if directory.is_dir() else []
    if not files:
        raise UserError(f"No background photographs in {directory}; install them with "
                        f"`{INSTALL_HINT}`.")
    return files


def _load_backgrounds(files: list[Path]) -> list[np.ndarray]:
    """Each photograph decoded once, its short side reduced to 720 px (float32 RGB)."""
    out = []
    for path in files:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = 720 / min(image.size)
            if scale < 1:
                image = image.resize((round(image.width * scale), round(image.height * scale)),
                                     Image.Resampling.LANCZOS)
            out.append(np.asarray(image, dtype=np.float32))
    return out


def _scene(photo: np.ndarray, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random crop of `photo` at a random zoom, resized to width x height, random brightness."""
    ph, pw = photo.shape[:2]
    zoom = rng.uniform(0.35, 1.0)
    cw = min(pw, int(min(pw, ph * width / height) * zoom))
    ch = min(ph, int(cw * height / width))
    x, y = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    crop = Image.fromarray(photo[y:y + ch, x:x + cw].astype(np.uint8))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    crop = crop.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(crop, dtype=np.float32) * rng.uniform(0.8, 1.15)


def _paint(canvas: np.ndarray, rng: np.random.Generator, shape: str, texture: str,
           colours: tuple[tuple[int, int, int], tuple[int, int, int]],
           box: tuple[int, int, int, int]) -> tuple[float, float, float, float] | None:
    """Paint one object (demo shape mask, demo texture, `colours`) into `box`; its tight bbox."""
    x0, y0, w, h = box
    ys, xs = np.mgrid[0:h * 2, 0:w * 2].astype(np.float32)
    u, v = (xs + 0.5) / (w * 2) * 2 - 1, (ys + 0.5) / (h * 2) * 2 - 1
    angle = rng.uniform(-0.6, 0.6)
    ru = math.cos(angle) * u + math.sin(angle) * v
    rv = -math.sin(angle) * u + math.cos(angle) * v
    alpha = DEMO_FIELDS[shape][0](ru, rv).astype(np.float32).reshape(h, 2, w, 2).mean(axis=(1, 3))
    weight = DEMO_FIELDS[TEXTURES[texture]][1](ru, rv, rng.uniform(8, 13))
    weight = weight.reshape(h, 2, w, 2).mean(axis=(1, 3))
    if alpha.max() <= 0:
        return None
    c1, c2 = (np.clip(np.asarray(c, np.float32) * rng.uniform(0.85, 1.12, 3), 0, 255)
              for c in colours)
    colour = c1 * (1 - weight[..., None]) + c2 * weight[..., None]
    shade = 1 + rng.uniform(-0.25, 0.25) * (u.reshape(h, 2, w, 2).mean(axis=(1, 3)))[..., None]
    region = canvas[y0:y0 + h, x0:x0 + w]
    region[:] = region * (1 - alpha[..., None]) + colour * shade * alpha[..., None]
    rows, cols = np.flatnonzero(alpha.max(axis=1) > 0.25), np.flatnonzero(alpha.max(axis=0) > 0.25)
    if rows.size == 0 or cols.size == 0:
        return None
    return (float(x0 + cols[0]), float(y0 + rows[0]), float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1))


def _place(rng: np.random.Generator, width: int, height: int,
           placed: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """A box of 5-30 % of the short side that overlaps the placed ones little (12 tries)."""
    short = min(width, height)
    box = (0, 0, 1, 1)
    for _ in range(12):
        side = rng.uniform(*OBJECT_SIDE) * short
        aspect = rng.uniform(0.8, 1.25)
        w, h = max(8, int(side * aspect)), max(8, int(side / aspect))
        box = (int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h)
        if all(_overlap(box, other) < 0.3 for other in placed):
            break
    return box


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / max(1, min(a[2] * a[3], b[2] * b[3]))


def render_photo(backgrounds: list[np.ndarray], favoured: list[list[int]], seed: int,
                 index: int) -> tuple[Image.Image, int, list[tuple[int, tuple[float, ...]]]]:
    """One benchmark image: (image, scene index, [(class index, bbox xywh)]), deterministic."""
    rng = np.random.default_rng([seed, index, 17])
    width, height = SIZE if rng.random() < 0.75 else SIZE[::-1]
    scene = int(rng.integers(len(backgrounds)))
    canvas = _scene(backgrounds[scene], rng, width, height)
    labelled: list[int] = []
    for _ in range(int(rng.choice([1, 2, 3, 4, 5], p=[0.25, 0.3, 0.2, 0.15, 0.1]))):
        pool = favoured[scene] if rng.random() < FAVOUR else list(range(len(CLASS_NAMES)))
        fresh = [k for k in pool if k not in labelled] or pool
        labelled.append(int(fresh[int(rng.integers(len(fresh)))]))
    kinds = [("class", k) for k in labelled] + [("distractor", -1)] * int(rng.integers(0, 4))
    order = rng.permutation(len(kinds))
    placed: list[tuple[int, int, int, int]] = []
    objects: list[tuple[int, tuple[float, ...]]] = []
    for i in order:
        kind, k = kinds[int(i)]
        box = _place(rng, width, height, placed)
        if kind == "class":
            palette, texture, shape = CLASS_NAMES[k].split("_")
            bbox = _paint(canvas, rng, SHAPES[shape][0], texture, PALETTES[palette], box)
        else:
            shape = DISTRACTOR_SHAPES[int(rng.integers(len(DISTRACTOR_SHAPES)))]
            texture = list(TEXTURES)[int(rng.integers(len(TEXTURES)))]
            colours = DISTRACTOR_PALETTES[int(rng.integers(len(DISTRACTOR_PALETTES)))]
            bbox = _paint(canvas, rng, shape, texture, colours, box)
        placed.append(box)
        if kind == "class" and bbox is not None:
            objects.append((k, bbox))
    canvas += rng.normal(0, 3.0, size=canvas.shape)
    image = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    return image, scene, objects


def generate_photos(out_dir: Path | str, n_images: int = 300, seed: int = 0,
                    backgrounds_dir: Path = BACKGROUND_DIR, extra_test: int = 0) -> PhotoDataset:
    """Write the benchmark's images and COCO files under `out_dir` (see the module docstring):
    `n_images` split 70 / 15 / 15 %, then `extra_test` more test images."""
    root = Path(out_dir).expanduser().resolve()
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    files = background_files(backgrounds_dir)
    backgrounds = _load_backgrounds(files)
    rng = np.random.default_rng(seed)
    favoured = [sorted(rng.choice(len(CLASS_NAMES), FAVOURED, replace=False).tolist())
                for _ in backgrounds]
    order = rng.permutation(n_images)
    cut = [int(round(n_images * SPLITS["train"])), int(round(n_images * (1 - SPLITS["test"])))]
    split_of = {int(i): ("train" if r < cut[0] else "val" if r < cut[1] else "test")
                for r, i in enumerate(order)}
    split_of.update((index, "test") for index in range(n_images, n_images + extra_test))
    content = {s: {"images": [], "annotations": []} for s in SPLITS}
    ids = itertools.count(1)
    for index in range(n_images + extra_test):
        image, scene, objects = render_photo(backgrounds, favoured, seed, index)
        name = f"{index:06d}.jpg"
        image.save(images_dir / name, "JPEG", quality=90)
        part = content[split_of[index]]
        part["images"].append({"id": index + 1, "file_name": name, "width": image.width,
                               "height": image.height, "scene": files[scene].name,
                               "labels": sorted({k + 1 for k, _ in objects})})
        part["annotations"].extend(
            {"id": next(ids), "image_id": index + 1, "category_id": k + 1, "bbox": list(box),
             "area": box[2] * box[3], "iscrowd": 0} for k, box in objects)
    for split, part in content.items():
        _write_coco(root / f"{split}.json", part, f"{split} split (seed {seed})")
    partial = root / "train_partial.json"
    _write_coco(partial, _drop_half(content["train"], seed), f"train split (seed {seed}), half "
                f"of each image's positive labels dropped", partial_labels=True)
    return PhotoDataset(root, images_dir, list(CLASS_NAMES), n_images + extra_test, partial)


def _drop_half(part: dict[str, list[dict[str, Any]]], seed: int) -> dict[str, list[dict[str, Any]]]:
    """The split with half of each image's positive labels (rounded down, one always kept) and
    their boxes dropped at random."""
    rng = np.random.default_rng([seed, 99])
    images, kept_pairs = [], set()
    for entry in part["images"]:
        labels = list(entry["labels"])
        keep = sorted(rng.choice(labels, len(labels) - len(labels) // 2, replace=False).tolist()) \
            if labels else []
        kept_pairs.update((entry["id"], k) for k in keep)
        images.append({**entry, "labels": keep})
    annotations = [a for a in part["annotations"] if (a["image_id"], a["category_id"]) in kept_pairs]
    return {"images": images, "annotations": annotations}


def _write_coco(path: Path, part: dict[str, list[dict[str, Any]]], description: str,
                partial_labels: bool = False) -> None:
    info: dict[str, Any] = {"description": f"mlic photo benchmark, {description}", "version": "1",
                            "mlic_image_labels": "Each image carries 'labels': the ids of the "
                                                 "categories present in it."}
    if partial_labels:
        info["mlic_labels"] = "partial"
    write_json_atomic(path, {
        "info": info, "licenses": [], "images": part["images"],
        "annotations": part["annotations"],
        "categories": [{"id": k + 1, "name": name, "supercategory": name.rsplit("_", 1)[1]}
                       for k, name in enumerate(CLASS_NAMES)]}, indent=None)
