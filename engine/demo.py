"""The project's own demo data: procedural multi-object scenes with COCO ground truth.

`generate_demo(out_dir, n_images=300, seed=0)` writes

- `out_dir/images/000000.jpg ...`: JPEG images, 224-288 px wide and 192-256 px high, each a
  textured background with 1-4 objects at random positions, scales (15-50 % of the image's shorter
  side) and small rotations, later objects occluding earlier ones;
- `out_dir/train.json`, `val.json`, `test.json`: COCO files (70 / 15 / 15 % of the images) with
  `images`, `categories` and `annotations` (one tight `bbox` [x, y, w, h] per object, in pixels),
  plus the image-level labels field documented in `engine.exchange.coco` (`"labels"`: the category
  ids present in the image). `file_name` is relative to `out_dir/images`.

There are 12 object classes, each with its own shape *and* its own texture, so that neither cue
alone is needed to tell them apart but both help:

| class | shape | texture |
| --- | --- | --- |
| striped_circle | disc | parallel stripes |
| checkered_square | square | checkerboard |
| dotted_triangle | triangle | dot grid |
| star | five-pointed star | radial glow |
| ring | annulus | concentric bands |
| cross | plus sign | diagonal hatching |
| hexagon | hexagon | grid lines |
| crescent | crescent moon | wavy lines |
| heart | heart | speckle on a flat colour |
| arrow | arrow | zigzag |
| gradient_ellipse | flat ellipse | linear two-colour gradient |
| diamond | rhombus | concentric diamonds |

Images belong to one of four scene types; each favours a subset of classes (85 % of the objects
are drawn from it), so classes co-occur as in real photographs. Everything is a deterministic
function of `seed` (each image has its own generator seeded by `(seed, index)`).

`import_demo(store, out_dir)` imports the three files with their splits through the COCO importer:
classes, image-level tags (source `import`) and evaluation-only ground-truth boxes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from engine.errors import UserError
from engine.files import write_json_atomic

if TYPE_CHECKING:
    from engine.store import Store

CLASS_NAMES: tuple[str, ...] = (
    "striped_circle", "checkered_square", "dotted_triangle", "star", "ring", "cross",
    "hexagon", "crescent", "heart", "arrow", "gradient_ellipse", "diamond",
)

SCENES: dict[str, tuple[str, ...]] = {
    "playground": ("striped_circle", "star", "heart", "ring", "arrow"),
    "workshop": ("checkered_square", "cross", "hexagon", "arrow", "diamond"),
    "night_sky": ("star", "crescent", "ring", "gradient_ellipse", "dotted_triangle"),
    "market": ("heart", "diamond", "checkered_square", "gradient_ellipse", "dotted_triangle",
               "striped_circle"),
}

SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
_SCENE_FAVOUR = 0.85
_OBJECT_COUNTS = (1, 2, 3, 4)
_OBJECT_COUNT_P = (0.3, 0.35, 0.23, 0.12)
_SUPERSAMPLE = 2

# Base colours (RGB) per class, jittered per object.
_COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "striped_circle": ((220, 60, 40), (250, 220, 60)),
    "checkered_square": ((30, 30, 30), (235, 235, 235)),
    "dotted_triangle": ((40, 90, 200), (245, 245, 210)),
    "star": ((255, 215, 40), (200, 120, 0)),
    "ring": ((40, 170, 90), (20, 80, 40)),
    "cross": ((200, 30, 60), (250, 180, 190)),
    "hexagon": ((120, 70, 180), (220, 200, 240)),
    "crescent": ((230, 230, 160), (150, 150, 90)),
    "heart": ((235, 60, 130), (255, 160, 200)),
    "arrow": ((20, 140, 160), (200, 250, 250)),
    "gradient_ellipse": ((250, 120, 20), (60, 20, 120)),
    "diamond": ((70, 200, 230), (10, 60, 120)),
}


@dataclass(frozen=True)
class DemoDataset:
    """Where generate_demo wrote its files. `split_files` maps train/val/test to COCO files."""

    root: Path
    images_dir: Path
    class_names: list[str]
    split_files: dict[str, Path] = field(default_factory=dict)
    n_images: int = 0

    @property
    def train_json(self) -> Path:
        return self.split_files["train"]

    @property
    def val_json(self) -> Path:
        return self.split_files["val"]

    @property
    def test_json(self) -> Path:
        return self.split_files["test"]


@dataclass(frozen=True)
class DemoObject:
    class_name: str
    bbox: tuple[float, float, float, float]  # x, y, w, h in pixels


# ---------------------------------------------------------------------------------------------
# shapes: boolean-ish masks on normalised coordinates u, v in [-1, 1]

def _polar(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.hypot(u, v), np.arctan2(v, u)


def _shape_circle(u, v):
    return u * u + v * v <= 0.95


def _shape_square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.85


def _shape_triangle(u, v):
    return (v <= 0.8) & (np.abs(u) <= (v + 0.95) / 1.75 * 1.0)


def _shape_star(u, v):
    r, t = _polar(u, v)
    spikes = (np.cos(5 * (t + math.pi / 2)) + 1) / 2
    return r <= 0.42 + 0.56 * spikes ** 2.2


def _shape_ring(u, v):
    r = np.hypot(u, v)
    return (r <= 0.97) & (r >= 0.58)


def _shape_cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))


def _shape_hexagon(u, v):
    au, av = np.abs(u), np.abs(v)
    return (av <= 0.84) & (au + av * 0.577 <= 0.97)


def _shape_crescent(u, v):
    return (u * u + v * v <= 0.95) & ((u - 0.42) ** 2 + (v + 0.08) ** 2 >= 0.62)


def _shape_heart(u, v):
    x, y = u * 1.25, -v * 1.25 + 0.25
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0


def _shape_arrow(u, v):
    shaft = (np.abs(v) <= 0.2) & (u >= -0.95) & (u <= 0.15)
    head = (u >= 0.1) & (u <= 0.95) & (np.abs(v) <= (0.95 - u) * 1.05)
    return shaft | head


def _shape_ellipse(u, v):
    return (u / 0.97) ** 2 + (v / 0.55) ** 2 <= 1


def _shape_diamond(u, v):
    return np.abs(u) / 0.62 + np.abs(v) / 0.97 <= 1


# textures: weight in [0, 1] between the class's two colours

def _tex_stripes(u, v, f):
    return (np.sin(u * f * 1.2) > 0).astype(np.float32)


def _tex_checker(u, v, f):
    k = f / 3.2
    return ((np.floor((u + 1) * k) + np.floor((v + 1) * k)) % 2).astype(np.float32)


def _tex_dots(u, v, f):
    k = f / 3.0
    du = (u + 1) * k % 1 - 0.5
    dv = (v + 1) * k % 1 - 0.5
    return (du * du + dv * dv <= 0.09).astype(np.float32)


def _tex_glow(u, v, f):
    return np.clip(np.hypot(u, v), 0, 1).astype(np.float32)


def _tex_bands(u, v, f):
    return (np.sin(np.hypot(u, v) * f * 1.6) > 0).astype(np.float32)


def _tex_hatch(u, v, f):
    return (np.sin((u + v) * f * 1.1) > 0.3).astype(np.float32)


def _tex_grid(u, v, f):
    k = f * 0.9
    return ((np.abs(np.sin(u * k)) < 0.3) | (np.abs(np.sin(v * k)) < 0.3)).astype(np.float32)


def _tex_waves(u, v, f):
    return (np.sin(v * f * 1.3 + 2.2 * np.sin(u * 4)) > 0).astype(np.float32)


def _tex_speckle(u, v, f, rng=None):
    noise = np.sin(u * 37.1 + v * 11.3) * np.sin(v * 29.7 - u * 5.1)
    return (noise > 0.55).astype(np.float32)


def _tex_zigzag(u, v, f):
    k = f / 2.5
    saw = np.abs((u * k) % 2 - 1)
    return (np.abs(v * k * 0.8 % 2 - 1 - (saw - 0.5)) < 0.35).astype(np.float32)


def _tex_gradient(u, v, f):
    return np.clip((u + 1) / 2, 0, 1).astype(np.float32)


def _tex_diamonds(u, v, f):
    return (np.sin((np.abs(u) + np.abs(v)) * f * 1.4) > 0).astype(np.float32)


_Field = Callable[..., np.ndarray]
_CLASSES: dict[str, tuple[_Field, _Field]] = {
    "striped_circle": (_shape_circle, _tex_stripes),
    "checkered_square": (_shape_square, _tex_checker),
    "dotted_triangle": (_shape_triangle, _tex_dots),
    "star": (_shape_star, _tex_glow),
    "ring": (_shape_ring, _tex_bands),
    "cross": (_shape_cross, _tex_hatch),
    "hexagon": (_shape_hexagon, _tex_grid),
    "crescent": (_shape_crescent, _tex_waves),
    "heart": (_shape_heart, _tex_speckle),
    "arrow": (_shape_arrow, _tex_zigzag),
    "gradient_ellipse": (_shape_ellipse, _tex_gradient),
    "diamond": (_shape_diamond, _tex_diamonds),
}
assert set(_CLASSES) == set(CLASS_NAMES) == set(_COLOURS)


# ---------------------------------------------------------------------------------------------
# rendering

def _muted(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(60, 200, size=3)
    grey = base.mean()
    return grey + (base - grey) * rng.uniform(0.2, 0.6)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    kind = rng.integers(4)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    c1, c2 = _muted(rng), _muted(rng)
    if kind == 0:  # smooth noise blotches
        small = rng.uniform(0, 1, size=(rng.integers(3, 8), rng.integers(3, 8))).astype(np.float32)
        weight = np.asarray(Image.fromarray(small, mode="F").resize((width, height),
                                                                    Image.Resampling.BICUBIC))
    elif kind == 1:  # linear gradient
        angle = rng.uniform(0, 2 * math.pi)
        proj = xs * math.cos(angle) + ys * math.sin(angle)
        weight = (proj - proj.min()) / max(1e-6, float(np.ptp(proj)))
    elif kind == 2:  # soft wide stripes
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(18, 60)
        proj = xs * math.cos(angle) + ys * math.sin(angle)
        weight = (np.sin(proj * 2 * math.pi / period) + 1) / 2
    else:  # radial vignette
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        dist = np.hypot(xs - cx, ys - cy)
        weight = dist / max(1e-6, float(dist.max()))
    weight = np.clip(weight, 0, 1)[..., None]
    image = c1 * (1 - weight) + c2 * weight
    image += rng.normal(0, rng.uniform(3, 12), size=image.shape)
    return image.astype(np.float32)


def _render_object(canvas: np.ndarray, rng: np.random.Generator, name: str,
                   box: tuple[int, int, int, int]) -> tuple[float, float, float, float] | None:
    """Paint one object into `canvas` inside `box` (x, y, w, h); return its tight bbox."""
    x0, y0, w, h = box
    shape_fn, texture_fn = _CLASSES[name]
    s = _SUPERSAMPLE
    ys, xs = np.mgrid[0:h * s, 0:w * s].astype(np.float32)
    u = (xs + 0.5) / (w * s) * 2 - 1
    v = (ys + 0.5) / (h * s) * 2 - 1
    angle = rng.uniform(-0.5, 0.5)
    if name == "arrow" and rng.random() < 0.5:
        angle += math.pi
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    ru, rv = cos_a * u + sin_a * v, -sin_a * u + cos_a * v
    mask = shape_fn(ru, rv).astype(np.float32)
    frequency = rng.uniform(9, 13)
    weight = texture_fn(ru, rv, frequency)
    alpha = mask.reshape(h, s, w, s).mean(axis=(1, 3))
    weight = weight.reshape(h, s, w, s).mean(axis=(1, 3))
    if alpha.max() <= 0:
        return None
    c1, c2 = (np.asarray(c, dtype=np.float32) for c in _COLOURS[name])
    jitter = rng.uniform(0.85, 1.12, size=3).astype(np.float32)
    c1, c2 = np.clip(c1 * jitter, 0, 255), np.clip(c2 * jitter, 0, 255)
    colour = c1 * (1 - weight[..., None]) + c2 * weight[..., None]
    colour *= rng.uniform(0.85, 1.1)
    region = canvas[y0:y0 + h, x0:x0 + w]
    region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
    rows = np.flatnonzero(alpha.max(axis=1) > 0.25)
    cols = np.flatnonzero(alpha.max(axis=0) > 0.25)
    if rows.size == 0 or cols.size == 0:
        return None
    bx, by = x0 + int(cols[0]), y0 + int(rows[0])
    return float(bx), float(by), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    smaller = min(a[2] * a[3], b[2] * b[3])
    return inter / smaller if smaller else 0.0


def render_scene(seed: int, index: int) -> tuple[Image.Image, str, list[DemoObject]]:
    """One demo image (deterministic in `seed` and `index`): image, scene type, objects."""
    rng = np.random.default_rng([seed, index])
    width, height = int(rng.integers(224, 289)), int(rng.integers(192, 257))
    scene = list(SCENES)[int(rng.integers(len(SCENES)))]
    canvas = _background(rng, width, height)
    count = int(rng.choice(_OBJECT_COUNTS, p=_OBJECT_COUNT_P))
    favoured = list(SCENES[scene])
    names: list[str] = []
    for _ in range(count):
        pool = favoured if rng.random() < _SCENE_FAVOUR else list(CLASS_NAMES)
        fresh = [n for n in pool if n not in names] or pool
        names.append(fresh[int(rng.integers(len(fresh)))])
    placed: list[tuple[int, int, int, int]] = []
    objects: list[DemoObject] = []
    short = min(width, height)
    for name in names:
        box = None
        for _attempt in range(12):
            side = rng.uniform(0.15, 0.5) * short
            aspect = rng.uniform(0.8, 1.25)
            w = int(min(width, max(12, side * aspect)))
            h = int(min(height, max(12, side / aspect)))
            x = int(rng.integers(0, width - w + 1))
            y = int(rng.integers(0, height - h + 1))
            box = (x, y, w, h)
            if all(_iou(box, other) < 0.3 for other in placed):
                break
        assert box is not None
        bbox = _render_object(canvas, rng, name, box)
        if bbox is None:
            continue
        placed.append(box)
        objects.append(DemoObject(name, bbox))
    canvas += rng.normal(0, 2.0, size=canvas.shape)
    image = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    return image, scene, objects


# ---------------------------------------------------------------------------------------------
# dataset files

def generate_demo(out_dir: Path | str, n_images: int = 300, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> DemoDataset:
    """Write `n_images` demo images and their COCO ground truth under `out_dir` (see module doc).

    Existing files of an earlier demo in `out_dir` are overwritten; the JSON files are written
    last and atomically, so an interrupted run leaves no half-written annotation file.
    """
    if n_images < 3:
        raise UserError("The demo needs at least 3 images (one per split).")
    root = Path(out_dir).expanduser().resolve()
    images_dir = root / "images"
    try:
        images_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create {images_dir}: {exc.strerror}.") from exc
    split_of = _assign_splits(n_images, seed)
    per_split: dict[str, dict[str, list[dict[str, Any]]]] = {
        split: {"images": [], "annotations": []} for split in SPLIT_FRACTIONS}
    annotation_ids = itertools.count(1)
    for index in range(n_images):
        _write_scene(images_dir, seed, index, per_split[split_of[index]], annotation_ids)
        if progress is not None:
            progress(index + 1, n_images)
    split_files = {split: _write_coco(root / f"{split}.json", split, content, seed)
                   for split, content in per_split.items()}
    return DemoDataset(root=root, images_dir=images_dir, class_names=list(CLASS_NAMES),
                       split_files=split_files, n_images=n_images)


def _assign_splits(n_images: int, seed: int) -> dict[int, str]:
    """Image index -> split, a seeded permutation cut 70/15/15 (each split at least one image)."""
    order = np.random.default_rng(seed).permutation(n_images)
    n_train = int(round(n_images * SPLIT_FRACTIONS["train"]))
    n_val = max(1, int(round(n_images * SPLIT_FRACTIONS["val"])))
    n_train = min(n_train, n_images - n_val - 1)
    return {int(index): ("train" if rank < n_train else "val" if rank < n_train + n_val else "test")
            for rank, index in enumerate(order)}


def _write_scene(images_dir: Path, seed: int, index: int,
                 content: dict[str, list[dict[str, Any]]], annotation_ids: Iterator[int]) -> None:
    """Render scene `index`, save it as JPEG and add its COCO image and annotations to `content`."""
    image, scene, objects = render_scene(seed, index)
    file_name = f"{index:06d}.jpg"
    try:
        image.save(images_dir / file_name, "JPEG", quality=85 + index % 11)
    except OSError as exc:
        raise UserError(f"Cannot write {images_dir / file_name}: {exc.strerror}.") from exc
    content["images"].append({
        "id": index + 1, "file_name": file_name, "width": image.width, "height": image.height,
        "labels": sorted({_CATEGORY_ID[o.class_name] for o in objects}), "scene": scene})
    for obj in objects:
        x, y, w, h = obj.bbox
        content["annotations"].append({
            "id": next(annotation_ids), "image_id": index + 1,
            "category_id": _CATEGORY_ID[obj.class_name], "bbox": [x, y, w, h],
            "area": w * h, "iscrowd": 0})


def _write_coco(path: Path, split: str, content: dict[str, list[dict[str, Any]]],
                seed: int) -> Path:
    """Write one split's COCO file atomically; its path."""
    document = {
        "info": {"description": f"mlic demo data, {split} split (seed {seed})",
                 "version": "1", "mlic_image_labels": _LABELS_DOC},
        "licenses": [],
        "images": content["images"],
        "annotations": content["annotations"],
        "categories": [{"id": k + 1, "name": name, "supercategory": "shape"}
                       for k, name in enumerate(CLASS_NAMES)],
    }
    write_json_atomic(path, document, indent=None)
    return path


