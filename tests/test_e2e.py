"""End-to-end: the real `sweep` command in subprocesses, killed and interrupted for real."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli.main import main
from sweep.errors import StorageError
from sweep.results.inspection import lambda_of
from sweep.store.recovery import pid_alive
from sweep.store.storage import open_storage
from tests.conftest import children, start, study_text, sweep, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def setup(tmp_path, cifar_dir):
    def make(trials: int, n_s: int = 400):
        path = tmp_path / "e2e.toml"
        path.write_text(study_text("e2e", trials=trials, seed=3, n_s=n_s, evals_per_cycle=10))
        url = f"sqlite:///{tmp_path}/e2e.db"
        common = ["--storage", url, "--data-dir", str(cifar_dir)]
        return path, url, common

    return make


@functools.cache
def _storage(url: str):
    return open_storage(url, read_only=True)  # one connection pool for all the polling


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="e2e", storage=_storage(url)).get_trials()
    except (KeyError, StorageError):  # not created yet
        return []


def ctrl_c_mid_trial(proc: subprocess.Popen, url: str) -> str:
    """Wait until a trial runs, send Ctrl-C to the command's process group; its stderr."""
    wait_for(lambda: running_workers(url))
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    return proc.communicate(timeout=60)[1]


FAULTHANDLER = {**os.environ, "PYTHONFAULTHANDLER": "1"}


def running_workers(url: str) -> list[int]:
    """Pids of live workers that are in the middle of a trial."""
    from sweep.store.recovery import pid_alive

    pids = [
        t.user_attrs["worker"]["pid"]
        for t in trials(url)
        if t.state == TrialState.RUNNING and "worker" in t.user_attrs
    ]
    return [pid for pid in pids if pid_alive(pid)]


