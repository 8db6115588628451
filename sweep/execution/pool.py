"""Local worker processes (loky): start them early, run studies and single runs in them,
survive crashes and Ctrl-C. The processes themselves (environment, first call, end) are
sweep/execution/processes.py's.

A worker killed mid-trial (kill -9, out of memory) breaks the pool: the caller recovers
the trials and starts new workers, so a crash costs the running trials' progress and
nothing more. Ctrl-C stops the workers, fails their trials (queued again) and raises
Interrupted with the exact command that resumes.

Why loky, joblib's process engine, and not joblib.Parallel (README, "Parallel workers"):
bench/pool.py runs the same study both ways. Through Parallel's public API (a generator of
results consumed in a thread while the caller polls the study) the wall time is the same
and a killed worker surfaces as an exception the runner recovers from; what it cannot do is
start the processes before there is work for them (they import while the orchestrator
prepares the data), or stop its running workers at once on Ctrl-C or SIGTERM: Parallel has
no public call to end a call in progress from another thread. Those two need the executor.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from collections.abc import Callable
from typing import TypeVar

import psutil
from loky.process_executor import BrokenProcessPool
from optuna.trial import TrialState
from threadpoolctl import threadpool_limits

from sweep.errors import NO_SPACE, Interrupted, RunFailed, StorageError, SweepError, disk_full
from sweep.execution import crashes, processes
from sweep.execution.worker import Job, this_command, work
from sweep.store.outage import retrying
from sweep.store.records import worker_of
from sweep.store.recovery import fail_running
from sweep.store.storage import preload
from sweep.store.study import Stored
from sweep.system import signals

T = TypeVar("T")


def _warm_up(rdb: bool) -> int:
    # Importing this module's imports is most of a worker's start-up; the rest is what
    # opening an RDB storage imports (storage.preload; a journal file needs none of it).
    if rdb:
        preload()
    return os.getpid()


def start(jobs: int, threads: int, *, rdb: bool = True) -> None:
    """Start the processes now, so that they import while the caller prepares data
    (``rdb``: the study is in SQLite or PostgreSQL, not in a journal file)."""
    with signals.ignore_in_children():
        executor = processes.executor(jobs, threads)
        for _ in range(jobs):
            executor.submit(_warm_up, rdb)


def run_each(calls: list[Callable[[], T]], jobs: int, on_result: Callable[[int, T], None]) -> None:
    """Independent calls (`sweep reproduce`'s single training runs), each in a worker
    process with one BLAS thread, at most ``jobs`` at a time, longest first in the list.

    A single run gains little from a second BLAS thread (a 100 x 3072 x 50 step is ~1.15x
    faster with two), so two runs side by side on two cores finish sooner than one after
    the other. ``on_result(i, result)`` is called as each call ``i`` returns (an exception
    it raised is raised here, after the others finished); Ctrl-C and SIGTERM stop the
    processes and raise KeyboardInterrupt; a killed process raises RunFailed.
    """
    try:
        with signals.ignore_in_children():  # (a signal held here is raised inside the try)
            executor = processes.executor(jobs, 1)
            futures = [executor.submit(_one_thread, call) for call in calls]
        pending = set(futures)
        while pending:
            done, pending = concurrent.futures.wait(
                pending, timeout=1.0, return_when=concurrent.futures.FIRST_COMPLETED
            )
            if signals.STOP.is_set():
                raise signals.Stopped
            for f in sorted(done, key=futures.index):
                if f.exception() is None:
                    on_result(futures.index(f), f.result())
        for f in futures:
            f.result()  # the first exception a call raised, now that the others are done
    except KeyboardInterrupt:
        executor.shutdown(wait=True, kill_workers=True)
        raise
    except BrokenProcessPool as exc:
        executor.shutdown(wait=True, kill_workers=True)
        raise RunFailed(
            f"a training process died ({str(exc).splitlines()[0]}); run the same command "
            "again to continue"
        ) from None


def _one_thread(call: Callable[[], T]) -> T:
    with threadpool_limits(limits=1):
        return call()


def run_here(job: Job, stored: Stored) -> int:
    """Run one worker in this process (`sweep worker --jobs 1`): one interpreter instead of
    two, which halves a worker's start-up (~1 s of CPU) and memory (bench/scale.py, 16
    workers on 2 cores, in one sitting: start-up 0.075-0.095 of the run as two processes,
    0.03-0.04 this way; 0.04-0.08 over ten later runs).
    A trial that crashes the process ends the command (Python's dump on stderr says where),
    as a killed worker does: its trial is recovered and run again by the others. Ctrl-C
    fails this worker's trials as `run` does. Returns the number of trials it ran."""
    crashes.dump_here()
    try:
        return work(job, job.first_index)
    except KeyboardInterrupt:
        raise _stopped(job, stored) from None


def end_alone_runs(stored: Stored) -> set[int]:
    """After the pool broke (a worker crashed): end the processes in which its workers ran
    trials alone, and return those trials' numbers. Each ran in a process of its own,
    watched by a pool worker that records its crash; that worker was ended with the pool,
    and so is the process (its watchdog ends it up to 0.5 s later, after the command's
    recovery, which then counted a crash against its values: a value ended thus three
    times was not run again, without ever crashing a process itself)."""
    alone = set()
    for trial in retrying(lambda: stored.trials(TrialState.RUNNING)):
        record = worker_of(trial) or {}
        if record.get("alone") and this_command(trial):
            alone.add(trial.number)
            with contextlib.suppress(psutil.Error, ValueError):  # (gone already)
                process = psutil.Process(int(record["pid"]))
                process.kill()
                process.wait(timeout=5)
    return alone


class _CallerFailed(Exception):
    """What this process ran between its looks at the workers (a progress callback,
    reproduce's drawing) raised: its exception is the cause."""


def _callers(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception as exc:
        raise _CallerFailed from exc


def _stopped(job: Job, stored: Stored) -> Interrupted:
    """Ctrl-C or SIGTERM: fail this command's running trials (queued again) and say how
    to go on."""
    reason = signals.reason()
    n = fail_running(stored, reason=reason)
    running = f"{n} running trial(s) marked FAIL and queued again" if n else "no trial was running"
    return Interrupted(
        f"{reason}; {running}. Resume with: {job.resume_command}",
        exit_code=signals.exit_code(),
    )


def run(
    job: Job,
    jobs: int,
    stored: Stored,
    on_poll: Callable[[], None] | None = None,
    poll: float = 1.0,
    meanwhile: Callable[[], object] | None = None,
) -> tuple[int, str | None]:
    """Run ``jobs`` worker processes until they finish, calling ``on_poll`` meanwhile.

    ``meanwhile`` is called once in this process, right after the workers got the job:
    work of the caller's that needs no core of its own while they train.
    Returns the number of trials they ran and None, or why a worker died.
    """
    try:
        # A stop signal held back in this block is raised at its end, inside the try: the
        # workers are stopped and their trials failed (outside it they trained on, and the
        # command said that none was running).
        with signals.ignore_in_children():
            executor = processes.executor(jobs, job.threads)
            futures = [executor.submit(work, job, job.first_index + i) for i in range(jobs)]
        if meanwhile is not None:
            _callers(meanwhile)
        while not all(f.done() for f in futures):
            concurrent.futures.wait(futures, timeout=poll)
            if signals.STOP.is_set():
                raise signals.Stopped  # a Ctrl-C that a callback swallowed
            if on_poll:
                _callers(on_poll)
        ran = sum(f.result() for f in futures)
        if job.gpus:  # new processes next round: one that ran two workers holds one device
            executor.shutdown(wait=True, kill_workers=True)  # (sweep/execution/devices.py)
        return ran, None
    except KeyboardInterrupt:
        executor.shutdown(wait=True, kill_workers=True)
        raise _stopped(job, stored) from None
    except _CallerFailed as failed:
        # Stopped as on Ctrl-C (the workers trained on after the call had raised), and the
        # caller's own exception goes on as it is: no worker failed.
        error = failed.__cause__
        executor.shutdown(wait=True, kill_workers=True)
        with contextlib.suppress(Exception):  # (a storage gone away: the next run recovers)
            fail_running(stored, reason=f"stopped: the caller's code raised {type(error).__name__}")
        raise error from None  # type: ignore[misc]
    except BrokenProcessPool as exc:
        # The caller recovers every trial that was running: each runs alone next time, in
        # a process of its own, where a crash is its own (sweep/store/enqueue.py MAX_CRASHES).
        executor.shutdown(wait=True, kill_workers=True)
        if f"EXIT({signals.OVERRUN_EXIT})" in str(exc):  # loky lists the exit codes
            return 0, "a trial ignored its trial_timeout, so its process was ended"
        return 0, str(exc).splitlines()[0]
    except SweepError:
        raise
    except Exception as exc:
        if disk_full(exc):
            raise StorageError(NO_SPACE) from None
        raise RunFailed(
            f"a worker of study {job.study!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
