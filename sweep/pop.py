"""Pop the trials a worker runs: exactly the ones its study still needs.

Planned values wait in a queue that holds only trials the study needs (topped up under
the study lock to exactly what is missing, sweep/study.py: queue_next), so workers pop them
in parallel without the lock; a sampled trial is checked and created under the lock. A
worker pops a pack of trials at most its share of what is left (DESIGN.md "Packed trials").
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from sweep.queries import earlier_holder, queued_trials
from sweep.study import QUEUE_AHEAD, Stored, finished, missing, queue_next
from sweep.studyfile import StudyFile

# A point is queued twice only by two top-ups at once (see pop_waiting), each of at most a
# few QUEUE_AHEAD trials, so its copies were created within this many trial ids.
DUPLICATE_WINDOW = 4096


@dataclass(frozen=True)
class Popped:
    """A trial this worker runs: Optuna's Trial, and its id in the storage (which the Trial
    keeps private), by which heartbeats and the trial's end are written."""

    trial: optuna.Trial
    id: int
    alone: bool = False  # it was running when a process died: run it in one of its own

    @property
    def number(self) -> int:
        return self.trial.number


def next_trials(
    stored: Stored,
    spec: StudyFile | None,
    size: int = 1,
    workers: int = 1,
) -> tuple[list[Popped], bool]:
    """Pop up to ``size`` trials if the study still needs them.

    ``spec`` is the study's file for planned samplers (None: Optuna samples). Planned values
    wait in a queue that holds only trials the study needs (it is topped up under the study
    lock to exactly what is missing, QUEUE_AHEAD at a time), so popping one needs no lock:
    workers pop in parallel and take the lock only to queue the next values (`refill`,
    or here when the queue is empty). A sampled trial is checked and created under the
    lock.

    A pack takes no more than its share of the study's unfinished trials (divided among
    ``workers``), so that workers starting together get equal packs and the last trials
    spread over the workers instead of queueing behind one pack.
    Returns (trials, whether the study has reached its target).
    """
    c = stored.counts()
    target = stored.recent_target()
    if finished(c) >= target:
        target = stored.target  # read afresh: a rerun may have raised it
        if finished(c) >= target:
            return [], True
    if spec is not None and c["WAITING"] == 0 and missing(stored, c):
        with stored.locked():  # nothing to pop: queue (or wait for the worker queueing)
            if _queue(stored, spec, size):
                c = stored.counts()
    if spec is not None:
        popped = pop_waiting(stored, _pack(c, target, size, workers))
    else:
        with stored.locked():  # as short as possible: every worker of the study waits on it
            c, target = stored.counts(), stored.target
            if finished(c) >= target:
                return [], True
            with warnings.catch_warnings():
                # Optuna warns that heartbeats belong to optimize(); this worker records
                # them itself (worker.Heartbeat) around ask/tell.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                n = _pack(c, target, size, workers)
                trials = [stored.study.ask() for _ in range(n)]  # samples each
        find = stored.storage.get_trial_id_from_study_id_trial_number
        popped = [Popped(t, find(stored.study_id, t.number)) for t in trials]
    return popped, False  # who runs them is recorded beside the trial (worker.Heartbeat)


def refill(stored: Stored, spec: StudyFile, size: int = 1) -> None:
    """Queue the next planned values if the queue runs low, unless another worker is doing
    it. A worker calls this beside the trials it has popped (worker.Heartbeat): a top-up
    writes ~16 trials, and doing it between two trials made that worker wait."""
    c = stored.counts()
    if c["WAITING"] < max(size, QUEUE_AHEAD // 2) and missing(stored, c):
        with stored.locked(wait=False) as held:
            if held:
                _queue(stored, spec, size)


def _queue(stored: Stored, spec: StudyFile, size: int) -> int:
    """Under the study lock: queue the next planned values, enough for two packs. Only the
    first ``target`` points: replacing failed ones is the orchestrator's job."""
    return queue_next(stored, spec, replace=False, ahead=max(QUEUE_AHEAD, 2 * size))


def _pack(c: dict[str, int], target: int, size: int, workers: int) -> int:
    room = target - finished(c) - c["RUNNING"]
    share = -(-(room + c["RUNNING"]) // workers)  # of the unfinished trials, rounded up
    return max(min(size, share, room), 0)


def pop_waiting(stored: Stored, n: int) -> list[Popped]:
    """Pop up to ``n`` queued trials, oldest first, without the study lock.

    Why not `study.ask()`: it pops the same way, but when the queue is empty it creates a
    new trial from the sampler, so a worker could only call it under the study lock, and
    that lock then serialised every pop of every worker (bench/scale.py, 16 workers,
    0.5-s trials: ~0.1 s per pop spent waiting). This is ask()'s pop without that fallback,
    through public calls: claim a WAITING trial with `set_trial_state_values` (it returns
    False when another worker claimed it first) and wrap it in `optuna.trial.Trial`, as
    ask() does. Pinned by tests/test_storage.py (8 processes, each queued value once).

    Queued trials hold their values as parameters already (sweep/enqueue.py), so
    the objective's `suggest` calls find them and write nothing. ask() also lists every
    unfinished trial on each pop (to fill Optuna's storage cache), which cost more CPU than
    the rest of a pop together (sweep/queries.py); this pop lists only the oldest queued.

    A queued point that a live trial with a lower number already holds is dropped (FAIL,
    "a duplicate"): it can only be queued twice when a database restart ended the session
    holding the study lock in the middle of a top-up (tests/test_postgres.py, faults).
    """
    db, popped = stored.storage, []
    candidates = queued_trials(db, stored.study_id, n + QUEUE_AHEAD) if n else []
    while candidates and len(popped) < n:
        queued = candidates.pop(0)
        if queued.crashes and popped:
            continue  # it ended a worker before: it runs alone, so it cannot take others down
        try:
            claimed = db.set_trial_state_values(queued.trial_id, state=TrialState.RUNNING)
        except optuna.exceptions.UpdateFinishedTrialError:
            claimed = False
        if not claimed:  # another worker popped it: others are after the next ones too
            k = random.randrange(len(candidates) or 1)
            candidates = candidates[k:] + candidates[:k]
            continue
        first = earlier_holder(db, stored.study_id, queued.trial_id, DUPLICATE_WINDOW)
        if first is not None:
            db.set_trial_user_attr(queued.trial_id, "fail_reason", f"a duplicate of trial {first}")
            db.set_trial_user_attr(queued.trial_id, "requeued", True)  # not its value failing
            db.set_trial_state_values(queued.trial_id, state=TrialState.FAIL)
            continue
        if not queued.params:
            # Queued without its parameters (by enqueue_trial, or by a sweep older than
            # sweep/enqueue.py): the objective's `suggest` records them, which Optuna's
            # storage cache can only do for a trial it has listed.
            stored.trials()
        trial = optuna.trial.Trial(stored.study, queued.trial_id)
        popped.append(Popped(trial, queued.trial_id, alone=queued.crashes > 0))
        if queued.crashes:
            break
    return popped
