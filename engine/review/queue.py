"""The review queue: which images a person should look at next, in one of the `QUEUE_ORDERS`.

`review_queue(store, order)` returns the images in that order, each with a short reason. Images a
person has reviewed are left out unless `include_reviewed=True` ('unreviewed first' keeps them,
last; 'unknown' keeps them too and ranks those without an undecided class last). The 'mistakes'
order needs out-of-fold predictions (`engine.review.label_issues`). Each order has a pure NumPy
priority (tested on hand-made cases) and a thin store wrapper.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import UserError
from engine.review.splits import split_key

if TYPE_CHECKING:
    from engine.review.label_issues import OutOfFold
    from engine.store import Store
from engine.progress import Progress, ShouldStop
from engine.review.scores import (
    ScoreTable,
    active_version,
    ensure_suggestions,
    ensure_teacher_scores,
    score_table,
    teacher_table,
)


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
    QueueOrder("unknown", "Unknown tags that matter first",
               "Images with classes nobody has decided yet (no tag, no rejection) first, where an "
               "answer helps most: the model is unsure about the class and the class is "
               "frequent. Each answer turns an unknown into a yes or a no; Review > Mark Image "
               "Complete turns every remaining unknown of the image into a no."),
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


def unknown_priority(scores: np.ndarray, thresholds: Sequence[float], unknown: np.ndarray,
                     positives: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(priority, class) per image over its unknown (undecided) pairs only: each pair's
    uncertainty (`uncertainty_priority`'s entropy, 1 bit at the threshold) times its class's
    frequency ((positives + 1) / (most positives + 1)), summed per image; the class is the pair
    of highest value. Rows without an unknown scored pair get -inf."""
    scores = np.asarray(scores, dtype=np.float64)
    unknown = np.asarray(unknown, dtype=bool)
    counts = np.asarray(positives, dtype=np.float64)
    frequency = (counts + 1.0) / (counts.max(initial=0.0) + 1.0)
    value = np.full(scores.shape, np.nan)
    for k in range(scores.shape[1]):
        entropy = uncertainty_priority(scores[:, k:k + 1], [thresholds[k]])[0]
        value[:, k] = np.where(np.isfinite(entropy), entropy * frequency[k], np.nan)
    value = np.where(unknown, value, np.nan)
    priority, best = _best_per_row(value)
    total = np.where(np.isfinite(priority), np.nansum(value, axis=1), -np.inf)
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
    filter (`engine.store.queries`)."""
    return {image_id for image_id, rows in tags_by_image(store, image_ids).items()
            if any(t.reviewed for t in rows)}


def tags_by_image(store: Store, image_ids: Iterable[int]) -> dict[int, list]:
    """The tags of each image (`store.tags.for_images`)."""
    result = store.tags.for_images(image_ids)
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
    `out_of_fold` predictions, computed with `engine.review.label_issues.out_of_fold_predictions` when
    not given. With `ensure_scores`, images without scores of those versions are run through the
    student (and, for 'disagreement', the teacher) first; otherwise they go last. Long work takes
    `device`, `progress` and `should_stop`.
    """
    queue_order(order)
    ids = list(store.images.ids() if image_ids is None else image_ids)
    reviewed = reviewed_images(store, ids)
    if not include_reviewed and order not in ("unreviewed", "unknown"):
        ids = [image_id for image_id in ids if image_id not in reviewed]
    if not ids:
        return ReviewQueue(order, [], note="Nothing to review.")
    images = {image.id: image for image in store.images.list()}
    version = model_version or active_version(store, "student")
    scoring = _Scoring(store, ids, version, store.classes.list(), ensure_scores, device, progress,
                       should_stop)
    ranking = _rank(order, scoring, reviewed, teacher_version, out_of_fold)
    entries = [QueueEntry(ids[n], float(ranking.priority[n]), ranking.reasons[n])
               for n in _entry_order(order, ids, images, ranking.priority, seed)]
    if limit is not None:
        entries = entries[:limit]
    return ReviewQueue(order, entries, version, ranking.teacher, ranking.note)


@dataclass(frozen=True)
class _Scoring:
    """What the orders share: the images to rank, the student version, the classes, and how to
    run the models when `ensure_scores` asks for missing scores."""

    store: Store
    ids: list[int]
    version: str | None
    classes: list
    ensure_scores: bool
    device: str
    progress: Progress
    should_stop: ShouldStop

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def student_table(self) -> ScoreTable:
        """The student's stored scores of the images (computed first with `ensure_scores`)."""
        if self.ensure_scores and self.version is not None:
            ensure_suggestions(self.store, self.ids, self.version, self.device, self.progress,
                               self.should_stop)
        return _need_scores(self.store, self.ids, self.version)


