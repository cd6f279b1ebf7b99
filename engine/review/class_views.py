"""Per-class views of a model on the validation split: each class's precision-recall curve with its
current threshold's operating point, and the prediction / co-occurrence matrices at the classes'
thresholds (`engine.metrics.precision_recall_curve`, `engine.metrics.prediction_matrix`).

Scores are those `engine.review.rounds.evaluate_round` measures: the model version's suggestions
for the tagged images of the split (tagging those without any first), a missing suggestion
counting as 0, so each class's AP here is the per-class AP stored for that round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.metrics import (
    PRCurve,
    PredictionMatrix,
    precision_recall_curve,
    prediction_matrix,
)

if TYPE_CHECKING:
    from engine.store import Store
from engine.progress import Progress, ShouldStop
from engine.review.scores import validation_scores


@dataclass(frozen=True)
class ClassViews:
    """One model version's per-class figures on one split (columns in class-id order)."""

    model_version: str | None
    split: str
    class_ids: list[int]
    class_names: list[str]
    thresholds: np.ndarray          # (K,) the classes' thresholds when measured
    curves: list[PRCurve]           # one per class
    matrix: PredictionMatrix
    n_images: int

    def operating_point(self, k: int) -> tuple[float, float]:
        """(precision, recall) of class `k` at its threshold (NaN, NaN: nothing predicted)."""
        return self.curves[k].at_threshold(float(self.thresholds[k]))

    def mean_ap(self) -> float:
        aps = np.array([curve.ap for curve in self.curves], dtype=np.float64)
        kept = aps[~np.isnan(aps)]
        return float(kept.mean()) if kept.size else float("nan")


def class_views(store: Store, model_version: str | None = None, split: str = "val",
                device: str = "auto", progress: Progress = None,
                should_stop: ShouldStop = None) -> ClassViews:
    """Precision-recall curves and prediction matrices of `model_version` (default: the active
    student) on the tagged images of `split`, at the classes' current thresholds. Raises
    UserError without a trained student or without tagged images in the split."""
    table, labels = validation_scores(store, model_version, split, device, progress, should_stop)
    by_id = {c.id: float(c.threshold) for c in store.classes.list()}
    thresholds = np.array([by_id[class_id] for class_id in table.class_ids], dtype=np.float64)
    scores = np.nan_to_num(table.scores, nan=0.0)
    curves = [precision_recall_curve(scores[:, k], labels[:, k]) for k in range(scores.shape[1])]
    matrix = prediction_matrix(scores, labels, thresholds, class_names=table.class_names)
    return ClassViews(table.model_version, split, list(table.class_ids), list(table.class_names),
                      thresholds, curves, matrix, len(table.image_ids))
