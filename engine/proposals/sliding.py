"""Dense multi-scale sliding windows: no dependency, the fallback and the test default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.proposals.base import ProposalSource


@dataclass
class SlidingWindows(ProposalSource):
    """Windows of several sizes (fractions of the image's shorter side) and aspect ratios, slid
    with a step of `step` times the window side; plus the whole image.

    They have no objectness; their order interleaves the (size, ratio) groups round-robin, each
    group in a fixed pseudo-random order, so any prefix of the list covers every scale and the
    whole image (large windows, being few, are all in early; small ones are sampled evenly).
    """

    name = "sliding"
    sizes: tuple[float, ...] = (0.15, 0.2, 0.27, 0.36, 0.48, 0.64, 0.85)
    ratios: tuple[float, ...] = (0.6, 1.0, 1.6)   # width / height
    step: float = 0.34
    max_side: int = 4096                          # only the image size matters, not its pixels

    def params(self) -> dict[str, Any]:
        return {"sizes": list(self.sizes), "ratios": list(self.ratios), "step": self.step}

    def windows(self, width: int, height: int) -> np.ndarray:
        """All windows (R, 4) xyxy for an image of this size, in a fixed shuffled order."""
        short = min(width, height)
        rng = np.random.default_rng(0)
        groups = []
        for size in self.sizes:
            for ratio in self.ratios:
                w = min(width, size * short * np.sqrt(ratio))
                h = min(height, size * short / np.sqrt(ratio))
                stride = max(2.0, self.step * min(w, h))
                xs = _positions(width - w, stride)
                ys = _positions(height - h, stride)
                gx, gy = np.meshgrid(xs, ys)
                x0, y0 = gx.ravel(), gy.ravel()
                group = np.stack([x0, y0, x0 + w, y0 + h], axis=1).astype(np.float32)
                groups.append(group[rng.permutation(len(group))])
        # round-robin: rank of a window = its position within its group; ties by group
        ranks = np.concatenate([np.arange(len(g)) for g in groups])
        group_ids = np.concatenate([np.full(len(g), k) for k, g in enumerate(groups)])
        order = np.lexsort((group_ids, ranks))
        whole = np.array([[0, 0, width, height]], dtype=np.float32)
        return np.concatenate([whole, np.concatenate(groups)[order]])

    def compute(self, rgb: np.ndarray) -> tuple[np.ndarray, None]:
        height, width = rgb.shape[:2]
        return self.windows(width, height), None

    def propose(self, path):  # noqa: ANN001, ANN201 - only the size is needed: read the header
        from engine.images import probe_image
        from engine.proposals.base import Proposals, clean_boxes

        probe = probe_image(path)
        boxes, _ = clean_boxes(self.windows(probe.width, probe.height), None,
                               (probe.width, probe.height))
        return Proposals(boxes, None, (probe.width, probe.height))


def _positions(span: float, stride: float) -> np.ndarray:
    """Start offsets covering [0, span] with the given stride, the last one flush with the end."""
    if span <= 0:
        return np.zeros(1, dtype=np.float32)
    count = int(np.ceil(span / stride)) + 1
    return np.linspace(0.0, span, count, dtype=np.float32)
