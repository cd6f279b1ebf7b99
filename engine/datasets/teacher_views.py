"""What the frozen teacher sees of one training image for distillation: every view and flip.

`TeacherViews[i]` decodes image i once and returns the teacher's inputs (`RegionDataset`-style
samples) for each view v in [0, views) and flip, in that order: view 0 is the whole image at the
teacher's scale with its proposals from the project's proposal cache (computed and cached on a
miss); view v > 0 is the crop `view_crop(digest, v)`, a new image to the teacher, with proposals
computed once on the crop (and cached like the whole image's, under `<digest>-v<view>-d<decode>`).
The flipped sample mirrors the image and its boxes (it does not propose again: every source
proposes on what it sees, and the mirror of a crop's boxes are the boxes of the mirrored crop).
It runs in DataLoader worker processes, so proposals and decoding overlap the teacher's forward
passes; `sample(i, view, flip)` gives one view for the student's on-the-fly targets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.datasets.regions import (
    RegionDataset,
    image_to_tensor,
    resize_longest,
    select_proposals,
)
from engine.datasets.student import CROP_AREA, crop_pixels, view_crop
from engine.images import load_rgb
from engine.proposals import ProposalCache, Proposals, ProposalSource


class TeacherViews(Dataset):
    """The teacher's inputs for every view and flip of each image (see the module docstring).

    An item: {"item": i, "samples": [sample per (view, flip)]}, or {"item": i, "error": reason}
    when the image cannot be read."""

    def __init__(self, paths: Sequence[Path], digests: Sequence[str], views: int,
                 flips: Sequence[bool], scale: int, source: ProposalSource, max_proposals: int,
                 uses_scores: bool, proposal_cache: str | Path) -> None:
        self.paths = [Path(p) for p in paths]
        self.digests = list(digests)
        self.views, self.flips, self.scale = int(views), tuple(bool(f) for f in flips), int(scale)
        self.source, self.max_proposals, self.uses_scores = source, max_proposals, uses_scores
        self.proposal_cache = str(proposal_cache)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            image = self._decoded(i) if self.views > 1 else None
            views = [self._view(i, v, image) for v in range(self.views)]
        except Exception as exc:  # noqa: BLE001 - one unreadable image must not end the pass
            return {"item": i, "error": getattr(exc, "reason", None) or str(exc)}
        return {"item": i, "samples": [mirror(sample) if flip else sample
                                       for sample in views for flip in self.flips]}

    def sample(self, i: int, view: int, flip: bool) -> dict[str, Any]:
        """The teacher's input of one view and flip of image i (raises when unreadable)."""
        sample = self._view(i, view, self._decoded(i) if view else None)
        return mirror(sample) if flip else sample

    def _decode_side(self) -> int:
        """Crops are decoded large enough for the smallest crop at the teacher's scale and at
        the proposal source's size."""
        return int(math.ceil(max(self.scale, self.source.max_side) / math.sqrt(CROP_AREA[0])))

    def _decoded(self, i: int) -> Any:
        return load_rgb(self.paths[i], max_side=self._decode_side())

    def _view(self, i: int, view: int, image: Any) -> dict[str, Any]:
        if view == 0:
            return self._whole(i)
        key = f"{self.digests[i]}-v{view}-d{self._decode_side()}"
        return self._crop(image, view_crop(self.digests[i], view), key)

    def _proposals(self, key: str, compute: Any) -> Proposals:
        """Cached proposals under `key`, else `compute()` and cache them."""
        cache = ProposalCache(self.proposal_cache)
        proposals = cache.get(self.source, key)
        if proposals is None:
            proposals = compute()
            cache.put(self.source, key, proposals)
        return proposals

    def _whole(self, i: int) -> dict[str, Any]:
        proposals = self._proposals(self.digests[i], lambda: self.source.propose(self.paths[i]))
        if len(proposals) == 0:
            raise ValueError("no proposals")
        whole = RegionDataset([self.paths[i]], [proposals], np.zeros((1, 1), np.float32),
                              self.max_proposals, box_scores=self.uses_scores, train=False)
        return whole[(0, self.scale, False, 0)]

    def _crop(self, image: Any, crop: tuple[float, float, float, float],
              key: str) -> dict[str, Any]:
        """The crop at the teacher's scale with proposals computed on it (at most the source's
        `max_side`, as for whole images; cached under `key`); the whole crop as the one box when
        none are found."""
        region = image.crop(crop_pixels(image.size, crop))
        pixels = (region if max(region.size) <= self.source.max_side
                  else resize_longest(region, self.source.max_side))
        proposals = self._proposals(
            key, lambda: self.source.propose_array(np.asarray(pixels), region.size))
        if len(proposals) == 0:
            whole = np.array([[0, 0, *region.size]], dtype=np.float32)
            proposals = Proposals(whole, None if proposals.scores is None
                                  else np.ones(1, np.float32), region.size)
        region = resize_longest(region, self.scale)
        width, height = region.size
        sx, sy = width / proposals.size[0], height / proposals.size[1]
        boxes, scores = select_proposals(proposals, self.max_proposals, None, self.uses_scores)
        boxes = boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
        return {"image": image_to_tensor(region),
                "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
                "box_scores": None if scores is None else torch.from_numpy(scores),
                "labels": torch.zeros(1), "index": 0,
                "to_original": torch.ones(4, dtype=torch.float32)}


def mirror(sample: dict[str, Any]) -> dict[str, Any]:
    """A `RegionDataset`-style sample mirrored left-right: the image and its boxes."""
    width = sample["image"].shape[-1]
    boxes = sample["boxes"]
    mirrored = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]],
                           dim=1)
    return {**sample, "image": sample["image"].flip(-1), "boxes": mirrored}


def collate_views(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The loader's batches stay lists of items (each with its own samples)."""
    return items
