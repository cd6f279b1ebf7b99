"""Repositories for classes, tags and the append-only tag history.

A tag is a person's (or an import's) decision; every change is logged in `tag_history` with its old
and new state, so any change can be reverted. States are 'positive', 'negative' or None (no tag).

Three label states per (image, class) (docs/label-states.md): a positive tag, a negative tag, or no
tag = unknown. A missing keyword is not a "no": a negative is written only when a person rejected
the class, marked the whole image complete (`TagRepository.completion`: every undecided class
negative) or an import declared itself exhaustive. Training and metrics read the states from
`LabelMatrix.known` / `LabelMatrix.targets()`.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from engine.errors import UserError
from engine.store.database import Sessions, chunked, insert_missing, lock_for_writing
from engine.store.schema import (
    TAG_SOURCES,
    Image,
    Root,
    Tag,
    TagChange,
    TagClass,
)
from engine.store.tag_writer import TagWriter

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def state_of(tag: Tag | None) -> str | None:
    if tag is None:
        return None
    return "positive" if tag.positive else "negative"


@dataclass(frozen=True)
class TagEdit:
    """Set the tag of (image, class) to `state`: 'positive', 'negative' or None (remove)."""

    image_id: int
    class_id: int
    state: str | None


UNKNOWN = -1.0   # the target value of an undecided (image, class) pair in `LabelMatrix.targets()`


@dataclass(frozen=True)
class LabelMatrix:
    """Image-level labels for training/evaluation: labels[i, k] = 1 for a positive tag;
    known[i, k] when the pair is decided (a positive or a negative tag), else it is unknown."""

    image_ids: list[int]
    paths: list[Path]
    class_names: list[str]
    labels: np.ndarray  # (N, K) float32 in {0, 1}
    known: np.ndarray   # (N, K) bool

    def targets(self, untagged_as_negative: bool = False) -> np.ndarray:
        """(N, K) float32: 1 positive, 0 negative, `UNKNOWN` (-1) undecided; with
        `untagged_as_negative` every undecided pair is a 0 (the behaviour before three states)."""
        if untagged_as_negative:
            return self.labels.copy()
        return np.where(self.known, self.labels, np.float32(UNKNOWN)).astype(np.float32)


class ClassRepository:
    """Tag classes: add, rename, merge, delete, per-class colour/shortcut/threshold."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def list(self) -> list[TagClass]:
        with self._sessions() as session:
            return list(session.scalars(select(TagClass).order_by(TagClass.id)))

    def names(self) -> list[str]:
        return [tag_class.name for tag_class in self.list()]

    def get(self, name: str) -> TagClass:
        with self._sessions() as session:
            tag_class = session.scalar(select(TagClass).where(TagClass.name == name))
            if tag_class is None:
                raise UserError(f"Unknown class {name!r}.")
            return tag_class

    def ensure(self, names: Iterable[str], parent: str | None = None) -> list[TagClass]:
        """The classes named, created where missing (idempotent), in the order given."""
        wanted = [_check_name(name) for name in names]
        with self._sessions.begin() as session:
            parent_id = None
            if parent is not None:
                parent_id = session.scalar(select(TagClass.id).where(TagClass.name == parent))
                if parent_id is None:
                    raise UserError(f"Unknown parent class {parent!r}.")
            existing = set(session.scalars(select(TagClass.name).where(TagClass.name.in_(wanted))))
            count = session.scalar(select(func.count(TagClass.id))) or 0
            missing = [name for name in dict.fromkeys(wanted) if name not in existing]
            insert_missing(session, TagClass.__table__, [
                {"name": name, "parent_id": parent_id, "color": PALETTE[(count + k) % len(PALETTE)]}
                for k, name in enumerate(missing)], ["name"])  # another process may add them too
            by_name = {c.name: c for c in session.scalars(
                select(TagClass).where(TagClass.name.in_(wanted)))}
            return [by_name[name] for name in wanted]

    def update(self, class_id: int, **fields: object) -> None:
        """Change `name`, `color`, `shortcut`, `threshold` or `parent_id` of a class."""
        allowed = {"name", "color", "shortcut", "threshold", "parent_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update class fields {sorted(unknown)}")
        if "name" in fields:
            fields["name"] = _check_name(str(fields["name"]))
        with self._sessions.begin() as session:
            if "name" in fields and session.scalar(select(TagClass.id).where(
                    TagClass.name == fields["name"], TagClass.id != class_id)) is not None:
                raise UserError(f"A class named {fields['name']!r} already exists.")
            session.execute(update(TagClass).where(TagClass.id == class_id).values(**fields))

    def delete(self, class_id: int) -> None:
        """Delete a class with its tags, suggestions and regions (history rows go too)."""
        with self._sessions.begin() as session:
            session.execute(delete(TagClass).where(TagClass.id == class_id))

    def merge(self, source_id: int, target_id: int, source: str = "person") -> None:
        """Move every tag of `source_id` onto `target_id` (a positive wins), then delete source."""
        if source_id == target_id:
            raise UserError("Cannot merge a class into itself.")

        def write(session: Session) -> None:
            lock_for_writing(session)
            moved = session.scalars(select(Tag).where(Tag.class_id == source_id)).all()
            targets = {tag.image_id: tag.positive for tag in session.scalars(
                select(Tag).where(Tag.class_id == target_id))}
            writer = TagWriter(session, [tag.image_id for tag in moved], source, True,
                               uuid.uuid4().hex)
            for tag in moved:
                positive = tag.positive or targets.get(tag.image_id, False)
                writer.apply(tag.image_id, target_id, "positive" if positive else "negative")
            writer.flush()
            session.execute(delete(TagClass).where(TagClass.id == source_id))

        self._sessions.write(write)


