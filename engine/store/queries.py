"""What the gallery and the review panel read: filtered/sorted image ids, row facts, one image's
detail, project counts. Pure engine code (no Qt) so it is testable alone and reusable by the CLI.

Terms:
- a *decision* is a tag (positive or negative) a person or an import set for (image, class);
- a *pending suggestion* is a suggestion of the active student for a class the image has no
  decision for, with confidence at or above that class's threshold. It never becomes a tag until a
  person accepts it. The gallery's filters and sorts read the suggestion rows, which hold only the
  scores at or above `engine.store.scores.SUGGESTION_FLOOR` (0.02): there, a class threshold below
  the floor acts as the floor. The review panel (`image_detail`) shows every score of the image;
- an image is *reviewed* when at least one of its tags is marked reviewed (every person's edit is);
- *uncertain*: an undecided student suggestion within `margin` of its class threshold;
- *disagreement*: teacher and student fall on different sides of a class threshold. The teacher's
  score for (image, class) is its image-level suggestion when it stored one, else its best region.

Search text (`GalleryFilter.search`): the language of `engine.store.search` (terms, AND, OR,
parentheses, negation of any term or group); a search it cannot parse raises `SearchError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import case, exists, false, func, literal, not_, or_, select, union_all
from sqlalchemy.sql import ColumnElement, Select

from engine.errors import UserError
from engine.store import search
from engine.store.database import chunked
from engine.store.schema import SPLITS, Image, Region, Root, Suggestion, Tag, TagClass

IMAGES = Image.__table__
ROOTS = Root.__table__
TAGS = Tag.__table__
SUGGESTIONS = Suggestion.__table__
CLASSES = TagClass.__table__
REGIONS = Region.__table__

SORT_KEYS = ("added", "name", "confidence", "uncertainty", "disagreement", "tags")
CLASS_MODES = ("tagged", "suggested", "either")


@dataclass(frozen=True)
class Versions:
    """The active model versions (None when a stage has no trained model)."""

    teacher: str | None = None
    student: str | None = None


@dataclass(frozen=True)
class GalleryFilter:
    """What the gallery shows and in which order. Every criterion set must hold."""

    class_id: int | None = None
    class_mode: str = "tagged"          # tagged | suggested (pending) | either
    split: str | None = None
    untagged: bool = False              # no positive tag
    unreviewed: bool = False
    has_suggestions: bool = False       # at least one pending suggestion
    unreadable: bool = False            # only unreadable files
    min_confidence: float | None = None  # a student suggestion (of class_id, when set) in range
    max_confidence: float | None = None
    uncertain: bool = False
    disagreement: bool = False
    margin: float = 0.1                 # for `uncertain`
    duplicates: bool = False            # the same bytes as another present image
    search: str = ""
    sort: str = "added"
    descending: bool = False

    def __post_init__(self) -> None:
        if self.sort not in SORT_KEYS:
            raise UserError(f"Unknown sort order {self.sort!r}; use one of {', '.join(SORT_KEYS)}.")
        if self.class_mode not in CLASS_MODES:
            raise UserError(f"Unknown class mode {self.class_mode!r}.")
        if self.split is not None and self.split not in SPLITS:
            raise UserError(f"Unknown split {self.split!r}; use one of {', '.join(SPLITS)}.")


@dataclass(frozen=True)
class GalleryRow:
    """What a gallery cell shows for one image."""

    image_id: int
    path: str                 # absolute
    name: str                 # relative to its folder
    content_hash: str | None
    status: str               # readable | unreadable
    reason: str | None
    split: str
    positive: tuple[int, ...]  # class ids with a positive tag
    negative: int             # count of negative tags
    reviewed: bool
    pending: int              # pending suggestions
    copies: int = 1           # present images with these same bytes (1: no duplicate)


@dataclass(frozen=True)
class TagInfo:
    class_id: int
    positive: bool
    source: str
    reviewed: bool


@dataclass(frozen=True)
class ScoreInfo:
    class_id: int
    confidence: float


@dataclass(frozen=True)
class RegionInfo:
    class_id: int
    x: float
    y: float
    w: float
    h: float
    score: float


@dataclass(frozen=True)
class ImageDetail:
    """Everything the review panel shows for one image."""

    image_id: int
    path: str
    name: str
    status: str
    reason: str | None
    width: int | None
    height: int | None
    split: str
    tags: tuple[TagInfo, ...]
    suggestions: tuple[ScoreInfo, ...]   # the active student's, best first, decided ones included
    regions: tuple[RegionInfo, ...]      # the active teacher's, best first
    versions: Versions


@dataclass(frozen=True)
class ProjectCounts:
    images: int = 0
    tagged: int = 0
    reviewed: int = 0
    pending: int = 0
    unreadable: int = 0
    versions: Versions = field(default_factory=Versions)


# -------------------------------------------------------------------------------------------------
# Versions


def active_versions(store) -> Versions:
    """The active teacher and student versions (see engine.store.versions)."""
    from engine.store.versions import active_run

    teacher = active_run(store, "teacher")
    student = active_run(store, "student")
    return Versions(teacher.model_version if teacher else None,
                    student.model_version if student else None)


# -------------------------------------------------------------------------------------------------
# Filtered, sorted ids


def query_ids(store, flt: GalleryFilter, versions: Versions | None = None) -> list[int]:
    """Ids of the present images that match `flt`, in its order (ties broken by id)."""
    versions = versions if versions is not None else active_versions(store)
    query = select(IMAGES.c.id).where(IMAGES.c.present.is_(True))
    if flt.search.strip():
        folders = {root.id: Path(root.path).name for root in store.roots.list()}
        query = query.where(search.search_condition(
            search.parse_search(flt.search), folders, lambda: _pending_ids(versions.student)))
    for condition in _conditions(flt, versions):
        query = query.where(condition)
    query = _order(query, flt, versions)
    with store.engine.connect() as connection:
        return list(connection.execute(query).scalars())


def _conditions(flt: GalleryFilter, versions: Versions) -> list[ColumnElement]:
    image_id = IMAGES.c.id
    conditions: list[ColumnElement] = []
    if flt.split is not None:
        conditions.append(IMAGES.c.split == flt.split)
    if flt.unreadable:
        conditions.append(IMAGES.c.status == "unreadable")
    if flt.untagged:
        conditions.append(not_(exists().where(TAGS.c.image_id == image_id,
                                              TAGS.c.positive.is_(True))))
    if flt.unreviewed:
        conditions.append(not_(exists().where(TAGS.c.image_id == image_id,
                                              TAGS.c.reviewed.is_(True))))
    if flt.class_id is not None:
        tagged = exists().where(TAGS.c.image_id == image_id, TAGS.c.class_id == flt.class_id,
                                TAGS.c.positive.is_(True))
        suggested = image_id.in_(_pending_ids(versions.student, flt.class_id))
        conditions.append({"tagged": tagged, "suggested": suggested,
                           "either": or_(tagged, suggested)}[flt.class_mode])
    if flt.duplicates:
        conditions.append(IMAGES.c.content_hash.in_(_duplicate_hashes()))
    if flt.has_suggestions:
        conditions.append(image_id.in_(_pending_ids(versions.student)))
    if flt.min_confidence is not None or flt.max_confidence is not None:
        scores = select(SUGGESTIONS.c.image_id).where(
            SUGGESTIONS.c.model_version == (versions.student or ""))
        if flt.class_id is not None:
            scores = scores.where(SUGGESTIONS.c.class_id == flt.class_id)
        if flt.min_confidence is not None:
            scores = scores.where(SUGGESTIONS.c.confidence >= flt.min_confidence)
        if flt.max_confidence is not None:
            scores = scores.where(SUGGESTIONS.c.confidence <= flt.max_confidence)
        conditions.append(image_id.in_(scores))
    if flt.uncertain:
        undecided = _undecided(versions.student).subquery()
        conditions.append(image_id.in_(select(undecided.c.image_id).where(
            func.abs(undecided.c.confidence - undecided.c.threshold) <= flt.margin)))
    if flt.disagreement and not (versions.teacher and versions.student):
        conditions.append(false())             # no disagreement without both models
    elif flt.disagreement:
        pairs = _teacher_student(versions).subquery()
        conditions.append(image_id.in_(select(pairs.c.image_id).where(
            (pairs.c.teacher >= pairs.c.threshold) != (pairs.c.student >= pairs.c.threshold))))
    return conditions


def _duplicate_hashes() -> Select:
    """Content hashes that more than one present image has (the same file under other names)."""
    return (select(IMAGES.c.content_hash)
            .where(IMAGES.c.present.is_(True), IMAGES.c.content_hash.is_not(None))
            .group_by(IMAGES.c.content_hash).having(func.count() > 1))


def _copies(connection, hashes: set[str]) -> dict[str, int]:
    if not hashes:
        return {}
    return dict(connection.execute(
        select(IMAGES.c.content_hash, func.count())
        .where(IMAGES.c.content_hash.in_(hashes), IMAGES.c.present.is_(True))
        .group_by(IMAGES.c.content_hash).having(func.count() > 1)).all())


def _undecided(student: str | None) -> Select:
    """Student suggestions (image_id, class_id, confidence, threshold) with no decision."""
    return (select(SUGGESTIONS.c.image_id, SUGGESTIONS.c.class_id, SUGGESTIONS.c.confidence,
                   CLASSES.c.threshold)
            .join(CLASSES, CLASSES.c.id == SUGGESTIONS.c.class_id)
            .where(SUGGESTIONS.c.model_version == (student or ""),
                   not_(exists().where(TAGS.c.image_id == SUGGESTIONS.c.image_id,
                                       TAGS.c.class_id == SUGGESTIONS.c.class_id))))


def _pending_ids(student: str | None, class_id: int | None = None) -> Select:
    undecided = _undecided(student).where(SUGGESTIONS.c.confidence >= CLASSES.c.threshold)
    if class_id is not None:
        undecided = undecided.where(SUGGESTIONS.c.class_id == class_id)
    return undecided.with_only_columns(SUGGESTIONS.c.image_id)


def _teacher_student(versions: Versions) -> Select:
    """Per (image, class): student confidence, teacher score (0 when absent) and threshold."""
    student = select(SUGGESTIONS.c.image_id, SUGGESTIONS.c.class_id,
                     SUGGESTIONS.c.confidence.label("score"), literal("s").label("src")).where(
        SUGGESTIONS.c.model_version == (versions.student or ""))
    teacher_suggested = select(SUGGESTIONS.c.image_id, SUGGESTIONS.c.class_id,
                               SUGGESTIONS.c.confidence.label("score"), literal("t").label("src")
                               ).where(SUGGESTIONS.c.model_version == (versions.teacher or ""))
    teacher_regions = select(REGIONS.c.image_id, REGIONS.c.class_id, REGIONS.c.score.label("score"),
                             literal("r").label("src")).where(
        REGIONS.c.model_version == (versions.teacher or ""))
    rows = union_all(student, teacher_suggested, teacher_regions).subquery()
    suggested = func.max(case((rows.c.src == "t", rows.c.score)))
    region = func.max(case((rows.c.src == "r", rows.c.score)))
    return (select(rows.c.image_id, rows.c.class_id,
                   func.coalesce(func.max(case((rows.c.src == "s", rows.c.score))), 0.0).label("student"),
                   func.coalesce(suggested, region, 0.0).label("teacher"),
                   func.max(CLASSES.c.threshold).label("threshold"))
            .join(CLASSES, CLASSES.c.id == rows.c.class_id)
            .group_by(rows.c.image_id, rows.c.class_id))


def _order(query: Select, flt: GalleryFilter, versions: Versions) -> Select:
    image_id = IMAGES.c.id
    desc = flt.descending
    if flt.sort == "added":
        return query.order_by(image_id.desc() if desc else image_id)
    if flt.sort == "name":
        return query.order_by(IMAGES.c.rel_path.desc() if desc else IMAGES.c.rel_path, image_id)
    if flt.sort == "tags":
        counts = (select(TAGS.c.image_id, func.count().label("n")).where(TAGS.c.positive.is_(True))
                  .group_by(TAGS.c.image_id).subquery())
        key = func.coalesce(counts.c.n, 0)
        return (query.outerjoin(counts, counts.c.image_id == image_id)
                .order_by(key.desc() if desc else key, image_id))
    if flt.sort == "confidence":         # best undecided suggestion, most confident first
        undecided = _undecided(versions.student).subquery()
        best = (select(undecided.c.image_id, func.max(undecided.c.confidence).label("k"))
                .group_by(undecided.c.image_id).subquery())
        key, first = best.c.k, not desc
    elif flt.sort == "uncertainty":      # closest to a threshold first
        undecided = _undecided(versions.student).subquery()
        best = (select(undecided.c.image_id,
                       func.min(func.abs(undecided.c.confidence - undecided.c.threshold)).label("k"))
                .group_by(undecided.c.image_id).subquery())
        key, first = best.c.k, desc
    else:                                # disagreement: largest teacher-student gap first
        pairs = _teacher_student(versions).subquery()
        best = (select(pairs.c.image_id, func.max(func.abs(pairs.c.teacher - pairs.c.student))
                       .label("k")).group_by(pairs.c.image_id).subquery())
        key, first = best.c.k, not desc
    # `first` True: larger keys first. Images without a key always go last.
    return (query.outerjoin(best, best.c.image_id == image_id)
            .order_by(best.c.k.is_(None), key.desc() if first else key, image_id))


# -------------------------------------------------------------------------------------------------
# Rows, detail, counts


def gallery_rows(store, image_ids: Sequence[int], versions: Versions | None = None
                 ) -> dict[int, GalleryRow]:
    """Row facts for a page of images (missing ids are left out)."""
    versions = versions if versions is not None else active_versions(store)
    ids = list(image_ids)
    rows: dict[int, GalleryRow] = {}
    with store.engine.connect() as connection:
        for chunk in chunked(ids):
            positive: dict[int, list[int]] = {i: [] for i in chunk}
            negative = dict.fromkeys(chunk, 0)
            reviewed = dict.fromkeys(chunk, False)
            for image_id, class_id, is_positive, is_reviewed in connection.execute(
                    select(TAGS.c.image_id, TAGS.c.class_id, TAGS.c.positive, TAGS.c.reviewed)
                    .where(TAGS.c.image_id.in_(chunk)).order_by(TAGS.c.class_id)):
                if is_positive:
                    positive[image_id].append(class_id)
                else:
                    negative[image_id] += 1
                reviewed[image_id] = reviewed[image_id] or bool(is_reviewed)
            pending = dict(connection.execute(
                select(SUGGESTIONS.c.image_id, func.count())
                .select_from(SUGGESTIONS.join(CLASSES, CLASSES.c.id == SUGGESTIONS.c.class_id))
                .where(SUGGESTIONS.c.image_id.in_(chunk),
                       SUGGESTIONS.c.model_version == (versions.student or ""),
                       SUGGESTIONS.c.confidence >= CLASSES.c.threshold,
                       not_(exists().where(TAGS.c.image_id == SUGGESTIONS.c.image_id,
                                           TAGS.c.class_id == SUGGESTIONS.c.class_id)))
                .group_by(SUGGESTIONS.c.image_id)).all())
            found = connection.execute(
                select(IMAGES.c.id, ROOTS.c.path, IMAGES.c.rel_path, IMAGES.c.content_hash,
                       IMAGES.c.status, IMAGES.c.reason, IMAGES.c.split)
                .join(ROOTS, ROOTS.c.id == IMAGES.c.root_id).where(IMAGES.c.id.in_(chunk))).all()
            copies = _copies(connection, {r.content_hash for r in found if r.content_hash})
            for row in found:
                rows[row.id] = GalleryRow(
                    row.id, _join(row.path, row.rel_path), row.rel_path, row.content_hash,
                    row.status, row.reason, row.split, tuple(positive[row.id]), negative[row.id],
                    reviewed[row.id], int(pending.get(row.id, 0)),
                    copies.get(row.content_hash, 1))
    return rows


def image_detail(store, image_id: int, versions: Versions | None = None) -> ImageDetail:
    """The review panel's view of one image: tags, student suggestions, teacher regions."""
    versions = versions if versions is not None else active_versions(store)
    with store.engine.connect() as connection:
        row = connection.execute(
            select(IMAGES, ROOTS.c.path.label("root")).join(ROOTS, ROOTS.c.id == IMAGES.c.root_id)
            .where(IMAGES.c.id == image_id)).first()
        if row is None:
            raise UserError(f"No image with id {image_id} in this project.")
        tags = tuple(TagInfo(r.class_id, bool(r.positive), r.source, bool(r.reviewed))
                     for r in connection.execute(select(TAGS).where(TAGS.c.image_id == image_id)
                                                 .order_by(TAGS.c.class_id)))
        regions = tuple(RegionInfo(r.class_id, r.x, r.y, r.w, r.h, float(r.score))
                        for r in connection.execute(
            select(REGIONS).where(REGIONS.c.image_id == image_id,
                                  REGIONS.c.model_version == (versions.teacher or ""))
            .order_by(REGIONS.c.score.desc())))
    # every score of the image, from its block: also those below the suggestion rows' floor
    suggestions = tuple(ScoreInfo(s.class_id, s.confidence) for s in store.suggestions.for_image(
        image_id, versions.student or ""))
    return ImageDetail(image_id, _join(row.root, row.rel_path), row.rel_path, row.status,
                       row.reason, row.width, row.height, row.split, tags, suggestions, regions,
                       versions)


