"""Model scores of project images as tables the review loop works on: the student's suggestions and
the teacher's best region score per class, for a set of images and one model version, computed
where they are missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.store import Store
from engine.progress import Progress, ShouldStop


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
    from engine.store.versions import active_run

    run = active_run(store, stage)
    return run.model_version if run is not None else None


def score_table(store: Store, image_ids: Sequence[int], model_version: str | None) -> ScoreTable:
    """The stored suggestions of `model_version` for `image_ids` as a matrix."""
    classes = store.classes.list()
    scores = np.full((len(image_ids), len(classes)), np.nan)
    if model_version is not None and len(image_ids):
        class_ids, stored, _ = store.suggestions.scores(image_ids, model_version)
        column = {class_id: k for k, class_id in enumerate(class_ids)}
        for k, tag_class in enumerate(classes):
            if tag_class.id in column:
                scores[:, k] = stored[:, column[tag_class.id]]
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
    """Run the teacher (`detect_images`) on the images that have neither its suggestions nor its
    regions; store its regions and its image-level scores (as suggestions of the teacher's
    version, which the gallery reads as the teacher's opinion)."""
    have = store.suggestions.scored_ids(image_ids, model_version)
    with_regions = store.regions.best_scores(image_ids, model_version)
    missing = [i for i in image_ids if i not in have and i not in with_regions]
    if not missing:
        return
    from engine.inference.detect import detect_images
    from engine.inference.tagging import save_suggestions

    result = detect_images(store, missing, model_version=model_version, device=device,
                           progress=progress, should_stop=should_stop)
    save_suggestions(store, model_version, result.class_names,
                     [item.image_id for item in result], [item.image_scores for item in result])


def ensure_suggestions(store: Store, image_ids: Sequence[int], model_version: str,
                       device: str = "auto", progress: Progress = None,
                       should_stop: ShouldStop = None) -> None:
    """Run the student (`tag_images`) on the images that have no suggestions of `model_version`."""
    have = store.suggestions.scored_ids(image_ids, model_version)
    missing = [image_id for image_id in image_ids if image_id not in have]
    if not missing:
        return
    from engine.inference.tagging import tag_images

    tag_images(store, missing, model_version=model_version, device=device, progress=progress,
               should_stop=should_stop)


def validation_scores(store: Store, model_version: str | None = None, split: str = "val",
                      device: str = "auto", progress: Progress = None,
                      should_stop: ShouldStop = None) -> tuple[ScoreTable, np.ndarray]:
    """(scores of the tagged `split` images, their targets (N, K): 1, 0 or UNKNOWN -1 for an
    undecided pair) for `model_version` (default: the active student), tagging the images that
    have no suggestions of that version yet."""
    version = model_version or active_version(store, "student")
    if version is None:
        raise UserError("This project has no trained student yet; train one first.")
    matrix = store.tags.label_matrix(split=split)
    if not matrix.image_ids:
        raise UserError(f"The {split} split has no tagged images to calibrate on; "
                        "assign a validation split first.")
    ensure_suggestions(store, matrix.image_ids, version, device, progress, should_stop)
    return score_table(store, matrix.image_ids, version), matrix.targets()
