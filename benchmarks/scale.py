"""Past one machine: a team database at scale, on SQLite and PostgreSQL (issue 14).

    python benchmarks/scale.py [--tags 200000] [--images 1000000] [--classes 80]
                               [--backends sqlite,postgresql] [--db-url URL] [--only import,scores,ddp]

- import: `--tags` image-level tags (10 classes, half positive, half negative) written the way
  every importer writes them (`engine.exchange.apply_import_tags`: the person's tags kept, each
  change logged) into a project of tags/10 registered images (no decoding); seconds, tags/s.
- scores: `--images` synthetic images (rows only, no files), each scored for `--classes` classes
  by a fake model (a few likely classes per image, the rest near 0), stored as a re-scoring round
  stores them (`store.suggestions.replace_matrix`, 50,000 images per call): seconds, images/s, the
  rows kept (score blocks; suggestion rows at or above the floor, against one row per image and
  class); then the gallery filters "has a pending suggestion" (at or above its class's threshold)
  and "a confidence of class 0 at or above 0.9", each as the gallery runs them (`query_ids`).
  `--baseline` also times the storage before (one suggestion row per image and class) on the
  same images and scores.
- ddp: `benchmarks/scale_ddp.py`: DDP with 2 gloo processes vs 1 on the CPU.

PostgreSQL: `--db-url` of an empty database, else a throwaway server when the binaries are
installed (`tests/postgres.py`: initdb, a unix socket, fsync off as in the tests), else skipped.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scale_ddp import ddp_section  # noqa: E402  (benchmarks/ is the script's folder)

IMPORT_CLASSES = 10
SCORE_CHUNK = 50000


def open_store(backend: str, folder: Path, server):  # noqa: ANN001, ANN201
    from engine.store import Store

    if backend == "sqlite":
        return Store.open(folder / "sqlite")
    url = server if isinstance(server, str) else server.new_database()
    return Store.open(folder / "postgresql", db_url=url)


def add_images(store, count: int) -> list[int]:  # noqa: ANN001
    """`count` image rows under one synthetic folder (no files), inserted in bulk."""
    from sqlalchemy import select

    from engine.store.database import bulk_insert
    from engine.store.schema import Image, utcnow

    root = store.roots.get_or_create(Path("/synthetic"))
    columns = ("root_id", "rel_path", "file_size", "mtime", "status", "present", "split",
               "added_at")
    now = utcnow()
    for start in range(0, count, 100000):
        with store.engine.begin() as connection:
            bulk_insert(connection, Image.__table__, columns,
                        [(root.id, f"{k:07d}.jpg", 0, 0.0, "readable", True, "unassigned", now)
                         for k in range(start, min(count, start + 100000))])
    with store.engine.connect() as connection:
        return list(connection.scalars(select(Image.id).order_by(Image.id)))


def import_section(backend: str, folder: Path, server, n_tags: int) -> None:  # noqa: ANN001
    from engine.exchange import ImportSummary, apply_import_tags

    with open_store(backend, folder, server) as store:
        ids = add_images(store, n_tags // IMPORT_CLASSES)
        classes = [c.id for c in store.classes.ensure([f"c{k}" for k in range(IMPORT_CLASSES)])]
        half = IMPORT_CLASSES // 2
        decisions = {i: (classes[:half], classes[half:]) for i in ids}
        started = time.perf_counter()
        summary = ImportSummary(source=folder)
        apply_import_tags(store, decisions, summary)
        seconds = time.perf_counter() - started
        assert sum(store.tags.counts_by_source().values()) == summary.tags_set
    print(f"import  {backend:<10} {summary.tags_set:>9,} tags  {seconds:7.1f} s  "
          f"{summary.tags_set / seconds:>9,.0f} tags/s")


def fake_scores(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Mostly near 0 (sigmoid of N(-7, 1.2)), three likely classes per image (N(1, 2))."""
    logits = rng.normal(-7.0, 1.2, size=(n, k))
    likely = rng.integers(0, k, size=(n, 3))
    logits[np.arange(n)[:, None], likely] = rng.normal(1.0, 2.0, size=(n, 3))
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def scores_section(backend: str, folder: Path, server, n_images: int, n_classes: int,  # noqa: ANN001
                   baseline: bool = False) -> None:
    from sqlalchemy import func, select

    from engine.store.queries import GalleryFilter, Versions, query_ids
    from engine.store.schema import ScoreBlock, Suggestion

    with open_store(backend, folder, server) as store:
        started = time.perf_counter()
        ids = add_images(store, n_images)
        class_ids = [c.id for c in store.classes.ensure([f"k{k}" for k in range(n_classes)])]
        print(f"scores  {backend:<10} {n_images:>9,} images registered in "
              f"{time.perf_counter() - started:.1f} s")
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        for start in range(0, n_images, SCORE_CHUNK):
            chunk = ids[start:start + SCORE_CHUNK]
            store.suggestions.replace_matrix("student-1", chunk, class_ids,
                                             fake_scores(rng, len(chunk), n_classes))
        seconds = time.perf_counter() - started
        with store.engine.connect() as connection:
            blocks = connection.scalar(select(func.count()).select_from(ScoreBlock))
            rows = connection.scalar(select(func.count()).select_from(Suggestion))
        print(f"scores  {backend:<10} re-scoring {n_images:,} images x {n_classes} classes: "
              f"{seconds:.1f} s ({n_images / seconds:,.0f} images/s); kept {blocks:,} score "
              f"blocks and {rows:,} suggestion rows (>= floor) instead of "
              f"{n_images * n_classes:,} rows")
        if baseline:
            rows_baseline(store, backend, ids, class_ids)
        versions = Versions(student="student-1")
        for label, flt in (("has a pending suggestion", GalleryFilter(has_suggestions=True)),
                           ("class 0 confidence >= 0.9",
                            GalleryFilter(class_id=class_ids[0], class_mode="suggested",
                                          min_confidence=0.9))):
            started = time.perf_counter()
            found = len(query_ids(store, flt, versions))
            print(f"filter  {backend:<10} {label:<28} {found:>9,} images  "
                  f"{time.perf_counter() - started:6.2f} s")


