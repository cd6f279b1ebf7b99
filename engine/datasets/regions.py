"""Data for region-based models: images with their proposals, multi-scale and flip augmentation.

`RegionDataset` serves one image with its proposals rescaled to the network input:

    sample = dataset[(index, scale, flip, nonce)]
    sample["image"]      float32 (3, H, W) RGB in [0, 1], longest side = scale
    sample["boxes"]      float32 (R, 4) xyxy in input pixels (flipped with the image)
    sample["box_scores"] float32 (R,) proposal scores / their per-image max, or None
    sample["labels"]     float32 (K,) 1, 0 or UNKNOWN -1 (an undecided pair, engine.store)
    sample["index"]      int, the image's position in the dataset
    sample["to_original"] float32 (4,) multipliers (sx, sy, sx, sy) from input to original pixels
                         (for unflipped samples)

`ScaleBatchSampler` draws one scale per batch (all images of a batch share it, as in WSDDN's
multi-scale training) and a flip per image; `collate_regions` pads a batch to a common size with
the ImageNet mean (which the backbone's normalisation maps to 0). The student's distillation reuses
these pieces so the teacher and the student see the same augmented image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from engine.models.backbones import IMAGENET_MEAN
from engine.proposals import Proposals

SampleKey = tuple[int, int, bool, int]   # (index, scale, flip, nonce of the random subset)


def default_scales(image_size: int) -> tuple[int, ...]:
    """Training scales around the test scale, as the paper's 480..832 around 672 (x0.71..1.24),
    rounded to multiples of 16."""
    factors = (0.72, 0.86, 1.0, 1.1, 1.24)
    return tuple(sorted({max(64, int(round(image_size * f / 16)) * 16) for f in factors}))


def resize_longest(image: Image.Image, longest: int) -> Image.Image:
    """`image` resized (bilinear) so that its longer side is `longest` pixels, aspect kept."""
    scale = longest / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 (3, H, W) in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def select_proposals(proposals: Proposals, count: int, rng: np.random.Generator | None,
                     use_scores: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """At most `count` proposals: the best `count` of a scored source; of an unscored one, when
    `rng` is given (training), a random `count` of its first 2 x `count` (new boxes every epoch),
    else its first `count`. Scores come back divided by their maximum (the best box has e_r = 1),
    or None when the source has none or `use_scores` is off."""
    boxes, scores = proposals.boxes, proposals.scores
    if len(boxes) > count:
        if scores is None and rng is not None:
            # a random half of the first 2 x count: the source's coverage order, varied per epoch
            pool = min(len(boxes), 2 * count)
            keep = np.sort(rng.choice(pool, size=count, replace=False))
            keep[0] = 0                               # the first box (the whole image) stays in
            boxes = boxes[keep]
        else:
            boxes = boxes[:count]
            scores = None if scores is None else scores[:count]
    if scores is None or not use_scores:
        return boxes, None
    top = float(scores.max()) if len(scores) else 1.0
    return boxes, (scores / top if top > 0 else np.ones_like(scores)).astype(np.float32)


class RegionDataset(Dataset):
    """Images, labels and proposals (see the module docstring for the sample format).

    paths: image files; proposals: one `Proposals` per image (original pixels); labels: (N, K).
    `train` turns on random proposal subsets for unscored sources; the scale and flip come with
    the key. Images are decoded with `engine.images.load_rgb` at reduced size.
    """

    def __init__(self, paths: Sequence[Path], proposals: Sequence[Proposals], labels: np.ndarray,
                 max_proposals: int, box_scores: bool = True, train: bool = False,
                 seed: int = 0, skip_unreadable: bool = False) -> None:
        if not (len(paths) == len(proposals) == len(labels)):
            raise ValueError("RegionDataset: paths, proposals and labels differ in length")
        self.paths = [Path(p) for p in paths]
        self.proposals = list(proposals)
        self.labels = np.asarray(labels, dtype=np.float32)
        self.max_proposals = max_proposals
        self.box_scores = box_scores
        self.train = train
        self.seed = seed
        self.skip_unreadable = skip_unreadable

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: SampleKey | int) -> dict[str, Any]:
        from engine.images import UnreadableImageError, load_rgb

        index, scale, flip, nonce = key if isinstance(key, tuple) else (key, 0, False, 0)
        proposals = self.proposals[index]
        try:
            image = load_rgb(self.paths[index], max_side=scale or None)
        except UnreadableImageError as exc:
            if not self.skip_unreadable:
                raise
            return {"index": index, "error": getattr(exc, "reason", str(exc))}
        if scale:
            image = resize_longest(image, scale)
        width, height = image.size
        original_w, original_h = proposals.size
        sx, sy = width / original_w, height / original_h
        rng = np.random.default_rng((self.seed, nonce, index)) if self.train else None
        boxes, scores = select_proposals(proposals, self.max_proposals, rng, self.box_scores)
        boxes = boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
        tensor = image_to_tensor(image)
        if flip:
            tensor = tensor.flip(-1)
            boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]],
                             axis=1)
        return {
            "image": tensor,
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
            "box_scores": None if scores is None else torch.from_numpy(scores),
            "labels": torch.from_numpy(self.labels[index]),
            "index": index,
            "to_original": torch.tensor([1 / sx, 1 / sy, 1 / sx, 1 / sy], dtype=torch.float32),
        }


class ScaleBatchSampler(Sampler[list[SampleKey]]):
    """Shuffled batches of keys (index, scale, flip, nonce): one random scale per batch, a random
    flip per image (p = 0.5), a nonce that seeds the image's random proposal subset.
    Deterministic per (seed, epoch); call `set_epoch` each epoch."""

    def __init__(self, size: int, batch_size: int, scales: Sequence[int], flip: bool = True,
                 shuffle: bool = True, seed: int = 0) -> None:
        self.size = size
        self.batch_size = batch_size
        self.scales = list(scales)
        self.flip = flip
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
        for start in range(0, self.size, self.batch_size):
            chunk = order[start:start + self.batch_size]
            scale = int(rng.choice(self.scales))
            flips = rng.random(len(chunk)) < 0.5 if self.flip else np.zeros(len(chunk), bool)
            nonce = int(rng.integers(1 << 31))
            yield [(int(i), scale, bool(f), nonce) for i, f in zip(chunk, flips)]


def collate_regions(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad images to the batch's largest height and width (bottom/right, ImageNet-mean colour);
    boxes, scores and index stay per image; labels stack to (N, K). Samples that failed to load
    (datasets with `skip_unreadable`) are left out and listed in "errors" as (index, reason);
    "images" is None when none loaded."""
    errors = [(s["index"], s["error"]) for s in samples if "error" in s]
    samples = [s for s in samples if "error" not in s]
    if not samples:
        return {"images": None, "boxes": [], "box_scores": None, "labels": None, "index": [],
                "to_original": None, "errors": errors}
    height = max(s["image"].shape[1] for s in samples)
    width = max(s["image"].shape[2] for s in samples)
    batch = torch.empty(len(samples), 3, height, width)
    batch[:] = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    for i, sample in enumerate(samples):
        _, h, w = sample["image"].shape
        batch[i, :, :h, :w] = sample["image"]
    scores = [s["box_scores"] for s in samples]
    return {
        "images": batch,
        "boxes": [s["boxes"] for s in samples],
        "box_scores": None if any(s is None for s in scores) else scores,
        "labels": torch.stack([s["labels"] for s in samples]),
        "index": [s["index"] for s in samples],
        "to_original": torch.stack([s["to_original"] for s in samples]),
        "errors": errors,
    }


def fixed_scale_batches(size: int, batch_size: int, scale: int) -> list[list[SampleKey]]:
    """Unshuffled, unflipped batches at one scale (evaluation and inference)."""
    return [[(i, scale, False, 0) for i in range(start, min(size, start + batch_size))]
            for start in range(0, size, batch_size)]
