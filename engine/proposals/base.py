"""The proposal-source interface and the helpers every source shares."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Proposals:
    """Region proposals of one image.

    `boxes`: float32 (R, 4), xyxy in *original* (EXIF-corrected) image pixels, best first when the
    source ranks its boxes. `scores`: float32 (R,) objectness in [0, 1] (EdgeBoxes), or None for
    sources without scores. `size`: the original (width, height).
    """

    boxes: np.ndarray
    scores: np.ndarray | None
    size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (R, 4), got {self.boxes.shape}")
        if self.scores is not None and self.scores.shape != (self.boxes.shape[0],):
            raise ValueError(f"scores must be ({self.boxes.shape[0]},), got {self.scores.shape}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def top(self, n: int) -> Proposals:
        """The first `n` proposals (the best ones for a ranking source)."""
        return Proposals(self.boxes[:n], None if self.scores is None else self.scores[:n], self.size)


class ProposalSource(ABC):
    """A region-proposal method. Subclasses set `name` and implement `params` and `compute`.

    `compute` works on the pixels it is given (an RGB uint8 array, possibly downscaled from the
    original); `propose` loads a file at `max_side`, computes and rescales the boxes to original
    pixels. Sources must be picklable (they run in worker processes).
    """

    name: ClassVar[str]
    max_side: int = 512          # images are reduced to this long side before computing

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-safe parameters that change the output (part of the cache key)."""

    @abstractmethod
    def compute(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Boxes (R, 4) xyxy in `rgb`'s pixels, best first, and their scores or None."""

    def cache_key(self) -> str:
        """`<name>-<hash of params>`: the cache folder of this source's configuration."""
        blob = json.dumps({"max_side": self.max_side, **self.params()}, sort_keys=True)
        return f"{self.name}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"

    def propose_array(self, rgb: np.ndarray, original_size: tuple[int, int]) -> Proposals:
        """Proposals for decoded pixels `rgb` whose original size is (width, height)."""
        height, width = rgb.shape[:2]
        boxes, scores = self.compute(rgb)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        sx, sy = original_size[0] / width, original_size[1] / height
        boxes = boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
        boxes, scores = clean_boxes(boxes, None if scores is None else np.asarray(scores, np.float32),
                                    original_size)
        return Proposals(boxes, scores, (int(original_size[0]), int(original_size[1])))

    def propose(self, path: str | Path) -> Proposals:
        """Proposals of an image file (raises UnreadableImageError)."""
        from engine.images import load_rgb

        image = load_rgb(path, max_side=self.max_side)
        return self.propose_array(np.asarray(image), image.info.get("original_size", image.size))


def clean_boxes(boxes: np.ndarray, scores: np.ndarray | None, size: tuple[int, int],
                min_size: float = 4.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Clip to the image, drop boxes under `min_size` pixels a side and exact duplicates
    (keeping the first, i.e. best, of each), preserving order."""
    width, height = size
    if boxes.size == 0:
        return boxes.reshape(0, 4).astype(np.float32), (None if scores is None else scores[:0])
    boxes = boxes.copy()
    np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    boxes = boxes[keep]
    scores = None if scores is None else scores[keep]
    _, first = np.unique(np.round(boxes).astype(np.int64), axis=0, return_index=True)
    order = np.sort(first)
    return boxes[order].astype(np.float32), (None if scores is None else scores[order].astype(np.float32))
