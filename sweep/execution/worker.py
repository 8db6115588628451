"""One worker: pop the trials the study still needs, run them with heartbeats, end them.

A worker receives a `Job` of plain values (storage URL, study name, threads, data folder)
and its index, opens the storage itself and runs trials until the study has its target.
Which trials it takes is sweep/store/queue.py's job (where counts are kept exact). It may
pop a pack of trials and train them together (README "Packed trials"); each stays its own
Optuna trial. Storage calls are retried through a database outage (outage.retrying).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState
from threadpoolctl import threadpool_limits

from sweep.execution import budget, crashes, devices
from sweep.execution.processes import init_process, orchestrator
from sweep.execution.settle import settle
from sweep.objectives import pruning
from sweep.objectives.functions import load_function, load_many, loads, pack_size
from sweep.objectives.objective import Objective
from sweep.objectives.outcomes import TrialTimeout
from sweep.spec import plan
from sweep.store import journal, records
from sweep.store.outage import disk_full, retrying, unreachable
from sweep.store.queue import Popped, next_trials, refill, requeue, spent
from sweep.store.recovery import recover, requeue_abandoned
from sweep.store.storage import HEARTBEAT_SECONDS, quiet_optuna
from sweep.store.study import Stored, open_study
from sweep.system import signals

# An idle worker (nothing queued: the last trials run elsewhere) looks at the storage after
# WAIT_SECONDS, then twice as long up to MAX_WAIT_SECONDS: many idle ones load it little.
# The orchestrator's own workers (Job.idle 0: a few, on one machine), and any worker while
# the running trials are its own command's, wait at most LOCAL_MAX_WAIT_SECONDS: the
# command ends when the last of its processes does, and one whose pack ended early slept
# up to 1.6 s past the other's end (the coarse stage: its wall grew from 17.4 to 18.9 s;
# `sweep worker --jobs 2`: 1.3-1.7 s). A look costs ~2 ms of a core the worker leaves idle.
WAIT_SECONDS = 0.1
MAX_WAIT_SECONDS = 1.6
LOCAL_MAX_WAIT_SECONDS = 0.05


_watcher: int | None = None  # a process running one trial alone: its worker's pid


class Heartbeat:
    """Beside the objective, in a thread: record who runs the popped trials, then their
    heartbeats every HEARTBEAT_SECONDS, so that other processes can tell a dead worker's
    trials (Optuna does this only inside optimize()); and once, the ``chore`` the worker
    hands it (queueing the next planned values: queue.refill). Off the trial's path: each
    write is a round trip to the database, and with many workers on a busy server those
    add up.

    Who runs a trial is written before the objective starts (one write per trial on its
    path), so a worker that dies at once, by a function that kills its process, is told
    from a live one at once, not after the grace period (sweep/store/recovery.py). A database
    hiccup is not fatal: a write that failed is tried again a second later.
    """

    def __init__(self, stored: Stored, ids: list[int], chore: Callable[[], None] | None = None):
        self._db = stored.storage
        self._ids = ids
        self._chore = chore
        # "by": the command the process works for, which counts its trials after a crash;
        # "alone": a process of run_isolated (workers recover it: not _spared);
        # "watcher": the worker that started it, which records how it ended (a sibling
        # that recovered it first, once it was gone, blamed a crash on no proof: a value
        # was not run again after four such recoveries, never proven to crash).
        self._worker = {"host": socket.gethostname(), "pid": os.getpid(), "by": orchestrator()}
        if _watcher is not None:
            self._worker.update(alone=True, watcher=_watcher)
        if devices.mine() is not None:  # --gpus: which device ran the trial
            self._worker["device"] = devices.mine()
        self._unrecorded = list(ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _record(self) -> None:
        for trial_id in list(self._unrecorded):
            with contextlib.suppress(Exception):
                self._db.set_trial_user_attr(trial_id, records.WORKER, self._worker)
                self._unrecorded.remove(trial_id)

    def _run(self) -> None:
        while True:  # at least once, however short the trial
            self._record()
            unrecorded = self._unrecorded
            for trial_id in self._ids:
                with contextlib.suppress(Exception):
                    journal.record_heartbeat(self._db, trial_id)  # or the journal's own
            if self._chore is not None:
                chore, self._chore = self._chore, None
                _unless_unreachable(chore)
            if self._stop.wait(1.0 if unrecorded else HEARTBEAT_SECONDS):
                return

    def __enter__(self) -> Heartbeat:
        self._record()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _unless_unreachable(call: Callable[[], None]) -> None:
    try:
        call()
    except Exception as exc:
        if not (unreachable(exc) or disk_full(exc)):  # the trial's own path will say which
            raise


def run_trials(
    stored: Stored,
    popped: list[Popped],
    objective: Objective,
    chore: Callable[[], None] | None = None,
) -> list[TrialState | None]:
    """Run the objective on popped trials (one, or a pack) and tell the storage how each
    ended: its own state, whatever became of the others.

    A lost database connection is not a trial's failure: such a trial gets None, and the
    worker re-queues it once the database is back (requeue_abandoned); telling the others
    is retried through the outage.
    """
    timeout = objective.spec.study.trial_timeout

    def timed_out() -> None:  # the function ignored the deadline: end it the hard way
        for p in popped:
            with contextlib.suppress(Exception):
                settle(stored, p, TrialTimeout(timeout))

    settled: dict[int, TrialState] = {}  # members told already, as they left the pack

    def settle_early(i: int, outcome: BaseException) -> None:
        if not unreachable(outcome):  # a lost database: left to the pack's end (requeued)
            settled[i] = settle(stored, popped[i], outcome)

    def end(i: int, outcome: float | BaseException) -> TrialState | None:
        if i in settled:
            return settled[i]
        if isinstance(outcome, Exception) and unreachable(outcome):
            return None
        return settle(stored, popped[i], outcome)

    with (
        Heartbeat(stored, [p.id for p in popped], chore),
        signals.deadline(timeout, TrialTimeout, on_overrun=timed_out),
    ):
        outcomes = objective.run([p.trial for p in popped], on_end=settle_early)
    return [end(i, outcome) for i, outcome in enumerate(outcomes)]


def _folder() -> str | None:
    """The current folder, or None if it was deleted (then paths must be absolute)."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None


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
    deadline: float | None = None  # epoch seconds: no trial starts that would end later
    deadline_by: str = "the time limit"  # what set it (sweep/execution/budget.py)
    gpus: tuple[str, ...] = ()  # --gpus: worker i's device is gpus[i % len(gpus)]
    # The caller's folder: loky reuses worker processes across runs, so a worker may have
    # started in another one; relative storage paths and the function's files resolve here.
    cwd: str | None = field(default_factory=_folder)
    # A function given in memory (sweep.run(objective=f)), cloudpickled (functions.dumps):
    # used instead of loading the study's [objective], which names no file or module then.
    function: bytes | None = None


