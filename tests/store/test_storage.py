"""The storage rules: exact queue popping on one SQLite file with many worker processes."""

import json
import multiprocessing as mp

import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli.main import main
from sweep.errors import StorageError
from sweep.store.storage import open_storage
from tests.conftest import check

WORKERS, TRIALS = 8, 80


def _pop_worker(url: str, n: int, errors) -> None:
    try:
        storage = open_storage(url, create=False)
        study = optuna.load_study(study_name="queue", storage=storage)

        def objective(trial):
            x = trial.suggest_float("x", 0, TRIALS)
            trial.set_user_attr("ran_by", mp.current_process().name)
            return x

        study.optimize(objective, n_trials=n)
    except Exception as exc:  # reported to the test, which fails on any
        errors.put(repr(exc))


def race(worker, url: str, *args) -> list[optuna.trial.FrozenTrial]:
    """WORKERS processes run ``worker(url, *args, errors)`` at once; the study's trials."""
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, *args, errors)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    assert errors.empty(), errors.get()
    return optuna.load_study(study_name="queue", storage=url).get_trials()


def test_eight_processes_pop_eighty_queued_trials_exactly_once(tmp_path):
    url = f"sqlite:///{tmp_path}/queue.db"
    storage = open_storage(url)
    study = optuna.create_study(study_name="queue", storage=storage, direction="maximize")
    for i in range(TRIALS):
        study.enqueue_trial({"x": float(i)})
    trials = race(_pop_worker, url, TRIALS // WORKERS)
    assert len(trials) == TRIALS
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # Each queued value evaluated exactly once: a double pop would repeat one and miss another.
    # With plain SQLite settings (no BEGIN IMMEDIATE) this test fails: measured here, workers
    # die with "Cannot tell a COMPLETE trial" and only 33-40 of the 80 trials complete.
    assert sorted(t.params["x"] for t in trials) == [float(i) for i in range(TRIALS)]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "unknown scheme"),
        ("nonsense", "unknown scheme"),
        ("sqlite:///{tmp}/missing/dir/x.db", "does not exist or is not writable"),
        ("sqlite:///{tmp}/notdb.db", "is not a SQLite database"),
    ],
)
def test_bad_storage_urls_are_clear_errors(tmp_path, url, message):
    (tmp_path / "notdb.db").write_text("hello, not a database")
    with pytest.raises(StorageError, match=message):
        open_storage(url.format(tmp=tmp_path))
    assert (tmp_path / "notdb.db").read_text() == "hello, not a database"


def test_readers_never_create_a_database(tmp_path):
    with pytest.raises(StorageError, match="no study database"):
        open_storage(f"sqlite:///{tmp_path}/typo.db", create=False)
    assert not (tmp_path / "typo.db").exists()


def _pop_waiting_worker(url: str, errors) -> None:
    """A worker that pops with sweep.store.queue.pop_waiting (no study lock) until the queue is
    empty, one trial at a time, and tells each."""
    try:
        from sweep.store.queue import pop_waiting
        from sweep.store.study import open_study

        stored = open_study("queue", url)
        while popped := pop_waiting(stored, 1):
            (trial,) = [p.trial for p in popped]
            x = trial.suggest_float("lambda", 0, TRIALS, log=False)  # the queued value
            stored.study.tell(trial, x)
    except Exception as exc:  # reported to the test, which fails on any
        errors.put(repr(exc))


@pytest.mark.parametrize("round_", range(5))
def test_eight_processes_pop_without_the_lock_each_queued_trial_exactly_once(tmp_path, round_):
    # pop_waiting is ask()'s pop without ask()'s fallback of sampling a new trial (why:
    # see its docstring): 8 processes racing over 80 queued trials, 5 rounds.
    from sweep.spec import studyfile
    from sweep.store.queue import queue_next
    from sweep.store.study import prepare
    from tests.conftest import study_text

    (tmp_path / "queue.toml").write_text(
        study_text("queue", trials=TRIALS, search=f"low = 0.0\nhigh = {TRIALS}.0\nlog = false")
    )
    spec = studyfile.load(tmp_path / "queue.toml")
    url = f"sqlite:///{tmp_path}/queue.db"
    stored, _ = prepare(spec, url, target=TRIALS)
    with stored.locked():
        assert queue_next(stored, spec, ahead=TRIALS) == TRIALS  # the whole plan queued
    planned = sorted(t.user_attrs["values"]["lambda"] for t in stored.trials())
    trials = race(_pop_waiting_worker, url)
    assert len(trials) == TRIALS  # no trial created: an empty queue pops nothing
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.params["lambda"] for t in trials) == pytest.approx(planned)


