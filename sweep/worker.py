"""One worker: pop queued trials under the study lock, train them with heartbeats, tell.

A worker receives a `Job` of plain values (storage URL, study name, threads, data folder)
and its index, opens the storage itself and runs trials until the study has its target.
The protocol that keeps counts exact is all in `next_trials`: under the study lock, look at
the counts and pop (`study.ask()`) only the trials the study still needs. A worker may pop
a pack of trials and train them together (DESIGN.md "Packed trials"); each stays its own
Optuna trial. Storage calls are retried through a database outage (storage.retrying).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState
from threadpoolctl import threadpool_limits

from core.errors import DivergedError
from sweep import plan, pruning
from sweep.functions import load_function, load_many, pack_size
from sweep.objective import Objective, ObjectiveError
from sweep.recovery import recover, requeue_abandoned
from sweep.storage import HEARTBEAT_SECONDS, quiet_optuna, retrying, unreachable
from sweep.study import QUEUE_AHEAD, Stored, finished, missing, open_study, queue_next
from sweep.studyfile import StudyFile

# An idle worker (nothing queued: the last trials run elsewhere) looks at the storage after
# WAIT_SECONDS, then twice as long each time up to MAX_WAIT_SECONDS, so that many idle
# workers do not load the database in proportion to their number.
WAIT_SECONDS = 0.1
MAX_WAIT_SECONDS = 1.6


def next_trials(
    stored: Stored, spec: StudyFile | None, size: int = 1, workers: int = 1
) -> tuple[list[optuna.Trial], bool]:
    """Pop up to ``size`` trials if the study still needs them.

    ``spec`` is the study's file for planned samplers (None: Optuna samples). Planned values
    wait in a queue that holds only trials the study needs (it is topped up under the study
    lock to exactly what is missing, QUEUE_AHEAD at a time), so popping one needs no lock:
    workers pop in parallel and take the lock only to queue the next values. A sampled
    trial is checked and created under the lock.

    A pack takes no more than its share of the study's unfinished trials (divided among
    ``workers``), so that workers starting together get equal packs and the last trials
    spread over the workers instead of queueing behind one pack.
    Returns (trials, whether the study has reached its target).
    """
    target = stored.target  # read afresh each time (a rerun may raise it)
    c = stored.counts()
    if finished(c) >= target:
        return [], True
    if spec is not None and c["WAITING"] < max(size, QUEUE_AHEAD // 2) and missing(stored, c):
        with stored.locked():  # queue the next planned values
            if queue_next(stored, spec, replace=False, ahead=max(QUEUE_AHEAD, 2 * size)):
                c = stored.counts()
    if spec is not None:
        trials = pop_waiting(stored, _pack(c, target, size, workers))
    else:
        with stored.locked():  # as short as possible: every worker of the study waits on it
            c = stored.counts()
            if finished(c) >= target:
                return [], True
            with warnings.catch_warnings():
                # Optuna warns that heartbeats belong to optimize(); this worker records
                # them itself (Heartbeat below) around ask/tell.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                n = _pack(c, target, size, workers)
                trials = [stored.study.ask() for _ in range(n)]  # samples each
    for trial in trials:
        # Who runs the trial: `sweep resume` recovers it if this process dies (one killed
        # before this line has no worker recorded and is recovered by age, as before).
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
    return trials, False


def _pack(c: dict[str, int], target: int, size: int, workers: int) -> int:
    room = target - finished(c) - c["RUNNING"]
    share = -(-(room + c["RUNNING"]) // workers)  # of the unfinished trials, rounded up
    return max(min(size, share, room), 0)


def pop_waiting(stored: Stored, n: int) -> list[optuna.Trial]:
    """Pop up to ``n`` queued trials, oldest first, without the study lock.

    Why not `study.ask()`: it pops the same way, but when the queue is empty it creates a
    new trial from the sampler, so a worker could only call it under the study lock, and
    that lock then serialised every pop of every worker (bench/scale.py, 16 workers,
    0.5-s trials: ~0.1 s per pop spent waiting). This is ask()'s pop without that fallback,
    through public calls: claim a WAITING trial with `set_trial_state_values` (it returns
    False when another worker claimed it first) and wrap it in `optuna.trial.Trial`, as
    ask() does. Pinned by tests/test_storage.py (8 processes, each queued value once).

    A queued point that a live trial with a lower number already holds is dropped (FAIL,
    "a duplicate"): it can only be queued twice when a database restart ended the session
    holding the study lock in the middle of a top-up (tests/test_postgres.py, faults).
    """
    db, trials = stored.storage, []
    # Through the study (not the bare storage) as ask() does: Optuna's storage cache must
    # know a trial before its params can be set.
    everything = stored.trials()
    holder: dict[str, int] = {}  # point -> the lowest number of a live trial holding it
    for t in everything:
        if "point" in t.user_attrs and t.state != TrialState.FAIL:
            holder.setdefault(repr(t.user_attrs["point"]), t.number)
    for queued in everything:
        if len(trials) >= n:
            break
        if queued.state != TrialState.WAITING:
            continue
        trial_id = db.get_trial_id_from_study_id_trial_number(stored.study_id, queued.number)
        try:
            if not db.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue  # another worker popped it
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        first = holder.get(repr(queued.user_attrs.get("point")), queued.number)
        if first != queued.number:
            db.set_trial_user_attr(trial_id, "fail_reason", f"a duplicate of trial {first}")
            db.set_trial_user_attr(trial_id, "requeued", True)  # not a failure of its value
            db.set_trial_state_values(trial_id, state=TrialState.FAIL)
            continue
        trials.append(optuna.trial.Trial(stored.study, trial_id))
    return trials


class Heartbeat:
    """Records the heartbeat of each running trial every HEARTBEAT_SECONDS, so that other
    processes can tell a dead worker's trials (Optuna does this only inside optimize())."""

    def __init__(self, stored: Stored, numbers: list[int]):
        self._db = stored.storage
        study = stored.study_id
        self._ids = [self._db.get_trial_id_from_study_id_trial_number(study, n) for n in numbers]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            for trial_id in self._ids:
                # A database hiccup is not fatal: the next beat tries again.
                with contextlib.suppress(Exception):
                    self._db.record_heartbeat(trial_id)

    def __enter__(self) -> Heartbeat:
        for trial_id in self._ids:
            self._db.record_heartbeat(trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_trials(
    stored: Stored, trials: list[optuna.Trial], objective: Objective
) -> list[TrialState | None]:
    """Run the objective on popped trials (one, or a pack) and tell the storage how each
    ended: its own state, whatever became of the others.

    A lost database connection is not a trial's failure: such a trial gets None, and the
    worker re-queues it once the database is back (requeue_abandoned); telling the others
    is retried through the outage.
    """
    with Heartbeat(stored, [t.number for t in trials]):
        outcomes = objective.run(trials)
    return [
        None if isinstance(o, Exception) and unreachable(o) else _settle(stored, t, o)
        for t, o in zip(trials, outcomes, strict=True)
    ]


def _settle(stored: Stored, trial: optuna.Trial, outcome: float | Exception) -> TrialState:
    if isinstance(outcome, optuna.TrialPruned):
        return _tell(stored, trial, TrialState.PRUNED, "prune_reason", str(outcome))
    if isinstance(outcome, Exception):  # the trial fails with its reason; the study goes on
        return _tell(stored, trial, TrialState.FAIL, "fail_reason", reason_of(outcome))
    if not math.isfinite(outcome):
        return _tell(
            stored, trial, TrialState.FAIL, "fail_reason", f"the objective returned {outcome}"
        )
    return _tell(stored, trial, TrialState.COMPLETE, value=outcome)


def _tell(
    stored: Stored,
    trial: optuna.Trial,
    state: TrialState,
    key: str | None = None,
    reason: str = "",
    value: float | None = None,
) -> TrialState:
    def tell() -> None:
        try:
            if key:
                trial.set_user_attr(key, reason)
            if state == TrialState.COMPLETE:
                stored.study.tell(trial, value)
            else:
                stored.study.tell(trial, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # told already (a retry after the reply was lost), or recovered meanwhile

    retrying(tell)
    return state


def reason_of(exc: BaseException) -> str:
    """A failed trial's one-line reason: the exception's type and message."""
    if isinstance(exc, (DivergedError, ObjectiveError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


@dataclass(frozen=True)
class Job:
    """What every worker of one run gets: plain values a process can receive."""

    url: str
    study: str
    threads: int
    data_dir: str | None  # ctx.data_dir (the built-in: the checked data root)
    fingerprint: str | None  # of the built-in's data, recorded with each trial
    objective_dir: str | None  # where a file objective is, if not beside the study file
    resume_command: str  # printed on Ctrl-C
    first_index: int = 0
    idle: float = 0.0
    workers: int = 1  # local workers of this run: a pack takes its share of what is left


def work(job: Job, index: int) -> int:
    """One worker process: run trials of the job's study until its target is reached.

    While the last trials run elsewhere the worker waits, recovering any whose worker dies
    (their values are queued again and this worker runs them). With nothing queued and
    nothing running it exits after ``job.idle`` seconds (remote workers wait for the
    orchestrator to top up; the orchestrator's own workers exit at once and it tops up).
    Returns the number of trials this worker ran.
    """
    quiet_optuna()
    stored = open_study(job.study, job.url)
    spec = stored.spec
    stored.study.sampler = plan.sampler_for(spec.study.sampler, spec.study.seed + 1 + index)
    stored.study.pruner = pruning.pruner_for(spec.study.pruner)
    function = load_function(spec.objective, job.objective_dir)
    many = load_many(spec.objective, job.objective_dir)
    size = pack_size(spec.objective, spec.study.pack, job.objective_dir)
    space = stored.space(spec)
    objective = Objective(spec, space, function, job.data_dir, job.fingerprint, many)
    plans = spec if spec.study.sampler in plan.PLANNED else None  # workers queue them
    ran = failed_in_a_row = 0
    idle_since, wait = None, WAIT_SECONDS
    abandoned: list[int] = []  # trials given up in an outage: re-queued once it is over
    try:
        with threadpool_limits(limits=job.threads):
            while True:
                while abandoned:
                    retrying(lambda n=abandoned[0]: requeue_abandoned(stored, n))
                    abandoned.pop(0)
                trials, done = retrying(lambda: next_trials(stored, plans, size, job.workers))
                if done:
                    break
                if trials:
                    idle_since, wait = None, WAIT_SECONDS
                    try:
                        states = run_trials(stored, trials, objective)
                    except Exception as exc:
                        if not unreachable(exc):
                            raise
                        states = [None] * len(trials)
                    for trial, state in zip(trials, states, strict=True):
                        if state is None:
                            abandoned.append(trial.number)
                            continue
                        ran += 1
                        failed = state == TrialState.FAIL
                        failed_in_a_row = failed_in_a_row + 1 if failed else 0
                    if plans is None and failed_in_a_row >= stored.target:
                        break  # sampled values keep failing: the orchestrator says why
                    continue
                if retrying(stored.counts)["RUNNING"] == 0:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= job.idle:
                        break
                time.sleep(wait)
                wait = min(2 * wait, MAX_WAIT_SECONDS)
                retrying(lambda: recover(stored))
    finally:
        stored.close()
    return ran


def init_process() -> None:
    """Runs first in every worker process.

    Ctrl-C is the orchestrator's to handle (it stops the workers and fails their trials);
    a worker whose orchestrator was killed (kill -9) exits at once instead of training on
    for minutes while holding the orchestrator's output pipes open.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        sys.stderr.flush()
        os._exit(1)  # its trial stays RUNNING with a dead pid: `sweep resume` recovers it

    threading.Thread(target=watch, daemon=True).start()