def project_counts(store, versions: Versions | None = None) -> ProjectCounts:
    """Counts for the status bar: images, tagged, reviewed, pending suggestions, unreadable."""
    versions = versions if versions is not None else active_versions(store)
    present = select(IMAGES.c.id).where(IMAGES.c.present.is_(True))
    with store.engine.connect() as connection:
        images = connection.scalar(select(func.count()).select_from(present.subquery())) or 0
        unreadable = connection.scalar(select(func.count()).where(
            IMAGES.c.present.is_(True), IMAGES.c.status == "unreadable")) or 0
        tagged = connection.scalar(select(func.count(func.distinct(TAGS.c.image_id))).where(
            TAGS.c.positive.is_(True), TAGS.c.image_id.in_(present))) or 0
        reviewed = connection.scalar(select(func.count(func.distinct(TAGS.c.image_id))).where(
            TAGS.c.reviewed.is_(True), TAGS.c.image_id.in_(present))) or 0
        pending = connection.scalar(select(func.count()).select_from(
            _pending_ids(versions.student).subquery())) or 0
    return ProjectCounts(images, tagged, reviewed, pending, unreadable, versions)


def threshold_count(store, class_id: int, threshold: float, student: str | None) -> int:
    """How many images the active student scores at or above `threshold` for `class_id`."""
    with store.engine.connect() as connection:
        return connection.scalar(select(func.count(func.distinct(SUGGESTIONS.c.image_id))).where(
            SUGGESTIONS.c.class_id == class_id, SUGGESTIONS.c.model_version == (student or ""),
            SUGGESTIONS.c.confidence >= threshold)) or 0


