"""Recover trials whose worker is gone, so that no trial stays RUNNING forever.

A RUNNING trial is recovered (marked FAIL with a reason, its values queued again once) when
its heartbeat is stale (a journal storage: its "heartbeat" attribute, sweep/store/journal.py), or
when it was started on this host by a process that no longer exists, or when it never sent
a heartbeat and is older than the grace period.
Whether a process exists: sweep.system.portable.pid_alive (psutil, any system).
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Callable, Collection

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.store import journal
from sweep.store.queue import requeue
from sweep.store.records import worker_of
from sweep.store.storage import GRACE_SECONDS
from sweep.store.study import Stored
from sweep.system.portable import pid_alive


def why_gone(trial: FrozenTrial, host: str, now: datetime.datetime) -> str | None:
    """Why the trial's worker is provably gone, or None if it may still be running."""
    worker = worker_of(trial)
    if worker and worker["host"] == host and not pid_alive(int(worker["pid"])):
        if worker.get("watcher") and pid_alive(int(worker["watcher"])):
            return None  # run alone: the worker watching its process records how it ended
        return f"worker process {worker['pid']} on {host} is gone"
    start = trial.datetime_start
    if not worker and start is not None:
        age = (now - start).total_seconds()
        if age > GRACE_SECONDS:
            return f"no worker recorded and started {age:.0f} s ago"
    return None


def recover(
    stored: Stored,
    spare: Callable[[FrozenTrial], bool] | None = None,
    blameless: Collection[int] = (),
) -> list[str]:
    """Fail and re-queue every RUNNING trial whose worker is gone; return notes.
    ``spare``: trials left to someone else (a worker's own command's: see worker.work);
    ``blameless``: the numbers of trials whose end is known not to be their values' fault
    (not counted as a crash: pool.end_alone_runs)."""
    host = socket.gethostname()
    notes = []
    # Under the study lock: failing a trial and queueing its values again must look like one
    # step to a top-up, which would otherwise queue a new value for the failed one.
    with stored.locked():
        # Stale heartbeats: Optuna fails them and the storage's callback queues their values.
        optuna.storages.fail_stale_trials(stored.study)
        now = datetime.datetime.now()
        for trial in stored.trials(TrialState.RUNNING):
            if spare is not None and spare(trial):
                continue
            reason = why_gone(trial, host, now)
            reason = reason or journal.stale(stored.storage, trial, GRACE_SECONDS)
            crashed = trial.number not in blameless
            if reason and requeue(stored, trial, reason, crashed=crashed):
                notes.append(f"trial {trial.number} recovered: {reason}; its values run again")
    return notes


def requeue_abandoned(stored: Stored, number: int) -> bool:
    """Fail and re-queue a trial this worker had to give up when it lost the database
    (it may have no heartbeat yet, so nothing else would ever call it stale)."""
    with stored.locked():  # one step for a top-up (see recover)
        trial = next((t for t in stored.trials(TrialState.RUNNING) if t.number == number), None)
        reason = "its worker lost the database while running it"
        return trial is not None and requeue(stored, trial, reason, crashed=False)


def fail_running(stored: Stored, *, reason: str) -> int:
    """After our workers were stopped (or this process's own worker, pool.run_here): fail
    and re-queue their trials that are still RUNNING."""
    host, me = socket.gethostname(), os.getpid()
    n = 0
    with stored.locked():  # one step for a top-up (see recover)
        for trial in stored.trials(TrialState.RUNNING):
            worker = worker_of(trial)
            pid = int(worker["pid"]) if worker else None
            gone = not worker or (worker["host"] == host and (pid == me or not pid_alive(pid)))
            if gone and requeue(stored, trial, reason, crashed=False):
                n += 1
    return n
