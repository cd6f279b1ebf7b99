"""The project database schema: SQLAlchemy 2.0 typed ORM models.

Every change here needs an Alembic migration in `engine/store/migrations/versions` so that newer
versions of the tool open older projects.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SPLITS = ("train", "val", "test", "unassigned")
TAG_SOURCES = ("person", "import", "model rule")
IMAGE_STATUSES = ("readable", "unreadable")
RUN_STATUSES = ("running", "completed", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Root(Base):
    """A folder added to the project; image paths are stored relative to it."""

    __tablename__ = "roots"
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String, unique=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("root_id", "rel_path"),
        Index("ix_images_split", "split"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("roots.id", ondelete="CASCADE"))
    rel_path: Mapped[str] = mapped_column(String)
    content_hash: Mapped[Optional[str]] = mapped_column(String, index=True)
    file_size: Mapped[int] = mapped_column(Integer, default=0)
    mtime: Mapped[float] = mapped_column(Float, default=0.0)
    width: Mapped[Optional[int]] = mapped_column(Integer)
    height: Mapped[Optional[int]] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String, default="readable")
    reason: Mapped[Optional[str]] = mapped_column(String)
    present: Mapped[bool] = mapped_column(Boolean, default=True)
    split: Mapped[str] = mapped_column(String, default="unassigned")
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TagClass(Base):
    """A tag class (label). `parent_id` builds an optional hierarchy."""

    __tablename__ = "classes"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("classes.id", ondelete="SET NULL"))
    color: Mapped[str] = mapped_column(String, default="#4e79a7")
    shortcut: Mapped[Optional[str]] = mapped_column(String)
    threshold: Mapped[float] = mapped_column(Float, default=0.5)


class Tag(Base):
    """A person's (or an import's) image-level decision for one class."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("image_id", "class_id"), Index("ix_tags_class", "class_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    positive: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String, default="person")
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TagChange(Base):
    """Append-only history of every tag change; `old_state`/`new_state` are
    'positive', 'negative' or None (no tag)."""

    __tablename__ = "tag_history"
    __table_args__ = (Index("ix_tag_history_image", "image_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    old_state: Mapped[Optional[str]] = mapped_column(String)
    new_state: Mapped[Optional[str]] = mapped_column(String)
    source: Mapped[str] = mapped_column(String)
    batch: Mapped[Optional[str]] = mapped_column(String, index=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Suggestion(Base):
    """A model's confidence for a class on an image; kept apart from tags."""

    __tablename__ = "suggestions"
    __table_args__ = (
        UniqueConstraint("image_id", "class_id", "model_version"),
        Index("ix_suggestions_version_image", "model_version", "image_id"),
        Index("ix_suggestions_version_class", "model_version", "class_id", "confidence"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ScoreBlock(Base):
    """Every class score of one model version for one image, dense: little-endian float32 in the
    order of its `ScoreColumns.class_ids` (a block may be shorter than a list that grew since;
    the missing classes have no score). `suggestions` keeps rows only at or above
    `engine.store.scores.SUGGESTION_FLOOR`, for what the gallery filters and sorts on."""

    __tablename__ = "score_blocks"
    model_version: Mapped[str] = mapped_column(String, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"),
                                          primary_key=True)
    scores: Mapped[bytes] = mapped_column(LargeBinary)


class ScoreColumns(Base):
    """The class ids of a model version's score blocks, in column order (only ever appended to)."""

    __tablename__ = "score_columns"
    model_version: Mapped[str] = mapped_column(String, primary_key=True)
    class_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)


class Region(Base):
    """A teacher region: box [x, y, w, h] in original image pixels, class and score."""

    __tablename__ = "regions"
    __table_args__ = (Index("ix_regions_image", "image_id", "model_version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    w: Mapped[float] = mapped_column(Float)
    h: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String)


class GroundTruthBox(Base):
    """An evaluation-only box (e.g. from a COCO import); never used for training."""

    __tablename__ = "gt_boxes"
    __table_args__ = (Index("ix_gt_boxes_image", "image_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"))
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    w: Mapped[float] = mapped_column(Float)
    h: Mapped[float] = mapped_column(Float)


class TrainingRun(Base):
    """One training run: its config, status, per-epoch metrics and checkpoint.

    `tag_watermark` is the last `tag_history.id` when the run started: the run learnt from exactly
    the tags as of that change.
    """

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(String)
    model_version: Mapped[Optional[str]] = mapped_column(String, unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String, default="running")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    checkpoint: Mapped[Optional[str]] = mapped_column(String)
    class_names: Mapped[list[Any]] = mapped_column(default=list)
    tag_watermark: Mapped[int] = mapped_column(Integer, default=0)
    parent_run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    owner: Mapped[Optional[str]] = mapped_column(String)  # '<host>:<pid>:<start>' (engine.store.owners)


class Setting(Base):
    """Project-wide key/value settings (e.g. the active model versions)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
