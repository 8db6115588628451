"""Open a study storage from a URL, applying the project's storage rules (README, Development).

SQLite: every transaction starts with BEGIN IMMEDIATE (SQLite ignores SELECT ... FOR
UPDATE, so without it parallel workers pop the same queued trial twice), a busy timeout and
heartbeats on. PostgreSQL: heartbeats on; its row locks already make popping exact. On
both, creating the schema happens under a lock, so any number of processes may open a new
storage at the same moment (unlocked, they fail with "table already exists"). Journal files
(``journal:///PATH``, for a shared file system without a server): sweep/store/journal.py.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial

from sweep.errors import NO_SPACE, NoDatabase, NotWritable, StorageError, disk_full
from sweep.store import connections, journal
from sweep.store.outage import first_line
from sweep.store.template import SQLITE_HEADER, copy_empty
from sweep.store.urls import resolve_url, shown, sqlite_path
from sweep.system import signals
from sweep.system.portable import FileLock

SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2", journal.SCHEME)
HEARTBEAT_SECONDS = int(os.environ.get("SWEEP_HEARTBEAT_SECONDS", "10"))
GRACE_SECONDS = 3 * HEARTBEAT_SECONDS
LOCK_WAIT_SECONDS = 60  # SQLite: how long a statement waits for another process's lock

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


def quiet_optuna() -> None:
    """Optuna's per-trial INFO lines and tracebacks are noise here: the CLI reports trials
    itself. Called by `main()` and by each worker process, never at import time."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # Heartbeats and fail_stale_trials are marked experimental; they are the storage rules.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # A Ctrl-C while a connection returns to SQLAlchemy's pool logs a traceback there.
    logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)


def lock_path(url: str) -> Path:
    """The lock file beside a SQLite database (schema and study locks)."""
    return Path(str(sqlite_path(url)) + ".lock")


def open_storage(
    url: str | None = None,
    *,
    create: bool = True,
    read_only: bool = False,
    on_stale: StaleCallback | None = None,
) -> BaseStorage:
    """The storage at ``url`` with the project's rules applied.

    ``create=False`` (workers) and ``read_only`` (inspection commands) refuse to create a
    new SQLite file, so a typo in a path gives an error instead of an empty database.
    Readers keep SQLite's deferred transactions: they take no write lock, so they never
    hold up a live sweep's workers. ``on_stale`` is called for each trial whose heartbeat
    went stale, after Optuna marked it FAIL (the sweep queues its values again); a journal
    has no heartbeat (sweep/store/journal.py: recovery judges its trials).
    """
    create = create and not read_only
    url = validate_url(url, create=create, write=not read_only)
    if journal.is_journal(url):
        return journal.open_journal(url, read_only=read_only)
    sqlite = url.startswith("sqlite")
    if sqlite:
        engine_kwargs: dict = {"connect_args": {"timeout": LOCK_WAIT_SECONDS}}
    else:
        _need_psycopg()
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    new_file = sqlite and create and not sqlite_path(url).exists()
    try:
        if create:
            # Deferred: a Ctrl-C half-way would leave tables without Optuna's version stamp.
            with schema_lock(url, engine_kwargs), signals.deferred():
                copied = sqlite and _blank(sqlite_path(url)) and copy_empty(sqlite_path(url))
                storage = _rdb(url, engine_kwargs, create=not copied, on_stale=on_stale)
        else:
            _check_schema(url, engine_kwargs)
            storage = _rdb(url, engine_kwargs, create=False, on_stale=on_stale)
    except StorageError:
        raise
    except Exception as exc:  # SQLAlchemy/driver errors: a readable line, not a traceback
        if new_file and sqlite_path(url).exists() and not sqlite_path(url).stat().st_size:
            sqlite_path(url).unlink()  # this call made it, and nothing is in it
        if disk_full(exc):
            raise StorageError(NO_SPACE) from None
        if sqlite and first_line(exc) == "database is locked":
            raise StorageError(
                f"{sqlite_path(url)} is locked: another program holds a lock on it (waited "
                f"up to {LOCK_WAIT_SECONDS} s); close that program (a database browser, a "
                "script in the middle of a transaction) and run the command again"
            ) from None
        if sqlite:
            raise StorageError(
                f"{sqlite_path(url)} is not a usable study database ({first_line(exc)}); "
                "pass another --storage"
            ) from None
        if connections.too_many(exc):
            raise StorageError(connections.message(first_line(exc))) from None
        raise StorageError(f"cannot reach the PostgreSQL storage: {first_line(exc)}") from None
    if sqlite and not read_only:
        _begin_immediate(storage.engine)
    return storage


