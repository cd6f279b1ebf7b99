"""Writing tag edits in bulk: `TagWriter` applies a sequence of edits inside one transaction and
logs each real change in `tag_history`, with a few statements per chunk of rows instead of one ORM
object per tag (200,000 imported tags took minutes through the ORM's unit of work).

Concurrent writers (two `mlic` processes and the app) must not lose an edit: the writer first
takes the database's write lock on SQLite (`BEGIN IMMEDIATE`, waiting up to the busy timeout) and
row locks on the touched images' tags on PostgreSQL (`SELECT ... FOR UPDATE`), so what it read is
still true when it writes. Two writers inserting the same new tag at once on PostgreSQL collide on
the unique key; `Sessions.write` runs the loser again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from engine.store.database import bulk_insert, chunked, lock_for_writing
from engine.store.schema import Tag, TagChange, utcnow

TAGS = Tag.__table__
HISTORY = TagChange.__table__


@dataclass
class _Pair:
    """One (image, class) as found in the database and as the edits leave it."""

    tag_id: int | None
    found: str | None
    state: str | None
    reviewed: bool
    changed: bool = False
    mark_reviewed: bool = False


def state_name(positive: bool | None) -> str | None:
    return None if positive is None else ("positive" if positive else "negative")


class TagWriter:
    """Applies tag edits inside `session`'s transaction; `flush()` writes them."""

    def __init__(self, session: Session, image_ids: Iterable[int], source: str, reviewed: bool,
                 batch: str) -> None:
        self._session = session
        self._source = source
        self._reviewed = reviewed
        self._batch = batch
        self._pairs: dict[tuple[int, int], _Pair] = {}
        self._history: list[tuple[int, int, str | None, str | None]] = []
        lock_for_writing(session)
        columns = (Tag.id, Tag.image_id, Tag.class_id, Tag.positive, Tag.reviewed)
        for chunk in chunked(sorted(set(image_ids))):
            query = select(*columns).where(Tag.image_id.in_(chunk)).order_by(Tag.id)
            for tag_id, image_id, class_id, positive, was_reviewed in session.execute(
                    query.with_for_update()):
                state = state_name(positive)
                self._pairs[(image_id, class_id)] = _Pair(tag_id, state, state, was_reviewed)

    def apply(self, image_id: int, class_id: int, state: str | None) -> None:
        if state not in ("positive", "negative", None):
            raise ValueError(f"unknown tag state {state!r}")
        pair = self._pairs.setdefault((image_id, class_id), _Pair(None, None, None, False))
        if pair.state == state:
            if state is not None and self._reviewed and not pair.reviewed:
                pair.reviewed = pair.mark_reviewed = True
            return
        self._history.append((image_id, class_id, pair.state, state))
        pair.state, pair.changed = state, True
        pair.reviewed = self._reviewed

    def flush(self) -> None:
        """Write the tags' final states and the history, a few statements per chunk."""
        connection = self._session.connection()
        now = utcnow()
        inserts, updates, deletes, reviewed_only = [], [], [], []
        for (image_id, class_id), pair in self._pairs.items():
            if pair.changed and pair.tag_id is None and pair.state is not None:
                inserts.append((image_id, class_id, pair.state == "positive", self._source,
                                pair.reviewed, now))
            elif pair.changed and pair.tag_id is not None and pair.state is None:
                deletes.append(pair.tag_id)
            elif pair.changed and pair.tag_id is not None:
                updates.append({"tid": pair.tag_id, "positive": pair.state == "positive",
                                "source": self._source, "reviewed": pair.reviewed,
                                "updated_at": now})
            elif pair.mark_reviewed and pair.tag_id is not None:
                reviewed_only.append(pair.tag_id)
        for chunk in chunked(deletes):
            connection.execute(delete(TAGS).where(TAGS.c.id.in_(chunk)))
        for chunk in chunked(reviewed_only):
            connection.execute(update(TAGS).where(TAGS.c.id.in_(chunk)).values(reviewed=True))
        if updates:
            connection.execute(update(TAGS).where(TAGS.c.id == bindparam("tid")), updates)
        bulk_insert(connection, TAGS, ("image_id", "class_id", "positive", "source", "reviewed",
                                       "updated_at"), inserts)
        bulk_insert(connection, HISTORY, ("image_id", "class_id", "old_state", "new_state",
                                          "source", "batch", "time"),
                    [(*change, self._source, self._batch, now) for change in self._history])
