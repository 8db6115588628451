"""The one exception family of the sweep layer, and the one place that decides what any
exception means for the user: `explain` gives the `error: ...` line and the exit code."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator


class SweepError(Exception):
    """An error with a message that says what is wrong and what to do. Exit code 2."""

    exit_code = 2


class StudyFileError(SweepError):
    """A study file is missing, not TOML, or has an unknown key, a wrong type or a bad value."""


class StorageError(SweepError):
    """The storage URL is unusable: unknown scheme, unreachable server, not a database."""


class NotWritable(StorageError):
    """The study database (or its folder) cannot be written by a command that writes."""


class NoDatabase(StorageError):
    """No study database at the URL, where one must be (a worker's or a fine stage's)."""


class StudyNotFound(SweepError):
    """No study of that name in the storage."""


class RunFailed(SweepError):
    """A run or check finished but failed (exit code 1)."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (exit code 130) or SIGTERM (143) stopped the command; its running trials
    were marked failed and queued again (sweep/system/signals.py). A KeyboardInterrupt, not
    a SweepError: a script's ``except Exception`` around ``sweep.run`` does not swallow
    the user's Ctrl-C."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


def message_of(exc: BaseException) -> str:
    """str(exc), or what can be said when a user's exception cannot be turned into text
    (its __str__ raised: the worker crashed on it, leaving its trial RUNNING)."""
    try:
        return str(exc)
    except Exception as broken:
        return f"(its message could not be read: {type(broken).__name__})"


def disk_full(exc: BaseException | None) -> bool:
    """Whether an exception means a disk is full (SQLite: "database or disk is full";
    PostgreSQL: SQLSTATE 53100; numpy's np.save): no retry helps, the user must free space."""
    seen = 0
    while exc is not None and seen < 10:
        text = message_of(exc)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "disk is full" in text or "No space left on device" in text:
            return True
        if "Not enough free space to write" in text:  # numpy's np.save, errno None
            return True
        if getattr(getattr(exc, "orig", None), "sqlstate", None) == "53100":
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


NO_SPACE = (
    "no space left on the device that holds the study database; free some space, then "
    "rerun the command (finished trials are kept)"
)


def explain(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code for an exception a command may end with, or
    None for a bug (shown as a traceback). Exit codes: 1 a run or check failed, 2 bad
    input, 130 Ctrl-C, 143 SIGTERM (README, "Commands")."""
    from core.errors import ConfigError, DataError, DivergedError  # the core's, translated here
    from sweep.system import signals

    if isinstance(exc, SweepError | Interrupted):
        return str(exc), exc.exit_code
    if isinstance(exc, DivergedError):
        return str(exc), 1
    if isinstance(exc, ConfigError | DataError):
        return str(exc), 2
    if isinstance(exc, KeyboardInterrupt):
        return signals.reason(), signals.exit_code()
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" writing {exc.filename}" if exc.filename else ""
        return (
            f"no space left on the device{where}; free some space and rerun "
            "(nothing was left half-written)",
            2,
        )
    if disk_full(exc):  # the database's own "disk is full", outside a retried call
        return NO_SPACE, 2
    return None


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """The core's errors (missing or bad data, a bad hyperparameter, a diverged run) raised
    as SweepError with the same message and exit code, the original as its __cause__: the
    Python API's callers catch one family (README, "Python API")."""
    from core.errors import CoreError
    from sweep.system import signals

    try:
        yield
    except signals.Stopped:  # a stop no trial saw (those end in an Interrupted that says more)
        message = f"{signals.reason()}; no trial of this call was running"
        raise Interrupted(message, signals.exit_code()) from None
    except CoreError as exc:
        message, code = explain(exc) or (str(exc), 2)
        error = SweepError(message)
        error.exit_code = code
        raise error from exc