def preload() -> None:
    """Import what opening an RDB storage imports on first use: Optuna loads alembic, its
    schema-migration tool, to read the schema's version stamp (~0.3 s, even with the
    compatibility check skipped). Worker processes do it while they wait for their job."""
    import alembic.migration  # noqa: F401


def validate_url(url: str | None, *, create: bool = True, write: bool | None = None) -> str:
    """Check a storage URL without writing anything (an existing SQLite file's tables are
    read: another program's database is refused); returns the URL to open. ``create``: a
    missing file may be made; ``write`` (default: ``create``): the caller will write, so
    the file and its folder must be writable (a worker's or a fine stage's open)."""
    write = create if write is None else write
    url = resolve_url(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise StorageError(
            f"storage URL {shown(url)!r} has an unknown scheme; use sqlite:///PATH.db, "
            "postgresql+psycopg://USER:PASSWORD@HOST/DB or journal:///PATH.journal"
        )
    if scheme == journal.SCHEME:
        return journal.validate(url, create=create, write=write)
    if scheme == "postgresql":
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if scheme == "sqlite":
        rest = url.split(":///", 1)[1] if ":///" in url else ""
        if "?" in rest:
            raise StorageError(
                f"storage URL {url!r} has options ({rest.split('?', 1)[1]}); lambda-sweep "
                "sets SQLite's options itself: use sqlite:///PATH.db"
            )
        if rest in ("", ":memory:") or rest.endswith("/"):
            raise StorageError(f"storage URL {url!r} names no file; use sqlite:///PATH.db")
        path = sqlite_path(url)
        if path.exists():
            _check_sqlite_file(path)
        elif not create:
            raise NoDatabase(
                f"no study database at {path}; run `sweep run STUDY_FILE` first or pass --storage"
            )
        # SQLite writes a journal file beside the database: the folder must be writable.
        if write and not (path.parent.is_dir() and os.access(path.parent, os.W_OK)):
            raise NotWritable(
                f"cannot write the database {path}: the folder {path.parent} does not exist "
                "or is not writable; pass another --storage"
            )
        if write and path.exists() and not os.access(path, os.W_OK):
            raise NotWritable(f"{path} is not writable; check its permissions")
    return url


def _rdb(
    url: str, engine_kwargs: dict, *, create: bool, on_stale: StaleCallback | None
) -> RDBStorage:
    return RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        # Creating the tables and checking their schema version (alembic loads its ~30
        # migration scripts) costs ~0.3 s: the orchestrator does it once (a new SQLite file
        # not even that: sweep/store/template.py); workers and readers open a storage it
        # created and checked.
        skip_table_creation=not create,
        skip_compatibility_check=not create,
        heartbeat_interval=HEARTBEAT_SECONDS,
        grace_period=GRACE_SECONDS,
        heartbeat_stale_trial_callback=on_stale,
    )


@contextlib.contextmanager
def schema_lock(url: str, engine_kwargs: dict) -> Iterator[None]:
    """Serialise schema creation between processes (SQLite: a file lock beside the file;
    PostgreSQL: an advisory lock, which needs no table)."""
    if url.startswith("sqlite"):
        with FileLock(lock_path(url)):
            yield
        return
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    key = _lock_key("schema")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({key})")
            conn.commit()
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
                conn.commit()
    finally:
        engine.dispose()


def _check_schema(url: str, engine_kwargs: dict) -> None:
    """Refuse a storage whose schema is missing or still being created.

    Opening one writes Optuna's version stamp, which would race the orchestrator that is
    creating the tables (a unique-constraint error on its side).
    """
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        with engine.connect() as conn:
            if not sqlalchemy.inspect(conn).has_table("alembic_version"):
                raise StorageError(
                    "the storage has no studies yet (or is being created); "
                    "run `sweep run STUDY_FILE` first"
                )
            stamped = conn.exec_driver_sql("SELECT COUNT(*) FROM alembic_version").scalar()
        if not stamped:
            raise StorageError("the storage is still being created; try again in a moment")
    finally:
        engine.dispose()


