"""Cluster features: time budgets (sweep/execution/budget.py) and one device per worker
(sweep/execution/devices.py), through their interfaces and the real `sweep` command."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import time

import optuna
import pytest

from sweep.errors import SweepError
from sweep.execution.budget import Budget, estimate, parse_duration
from sweep.execution.devices import check, parse_gpus
from tests.conftest import sweep

SLEEPY = """
import os, time

def objective(params, ctx):
    time.sleep(float(os.environ.get("SLEEP_SECONDS", "1.5")))
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    return {
        "score": params["lambda"],
        "cuda": float(seen) if seen else -1.0,
        "ctx_device_matches": float(ctx.device == seen),
    }
"""

STUDY = """
[study]
name = "sleepy"
trials = {trials}
seed = 1
sampler = "random"
[objective]
file = "sleepy.py"
metric = "score"
[search.lambda]
low = 1e-5
high = 1e-1
"""


def test_durations_parse_with_or_without_a_unit():
    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1.5h") == 5400
    assert parse_duration("2d") == 172800
    for bad in ("", "10x", "-5", "m", "1h30m"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(bad)


def test_the_earlier_of_the_time_limit_and_the_job_end_time_wins():
    assert Budget.start(None, now=100.0, environ={}) is None
    assert Budget.start(60, now=100.0, environ={}) == Budget(160.0, "the time limit")
    env = {"SLURM_JOB_END_TIME": "130"}
    ended = Budget.start(60, now=100.0, environ=env)
    assert ended == Budget(130.0, "the job's end time (SLURM_JOB_END_TIME)")
    assert Budget.start(None, now=100.0, environ=env).deadline == 130.0
    assert Budget.start(10, now=100.0, environ=env).deadline == 110.0
    assert Budget.start(None, now=100.0, environ={"SLURM_JOB_END_TIME": "x"}) is None


def test_a_job_end_time_that_is_not_a_time_is_left_out_with_a_warning(caplog):
    # It was left out without a word: the user counted on the run stopping before the job.
    for value in ("garbage", "nan", "inf"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="sweep"):
            for _ in range(2):  # (said once: sweep reproduce reads it at every stage)
                assert Budget.start(None, now=100.0, environ={"SLURM_JOB_END_TIME": value}) is None
        assert caplog.text.count(f"SLURM_JOB_END_TIME ('{value}') is not a time") == 1
    caplog.clear()
    with caplog.at_level("WARNING", logger="sweep"):
        assert Budget.start(None, now=100.0, environ={"SLURM_JOB_END_TIME": "130"})
    assert not caplog.text


def test_a_trial_starts_only_if_it_ends_before_the_deadline():
    budget = Budget(100.0)
    assert budget.stop_reason([], now=99.0) is None  # no finished trial: go on until then
    assert budget.stop_reason([], now=100.0) == "the time limit is reached"
    assert budget.stop_reason([60.0], now=30.0) is None  # 70 s left
    why = budget.stop_reason([60.0, 50.0], now=60.0)
    assert why == "the time limit leaves 40 s, a trial takes ~59 s"
    # A high quantile of the recent durations: one quick trial does not let a long one in.
    assert estimate([10.0] * 9 + [1.0]) == 10.0
    assert estimate([1.0] * 9 + [10.0]) == pytest.approx(1.9)
    assert estimate([]) is None


def test_gpus_parse_and_bound_the_jobs():
    assert parse_gpus("0,1") == ("0", "1")
    assert parse_gpus("auto", {"CUDA_VISIBLE_DEVICES": "2, 3"}) == ("2", "3")
    with pytest.raises(ValueError, match=r"auto needs CUDA_VISIBLE_DEVICES .*\(it is not set\)"):
        parse_gpus("auto", {})
    with pytest.raises(ValueError, match=r"\(it is ''\)"):  # set, to nothing: not "not set"
        parse_gpus("auto", {"CUDA_VISIBLE_DEVICES": ""})
    with pytest.raises(ValueError, match="names a device twice"):
        parse_gpus("0,0")
    uuid = "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"
    assert parse_gpus(f"{uuid},MIG-{uuid}/1/0") == (uuid, f"MIG-{uuid}/1/0")
    # Tokens CUDA would not recognise: it would see no device and the function would
    # run on the CPU without a word.
    for wrong in ("cuda:0", "gpu0", "0,cuda1", "-1"):
        with pytest.raises(ValueError, match=r"is not a device.*give indices"):
            parse_gpus(wrong)
    with pytest.raises(
        ValueError, match=re.escape("'-1' is not a device (in CUDA_VISIBLE_DEVICES ('-1'));")
    ):
        parse_gpus("auto", {"CUDA_VISIBLE_DEVICES": "-1"})
    check(("0", "1"), 2, 4)
    check((), 1, 16)  # no devices: no bound
    with pytest.raises(SweepError, match="--jobs 3 is more than 2 device"):
        check(("0", "1"), 1, 3)


def _study(tmp_path, trials=20):
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    (tmp_path / "sleepy.toml").write_text(STUDY.format(trials=trials))
    return tmp_path / "sleepy.toml"


def _run(*args, env=None, timeout=60):
    return subprocess.run(
        sweep(*args), capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def _create(tmp_path, url):
    """Create the study and leave (what examples/slurm/ does once per task)."""
    made = _run(
        "run", str(_study(tmp_path)), "--storage", url, "--jobs", "0", "--time-limit", "0",
        "--out", str(tmp_path / "reports"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "run stops: the time limit is reached; 0/20 trials finished" in made.stdout


def _trials(url):
    return optuna.load_study(study_name="sleepy", storage=url).trials


def _at(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch)  # Optuna's naive local times


@pytest.mark.slow
def test_a_worker_with_a_time_limit_starts_no_trial_it_cannot_finish(tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    _create(tmp_path, url)
    limit, trial = 10.0, 1.5  # start-up takes 2-6 s of it on a busy 2-core machine
    started = time.time()
    done = _run("worker", "sleepy", "--storage", url, "--time-limit", f"{limit:g}s")
    ended = time.time()
    assert done.returncode == 0, done.stderr
    deadline = started + limit
    ran = [t for t in _trials(url) if t.datetime_start is not None]
    timeline = [
        (t.number, (t.datetime_start - _at(deadline)).total_seconds(),
         (t.datetime_complete - _at(deadline)).total_seconds())
        for t in ran
    ]  # fmt: skip
    print("trial, start and end relative to the deadline (s):", timeline)
    assert ran and all(t.state.name == "COMPLETE" for t in ran)  # running trials finished
    assert all(end <= 0.05 for _, _, end in timeline)  # none ends past the deadline
    # It stopped because the next one would not fit, not earlier: it had less than a trial.
    assert timeline[-1][2] > -(1.1 * 2 * trial)
    assert ended - started <= limit + trial + 3.0  # + the interpreter's exit here
    assert re.search(
        r"^worker stops: the time limit leaves \d+\.\d s, a trial takes ~1\.\d s", done.stdout, re.M
    ), done.stdout
    assert f"ran {len(ran)} trial(s)" in done.stdout


@pytest.mark.slow
def test_run_with_a_time_limit_stops_topping_up_and_stays_resumable(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    started = time.time()
    done = _run(
        "run", str(_study(tmp_path)), "--storage", url, "--jobs", "2", "--time-limit", "12",
        "--out", str(tmp_path / "reports"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    trials = [t for t in _trials(url) if t.datetime_start is not None]
    assert trials and all(t.state.name == "COMPLETE" for t in trials)
    assert all(t.datetime_complete <= _at(started + 12.05) for t in trials)
    assert re.search(r"^run stops: the time limit (leaves|is reached)", done.stdout, re.M)
    assert f"{len(trials)}/20 trials finished, the rest can run later: sweep resume" in done.stdout


def _devices(url):
    """(pid, device recorded with the trial, CUDA_VISIBLE_DEVICES the function saw)."""
    seen = []
    for t in _trials(url):
        if t.state.name == "COMPLETE":
            worker, metrics = t.user_attrs["worker"], t.user_attrs["result"]["metrics"]
            assert metrics["ctx_device_matches"] == 1.0
            seen.append((worker["pid"], worker["device"], str(int(metrics["cuda"]))))
    return seen


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gpus", "per_gpu", "jobs"), [("0,1", 1, 2), ("3", 2, 2)], ids=["own", "shared"]
)
def test_each_worker_process_sees_its_own_device(tmp_path, gpus, per_gpu, jobs):
    url = f"sqlite:///{tmp_path}/g.db"
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    (tmp_path / "sleepy.toml").write_text(STUDY.format(trials=6))
    env = {**os.environ, "SLEEP_SECONDS": "0.4", "CUDA_VISIBLE_DEVICES": "7"}
    done = _run(
        "run", str(tmp_path / "sleepy.toml"), "--storage", url, "--jobs", str(jobs),
        "--gpus", gpus, "--workers-per-gpu", str(per_gpu), "--out", str(tmp_path / "out"),
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = _devices(url)
    print("pid, recorded device, CUDA_VISIBLE_DEVICES seen:", sorted(set(seen)))
    assert len(seen) == 6 and all(device == cuda for _, device, cuda in seen)
    per_pid = {}
    for pid, device, _ in seen:
        per_pid.setdefault(pid, set()).add(device)
    assert all(len(d) == 1 for d in per_pid.values())  # a process keeps its device
    used = [d for ds in per_pid.values() for d in ds]
    assert set(used) <= set(gpus.split(","))
    assert max(used.count(d) for d in used) <= per_gpu  # shared only as far as allowed
    if per_gpu == 1:
        assert len(per_pid) == 2 and sorted(used) == ["0", "1"]


@pytest.mark.slow
def test_a_worker_in_its_own_process_takes_its_device_before_the_function_loads(tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    _create(tmp_path, url)
    env = {**os.environ, "SLEEP_SECONDS": "0", "CUDA_VISIBLE_DEVICES": "4,5"}
    done = _run("worker", "sleepy", "--storage", url, "--gpus", "auto", env=env)
    assert done.returncode == 0, done.stderr
    assert {(device, cuda) for _, device, cuda in _devices(url)} == {("4", "4")}
    too_many = _run("worker", "sleepy", "--storage", url, "--gpus", "0", "--jobs", "2")
    assert too_many.returncode == 2
    assert too_many.stderr.strip().splitlines() == [
        "error: --jobs 2 is more than 1 device(s) x --workers-per-gpu 1; lower --jobs, "
        "list more --gpus or raise --workers-per-gpu"
    ]


def test_ctx_device_is_none_without_gpus():
    from sweep.objectives.objective import TrialContext

    trial = optuna.create_study().ask()
    assert TrialContext(trial, 0, 1, None).device is None
    assert json.dumps(TrialContext(trial, 0, 1, None, "2").device) == '"2"'


def test_the_python_api_takes_gpus_as_the_flag_does(tmp_path, monkeypatch):
    # gpus="0,1" was split into the characters "0", "," and "1": the second worker ran
    # with CUDA_VISIBLE_DEVICES="," (no device at all), without a word.
    import sweep

    monkeypatch.setenv("SLEEP_SECONDS", "0.2")
    url = f"sqlite:///{tmp_path}/api.db"
    result = sweep.run(_study(tmp_path, trials=6), storage=url, jobs=2, gpus="0,1")
    assert result.counts["COMPLETE"] == 6 and result.counts["FAIL"] == 0  # "," is no number
    assert {device for _, device, _ in _devices(url)} <= {"0", "1"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"threads": 0}, r"threads \(0\) must be a whole number of BLAS threads"),
        ({"time_limit": -1}, r"time_limit \(-1\) must be a number of seconds, 0 or more"),
        ({"gpus": "0,,1"}, r"gpus: '0,,1' is not a list of devices"),
        ({"gpus": ["0"], "jobs": 2}, r"--jobs 2 is more than 1 device"),
        ({"workers_per_gpu": 0, "gpus": "0"}, r"workers_per_gpu \(0\) must be a whole number"),
        ({"gpus": True}, r"gpus \(True\) must be devices"),  # was a TypeError traceback
        ({"gpus": b"01"}, r"gpus \(b.01.\) must be devices"),  # was devices 48 and 49
        ({"gpus": bytearray(b"0")}, r"gpus \(bytearray.* must be devices"),
        ({"time_limit": 10**400}, r"time_limit \(1000.*\.\.\.\) must be a number"),
    ],
)
def test_the_python_api_refuses_what_the_flags_refuse(tmp_path, call, message):
    # threads=0 and time_limit=-1 were taken (the latter ran nothing, without a word)
    import sweep

    url = f"sqlite:///{tmp_path}/o.db"
    _create(tmp_path, url)
    before = len(_trials(url))
    with pytest.raises(sweep.SweepError, match=message):
        sweep.worker("sleepy", storage=url, **call)
    with pytest.raises(sweep.SweepError, match=message):
        sweep.run(_study(tmp_path), storage=url, **call)
    assert len(_trials(url)) == before


def test_a_worker_of_no_processes_is_refused_not_divided_by(tmp_path):
    import sweep

    url = f"sqlite:///{tmp_path}/z.db"
    _create(tmp_path, url)
    with pytest.raises(sweep.SweepError, match=r"jobs \(0\) must be .* processes, 1 or more"):
        sweep.worker("sleepy", storage=url, jobs=0)  # was a ZeroDivisionError
    with pytest.raises(sweep.SweepError, match=r"jobs \(0\) must be .* processes, 1 or more"):
        sweep.resume("sleepy", storage=url, jobs=0)


def test_the_python_api_takes_numpys_integers_and_no_gpus(tmp_path):
    # np.int64(1) "must be a whole number"; gpus=None or 0 ended in TypeError tracebacks
    import numpy as np

    import sweep

    url = f"sqlite:///{tmp_path}/n.db"
    _create(tmp_path, url)
    done = sweep.worker(
        "sleepy", storage=url, jobs=np.int64(1), threads=np.int32(1), gpus=None,
        time_limit=np.float32(0), workers_per_gpu=np.int64(1),
    )  # fmt: skip
    assert done.ran == 0 and "time limit" in done.stopped
    assert sweep.worker("sleepy", storage=url, gpus=0, time_limit=0).ran == 0
