"""A worker process: what it records about the trials it runs, through the real CLI."""

import os
import subprocess
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from sweep.store.storage import open_storage
from tests.conftest import sweep

SLOW_TO_START_ALONE = """
import os, signal, time
from pathlib import Path

CRASHED = Path(__file__).with_name("crashed")
if CRASHED.exists():
    time.sleep(8)  # every process that imports it now starts slowly: past the grace period

def f(params, ctx):
    if not CRASHED.exists():
        CRASHED.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)  # its values then run alone, in a new process
    return params["x"]
"""


def test_a_trial_run_alone_is_its_workers_while_the_new_process_starts(tmp_path):
    # The process that runs a trial alone (worker.run_isolated) records itself only once it
    # has started. Before the worker recorded itself meanwhile, a live trial whose process
    # took longer than the grace period to start was recovered as "no worker recorded",
    # over and over, until its values were given up (tests/store/test_postgres.py, faults).
    (tmp_path / "slow.py").write_text(SLOW_TO_START_ALONE)
    (tmp_path / "s.toml").write_text(
        '[study]\nname = "s"\ntrials = 1\nseed = 2\n[objective]\nfile = "slow.py"\n'
        'function = "f"\n[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n'
    )
    url = f"sqlite:///{tmp_path}/s.db"
    env = {**os.environ, "SWEEP_HEARTBEAT_SECONDS": "1"}  # a grace period of 3 s, not 30
    done = subprocess.run(
        sweep("run", str(tmp_path / "s.toml"), "--storage", url, "--jobs", "2"),
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="s", storage=open_storage(url, read_only=True))
    states = Counter(t.state for t in study.trials)
    assert states == {TrialState.FAIL: 1, TrialState.COMPLETE: 1}  # the kill, then alone
    (failed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert "is gone" in failed.user_attrs["fail_reason"]


def test_a_worker_of_a_spent_grid_stops_at_once_and_says_why(tmp_path):
    # It waited its idle minute for points that can never come, then said nothing was
    # left ("stopped": null, which means the study is done) with the study at 1/2.
    import json

    url = _created(
        tmp_path,
        'def objective(params, ctx):\n    if params["c"] == "b":\n'
        '        raise ValueError("no")\n    return 1.0\n',
        '[study]\nname = "gx"\ntrials = 2\nsampler = "grid"\n[objective]\nfile = "f.py"\n'
        '[search.c]\nchoices = ["a", "b"]\n',
    )
    for _ in range(2):  # the run of both points, then a worker that finds none
        done = subprocess.run(
            sweep("worker", "gx", "--storage", url, "--json"),
            capture_output=True, text=True, check=False, timeout=50,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr  # (timeout: well inside the idle minute)
        stopped = json.loads(done.stdout)["stopped"]
        assert stopped.startswith("every point of the grid has been tried: 1/2 finished, 1 failed")


def _created(tmp_path, function: str, study: str) -> str:
    """A study made by `sweep run --jobs 0 --time-limit 0` (its trials queued, none run)
    from f.py and s.toml with these texts; returns its storage URL."""
    (tmp_path / "f.py").write_text(function)
    (tmp_path / "s.toml").write_text(study)
    url = f"sqlite:///{tmp_path}/s.db"
    made = subprocess.run(
        sweep("run", str(tmp_path / "s.toml"), "--storage", url, "--jobs", "0",
              "--time-limit", "0", "--out", str(tmp_path / "out")),
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return url


def _idle_waits(tmp_path, monkeypatch, idle: float, sibling: bool = False) -> list[float]:
    """The sleeps of a worker (in this process) that finds nothing queued while another
    runs the study's last trial, which ends after the worker's seventh look; ``sibling``:
    the other works for the same command (this process)."""
    import socket

    from sweep.execution import worker
    from sweep.store import records

    url = _created(
        tmp_path,
        "def f(params, ctx):\n    return params['x']\n",
        '[study]\nname = "s"\ntrials = 1\nseed = 2\n[objective]\nfile = "f.py"\n'
        'function = "f"\n[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n',
    )
    storage = open_storage(url)
    study = optuna.load_study(study_name="s", storage=storage)
    other = study.ask()  # the queued trial, now run by another (live) worker
    alive = {"host": socket.gethostname(), "pid": os.getpid()}
    if sibling:
        alive["by"] = os.getpid()
    other.set_user_attr(records.WORKER, alive)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 7:
            study.tell(other, 0.5)

    monkeypatch.setattr(worker.time, "sleep", sleep)
    job = worker.Job(url=url, study="s", threads=1, data_dir=None, fingerprint=None,
                     objective_dir=str(tmp_path), resume_command="", idle=idle)  # fmt: skip
    assert worker.work(job, 0) == 0
    return waits


def test_the_orchestrators_idle_worker_looks_again_often_and_ends_with_the_study(
    tmp_path, monkeypatch
):
    # `sweep run` ends when the last of its workers does. One whose pack ended first waited
    # twice as long at each look, up to 1.6 s, and slept on for up to 1.6 s after the
    # study was done (the coarse stage: 1.5 s of its 19 s); at most 0.2 s, ~0.1 s on
    # average, until 0.05 (`sweep run` of a 10-trial instant study: median 1.538 against
    # 1.594 s, 14 interleaved pairs).
    waits = _idle_waits(tmp_path, monkeypatch, idle=0.0)
    assert len(waits) == 7 and max(waits) <= 0.05, waits


def test_a_remote_idle_worker_looks_again_less_and_less_often(tmp_path, monkeypatch):
    # Many `sweep worker` processes waiting on one database load it little.
    waits = _idle_waits(tmp_path, monkeypatch, idle=60.0)
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 1.6, 1.6], waits


def test_a_remote_worker_waiting_on_its_own_commands_trial_looks_again_often(tmp_path, monkeypatch):
    # `sweep worker --jobs 2` ends with its last process: one waiting for its sibling's
    # trial slept up to 1.6 s past the study's end (1.3-1.7 s in a hostile pass).
    waits = _idle_waits(tmp_path, monkeypatch, idle=60.0, sibling=True)
    assert waits == [0.1] + [0.05] * 6, waits  # (whose trials run: read after the first)


@pytest.mark.parametrize("alone", [False, True])
def test_a_worker_leaves_a_dead_siblings_trial_to_its_command(tmp_path, monkeypatch, alone):
    # A sibling process (same command) that died broke the command's pool: the command
    # recovers its trial and runs its values alone. A sibling that took it first ran it in
    # a process the broken pool then killed, a second crash counted against the values
    # (the test above failed 1 run in 10 once looks were 0.05 s). A trial run alone is
    # the workers' to recover: its process may outlive the break, and the command's
    # recovery, by 0.5 s (leaving it to the command, `sweep run` waited on it for ever).
    import socket

    from sweep.execution import worker
    from sweep.store import records

    url = _created(
        tmp_path,
        "def f(params, ctx):\n    return params['x']\n",
        '[study]\nname = "s"\ntrials = 1\nseed = 2\n[objective]\nfile = "f.py"\n'
        'function = "f"\n[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n',
    )
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    trial = study.ask()
    # Above Linux's highest pid (2**22): a process that is gone. "by": this command.
    gone = {"host": socket.gethostname(), "pid": 2**22 + 1, "by": os.getpid()}
    trial.set_user_attr(records.WORKER, {**gone, **({"alone": True} if alone else {})})
    looks = []

    def sleep(seconds: float) -> None:
        looks.append(seconds)
        if len(looks) == 5 and not alone:  # the command's own recovery, after the break
            study.tell(trial, 0.5)
        assert len(looks) < 50, "the trial was never recovered: the worker waits for ever"

    monkeypatch.setattr(worker.time, "sleep", sleep)
    job = worker.Job(url=url, study="s", threads=1, data_dir=None, fingerprint=None,
                     objective_dir=str(tmp_path), resume_command="", idle=0.0)  # fmt: skip
    ran = worker.work(job, 0)
    states = [t.state for t in study.trials]
    if alone:  # recovered at the first look; its values then ran here
        assert ran == 1 and len(looks) == 1 and states == [TrialState.FAIL, TrialState.COMPLETE]
    else:  # never failed here
        assert ran == 0 and len(looks) == 5 and states == [TrialState.COMPLETE]


CRASHES_THIRD = """
import os, signal, time
from pathlib import Path

def f(params, ctx):
    calls = Path(__file__).with_name("calls")
    with calls.open("a") as log:
        log.write("x\\n")
    if len(calls.read_text().split()) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.3)
    return params["x"]
"""


def test_a_worker_counts_the_trials_its_processes_ended_before_one_crashed(tmp_path):
    # The pool's futures all break together: the trials its surviving process had ended
    # in that round went uncounted ("ran": 5 of the 6 trials it ran, in a hostile pass).
    import json

    url = _created(
        tmp_path,
        CRASHES_THIRD,
        '[study]\nname = "s"\ntrials = 6\nseed = 2\n[objective]\nfile = "f.py"\n'
        'function = "f"\n[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n',
    )
    done = subprocess.run(
        sweep("worker", "s", "--storage", url, "--jobs", "2", "--json"),
        capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="s", storage=url).trials
    ended = [t for t in trials if t.state.is_finished()]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert any(t.state == TrialState.FAIL for t in trials)  # the crash happened
    assert json.loads(done.stdout)["ran"] == len(ended), (
        done.stdout,
        Counter(t.state for t in trials),
    )
