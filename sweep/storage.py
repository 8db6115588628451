"""Open a study storage from a URL, applying the project's storage rules (DESIGN.md).

SQLite: every transaction starts with BEGIN IMMEDIATE (SQLite ignores SELECT ... FOR
UPDATE, so without it parallel workers pop the same queued trial twice), a busy timeout,
heartbeat on and stale trials retried with the same parameters. PostgreSQL: heartbeat on
and stale trials retried; its row locks already make popping exact.
"""

from __future__ import annotations

import copy
import fcntl
import os
import sqlite3
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from sweep.errors import StorageError

DEFAULT_URL = "sqlite:///sweeps.db"
SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")
HEARTBEAT_SECONDS = int(os.environ.get("SWEEP_HEARTBEAT_SECONDS", "10"))
GRACE_SECONDS = 3 * HEARTBEAT_SECONDS
MAX_RETRY = 3

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeats and their retry callback are marked experimental; they are the storage rules here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def resolve_url(url: str | None) -> str:
    """``--storage``, else ``$SWEEP_STORAGE``, else ``sqlite:///sweeps.db``."""
    return url or os.environ.get("SWEEP_STORAGE") or DEFAULT_URL


ATTEMPT_ATTRS = ("worker", "fail_reason")  # belong to one attempt, never to its retry


def retry_callback() -> Callable[[optuna.Study, FrozenTrial], None]:
    """Queue a failed trial again with the same parameters, as a clean attempt.

    Optuna's callback copies every user attribute; a copy that still named the dead
    worker would look dead itself to `sweep resume` between being popped and starting.
    """
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        clean = copy.deepcopy(trial)
        clean.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ATTEMPT_ATTRS}
        retry(study, clean)

    return callback


def open_storage(
    url: str | None = None, *, create: bool = True, read_only: bool = False
) -> RDBStorage:
    """The storage at ``url`` with the project's rules applied.

    ``create=False`` (workers) and ``read_only`` (inspection commands) refuse to create a
    new SQLite file, so a typo in a path gives an error instead of an empty database.
    Readers keep SQLite's deferred transactions: they take no write lock, so they never
    hold up a live sweep's workers.
    """
    url = validate_url(url, create=create and not read_only)
    if url.startswith("sqlite"):
        return _open_sqlite(url, create and not read_only, read_only)
    return _open_postgres(url, create and not read_only)


def validate_url(url: str | None, *, create: bool = True) -> str:
    """Check a storage URL without touching the database; returns the URL to open."""
    url = resolve_url(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise StorageError(
            f"storage URL {url!r} has an unknown scheme; use sqlite:///PATH.db or "
            "postgresql+psycopg://USER:PASSWORD@HOST/DB"
        )
    if scheme == "postgresql":
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if scheme == "sqlite":
        path = Path(url.split(":///", 1)[1]) if ":///" in url else None
        if path is None or str(path) in ("", ":memory:"):
            raise StorageError(f"storage URL {url!r} names no file; use sqlite:///PATH.db")
        if path.exists():
            _check_sqlite_file(path)
            if create and not os.access(path, os.W_OK):
                raise StorageError(f"{path} is not writable; check its permissions")
        elif not create:
            raise StorageError(
                f"no study database at {path}; run `sweep run STUDY_FILE` first or pass --storage"
            )
        elif not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise StorageError(
                f"cannot create the database {path}: the folder {path.parent} "
                "does not exist or is not writable; pass another --storage"
            )
    return url


def _rdb(url: str, engine_kwargs: dict, create: bool = True, fresh: bool = False) -> RDBStorage:
    """``fresh``: the database file is created now, so its schema is this Optuna's own."""
    if not create:
        _check_schema(url, engine_kwargs)
    return RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        # Creating the tables and checking their schema version (alembic loads ~50 migration
        # scripts) costs ~0.3 s: the orchestrator does it once; workers and readers open a
        # storage it created and checked.
        skip_table_creation=not create,
        skip_compatibility_check=not create or fresh,
        heartbeat_interval=HEARTBEAT_SECONDS,
        grace_period=GRACE_SECONDS,
        heartbeat_stale_trial_callback=retry_callback(),
    )


def _check_schema(url: str, engine_kwargs: dict) -> None:
    """Refuse a storage whose schema is missing or still being created.

    Opening one writes Optuna's version stamp, which would race the orchestrator that is
    creating the tables (a unique-constraint error on its side).
    """
    import sqlalchemy

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


def _open_sqlite(url: str, create: bool, read_only: bool) -> RDBStorage:
    path = url.split(":///", 1)[1]
    fresh = create and not Path(path).exists()
    try:
        storage = _rdb(url, {"connect_args": {"timeout": 60}}, create, fresh)
    except Exception as exc:  # SQLAlchemy/sqlite errors: a readable line, not a traceback
        raise StorageError(
            f"{path} is not a study database ({_first_line(exc)}); pass another --storage"
        ) from None
    if not read_only:
        _begin_immediate(storage.engine)
    return storage


def _check_sqlite_file(path: Path) -> None:
    if path.is_dir():
        raise StorageError(f"{path} is a folder, not a SQLite database; pass another --storage")
    try:
        with open(path, "rb") as f:
            header = f.read(16)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from None
    if header and header != b"SQLite format 3\x00":
        raise StorageError(f"{path} is not a SQLite database; pass another --storage")
    if not os.access(path, os.R_OK):
        raise StorageError(f"{path} is not readable; check its permissions")


def _begin_immediate(engine) -> None:
    """SQLAlchemy's documented pysqlite recipe: take the write lock when a transaction begins."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners existed would skip them


def _open_postgres(url: str, create: bool) -> RDBStorage:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StorageError(
            "PostgreSQL needs the psycopg driver: pip install 'lambda-sweep[postgres]'"
        ) from None
    try:
        return _rdb(url, {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}, create)
    except Exception as exc:
        raise StorageError(f"cannot reach the PostgreSQL storage: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def count_states(storage, study_id: int) -> dict[str, int]:
    """Trials per state, counted by the database (loading every trial would grow with the
    study and run before each trial of each worker)."""
    from sqlalchemy import text

    rdb = getattr(storage, "_backend", storage)  # optuna wraps RDBStorage in a cache layer
    with rdb.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT state, COUNT(*) FROM trials WHERE study_id = :id GROUP BY state"),
            {"id": study_id},
        ).all()
    return {str(state).rsplit(".", 1)[-1]: int(n) for state, n in rows}


class StudyLock:
    """Makes a worker's "check the counts, then pop a queued trial" one atomic step.

    Without it two workers can both see one trial missing and both start one (an
    overshoot), or find the queue empty and sample an unplanned value. SQLite: an flock on
    a file beside the database (workers of one SQLite file share a machine). PostgreSQL: a
    session advisory lock, which works across machines.
    """

    def __init__(self, storage, url: str, study_name: str):
        self._held = False
        self._file = None
        self._conn = None
        if url.startswith("sqlite"):
            self._file = open(url.split(":///", 1)[1] + ".lock", "a+b")  # noqa: SIM115
        else:
            from sqlalchemy import text

            rdb = getattr(storage, "_backend", storage)
            self._conn = rdb.engine.connect()
            self._key = zlib.crc32(f"lambda-sweep:{study_name}".encode())
            self._text = text

    def acquire(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_EX)
        else:
            self._conn.execute(self._text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
            self._conn.commit()
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        else:
            self._conn.execute(self._text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._conn.commit()

    def close(self) -> None:
        self.release()
        if self._file is not None:
            self._file.close()
        if self._conn is not None:
            self._conn.close()
