"""The one metrics module: multi-label classification figures and teacher localisation figures.

Used by the command line (`mlic evaluate`), the training loop (validation mAP), the GUI (per-class AP
bars, curves over rounds) and the benchmarks. Pure NumPy (plus pycocotools for box AP), no prints.

Image-level classification (standard multi-label protocol, e.g. Chen et al. ML-GCN, CVPR 2019)
------------------------------------------------------------------------------------------------
Inputs are `scores` (N images x K classes, any real values, higher = more confident; probabilities
for the threshold figures) and `targets` (N x K, 1 = positive, 0 = negative; anything > 0.5 counts
as positive; a negative value, the store's UNKNOWN = -1, is an undecided pair: it is left out of
every figure, so only decided pairs count).

- AP of a class: non-interpolated average precision of the ranking by score,
  ``AP = sum_n (R_n - R_{n-1}) * P_n`` over the distinct score values taken as thresholds (highest
  first). Without ties this is the mean, over the class's positives, of the precision at each
  positive's rank. Tied scores are one step (ranked together), so the figure never depends on the
  order of the input rows.
- mAP: mean AP over the classes that have at least one decided positive and one decided negative.
- At a threshold (a predicted label is ``score >= threshold``; one threshold or one per class), with
  per class k: ``TP_k`` (correct predicted labels), ``Np_k`` (predicted labels), ``Ng_k`` (positives):
  ``CP = mean_k TP_k / Np_k``, ``CR = mean_k TP_k / Ng_k``, ``CF1 = 2 CP CR / (CP + CR)`` (F1 of the
  averaged CP and CR, not the mean of per-class F1s); ``OP = sum TP / sum Np``,
  ``OR = sum TP / sum Ng``, ``OF1 = 2 OP OR / (OP + OR)``.
- Top-3 variants: each image's 3 highest-scoring labels are its predicted labels (all labels when
  K < 3; ties broken by class order), whatever their score.

Edge cases (documented choices, never an exception or a silent NaN in the middle of a mean):
- A class without positives has no AP (NaN in `per_class_ap`) and is left out of mAP and of the
  class averages CP/CR (its recall is undefined); its false positives still count in OP.
- A class without a decided negative has no AP either: any scores would rank its positives first
  (AP 1.0), which says nothing; for the same reason it counts in none of CP/CR/OP/OR (every
  prediction it makes on a decided pair is right). This is the usual case of partially tagged
  data (keywords imported from photo tools give no "no"): until the person rejects a suggestion
  or marks an image complete, such a class is not measured, rather than shown as perfect.
- A class with positives but no predicted label has precision 0 (as in ML-GCN's protocol).
- F1 with P + R = 0 is 0; OP with no predicted label at all is 0.
- If no class has any positive there is nothing to measure: every figure is NaN.
  `MultilabelReport.to_dict()` writes NaN as None, so JSON output stays valid.

Teacher localisation
--------------------
- `corloc`: share of positive image-class pairs (a ground-truth box of that class on that image)
  whose top-scoring predicted box overlaps a ground-truth box of that class with IoU >= 0.5. A pair
  without any predicted box counts as a miss.
- `box_ap`: COCO box AP (IoU 0.50:0.95) and AP50 through pycocotools' COCOeval, built in memory.

Boxes are ``[x, y, w, h]`` in original image pixels throughout, as in the store.

Per-class precision-recall curves and the prediction / co-occurrence matrices live in
`engine.metrics_curves` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.metrics_curves import (
    PRCurve,
    PredictionMatrix,
    precision_recall_curve,
    prediction_matrix,
)

__all__ = [
    "BoxAPResult", "CorLocResult", "Detection", "MultilabelEvaluator", "MultilabelReport",
    "PRCurve", "PredictionMatrix", "average_precision", "box_ap", "corloc", "iou_xywh",
    "mean_average_precision", "multilabel_report", "per_class_average_precision",
    "precision_recall_curve", "prediction_matrix", "threshold_figures", "top_k_predictions",
]

NAN = float("nan")
# why a class has no AP on a split, and what the person can do about it (evaluation, training logs)
UNMEASURED_WHY = ('each needs a "yes" and a decided "no" on this split (imported keywords give no '
                  '"no"; reject wrong suggestions or mark reviewed images complete)')


# --------------------------------------------------------------------------- input checks


def _as_scores_targets(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check and convert to 2-D float64 scores, boolean targets and the decided (known) mask."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim == 1:
        s = s[:, None]
    if t.ndim == 1:
        t = t[:, None]
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"scores and targets must both be (N, K) arrays of the same shape, "
                         f"got {np.shape(scores)} and {np.shape(targets)}")
    if not np.all(np.isfinite(s)):
        bad = s[~np.isfinite(s)][0]
        raise ValueError(f"scores must be finite, found {bad}")
    t = t.astype(np.float64)
    return s, t > 0.5, t >= 0


# --------------------------------------------------------------------------- average precision


def _ap_1d(scores: np.ndarray, positive: np.ndarray) -> float:
    """Tie-aware non-interpolated AP of one class over decided images (the area under its
    `precision_recall_curve`); NaN when it has no positive or no negative (with nothing to rank
    the positives against, any scores would give 1.0)."""
    return precision_recall_curve(scores, positive).ap


def per_class_average_precision(scores: Any, targets: Any) -> np.ndarray:
    """AP of every class over its decided images, shape (K,); NaN for a class without positives
    or without negatives."""
    s, t, known = _as_scores_targets(scores, targets)
    return np.array([_ap_1d(s[known[:, k], k], t[known[:, k], k]) for k in range(s.shape[1])],
                    dtype=np.float64)


def average_precision(scores: Any, targets: Any) -> float | np.ndarray:
    """Non-interpolated average precision.

    `scores`, `targets` of shape (N,) give one class's AP as a float; of shape (N, K) the AP of each
    class as a (K,) array. NaN for a class without positives (see the module docstring).
    """
    if np.ndim(scores) == 1:
        return float(per_class_average_precision(scores, targets)[0])
    return per_class_average_precision(scores, targets)


def mean_average_precision(scores: Any, targets: Any) -> float:
    """mAP: mean AP over the classes with a decided positive and a decided negative; NaN if none."""
    return _nanmean(per_class_average_precision(scores, targets))


def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else NAN


# --------------------------------------------------------------------------- threshold figures


def top_k_predictions(scores: Any, k: int = 3) -> np.ndarray:
    """Boolean (N, K) matrix marking each row's `k` highest scores (ties: lower class index first)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be an (N, K) array, got shape {s.shape}")
    predicted = np.zeros(s.shape, dtype=bool)
    k = min(int(k), s.shape[1])
    if k <= 0 or s.shape[0] == 0:
        return predicted
    best = np.argsort(-s, axis=1, kind="stable")[:, :k]
    np.put_along_axis(predicted, best, True, axis=1)
    return predicted


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else 0.0


