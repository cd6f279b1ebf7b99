"""Proposal sources from OpenCV's contrib module (opencv-contrib-python-headless): EdgeBoxes on a
gradient edge map (no downloaded structured-edge model) and selective search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import UserError
from engine.proposals.base import ProposalSource


def _ximgproc() -> Any:
    try:
        import cv2
        return cv2.ximgproc
    except (ImportError, AttributeError) as exc:
        raise UserError("This proposal source needs OpenCV's contrib module: install "
                        "opencv-contrib-python-headless, or use --proposals sliding.") from exc


def gradient_edges(rgb: np.ndarray, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A thin edge map and its orientation, the inputs EdgeBoxes needs, from image gradients.

    Stands in for the structured-forest edge detector (whose model is a download): Sobel
    gradients of the Gaussian-smoothed image, the strongest colour channel per pixel; magnitude
    scaled so its 99th percentile is 1 and clipped to [0, 1]; orientation = the gradient
    (edge-normal) direction modulo pi; then non-maximum suppression across the edge, as the
    structured detector's `edgesNms` does. Returns float32 (H, W) maps.
    """
    import cv2

    image = rgb.astype(np.float32) / 255.0
    if sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    if gx.ndim == 3:
        magnitude2 = gx * gx + gy * gy
        strongest = magnitude2.argmax(axis=2)[..., None]
        gx = np.take_along_axis(gx, strongest, axis=2)[..., 0]
        gy = np.take_along_axis(gy, strongest, axis=2)[..., 0]
    magnitude = np.sqrt(gx * gx + gy * gy)
    scale = float(np.percentile(magnitude, 99)) or 1.0
    edges = np.clip(magnitude / scale, 0.0, 1.0).astype(np.float32)
    orientation = np.mod(np.arctan2(gy, gx), np.pi).astype(np.float32)
    return _edge_nms(edges, orientation), orientation


def _edge_nms(edges: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Keep pixels that are maxima along the edge normal (bilinear neighbours at distance 1)."""
    import cv2

    height, width = edges.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = np.cos(orientation), np.sin(orientation)
    ahead = cv2.remap(edges, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    behind = cv2.remap(edges, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    thin = edges.copy()
    thin[(edges < ahead) | (edges < behind)] = 0.0
    return thin


@dataclass
class EdgeBoxesSource(ProposalSource):
    """EdgeBoxes (Zitnick & Dollar 2014) through `cv2.ximgproc.createEdgeBoxes`, scored boxes.

    `alpha` (step of the sliding-window search) and `beta` (NMS threshold) are set for IoU 0.5
    recall rather than OpenCV's 0.7-tuned defaults (0.65 / 0.75); measured in
    benchmarks/proposals.py.
    """

    name = "edgeboxes"
    max_boxes: int = 2000
    alpha: float = 0.65
    beta: float = 0.75
    min_score: float = 0.01
    min_box_area: int = 400
    max_aspect_ratio: float = 4.0
    sigma: float = 1.0
    max_side: int = 512

    def params(self) -> dict[str, Any]:
        return {"max_boxes": self.max_boxes, "alpha": self.alpha, "beta": self.beta,
                "min_score": self.min_score, "min_box_area": self.min_box_area,
                "max_aspect_ratio": self.max_aspect_ratio, "sigma": self.sigma}

    def compute(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ximgproc = _ximgproc()
        edges, orientation = gradient_edges(rgb, self.sigma)
        boxes_maker = ximgproc.createEdgeBoxes(
            alpha=self.alpha, beta=self.beta, minScore=self.min_score, maxBoxes=self.max_boxes,
            maxAspectRatio=self.max_aspect_ratio, minBoxArea=self.min_box_area)
        result = boxes_maker.getBoundingBoxes(edges, orientation)
        rects, scores = result if isinstance(result, tuple) else (result, None)
        rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
        scores = (np.asarray(scores, dtype=np.float32).reshape(-1) if scores is not None and len(scores)
                  else np.ones(len(rects), dtype=np.float32))
        order = np.argsort(-scores, kind="stable")
        rects, scores = rects[order], scores[order]
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        height, width = rgb.shape[:2]
        # the whole image as a last resort proposal (EdgeBoxes never proposes it), lowest score
        whole = np.array([[0, 0, width, height]], dtype=np.float32)
        low = np.array([scores.min() if len(scores) else 1.0], dtype=np.float32)
        return np.concatenate([boxes, whole]), np.concatenate([scores, low])


@dataclass
class SelectiveSearchSource(ProposalSource):
    """Selective search (Uijlings et al. 2013), fast mode, through
    `cv2.ximgproc.segmentation.createSelectiveSearchSegmentation`; unscored, in its own order."""

    name = "selective_search"
    max_boxes: int = 2000
    base_k: int = 150
    inc_k: int = 150
    sigma: float = 0.8
    max_side: int = 384

    def params(self) -> dict[str, Any]:
        return {"max_boxes": self.max_boxes, "base_k": self.base_k, "inc_k": self.inc_k,
                "sigma": self.sigma}

    def compute(self, rgb: np.ndarray) -> tuple[np.ndarray, None]:
        import cv2

        segmentation = _ximgproc().segmentation.createSelectiveSearchSegmentation()
        segmentation.setBaseImage(np.ascontiguousarray(rgb[:, :, ::-1]))
        segmentation.switchToSelectiveSearchFast(self.base_k, self.inc_k, self.sigma)
        cv2.setRNGSeed(0)
        rects = np.asarray(segmentation.process(), dtype=np.float32).reshape(-1, 4)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        height, width = rgb.shape[:2]
        whole = np.array([[0, 0, width, height]], dtype=np.float32)
        return np.concatenate([boxes[: self.max_boxes - 1], whole]), None
