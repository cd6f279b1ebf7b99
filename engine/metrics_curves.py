"""Per-class views of a multi-label model: precision-recall curves and the prediction /
co-occurrence matrices. Pure NumPy; re-exported by `engine.metrics`, the entry the rest of the code
uses (import from there).

Precision-recall curve of one class
-----------------------------------
The ranking by score is cut at each distinct score value (highest first; tied scores are one cut,
as in `engine.metrics.average_precision`); a cut predicts every image whose score is >= its
threshold. ``precision[n] = TP_n / (TP_n + FP_n)``, ``recall[n] = TP_n / positives``, and
``AP = sum_n (recall[n] - recall[n-1]) * precision[n]``, which is exactly the non-interpolated AP of
`engine.metrics.per_class_average_precision`. A class without positives has recall NaN and AP NaN.

Prediction matrix (multi-label "confusion")
-------------------------------------------
Multi-label images have no single true and single predicted class, so the matrix counts pairs: with
a predicted label being ``score >= threshold`` of its class,

- ``counts[i, j]``: images tagged i (positive for i) on which j is predicted. The diagonal is each
  class's true positives; a row divided by the class's positives (``rates``) gives, on the diagonal,
  the class's recall and off it how often images of i get j predicted. ``rates`` is NaN in the row of
  a class without positives.
- ``mistaken[i, j]``: of those, the images tagged negative for j (j is a false positive there; an
  undecided j is not counted), which
  separates a confusion (i taken for j) from j genuinely being in the picture too.
- ``cooccurrence[i, j]``: images tagged both i and j (the ground truth alone; the diagonal is each
  class's positives). Reading ``counts`` next to it tells whether the model learned a correlation
  that the labels have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PRCurve", "PredictionMatrix", "precision_recall_curve", "prediction_matrix"]

NAN = float("nan")


@dataclass(frozen=True)
class PRCurve:
    """The precision-recall curve of one class: one point per cut of the ranking, highest
    threshold first (recall grows along the arrays)."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray      # a prediction is score >= threshold
    ap: float                   # NaN: no positives
    positives: int

    def at_threshold(self, threshold: float) -> tuple[float, float]:
        """(precision, recall) when every score >= `threshold` is predicted; (NaN, NaN) when
        nothing is predicted there or the class has no positives."""
        kept = np.flatnonzero(self.thresholds >= threshold)
        if kept.size == 0 or self.positives == 0:
            return NAN, NAN
        last = int(kept[-1])
        return float(self.precision[last]), float(self.recall[last])


def precision_recall_curve(scores: Any, positive: Any) -> PRCurve:
    """The precision-recall curve and AP of one class from its scores (N,) and labels (N,; > 0.5
    counts as positive, below 0 is undecided and left out). Scores must be finite (see the module
    docstring)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(positive, dtype=np.float64).reshape(-1)
    if s.shape != labels.shape:
        raise ValueError(f"scores and labels must have the same length, got {s.size} and "
                         f"{labels.size}")
    s, y = s[labels >= 0], labels[labels >= 0] > 0.5
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    n_pos = int(y.sum())
    if s.size == 0:
        empty = np.zeros(0)
        return PRCurve(empty, empty, empty, NAN, n_pos)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y).astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]   # each run of equal scores
    tp = tp[last]
    precision = tp / (last + 1.0)
    if n_pos == 0:
        return PRCurve(precision, np.full(tp.shape, NAN), s[last], NAN, 0)
    recall = tp / n_pos
    ap = (float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) if n_pos < s.size
          else NAN)      # no negative: nothing to rank against (engine.metrics)
    return PRCurve(precision, recall, s[last], ap, n_pos)


@dataclass(frozen=True)
class PredictionMatrix:
    """Rows: the class an image is tagged with; columns: the class predicted on it (see the
    module docstring). All matrices are (K, K); `positives` (K,) counts each class's images."""

    counts: np.ndarray
    rates: np.ndarray
    mistaken: np.ndarray
    cooccurrence: np.ndarray
    positives: np.ndarray
    n_images: int
    class_names: tuple[str, ...] = ()

    def describe(self, i: int, j: int) -> str:
        """One cell in words (the GUI's tooltip)."""
        names = self.class_names or tuple(str(k) for k in range(len(self.positives)))
        a, b = names[i], names[j]
        n = int(self.positives[i])
        if n == 0:
            return f"No image is tagged {a}."
        count = int(self.counts[i, j])
        share = f"{count} of the {n} images tagged {a} ({100.0 * count / n:.0f}%)"
        if i == j:
            return f"{a} is predicted on {share}: its recall."
        return (f"{b} is predicted on {share}; {int(self.mistaken[i, j])} of them are not tagged "
                f"{b}. {int(self.cooccurrence[i, j])} images are tagged both {a} and {b}.")


def prediction_matrix(scores: Any, targets: Any,
                      threshold: float | Sequence[float] | np.ndarray = 0.5,
                      class_names: Sequence[str] | None = None) -> PredictionMatrix:
    """The prediction and co-occurrence matrices of scores (N, K) against targets (N, K) at
    `threshold` (one number, or one per class). A target below 0 is undecided: never a mistake."""
    s = np.asarray(scores, dtype=np.float64)
    decided = np.asarray(targets, dtype=np.float64)
    t, negative = decided > 0.5, (decided >= 0) & (decided <= 0.5)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"scores and targets must both be (N, K) arrays of the same shape, "
                         f"got {s.shape} and {t.shape}")
    k = s.shape[1]
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for {k} score columns")
    thr = np.asarray(threshold, dtype=np.float64)
    if thr.ndim != 0 and thr.shape != (k,):
        raise ValueError(f"threshold must be a number or one per class ({k}), got shape {thr.shape}")
    predicted = (s >= thr).astype(np.int64)
    tagged = t.astype(np.int64)
    counts = tagged.T @ predicted
    mistaken = tagged.T @ (predicted * negative.astype(np.int64))
    cooccurrence = tagged.T @ tagged
    positives = tagged.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(positives[:, None] > 0, counts / positives[:, None], NAN)
    return PredictionMatrix(counts, rates, mistaken, cooccurrence, positives, int(s.shape[0]),
                            tuple(class_names) if class_names is not None else ())
