"""Helpers for the review-loop tests: registered (fileless) images, tags, suggestions, runs."""

from __future__ import annotations

import hashlib

from engine.store import Store, TagEdit


def add_images(store: Store, count: int, split: str = "unassigned", prefix: str = "img",
               start: int = 0) -> list[int]:
    """Register `count` images (no files needed) and return their ids."""
    root = store.roots.get_or_create(store.paths.root / "photos")
    rows = [{"root_id": root.id, "rel_path": f"{prefix}{start + n:05d}.jpg",
             "content_hash": hashlib.sha256(f"{prefix}{start + n}".encode()).hexdigest()[:32],
             "width": 64, "height": 64, "split": split} for n in range(count)]
    return store.images.add_many(rows)


def tag(store: Store, image_ids, class_ids, labels, source: str = "import",
        reviewed: bool = False) -> str:
    """Tag images from a 0/1 label matrix (rows: images, columns: classes), taken as exhaustive:
    a 1 becomes a positive tag, a 0 a negative tag (every pair decided, as after an exhaustive
    import; an untagged pair would be unknown)."""
    edits = [TagEdit(image_id, class_id, "positive" if value else "negative")
             for image_id, row in zip(image_ids, labels) for class_id, value in zip(class_ids, row)]
    return store.tags.apply(edits, source=source, reviewed=reviewed)


def suggest(store: Store, version: str, image_ids, class_ids, scores) -> None:
    rows = [(image_id, class_id, float(p)) for image_id, row in zip(image_ids, scores)
            for class_id, p in zip(class_ids, row)]
    store.suggestions.replace(version, list(image_ids), rows)


def completed_run(store: Store, stage: str = "student", config: dict | None = None) -> str:
    """A completed training run of `stage` for the current classes; returns its model version."""
    run = store.runs.create(stage, config or {}, store.classes.names())
    store.runs.update(run.id, status="completed", finished=True)
    return run.model_version
