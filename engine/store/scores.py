"""Model scores at scale: every class score of a model version, dense, and suggestion rows only
for what the gallery filters on.

A version's scores of an image are one float32 block (`score_blocks`, columns in the version's
`score_columns` order): 1M images x 80 classes is 1M blocks, not 80 million rows. The
`suggestions` table keeps the rows at or above `SUGGESTION_FLOOR` (the gallery's "has
suggestions", confidence filters and sorts, the review panel); a score below it counts as no
suggestion there, and stays in the block for calibration, evaluation and the review queue.
Writes go in one statement per chunk (`bulk_insert`: COPY on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from engine.store.database import Sessions, bulk_insert, chunked, lock_for_writing
from engine.store.schema import ScoreBlock, ScoreColumns, Suggestion, utcnow

SUGGESTION_FLOOR = 0.02
BLOCK_DTYPE = np.dtype("<f4")
WRITE_CHUNK = 20000   # images per statement group: bounded memory at a million images


@dataclass(frozen=True)
class Score:
    """One class score of a model version on an image."""

    image_id: int
    class_id: int
    confidence: float
    model_version: str


class SuggestionRepository:
    """Model suggestions (class confidences), kept apart from tags, one set per model version."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def replace(self, model_version: str, image_ids: Sequence[int],
                rows: Sequence[tuple[int, int, float]]) -> None:
        """Replace this version's scores of `image_ids` by `rows` (image, class, confidence)."""
        class_ids = sorted({int(c) for _, c, _ in rows})
        row_of = {int(image_id): i for i, image_id in enumerate(image_ids)}
        column = {class_id: k for k, class_id in enumerate(class_ids)}
        matrix = np.full((len(row_of), len(class_ids)), np.nan)
        for image_id, class_id, confidence in rows:
            matrix[row_of[int(image_id)], column[int(class_id)]] = confidence
        self.replace_matrix(model_version, list(row_of), class_ids, matrix)

    def replace_matrix(self, model_version: str, image_ids: Sequence[int],
                       class_ids: Sequence[int], scores: np.ndarray) -> None:
        """Replace this version's scores of `image_ids` by `scores[i, k]` for class_ids[k] (NaN:
        no score), in one transaction: one block per image, a suggestion row per score at or
        above the floor. Another writer at the same moment is waited for, or the write runs
        again after it (`Sessions.write`)."""
        self._sessions.write(lambda session: self._write(session, model_version, image_ids,
                                                         class_ids, scores))

    def _write(self, session: Session, model_version: str, image_ids: Sequence[int],
               class_ids: Sequence[int], scores: np.ndarray) -> None:
        lock_for_writing(session)
        columns = self._columns(session, model_version, class_ids)
        where = {class_id: k for k, class_id in enumerate(columns)}
        index = [where[int(c)] for c in class_ids]
        connection, now = session.connection(), utcnow()
        ids = [int(i) for i in image_ids]
        for start in range(0, len(ids), WRITE_CHUNK):
            chunk = ids[start:start + WRITE_CHUNK]
            block = np.full((len(chunk), len(columns)), np.nan)   # rows keep the given values
            block[:, index] = scores[start:start + WRITE_CHUNK]
            for part in chunked(chunk):
                connection.execute(delete(ScoreBlock.__table__).where(
                    ScoreBlock.model_version == model_version, ScoreBlock.image_id.in_(part)))
                connection.execute(delete(Suggestion.__table__).where(
                    Suggestion.model_version == model_version, Suggestion.image_id.in_(part)))
            kept = ~np.isnan(block).all(axis=1)          # an image without scores: no block
            bulk_insert(connection, ScoreBlock.__table__, ("model_version", "image_id", "scores"),
                        [(model_version, i, row.astype(BLOCK_DTYPE).tobytes())
                         for i, row, keep in zip(chunk, block, kept) if keep])
            rows, cols = np.nonzero(block >= SUGGESTION_FLOOR)
            bulk_insert(connection, Suggestion.__table__,
                        ("image_id", "class_id", "confidence", "model_version", "created_at"),
                        [(chunk[r], columns[c], float(block[r, c]), model_version, now)
                         for r, c in zip(rows.tolist(), cols.tolist())])

    @staticmethod
    def _columns(session: Session, model_version: str, class_ids: Sequence[int]) -> list[int]:
        """The version's column class ids, extended by any of `class_ids` it lacks."""
        entry = session.get(ScoreColumns, model_version, with_for_update=True)
        known = list(entry.class_ids) if entry is not None else []
        added = [int(c) for c in class_ids if int(c) not in set(known)]
        if entry is None:
            session.add(ScoreColumns(model_version=model_version, class_ids=added))
        elif added:
            entry.class_ids = known + added
        session.flush()
        return known + added

    def scores(self, image_ids: Sequence[int], model_version: str
               ) -> tuple[list[int], np.ndarray, np.ndarray]:
        """(class ids, scores (N, K) float32 with NaN where none, found (N,) bool) of the
        version for `image_ids`, read from the blocks."""
        ids = [int(i) for i in image_ids]
        with self._sessions() as session:
            entry = session.get(ScoreColumns, model_version)
            class_ids = [int(c) for c in entry.class_ids] if entry is not None else []
            matrix = np.full((len(ids), len(class_ids)), np.nan, dtype=np.float32)
            found = np.zeros(len(ids), dtype=bool)
            row = {image_id: i for i, image_id in enumerate(ids)}
            for chunk in chunked(ids):
                for image_id, blob in session.execute(
                        select(ScoreBlock.image_id, ScoreBlock.scores).where(
                            ScoreBlock.model_version == model_version,
                            ScoreBlock.image_id.in_(chunk))):
                    values = np.frombuffer(bytes(blob), dtype=BLOCK_DTYPE)
                    matrix[row[image_id], :len(values)] = values
                    found[row[image_id]] = True
        return class_ids, matrix, found

    def for_images(self, image_ids: Iterable[int], model_version: str) -> dict[int, list[Score]]:
        """Every score of the version per image (most confident first); [] when it has none."""
        ids = list(image_ids)
        class_ids, matrix, _ = self.scores(ids, model_version)
        result: dict[int, list[Score]] = {}
        for image_id, values in zip(ids, matrix):
            found = [Score(image_id, class_id, float(p), model_version)
                     for class_id, p in zip(class_ids, values) if not np.isnan(p)]
            result[image_id] = sorted(found, key=lambda s: -s.confidence)
        return result

    def for_image(self, image_id: int, model_version: str) -> list[Score]:
        return self.for_images([image_id], model_version)[image_id]

    def scored_ids(self, image_ids: Sequence[int], model_version: str) -> set[int]:
        """Those of `image_ids` that have scores of the version."""
        found: set[int] = set()
        with self._sessions() as session:
            for chunk in chunked([int(i) for i in image_ids]):
                found.update(session.scalars(select(ScoreBlock.image_id).where(
                    ScoreBlock.model_version == model_version, ScoreBlock.image_id.in_(chunk))))
        return found

    def delete_version(self, model_version: str) -> None:
        """Forget every score of a model version (a quick version replaced by the next)."""
        with self._sessions.begin() as session:
            for table in (Suggestion, ScoreBlock, ScoreColumns):
                session.execute(delete(table).where(table.model_version == model_version))

    def versions(self) -> list[str]:
        """The model versions that have scores stored."""
        with self._sessions() as session:
            return list(session.scalars(select(ScoreColumns.model_version).where(
                select(ScoreBlock.image_id).where(
                    ScoreBlock.model_version == ScoreColumns.model_version).exists())))
