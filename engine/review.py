"""The review loop's decisions: thresholds calibrated on the validation split, the review queue's
orderings, and the auto-accept rule.

Every function has a pure NumPy core (tested on hand-made cases) and a thin wrapper that reads and
writes the project store. No Qt here: the GUI calls these from its background workers.

Thresholds
----------
A suggestion counts as a predicted tag when ``confidence >= threshold`` of its class
(`classes.threshold`, default 0.5). `calibrate_thresholds` chooses, per class, on the validation
split, either the threshold of best F1 or the *lowest* threshold whose precision reaches a target.
The threshold is put midway between the last score kept and the next lower score, so it does not
sit on a validation example. A class without validation positives keeps its threshold; a class
whose target precision is out of reach gets none (and auto-accept leaves it alone).

Manual override: a threshold the user set by hand (`set_manual_threshold`, or any edit that makes a
class's threshold differ from what calibration last wrote) is kept by later calibrations unless
`override_manual=True`.

Review queue
------------
`QUEUE_ORDERS` lists the orderings, each with the one-line explanation the GUI shows as tooltip.
`review_queue(store, order)` returns the images in that order, each with a short reason. Images a
person has reviewed are left out unless `include_reviewed=True` ('unreviewed first' keeps
them, last). The 'mistakes' order needs out-of-fold predictions (`engine.label_issues`).

Auto-accept
-----------
`auto_accept(store, precision_target)` calibrates one threshold per class at that precision on the
validation split and turns every suggestion above it into a positive tag with source 'model rule',
all in ONE tag batch, so `undo_auto_accept(store, result.batch)` (or `store.tags.revert_batch`)
undoes the whole rule in one step (tags a person changed since are left alone). It never touches
an existing tag (a person's decision wins), and never tags validation or test images (a model's
guess must not become the ground truth it is measured against).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import UserError
from engine.splits import split_key

if TYPE_CHECKING:
    from engine.label_issues import OutOfFold
    from engine.store import Store

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None] | None
ShouldStop = Callable[[], bool] | None

DEFAULT_THRESHOLD = 0.5
MANUAL_KEY = "review.manual_thresholds"          # class ids whose threshold the user set by hand
CALIBRATED_KEY = "review.calibrated_thresholds"  # class id -> last value calibration wrote
AUTO_ACCEPT_KEY = "review.auto_accept"            # the last auto-accept rule applied
CALIBRATION_KEY = "review.calibration"            # the last calibration (mode, target, version)


# =========================================================================== threshold calibration


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
    value or one per class."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels) > 0.5
    targets = np.broadcast_to(np.asarray(precision_target, dtype=np.float64), (scores.shape[1],))
    return [choose_threshold(scores[:, k], labels[:, k], mode, float(targets[k]))
            for k in range(scores.shape[1])]


# ---------------------------------------------------------------- store: scores of a model version


@dataclass(frozen=True)
class ScoreTable:
    """Confidences of one model version: scores[i, k] for image_ids[i], class_ids[k] (NaN: none)."""

    image_ids: list[int]
    class_ids: list[int]
    class_names: list[str]
    scores: np.ndarray
    model_version: str | None


def active_version(store: Store, stage: str = "student") -> str | None:
    """The model version in use for `stage` (see engine.models.registry), or None."""
    from engine.models.registry import active_run

    run = active_run(store, stage)
    return run.model_version if run is not None else None


def score_table(store: Store, image_ids: Sequence[int], model_version: str | None) -> ScoreTable:
    """The stored suggestions of `model_version` for `image_ids` as a matrix."""
    classes = store.classes.list()
    column = {c.id: k for k, c in enumerate(classes)}
    scores = np.full((len(image_ids), len(classes)), np.nan)
    if model_version is not None and len(image_ids):
        rows = store.suggestions.for_images(image_ids, model_version)
        for i, image_id in enumerate(image_ids):
            for suggestion in rows.get(image_id, ()):
                k = column.get(suggestion.class_id)
                if k is not None:
                    scores[i, k] = suggestion.confidence
    return ScoreTable(list(image_ids), [c.id for c in classes], [c.name for c in classes], scores,
                      model_version)


def teacher_table(store: Store, image_ids: Sequence[int], model_version: str | None) -> ScoreTable:
    """The teacher's image-level confidences: its stored suggestions when it has some, else the
    best region score per class (regions are what `detect_paths` stores)."""
    table = score_table(store, image_ids, model_version)
    if model_version is None or not np.isnan(table.scores).all():
        return table
    column = {class_id: k for k, class_id in enumerate(table.class_ids)}
    scores = table.scores
    best = store.regions.best_scores(image_ids, model_version)
    for i, image_id in enumerate(image_ids):
        if image_id in best:
            scores[i] = np.where(np.isnan(scores[i]), 0.0, scores[i])
        for class_id, score in best.get(image_id, {}).items():
            k = column.get(class_id)
            if k is not None:
                scores[i, k] = max(scores[i, k], score)
    return table


def ensure_teacher_scores(store: Store, image_ids: Sequence[int], model_version: str,
                          device: str = "auto", progress: Progress = None,
                          should_stop: ShouldStop = None) -> None:
    """Run the teacher (`detect_paths`) on the images that have neither its suggestions nor its
    regions; store its regions and its image-level scores (as suggestions of the teacher's
    version, which the gallery reads as the teacher's opinion)."""
    have = store.suggestions.for_images(image_ids, model_version)
    with_regions = store.regions.best_scores(image_ids, model_version)
    missing = [i for i in image_ids if not have.get(i) and i not in with_regions]
    if not missing:
        return
    from engine.inference.detect import detect_paths
    from engine.inference.tagging import save_suggestions

    paths = store.images.paths(missing)
    result = detect_paths(store, [paths[i] for i in missing if i in paths],
                          model_version=model_version, device=device, progress=progress,
                          should_stop=should_stop)
    save_suggestions(store, model_version, result.class_names,
                     [item.image_id for item in result], [item.image_scores for item in result])


def ensure_suggestions(store: Store, image_ids: Sequence[int], model_version: str,
                       device: str = "auto", progress: Progress = None,
                       should_stop: ShouldStop = None) -> None:
    """Run the student (`tag_paths`) on the images that have no suggestions of `model_version`."""
    have = store.suggestions.for_images(image_ids, model_version)
    missing = [image_id for image_id in image_ids if not have.get(image_id)]
    if not missing:
        return
    from engine.inference.tagging import tag_paths

    paths = store.images.paths(missing)
    tag_paths(store, [paths[i] for i in missing if i in paths], model_version=model_version,
              device=device, progress=progress, should_stop=should_stop)


def validation_scores(store: Store, model_version: str | None = None, split: str = "val",
                      device: str = "auto", progress: Progress = None,
                      should_stop: ShouldStop = None) -> tuple[ScoreTable, np.ndarray]:
    """(scores of the tagged `split` images, their labels (N, K)) for `model_version` (default: the
    active student), tagging the images that have no suggestions of that version yet."""
    version = model_version or active_version(store, "student")
    if version is None:
        raise UserError("This project has no trained student yet; train one first.")
    matrix = store.tags.label_matrix(split=split)
    if not matrix.image_ids:
        raise UserError(f"The {split} split has no tagged images to calibrate on; "
                        "assign a validation split first.")
    ensure_suggestions(store, matrix.image_ids, version, device, progress, should_stop)
    return score_table(store, matrix.image_ids, version), matrix.labels


# ------------------------------------------------------------------ store: thresholds and overrides


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


# ============================================================================= review queue


@dataclass(frozen=True)
class QueueOrder:
    key: str
    label: str
    tooltip: str


QUEUE_ORDERS: tuple[QueueOrder, ...] = (
    QueueOrder("uncertain", "Most uncertain first",
               "Images whose suggestions sit closest to their class thresholds first, summed "
               "over classes: the model is least sure there, so your answer teaches it the most "
               "(and a wrong tag often leaves it unsure about two classes). Images the model "
               "was trained on and the others are ranked apart and taken in proportion, since "
               "a model is always surer about what it has seen."),
    QueueOrder("disagreement", "Teacher-student disagreement first",
               "Images where the detector (teacher) and the tagger (student) disagree most about "
               "a class first: one of them, or the tag, is likely wrong."),
    QueueOrder("mistakes", "Likely label mistakes first",
               "Tags that models trained without that image contradict with high confidence "
               "first (out-of-fold predictions ranked with cleanlab): likely wrong or missing tags."),
    QueueOrder("unreviewed", "Unreviewed first",
               "Images nobody has reviewed yet first, oldest first; reviewed images come last."),
    QueueOrder("random", "Random order",
               "A random order (the same for the same seed): an unbiased sample, and the baseline "
               "the other orders are measured against."),
)
QUEUE_ORDER_KEYS = tuple(order.key for order in QUEUE_ORDERS)


def queue_order(key: str) -> QueueOrder:
    for order in QUEUE_ORDERS:
        if order.key == key:
            return order
    raise UserError(f"Unknown review order {key!r}; use one of {', '.join(QUEUE_ORDER_KEYS)}.")


# --- pure priorities: higher = earlier in the queue; -inf = nothing to say (goes last) ----------


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def uncertainty_priority(scores: np.ndarray, thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(priority, class) per image: the image's total uncertainty, and its most uncertain class.

    Each suggestion's distance to its class threshold is taken in logits (so 0.01 against a
    threshold of 0.03, a confident no, is not as close a call as 0.48 against 0.5) and turned
    into the binary entropy of sigmoid(logit(p) - logit(threshold)): 1 bit at the threshold,
    near 0 far from it. The priority is the sum over classes, so an image the model is unsure
    about for two classes (as when one tag stands where another belongs) comes before an image
    with one borderline class. Rows without any score get -inf."""
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)[None, :]
    shifted = 1.0 / (1.0 + np.exp(-(_logit(scores) - _logit(thresholds))))
    shifted = np.clip(shifted, 1e-12, 1 - 1e-12)
    entropy = -(shifted * np.log2(shifted) + (1 - shifted) * np.log2(1 - shifted))
    entropy = np.where(np.isnan(scores), np.nan, entropy)
    _, best = _best_per_row(entropy)
    scored = ~np.isnan(entropy).all(axis=1)
    total = np.where(scored, np.nansum(entropy, axis=1), -np.inf)
    return total, best


def disagreement_priority(student: np.ndarray, teacher: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(priority, class) per image: the largest |student - teacher| confidence gap, and its class."""
    gap = np.abs(np.asarray(student, dtype=np.float64) - np.asarray(teacher, dtype=np.float64))
    return _best_per_row(gap)


def label_issue_priority(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(priority, suspect class, flagged) per tagged image from out-of-fold probabilities: priority
    is 1 - cleanlab's multi-label label-quality score (self-confidence per class, aggregated by
    exponential moving average, so one badly wrong tag ranks high); the suspect class is the one of
    lowest per-class quality; flagged is cleanlab's `find_label_issues` decision."""
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import (
        get_label_quality_scores,
        get_label_quality_scores_per_class,
    )

    y = np.asarray(labels) > 0.5
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-6, 1 - 1e-6)
    n, k = y.shape
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=int), np.zeros(0, dtype=bool)
    # cleanlab needs every class to occur; classes never (or always) tagged say nothing here.
    informative = np.flatnonzero(y.any(axis=0) & ~y.all(axis=0))
    if informative.size < 2:
        # Too little to hand to cleanlab: self-confidence of the worst label directly.
        confidence = np.where(y, p, 1 - p)
        return 1 - confidence.min(axis=1), confidence.argmin(axis=1), np.zeros(n, dtype=bool)
    y_in, p_in = y[:, informative], p[:, informative]
    label_lists = [list(np.flatnonzero(row)) for row in y_in]
    quality = get_label_quality_scores(label_lists, p_in)
    per_class = get_label_quality_scores_per_class(label_lists, p_in)
    flagged = np.asarray(find_label_issues(label_lists, p_in), dtype=bool)
    return 1 - quality, informative[np.argmin(per_class, axis=1)], flagged