_CATEGORY_ID = {name: k + 1 for k, name in enumerate(CLASS_NAMES)}

_LABELS_DOC = ("Each image carries 'labels': the ids of the categories present in it "
               "(image-level positives); 'negative_labels', when present, lists categories "
               "known to be absent.")


def import_demo(store: Store, out_dir: Path | str,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Import a generated demo (train/val/test COCO files) into `store`, with their splits.

    Returns {split: ImportSummary}.
    """
    from engine.exchange.coco import import_coco

    root = Path(out_dir).expanduser().resolve()
    summaries: dict[str, Any] = {}
    for split in SPLIT_FRACTIONS:
        path = root / f"{split}.json"
        if not path.is_file():
            raise UserError(f"No demo data in {root}: {path.name} is missing (run `mlic demo`).")
        summaries[split] = import_coco(store, path, root / "images", split=split,
                                       progress=progress)
    return summaries


def open_demo_project(folder: Path, n_images: int) -> Store:
    """The store of a demo project under `folder` (`demo/` data, `project/` store), generating and
    importing what is not there yet; benchmarks reuse it with `--keep`."""
    from engine.store import Store

    demo = folder / "demo"
    if not (demo / "test.json").exists():
        generate_demo(demo, n_images=n_images, seed=0)
    store = Store.open(folder / "project")
    if not store.images.count():
        import_demo(store, demo)
    return store
