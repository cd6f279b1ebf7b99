"""Repositories for what models produce and how they were made: training runs, teacher regions,
evaluation ground-truth boxes, and project settings (model scores: `engine.store.scores`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import UserError
from engine.store.database import chunked
from engine.store.owners import current_owner, owner_gone
from engine.store.schema import (
    RUN_STATUSES,
    GroundTruthBox,
    Region,
    Setting,
    TagChange,
    TrainingRun,
    utcnow,
)


@dataclass(frozen=True)
class BoxRow:
    """A box of one class on one image: [x, y, w, h] in original image pixels."""

    image_id: int
    class_id: int
    x: float
    y: float
    w: float
    h: float
    score: float = 1.0


class RunRepository:
    """Training runs; `model_version` is '<stage>-<run id>'."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, stage: str, config: dict[str, Any], class_names: list[str],
               parent_run_id: int | None = None) -> TrainingRun:
        """A new 'running' run, recording the tag-history watermark it learns from."""
        with self._sessions.begin() as session:
            watermark = session.scalar(select(func.max(TagChange.id))) or 0
            run = TrainingRun(stage=stage, config=config, class_names=list(class_names),
                              tag_watermark=watermark, parent_run_id=parent_run_id,
                              owner=current_owner())
            session.add(run)
            session.flush()
            run.model_version = f"{stage}-{run.id}"
            session.flush()
            return run

    def update(self, run_id: int, *, status: str | None = None, metrics: dict[str, Any] | None = None,
               checkpoint: str | None = None, finished: bool = False) -> None:
        values: dict[str, Any] = {}
        if status is not None:
            if status not in RUN_STATUSES:
                raise ValueError(f"unknown run status {status!r}")
            values["status"] = status
            if status == "running":  # resumed: this process runs it now
                values["owner"] = current_owner()
        if metrics is not None:
            values["metrics"] = metrics
        if checkpoint is not None:
            values["checkpoint"] = checkpoint
        if finished:
            values["finished_at"] = utcnow()
        with self._sessions.begin() as session:
            session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(**values))

    def end_orphans(self) -> list[int]:
        """Mark 'failed' (finished now) every 'running' run whose process on this host has ended
        (killed before it could record an end, even before its first checkpoint); such a run stays
        resumable with `train --resume`. Returns their ids; writes nothing when there are none."""
        with self._sessions() as session:
            orphans = [run_id for run_id, owner in session.execute(
                select(TrainingRun.id, TrainingRun.owner).where(TrainingRun.status == "running"))
                if owner_gone(owner)]
        if orphans:
            with self._sessions.begin() as session:
                session.execute(update(TrainingRun).where(
                    TrainingRun.id.in_(orphans), TrainingRun.status == "running").values(
                    status="failed", finished_at=utcnow()))
        return orphans

    def get(self, run_id: int) -> TrainingRun:
        with self._sessions() as session:
            run = session.get(TrainingRun, run_id)
            if run is None:
                raise UserError(f"No training run with id {run_id}.")
            return run

    def by_version(self, model_version: str) -> TrainingRun:
        with self._sessions() as session:
            run = session.scalar(select(TrainingRun).where(TrainingRun.model_version == model_version))
            if run is None:
                raise UserError(f"No model version {model_version!r} in this project.")
            return run

    def latest(self, stage: str, status: str = "completed") -> TrainingRun | None:
        with self._sessions() as session:
            return session.scalar(select(TrainingRun).where(
                TrainingRun.stage == stage, TrainingRun.status == status)
                .order_by(TrainingRun.id.desc()).limit(1))

    def list(self, stage: str | None = None) -> list[TrainingRun]:
        query = select(TrainingRun).order_by(TrainingRun.id)
        if stage is not None:
            query = query.where(TrainingRun.stage == stage)
        with self._sessions() as session:
            return list(session.scalars(query))


class RegionRepository:
    """Teacher regions per image and model version."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def replace(self, model_version: str, image_ids: Sequence[int], boxes: Sequence[BoxRow]) -> None:
        with self._sessions.begin() as session:
            for chunk in chunked(list(image_ids)):
                session.execute(delete(Region).where(
                    Region.model_version == model_version, Region.image_id.in_(chunk)))
            if boxes:
                session.execute(insert(Region), [
                    {"image_id": b.image_id, "class_id": b.class_id, "x": b.x, "y": b.y, "w": b.w,
                     "h": b.h, "score": b.score, "model_version": model_version} for b in boxes])

    def for_image(self, image_id: int, model_version: str) -> list[Region]:
        with self._sessions() as session:
            return list(session.scalars(select(Region).where(
                Region.image_id == image_id, Region.model_version == model_version)
                .order_by(Region.score.desc())))

    def best_scores(self, image_ids: Iterable[int], model_version: str) -> dict[int, dict[int, float]]:
        """Image id -> class id -> the best region score, for the images that have regions of
        `model_version` (one grouped query per chunk of ids)."""
        result: dict[int, dict[int, float]] = {}
        with self._sessions() as session:
            for chunk in chunked(list(image_ids)):
                query = (select(Region.image_id, Region.class_id, func.max(Region.score))
                         .where(Region.model_version == model_version, Region.image_id.in_(chunk))
                         .group_by(Region.image_id, Region.class_id))
                for image_id, class_id, score in session.execute(query):
                    result.setdefault(image_id, {})[class_id] = float(score)
        return result


class GroundTruthRepository:
    """Evaluation-only boxes (from a COCO import or the demo data); never used for training."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def for_images(self, image_ids: Iterable[int]) -> dict[int, list[GroundTruthBox]]:
        ids = list(image_ids)
        result: dict[int, list[GroundTruthBox]] = {image_id: [] for image_id in ids}
        with self._sessions() as session:
            for chunk in chunked(ids):
                for box in session.scalars(select(GroundTruthBox).where(
                        GroundTruthBox.image_id.in_(chunk))):
                    result[box.image_id].append(box)
        return result

    def replace_for_images(self, image_ids: Sequence[int], boxes: Sequence[BoxRow]) -> None:
        """Replace the boxes of `image_ids` by `boxes` in one transaction (idempotent imports)."""
        with self._sessions.begin() as session:
            for chunk in chunked(list(image_ids)):
                session.execute(delete(GroundTruthBox).where(GroundTruthBox.image_id.in_(chunk)))
            if boxes:
                session.execute(insert(GroundTruthBox), [
                    {"image_id": b.image_id, "class_id": b.class_id, "x": b.x, "y": b.y,
                     "w": b.w, "h": b.h} for b in boxes])

    def all(self) -> list[GroundTruthBox]:
        with self._sessions() as session:
            return list(session.scalars(select(GroundTruthBox).order_by(GroundTruthBox.id)))


class SettingRepository:
    """Project-wide settings such as the active model versions."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, key: str, default: Any = None) -> Any:
        with self._sessions() as session:
            setting = session.get(Setting, key)
            return default if setting is None else setting.value

    def set(self, key: str, value: Any) -> None:
        with self._sessions.begin() as session:
            session.merge(Setting(key=key, value=value))