def test_the_storage_is_sweep_storage_else_sweeps_db_in_the_current_folder(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "f.py").write_text("def f(params, ctx):\n    return params['x']\n")
    for name in ("a", "b"):
        (tmp_path / f"{name}.toml").write_text(
            f'[study]\nname = "{name}"\ntrials = 2\n[objective]\nfile = "f.py"\nfunction = "f"\n'
            "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
        )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)

    def studies(*argv):
        capsys.readouterr()
        assert main(["status", "--json", *argv]) == 0
        return [row["study"] for row in json.loads(capsys.readouterr().out)]

    assert main(["run", "a.toml"]) == 0
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path}/sweeps.db") == ["a"]
    assert studies() == ["a"]
    monkeypatch.setenv("SWEEP_STORAGE", f"sqlite:///{tmp_path}/env.db")
    assert main(["run", "b.toml"]) == 0
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path}/env.db") == ["b"]
    assert studies() == ["b"]
    assert studies("--storage", "sqlite:///sweeps.db") == ["a"]  # --storage comes first
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path}/sweeps.db") == ["a"]


def test_a_full_disk_met_outside_a_retried_call_is_the_one_line_too():
    import sqlite3

    from optuna.exceptions import StorageInternalError

    from sweep.errors import NO_SPACE, explain

    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as exc:
            raise StorageInternalError("An exception is raised during the commit.") from exc
    except StorageInternalError as exc:
        assert explain(exc) == (NO_SPACE, 2)
    assert explain(StorageInternalError("something else")) is None  # a bug stays a traceback


def test_a_read_only_study_folder_is_one_line_for_commands_that_lock(tmp_path, capsys, monkeypatch):
    from sweep.store import storage

    url = f"sqlite:///{tmp_path}/a.db"
    (tmp_path / "f.py").write_text("def objective(params, ctx):\n    return params['x']\n")
    (tmp_path / "ro.toml").write_text(
        '[study]\nname = "ro"\ntrials = 1\n[objective]\nfile = "f.py"\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    assert main(["run", str(tmp_path / "ro.toml"), "--storage", url]) == 0

    class ReadOnly(storage.FileLock):  # what a read-only mount does to the lock file
        def acquire(self, *args, **kwargs):
            raise OSError(30, "Read-only file system", f"{tmp_path}/a.db.lock")

    monkeypatch.setattr(storage, "FileLock", ReadOnly)
    check(capsys, ["resume", "ro", "--storage", url], "cannot write the study lock")


def test_a_database_that_cannot_be_created_on_a_full_disk_says_so_and_leaves_no_file(
    tmp_path, monkeypatch
):
    import sqlite3

    from sweep.errors import NO_SPACE
    from sweep.store import storage

    def full(path):  # as on a full disk: the file is made, its first page is not
        path.touch()
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(storage, "copy_empty", full)
    with pytest.raises(StorageError) as info:
        open_storage(f"sqlite:///{tmp_path}/new.db")
    assert str(info.value) == NO_SPACE  # not "is not a usable study database"
    assert not (tmp_path / "new.db").exists()


def test_a_sqlite_path_with_percent_escapes_or_odd_characters_is_one_file_throughout(
    tmp_path, capsys
):
    # SQLAlchemy decodes the path's percent-escapes ("%41" is "A"): the checks, the lock
    # and the template copy must mean the file it opens, and a resume command printed
    # for a path with a space or a "λ" must name that path as given.
    import sweep
    from sweep.api import url_of
    from sweep.store.urls import shown, sqlite_path

    study = {
        "study": {"name": "p", "trials": 2},
        "search": {"x": {"low": 0.0, "high": 1.0, "log": False}},
    }
    sweep.run(
        study, objective=lambda params, ctx: params["x"], storage=f"sqlite:///{tmp_path}/a%41b.db"
    )
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["aAb.db"]
    assert sqlite_path(f"sqlite:///{tmp_path}/100%.db") == tmp_path / "100%.db"
    odd = tmp_path / "sp ace λ 50% ?.db"
    sweep.run(study, objective=lambda params, ctx: params["x"], storage=odd)  # a Path
    assert odd.is_file() and sqlite_path(url_of(odd)) == odd
    printed = f"sqlite:///{tmp_path}/sp ace λ.db"
    assert shown(printed) == printed
    assert main(["status", "--storage", f"sqlite:///{tmp_path}/a%41b.db", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["study"] == "p"


def test_a_database_another_program_keeps_locked_is_said_to_be_locked(
    tmp_path, capsys, monkeypatch
):
    # It said "is not a usable study database (database is locked); pass another
    # --storage" after a minute (hostile pass): the file is fine, the other program is not.
    import sqlite3

    from sweep.store import storage

    url = f"sqlite:///{tmp_path}/lk.db"
    optuna.create_study(study_name="s", storage=url)
    other = sqlite3.connect(tmp_path / "lk.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(storage, "LOCK_WAIT_SECONDS", 0.2)
    try:
        check(capsys, ["status", "--storage", url], "lk.db is locked: another program holds")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert main(["status", "--storage", url]) == 0  # once it lets go
