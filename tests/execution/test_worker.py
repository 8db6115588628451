"""A worker process: what it records about the trials it runs, through the real CLI."""

import os
import subprocess
from collections import Counter

import optuna
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

    (tmp_path / "g.py").write_text(
        'def objective(params, ctx):\n    if params["c"] == "b":\n'
        '        raise ValueError("no")\n    return 1.0\n'
    )
    (tmp_path / "g.toml").write_text(
        '[study]\nname = "gx"\ntrials = 2\nsampler = "grid"\n[objective]\nfile = "g.py"\n'
        '[search.c]\nchoices = ["a", "b"]\n'
    )
    url = f"sqlite:///{tmp_path}/g.db"
    made = subprocess.run(
        sweep("run", str(tmp_path / "g.toml"), "--storage", url, "--jobs", "0",
              "--time-limit", "0", "--out", str(tmp_path / "out")),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    for _ in range(2):  # the run of both points, then a worker that finds none
        done = subprocess.run(
            sweep("worker", "gx", "--storage", url, "--json"),
            capture_output=True, text=True, check=False, timeout=50,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr  # (timeout: well inside the idle minute)
        stopped = json.loads(done.stdout)["stopped"]
        assert stopped.startswith("every point of the grid has been tried: 1/2 finished, 1 failed")
