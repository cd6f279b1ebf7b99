"""The project store: one API over the project database, used by the CLI and the GUI alike.

`Store.open(project_dir)` opens (creating and migrating as needed) `<project_dir>/project.sqlite`;
`Store.open(db_url=...)` any SQLAlchemy URL (e.g. PostgreSQL for a shared team database); its
models and caches live in the folder given with it, else in a folder named by the project id stored
in the database (`engine.project.database_project_dir`), never in another project's. A SQLite
project this process may not write (read-only media, permissions) opens read-only
(`store.read_only`): reading commands such as `mlic status` work, a write fails with one line. Work goes
through small repositories (`store.images`, `store.tags`, ...). Each method runs one short
transaction and returns detached objects, so one writer thread and concurrent readers are safe.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from engine.errors import UserError
from engine.files import clean_stale_temporaries
from engine.project import ProjectPaths, database_project_dir, default_project_dir
from engine.store.database import (
    Sessions,
    check_at_head,
    create_database_engine,
    project_id,
    read_only_sqlite_engine,
    sqlite_url,
    sqlite_writable,
    upgrade_to_head,
)
from engine.store.images import ImageRepository, RootRepository
from engine.store.results import (
    BoxRow,
    GroundTruthRepository,
    RegionRepository,
    RunRepository,
    SettingRepository,
)
from engine.store.scores import SuggestionRepository
from engine.store.tags import (
    UNKNOWN,
    ClassRepository,
    LabelMatrix,
    TagEdit,
    TagRepository,
)

__all__ = ["UNKNOWN", "BoxRow", "LabelMatrix", "Store", "TagEdit"]
log = logging.getLogger(__name__)


class Store:
    """An open project: its paths and its repositories."""

    def __init__(self, url: str, paths: ProjectPaths | None = None,
                 read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        self.engine = (read_only_sqlite_engine(paths.database) if read_only and paths
                       else create_database_engine(url))
        try:
            if read_only:
                check_at_head(self.engine)
            else:
                upgrade_to_head(self.engine)
            self.project_id = project_id(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self.paths = paths or ProjectPaths(database_project_dir(self.project_id))
        if not read_only:
            _ensure_folders(self.paths)
        clean_stale_temporaries(self.paths.models_dir)  # a checkpoint write killed mid-way
        sessions = self._sessions = Sessions(self.engine)
        self.roots = RootRepository(sessions)
        self.images = ImageRepository(sessions)
        self.classes = ClassRepository(sessions)
        self.tags = TagRepository(sessions)
        self.suggestions = SuggestionRepository(sessions)
        self.regions = RegionRepository(sessions)
        self.boxes = GroundTruthRepository(sessions)
        self.runs = RunRepository(sessions)
        self.settings = SettingRepository(sessions)
        try:
            self.runs.end_orphans()  # runs whose process was killed no longer show 'running'
        except SQLAlchemyError:  # a read-only project: they stay as they are
            log.debug("could not end orphaned runs", exc_info=True)

    @classmethod
    def open(cls, project_dir: Path | str | None = None, db_url: str | None = None) -> Store:
        """Open a project folder (default: the user's default project) or a database URL.

        With `db_url`, model files and caches live in `project_dir` when given, else in the folder
        named by the database's project id, so two databases never share checkpoints or caches.
        """
        if db_url:
            paths = ProjectPaths(Path(project_dir).expanduser()) if project_dir else None
            return cls(db_url, paths)
        paths = ProjectPaths(Path(project_dir).expanduser() if project_dir else default_project_dir())
        if not sqlite_writable(paths.database):  # read-only media or permissions: reading works
            return cls(sqlite_url(paths.database), paths, read_only=True)
        _ensure_folders(paths)
        return cls(sqlite_url(paths.database), paths)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything this thread writes through the repositories in the block is one transaction:
        all of it is kept, or (an exception, a kill) none of it."""
        with self._sessions.transaction():
            yield

    def close(self) -> None:
        self._sessions.dispose()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _ensure_folders(paths: ProjectPaths) -> None:
    try:
        paths.ensure()
    except OSError as exc:
        raise UserError(f"Cannot create the project folder {paths.root}: {exc.strerror}.") from exc
