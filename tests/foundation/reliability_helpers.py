"""Helpers of the reliability tests (issue 15): a logical snapshot of a project database, and a
small folder of images."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData, select

from .files import gradient_rgb


def snapshot(store) -> dict[str, list[tuple]]:  # noqa: ANN001
    """Every row of every table (alembic's included), sorted: equal snapshots, equal projects."""
    metadata = MetaData()
    metadata.reflect(store.engine)
    with store.engine.connect() as connection:
        return {name: sorted((tuple(map(repr, row)) for row in connection.execute(select(table))))
                for name, table in sorted(metadata.tables.items())}


def write_images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        gradient_rgb(32 + k, 24).save(path)
        paths.append(path)
    return paths