def _f1(precision: float, recall: float) -> float:
    if math.isnan(precision) or math.isnan(recall):
        return NAN
    total = precision + recall
    return 2.0 * precision * recall / total if total > 0 else 0.0


def threshold_figures(predicted: Any, targets: Any) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 of a boolean (N, K) prediction matrix against the targets
    (a predicted label on an undecided pair counts nowhere)."""
    pred = np.asarray(predicted, dtype=bool)
    _, t, known = _as_scores_targets(pred.astype(np.float64), targets)
    pred = (pred[:, None] if pred.ndim == 1 else pred) & known
    tp = np.sum(pred & t, axis=0).astype(np.float64)
    n_pred = np.sum(pred, axis=0).astype(np.float64)
    n_gt = np.sum(t, axis=0).astype(np.float64)
    has_pos = n_gt > 0
    has_neg = np.any(known & ~t, axis=0)
    measured = has_pos & has_neg                      # as AP: a "yes" and a decided "no"
    if not measured.any():
        return dict.fromkeys(("CP", "CR", "CF1", "OP", "OR", "OF1"), NAN)
    class_precision = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
    class_recall = np.divide(tp, n_gt, out=np.zeros_like(tp), where=has_pos)
    cp = float(class_precision[measured].mean())
    cr = float(class_recall[measured].mean())
    op = _ratio(tp[has_neg].sum(), n_pred[has_neg].sum())
    orr = _ratio(tp[has_neg].sum(), n_gt[has_neg].sum())
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": orr, "OF1": _f1(op, orr)}


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class MultilabelReport:
    """Every image-level figure of one model on one set of images (fractions in [0, 1])."""

    mAP: float
    CP: float
    CR: float
    CF1: float
    OP: float
    OR: float
    OF1: float
    CP_top3: float
    CR_top3: float
    CF1_top3: float
    OP_top3: float
    OR_top3: float
    OF1_top3: float
    per_class_ap: tuple[float, ...]      # AP of each class (NaN: class without positives)
    class_names: tuple[str, ...] = ()
    n_images: int = 0
    n_classes: int = 0
    threshold: float | tuple[float, ...] = 0.5

    SUMMARY_KEYS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1",
                    "CP_top3", "CR_top3", "CF1_top3", "OP_top3", "OR_top3", "OF1_top3")

    def summary(self) -> dict[str, float]:
        """The scalar figures, in a fixed order."""
        return {key: getattr(self, key) for key in self.SUMMARY_KEYS}

    def ap_by_class(self) -> dict[str, float]:
        names = self.class_names or tuple(str(k) for k in range(len(self.per_class_ap)))
        return dict(zip(names, self.per_class_ap))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None."""
        threshold = (list(self.threshold) if isinstance(self.threshold, tuple)
                     else self.threshold)
        return {
            **{key: _json_float(value) for key, value in self.summary().items()},
            "per_class_ap": {name: _json_float(ap) for name, ap in self.ap_by_class().items()},
            "n_images": self.n_images,
            "n_classes": self.n_classes,
            "threshold": threshold,
        }


