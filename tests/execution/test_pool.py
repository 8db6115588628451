"""pool.run_each: independent calls side by side in worker processes, one BLAS thread each."""

import functools
import os
import time
from pathlib import Path

import numpy as np
import pytest

from sweep.execution import pool, processes


def meet(folder: str, me: int, other: int) -> tuple[int, int]:
    """Mark this call as started, then wait for the other: returns only if both run at
    the same time. With the BLAS thread count the call ran with."""
    from threadpoolctl import threadpool_info

    Path(folder, str(me)).write_text("")
    deadline = time.monotonic() + 60
    while not Path(folder, str(other)).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"call {other} never started beside call {me}")
        time.sleep(0.01)
    return me, max(p["num_threads"] for p in threadpool_info())


def fail() -> None:
    raise ValueError("this run failed")


def test_calls_run_side_by_side_with_one_blas_thread_and_report_as_they_finish(tmp_path):
    results = {}
    calls = [
        functools.partial(meet, str(tmp_path), 0, 1),
        functools.partial(meet, str(tmp_path), 1, 0),
    ]
    pool.run_each(calls, 2, lambda i, r: results.setdefault(i, r))
    assert results == {0: (0, 1), 1: (1, 1)}


def test_a_failing_call_is_raised_after_the_others_are_recorded(tmp_path):
    results = {}
    calls = [fail, functools.partial(Path.write_text, tmp_path / "x", "done")]
    with pytest.raises(ValueError, match="this run failed"):
        pool.run_each(calls, 2, lambda i, r: results.setdefault(i, r))
    assert results == {1: 4}


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (Linux; a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_stop_ends_the_idle_workers_at_once():
    pool.start(2, 1)
    pids = set()
    pool.run_each([os.getpid] * 4, 2, lambda i, pid: pids.add(pid))
    assert pids and all(alive(pid) for pid in pids)  # idle, kept for the next call
    processes.stop()
    assert not any(alive(pid) for pid in pids)


_KEPT = []  # what grow() keeps alive in the worker process between calls


def grow(megabytes: int) -> int:
    """Keep ``megabytes`` of touched memory, as a worker keeps its memory-mapped dataset,
    for longer than loky's check interval (1 s)."""
    _KEPT.append(np.ones(megabytes * 2**20, dtype=np.uint8))
    time.sleep(1.2)
    return os.getpid()


def test_a_worker_that_keeps_its_dataset_between_calls_is_not_restarted():
    # loky takes 300 MB of growth over a call for a leak and restarts the worker after it
    # (its default LOKY_MAX_MEMORY_LEAK_SIZE); a study's worker keeps more than that.
    processes.stop()  # a fresh process: loky measures its reference size after its first call
    pids = []
    for call in (os.getpid, functools.partial(grow, 400), os.getpid):
        pool.run_each([call], 1, lambda i, pid: pids.append(pid))
    assert len(set(pids)) == 1, pids


def _sleepy(params, ctx):
    time.sleep(1.5)
    return params["x"]


def test_a_stop_as_the_workers_get_their_trials_stops_them(tmp_path, monkeypatch):
    # A signal held back while the workers were given their job was raised after the
    # block, outside pool.run's clean-up: the workers trained on (the trials ended
    # COMPLETE after the error) and the command said none was running.
    import signal

    import optuna

    import sweep
    from sweep.errors import Interrupted
    from sweep.execution import processes

    calls = []
    real = processes.executor

    def executor(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # pool.run's (the first is pool.start's warm-up)
            os.kill(os.getpid(), signal.SIGINT)  # held until the trials are submitted
        return real(*args, **kwargs)

    monkeypatch.setattr(processes, "executor", executor)
    url = f"sqlite:///{tmp_path}/s.db"
    study = {"study": {"name": "s", "trials": 4}, "search": {"x": {"low": 1.0, "high": 2.0}}}
    with pytest.raises(Interrupted) as stopped:
        sweep.run(study, objective=_sleepy, storage=url, jobs=2)
    assert "no trial of this command was running" not in str(stopped.value)
    # the call's stop ends with it: a later run in this process (the next test's) was
    # stopped at its first poll ("no trial was running")
    from sweep.system import signals

    assert not signals.STOP.is_set()
    time.sleep(3)  # what the workers would have finished meanwhile
    states = [t.state.name for t in optuna.load_study(study_name="s", storage=url).trials]
    assert "COMPLETE" not in states and "RUNNING" not in states, states
