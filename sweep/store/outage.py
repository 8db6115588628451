"""When the database is away or full: which errors mean that, and retrying through an outage.

A server restart or a dropped connection is waited out (storage calls are retried with
back-off for OUTAGE_SECONDS); a full disk is not something waiting helps with, so it is
one line at once (exit 2).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy

from sweep.errors import NO_SPACE, StorageError, disk_full
from sweep.store import connections

T = TypeVar("T")

OUTAGE_SECONDS = float(os.environ.get("SWEEP_OUTAGE_SECONDS", "120"))  # then give up


def unreachable(exc: BaseException | None) -> bool:
    """Whether an exception means the database cannot be reached right now (a server
    restart, a dropped connection), as opposed to a bug, bad data or a full disk."""
    if disk_full(exc):
        return False
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if getattr(exc, "connection_invalidated", False):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def retrying(call: Callable[[], T], *, patience: float = OUTAGE_SECONDS) -> T:
    """``call()``, retried with back-off (0.2 s doubling to 5 s) while the database is
    unreachable; after ``patience`` seconds a one-line StorageError."""
    delay, deadline = 0.2, None
    while True:
        try:
            return call()
        except Exception as exc:
            if disk_full(exc):
                raise StorageError(NO_SPACE) from None
            if not unreachable(exc):
                raise
            deadline = deadline or time.monotonic() + patience
            if time.monotonic() > deadline:
                if connections.too_many(exc):
                    raise StorageError(connections.message(first_line(exc))) from None
                raise StorageError(
                    f"lost the storage for {patience:.0f} s ({first_line(exc)}); "
                    "rerun the command when the database is back"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