class TagRepository:
    """Image-level tags with history: set, bulk set, revert, training label matrices."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def apply(self, edits: Sequence[TagEdit], source: str = "person", reviewed: bool = True,
              batch: str | None = None) -> str:
        """Apply edits in one transaction, logging each real change. Returns the batch id.
        Another writer at the same moment (another process, the app) is waited for, or the
        edits are applied again on top of what it wrote (`Sessions.write`): nothing is lost."""
        if source not in TAG_SOURCES:
            raise ValueError(f"unknown tag source {source!r}")
        batch = batch or uuid.uuid4().hex

        def write(session: Session) -> None:
            writer = TagWriter(session, [edit.image_id for edit in edits], source, reviewed, batch)
            for edit in edits:
                writer.apply(edit.image_id, edit.class_id, edit.state)
            writer.flush()

        self._sessions.write(write)
        return batch

    def set(self, image_id: int, class_id: int, state: str | None, source: str = "person") -> str:
        return self.apply([TagEdit(image_id, class_id, state)], source=source)

    def for_image(self, image_id: int) -> list[Tag]:
        with self._sessions() as session:
            return list(session.scalars(select(Tag).where(Tag.image_id == image_id)))

    def for_images(self, image_ids: Iterable[int]) -> dict[int, list[Tag]]:
        ids = list(image_ids)
        result: dict[int, list[Tag]] = {image_id: [] for image_id in ids}
        with self._sessions() as session:
            for chunk in chunked(ids):
                for tag in session.scalars(select(Tag).where(Tag.image_id.in_(chunk))):
                    result[tag.image_id].append(tag)
        return result

    def mark_reviewed(self, image_ids: Iterable[int]) -> None:
        with self._sessions.begin() as session:
            for chunk in chunked(list(image_ids)):
                session.execute(update(Tag).where(Tag.image_id.in_(chunk)).values(reviewed=True))

    def history(self, image_id: int | None = None, since_id: int = 0) -> list[TagChange]:
        query = select(TagChange).where(TagChange.id > since_id).order_by(TagChange.id)
        if image_id is not None:
            query = query.where(TagChange.image_id == image_id)
        with self._sessions() as session:
            return list(session.scalars(query))

    def last_change_id(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.max(TagChange.id))) or 0

    def revert(self, change_ids: Sequence[int], source: str = "person") -> str:
        """Undo the given changes (newest first), each as a new logged change."""
        batch = uuid.uuid4().hex

        def write(session: Session) -> None:
            changes = session.scalars(select(TagChange).where(TagChange.id.in_(list(change_ids)))
                                      .order_by(TagChange.id.desc())).all()
            if len(changes) != len(set(change_ids)):
                raise UserError("Some of these history entries no longer exist.")
            writer = TagWriter(session, [change.image_id for change in changes], source, True, batch)
            for change in changes:
                writer.apply(change.image_id, change.class_id, change.old_state)
            writer.flush()

        self._sessions.write(write)
        return batch

    def revert_batch(self, batch: str, source: str = "person") -> str:
        """Undo every change of one batch (e.g. one bulk edit or one auto-accept rule)."""
        with self._sessions() as session:
            ids = list(session.scalars(select(TagChange.id).where(TagChange.batch == batch)))
        if not ids:
            raise UserError("Nothing to revert in that batch.")
        return self.revert(ids, source=source)

    def label_matrix(self, split: str | None = None, image_ids: Sequence[int] | None = None,
                     as_of_change: int | None = None,
                     class_names: Sequence[str] | None = None) -> LabelMatrix:
        """Labels of tagged, readable images (an image with at least one tag, positive or negative,
        counts as tagged; a class it has no tag for is unknown: `known` is False there).
        `as_of_change` replays the history up to that change id instead of reading the current
        tags; `class_names` fixes the columns (a round's class list when it started: classes added
        since are left out, a class deleted since is an unknown column)."""
        with self._sessions() as session:
            classes = list(session.scalars(select(TagClass).order_by(TagClass.id)))
            if class_names is not None:
                by_name = {c.name: c for c in classes}
                classes = [by_name[name] for name in class_names if name in by_name]
            if as_of_change is not None and as_of_change >= (
                    session.scalar(select(func.max(TagChange.id))) or 0):
                as_of_change = None          # nothing changed since: the current tags are it
            states = _tag_states(session, as_of_change, split)
            query = (select(Image.id, Root.path, Image.rel_path).join(Root, Root.id == Image.root_id)
                     .where(Image.present.is_(True), Image.status == "readable").order_by(Image.id))
            if split is not None:
                query = query.where(Image.split == split)
            if image_ids is not None:
                query = query.where(Image.id.in_(list(image_ids)))
            rows = [row for row in session.execute(query) if row.id in states]
        names = list(class_names) if class_names is not None else [c.name for c in classes]
        column = {c.id: names.index(c.name) for c in classes}
        labels = np.zeros((len(rows), len(names)), dtype=np.float32)
        known = np.zeros((len(rows), len(names)), dtype=bool)
        for i, row in enumerate(rows):
            for class_id, positive in states[row.id].items():
                if class_id in column:
                    known[i, column[class_id]] = True
                    labels[i, column[class_id]] = float(positive)
        return LabelMatrix([r.id for r in rows], [Path(r.path) / r.rel_path for r in rows],
                           names, labels, known)

    def completion(self, image_ids: Iterable[int]) -> list[TagEdit]:
        """The edits that mark these images complete: a negative for every class an image has no
        tag for (its tags stay as they are). Applied with `apply`, so undo reverts the batch."""
        ids = list(image_ids)
        with self._sessions() as session:
            class_ids = list(session.scalars(select(TagClass.id).order_by(TagClass.id)))
        tagged = {image_id: {tag.class_id for tag in tags}
                  for image_id, tags in self.for_images(ids).items()}
        return [TagEdit(image_id, class_id, "negative") for image_id in ids
                for class_id in class_ids if class_id not in tagged[image_id]]

    def counts_by_class(self) -> dict[str, int]:
        query = (select(TagClass.name, func.count(Tag.id)).join(Tag, Tag.class_id == TagClass.id)
                 .where(Tag.positive.is_(True)).group_by(TagClass.name))
        with self._sessions() as session:
            return {name: count for name, count in session.execute(query)}

    def counts_by_source(self) -> dict[str, int]:
        query = select(Tag.source, func.count(Tag.id)).group_by(Tag.source)
        with self._sessions() as session:
            return {source: count for source, count in session.execute(query)}

    def tagged_image_count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count(func.distinct(Tag.image_id)))) or 0

    def reviewed_image_count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count(func.distinct(Tag.image_id)))
                                  .where(Tag.reviewed.is_(True))) or 0


def _tag_states(session: Session, as_of_change: int | None,
                split: str | None = None) -> dict[int, dict[int, bool]]:
    """image id -> class id -> positive?, now (of the images of `split` when given) or replayed
    from the history up to a change id."""
    states: dict[int, dict[int, bool]] = {}
    if as_of_change is None:
        query = select(Tag.image_id, Tag.class_id, Tag.positive)
        if split is not None:
            query = query.join(Image, Image.id == Tag.image_id).where(Image.split == split)
        for image_id, class_id, positive in session.execute(query):
            states.setdefault(image_id, {})[class_id] = positive
        return states
    for change in session.scalars(select(TagChange).where(TagChange.id <= as_of_change)
                                  .order_by(TagChange.id)):
        per_image = states.setdefault(change.image_id, {})
        if change.new_state is None:
            per_image.pop(change.class_id, None)
        else:
            per_image[change.class_id] = change.new_state == "positive"
    return {image_id: tags for image_id, tags in states.items() if tags}


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class name (None when it can): empty, a comma, or a control
    character (NUL crashes PostgreSQL, the others make ill-formed XMP sidecars)."""
    cleaned = name.strip() if isinstance(name, str) else ""
    if not cleaned:
        return "it must be non-empty"
    if "," in cleaned or "\n" in cleaned:
        return "it must be without commas or newlines"
    if any(unicodedata.category(ch) in ("Cc", "Cs") or ch in "\ufffe\uffff" for ch in cleaned):
        return "it must be without control characters"
    return None


def _check_name(name: str) -> str:
    problem = class_name_problem(name)
    if problem is not None:
        raise UserError(f"Invalid class name {name!r}: {problem}.")
    return name.strip()