def rows_baseline(store, backend: str, ids: list[int], class_ids: list[int]) -> None:  # noqa: ANN001
    """The storage before: one suggestion row per (image, class), written in bulk the same way
    (same table and indexes, so one index more than it had), for the same images and scores."""
    from engine.store.database import bulk_insert
    from engine.store.schema import Suggestion, utcnow

    rng = np.random.default_rng(0)
    columns = ("image_id", "class_id", "confidence", "model_version", "created_at")
    started = time.perf_counter()
    for start in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[start:start + SCORE_CHUNK]
        scores, now = fake_scores(rng, len(chunk), len(class_ids)), utcnow()
        with store.engine.begin() as connection:
            bulk_insert(connection, Suggestion.__table__, columns,
                        [(image_id, class_id, float(p), "rows-1", now)
                         for image_id, row in zip(chunk, scores.tolist())
                         for class_id, p in zip(class_ids, row)])
    seconds = time.perf_counter() - started
    print(f"scores  {backend:<10} baseline, one row per image and class: {len(ids):,} images in "
          f"{seconds:.1f} s ({len(ids) / seconds:,.0f} images/s, "
          f"{len(ids) * len(class_ids):,} rows)")
    with store.engine.begin() as connection:
        connection.execute(Suggestion.__table__.delete().where(
            Suggestion.model_version == "rows-1"))


def postgres_server(folder: Path, db_url: str | None):  # noqa: ANN201
    """A URL (--db-url), a throwaway server, or None when neither is possible."""
    if db_url:
        return db_url
    from tests.postgres import find_binaries, start_server

    if find_binaries() is None:
        print("postgresql: no server binaries or psycopg; skipped")
        return None
    return start_server(folder / "cluster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=200000)
    parser.add_argument("--images", type=int, default=1000000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--db-url", help="an empty PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--only", default="import,scores,ddp")
    parser.add_argument("--baseline", action="store_true",
                        help="scores: also time one suggestion row per image and class")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    folder = Path(tempfile.mkdtemp(prefix="mlic-scale-"))
    server = None
    try:
        for backend in args.backends.split(","):
            if backend == "postgresql":
                server = postgres_server(folder, args.db_url)
                if server is None:
                    continue
            if "import" in sections:
                import_section(backend, folder / f"import-{backend}", server, args.tags)
            if "scores" in sections:
                scores_section(backend, folder / f"scores-{backend}", server, args.images,
                               args.classes, args.baseline)
        if "ddp" in sections:
            ddp_section()
    finally:
        if server is not None and not isinstance(server, str):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