def selection_summary(store, image_ids: Sequence[int]) -> dict[int, int]:
    """Positive tags per class id over a set of images (for bulk editing a selection)."""
    counts: dict[int, int] = {}
    ids = list(image_ids)
    with store.engine.connect() as connection:
        for chunk in chunked(ids):
            for class_id, count in connection.execute(
                    select(TAGS.c.class_id, func.count()).where(
                        TAGS.c.image_id.in_(chunk), TAGS.c.positive.is_(True))
                    .group_by(TAGS.c.class_id)):
                counts[class_id] = counts.get(class_id, 0) + count
    return counts


def class_tag_counts(store) -> dict[int, int]:
    """Positive tags per class id."""
    with store.engine.connect() as connection:
        return dict(connection.execute(
            select(TAGS.c.class_id, func.count()).where(TAGS.c.positive.is_(True))
            .group_by(TAGS.c.class_id)).all())


def _join(root: str, rel_path: str) -> str:
    return str(Path(root) / rel_path)


__all__ = [
    "GalleryFilter", "GalleryRow", "ImageDetail", "ProjectCounts", "RegionInfo", "ScoreInfo",
    "TagInfo", "Versions", "active_versions", "class_tag_counts", "gallery_rows", "image_detail",
    "project_counts", "query_ids", "selection_summary", "threshold_count",
]
