"""New SQLite study files, copied from an empty database that Optuna made.

Creating a database costs Optuna ~0.3 s of a new study's start-up: it creates its tables,
then stamps their schema version with alembic, which reads its ~30 migration scripts to find
the newest. Every empty database of one Optuna version is the same, so the first one is
made by Optuna itself, kept in the user's cache folder under that version's name, and
copied for each new study file; the copy is opened as a worker opens a database Optuna made
(no creation, no version check). Where the cache folder cannot be written, Optuna creates
the file as before. Pinned by tests/store/test_template.py: a copy holds what Optuna creates.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import optuna
from optuna.storages import RDBStorage

from sweep.store.urls import sqlite_url
from sweep.system.portable import user_cache_dir

SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def template_path() -> Path:
    return user_cache_dir() / f"optuna-{optuna.__version__}-empty.db"


def copy_empty(path: Path) -> bool:
    """Put an empty study database at ``path`` (absent or empty) from the template, making
    the template first if needed. Returns False, leaving ``path`` as it was, when that
    cannot be done; the caller then lets Optuna create the file. The caller holds the
    schema lock, so no other process creates ``path`` meanwhile."""
    try:
        template = template_path()
        if not _whole(template):  # none yet, or not a whole database: (re)made
            _make(template)
    except Exception:  # an unwritable or full cache folder, or whatever Optuna raised there
        return False
    staged = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        shutil.copyfile(template, staged)
        os.replace(staged, path)  # whole or not at all, for a reader opening it meanwhile
    except OSError:
        staged.unlink(missing_ok=True)
        return False
    return True


def _whole(template: Path) -> bool:
    """Whether ``template`` is a whole SQLite file: its header, and as many bytes as the
    header's page size times its page count (a copy cut short by a full disk is not)."""
    try:
        with open(template, "rb") as f:
            head = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if len(head) < 100 or head[: len(SQLITE_HEADER)] != SQLITE_HEADER:
        return False
    page = int.from_bytes(head[16:18], "big")
    pages = int.from_bytes(head[28:32], "big")
    return pages > 0 and size == (65536 if page == 1 else page) * pages


def _make(template: Path) -> None:
    template.parent.mkdir(parents=True, exist_ok=True)
    staged = template.with_name(f".{template.name}.{os.getpid()}.new")
    try:
        RDBStorage(sqlite_url(staged)).engine.dispose()
        os.replace(staged, template)  # two processes making it at once: either one is whole
    finally:
        staged.unlink(missing_ok=True)
