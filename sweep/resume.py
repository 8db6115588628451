"""Recover trials whose worker is gone, so that no trial stays RUNNING forever.

A RUNNING trial is recovered (marked FAIL with a reason, its values queued again once) when
its heartbeat is stale, or when it was started on this host by a process that no longer
exists, or when it never sent a heartbeat and is older than the grace period.
"""

from __future__ import annotations

import datetime
import os
import socket
import warnings

import optuna
from optuna.trial import TrialState

from sweep.storage import GRACE_SECONDS, retry_callback


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _gone(trial: optuna.trial.FrozenTrial, host: str, now: datetime.datetime) -> str | None:
    """Why the trial's worker is provably gone, or None if it may still be running."""
    worker = trial.user_attrs.get("worker")
    if worker and worker["host"] == host and not pid_alive(int(worker["pid"])):
        return f"worker process {worker['pid']} on {host} is gone"
    start = trial.datetime_start
    if not worker and start is not None:
        age = (now - start).total_seconds()
        if age > GRACE_SECONDS:
            return f"no worker recorded and started {age:.0f} s ago"
    return None


def recover(study: optuna.Study) -> list[str]:
    """Fail and re-queue every RUNNING trial whose worker is gone; return notes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # stale heartbeats; re-queued by the callback
    host = socket.gethostname()
    now = datetime.datetime.now()
    notes = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _gone(trial, host, now)
        if reason and _fail(study, trial, reason):
            notes.append(f"trial {trial.number} recovered: {reason}; its values run again")
    return notes


def fail_running(study: optuna.Study, *, reason: str) -> int:
    """After our workers were stopped: fail and re-queue their trials that are still RUNNING."""
    host = socket.gethostname()
    n = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        gone = not worker or (worker["host"] == host and not pid_alive(int(worker["pid"])))
        if gone and _fail(study, trial, reason):
            n += 1
    return n


def _fail(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str) -> bool:
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another process finished or recovered it first
    # A trial killed between being popped and asking for its values has no params yet,
    # but its queued values are in fixed_params: queue those again too.
    if trial.params or trial.system_attrs.get("fixed_params"):
        retry_callback()(study, storage.get_trial(trial._trial_id))
    return True