def test_kill_workers_three_times_then_resume(setup):
    path, url, common = setup(trials=8)
    killed_lambdas = set()
    for round_ in range(3):
        proc = subprocess.Popen(
            sweep("run", str(path), "--jobs", "2", *common),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        pids = wait_for(lambda: running_workers(url))
        time.sleep(0.2)  # in the middle of the trial
        killed_lambdas |= {
            t.params["lambda"]
            for t in trials(url)
            if t.state == TrialState.RUNNING and t.user_attrs.get("worker", {}).get("pid") in pids
        }
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it may just have finished
                os.kill(pid, signal.SIGKILL)
        if round_ == 2:
            # The last time the orchestrator goes too, as on a crash or a closed lid.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        else:
            # The orchestrator replaces dead workers by itself; stop it for the restart.
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert any(t.state == TrialState.RUNNING for t in trials(url))  # left behind by the kills
    done = subprocess.run(
        sweep("resume", "e2e", "--jobs", "2", *common[:2], "--data-dir", common[3]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    final = trials(url)
    states = Counter(t.state.name for t in final)
    assert states["COMPLETE"] == 8 and states["RUNNING"] == 0
    complete = [t.params["lambda"] for t in final if t.state == TrialState.COMPLETE]
    assert len(set(complete)) == len(complete)  # no lambda evaluated twice to COMPLETE
    # Every interrupted lambda was run again: to COMPLETE, or until it had ended the
    # process running it alone twice (a kill -9 is what the OOM killer sends: README
    # "Your own training function"), when the study replaced it with a new value.
    given_up = {
        t.params["lambda"]
        for t in final
        if t.state == TrialState.FAIL and "not run again" in t.user_attrs["fail_reason"]
    }
    assert killed_lambdas <= set(complete) | given_up
    assert not given_up & set(complete)
    for t in final:
        if t.state == TrialState.FAIL:
            assert t.user_attrs["fail_reason"]


def test_ctrl_c_fails_running_trials_and_says_how_to_resume(setup):
    path, url, common = setup(trials=6, n_s=800)
    proc = start("run", str(path), "--jobs", "2", *common)
    err = ctrl_c_mid_trial(proc, url)
    assert proc.returncode == 130, err
    assert "sweep resume e2e" in err and "Traceback" not in err
    final = trials(url)
    assert not [t for t in final if t.state == TrialState.RUNNING]
    interrupted = [t for t in final if t.user_attrs.get("fail_reason") == "interrupted"]
    assert interrupted and all(t.state == TrialState.FAIL for t in interrupted)
    # The workers ran packs of 3 (the built-in's default pack, 6 trials over 2 workers):
    # every member of an interrupted pack fails and is queued again.
    assert len(interrupted) >= 3
    # Their lambdas are queued again, first in line for the resume.
    waiting = {lambda_of(t) for t in final if t.state == TrialState.WAITING}
    assert {lambda_of(t) for t in interrupted} <= waiting


def test_kill_9_of_a_worker_running_a_pack_requeues_every_member(setup):
    path, url, common = setup(trials=8)  # 2 workers, packs of 4 (the built-in's default)
    proc = start("run", str(path), "--jobs", "2", *common)

    def pack_running():
        held = Counter(running_workers(url))
        return [pid for pid, n in held.items() if n >= 2]

    victim = wait_for(pack_running)[0]
    members = {
        lambda_of(t)
        for t in trials(url)
        if t.state == TrialState.RUNNING and t.user_attrs.get("worker", {}).get("pid") == victim
    }
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    final = trials(url)
    states = Counter(t.state.name for t in final)
    assert states["COMPLETE"] == 8 and states["RUNNING"] == 0 and states["WAITING"] == 0
    complete = [t.params["lambda"] for t in final if t.state == TrialState.COMPLETE]
    assert len(set(complete)) == 8 and members <= set(complete)
    killed = [
        t
        for t in final
        if t.state == TrialState.FAIL and t.user_attrs.get("worker", {}).get("pid") == victim
    ]
    assert len(killed) == len(members) >= 2  # every member of the pack, each on its own
    assert all(
        t.user_attrs["requeued"] and "is gone" in t.user_attrs["fail_reason"] for t in killed
    )


def test_the_printed_resume_command_works_as_printed(tmp_path, cifar_dir):
    # A data folder whose path needs quoting: the hint must survive a shell as it is.
    spaced = tmp_path / "my data"
    spaced.symlink_to(cifar_dir)
    (tmp_path / "e2e.toml").write_text(
        study_text("e2e", trials=4, seed=3, n_s=600, evals_per_cycle=10)
    )
    url = f"sqlite:///{tmp_path}/e2e.db"
    toml = str(tmp_path / "e2e.toml")
    out = tmp_path / "my tables"
    argv = ["--jobs", "2", "--storage", url, "--data-dir", str(spaced), "--out", str(out)]
    proc = start("run", toml, *argv)
    err = ctrl_c_mid_trial(proc, url)
    hint = err.strip().splitlines()[-1].split("Resume with: ", 1)[1]
    assert "'" in hint and "--data-dir" in hint and shlex.split(hint)[-2:] == ["--out", str(out)]
    # Run as a user whose venv is active would: this environment's `sweep` first on PATH
    # (a fresh machine has no other, and CI runs .venv/bin/python without activating it).
    path = os.pathsep.join([str(Path(sweep()[0]).parent), os.environ.get("PATH", "")])
    done = subprocess.run(
        ["bash", "-c", hint],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": path},
    )
    assert done.returncode == 0, done.stderr
    assert Counter(t.state for t in trials(url))[TrialState.COMPLETE] == 4
    assert (out / "e2e" / "table.csv").is_file()  # beside the first run's, not in reports/


def test_ctrl_c_while_workers_start_prints_no_traceback(setup):
    # Once the worker processes exist they spend ~1 s importing numpy, optuna and sweep:
    # a Ctrl-C then used to print a KeyboardInterrupt traceback from each of them.
    path, url, common = setup(trials=4, n_s=4000)  # packs of 2 train for seconds
    # From 50 ms after they appear: while they are launched this process ignores the
    # signal too, and one that loky's threads take then is lost (sweep/system/signals.py).
    for delay in (0.05, 0.3, 0.6):
        # A new study each time, so that it is still running when the Ctrl-C comes.
        fresh = ["--storage", url.replace("e2e.db", f"e2e-{delay}.db"), *common[2:]]
        proc = start("run", str(path), "--jobs", "2", *fresh)
        wait_for(lambda p=proc: len(children(p.pid)) >= 2, every=0.01)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err  # interrupted, not finished
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_diverging_trials_print_one_line_each_not_tracebacks(tmp_path, cifar_dir):
    (tmp_path / "bad.toml").write_text(
        study_text("e2e", trials=6, seed=3, n_s=20, search="low = 1e3\nhigh = 1e4")
    )
    url = f"sqlite:///{tmp_path}/bad.db"
    done = subprocess.run(
        sweep(
            "run",
            str(tmp_path / "bad.toml"),
            "--jobs",
            "2",
            "--storage",
            url,
            "--data-dir",
            str(cifar_dir),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: study 'e2e' made no progress: 6 trial(s) failed")
    assert "diverged" in error


def test_killing_the_orchestrator_ends_its_workers(setup):
    # kill -9 of `sweep run` alone: its workers notice and exit, so whoever reads the
    # run's output sees it end (the workers used to train on for ~90 s holding the pipe).
    path, url, common = setup(trials=6, n_s=2000)
    proc = subprocess.Popen(
        sweep("run", str(path), "--jobs", "2", *common),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    workers = wait_for(lambda: running_workers(url))
    _kill_and_see_workers_end(proc, workers, within=10)
    assert main(["resume", "e2e", *common]) == 0  # recovers the killed trials
    assert Counter(t.state for t in trials(url))[TrialState.COMPLETE] == 6


@pytest.mark.parametrize("attempt", range(3))
def test_killing_the_orchestrator_while_its_workers_start_ends_them(setup, attempt):
    # Killed before a worker process had set up its watch, the watch took the parent it
    # then had (init) for the orchestrator: the workers lived on for ~100 s with the pipe.
    path, _, common = setup(trials=6, n_s=2000)
    proc = subprocess.Popen(
        sweep("run", str(path), "--jobs", "2", *common),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    # The worker processes exist (loky's spawned interpreters), still importing.
    spawned = wait_for(lambda: {p for p in children(proc.pid) if "loky" in _cmdline(p)}, every=0.01)
    _kill_and_see_workers_end(proc, spawned, within=15)


def _kill_and_see_workers_end(proc: subprocess.Popen, workers, within: float) -> None:
    """kill -9 the command: its output ends, and its workers, within ``within`` s."""
    proc.kill()
    started = time.monotonic()
    proc.stdout.read()  # returns at EOF: when every process holding the pipe is gone
    assert time.monotonic() - started < within
    proc.wait()
    wait_for(lambda: not any(pid_alive(pid) for pid in workers), timeout=within)


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode(errors="replace")
    return ""


def test_resume_of_a_finished_study_runs_nothing(setup, capsys):
    path, url, common = setup(trials=2, n_s=20)
    assert main(["run", str(path), *common]) == 0
    before = len(trials(url))
    capsys.readouterr()
    assert main(["resume", "e2e", *common]) == 0
    out = capsys.readouterr().out
    assert "already finished" in out
    assert len(trials(url)) == before
    # Its tables, though: a Ctrl-C after the last trial came before `run` wrote them, and
    # the line it printed sends the user here.
    assert "wrote " in out and out.count("table.") == 3


def test_readers_in_a_loop_never_error_during_a_live_sweep(setup, capsys):
    path, url, common = setup(trials=6, n_s=200)
    proc = subprocess.Popen(
        sweep("run", str(path), "--jobs", "2", *common),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: trials(url))
    reads = 0
    while proc.poll() is None:
        assert main(["status", "--storage", url, "--json"]) == 0
        assert main(["trials", "e2e", "--storage", url, "--format", "json"]) == 0
        assert main(["show", "e2e", "0", "--storage", url, "--json"]) == 0
        err = capsys.readouterr().err
        assert "error" not in err
        reads += 1
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert reads >= 3
    rows = json.loads(
        subprocess.run(
            sweep("status", "--storage", url, "--json"), capture_output=True, text=True
        ).stdout
    )
    assert rows[0]["states"] == {"COMPLETE": 6}


def test_show_prints_a_trial_and_plots_its_curves(setup, capsys, tmp_path):
    path, url, common = setup(trials=1, n_s=10)
    assert main(["run", str(path), *common]) == 0
    capsys.readouterr()
    png = tmp_path / "curves.png"
    assert main(["show", "e2e", "0", "--storage", url, "--json", "--plot", str(png)]) == 0
    info = json.loads(capsys.readouterr().out)
    curves = info["user_attrs"]["result"]["curves"]
    assert info["state"] == "COMPLETE" and curves["step"][-1] == 20
    assert info["value"] == curves["val_accuracy"][-1]
    assert png.stat().st_size > 10_000
    assert main(["show", "e2e", "0", "--storage", url]) == 0
    text = capsys.readouterr().out
    assert "trial 0: COMPLETE" in text and "curves: 10 points" in text


def test_a_running_sweep_replaces_a_killed_worker(setup):
    path, url, common = setup(trials=6, n_s=400)
    proc = subprocess.Popen(
        sweep("run", str(path), "--jobs", "2", *common),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = wait_for(lambda: running_workers(url))[0]
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "a worker died" in out
    states = Counter(t.state.name for t in trials(url))
    assert states["COMPLETE"] == 6 and states["RUNNING"] == 0 and states["FAIL"] >= 1


def test_trials_formats_and_sorting(setup, capsys):
    path, url, common = setup(trials=3, n_s=5)
    assert main(["run", str(path), *common]) == 0
    capsys.readouterr()
    assert main(["trials", "e2e", "--storage", url, "--format", "json", "--sort", "lambda"]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = {"number", "state", "lambda", "value", "seconds", "se", "tied", "reason"}
    keys |= {"params", "metrics"}
    assert [set(r) for r in rows] == [keys] * 3
    assert all(r["reason"] == "" for r in rows)  # COMPLETE trials have none
    assert all(r["metrics"]["val_accuracy"] == r["value"] for r in rows)
    assert [r["lambda"] for r in rows] == sorted(r["lambda"] for r in rows)
    assert main(["trials", "e2e", "--storage", url, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("number,state,lambda,value,se,tied,val_accuracy,train_accuracy,")
    assert lines[0].endswith(",seconds,reason") and len(lines) == 4
    assert main(["trials", "e2e", "--storage", url]) == 0
    assert capsys.readouterr().out.count("COMPLETE") == 3


def test_sweep_worker_joins_is_interrupted_and_another_finishes(setup):
    path, url, common = setup(trials=6, n_s=400)
    watcher = subprocess.Popen(
        sweep("run", str(path), "--jobs", "0", *common),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: len(trials(url)) == 6)  # created and queued
    joined = ["worker", "e2e", "--threads", "1", *common]
    first = start(*joined)
    err = ctrl_c_mid_trial(first, url)
    assert first.returncode == 130 and "sweep resume e2e" in err
    assert not [t for t in trials(url) if t.state == TrialState.RUNNING]
    second = subprocess.run(sweep(*joined), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "worker done" in second.stdout
    _, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    final = trials(url)
    complete = [t.params["lambda"] for t in final if t.state == TrialState.COMPLETE]
    assert len(complete) == 6 and len(set(complete)) == 6
    interrupted = [t for t in final if t.user_attrs.get("fail_reason") == "interrupted"]
    assert interrupted and {lambda_of(t) for t in interrupted} <= set(complete)


@pytest.mark.parametrize("command", ["run", "worker"])
def test_sigterm_fails_running_trials_and_exits_143(setup, command):
    # SLURM's time limit, `docker stop` and systemd send SIGTERM: handled as Ctrl-C is.
    path, url, common = setup(trials=6, n_s=800)
    if command == "worker":  # --jobs 1: the trials run in the command's own process
        created = start("run", str(path), "--jobs", "0", *common)
        wait_for(lambda: trials(url))
        proc = start("worker", "e2e", *common)
    else:
        proc = start("run", str(path), "--jobs", "2", *common)
    wait_for(lambda: running_workers(url))
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated;" in err and "sweep resume e2e" in err
    assert "Traceback" not in err and "leaked" not in err, err
    if command == "worker":
        os.killpg(created.pid, signal.SIGTERM)
        created.communicate(timeout=60)
    final = trials(url)
    assert not [t for t in final if t.state == TrialState.RUNNING]
    stopped = [t for t in final if t.user_attrs.get("fail_reason") == "terminated"]
    assert stopped and all(t.user_attrs["requeued"] for t in stopped)
    waiting = {lambda_of(t) for t in final if t.state == TrialState.WAITING}
    assert {lambda_of(t) for t in stopped} <= waiting


def test_two_ctrl_c_in_quick_succession_still_clean_up(setup):
    # `timeout` and some terminals send SIGINT to a process group twice, ms apart.
    path, url, common = setup(trials=6, n_s=800)
    for gap in (0.0, 0.01, 0.05):
        # With Python's fault handler on, a SIGABRT prints every thread's stack: if the
        # command does not end, the failure shows where it stopped.
        proc = start("run", str(path), "--jobs", "2", *common, env=FAULTHANDLER)
        wait_for(lambda: running_workers(url))
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(gap)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its workers, if any are left
            raise AssertionError(
                f"gap {gap}: still running 60 s after two SIGINTs:\n{err}"
            ) from None
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "sweep resume e2e" in err, err
        assert not [t for t in trials(url) if t.state == TrialState.RUNNING]


def test_ctrl_c_while_the_storage_is_created_leaves_a_usable_storage(tmp_path, cifar_dir):
    # A Ctrl-C at any moment of the start-up: the next command finds a storage it can use.
    for i, delay in enumerate((0.3, 0.6, 0.9, 1.2, 1.5)):
        (tmp_path / "s.toml").write_text(study_text("s", trials=2, seed=3, n_s=50))
        url = f"sqlite:///{tmp_path}/s{i}.db"
        proc = start(
            "run",
            str(tmp_path / "s.toml"),
            "--jobs",
            "1",
            "--storage",
            url,
            "--data-dir",
            str(cifar_dir),
        )
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        done = subprocess.run(
            sweep("status", "--storage", url), capture_output=True, text=True, timeout=60
        )
        if (tmp_path / f"s{i}.db").exists():
            assert done.returncode == 0 and "being created" not in done.stderr, done.stderr


def test_a_closed_stdout_is_quiet_and_a_finished_run_stays_a_success(setup):
    path, url, common = setup(trials=3, n_s=50)
    shell = " ".join
    run = subprocess.run(
        [
            "bash",
            "-c",
            shell([*sweep("run", str(path), *common), "| true"]) + "; echo ${PIPESTATUS[0]}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.stdout.strip().splitlines()[-1] == "0", run.stderr
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr
    assert Counter(t.state for t in trials(url))[TrialState.COMPLETE] == 3
    for command in (["trials", "e2e"], ["status"], ["trials", "e2e", "--format", "csv"]):
        done = subprocess.run(
            [
                "bash",
                "-c",
                shell([*sweep(*command, "--storage", url), "| true"]) + "; echo ${PIPESTATUS[0]}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.stdout.strip().splitlines()[-1] == "0", done.stderr
        assert done.stderr == "", done.stderr


@pytest.mark.parametrize("closed", [">&-", "2>&-", "<&- >&- 2>&-"])
def test_a_command_started_with_closed_standard_streams_runs_as_usual(setup, closed):
    """`sweep run ... >&-`: the null device takes the closed descriptors, so nothing the
    command or its workers print can land in a file opened later (the database)."""
    path, url, common = setup(trials=3, n_s=50)
    command = " ".join([*sweep("run", str(path), "--jobs", "2", *common), closed])
    run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert Counter(t.state for t in trials(url))[TrialState.COMPLETE] == 3
    status = " ".join([*sweep("trials", "e2e", "--storage", url), closed])
    assert subprocess.run(["bash", "-c", status], timeout=120).returncode == 0
