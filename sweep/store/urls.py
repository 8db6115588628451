"""Storage URLs: which one a command uses, how it is printed, and the file a SQLite one names."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy

from sweep.errors import StorageError

DEFAULT_URL = "sqlite:///sweeps.db"


def resolve_url(url: str | None) -> str:
    """``--storage``, else ``$SWEEP_STORAGE``, else ``sqlite:///sweeps.db``."""
    if url is not None and not url.strip():  # `--storage "$UNSET_VARIABLE"`
        raise StorageError("the storage URL is empty; pass one such as sqlite:///sweeps.db")
    return url or os.environ.get("SWEEP_STORAGE") or DEFAULT_URL


def shown(url: str) -> str:
    """The URL as it may be printed: its password, if any, as ***. One without is printed
    as given (SQLAlchemy's rendering would percent-encode a path's "λ" or "C:\\", and a
    resume command pasted from it would name another file)."""
    if not has_password(url):
        return url
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def has_password(url: str) -> bool:
    try:
        return sqlalchemy.engine.make_url(url).password is not None
    except Exception:
        return False


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The sqlite:/// URL of a file: a "%" or "?" in its path escaped, as a URL's path must
    be (see `sqlite_path`; a "?" would start options)."""
    return "sqlite:///" + os.fspath(path).replace("%", "%25").replace("?", "%3F")


def sqlite_path(url: str) -> Path:
    """The database file of a sqlite:/// URL, as SQLAlchemy opens it: percent-escapes
    decoded ("%41" is "A", "%25" is "%"), so its checks and lock files are that file's."""
    try:
        database = sqlalchemy.engine.make_url(url).database
    except Exception:
        database = None
    return Path(database or url.split(":///", 1)[1])
