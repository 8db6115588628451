"""Optuna's journal file as a study storage (``journal:///PATH``, sweep/store/journal.py): the
guarantees SQLite and PostgreSQL have, shown with real files and real processes. Races are
caught by repetition, as in tests/store/test_storage.py and tests/store/test_races.py."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from sweep.cli.main import main
from sweep.errors import StorageError
from sweep.spec import plan, studyfile
from sweep.store import journal
from sweep.store.queue import queue_next
from sweep.store.storage import open_storage
from sweep.store.study import prepare
from sweep.system.portable import pid_alive
from tests.conftest import check, children, race_orchestrators, start, study_text, sweep, wait_for
from tests.store.test_storage import _pop_waiting_worker

pytestmark = pytest.mark.slow

SLEEPY = """
import os, time

def f(params, ctx):
    time.sleep(float(os.environ.get("SLEEP", "0.05")))
    ctx.report(0, params["x"])
    return params["x"]
"""


def write_study(folder: Path, name: str = "j", trials: int = 6, seed: int = 3) -> Path:
    (folder / "f.py").write_text(SLEEPY)
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\ntrials = {trials}\nseed = {seed}\n'
        '[objective]\nfile = "f.py"\nfunction = "f"\ndirection = "minimize"\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    return path


def planned(trials: int, seed: int = 3) -> list[float]:
    space = {"x": (0.0, 1.0, False)}
    return sorted(plan.values_at("random", seed, i, space)["x"] for i in range(trials))


def trials_of(url: str, name: str = "j") -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url, read_only=True)
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def leftover_locks(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".lock", ".broken")))


# --- the URL ----------------------------------------------------------------------------


def test_a_journal_url_opens_optunas_journal_storage_and_follows_sqlites_path_rule(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    relative = open_storage("journal:///rel.journal")  # three slashes: relative
    assert isinstance(relative, JournalStorage) and (tmp_path / "rel.journal").is_file()
    assert journal.path_of("journal:////shared/s.journal") == Path("/shared/s.journal")
    assert journal.path_of("journal:///shared/s.journal") == Path("shared/s.journal")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--storage", "journal://s.journal"], "names no file; use journal:///PATH"),
        (["status", "--storage", "journal:///{tmp}/typo.journal"], "no study database at"),
        (["status", "--storage", "journal:///{tmp}/s.journal?lock=open"], "has options"),
        (["status", "--storage", "journal:///{tmp}/notes.txt"], "is not an Optuna journal file"),
        (["status", "--storage", "journal:///{tmp}/db.sqlite"], "is a SQLite database"),
        (["status", "--storage", "journal:///{tmp}"], "is a folder"),
        (["status", "--storage", "sqlite:///{tmp}/old.journal"], "is a journal file: use journal"),
        (["run", "{tmp}/j.toml", "--storage", "journal:///{tmp}/no/dir/s.journal"], "not writable"),
        (["dashboard", "--storage", "journal:///{tmp}/typo.journal"], "no study database at"),
    ],
)
def test_bad_journal_urls_are_one_line_errors(tmp_path, capsys, argv, message):
    write_study(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "db.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(100))
    (tmp_path / "old.journal").write_text('{"op_code":0,"worker_id":"w"}\n')
    check(capsys, [a.format(tmp=tmp_path) for a in argv], message)
    assert not (tmp_path / "typo.journal").exists()  # a reader never creates one
    assert (tmp_path / "notes.txt").read_text() == "hello"


def test_a_bad_journal_url_exits_2_with_one_line(tmp_path):
    done = subprocess.run(
        sweep("run", str(write_study(tmp_path)), "--storage", "journal://relative.journal"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: storage URL")


def test_a_read_only_folder_is_one_line(tmp_path):
    # chattr +i: even root (the tests' user here) cannot create a lock file in the folder.
    url = f"journal:///{tmp_path}/ro/s.journal"
    (tmp_path / "ro").mkdir()
    open_storage(url)
    subprocess.run(["chattr", "+i", str(tmp_path / "ro")], check=True)
    try:
        with pytest.raises(StorageError, match="not writable"):
            open_storage(url, create=False)  # a worker writes lock files beside it
        assert isinstance(open_storage(url, read_only=True), JournalStorage)
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path / "ro")], check=True)


# --- the study lock across processes -----------------------------------------------------


def _count_under_lock(path: str, counter: str, n: int, barrier, errors) -> None:
    try:
        lock = journal.NfsLock(path)
        barrier.wait(timeout=60)
        for _ in range(n):
            with lock:  # read, then write: a lost update if two held it at once
                value = int(Path(counter).read_text())
                Path(counter).write_text(str(value + 1))
        lock.close()
    except Exception as exc:
        errors.put(repr(exc))


@pytest.mark.parametrize("round_", range(3))
def test_the_nfs_lock_excludes_other_processes(tmp_path, round_):
    processes, each = 6, 150
    counter = tmp_path / "counter"
    counter.write_text("0")
    ctx = mp.get_context("spawn")
    barrier, errors = ctx.Barrier(processes), ctx.Queue()
    lock = str(tmp_path / "s.journal.study.lock")
    procs = [
        ctx.Process(target=_count_under_lock, args=(lock, str(counter), each, barrier, errors))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert errors.empty(), errors.get()
    assert all(p.exitcode == 0 for p in procs)
    assert int(counter.read_text()) == processes * each
    assert leftover_locks(tmp_path) == []


def test_a_lock_left_by_a_dead_process_is_broken_at_once(tmp_path):
    path = tmp_path / "l.lock"
    gone = subprocess.Popen(["true"])
    gone.wait()
    os.symlink(f"{socket.gethostname()}\t{gone.pid}\tx", path)
    assert not pid_alive(gone.pid)
    lock = journal.NfsLock(path)
    assert lock.acquire(wait=False)  # not even a wait
    lock.close()
    assert not path.exists()


def test_a_lock_of_another_machine_is_broken_only_once_it_stops_being_refreshed(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(journal, "LOCK_STALE_SECONDS", 0.5)
    path = tmp_path / "l.lock"
    os.symlink("node-17\t4242\tx", path)  # a live pid elsewhere: only its refreshes tell
    lock = journal.NfsLock(path)
    assert not lock.acquire(wait=False)
    started = time.monotonic()
    assert lock.acquire()  # waits until it has seen no refresh for 0.5 s
    assert 0.5 <= time.monotonic() - started < 5
    assert os.readlink(path).startswith(socket.gethostname())
    lock.close()

    monkeypatch.setattr(journal, "LOCK_STALE_SECONDS", 3.0)
    holder = journal.NfsLock(path)
    holder.acquire()
    waiter = journal.NfsLock(path)
    # A holder that refreshes (every LOCK_REFRESH_SECONDS; here by hand) is never broken.
    for _ in range(8):
        assert not waiter.acquire(wait=False)
        os.utime(path, follow_symlinks=False)
        time.sleep(0.5)
    holder.close()
    assert waiter.acquire(wait=False)
    waiter.close()


# --- exact pops --------------------------------------------------------------------------


def race(worker, url: str, processes: int) -> list[optuna.trial.FrozenTrial]:
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, errors)) for _ in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert errors.empty(), errors.get()
    assert all(p.exitcode == 0 for p in procs)
    return trials_of(url, "queue")


@pytest.mark.parametrize("round_", range(5))
def test_processes_pop_each_queued_trial_exactly_once(tmp_path, round_):
    # sweep.store.queue.pop_waiting claims with set_trial_state_values(RUNNING), which a journal
    # decides by the order of the claims in the file: 8 processes x 80 trials, 5 rounds.
    workers, n = 8, 80
    (tmp_path / "queue.toml").write_text(
        study_text("queue", trials=n, search=f"low = 0.0\nhigh = {n}.0\nlog = false")
    )
    spec = studyfile.load(tmp_path / "queue.toml")
    url = f"journal:///{tmp_path}/queue.journal"
    stored, _ = prepare(spec, url, target=n)
    with stored.locked():
        assert queue_next(stored, spec, ahead=n) == n
    want = sorted(t.user_attrs["values"]["lambda"] for t in stored.trials())
    stored.close()
    trials = race(_pop_waiting_worker, url, workers)
    assert len(trials) == n  # an empty queue pops nothing: no trial created
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: n}
    assert sorted(t.params["lambda"] for t in trials) == pytest.approx(want)


# --- whole commands ----------------------------------------------------------------------


def test_a_study_runs_on_a_journal_and_every_reader_reads_it(tmp_path, capsys):
    path = write_study(tmp_path, trials=6)
    url = f"journal:///{tmp_path}/s.journal"
    done = subprocess.run(
        sweep("run", str(path), "--storage", url, "--jobs", "2", "--out", str(tmp_path / "out")),
        capture_output=True,
        text=True,
        timeout=120,
        # Each worker pops a pack of 3; at 1 s a trial, one worker would have to start 3 s
        # after the other to run all 6 (at 0.05 s it once did, in CI).
        env={**os.environ, "SLEEP": "1"},
    )
    assert done.returncode == 0, done.stderr
    final = trials_of(url)
    assert Counter(t.state for t in final) == {TrialState.COMPLETE: 6}
    assert sorted(t.params["x"] for t in final) == pytest.approx(planned(6))
    assert all(journal.HEARTBEAT_ATTR in t.user_attrs for t in final)  # beats were written
    assert len({t.user_attrs["worker"]["pid"] for t in final}) == 2
    assert leftover_locks(tmp_path) == []

    capsys.readouterr()
    assert main(["status", "--storage", url, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["study"] == "j" and row["states"]["COMPLETE"] == 6 and row["target"] == 6
    assert main(["trials", "j", "--storage", url, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 6
    assert main(["show", "j", "0", "--storage", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "COMPLETE"
    assert main(["report", "j", "--storage", url, "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.md").is_file()
    # A rerun with a higher target tops up to exactly it.
    out = ["--out", str(tmp_path / "out")]
    assert main(["run", str(path), "--storage", url, "--trials", "8", "--jobs", "1", *out]) == 0
    final = trials_of(url)
    assert Counter(t.state for t in final) == {TrialState.COMPLETE: 8}
    assert sorted(t.params["x"] for t in final) == pytest.approx(planned(8))


def _orchestrator(index, rounds, folder, barrier, results):
    from sweep.execution import processes

    for r, (url, names) in enumerate(rounds):
        name = names[index % len(names)]
        barrier.wait(timeout=120)
        err = io.StringIO()
        argv = ["run", f"{folder}/{name}.toml", "--storage", url, "--jobs", "1"]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main([*argv, "--out", f"{folder}/out{index}"])
        results.put((r, index, code, err.getvalue()[-300:]))
    processes.stop()


@pytest.mark.parametrize(
    ("processes", "names"),
    [(2, ["s"]), (3, ["s"]), (2, ["a", "b"])],
    ids=["two-same-study", "three-same-study", "two-different-studies"],
)
def test_orchestrators_at_once_on_a_new_journal(tmp_path, processes, names):
    # `sweep run` started at the same moment by several processes, each round on a new
    # journal: the study ends with exactly its target, each planned value COMPLETE once.
    trials = 3
    for name in names:
        write_study(tmp_path, name, trials=trials)
    rounds = [(f"journal:///{tmp_path}/race{r}.journal", names) for r in range(12)]
    race_orchestrators(_orchestrator, processes, rounds, str(tmp_path))
    for url, study_names in rounds:
        for name in study_names:
            final = trials_of(url, name)
            assert Counter(t.state for t in final) == {TrialState.COMPLETE: trials}, url
            assert sorted(t.params["x"] for t in final) == pytest.approx(planned(trials))
    assert leftover_locks(tmp_path) == []


def running(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        found = trials_of(url)
    except (KeyError, StorageError):  # not created yet
        return []
    return [t for t in found if t.state == TrialState.RUNNING and "worker" in t.user_attrs]


def test_kill_9_of_workers_mid_trial_then_resume(tmp_path):
    path = write_study(tmp_path, trials=8)
    url = f"journal:///{tmp_path}/s.journal"
    env = {**os.environ, "SLEEP": "1.0"}
    proc = start("run", str(path), "--storage", url, "--jobs", "2", env=env)
    killed = wait_for(lambda: running(url), timeout=60)
    for t in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(t.user_attrs["worker"]["pid"], signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)  # the orchestrator too, as on a crash
    proc.communicate(timeout=30)
    wait_for(lambda: not any(pid_alive(t.user_attrs["worker"]["pid"]) for t in killed), 10)
    assert {t.number for t in running(url)} >= {t.number for t in killed}
    done = subprocess.run(
        sweep("resume", "j", "--storage", url, "--jobs", "2"),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SLEEP": "0.05"},
    )
    assert done.returncode == 0, done.stderr
    final = trials_of(url)
    states = Counter(t.state for t in final)
    assert states[TrialState.COMPLETE] == 8 and states[TrialState.RUNNING] == 0
    complete = sorted(t.params["x"] for t in final if t.state == TrialState.COMPLETE)
    assert complete == pytest.approx(planned(8))  # each planned value COMPLETE exactly once
    assert {t.params["x"] for t in killed} <= set(complete)  # the killed ones ran again
    # Failed: the killed ones, and any its other worker ran when it ended with the
    # orchestrator (sweep/execution/processes.py init_process): all recovered, none twice. The
    # killed ones as gone; one that the other worker popped just before it died may not have
    # recorded its worker yet, and is recovered when its start is older than the grace
    # period instead (seen in CI on a loaded machine: "no heartbeat for 31 s").
    failed = [t for t in final if t.state == TrialState.FAIL]
    assert {t.number for t in failed} >= {t.number for t in killed}
    reasons = {t.number: t.user_attrs["fail_reason"] for t in failed}
    assert all("is gone" in reasons[t.number] for t in killed), reasons
    recovered = ("is gone", "no heartbeat for", "no worker recorded")
    assert all(any(r in reason for r in recovered) for reason in reasons.values()), reasons
    assert leftover_locks(tmp_path) == []


def test_a_hung_worker_is_found_by_its_missing_heartbeat(tmp_path):
    # A stopped process (a hung node, a network partition) is alive to its host, so only
    # the journal's heartbeat attribute tells: with 1-s heartbeats (grace 3 s), another
    # orchestrator fails its trial and runs the value again, while the 4-s trials of a
    # live worker beside it, beating, are left alone.
    path = write_study(tmp_path, trials=4)
    url = f"journal:///{tmp_path}/s.journal"
    env = {**os.environ, "SLEEP": "4.0", "SWEEP_HEARTBEAT_SECONDS": "1"}
    first = start("run", str(path), "--storage", url, "--jobs", "2", env=env)
    try:
        hung = wait_for(lambda: running(url), timeout=60)[0]
        os.kill(hung.user_attrs["worker"]["pid"], signal.SIGSTOP)
        second = subprocess.run(
            sweep("run", str(path), "--storage", url, "--jobs", "1", "--out", str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert second.returncode == 0, second.stderr
    finally:
        for pid in [*children(first.pid), first.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        first.communicate(timeout=30)
    final = trials_of(url)
    (failed,) = [t for t in final if t.state == TrialState.FAIL]
    assert failed.number == hung.number
    assert "no heartbeat for" in failed.user_attrs["fail_reason"]
    complete = sorted(t.params["x"] for t in final if t.state == TrialState.COMPLETE)
    assert complete == pytest.approx(planned(4)) and hung.params["x"] in complete


def test_the_dashboard_opens_a_journal(tmp_path):
    url = f"journal:///{tmp_path}/s.journal"
    study = str(write_study(tmp_path, trials=2))
    assert main(["run", study, "--storage", url, "--out", str(tmp_path / "out")]) == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        sweep("dashboard", "--storage", url, "--port", str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def get(where: str):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{where}", timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        studies = wait_for(lambda: get("/api/studies"), timeout=60)
        (summary,) = studies["study_summaries"]
        assert summary["study_name"] == "j"
        assert len(get(f"/api/studies/{summary['study_id']}")["trials"]) == 2
    finally:
        proc.terminate()
        proc.wait(10)


def _half_then_full(fd, data):
    os.write(fd, data[: len(data) // 2])
    raise OSError(28, "No space left on device")


def test_a_full_disk_leaves_the_journal_readable_with_what_was_written_before(
    tmp_path, monkeypatch
):
    url = f"journal:///{tmp_path}/j.log"
    storage = journal.open_journal(url, read_only=False)
    study = optuna.create_study(storage=storage, study_name="full")
    study.enqueue_trial({"x": 1.0})
    size = (tmp_path / "j.log").stat().st_size
    monkeypatch.setattr(journal, "write_all", _half_then_full)
    with pytest.raises(OSError, match="No space"):
        study.enqueue_trial({"x": 2.0})
    assert (tmp_path / "j.log").stat().st_size == size  # the half line was cut off again
    monkeypatch.undo()
    study.enqueue_trial({"x": 3.0})  # space again: the next append is a line of its own
    again = optuna.load_study(study_name="full", storage=journal.open_journal(url, read_only=True))
    assert [
        t.params.get("x", t.system_attrs.get("fixed_params", {}).get("x")) for t in again.trials
    ] == [1.0, 3.0]


def test_a_torn_last_line_another_writer_left_is_cut_off_by_the_next_append(tmp_path):
    # A writer killed mid-line, a power cut, plain Optuna on a full disk: readers skip the
    # torn record; the next append glued its own onto it, and from then on no command could
    # read the journal (resume failed with a JSONDecodeError traceback, then status too).
    url = f"journal:///{tmp_path}/j.log"
    study = optuna.create_study(storage=journal.open_journal(url, read_only=False), study_name="t")
    study.enqueue_trial({"x": 1.0})
    with open(tmp_path / "j.log", "ab") as f:
        f.write(b'{"op_code": 4, "wor')  # what was left of the next record
    reopened = journal.open_journal(url, read_only=False)
    optuna.load_study(study_name="t", storage=reopened).enqueue_trial({"x": 2.0})
    assert (tmp_path / "j.log").read_bytes().endswith(b"\n")
    again = optuna.load_study(study_name="t", storage=journal.open_journal(url, read_only=True))
    assert [t.system_attrs["fixed_params"]["x"] for t in again.trials] == [1.0, 2.0]


def test_optunas_own_journal_file_is_lost_after_a_half_written_line(tmp_path):
    # Why journal.WholeLines exists: with Optuna's JournalFileBackend, a line cut short by a
    # full disk is glued to the next append and the file can no longer be read. If this
    # fails, Optuna has fixed it and WholeLines can go.
    path = str(tmp_path / "plain.log")
    backend = optuna.storages.journal.JournalFileBackend(path)
    study = optuna.create_study(storage=JournalStorage(backend), study_name="p")
    study.enqueue_trial({"x": 1.0})
    with open(path, "ab") as f:
        f.write(b'{"op_code": 4, "wor')  # what a full disk left of the next append
    study.enqueue_trial({"x": 2.0})  # glued onto the half line: that line is not JSON
    with pytest.raises(ValueError):  # json.JSONDecodeError, from then on
        study.enqueue_trial({"x": 3.0})
    with pytest.raises(ValueError):
        optuna.load_study(
            study_name="p", storage=JournalStorage(optuna.storages.journal.JournalFileBackend(path))
        )
