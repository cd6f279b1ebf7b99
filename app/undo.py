"""Undo/redo: one QUndoCommand per store operation, pushed on `ProjectState.undo_stack`.

Each command's `redo()` / `undo()` queues its store call on the database thread at once, so every
edit reaches the database immediately (a crash or kill loses nothing) and the GUI never waits. The
database thread is serial, so an undo queued after a redo always runs after it.

Tag edits are logged by the store in batches (`store.tags.apply(..., batch=...)`): a command's
redo applies its edits under a fresh batch id, and its undo reverts exactly that batch
(`store.tags.revert_batch`), which restores each (image, class) to its state before the edit.
Bulk edits are one command (one batch) or several commands in one macro
(`undo_stack.beginMacro`/`endMacro`) and undo in one step. An auto-accept rule of the review panel
is one command too (`AutoAcceptCommand`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence

from PySide6.QtGui import QUndoCommand

from app.state import ProjectState
from engine.errors import UserError
from engine.review import auto_accept
from engine.store import TagEdit

log = logging.getLogger(__name__)

# Computes the edits on the database thread from the store's current state (e.g. a toggle).
EditPlanner = Callable[[object], Sequence[TagEdit]]


def _apply_edits(store, edits: Sequence[TagEdit] | EditPlanner, batch: str) -> set[int]:
    planned = edits(store) if callable(edits) else edits
    if planned:
        store.tags.apply(list(planned), source="person", reviewed=True, batch=batch)
    return {edit.image_id for edit in planned}


def _revert_batch(store, batch: str | None) -> None:
    if batch is None:
        return
    try:
        store.tags.revert_batch(batch)
    except UserError:
        # An edit that changed nothing logged nothing: there is nothing to revert.
        log.debug("batch %s had no changes to revert", batch)


class TagEditCommand(QUndoCommand):
    """Set tags (positive / negative / removed) on images as a person's reviewed decision."""

    def __init__(self, state: ProjectState, text: str, edits: Sequence[TagEdit] | EditPlanner,
                 image_ids: Iterable[int] | None = None) -> None:
        super().__init__(text)
        self.state = state
        self.edits = edits if callable(edits) else tuple(edits)
        self.image_ids = set(image_ids) if image_ids is not None else (
            set() if callable(edits) else {e.image_id for e in self.edits})
        self.batch: str | None = None

    def redo(self) -> None:
        self.batch = uuid.uuid4().hex
        self.state.workers.db(_apply_edits, self.edits, self.batch, on_done=self._changed)

    def undo(self) -> None:
        self.state.workers.db(_revert_batch, self.batch,
                              on_done=lambda _r: self._changed(self.image_ids))

    def _changed(self, image_ids: set[int]) -> None:
        self.image_ids |= set(image_ids)
        self.state.tags_changed.emit(set(self.image_ids))


class _Holder:
    """A value set on the database thread by one queued call and read by a later one."""

    value: str | None = None


def _revert_changes(store, change_ids: Sequence[int], holder: _Holder) -> None:
    holder.value = store.tags.revert(list(change_ids))


def _revert_held(store, holder: _Holder) -> None:
    _revert_batch(store, holder.value)


class RevertChangesCommand(QUndoCommand):
    """Revert entries of the tag history (from the history view); undo re-applies them."""

    def __init__(self, state: ProjectState, change_ids: Sequence[int], image_ids: Iterable[int],
                 text: str = "Revert history") -> None:
        super().__init__(text)
        self.state = state
        self.change_ids = tuple(change_ids)
        self.image_ids = set(image_ids)
        self._holder = _Holder()

    def redo(self) -> None:
        self._holder = _Holder()
        self.state.workers.db(_revert_changes, self.change_ids, self._holder,
                              on_done=self._changed)

    def undo(self) -> None:
        self.state.workers.db(_revert_held, self._holder, on_done=self._changed)

    def _changed(self, _result) -> None:
        self.state.tags_changed.emit(set(self.image_ids))


def _update_class(store, class_id: int, fields: dict) -> None:
    store.classes.update(class_id, **fields)


class ClassUpdateCommand(QUndoCommand):
    """Change a class's name, colour, shortcut key or threshold."""

    def __init__(self, state: ProjectState, class_id: int, old: dict, new: dict,
                 text: str | None = None) -> None:
        super().__init__(text or f"Change {', '.join(sorted(new))} of "
                                 f"{state.class_name(class_id)}")
        self.state = state
        self.class_id = class_id
        self.old = dict(old)
        self.new = dict(new)

    def redo(self) -> None:
        self._send(self.new)

    def undo(self) -> None:
        self._send(self.old)

    def _send(self, fields: dict) -> None:
        self.state.workers.db(_update_class, self.class_id, fields,
                              on_done=lambda _r: self.state.reload_classes(),
                              on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.setObsolete(True)
        self.state.reload_classes()
        self.state.workers.error.emit(exc)


def toggle_plan(image_ids: Sequence[int], class_id: int) -> EditPlanner:
    """A planner for a class key: if every image has the tag, remove it from all; otherwise add
    it to those that lack it. Decided on the database thread from the current tags."""
    ids = list(image_ids)

    def plan(store) -> list[TagEdit]:
        has = {image_id for image_id, rows in store.tags.for_images(ids).items()
               if any(t.class_id == class_id and t.positive for t in rows)}
        if len(has) == len(ids):
            return [TagEdit(image_id, class_id, None) for image_id in ids]
        return [TagEdit(image_id, class_id, "positive") for image_id in ids if image_id not in has]

    return plan


def mark_complete(state: ProjectState, image_ids: Sequence[int]) -> None:
    """Review > Mark Image Complete: every class the images have no tag for becomes a negative
    (`store.tags.completion`, decided on the database thread), as one undoable step."""
    ids = list(image_ids)
    if not ids:
        return
    text = "Mark image complete" if len(ids) == 1 else f"Mark {len(ids):,} images complete"
    state.undo_stack.push(TagEditCommand(state, text, lambda store: store.tags.completion(ids),
                                         ids))


# ----------------------------------------------------------------------- auto-accept rule


def _undo_rule(store, command: AutoAcceptCommand) -> None:
    command.undo_batch = auto_accept.undo_auto_accept(store, command.batch,
                                                      since_id=command.since_id)


def _redo_rule(store, command: AutoAcceptCommand) -> None:
    if command.undo_batch is not None:
        again = auto_accept.revert_rule(store, command.undo_batch, source="model rule",
                                        since_id=command.since_id)
        command.batch = again or command.batch


class AutoAcceptCommand(QUndoCommand):
    """An applied auto-accept rule (`engine.review.auto_accept`) on the undo stack: undo reverts
    all its tags in one step (those nobody changed since), redo applies them again (source
    'model rule'). Pushed after the rule ran, so the first redo does nothing."""

    def __init__(self, state: ProjectState, result) -> None:
        super().__init__(f"Auto-accept {result.count} suggestions")
        self.state = state
        self.batch: str = result.batch
        self.since_id: int = result.since_id
        self.undo_batch: str | None = None
        self._applied = True            # the rule ran before the command was pushed

    def redo(self) -> None:
        if self._applied:
            self._applied = False
            return
        self.state.workers.db(_redo_rule, self, on_done=self._changed)

    def undo(self) -> None:
        self.state.workers.db(_undo_rule, self, on_done=self._changed)

    def _changed(self, _result) -> None:
        self.state.tags_changed.emit(set())
        self.state.refresh_counts()
