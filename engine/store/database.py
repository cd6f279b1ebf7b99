"""Opening a project database: engine creation, SQLite pragmas, Alembic migrations, the project id.

Migrations run in one transaction on every backend: PostgreSQL's DDL is transactional; on SQLite
the migration connection issues its own `BEGIN IMMEDIATE` (SQLAlchemy's transactional-DDL recipe
for pysqlite), so a failed `init` leaves the file as it was. A database that holds tables but is
not an mlic project, or one made by a newer mlic, is refused before anything is written.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import UserError
from engine.files import strict_json_dumps

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PROJECT_ID_KEY = "project_id"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def mask_url(text_: str) -> str:
    """`text_` with the password of every URL in it replaced by '***' (for messages and logs)."""
    return re.sub(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s]*@", r"\1***@", str(text_))


def _enable_sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _read_only_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout=10000")


def create_database_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout on every connection.
    JSON columns are written as strict JSON (`strict_json_dumps`: an unmeasured NaN figure is
    null), alike on SQLite and on PostgreSQL, whose json type refuses NaN."""
    try:
        engine = create_engine(url, future=True, json_serializer=strict_json_dumps)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise UserError(f"Cannot use database URL {mask_url(url)!r}: "
                        f"{mask_url(str(exc))}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _enable_sqlite_pragmas)
    return engine


def sqlite_writable(path: Path) -> bool:
    """Whether this process may write the SQLite file at `path` and its folder (WAL needs both);
    True for a file not made yet."""
    if not path.exists():
        return True
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def read_only_sqlite_engine(path: Path) -> Engine:
    """An engine that only reads the SQLite file at `path` (a project on read-only media or
    without write permission): `mode=ro`, else, when SQLite cannot open a WAL file read-only
    (no -shm file beside it), `immutable=1`. It never writes, not even the journal mode."""
    base = f"sqlite:///file:{quote(str(path))}?uri=true&mode=ro"
    for url in (base, base + "&immutable=1"):
        engine = create_engine(url, future=True)
        event.listen(engine, "connect", _read_only_pragmas)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
            return engine
        except SQLAlchemyError:
            engine.dispose()
            if url != base:
                raise
    raise AssertionError("unreachable")


def check_at_head(engine: Engine) -> None:
    """A read-only project is used as it is: refuse one whose schema is not this mlic's."""
    from alembic.script import ScriptDirectory

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        with engine.connect() as connection:
            _check_ours(connection, config)
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        raise UserError(f"Cannot open the project database "
                        f"{engine.url.render_as_string(hide_password=True)}: "
                        f"{mask_url(str(exc.orig or exc))}") from exc
    if current != head:
        raise UserError("The project is read-only and was made by an older mlic; open it once "
                        "where it can be written, so it is brought up to date.")


def _transactional_sqlite_engine(url: str, wal: bool = False) -> Engine:
    """A SQLite engine whose transactions include DDL: pysqlite's own transaction handling is off
    and each transaction starts with `BEGIN IMMEDIATE` (so two `init`s serialise). WAL is left to
    the project's own connections, so a file refused here keeps every byte."""
    engine = create_engine(url, future=True)

    def connect(dbapi_connection, record) -> None:  # noqa: ANN001
        if wal:
            _enable_sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout=10000")

    event.listen(engine, "connect", connect)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _check_ours(connection: Connection, config: Config) -> None:
    """Refuse a database that is not an mlic project or was made by a newer mlic (no write)."""
    tables = set(inspect(connection).get_table_names())
    if not tables:
        return
    if "alembic_version" not in tables:
        raise UserError("The database is not an mlic project (it has other tables); "
                        "refusing to change it.")
    from alembic.script import ScriptDirectory

    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    current = {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}
    newer = sorted(current - known)
    if newer:
        raise UserError(f"This project was made by a newer version of mlic (schema {newer[0]}); "
                        "update mlic to open it.")


def _ensure_project_id(connection: Connection) -> None:
    from engine.store.schema import Setting

    table = Setting.__table__
    row = connection.execute(table.select().where(table.c.key == PROJECT_ID_KEY)).first()
    if row is None:
        connection.execute(table.insert().values(key=PROJECT_ID_KEY, value=uuid.uuid4().hex))


def project_id(engine: Engine) -> str:
    """The id stored in the database (made by `upgrade_to_head`); names a database project's folder."""
    from engine.store.schema import Setting

    table = Setting.__table__
    with engine.connect() as connection:
        value = connection.execute(table.select().with_only_columns(table.c.value)
                                   .where(table.c.key == PROJECT_ID_KEY)).scalar()
    return str(value)


def head_revision() -> str | None:
    """The newest migration's revision (the one no other names as its `down_revision`), read
    from the migration files: a project already there opens without importing Alembic, a fifth
    of a command's start-up."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        for name, found in (("revision", revisions), ("down_revision", parents)):
            match = re.search(rf"^{name}\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", source, re.M)
            if match:
                found.add(match.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    """Whether the database is already at `head_revision` (read without writing a byte: a
    SQLite file is read through a plain engine, not the project's, which turns on WAL)."""
    sqlite = engine.dialect.name == "sqlite"
    reader = create_engine(engine.url, future=True) if sqlite else engine
    try:
        with reader.connect() as connection:
            if "alembic_version" not in inspect(connection).get_table_names():
                return False
            current = [row[0] for row in
                       connection.execute(text("SELECT version_num FROM alembic_version"))]
    except SQLAlchemyError:
        return False
    finally:
        if sqlite:
            reader.dispose()
    head = head_revision()
    return head is not None and current == [head]


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest migration (creates it on an empty database), in one
    transaction; refuses a foreign or newer database without writing to it. A database already
    at the newest migration is left as it is."""
    if _at_head(engine):
        return
    from alembic import command

    url = engine.url.render_as_string(hide_password=False)
    config = alembic_config(url)
    migrator = _transactional_sqlite_engine(url) if engine.dialect.name == "sqlite" else engine
    try:
        with migrator.begin() as connection:
            _check_ours(connection, config)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            _ensure_project_id(connection)
    except SQLAlchemyError as exc:
        raise UserError(f"Cannot open the project database "
                        f"{engine.url.render_as_string(hide_password=True)}: "
                        f"{mask_url(str(exc.orig or exc))}") from exc
    finally:
        if migrator is not engine:
            migrator.dispose()
    log.debug("schema at head; tables: %s", inspect(engine).get_table_names())


class Sessions:
    """The repositories' session factory (`sessions()`, `sessions.begin()`). Inside
    `transaction()` every session of this thread joins one database transaction (each repository
    call becomes a savepoint), so a multi-step write such as an import commits whole or not at all,
    also when the process is killed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._default = sessionmaker(engine, expire_on_commit=False)
        self._local = threading.local()
        self._joined_engine: Engine | None = None
        self._lock = threading.Lock()

    def _current(self) -> sessionmaker[Session]:
        return getattr(self._local, "factory", None) or self._default

    def __call__(self, **kwargs: object) -> Session:
        return self._current()(**kwargs)

    def begin(self):  # noqa: ANN201 - sessionmaker.begin's context manager
        return self._current().begin()

    def _transaction_engine(self) -> Engine:
        if self.engine.dialect.name != "sqlite":
            return self.engine
        with self._lock:
            if self._joined_engine is None:
                url = self.engine.url.render_as_string(hide_password=False)
                self._joined_engine = _transactional_sqlite_engine(url, wal=True)
            return self._joined_engine

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction for everything this thread writes in the block (nests: an inner
        block joins the outer one)."""
        if getattr(self._local, "factory", None) is not None:
            yield
            return
        with self._transaction_engine().connect() as connection, connection.begin():
            self._local.factory = sessionmaker(bind=connection, expire_on_commit=False,
                                               join_transaction_mode="create_savepoint")
            try:
                yield
            finally:
                self._local.factory = None

    def write(self, work: Callable[[Session], T], attempts: int = 6) -> T:
        """`work(session)` in one write transaction; when another writer held or changed the
        same rows (`is_write_conflict`), it is rolled back and run again, up to `attempts` times,
        a little later each time. Inside `transaction()` it runs once (the outer block decides)."""
        for attempt in range(attempts):
            try:
                with self.begin() as session:
                    return work(session)
            except (OperationalError, IntegrityError) as exc:
                joined = getattr(self._local, "factory", None) is not None
                if joined or attempt == attempts - 1 or not is_write_conflict(exc):
                    raise
                log.debug("write conflict (%s); running it again", exc.orig)
                time.sleep(random.uniform(0.02, 0.1) * 2 ** attempt)
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        if self._joined_engine is not None:
            self._joined_engine.dispose()


def insert_missing(session: Session, table: Table, rows: Sequence[dict[str, Any]],
                   keys: Sequence[str]) -> None:
    """Insert `rows` into `table`, leaving out those whose unique `keys` another writer (another
    process) inserted first: `INSERT ... ON CONFLICT DO NOTHING` on SQLite and PostgreSQL, so
    two processes creating the same class or scanning the same new folder never collide."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # other backends: a plain insert (a collision stays an IntegrityError)
        session.execute(table.insert(), list(rows))
        return
    session.execute(insert(table).on_conflict_do_nothing(index_elements=list(keys)), list(rows))


_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def bulk_insert(connection: Any, table: Any, columns: Sequence[str],
                rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert many plain rows into `table` (a Table) in one statement per chunk: `COPY` on
    PostgreSQL (psycopg), else the driver's own executemany; hundreds of thousands of suggestions
    or imported tags, where building one parameter dict per row in SQLAlchemy took most of the
    time. Values go through each column type's bind processor, as SQLAlchemy would send them;
    drivers with another parameter style get a Core insert."""
    if not rows:
        return
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        _copy_rows(connection, table, columns, rows)
        return
    mark = _PLACEHOLDER.get(connection.dialect.paramstyle)
    if mark is None:
        from sqlalchemy import insert as core_insert

        connection.execute(core_insert(table), [dict(zip(columns, row)) for row in rows])
        return
    processors = [(k, table.c[name].type.bind_processor(connection.dialect))
                  for k, name in enumerate(columns)]
    processors = [(k, p) for k, p in processors if p is not None]
    if processors:
        rows = [tuple(_processed(row, processors)) for row in rows]
    names = ", ".join(columns)
    marks = ", ".join([mark] * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})",
                               list(rows))


def _copy_rows(connection: Any, table: Any, columns: Sequence[str],
               rows: Sequence[tuple[Any, ...]]) -> None:
    """PostgreSQL's `COPY ... FROM STDIN` inside the connection's open transaction; the driver's
    errors become SQLAlchemy's (IntegrityError, OperationalError, ...) as for any statement."""
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    dbapi_error = connection.dialect.loaded_dbapi.Error
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except dbapi_error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi_error,
                                  dialect=connection.dialect) from exc
    finally:
        cursor.close()


def lock_for_writing(session: Session) -> None:
    """On SQLite, take the database's write lock now (`BEGIN IMMEDIATE`, waiting up to the busy
    timeout), so that what this transaction reads before it writes is not changed by another
    process meanwhile; a no-op inside a transaction already begun, and on other databases (which
    lock rows: `SELECT ... FOR UPDATE`)."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    if not raw.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# Another writer got there first: SQLite's lock outlasted the busy timeout, PostgreSQL found a
# deadlock, a serialisation failure, or the same new row inserted by another transaction.
_CONFLICT_WORDS = ("database is locked", "database is busy", "deadlock detected",
                   "could not serialize", "lock timeout", "unique constraint failed",
                   "duplicate key value")


def is_write_conflict(exc: BaseException) -> bool:
    """Whether `exc` says another writer held or changed the same data (worth running again)."""
    if not isinstance(exc, (OperationalError, IntegrityError)):
        return False
    return any(words in str(exc.orig or exc).lower() for words in _CONFLICT_WORDS)


def _processed(row: tuple[Any, ...], processors: list[tuple[int, Any]]) -> list[Any]:
    values = list(row)
    for k, process in processors:
        values[k] = process(values[k])
    return values


def chunked(ids: list[int], size: int = 900) -> Iterable[list[int]]:
    """Split id lists so IN clauses stay under SQLite's bound-variable limit."""
    for start in range(0, len(ids), size):
        yield ids[start:start + size]