def _blank(path: Path) -> bool:
    """No database yet: no file, or an empty one (SQLite's own start of a new file)."""
    return not path.exists() or path.stat().st_size == 0


def _check_sqlite_file(path: Path) -> None:
    if path.is_dir():
        raise StorageError(f"{path} is a folder, not a SQLite database; pass another --storage")
    try:
        with open(path, "rb") as f:
            header = f.read(16)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from None
    if header.startswith(b'{"op_code"'):
        raise StorageError(f"{path} is a journal file: use journal:///{path}")
    if header and header != SQLITE_HEADER:
        raise StorageError(f"{path} is not a SQLite database; pass another --storage")
    tables = _sqlite_tables(path) if header else set()
    if tables and not tables & {"studies", "alembic_version"}:  # Optuna's
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StorageError(
            f"{path} is another program's SQLite database (tables: {listed}), not a study "
            "database; pass another --storage"
        )


def _sqlite_tables(path: Path) -> set[str]:
    """The tables of a SQLite file, read-only (empty if it cannot be read now: the
    storage's own opening says why)."""
    try:
        with contextlib.closing(
            sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=1)
        ) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error:
        return set()
    return {name for (name,) in rows}


def _begin_immediate(engine: sqlalchemy.Engine) -> None:
    """SQLAlchemy's documented pysqlite recipe: take the write lock when a transaction begins."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners existed would skip them


def _need_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StorageError(
            "PostgreSQL needs the psycopg driver: pip install 'lambda-sweep[postgres]'"
        ) from None


def _lock_key(name: str) -> int:
    return zlib.crc32(f"lambda-sweep:{name}".encode())


class StudyLock:
    """A lock around "look at a study's counts, then change its queue".

    Workers hold it from checking the counts until their trial is popped; the orchestrator
    holds it while it creates, checks or tops up a study. Without it two processes can both
    see one trial missing and both add or start one. SQLite: a file lock beside the
    database (sweep/system/portable.py; workers of one SQLite file share a machine). PostgreSQL: a
    session advisory lock per study, which works across machines. Journal: a lock file per
    study beside the journal that works across machines on NFS (journal.NfsLock).
    """

    def __init__(self, storage: BaseStorage, url: str, study_name: str):
        self._file: FileLock | journal.NfsLock | None = None
        self._conn = None
        if url.startswith("sqlite"):
            self._file = FileLock(lock_path(url))
        elif journal.is_journal(url):
            self._file = journal.NfsLock(journal.study_lock_path(url, study_name))
        else:
            assert isinstance(storage, RDBStorage)
            self._engine = storage.engine
            self._key = _lock_key(f"study:{study_name}")

    def _advisory(self, call: str) -> object:
        """Run pg_advisory_(un)lock on the lock's own connection, opened anew after a
        lost one (a server restart also releases every advisory lock)."""
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            result = self._conn.exec_driver_sql(f"SELECT {call}({self._key})").scalar()
            self._conn.commit()
            return result
        except Exception:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            raise

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; with ``wait=False`` only if nobody holds it. Whether it is held."""
        if self._file is not None:
            try:
                return self._file.acquire(wait)
            except OSError as exc:  # a read-only folder or disk; a full disk is told as such
                if exc.errno == errno.ENOSPC:
                    raise
                raise StorageError(
                    f"cannot write the study lock {exc.filename or 'beside the storage'} "
                    f"({exc.strerror}); this command changes the study, so its folder must "
                    "be writable"
                ) from None
        if wait:
            self._advisory("pg_advisory_lock")
            return True
        return bool(self._advisory("pg_try_advisory_lock"))

    def release(self) -> None:
        if self._file is not None:
            self._file.release()
        elif self._conn is not None:  # gone with the server: nothing left to release
            with contextlib.suppress(Exception):
                self._advisory("pg_advisory_unlock")

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._conn is not None:
            self._conn.close()