def work(job: Job, index: int) -> int:
    """One worker process: run trials of the job's study until its target is reached.

    While the last trials run elsewhere the worker waits, recovering any whose worker dies
    (their values are queued again and this worker runs them). With nothing queued and
    nothing running it exits after ``job.idle`` seconds (remote workers wait for the
    orchestrator to top up; the orchestrator's own workers exit at once and it tops up).
    Returns the number of trials this worker ran.
    """
    quiet_optuna()
    if job.cwd and job.cwd != _folder():
        os.chdir(job.cwd)
    devices.claim(job.gpus, index - job.first_index)  # before the function is imported
    stored = open_study(job.study, job.url)
    spec = stored.spec
    objective = _objective(job, stored, index)
    size = 1 if job.function else pack_size(spec.objective, spec.study.pack, job.objective_dir)
    plans = spec if spec.study.sampler in plan.PLANNED else None  # workers queue them
    ran = failed_in_a_row = 0
    first_wait = LOCAL_MAX_WAIT_SECONDS if not job.idle else WAIT_SECONDS
    idle_since, wait = None, first_wait
    abandoned: list[int] = []  # trials given up in an outage: re-queued once it is over
    try:
        with threadpool_limits(limits=job.threads):
            while True:
                if signals.STOP.is_set():  # a Ctrl-C swallowed in this process (pool.run_here)
                    raise signals.Stopped
                if job.deadline is not None and budget.out_of_time(job, stored):
                    break  # the command says why (budget.out_of_time again)
                while abandoned:
                    retrying(lambda n=abandoned[0]: requeue_abandoned(stored, n))
                    abandoned.pop(0)
                trials, done = retrying(lambda: next_trials(stored, plans, size, job.workers))
                if done:
                    break
                if trials:
                    idle_since, wait = None, first_wait
                    try:
                        chore = (lambda: refill(stored, plans, size)) if plans else None
                        if trials[0].alone:
                            states = [run_isolated(job, stored, trials[0], chore)]
                        else:
                            states = run_trials(stored, trials, objective, chore)
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
                running = retrying(stored.counts)["RUNNING"]
                if not running:
                    if plans and retrying(lambda: spent(stored, spec)):
                        break  # a spent grid: no point is left to run (the command says why)
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= job.idle:
                        break
                time.sleep(wait)
                # (the running trials' owners are read only where they decide the wait)
                near = not job.idle or (running and _all_this_commands(stored))
                wait = min(2 * wait, LOCAL_MAX_WAIT_SECONDS if near else MAX_WAIT_SECONDS)
                retrying(lambda: recover(stored, spare=_spared))
    finally:
        stored.close()
    return ran


