"""How the student sees an image, one module for training and tagging alike.

The student sees the whole image (or a random-resized crop view, `view_crop`) stretched to its
square input size (`student_input`), decoded at the smallest JPEG draft scale that still covers it
(`decode_size`). `StudentImages` is the training dataset (uint8 tensors, labels, view and flip per
sample), `ViewBatchSampler` draws one view and flip per image per epoch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from engine.images import load_rgb

CROP_AREA = (0.35, 1.0)          # crop views: share of the image area

CROP_RATIO = (3 / 4, 4 / 3)      # and aspect-ratio range (as torchvision's RandomResizedCrop)


def view_crop(digest: str, view: int) -> tuple[float, float, float, float]:
    """The crop of augmented view `view` of an image, as fractions (x0, y0, x1, y1) of its width
    and height. View 0 is the whole image; the others are random-resized crops drawn from a
    generator seeded by the image's content hash and the view number, so the teacher's cached
    targets and the student's inputs always agree."""
    if view == 0:
        return (0.0, 0.0, 1.0, 1.0)
    rng = np.random.default_rng(int(hashlib.sha1(f"{digest}:{view}".encode()).hexdigest()[:12], 16))
    area = rng.uniform(*CROP_AREA)
    ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
    width, height = min(1.0, math.sqrt(area * ratio)), min(1.0, math.sqrt(area / ratio))
    x0, y0 = rng.uniform(0.0, 1.0 - width), rng.uniform(0.0, 1.0 - height)
    return (float(x0), float(y0), float(x0 + width), float(y0 + height))


def crop_pixels(size: tuple[int, int], crop: tuple[float, float, float, float]) -> tuple[int, ...]:
    width, height = size
    x0, y0 = int(round(crop[0] * width)), int(round(crop[1] * height))
    x1 = max(x0 + 1, int(round(crop[2] * width)))
    y1 = max(y0 + 1, int(round(crop[3] * height)))
    return (x0, y0, min(width, x1), min(height, y1))


class StudentImages(Dataset):
    """Training images for the student, keyed `(index, view, flip)` (see `ViewBatchSampler`).

    A sample: "image" uint8 (3, S, S): view 0 is the whole image stretched to the square exactly
    as batch tagging prepares it (`engine.datasets.student.student_input`); view v > 0 is the crop
    `view_crop(digest, v)` stretched to the square; mirrored when flip. Also "labels" (K,),
    "index", "view", "flip". Decoded images are kept in memory up to `cache_bytes`.
    """

    def __init__(self, paths: Sequence[Path], labels: np.ndarray, size: int,
                 original_sizes: Sequence[tuple[int, int] | None] | None = None,
                 digests: Sequence[str] | None = None, views: int = 1,
                 cache_bytes: int = 1 << 30) -> None:
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.float32)
        self.size = size
        self.sizes = list(original_sizes) if original_sizes is not None else [None] * len(self.paths)
        self.digests = list(digests) if digests is not None else [str(p) for p in self.paths]
        self.views = max(1, int(views))
        self._cache: dict[int, Any] = {}
        # crops need the decoded image (about 2.5 S on its short side); whole views the tensor
        per_image = 3 * size * size * (8 if self.views > 1 else 1)
        self._cache_limit = max(0, cache_bytes // per_image)

    def __len__(self) -> int:
        return len(self.paths)

    def _decoded(self, index: int) -> Any:
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        needed = self.size if self.views == 1 else int(math.ceil(self.size / math.sqrt(CROP_AREA[0])))
        image = load_rgb(self.paths[index], max_side=decode_size(needed, self.sizes[index]))
        if len(self._cache) < self._cache_limit:
            self._cache[index] = image
        return image

    def image(self, index: int, view: int = 0) -> torch.Tensor:
        """uint8 (3, S, S) of one view (unflipped)."""
        image = self._decoded(index)
        if view:
            image = image.crop(crop_pixels(image.size, view_crop(self.digests[index], view)))
        return student_input(image, self.size)

    def __getitem__(self, key: tuple[int, int, bool] | int) -> dict[str, Any]:
        index, view, flip = key if isinstance(key, tuple) else (key, 0, False)
        image = self.image(index, view)
        return {"image": image.flip(-1) if flip else image,
                "labels": torch.from_numpy(self.labels[index]), "index": index, "view": view,
                "flip": bool(flip)}


class ViewBatchSampler(Sampler[list[tuple[int, int, bool]]]):
    """Shuffled batches of `(index, view, flip)`: a random view in [0, views) and a random flip
    (p = 0.5, when `flip`) per image; deterministic per (seed, epoch). Call `set_epoch`."""

    def __init__(self, size: int, batch_size: int, views: int = 1, flip: bool = True,
                 seed: int = 0) -> None:
        self.size, self.batch_size, self.views, self.flip, self.seed = size, batch_size, views, flip, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int, bool]]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(self.size)
        views = rng.integers(0, self.views, size=self.size)
        flips = rng.random(self.size) < 0.5 if self.flip else np.zeros(self.size, bool)
        for start in range(0, self.size, self.batch_size):
            yield [(int(i), int(views[i]), bool(flips[i]))
                   for i in order[start:start + self.batch_size]]


def collate_student(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"images": torch.stack([s["image"] for s in samples]),
            "labels": torch.stack([s["labels"] for s in samples]),
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
            "view": torch.tensor([s["view"] for s in samples], dtype=torch.long),
            "flip": torch.tensor([s["flip"] for s in samples], dtype=torch.long)}


def original_sizes(store: Any, image_ids: Sequence[int]) -> list[tuple[int, int] | None]:
    wanted = set(image_ids)
    rows = {image.id: image for image in store.images.list(include_missing=True)
            if image.id in wanted}
    sizes: list[tuple[int, int] | None] = []
    for image_id in image_ids:
        row = rows.get(image_id)
        sizes.append((row.width, row.height) if row is not None and row.width and row.height
                     else None)
    return sizes


def student_input(image: Image.Image, size: int) -> torch.Tensor:
    """A decoded RGB image -> the student's input: uint8 tensor (3, size, size), the whole image
    stretched to the square (bilinear). Divide by 255 for the model's [0, 1] input."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def decode_size(size: int, original: tuple[int, int] | None) -> int | None:
    """The `max_side` for `load_rgb` that lets a JPEG decode at the smallest DCT scale (1/2, 1/4,
    1/8) whose short side still covers `size` pixels, so the square input is made by one resize
    from a reduced decode and never by upsampling. None (full decode) when the original size is
    unknown or no reduction fits.

    Pillow's draft mode only reduces by r when the requested size is at most floor(side / r) on
    both sides, so the value is chosen to satisfy that for the short side too."""
    if not original or min(original) <= 0:
        return None
    long_side, short_side = max(original), min(original)
    for reduction in (8, 4, 2):
        max_side = min(long_side // reduction, (short_side // reduction) * long_side // short_side)
        if max_side >= 1 and round(short_side * max_side / long_side) >= size:
            return max_side
    return None


def prepare_file(path: Path | str, size: int, original: tuple[int, int] | None = None) -> torch.Tensor:
    """One file -> the student's uint8 input (3, size, size): decoded at reduced size when the
    original size is known (`decode_size`), then `student_input`. Raises UnreadableImageError."""
    return student_input(load_rgb(path, max_side=decode_size(size, original)), size)