@dataclass(frozen=True)
class _Ranking:
    """Priority and reason per image (in the order of the ids), a note, the teacher compared."""

    priority: np.ndarray
    reasons: list[str]
    note: str = ""
    teacher: str | None = None


def _rank(order: str, scoring: _Scoring, reviewed: set[int], teacher_version: str | None,
          out_of_fold: OutOfFold | None) -> _Ranking:
    ids = scoring.ids
    if order == "random":
        return _Ranking(np.zeros(len(ids)), [""] * len(ids))
    if order == "unreviewed":
        return _Ranking(np.array([0.0 if i in reviewed else 1.0 for i in ids]),
                        ["reviewed" if i in reviewed else "not reviewed yet" for i in ids])
    if order == "uncertain":
        return _uncertain_ranking(scoring)
    if order == "unknown":
        return _unknown_ranking(scoring)
    if order == "disagreement":
        return _disagreement_ranking(scoring, teacher_version)
    return _mistakes_ranking(scoring, out_of_fold)


def _uncertain_ranking(scoring: _Scoring) -> _Ranking:
    table = scoring.student_table()
    names = scoring.names
    thresholds = [c.threshold for c in scoring.classes]
    priority, best = uncertainty_priority(table.scores, thresholds)
    reasons = [""] * len(scoring.ids)
    for n, (p, k) in enumerate(zip(priority, best)):
        if np.isfinite(p):
            reasons[n] = f"{names[k]}: {table.scores[n, k]:.2f} vs threshold {thresholds[k]:.2f}"
    return _Ranking(priority, reasons)


def _unknown_ranking(scoring: _Scoring) -> _Ranking:
    table = scoring.student_table()
    column = {class_id: k for k, class_id in enumerate(table.class_ids)}
    unknown = np.ones(table.scores.shape, dtype=bool)
    tags = tags_by_image(scoring.store, scoring.ids)
    for n, image_id in enumerate(scoring.ids):
        for tag in tags[image_id]:
            if tag.class_id in column:
                unknown[n, column[tag.class_id]] = False
    counts = scoring.store.tags.counts_by_class()
    positives = [counts.get(name, 0) for name in table.class_names]
    thresholds = [c.threshold for c in scoring.classes]
    priority, best = unknown_priority(table.scores, thresholds, unknown, positives)
    reasons = [f"{int(unknown[n].sum())} unknown; {table.class_names[k]}: "
               f"{table.scores[n, k]:.2f} vs threshold {thresholds[k]:.2f}"
               if np.isfinite(p) else ("every class decided" if not unknown[n].any() else "")
               for n, (p, k) in enumerate(zip(priority, best))]
    return _Ranking(priority, reasons)


def _disagreement_ranking(scoring: _Scoring, teacher_version: str | None) -> _Ranking:
    store, ids = scoring.store, scoring.ids
    table = scoring.student_table()
    teacher = teacher_version or active_version(store, "teacher")
    if teacher is None:
        raise UserError("This project has no trained teacher to compare the student with.")
    if scoring.ensure_scores:
        ensure_teacher_scores(store, ids, teacher, scoring.device, scoring.progress,
                              scoring.should_stop)
    other = teacher_table(store, ids, teacher)
    priority, best = disagreement_priority(table.scores, other.scores)
    names = scoring.names
    reasons = [""] * len(ids)
    for n, (p, k) in enumerate(zip(priority, best)):
        if np.isfinite(p):
            reasons[n] = (f"{names[k]}: student {table.scores[n, k]:.2f}, "
                          f"teacher {other.scores[n, k]:.2f}")
    return _Ranking(priority, reasons, teacher=teacher)


def _mistakes_ranking(scoring: _Scoring, out_of_fold: OutOfFold | None) -> _Ranking:
    if out_of_fold is None:
        from engine.review.label_issues import out_of_fold_predictions

        out_of_fold = out_of_fold_predictions(
            scoring.store, model_version=scoring.version, device=scoring.device,
            progress=scoring.progress, should_stop=scoring.should_stop)
    priority, reasons, note = _mistake_priorities(scoring.store, scoring.ids, out_of_fold,
                                                  scoring.names)
    return _Ranking(priority, reasons, note)


def _entry_order(order: str, ids: Sequence[int], images: dict, priority: np.ndarray,
                 seed: int) -> np.ndarray:
    """Indices into `ids` in queue order: by priority, ties by a seeded key per image."""
    if order == "unreviewed":
        return order_by_priority(priority, list(ids))            # oldest (lowest id) first
    tie_keys = [split_key(images[i].content_hash if i in images else None, i, seed) for i in ids]
    if order == "uncertain":     # the student's training images against the rest, in proportion
        learnt = [i in images and images[i].split == "train" for i in ids]
        return proportional_order(priority, learnt, tie_keys)
    return order_by_priority(priority, tie_keys)


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