def multilabel_report(scores: Any, targets: Any, threshold: float | Sequence[float] | np.ndarray = 0.5,
                      class_names: Sequence[str] | None = None, top_k: int = 3) -> MultilabelReport:
    """mAP, CP/CR/CF1, OP/OR/OF1 at `threshold` (a number or one per class), their top-3 variants
    and the per-class AP of `scores` (N, K) against `targets` (N, K). See the module docstring."""
    s, t, known = _as_scores_targets(scores, targets)
    t = np.where(known, t, -1.0)
    n, k = s.shape
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for {k} score columns")
    thr = np.asarray(threshold, dtype=np.float64)
    if thr.ndim == 0:
        thr_value: float | tuple[float, ...] = float(thr)
    elif thr.shape == (k,):
        thr_value = tuple(float(x) for x in thr)
    else:
        raise ValueError(f"threshold must be a number or one per class ({k}), got shape {thr.shape}")
    per_class = per_class_average_precision(s, t)
    at_threshold = threshold_figures(s >= thr, t)
    at_top = threshold_figures(top_k_predictions(s, top_k), t)
    return MultilabelReport(
        mAP=_nanmean(per_class),
        **at_threshold,
        **{f"{key}_top3": value for key, value in at_top.items()},
        per_class_ap=tuple(float(x) for x in per_class),
        class_names=tuple(class_names) if class_names is not None else (),
        n_images=n,
        n_classes=k,
        threshold=thr_value,
    )


class MultilabelEvaluator:
    """Accumulate batches, then summarise: ``update(scores, targets)`` ... ``summarize()``.

    For loops that see the data in batches (validation in training, batch tagging)."""

    def __init__(self, class_names: Sequence[str] | None = None) -> None:
        self.class_names = list(class_names) if class_names is not None else None
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def update(self, scores: Any, targets: Any) -> None:
        s, t, known = _as_scores_targets(scores, targets)
        self._scores.append(s)
        self._targets.append(np.where(known, t, -1.0))

    @property
    def n_images(self) -> int:
        return sum(len(s) for s in self._scores)

    def accumulate(self) -> tuple[np.ndarray, np.ndarray]:
        """All scores and targets (1, 0, -1 undecided) seen so far, (N, K) each."""
        if not self._scores:
            k = len(self.class_names) if self.class_names else 0
            return np.zeros((0, k)), np.zeros((0, k))
        return np.concatenate(self._scores), np.concatenate(self._targets)

    def summarize(self, threshold: float | Sequence[float] | np.ndarray = 0.5) -> MultilabelReport:
        scores, targets = self.accumulate()
        return multilabel_report(scores, targets, threshold=threshold, class_names=self.class_names)


# --------------------------------------------------------------------------- localisation


