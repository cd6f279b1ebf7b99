"""Import and export of tags and boxes: COCO (`coco`), CSV (`csv_tags`) and XMP sidecars (`xmp`).

Shared rules of every importer:

- Images are registered through `engine.intake` (so they are hashed and probed like any other).
- Imported tags have source 'import' and are not marked reviewed. An import never overwrites a
  tag set by a person (source 'person'): such tags are kept and counted in `kept_person_tags`.
- Everything is validated before anything is written; a bad file raises `UserError` with the
  reason, and the project is left as it was.
- Every importer is `@atomic_import`: its writes are one transaction (`Store.transaction`), so an
  error or a kill part-way leaves the project as it was.

Exporters write each output file atomically (a temporary file renamed into place), so a failed
export never leaves a half-written file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.progress import Progress  # noqa: F401 - the shared alias, re-exported (xmp)

if TYPE_CHECKING:
    from engine.store import Store


def atomic_import(importer: Callable[..., ImportSummary]) -> Callable[..., ImportSummary]:
    """Run `importer(store, ...)` in one store transaction: all of it is written or none."""

    @functools.wraps(importer)
    def run(store: Store, *args: object, **kwargs: object) -> ImportSummary:
        with store.transaction():
            return importer(store, *args, **kwargs)

    return run


@dataclass
class ImportSummary:
    """What an import did."""

    source: Path
    images: int = 0                       # images of the file found and registered
    missing: list[str] = field(default_factory=list)        # file names not found on disk
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    classes_added: list[str] = field(default_factory=list)
    tags_set: int = 0                     # tag changes written (positive or negative)
    kept_person_tags: int = 0             # a person's tags left untouched
    boxes: int = 0                        # ground-truth boxes stored

    def summary(self) -> str:
        text = (f"{self.images} images, {self.tags_set} tags set, {self.boxes} boxes, "
                f"{len(self.classes_added)} new classes")
        if self.kept_person_tags:
            text += f", {self.kept_person_tags} tags of a person kept"
        if self.missing:
            text += f", {len(self.missing)} files missing"
        if self.unreadable:
            text += f", {len(self.unreadable)} unreadable"
        return text


@dataclass
class ExportSummary:
    """What an export wrote."""

    target: Path
    images: int = 0
    files: int = 0

    def summary(self) -> str:
        return f"{self.images} images exported to {self.target}"


def apply_import_tags(store: Store, decisions: dict[int, tuple[Iterable[int], Iterable[int]]],
                      summary: ImportSummary) -> None:
    """Write imported tags: `decisions[image_id] = (positive class ids, negative class ids)`.

    A positive wins over a negative for the same class. Tags of a person are kept.
    """
    from engine.store import TagEdit

    existing = store.tags.for_images(list(decisions))
    edits: list[TagEdit] = []
    for image_id, (positives, negatives) in decisions.items():
        positive_set = set(positives)
        current = {tag.class_id: tag for tag in existing.get(image_id, [])}
        wanted = [(c, "positive") for c in sorted(positive_set)]
        wanted += [(c, "negative") for c in sorted(set(negatives) - positive_set)]
        for class_id, state in wanted:
            tag = current.get(class_id)
            if tag is not None and tag.source == "person":
                if (tag.positive and state == "negative") or (not tag.positive and
                                                               state == "positive"):
                    summary.kept_person_tags += 1
                continue
            if tag is not None and tag.positive == (state == "positive"):
                continue
            edits.append(TagEdit(image_id, class_id, state))
    for start in range(0, len(edits), 20000):
        store.tags.apply(edits[start:start + 20000], source="import", reviewed=False)
    summary.tags_set += len(edits)


def class_parents(store: Store) -> dict[str, str | None]:
    """Class name -> parent class name (None at the top)."""
    classes = store.classes.list()
    by_id = {c.id: c.name for c in classes}
    return {c.name: by_id.get(c.parent_id) if c.parent_id else None for c in classes}


def ensure_classes(store: Store, names: Iterable[str], parents: dict[str, str | None] | None,
                   summary: ImportSummary) -> dict[str, int]:
    """Create missing classes (parents first), set parents where given; name -> class id."""
    wanted = list(dict.fromkeys(names))
    parents = parents or {}
    before = set(store.classes.names())
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...] = ()) -> None:
        if name in order or name in trail:
            return
        parent = parents.get(name)
        if parent:
            visit(parent, trail + (name,))
        order.append(name)

    for name in wanted + [p for p in parents.values() if p]:
        visit(name)
    for name in order:
        parent = parents.get(name)
        if name not in before:
            store.classes.ensure([name], parent=parent if parent in set(order) | before else None)
            summary.classes_added.append(name)
    ids = {c.name: c.id for c in store.classes.list()}
    for name in order:
        parent = parents.get(name)
        if parent and name in before:
            store.classes.update(ids[name], parent_id=ids[parent])
    return ids
