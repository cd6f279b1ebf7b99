"""Per-class thresholds: the pure choice on validation scores (best F1, or the lowest threshold
reaching a precision target), calibration of the project's classes on the validation split, and
thresholds a person set by hand.

A suggestion counts as a predicted tag when ``confidence >= threshold`` of its class
(`classes.threshold`, default 0.5). `calibrate_thresholds` puts each threshold midway between the
last score kept and the next lower score, so it does not sit on a validation example. A class
without validation positives keeps its threshold; a class whose target precision is out of reach
gets none (and auto-accept leaves it alone). A threshold the user set by hand
(`set_manual_threshold`, or any edit that makes a class's threshold differ from what calibration
last wrote) is kept by later calibrations unless `override_manual=True`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.store import Store
from engine.progress import Progress, ShouldStop
from engine.review.scores import validation_scores

log = logging.getLogger(__name__)


DEFAULT_THRESHOLD = 0.5

MANUAL_KEY = "review.manual_thresholds"          # class ids whose threshold the user set by hand

CALIBRATED_KEY = "review.calibrated_thresholds"  # class id -> last value calibration wrote

CALIBRATION_KEY = "review.calibration"            # the last calibration (mode, target, version)


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold chosen for one class and its figures on the calibration images."""

    threshold: float | None       # None: no positives, or the precision target is out of reach
    precision: float
    recall: float
    f1: float
    positives: int
    status: str                   # 'calibrated' | 'no positives' | 'unreachable'


def _sweep(scores: np.ndarray, labels: np.ndarray):
    """Cut points of a ranking: distinct scores (highest first), cumulative TP and FP when every
    score >= that cut is predicted positive, and each cut's threshold (midway to the next lower
    score; the cut itself for the lowest)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp, fp = np.cumsum(y), np.cumsum(~y)
    last_of_tie = np.r_[s[1:] != s[:-1], True]          # a tie of equal scores is one cut
    cut_scores, tp, fp = s[last_of_tie], tp[last_of_tie], fp[last_of_tie]
    lower = np.r_[cut_scores[1:], cut_scores[-1:]]
    thresholds = np.where(lower < cut_scores, (cut_scores + lower) / 2.0, cut_scores)
    return thresholds, tp.astype(np.float64), fp.astype(np.float64)


def _figures(tp: np.ndarray, fp: np.ndarray, positives: int):
    precision = tp / np.maximum(tp + fp, 1.0)
    recall = tp / max(positives, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def choose_threshold(scores: Sequence[float], labels: Sequence[bool], mode: str = "f1",
                     precision_target: float = 0.9) -> ThresholdChoice:
    """The threshold of one class: mode 'f1' (best F1) or 'precision' (the lowest threshold whose
    precision on these examples reaches `precision_target`). NaN scores are ignored."""
    if mode not in ("f1", "precision"):
        raise UserError(f"Unknown calibration mode {mode!r}; use f1 or precision.")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    keep = ~np.isnan(s)
    s, y = s[keep], y[keep]
    positives = int(y.sum())
    if positives == 0:
        return ThresholdChoice(None, math.nan, math.nan, math.nan, 0, "no positives")
    thresholds, tp, fp = _sweep(s, y)
    precision, recall, f1 = _figures(tp, fp, positives)
    if mode == "f1":
        best = int(np.argmax(f1))             # first maximum: the highest threshold among ties
    else:
        reaching = np.flatnonzero(precision >= precision_target - 1e-12)
        if reaching.size == 0:
            return ThresholdChoice(None, float(precision.max()), math.nan, math.nan, positives,
                                   "unreachable")
        best = int(reaching[-1])              # the lowest threshold that still reaches it
    return ThresholdChoice(float(thresholds[best]), float(precision[best]), float(recall[best]),
                           float(f1[best]), positives, "calibrated")


def choose_thresholds(scores: np.ndarray, labels: np.ndarray, mode: str = "f1",
                      precision_target: float | Sequence[float] = 0.9) -> list[ThresholdChoice]:
    """`choose_threshold` for every column of (N, K) scores and labels; `precision_target` is one
    value or one per class. A label below 0 (UNKNOWN) is an undecided pair: left out."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.where(labels >= 0, np.asarray(scores, dtype=np.float64), np.nan)
    labels = labels > 0.5
    targets = np.broadcast_to(np.asarray(precision_target, dtype=np.float64), (scores.shape[1],))
    return [choose_threshold(scores[:, k], labels[:, k], mode, float(targets[k]))
            for k in range(scores.shape[1])]


