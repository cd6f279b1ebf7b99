"""A throwaway PostgreSQL server for the tests that need a real one.

`start_server(folder)` runs `initdb` and `pg_ctl start` on a fresh cluster in `folder`, listening on
a unix socket in that folder only (no TCP), and returns a `PostgresServer`; `new_database()` creates
an empty database and returns its SQLAlchemy URL (psycopg 3). Run as root, the cluster belongs to the
`postgres` user (PostgreSQL refuses to run as root). `find_binaries()` is None when the server
binaries or the psycopg driver are missing, and the fixtures then skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path


def find_binaries() -> Path | None:
    """The folder of `initdb` and `pg_ctl`, or None (also None without psycopg)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _run_as(user: str | None, argv: list[str]) -> None:
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


@dataclass
class PostgresServer:
    bin_dir: Path
    data: Path
    socket_dir: Path
    user: str | None

    def url(self, database: str) -> str:
        owner = self.user or pwd.getpwuid(os.getuid()).pw_name
        return f"postgresql+psycopg://{owner}@/{database}?host={self.socket_dir}"

    def new_database(self) -> str:
        import psycopg

        name = "t" + uuid.uuid4().hex[:12]
        with psycopg.connect(host=str(self.socket_dir), dbname="postgres",
                             user=self.user or pwd.getpwuid(os.getuid()).pw_name,
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        _run_as(self.user, [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                            "-w", "stop"])


def start_server(folder: Path) -> PostgresServer:
    bin_dir = find_binaries()
    assert bin_dir is not None
    user = "postgres" if os.geteuid() == 0 else None
    folder.mkdir(parents=True, exist_ok=True)
    data, sockets = folder / "data", folder / "sock"
    sockets.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (folder, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(folder.parent, 0o755)
    _run_as(user, [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-E", "UTF8",
                   "--no-sync", "-U", user or pwd.getpwuid(os.getuid()).pw_name])
    options = f"-k {sockets} -c listen_addresses='' -c fsync=off -c max_connections=40"
    _run_as(user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                   str(folder / "log"), "-w", "start"])
    return PostgresServer(bin_dir, data, sockets, user)