def _best_per_row(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    filled = np.where(np.isnan(values), -np.inf, values)
    best = np.argmax(filled, axis=1) if filled.shape[1] else np.zeros(len(filled), dtype=int)
    priority = filled[np.arange(len(filled)), best] if filled.shape[1] else np.full(len(filled), -np.inf)
    return priority, best


def proportional_order(priority: np.ndarray, groups: Sequence[object],
                       tie_keys: Sequence[int]) -> np.ndarray:
    """Indices by descending priority within each group, the groups interleaved in proportion to
    their sizes (each entry placed at its rank / group size); rows of -inf priority last.

    For scores that are not comparable across groups: a model is surer about the images it learnt
    from than about images it has not seen, so ranking both by one uncertainty would put nearly
    every unseen image first."""
    priority = np.asarray(priority, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    keys = np.asarray(tie_keys, dtype=np.uint64)
    ranked = order_by_priority(priority, tie_keys)
    finite = np.isfinite(priority)
    position = np.ones(len(priority))
    for group in set(groups.tolist()):
        members = ranked[(groups[ranked] == group) & finite[ranked]]
        position[members] = (np.arange(len(members)) + 0.5) / max(len(members), 1)
    return np.lexsort((keys, position, ~finite))


def order_by_priority(priority: np.ndarray, tie_keys: Sequence[int]) -> np.ndarray:
    """Indices by descending priority; ties (and all -inf rows) by the stable `tie_keys`."""
    priority = np.asarray(priority, dtype=np.float64)
    keys = np.asarray(tie_keys, dtype=np.uint64)
    return np.lexsort((keys, -priority))


# --- the queue over the project ----------------------------------------------------------------


@dataclass(frozen=True)
class QueueEntry:
    image_id: int
    priority: float
    reason: str


@dataclass(frozen=True)
class ReviewQueue:
    order: str
    entries: list[QueueEntry]
    model_version: str | None = None
    teacher_version: str | None = None
    note: str = ""

    @property
    def image_ids(self) -> list[int]:
        return [entry.image_id for entry in self.entries]


def reviewed_images(store: Store, image_ids: Iterable[int]) -> set[int]:
    """Images a person has reviewed: at least one of their tags is marked reviewed (every
    person's edit is; imports are not). The same definition as the gallery's 'unreviewed'
    filter (`engine.gallery_query`)."""
    return {image_id for image_id, rows in tags_by_image(store, image_ids).items()
            if any(t.reviewed for t in rows)}


def tags_by_image(store: Store, image_ids: Iterable[int], chunk: int = 900) -> dict[int, list]:
    """`store.tags.for_images` in chunks (SQLite limits the parameters of one query)."""
    ids = list(image_ids)
    result: dict[int, list] = {}
    for start in range(0, len(ids), chunk):
        result.update(store.tags.for_images(ids[start:start + chunk]))
    return result


def review_queue(store: Store, order: str, image_ids: Sequence[int] | None = None,
                 model_version: str | None = None, teacher_version: str | None = None,
                 include_reviewed: bool = False, seed: int = 0,
                 out_of_fold: OutOfFold | None = None, limit: int | None = None,
                 ensure_scores: bool = False, device: str = "auto", progress: Progress = None,
                 should_stop: ShouldStop = None) -> ReviewQueue:
    """The images (default: every readable image) in the review order `order` (QUEUE_ORDER_KEYS).

    Scores are the stored suggestions of `model_version` (default: the active student) and, for
    'disagreement', of `teacher_version` (default: the active teacher). 'mistakes' uses
    `out_of_fold` predictions, computed with `engine.label_issues.out_of_fold_predictions` when
    not given. With `ensure_scores`, images without scores of those versions are run through the
    student (and, for 'disagreement', the teacher) first; otherwise they go last. Long work takes
    `device`, `progress` and `should_stop`.
    """
    queue_order(order)
    ids = list(store.images.ids() if image_ids is None else image_ids)
    reviewed = reviewed_images(store, ids)
    if not include_reviewed and order != "unreviewed":
        ids = [image_id for image_id in ids if image_id not in reviewed]
    if not ids:
        return ReviewQueue(order, [], note="Nothing to review.")
    images = {image.id: image for image in store.images.list()}
    tie_keys = [split_key(images[i].content_hash if i in images else None, i, seed) for i in ids]
    version = model_version or active_version(store, "student")
    classes = store.classes.list()
    names = [c.name for c in classes]
    priority = np.full(len(ids), -np.inf)
    reasons = [""] * len(ids)
    note = ""
    teacher = None

    if order == "random":
        priority = np.zeros(len(ids))
    elif order == "unreviewed":
        priority = np.array([0.0 if i in reviewed else 1.0 for i in ids])
        tie_keys = list(ids)                                   # oldest (lowest id) first
        reasons = ["reviewed" if i in reviewed else "not reviewed yet" for i in ids]
    elif order == "uncertain":
        if ensure_scores and version is not None:
            ensure_suggestions(store, ids, version, device, progress, should_stop)
        table = _need_scores(store, ids, version)
        thresholds = [c.threshold for c in classes]
        priority, best = uncertainty_priority(table.scores, thresholds)
        for n, (p, k) in enumerate(zip(priority, best)):
            if np.isfinite(p):
                reasons[n] = (f"{names[k]}: {table.scores[n, k]:.2f} vs threshold "
                              f"{thresholds[k]:.2f}")
    elif order == "disagreement":
        if ensure_scores and version is not None:
            ensure_suggestions(store, ids, version, device, progress, should_stop)
        table = _need_scores(store, ids, version)
        teacher = teacher_version or active_version(store, "teacher")
        if teacher is None:
            raise UserError("This project has no trained teacher to compare the student with.")
        if ensure_scores:
            ensure_teacher_scores(store, ids, teacher, device, progress, should_stop)
        other = teacher_table(store, ids, teacher)
        priority, best = disagreement_priority(table.scores, other.scores)
        for n, (p, k) in enumerate(zip(priority, best)):
            if np.isfinite(p):
                reasons[n] = (f"{names[k]}: student {table.scores[n, k]:.2f}, "
                              f"teacher {other.scores[n, k]:.2f}")
    elif order == "mistakes":
        if out_of_fold is None:
            from engine.label_issues import out_of_fold_predictions

            out_of_fold = out_of_fold_predictions(store, model_version=version, device=device,
                                                  progress=progress, should_stop=should_stop)
        priority, reasons, note = _mistake_priorities(store, ids, out_of_fold, names)
    if order == "uncertain":     # the student's training images against the rest, in proportion
        learnt = [i in images and images[i].split == "train" for i in ids]
        entries_order = proportional_order(priority, learnt, tie_keys)
    else:
        entries_order = order_by_priority(priority, tie_keys)
    entries = [QueueEntry(ids[n], float(priority[n]), reasons[n]) for n in entries_order]
    if limit is not None:
        entries = entries[:limit]
    return ReviewQueue(order, entries, version, teacher, note)


def _need_scores(store: Store, ids: Sequence[int], version: str | None) -> ScoreTable:
    if version is None:
        raise UserError("This project has no trained student yet; train one first.")
    return score_table(store, ids, version)


def _mistake_priorities(store: Store, ids: Sequence[int], oof: OutOfFold,
                        names: Sequence[str]) -> tuple[np.ndarray, list[str], str]:
    row_of = {image_id: n for n, image_id in enumerate(ids)}
    matrix = store.tags.label_matrix(image_ids=oof.image_ids)
    oof_row = {image_id: n for n, image_id in enumerate(oof.image_ids)}
    keep = [n for n, image_id in enumerate(matrix.image_ids)
            if image_id in oof_row and image_id in row_of]
    labels = matrix.labels[keep]
    oof_column = {class_id: k for k, class_id in enumerate(oof.class_ids)}
    current_ids = [c.id for c in store.classes.list()]
    probs = np.full(labels.shape, np.nan)
    for k, class_id in enumerate(current_ids):
        if class_id in oof_column:
            probs[:, k] = oof.probs[[oof_row[matrix.image_ids[n]] for n in keep], oof_column[class_id]]
    known = ~np.isnan(probs).any(axis=0)           # classes the out-of-fold model knows
    priority = np.full(len(ids), -np.inf)
    reasons = [""] * len(ids)
    if not keep or not known.any():
        return priority, reasons, "No tagged images with out-of-fold predictions."
    columns = np.flatnonzero(known)
    scores, suspect, flagged = label_issue_priority(labels[:, columns], probs[:, columns])
    for row, (n, score, k, flag) in enumerate(zip(keep, scores, suspect, flagged)):
        image_id = matrix.image_ids[n]
        k_full = columns[k]
        tagged = labels[row, k_full] > 0.5
        priority[row_of[image_id]] = score
        reasons[row_of[image_id]] = (
            f"{names[k_full]}: tagged {'yes' if tagged else 'no'}, out-of-fold model "
            f"{probs[row, k_full]:.2f}" + (" (flagged)" if flag else ""))
    note = f"{int(flagged.sum())} images flagged by cleanlab as likely label issues."
    return priority, reasons, note


# ============================================================================= auto-accept


@dataclass(frozen=True)
class AutoAcceptResult:
    batch: str | None                   # tag batch to revert in one step (None: nothing applied)
    count: int
    per_class: dict[str, int]
    thresholds: dict[str, float | None]  # per class; None: target out of reach (class skipped)
    precision_target: float
    model_version: str
    since_id: int = 0                   # the tag-history id just before the rule's changes

    def summary(self) -> str:
        skipped = sorted(name for name, t in self.thresholds.items() if t is None)
        text = (f"Auto-accepted {self.count} suggestions of {self.model_version} at precision "
                f">= {self.precision_target:.2f}")
        return text + (f"; {len(skipped)} classes cannot reach it." if skipped else ".")


def select_auto_accept(scores: np.ndarray, thresholds: Sequence[float | None],
                       has_tag: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) pairs to accept: score >= the class's threshold, the class has a threshold,
    and the pair has no tag yet (pure)."""
    scores = np.asarray(scores, dtype=np.float64)
    limit = np.array([np.inf if t is None else t for t in thresholds], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        hit = (scores >= limit[None, :]) & ~np.asarray(has_tag, dtype=bool) & ~np.isnan(scores)
    return [(int(i), int(k)) for i, k in zip(*np.nonzero(hit))]


def auto_accept(store: Store, precision_target: float | Mapping[str, float] = 0.95,
                model_version: str | None = None, image_ids: Sequence[int] | None = None,
                splits: Sequence[str] = ("train", "unassigned"), device: str = "auto",
                progress: Progress = None, should_stop: ShouldStop = None) -> AutoAcceptResult:
    """Accept, as positive tags with source 'model rule', every suggestion whose confidence is at
    or above its class's threshold for `precision_target` (one value, or per class name),
    calibrated on the validation split. Images without suggestions of that version are run through
    the student first. One tag batch: `undo_auto_accept(store, result.batch)` undoes it all.
    Pairs that already have a tag are never touched; a cancel applies nothing."""
    from engine.store import TagEdit

    table_val, labels = validation_scores(store, model_version, "val", device, progress, should_stop)
    version = table_val.model_version or ""
    names = table_val.class_names
    if isinstance(precision_target, Mapping):
        targets = [float(precision_target.get(name, 1.0)) for name in names]
        shown_target = min(targets) if targets else 1.0
    else:
        targets = [float(precision_target)] * len(names)
        shown_target = float(precision_target)
    choices = choose_thresholds(table_val.scores, labels, "precision", targets)
    thresholds = [c.threshold for c in choices]
    if image_ids is None:
        image_ids = [i for split in splits for i in store.images.ids(split=split)]
    ids = list(image_ids)
    if ids:
        ensure_suggestions(store, ids, version, device, progress, should_stop)
    if should_stop is not None and should_stop():
        return AutoAcceptResult(None, 0, {}, dict(zip(names, thresholds)), shown_target, version)
    table = score_table(store, ids, version)
    tags = tags_by_image(store, ids)
    column = {class_id: k for k, class_id in enumerate(table.class_ids)}
    has_tag = np.zeros(table.scores.shape, dtype=bool)
    for i, image_id in enumerate(ids):
        for tag in tags.get(image_id, ()):
            if tag.class_id in column:
                has_tag[i, column[tag.class_id]] = True
    pairs = select_auto_accept(table.scores, thresholds, has_tag)
    edits = [TagEdit(ids[i], table.class_ids[k], "positive") for i, k in pairs]
    per_class: dict[str, int] = {}
    for _, k in pairs:
        per_class[names[k]] = per_class.get(names[k], 0) + 1
    since_id = store.tags.last_change_id()
    batch = store.tags.apply(edits, source="model rule", reviewed=False) if edits else None
    result = AutoAcceptResult(batch, len(edits), per_class, dict(zip(names, thresholds)),
                              shown_target, version, since_id)
    if batch is not None:
        store.settings.set(AUTO_ACCEPT_KEY, {"batch": batch, "count": len(edits),
                                             "precision_target": shown_target,
                                             "model_version": version, "since_id": since_id})
    log.info(result.summary())
    return result


def revert_rule(store: Store, batch: str, source: str = "person", since_id: int = 0) -> str | None:
    """Undo one tag batch (e.g. an auto-accept rule) in one step, but only where the tag is still
    what the batch made it: a tag a person changed since is left alone. Returns the batch id of
    the revert (None when nothing was left to revert). `since_id`: a tag-history id before the
    batch, to read less history."""
    changes = [c for c in store.tags.history(since_id=since_id) if c.batch == batch]
    if not changes:
        return None
    current = {(t.image_id, t.class_id): ("positive" if t.positive else "negative")
               for rows in tags_by_image(store, {c.image_id for c in changes}).values()
               for t in rows}
    latest: dict[tuple[int, int], object] = {}
    for change in changes:
        latest[(change.image_id, change.class_id)] = change
    still = [c.id for key, c in latest.items() if current.get(key) == c.new_state]
    if not still:
        return None
    return store.tags.revert(still, source=source)


def undo_auto_accept(store: Store, batch: str, since_id: int = 0) -> str | None:
    """Revert one auto-accept rule (every tag it set that nobody changed since) in one step;
    returns the revert's batch id (to redo it: `revert_rule(store, that_id, "model rule")`)."""
    return revert_rule(store, batch, source="person", since_id=since_id)