def iou_xywh(box: Sequence[float], boxes: Any) -> np.ndarray:
    """IoU of one [x, y, w, h] box with each of `boxes` (M, 4); shape (M,)."""
    b = np.asarray(box, dtype=np.float64).reshape(4)
    others = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(b[0], others[:, 0])
    iy1 = np.maximum(b[1], others[:, 1])
    ix2 = np.minimum(b[0] + b[2], others[:, 0] + others[:, 2])
    iy2 = np.minimum(b[1] + b[3], others[:, 1] + others[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    union = b[2] * b[3] + others[:, 2] * others[:, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class CorLocResult:
    """CorLoc figures. `corloc` pools all positive image-class pairs; `mean_corloc` averages the
    per-class CorLoc over classes with at least one pair (the figure WSDDN's paper tabulates)."""

    corloc: float
    mean_corloc: float
    per_class: dict[Hashable, float]
    n_pairs: int
    n_hits: int

    def to_dict(self) -> dict[str, Any]:
        return {"corloc": _json_float(self.corloc), "mean_corloc": _json_float(self.mean_corloc),
                "per_class": {str(k): _json_float(v) for k, v in self.per_class.items()},
                "n_pairs": self.n_pairs, "n_hits": self.n_hits}


def corloc(top_boxes: Mapping[Hashable, Mapping[Hashable, Sequence[float] | None]],
           ground_truth: Mapping[Hashable, Mapping[Hashable, Sequence[Sequence[float]]]],
           iou_threshold: float = 0.5) -> CorLocResult:
    """Correct localisation.

    `top_boxes[image][class]` is the model's top-scoring box ``[x, y, w, h]`` for that class on that
    image (missing or None: no box). `ground_truth[image][class]` lists the ground-truth boxes of that
    class on that image. The positive pairs are the (image, class) pairs with at least one
    ground-truth box; a pair is a hit when its top box has IoU >= `iou_threshold` with one of them.
    Predictions for pairs without ground truth are ignored. NaN figures when there is no pair.
    """
    hits: dict[Hashable, int] = {}
    pairs: dict[Hashable, int] = {}
    for image, per_class in ground_truth.items():
        predicted = top_boxes.get(image, {}) or {}
        for cls, gt in per_class.items():
            gt_array = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
            if gt_array.shape[0] == 0:
                continue
            pairs[cls] = pairs.get(cls, 0) + 1
            box = predicted.get(cls)
            hit = box is not None and float(iou_xywh(box, gt_array).max()) >= iou_threshold
            hits[cls] = hits.get(cls, 0) + int(hit)
    n_pairs = sum(pairs.values())
    n_hits = sum(hits.values())
    per_class = {cls: hits[cls] / pairs[cls] for cls in pairs}
    return CorLocResult(
        corloc=n_hits / n_pairs if n_pairs else NAN,
        mean_corloc=float(np.mean(list(per_class.values()))) if per_class else NAN,
        per_class=per_class, n_pairs=n_pairs, n_hits=n_hits)


@dataclass(frozen=True)
class Detection:
    """One detected box: image, class, [x, y, w, h] in original pixels, score."""

    image: Hashable
    cls: Hashable
    bbox: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class BoxAPResult:
    """COCO box AP (IoU 0.50:0.95), AP50 and AP75 in [0, 1]; NaN without ground-truth boxes.
    `per_class_ap50`: AP50 of each class that has ground-truth boxes."""

    ap: float
    ap50: float
    ap75: float
    per_class_ap50: dict[Hashable, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"AP": _json_float(self.ap), "AP50": _json_float(self.ap50),
                "AP75": _json_float(self.ap75),
                "per_class_AP50": {str(k): _json_float(v) for k, v in self.per_class_ap50.items()}}


def box_ap(detections: Iterable[Detection | tuple[Hashable, Hashable, Sequence[float], float]],
           ground_truth: Mapping[Hashable, Mapping[Hashable, Sequence[Sequence[float]]]],
           images: Iterable[Hashable] | None = None, max_detections: int = 100) -> BoxAPResult:
    """Box AP and AP50 through pycocotools' COCOeval (its prints silenced).

    `detections`: `Detection`s or tuples (image, class, [x, y, w, h], score).
    `ground_truth[image][class]`: ground-truth boxes [x, y, w, h] (all non-crowd).
    `images`: the evaluated images (default: those of `ground_truth` and of `detections`); an image
    without ground truth makes all its detections false positives. At most `max_detections` boxes per
    image count (the highest-scoring), as in COCO.
    """
    dets = [d if isinstance(d, Detection) else Detection(d[0], d[1], tuple(map(float, d[2])), float(d[3]))
            for d in detections]
    image_keys: list[Hashable] = list(dict.fromkeys(
        list(images) if images is not None else [*ground_truth.keys(), *(d.image for d in dets)]))
    class_keys: list[Hashable] = list(dict.fromkeys(
        [cls for per_class in ground_truth.values() for cls in per_class] + [d.cls for d in dets]))
    image_id = {key: i + 1 for i, key in enumerate(image_keys)}
    class_id = {key: i + 1 for i, key in enumerate(class_keys)}
    annotations = _coco_annotations(ground_truth, image_id, class_id)
    if not annotations:
        return BoxAPResult(NAN, NAN, NAN, {})
    results = [{"image_id": image_id[d.image], "category_id": class_id[d.cls],
                "bbox": [float(v) for v in d.bbox], "score": float(d.score)}
               for d in dets if d.image in image_id]
    gt_classes = list(dict.fromkeys(class_keys[a["category_id"] - 1] for a in annotations))
    if not results:
        return BoxAPResult(0.0, 0.0, 0.0, dict.fromkeys(gt_classes, 0.0))
    evaluator = _run_cocoeval(image_id, class_id, annotations, results, max_detections)
    return _box_ap_result(evaluator, class_keys, gt_classes)


def _coco_annotations(ground_truth: Mapping[Hashable, Mapping[Hashable, Sequence[Sequence[float]]]],
                      image_id: Mapping[Hashable, int], class_id: Mapping[Hashable, int]
                      ) -> list[dict[str, Any]]:
    """The ground-truth boxes of the evaluated images as COCO annotations (ids from 1)."""
    annotations: list[dict[str, Any]] = []
    for image, per_class in ground_truth.items():
        if image not in image_id:
            continue
        for cls, boxes in per_class.items():
            for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
                annotations.append({
                    "id": len(annotations) + 1,  # COCOeval treats id 0 as "unmatched": start at 1
                    "image_id": image_id[image], "category_id": class_id[cls],
                    "bbox": [float(v) for v in box], "area": float(box[2] * box[3]), "iscrowd": 0})
    return annotations


def _run_cocoeval(image_id: Mapping[Hashable, int], class_id: Mapping[Hashable, int],
                  annotations: list[dict[str, Any]], results: list[dict[str, Any]],
                  max_detections: int) -> Any:
    """A COCOeval of `results` against `annotations`, evaluated and accumulated (prints silenced)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": [{"id": i} for i in image_id.values()],
            "categories": [{"id": c, "name": str(key)} for key, c in class_id.items()],
            "annotations": annotations,
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.maxDets = [1, 10, int(max_detections)]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _box_ap_result(evaluator: Any, class_keys: list[Hashable],
                   gt_classes: list[Hashable]) -> BoxAPResult:
    """AP over IoU 0.5:0.95, AP50, AP75 and per-class AP50 from an accumulated COCOeval."""
    # precision: [T (IoU thresholds), R (recall points), K (classes), A (areas), M (maxDets)]
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    iou_thresholds = evaluator.params.iouThrs
    t50 = int(np.argmin(np.abs(iou_thresholds - 0.5)))
    t75 = int(np.argmin(np.abs(iou_thresholds - 0.75)))
    per_class_ap50 = {}
    for k_index, cat in enumerate(evaluator.params.catIds):
        key = class_keys[cat - 1]
        if key in gt_classes:
            per_class_ap50[key] = _mean_valid(precision[t50, :, k_index])
    return BoxAPResult(ap=_mean_valid(precision), ap50=_mean_valid(precision[t50]),
                       ap75=_mean_valid(precision[t75]), per_class_ap50=per_class_ap50)


def _mean_valid(values: np.ndarray) -> float:
    """Mean of COCOeval precisions, ignoring its -1 (no ground truth); NaN when none."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else NAN


def _json_float(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
