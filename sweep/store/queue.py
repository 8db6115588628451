"""A study's queue: what is queued (planned values, topped up to exactly what the study is
missing), how workers pop it, and how a failed trial's values are queued again.

Planned values wait in a queue that holds only trials the study needs (topped up under
the study lock to exactly what is missing: `top_up`, `queue_next`), so workers pop them
in parallel without the lock (`next_trials`, `pop_waiting`); a sampled trial is checked and
created under the lock. A worker pops a pack of trials at most its share of what is left
(README "Packed trials"). A trial whose worker is gone is failed and queued again
(`requeue`).

Exactly once, whatever dies when: failing a trial and queueing its values again are two
writes, so a process killed or a database restarted between them leaves values failed
that were to run again; the next top-up finds them and queues them again (`lost_retries`).
A point queued twice (a restart also drops the lock's session) runs once: the later copy
is dropped when it is popped (`pop_waiting`).
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.spec import plan
from sweep.spec.studyfile import StudyFile
from sweep.store import records
from sweep.store.enqueue import MAX_CRASHES, MAX_RETRY, enqueue, enqueue_again
from sweep.store.queries import earlier_holder, queued_trials
from sweep.store.records import crashes_of, fail_reason, point_of, requeued, values_of
from sweep.store.study import Stored, finished

# A point is queued twice only by two top-ups at once (see pop_waiting), each of at most a
# few QUEUE_AHEAD trials, so its copies were created within this many trial ids.
DUPLICATE_WINDOW = 4096
DUPLICATE = "a duplicate of trial"  # + the number of the trial that holds the point


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
    if spec is not None and size > 1:
        # A pack is popped under the study lock, oldest first. Which trials train side by
        # side, and in which columns of the pack, decides their float32 rounding (OpenBLAS
        # gives a column of a wide product a few ulps' difference by its position): popped
        # in parallel, two workers starting together interleaved their packs, and a rerun
        # of the same study gave other numbers (final test accuracy 51.66% or 52.00%).
        # Packs are for the built-in network, whose trials run for seconds to minutes.
        with stored.locked():
            c = stored.counts()
            popped = pop_waiting(stored, _pack(c, target, size, workers))
    elif spec is not None:
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
                trials = []
                for number in range(sum(c.values()), sum(c.values()) + n):
                    _seed_sampler(stored, number)
                    trials.append(stored.study.ask())  # samples it
        find = stored.storage.get_trial_id_from_study_id_trial_number
        popped = [Popped(t, find(stored.study_id, t.number)) for t in trials]
    return popped, False  # who runs them is recorded beside the trial (worker.Heartbeat)


def _seed_sampler(stored: Stored, number: int) -> None:
    """The sampler's random stream for trial ``number`` (the next one: trials are asked for
    only under the study lock, so no two asks see the same count). Seeded by the worker's
    index alone, a rerun, a top-up or a second `sweep run` drew the values of the first
    trials again (measured: 4 of 6 repeated on a top-up, 5-6 of 20 with two processes)."""
    seed = stored.spec.study.seed + 1 + number
    stored.study.sampler = plan.sampler_for(stored.spec.study.sampler, seed)


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
    ask() does. Pinned by tests/store/test_storage.py (8 processes, each queued value once).

    Queued trials hold their values as parameters already (sweep/store/enqueue.py), so
    the objective's `suggest` calls find them and write nothing. ask() also lists every
    unfinished trial on each pop (to fill Optuna's storage cache), which cost more CPU than
    the rest of a pop together (sweep/store/queries.py); this pop lists only the oldest queued.

    A queued point that a live trial with a lower number already holds is dropped (FAIL,
    "a duplicate"): it can only be queued twice when a database restart ended the session
    holding the study lock in the middle of a top-up or a requeue (tests/store/test_postgres.py,
    faults).
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
            duplicate = f"{DUPLICATE} {first}"
            db.set_trial_user_attr(queued.trial_id, records.FAIL_REASON, duplicate)
            db.set_trial_user_attr(queued.trial_id, records.REQUEUED, True)  # not its value failing
            db.set_trial_state_values(queued.trial_id, state=TrialState.FAIL)
            continue
        if not queued.params:
            # Queued without its parameters (by enqueue_trial, or by a sweep older than
            # sweep/store/enqueue.py): the objective's `suggest` records them, which Optuna's
            # storage cache can only do for a trial it has listed.
            stored.trials()
        trial = optuna.trial.Trial(stored.study, queued.trial_id)
        popped.append(Popped(trial, queued.trial_id, alone=queued.crashes > 0))
        if queued.crashes:
            break
    return popped


# --- queueing planned values and failed ones again -------------------------------


def missing(stored: Stored, counts: dict[str, int] | None = None) -> int:
    """How many more trials must be queued or started to reach the target."""
    c = counts or stored.counts()
    return max(stored.target - finished(c) - c["RUNNING"] - c["WAITING"], 0)


def pending_points(
    stored: Stored, spec: StudyFile, n: int, trials: list[FrozenTrial] | None = None
) -> list[Any]:
    """The next ``n`` planned points not yet given to any trial (fewer if a grid runs out).

    A point is an int (index into a seeded sequence) or, for a grid, [j, intervals]
    (the fraction j / intervals of the range): a grid refined to more points keeps its
    old points and adds only the new ones. ``trials``: the study's, if already listed.
    """
    trials = stored.trials() if trials is None else trials
    taken = [p for t in trials if (p := point_of(t)) is not None]
    if spec.study.sampler == "grid":
        have = {Fraction(*p) for p in taken if isinstance(p, list)}
        return [
            [u.numerator, u.denominator] for u in plan.grid_units(stored.target) if u not in have
        ][:n]
    start = max((p for p in taken if isinstance(p, int)), default=-1) + 1
    return list(range(start, start + n))


# Planned values are queued at most this many ahead of the workers, who queue more as they
# pop (next_trials). Readers that list a study's unfinished trials through Optuna (top-ups,
# recovery, the watching orchestrator) pay for every queued one; when pops still went
# through Optuna's ask, queueing a whole study made each pop cost O(trials) (bench/scale.py,
# 16 workers, 0.5-s trials: 400 queued at once -> 0.67 of their time inside trials).
QUEUE_AHEAD = 16


def top_up(stored: Stored, spec: StudyFile) -> int:
    """Enqueue the next planned points, up to QUEUE_AHEAD waiting, so that the queue covers
    the missing trials (workers queue the rest as they pop: `queue_next`).

    Runs under the study lock, as workers' check-and-pop does, so exactly the missing
    points are queued whatever other orchestrators and workers do meanwhile.
    Returns how many points were enqueued.
    """
    if spec.study.sampler not in plan.PLANNED:
        return 0
    with stored.locked():
        return queue_next(stored, spec)


def queue_next(
    stored: Stored,
    spec: StudyFile,
    counts: dict[str, int] | None = None,
    *,
    replace: bool = True,
    ahead: int = QUEUE_AHEAD,
) -> int:
    """The unlocked step of `top_up`, for a caller that holds the study lock already.
    Without ``replace`` only the first ``target`` points are queued: new points for failed
    trials are the orchestrator's to queue (it stops a study whose trials keep failing)."""
    c = counts or stored.counts()
    n = min(missing(stored, c), ahead - c["WAITING"])
    if n <= 0:
        return 0
    trials = stored.trials()
    again = 0
    for lost in lost_retries(trials):
        if again == n:
            break
        # Whether it crashed is not known: counted as a crash, it runs alone (~1 s more)
        # and has one retry fewer, which errs on the side of never looping on it.
        again += enqueue_again(stored.study, lost, crashed=True)
    points = pending_points(stored, spec, n - again, trials)
    if not replace:
        target = stored.target
        points = [p for p in points if not isinstance(p, int) or p < target]
    space = stored.space(spec)
    distributions = {name: dim.distribution() for name, dim in space.items()}
    for p in points:
        values = plan.values_at(spec.study.sampler, spec.study.seed, p, space)
        enqueue(stored.study, values, distributions, {records.POINT: p, records.VALUES: values})
    return again + len(points)


