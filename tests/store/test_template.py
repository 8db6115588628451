"""New SQLite study files are copies of an empty database Optuna made (sweep/store/template.py)."""

import sqlite3

import optuna
import platformdirs
import pytest
from optuna.storages import RDBStorage

from sweep.store import template
from sweep.store.storage import open_storage


def schema(path) -> tuple[list, list]:
    """The file's tables and indexes (as SQLite stores their SQL) and its stamped versions."""
    with sqlite3.connect(path) as db:
        objects = sorted(db.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
        stamps = db.execute("SELECT version_num FROM alembic_version").fetchall()
        stamps += db.execute("SELECT schema_version, library_version FROM version_info").fetchall()
    return objects, stamps


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_new_study_file_holds_what_optuna_creates(tmp_path, cache):
    RDBStorage(f"sqlite:///{tmp_path}/optuna.db").engine.dispose()  # Optuna's own creation
    for name in ("first.db", "second.db"):  # the template made, then copied as it is
        open_storage(f"sqlite:///{tmp_path}/{name}").engine.dispose()
        assert schema(tmp_path / name) == schema(tmp_path / "optuna.db")
    assert template.template_path().is_relative_to(cache)
    assert schema(template.template_path()) == schema(tmp_path / "optuna.db")
    # Optuna opens a copy with its schema check, and a study in it works.
    study = optuna.create_study(storage=RDBStorage(f"sqlite:///{tmp_path}/second.db"))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 2


def test_the_copy_never_replaces_a_database(tmp_path, cache):
    url = f"sqlite:///{tmp_path}/s.db"
    optuna.create_study(study_name="kept", storage=open_storage(url))
    optuna.create_study(study_name="other", storage=open_storage(url))  # opened again: kept
    names = {s.study_name for s in open_storage(url, read_only=True).get_all_studies()}
    assert names == {"kept", "other"}


def test_without_a_writable_cache_folder_optuna_creates_the_file(tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    assert template.copy_empty(tmp_path / "x.db") is False
    assert not (tmp_path / "x.db").exists()
    RDBStorage(f"sqlite:///{tmp_path}/optuna.db").engine.dispose()
    open_storage(f"sqlite:///{tmp_path}/s.db").engine.dispose()
    assert schema(tmp_path / "s.db") == schema(tmp_path / "optuna.db")
    assert list(tmp_path.glob(".*.new")) == []  # nothing staged is left behind


def test_a_template_that_is_not_a_database_is_made_again(tmp_path, cache):
    template.template_path().parent.mkdir(parents=True)
    template.template_path().write_bytes(b"")  # e.g. a cache cleaner truncated it
    RDBStorage(f"sqlite:///{tmp_path}/optuna.db").engine.dispose()
    open_storage(f"sqlite:///{tmp_path}/s.db").engine.dispose()
    assert schema(tmp_path / "s.db") == schema(tmp_path / "optuna.db")


def test_a_template_cut_short_is_made_again(tmp_path, cache):
    # A full disk or a killed copy left its header and part of its pages: every new study
    # file copied from it was a malformed database.
    open_storage(f"sqlite:///{tmp_path}/first.db").engine.dispose()  # makes the template
    whole = template.template_path().read_bytes()
    template.template_path().write_bytes(whole[:4096])
    open_storage(f"sqlite:///{tmp_path}/s.db").engine.dispose()
    assert schema(tmp_path / "s.db") == schema(tmp_path / "first.db")
    assert template.template_path().read_bytes() == whole


def test_without_a_home_folder_optuna_creates_the_file(tmp_path, monkeypatch):
    # A user id with no account and HOME unset (some containers): platformdirs raises.
    def unknown(*args, **kwargs):
        raise RuntimeError("could not determine the home directory")

    monkeypatch.setattr(platformdirs, "user_cache_dir", unknown)
    assert template.copy_empty(tmp_path / "x.db") is False
    open_storage(f"sqlite:///{tmp_path}/s.db").engine.dispose()
    assert sqlite3.connect(tmp_path / "s.db").execute("SELECT COUNT(*) FROM studies").fetchone()