def _id_map(value) -> dict[int, float]:
    return {int(k): float(v) for k, v in (value or {}).items()}


def manual_threshold_ids(store: Store) -> set[int]:
    """Classes whose threshold the user set by hand: marked with `set_manual_threshold`, or whose
    threshold differs from what calibration last wrote (from the default 0.5 if never calibrated)."""
    marked = {int(i) for i in store.settings.get(MANUAL_KEY, [])}
    calibrated = _id_map(store.settings.get(CALIBRATED_KEY))
    for tag_class in store.classes.list():
        expected = calibrated.get(tag_class.id, DEFAULT_THRESHOLD)
        if not math.isclose(tag_class.threshold, expected, abs_tol=1e-9):
            marked.add(tag_class.id)
    return marked


def set_manual_threshold(store: Store, class_id: int, threshold: float) -> None:
    """Set a class's threshold by hand; calibration keeps it from now on."""
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"A threshold must be between 0 and 1, not {threshold}.")
    store.classes.update(class_id, threshold=float(threshold))
    marked = {int(i) for i in store.settings.get(MANUAL_KEY, [])} | {class_id}
    store.settings.set(MANUAL_KEY, sorted(marked))


def clear_manual_threshold(store: Store, class_id: int) -> None:
    """Let calibration choose this class's threshold again."""
    marked = {int(i) for i in store.settings.get(MANUAL_KEY, [])} - {class_id}
    store.settings.set(MANUAL_KEY, sorted(marked))
    current = {c.id: c.threshold for c in store.classes.list()}
    calibrated = _id_map(store.settings.get(CALIBRATED_KEY))
    if class_id in current:
        calibrated[class_id] = current[class_id]
    store.settings.set(CALIBRATED_KEY, {str(k): v for k, v in calibrated.items()})


@dataclass(frozen=True)
class ClassCalibration:
    class_id: int
    name: str
    old_threshold: float
    new_threshold: float          # what the class has now (old one when kept)
    choice: ThresholdChoice
    manual: bool                  # kept because the user set it by hand
    applied: bool


@dataclass(frozen=True)
class CalibrationReport:
    model_version: str
    split: str
    mode: str
    precision_target: float
    n_images: int
    classes: list[ClassCalibration] = field(default_factory=list)

    def summary(self) -> str:
        changed = sum(c.applied for c in self.classes)
        kept = sum(c.manual for c in self.classes)
        how = "best F1" if self.mode == "f1" else f"precision >= {self.precision_target:.2f}"
        text = (f"Calibrated {changed} class thresholds ({how}) on {self.n_images} {self.split} "
                f"images of {self.model_version}")
        return text + (f"; kept {kept} set by hand." if kept else ".")


def calibrate_thresholds(store: Store, mode: str = "f1", precision_target: float = 0.9,
                         model_version: str | None = None, split: str = "val", apply: bool = True,
                         override_manual: bool = False, device: str = "auto",
                         progress: Progress = None, should_stop: ShouldStop = None
                         ) -> CalibrationReport:
    """Choose every class's threshold on the validation split (see the module docstring) and, with
    `apply`, store it in `classes.threshold` (thresholds set by hand are kept)."""
    table, labels = validation_scores(store, model_version, split, device, progress, should_stop)
    choices = choose_thresholds(table.scores, labels, mode, precision_target)
    manual = set() if override_manual else manual_threshold_ids(store)
    current = {c.id: c.threshold for c in store.classes.list()}
    calibrated = _id_map(store.settings.get(CALIBRATED_KEY))
    results = []
    for class_id, name, choice in zip(table.class_ids, table.class_names, choices):
        old = current[class_id]
        is_manual = class_id in manual
        applied = apply and not is_manual and choice.threshold is not None
        if applied:
            store.classes.update(class_id, threshold=choice.threshold)
            calibrated[class_id] = choice.threshold
        results.append(ClassCalibration(class_id, name, old, choice.threshold if applied else old,
                                        choice, is_manual, applied))
    if apply:
        store.settings.set(CALIBRATED_KEY, {str(k): v for k, v in calibrated.items()})
        if override_manual:
            store.settings.set(MANUAL_KEY, [])
        store.settings.set(CALIBRATION_KEY, {"mode": mode, "precision_target": precision_target,
                                             "model_version": table.model_version, "split": split})
    report = CalibrationReport(table.model_version or "", split, mode, precision_target,
                               len(table.image_ids), results)
    log.info(report.summary())
    return report