def this_command(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial is (or was) run by a process of this process's own command, by its
    worker record."""
    worker = records.worker_of(trial) or {}
    return worker.get("host") == socket.gethostname() and worker.get("by") == orchestrator()


def _spared(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial a worker leaves to its command to recover: one a sibling process ran. A
    sibling that died broke their pool, and the command recovers its trials at once (each
    then runs alone: pool.run). Taken by a sibling first, the values ran in a process that
    the broken pool then killed: a second crash counted against them (1 run in 10 once
    looks were 0.05 s). Not a trial run alone: the worker watching its process records
    how it ended (recovery.why_gone), and after a broken pool the command ends it first
    (pool.end_alone_runs); a worker recovers one whose watcher is gone."""
    return this_command(trial) and not (records.worker_of(trial) or {}).get("alone")


def _all_this_commands(stored: Stored) -> bool:
    """Whether every running trial is run by a process of this process's own command."""
    return all(map(this_command, retrying(lambda: stored.trials(TrialState.RUNNING))))


def ended_by_this_command(stored: Stored) -> int:
    """The trials that processes of this command ended, in any state (`sweep worker`'s
    count after a crash, which loses the round's own)."""
    return sum(map(this_command, (t for t in stored.trials() if t.state.is_finished())))


def _objective(job: Job, stored: Stored, index: int) -> Objective:
    """The study's objective in this process, with this worker's sampler and pruner."""
    spec = stored.spec
    stored.study.sampler = plan.sampler_for(spec.study.sampler, spec.study.seed + 1 + index)
    stored.study.pruner = pruning.pruner_for(
        spec.study.pruner,
        stored.storage,
        reports=spec.per_seed_reports,
        level=spec.study.prune_level,
        rungs=spec.rungs,
    )
    if job.function is not None:
        function, many = loads(job.function), None
    else:
        function = load_function(spec.objective, job.objective_dir)
        many = load_many(spec.objective, job.objective_dir)
    space = stored.space(spec)
    return Objective(
        spec, space, function, job.data_dir, job.fingerprint, many, device=devices.mine()
    )


def run_isolated(
    job: Job, stored: Stored, popped: Popped, chore: Callable[[], None] | None
) -> TrialState | None:
    """Run one trial in a process of its own, which only it can crash.

    For a trial that was running when a process died (sweep/store/enqueue.py MAX_CRASHES): if
    this process dies too, the crash is its values' own. Costs a new interpreter (~1 s).
    This worker records itself and beats for the trial meanwhile: on a busy machine the new
    process took longer than the grace period to record itself (tests/store/test_postgres.py).
    """
    job_values = {**dataclasses.asdict(job), "function": _b64(job.function)}
    with crashes.log() as dump:
        fds = [] if dump is None else [dump.fileno()]
        given = {"job": job_values, "trial_id": popped.id, "device": devices.mine()}
        given["by"] = orchestrator()
        payload = json.dumps({**given, "dump": fds[0] if fds else None})  # device: inherited
        code = "import sys; from sweep.execution.worker import isolated_main; "
        code += "isolated_main(sys.stdin.read())"
        with Heartbeat(stored, [popped.id], chore):
            args = [sys.executable, "-c", code]
            done = subprocess.run(args, input=payload, text=True, check=False, pass_fds=fds)
        trial = retrying(lambda: stored.storage.get_trial(popped.id))
        if trial.state != TrialState.RUNNING:
            return trial.state
        reason = f"its process died running it alone ({crashes.how(done.returncode, dump)})"

    def fail_and_requeue() -> bool:
        with stored.locked():  # one step for a top-up (sweep/store/queue.py lost_retries)
            return requeue(stored, trial, reason, crashed=True, proven=True)

    retrying(fail_and_requeue)
    return TrialState.FAIL


def isolated_main(payload: str) -> None:
    """The process of run_isolated: run one claimed trial, then exit."""
    given = json.loads(payload)
    init_process(works_for=given["by"])
    global _watcher
    _watcher = os.getppid()
    quiet_optuna()
    crashes.record_to(given["dump"])
    job = Job(**{**given["job"], "function": _unb64(given["job"]["function"])})
    devices.adopt(given["device"])
    try:  # through a database restart, as a worker opens it (tests/store/test_postgres.py)
        stored = retrying(lambda: open_study(job.study, job.url))
    except Exception as exc:  # the parent records the trial's end: one line, no traceback
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        sys.exit(1)
    popped = Popped(optuna.trial.Trial(stored.study, given["trial_id"]), given["trial_id"])
    try:
        with threadpool_limits(limits=job.threads):
            run_trials(stored, [popped], _objective(job, stored, job.first_index))
    except Exception as exc:  # the parent records the trial's end: one line, no traceback
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        sys.exit(1)
    finally:
        stored.close()


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
