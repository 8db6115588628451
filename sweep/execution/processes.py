"""The local worker processes themselves (loky): their environment, their first call, and
ending them. It imports no Optuna, SQLAlchemy or pandas. What the processes run (starting
them early included), and how a crash or Ctrl-C is survived, is sweep/execution/pool.py's.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

import loky

from sweep.execution import crashes
from sweep.system import signals

IDLE_TIMEOUT = 60  # seconds an idle loky process lives before it exits
# loky restarts a worker whose memory grew by more than LOKY_MAX_MEMORY_LEAK_SIZE (300 MB
# by default) over a task, taking it for a leak. A worker's task is a whole study, and it
# keeps the memory-mapped dataset it trained on (CIFAR-10's search split is 0.55 GB of
# resident pages), so with the default every worker was restarted after every study (~1.5
# s of start-up at each stage of `sweep reproduce`, and a warning about a leak). Growth
# beyond this still restarts it.
MEMORY_GROWTH_BYTES = 4 * 2**30


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_env(threads: int) -> dict[str, str]:
    """The workers' environment, set before each process starts: its BLAS threads,
    loky's leak check (MEMORY_GROWTH_BYTES) and no fault-handler dump of a crash
    (sweep/execution/crashes.py). threadpoolctl limits OpenBLAS, MKL and BLIS in the
    running process (sweep/execution/worker.py), but not macOS Accelerate, which reads
    VECLIB_MAXIMUM_THREADS once, when NumPy loads it."""
    return {
        "VECLIB_MAXIMUM_THREADS": str(max(1, threads)),
        "LOKY_MAX_MEMORY_LEAK_SIZE": str(MEMORY_GROWTH_BYTES),
        **crashes.quiet_env(),
    }


_started: loky.ProcessPoolExecutor | None = None  # the last executor this process used


def executor(jobs: int, threads: int) -> loky.ProcessPoolExecutor:
    """The processes for ``jobs`` workers of ``threads`` BLAS threads each: the running
    ones if they were started so (loky reuses them), else new ones."""
    global _started
    _started = loky.get_reusable_executor(
        max_workers=jobs,
        timeout=IDLE_TIMEOUT,
        initializer=init_process,
        initargs=(os.getpid(),),
        env=worker_env(threads),
    )
    return _started


def stop(*, kill: bool = True) -> None:
    """End this process's idle worker processes now, instead of after IDLE_TIMEOUT or one
    by one at exit (callers that run several sweeps in one process and then exit; the
    `sweep` command when it is done).

    ``kill``: at once (SIGKILL through loky's shutdown, ~0.1 s). Killed less than ~1 s
    after their last call, though, loky's resource tracker may print "leaked semlock
    objects" at exit (measured: 3 of 9 `sweep reproduce` runs whose last run ended ~1 s
    before the exit). ``kill=False`` asks them to exit and returns without waiting for
    them (they take ~0.5 s; a later stop() waits for what is left): 0 of 12 such runs.
    """
    if _started is not None:
        _started.shutdown(wait=kill, kill_workers=kill)


_orchestrator: int | None = None  # in a worker process: the command that started it


def orchestrator() -> int:
    """The pid of the command whose trials this process runs: its starter's in a worker
    process, its own elsewhere (`sweep worker --jobs 1` runs them itself)."""
    return os.getpid() if _orchestrator is None else _orchestrator


def init_process(parent: int | None = None, works_for: int | None = None) -> None:
    """Runs first in every worker process.

    Ctrl-C and SIGTERM are the orchestrator's to handle (it stops the workers and fails
    their trials; sweep/system/signals.py); a worker whose orchestrator was killed (kill -9) exits
    at once instead of training on for minutes while holding the orchestrator's output
    pipes open. A user function's prints go to stderr: stdout is the command's (`--json`).
    ``works_for``: the command whose trials it runs, recorded with each (default: parent).
    """
    signals.ignore_here()
    with contextlib.suppress(OSError, ValueError):  # a closed stream: leave it as it is
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a C library's prints too
    # The orchestrator's pid, given: one killed while this process was still starting
    # has left it to another parent already, whose pid the process would watch instead.
    parent = os.getppid() if parent is None else parent
    global _orchestrator
    _orchestrator = parent if works_for is None else works_for  # (a trial run alone: the
    # worker that started it is its parent, the command it works for is the worker's)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        sys.stderr.flush()
        os._exit(1)  # its trial stays RUNNING with a dead pid: `sweep resume` recovers it

    threading.Thread(target=watch, daemon=True).start()