def lost_retries(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Failed attempts whose values were to run again but whose retry never reached the
    study: each the last attempt at a point that no trial holds any more but FAILed ones.

    Failing a trial and queueing its values again are two writes (`requeue`; Optuna's
    `fail_stale_trials` fails every stale trial before it calls the storage's callback,
    enqueue_again), and a kill -9 or a database restart between them loses the retry: a
    top-up would then queue a new point in its place, and the planned one would never run
    (tests/store/test_postgres.py, faults at scale). An attempt was to run again when the
    sweep marked it requeued, or when it has no reason: only Optuna's stale-heartbeat
    failure records none. The caller queues them again under the study lock, as every
    requeue is made, so a retry on its way is never taken for a lost one.
    """
    attempts: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if (p := point_of(t)) is not None:
            attempts.setdefault(json.dumps(p), []).append(t)
    lost = []
    for tried in attempts.values():
        if any(t.state != TrialState.FAIL for t in tried):
            continue  # it is queued, running or done
        real = [t for t in tried if not str(fail_reason(t, "")).startswith(DUPLICATE)]
        last = max(real, key=lambda t: t.number, default=None)
        if last is not None and (requeued(last) or fail_reason(last) is None):
            lost.append(last)
    return sorted(lost, key=lambda t: t.number)


def exhausted(stored: Stored, spec: StudyFile) -> bool:
    """A grid whose every point has been given to a trial: nothing more can be queued."""
    return spec.study.sampler == "grid" and not pending_points(stored, spec, 1)


def spent(stored: Stored, spec: StudyFile) -> bool:
    """A grid with every point given to a trial and none waiting or running: nothing left
    to run. Read under the study's lock, which failing a trial and queueing its values
    again hold as one step (requeue, recovery): between those two writes a retry would
    look spent."""
    if spec.study.sampler != "grid":
        return False
    with stored.locked():
        counts = stored.counts()
        return not counts["WAITING"] and not counts["RUNNING"] and exhausted(stored, spec)


# --- failing and re-queueing -----------------------------------------------------------


def requeue(
    stored: Stored, trial: FrozenTrial, reason: str, *, crashed: bool, proven: bool = False
) -> bool:
    """Fail a RUNNING trial whose worker is gone and queue its values again.

    ``crashed``: its process died (it then runs alone next time); ``proven``: it was
    running alone, so its values killed it. See sweep/store/enqueue.py MAX_CRASHES and
    MAX_RETRY for when its values are not run again. Returns False when another process
    finished or recovered it first.
    """
    trial_id = stored.storage.get_trial_id_from_study_id_trial_number(stored.study_id, trial.number)
    deaths = crashes_of(trial) + int(crashed)
    if proven and deaths >= MAX_CRASHES:
        reason += f"; its values have ended their process {MAX_CRASHES} times: not run again"
    elif deaths > MAX_RETRY:
        reason += f"; its values ran {deaths} times without an end: not run again"
    final = (proven and deaths >= MAX_CRASHES) or deaths > MAX_RETRY
    try:
        stored.storage.set_trial_user_attr(trial_id, records.FAIL_REASON, reason)
        if values_of(trial) and not final:  # not a failure of its values: they run again
            stored.storage.set_trial_user_attr(trial_id, records.REQUEUED, True)
        if not stored.storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    enqueue_again(stored.study, trial, crashed=crashed, final=final)
    return True
