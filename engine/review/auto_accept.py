"""The auto-accept rule: one threshold per class at a precision target, calibrated on the validation
split, turns every suggestion above it into a positive tag with source 'model rule', all in ONE tag
batch, so `undo_auto_accept(store, result.batch)` undoes the whole rule in one step (tags a person
changed since are left alone). It never touches an existing tag (a person's decision wins), and
never tags validation or test images (a model's guess must not become the ground truth it is
measured against).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.store import Store
from engine.progress import Progress, ShouldStop
from engine.review.queue import tags_by_image
from engine.review.scores import ensure_suggestions, score_table, validation_scores
from engine.review.thresholds import choose_thresholds

log = logging.getLogger(__name__)


AUTO_ACCEPT_KEY = "review.auto_accept"            # the last auto-accept rule applied


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
