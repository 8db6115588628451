"""examples/slurm/sweep.sbatch end to end: three array tasks against one PostgreSQL
storage, with stand-in `srun` and `scontrol` on PATH and SLURM's environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "slurm" / "sweep.sbatch"

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STANDINS = {
    "srun": 'exec "$@"\n',
    # `scontrol show job ID` as SLURM prints it (the end time in local time); any other
    # call (requeue) is only logged.
    "scontrol": 'echo "scontrol $*" >> "$STANDIN_LOG"\n'
    'if [ "$1" = show ]; then echo "JobId=$3 JobName=lambda-sweep"; '
    'echo "   StartTime=2026-01-01T00:00:00 EndTime=$STANDIN_END_TIME Deadline=N/A"; fi\n',
    "sweep": f'exec {sys.executable} -m sweep.cli "$@"\n',  # this checkout's sweep
}


def test_the_sbatch_script_asks_for_what_the_recipe_needs():
    lines = [line for line in SCRIPT.read_text().splitlines() if line.startswith("#SBATCH")]
    options = " ".join(lines)
    for needed in ("--array=", "--requeue", "--signal=TERM@60"):
        assert needed in options


def test_three_array_tasks_complete_the_study_exactly(pg_url, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STANDINS.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "scontrol.log"
    end = time.time() + 900
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "SWEEP_STORAGE": pg_url,
        "STUDY_FILE": str(ROOT / "examples" / "synthetic" / "coarse.toml"),
        "SLURM_ARRAY_JOB_ID": "4242",
        "SLURM_CPUS_PER_TASK": "1",
        "STANDIN_LOG": str(log),
        "STANDIN_END_TIME": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(end)),
    }
    tasks = []
    for i in range(3):
        task_env = {**env, "SLURM_ARRAY_TASK_ID": str(i), "SLURM_JOB_ID": str(4300 + i)}
        if i != 1:  # task 1 finds its end time through `scontrol show job`
            task_env["SLURM_JOB_END_TIME"] = str(int(end))
        tasks.append(
            subprocess.Popen(
                ["bash", str(SCRIPT)],
                cwd=tmp_path,
                env=task_env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    outputs = [task.communicate(timeout=240) for task in tasks]
    for task, (out, err) in zip(tasks, outputs, strict=True):
        assert task.returncode == 0, err
        assert "worker done: ran" in out
    study = optuna.load_study(study_name="synthetic-coarse", storage=pg_url)
    states = Counter(t.state.name for t in study.trials)
    assert states == {"COMPLETE": 10}  # exactly its target: nothing twice, nothing left
    assert len({t.params["lambda"] for t in study.trials}) == 10
    calls = log.read_text().splitlines()
    assert calls == ["scontrol show job 4301"]  # no requeue: every task finished


SLOW = """
import time

def objective(params, ctx):
    time.sleep(1.5)
    return -abs(params["x"] - 0.5)
"""


def test_a_preempted_task_requeues_itself_and_its_rerun_finishes_the_study(pg_url, tmp_path):
    """SIGTERM to the task's worker (SLURM's --signal before the time limit, or preemption):
    the running trials fail and are queued again, the worker exits 143, the script asks
    SLURM to requeue the task (`scontrol requeue`) and exits 0; the task's rerun (same job
    id, as SLURM reruns it) finishes the study with every planned value once."""
    import psutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STANDINS.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "slow.py").write_text(SLOW)
    study_file = tmp_path / "slow.toml"
    study_file.write_text(
        '[study]\nname = "slow"\ntrials = 6\nseed = 4\n'
        '[objective]\nfile = "slow.py"\nmetric = "value"\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    log = tmp_path / "scontrol.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "SWEEP_STORAGE": pg_url,
        "STUDY_FILE": str(study_file),
        "SLURM_ARRAY_JOB_ID": "5151",
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_JOB_ID": "5200",
        "SLURM_CPUS_PER_TASK": "2",
        "SLURM_JOB_END_TIME": str(int(time.time() + 900)),
        "STANDIN_LOG": str(log),
        "STANDIN_END_TIME": "unused",
    }

    def task() -> subprocess.Popen:
        return subprocess.Popen(
            ["bash", str(SCRIPT)], cwd=tmp_path, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    first = task()
    storage = optuna.storages.RDBStorage(pg_url)
    deadline = time.time() + 120
    while time.time() < deadline:  # until a trial runs
        try:
            study = optuna.load_study(study_name="slow", storage=storage)
            if any(t.state.name == "RUNNING" for t in study.trials):
                break
        except KeyError:
            pass
        time.sleep(0.2)
    workers = [
        p
        for p in psutil.Process(first.pid).children(recursive=True)
        if "worker" in " ".join(p.cmdline()) and "slow" in " ".join(p.cmdline())
    ]
    assert workers, "no sweep worker running under the task"
    workers[0].send_signal(15)  # what SLURM sends the job step
    _out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err  # requeued, not failed
    assert "scontrol requeue 5200" in log.read_text().splitlines()
    stopped = optuna.load_study(study_name="slow", storage=storage)
    failed = [t for t in stopped.trials if t.state.name == "FAIL"]
    assert failed and all("terminated" in t.user_attrs["fail_reason"] for t in failed)
    assert all(t.state.name != "RUNNING" for t in stopped.trials)

    second = task()  # SLURM runs the requeued task again
    _out, err = second.communicate(timeout=180)
    assert second.returncode == 0, err
    study = optuna.load_study(study_name="slow", storage=storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 6 and len({t.params["x"] for t in done}) == 6
    # Each failed trial's value ran again to completion, once.
    assert {t.params["x"] for t in failed} <= {t.params["x"] for t in done}
