"""Repositories for folder roots and images."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import UserError
from engine.store.database import chunked, insert_missing
from engine.store.schema import SPLITS, Image, Root


class RootRepository:
    """Folders added to the project."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get_or_create(self, folder: Path) -> Root:
        path = str(Path(folder).resolve())
        with self._sessions.begin() as session:
            insert_missing(session, Root.__table__, [{"path": path}], ["path"])
            return session.scalar(select(Root).where(Root.path == path))

    def list(self) -> list[Root]:
        with self._sessions() as session:
            return list(session.scalars(select(Root).order_by(Root.id)))


class ImageRepository:
    """Image rows: registration (intake), splits, look-ups and absolute paths."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, image_id: int) -> Image:
        with self._sessions() as session:
            image = session.get(Image, image_id)
            if image is None:
                raise UserError(f"No image with id {image_id} in this project.")
            return image

    def list(self, split: str | None = None, status: str | None = None,
             root_id: int | None = None, include_missing: bool = False) -> list[Image]:
        """Images ordered by id, optionally filtered by split, status and root."""
        query = select(Image).order_by(Image.id)
        if split is not None:
            query = query.where(Image.split == _check_split(split))
        if status is not None:
            query = query.where(Image.status == status)
        if root_id is not None:
            query = query.where(Image.root_id == root_id)
        if not include_missing:
            query = query.where(Image.present.is_(True))
        with self._sessions() as session:
            return list(session.scalars(query))

    def ids(self, split: str | None = None, readable_only: bool = True) -> list[int]:
        query = select(Image.id).where(Image.present.is_(True)).order_by(Image.id)
        if split is not None:
            query = query.where(Image.split == _check_split(split))
        if readable_only:
            query = query.where(Image.status == "readable")
        with self._sessions() as session:
            return list(session.scalars(query))

    def paths(self, image_ids: Iterable[int] | None = None) -> dict[int, Path]:
        """Absolute path of each image (all present images when `image_ids` is None)."""
        query = select(Image.id, Root.path, Image.rel_path).join(Root, Root.id == Image.root_id)
        with self._sessions() as session:
            if image_ids is None:
                rows = list(session.execute(query.where(Image.present.is_(True))))
            else:
                rows = [row for chunk in chunked(list(image_ids))
                        for row in session.execute(query.where(Image.id.in_(chunk)))]
        return {row.id: Path(row.path) / row.rel_path for row in rows}

    def by_ids(self, image_ids: Iterable[int]) -> dict[int, Image]:
        """The rows of these images (missing ones included), keyed by id; unknown ids are left out."""
        with self._sessions() as session:
            return {image.id: image for chunk in chunked(sorted(set(image_ids)))
                    for image in session.scalars(select(Image).where(Image.id.in_(chunk)))}

    def find_by_path(self, path: Path) -> Image | None:
        """The image registered at absolute `path`, if any (under any root)."""
        resolved = Path(path).resolve()
        with self._sessions() as session:
            for root in session.scalars(select(Root)):
                root_path = Path(root.path)
                if resolved.is_relative_to(root_path):
                    rel = resolved.relative_to(root_path).as_posix()
                    image = session.scalar(select(Image).where(
                        Image.root_id == root.id, Image.rel_path == rel))
                    if image is not None:
                        return image
        return None

    def in_root(self, root_id: int) -> dict[str, Image]:
        """All images of a root (missing ones included), keyed by relative path."""
        with self._sessions() as session:
            rows = session.scalars(select(Image).where(Image.root_id == root_id))
            return {image.rel_path: image for image in rows}

    def add_many(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert images in one transaction; each row holds Image column values (the same
        columns in every row). Returns their ids, in order. A row another process registered
        meanwhile (the same root and path) is kept as it is and its id returned."""
        if not rows:
            return []
        with self._sessions.begin() as session:
            insert_missing(session, Image.__table__, rows, ["root_id", "rel_path"])
            ids: dict[tuple[int, str], int] = {}
            for root_id in {row["root_id"] for row in rows}:
                paths = [row["rel_path"] for row in rows if row["root_id"] == root_id]
                for start in range(0, len(paths), 900):
                    ids.update(((root_id, rel), image_id) for image_id, rel in session.execute(
                        select(Image.id, Image.rel_path).where(
                            Image.root_id == root_id, Image.rel_path.in_(paths[start:start + 900]))))
            return [ids[(row["root_id"], row["rel_path"])] for row in rows]

    def update_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Update images in one transaction; each row holds `id` and the columns to change."""
        if not rows:
            return
        with self._sessions.begin() as session:
            session.execute(update(Image), list(rows))

    def set_split(self, image_ids: Iterable[int], split: str) -> None:
        split = _check_split(split)
        with self._sessions.begin() as session:
            for chunk in chunked(list(image_ids)):
                session.execute(update(Image).where(Image.id.in_(chunk)).values(split=split))

    def count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count(Image.id)).where(Image.present.is_(True))) or 0

    def counts_by_split(self) -> dict[str, int]:
        query = (select(Image.split, func.count(Image.id)).where(Image.present.is_(True))
                 .group_by(Image.split))
        with self._sessions() as session:
            return {split: count for split, count in session.execute(query)}

    def counts_by_status(self) -> dict[str, int]:
        query = (select(Image.status, func.count(Image.id)).where(Image.present.is_(True))
                 .group_by(Image.status))
        with self._sessions() as session:
            return {status: count for status, count in session.execute(query)}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise UserError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    return split
