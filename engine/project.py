"""Where a project's files live: the SQLite database, model checkpoints and caches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_data_dir

APP_NAME = "mlic"


def default_project_dir() -> Path:
    """The project used when the user names none: `<user data dir>/mlic/default`."""
    return Path(user_data_dir(APP_NAME, appauthor=False)) / "default"


def database_project_dir(project_id: str) -> Path:
    """The folder of a database-backed project opened without a folder: named by the project id
    the database stores, so each database has its own models and caches."""
    return Path(user_data_dir(APP_NAME, appauthor=False)) / "databases" / project_id


@dataclass(frozen=True)
class ProjectPaths:
    """Layout of a project folder."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / "project.sqlite"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def proposals_cache(self) -> Path:
        return self.cache_dir / "proposals"

    @property
    def thumbnails_cache(self) -> Path:
        return self.cache_dir / "thumbnails"

    def ensure(self) -> None:
        """Create the folder tree (idempotent)."""
        for folder in (self.root, self.models_dir, self.proposals_cache, self.thumbnails_cache):
            folder.mkdir(parents=True, exist_ok=True)
