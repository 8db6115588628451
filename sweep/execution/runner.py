"""`sweep run` and `sweep worker`: drive a study to its target with worker processes.

The orchestrator (``run_study``) creates the study, queues its planned values and runs
local workers (sweep/execution/pool.py) in rounds until the storage holds the target of COMPLETE
trials; ``join_study`` runs workers for a study created elsewhere. Every count is read from
the storage, so rerunning any command continues correctly, and any number of either may
run at once on one storage.
"""

from __future__ import annotations

import os
import socket
import time
import zlib
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sweep.errors import (
    Interrupted,
    NoDatabase,
    RunFailed,
    StorageError,
    StudyNotFound,
    SweepError,
)
from sweep.execution import budget, devices, options, pool, processes
from sweep.execution.budget import Budget
from sweep.execution.progress import Progress, failures, no_progress, progress
from sweep.execution.result import RunResult
from sweep.execution.worker import Job, ended_by_this_command
from sweep.objectives import builtin
from sweep.objectives.functions import check_function
from sweep.spec.space import check_grid, check_trials
from sweep.spec.studyfile import MAX_TRIALS, StudyFile
from sweep.store import journal, records
from sweep.store.outage import retrying, unreachable
from sweep.store.parent import check_parent_stored, run_parent_first
from sweep.store.queue import spent, top_up
from sweep.store.recovery import recover
from sweep.store.storage import open_storage, validate_url
from sweep.store.study import Stored, finished, open_study, open_to_write, prepare
from sweep.store.urls import has_password, resolve_url, shown
from sweep.system import signals
from sweep.system.portable import shell_join

STALLED_ROUNDS = 3  # rounds in a row of local workers changing nothing: an error, not a loop


def _recorded_data(url: str, name: str) -> dict[str, str] | None:
    """Where an existing study's data was, and its fingerprint (None for a new study)."""
    try:
        stored = open_study(name, url, read_only=True)
    except (StorageError, StudyNotFound):
        return None
    return stored.attrs.get(records.DATA)


# Where the running command writes the study's tables (`sweep run` and `resume --out`):
# the resume commands it prints meanwhile pass it on. The API writes none: None there.
TABLES_OUT: ContextVar[str | None] = ContextVar("TABLES_OUT", default=None)


def resume_command(
    name: str, url: str, data_dir: str | None, given: bytes | None = None, out: str | None = None
) -> str:
    """The command that resumes the study, as printed on Ctrl-C (and into cluster logs):
    never with the storage's password. A function given in memory is passed again; ``out``:
    where the tables go (default: TABLES_OUT)."""
    out = TABLES_OUT.get() if out is None else out
    secret = has_password(url)
    from_env = os.environ.get("SWEEP_STORAGE") == url
    hint = " (with the password in place of ***, or the URL in $SWEEP_STORAGE)"
    hint = hint if secret and not from_env else ""
    folder = str(Path(data_dir).absolute()) if data_dir else None
    if given is not None:  # (the storage named too: following the hint opened sweeps.db)
        call = [repr(name), "objective=..."]
        call += [] if from_env else [f"storage={shown(url)!r}"]
        call += [f"data_dir={folder!r}"] if folder else []
        return f"sweep.resume({', '.join(call)}) with the same function{hint}"
    args = ["sweep", "resume", name] + ([] if from_env else ["--storage", shown(url)])
    if folder:
        args += ["--data-dir", folder]
    if out is not None:
        args += ["--out", out]
    return shell_join(args) + hint


def run_study(
    spec: StudyFile,
    *,
    storage_url: str | None = None,
    jobs: int = 1,
    data_dir: str | None = None,
    trials: int | None = None,
    threads: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    poll: float = 1.0,
    oversubscribe: bool = False,
    objective_dir: str | None = None,
    partial_parent: bool = False,
    time_limit: float | None = None,
    gpus: str | tuple[str, ...] = (),
    workers_per_gpu: int = 1,
    function: Callable[..., Any] | None = None,
    meanwhile: Callable[[], object] | None = None,
    resume_hint: str | None = None,
) -> RunResult:
    """Run ``spec`` until its study has ``trials`` (default: the file's) finished trials
    (COMPLETE or PRUNED; failed ones are replaced).

    A fine stage whose parent has not reached its target is refused unless
    ``partial_parent``. Each worker gets ``threads`` BLAS threads (default: cores // jobs,
    so that parallel workers never oversubscribe the machine). With ``time_limit``
    (seconds; or the job's end time, sweep/execution/budget.py) the workers start no trial
    that would end after it, and the run stops topping up and returns, resumable. With ``gpus`` each
    worker process sees one device (sweep/execution/devices.py). ``function``: the function of a
    study whose [objective] is given in memory (it goes to the workers by value).
    ``meanwhile``: called once in this process while the workers run the first round (see
    pool.run). ``resume_hint``: what a Ctrl-C says resumes (default: `sweep resume`).
    Bad input fails before anything is written.
    """
    started = time.perf_counter()
    jobs, threads, time_limit, gpus, workers_per_gpu = options.check_run(
        jobs,
        oversubscribe=oversubscribe,
        least=0,
        threads=threads,
        time_limit=time_limit,
        gpus=gpus,
        workers_per_gpu=workers_per_gpu,
    )
    limit = Budget.start(time_limit)
    name = spec.study.name
    try:
        url = validate_url(storage_url, create=not spec.parent, write=True)
    except NoDatabase:
        if spec.parent:  # a fine stage's parent must already be in the storage
            raise StudyNotFound(
                f"the fine stage narrows from study {spec.parent!r}, which is not in the "
                f"storage {resolve_url(storage_url)}; {run_parent_first(spec)}"
            ) from None
        raise
    target = check_trials(spec.study.trials if trials is None else trials, "--trials", MAX_TRIALS)
    check_grid(spec.study.sampler, target, spec.search, spec.path)
    given = check_function(spec, function, objective_dir)  # fails before anything is written
    if given is not None and jobs == 0:
        raise SweepError(
            "jobs=0 leaves the trials to `sweep worker` processes, which cannot load a "
            "function given in memory; pass jobs=1 or more (or join with sweep.worker)"
        )
    recorded = _recorded_data(url, name)
    threads = threads or max(1, processes.cpu_count() // max(jobs, 1))
    if jobs:
        # The processes import while the data and storage are prepared.
        pool.start(jobs, threads, rdb=not journal.is_journal(url))
    if spec.parent:  # before any data is loaded (or downloaded) for it
        check_parent_stored(
            spec, {s.study_name for s in open_storage(url, create=False).get_all_studies()}
        )
    data = builtin.prepare_data(spec, data_dir, recorded)
    stored, notes = prepare(spec, url, target=target, partial_parent=partial_parent)
    target = stored.target  # (a refined grid keeps its points: store.study._store_settings)
    if data is not None:
        notes += data.notes
        if recorded is None:
            stored.study.set_user_attr(
                records.DATA, {"dir": str(data.root), "fingerprint": data.fingerprint}
            )
    notes += recover(stored)
    job = Job(
        url=url,
        study=name,
        threads=threads,
        data_dir=str(data.root) if data else data_dir,
        fingerprint=data.fingerprint if data else None,
        objective_dir=objective_dir,
        resume_command=resume_hint or resume_command(name, url, data_dir, given),
        workers=max(jobs, 1),
        **_limits(limit, gpus),
        function=given,
    )
    report = _reporter(stored, on_progress)
    try:
        c = stored.counts()
        # At the last progress: finished trials, FAIL count, the study's own failures.
        done, failed, own = finished(c), c["FAIL"], failures(stored)
        stalled = 0  # rounds in a row in which nothing in the study changed
        while done < target:
            if why := budget.out_of_time(job, stored):
                notes.append(
                    f"run stops: {why}; {done}/{target} trials finished, the rest can run "
                    f"later: {job.resume_command}"
                )
                break
            before = c
            notes += _round(stored, spec, job, jobs, report, poll, meanwhile)
            meanwhile = None
            c = retrying(stored.counts)
            stalled = stalled + 1 if jobs and c == before and not c["RUNNING"] else 0
            if stalled >= STALLED_ROUNDS:  # never loop for ever on workers that do nothing
                raise RunFailed(
                    f"study {name!r}: the workers ran no trial in {stalled} rounds and none "
                    f"is running ({done}/{target} finished); see `sweep status {name}`"
                )
            if finished(c) > done:
                done = finished(c)
                if c["FAIL"] != failed:  # read the trials only when some failed meanwhile
                    failed, own = c["FAIL"], retrying(lambda: failures(stored))
                continue
            # As many failures in a row as the study has trials (re-queued ones, like an
            # interrupted pack, do not count):
            if c["FAIL"] - failed >= target and retrying(lambda: failures(stored)) - own >= target:
                raise no_progress(stored, spec)
            if retrying(lambda: spent(stored, spec)):  # a grid with no point left to run
                if not finished(c):
                    raise no_progress(stored, spec)
                # Its failed points cannot be replaced: the run has done what it can, and
                # the finished trials get their tables, as with any other ending.
                notes.append(spent_grid(stored, c))
                break
        result = RunResult.of(stored, notes=notes, seconds=time.perf_counter() - started)
        report()  # the end, unless the last look already said it (it came twice)
    except Interrupted:
        raise  # the workers' trials failed and queued again: it says how to go on
    except KeyboardInterrupt:  # between rounds, watching workers elsewhere, or at the end
        raise Interrupted(
            f"{signals.reason()}; no trial of this command was running. "
            f"Resume with: {job.resume_command}",
            exit_code=signals.exit_code(),
        ) from None
    finally:
        stored.close()
    return result


def _round(
    stored: Stored,
    spec: StudyFile,
    job: Job,
    jobs: int,
    report: Callable[[], None],
    poll: float,
    meanwhile: Callable[[], object] | None = None,
) -> list[str]:
    """Top the queue up and let the workers run it; returns notes."""
    before = retrying(stored.counts)
    retrying(lambda: top_up(stored, spec))
    if jobs == 0:  # workers elsewhere (`sweep worker`) do the work: watch and recover
        if meanwhile is not None:
            meanwhile()
        time.sleep(poll)
        report()
        return retrying(lambda: recover(stored))
    notes = []
    _, crashed = pool.run(job, jobs, stored, on_poll=report, poll=poll, meanwhile=meanwhile)
    if crashed:  # (its trials run alone were ended with it: not their values' crash)
        recovered = recover(stored, blameless=pool.end_alone_runs(stored))
        notes.append(f"a worker died ({crashed}); {len(recovered)} trial(s) queued again")
        return notes
    after = stored.counts()
    if finished(after) > finished(before):
        return notes
    if finished(after) + after["RUNNING"] >= stored.target:
        # The missing trials run elsewhere (another machine, or a worker whose heartbeat
        # has not gone stale yet): wait for them, recovering any that turn stale.
        time.sleep(poll)
        return notes + recover(stored)
    return notes


def _reporter(stored: Stored, on_progress: Callable[[Progress], None] | None) -> Callable[[], None]:
    last: list[str] = []

    def report() -> None:
        if on_progress is None:
            return
        try:
            p = progress(stored)
        except Exception as exc:
            if unreachable(exc):
                return  # no progress line while the database is away
            raise
        if [p.text()] != last:
            on_progress(p)
            last[:] = [p.text()]

    return report


def join_study(
    name: str,
    *,
    storage_url: str | None = None,
    jobs: int = 1,
    data_dir: str | None = None,
    threads: int | None = None,
    idle: float = 60.0,
    oversubscribe: bool = False,
    objective_dir: str | None = None,
    time_limit: float | None = None,
    gpus: str | tuple[str, ...] = (),
    workers_per_gpu: int = 1,
    function: Callable[..., Any] | None = None,
) -> tuple[int, str | None]:
    """`sweep worker`: run trials of an existing study (from any machine) until its target,
    or until ``time_limit`` (as in run_study) leaves no time for another trial.

    With several jobs the trials run in worker processes, as in `sweep run` (a killed one
    is replaced); one job runs in this process (pool.run_here), unless the study has a
    trial_timeout: a trial stuck past it ends its process, which must not be this one.
    Returns the number of trials run and, if the time ran out first, why it stopped.
    """
    jobs, threads, time_limit, gpus, workers_per_gpu = options.check_run(
        jobs,
        oversubscribe=oversubscribe,
        threads=threads,
        time_limit=time_limit,
        gpus=gpus,
        workers_per_gpu=workers_per_gpu,
    )
    limit = Budget.start(time_limit)
    url = resolve_url(storage_url)
    stored, done = open_to_write(name, url)
    if done:  # a finished study on a read-only file: nothing for a worker to do
        stored.close()
        return 0, None
    spec = stored.spec
    here = jobs == 1 and not spec.study.trial_timeout
    if here:  # the trials run in this process: its device before the function loads
        devices.claim(gpus, 0)
    given = check_function(spec, function, objective_dir)  # says what to copy or install
    data = builtin.prepare_data(spec, data_dir, stored.attrs.get(records.DATA))
    job = Job(
        url=url,
        study=name,
        threads=threads or max(1, processes.cpu_count() // jobs),
        data_dir=str(data.root) if data else data_dir,
        fingerprint=data.fingerprint if data else None,
        objective_dir=objective_dir,
        resume_command=resume_command(name, url, data_dir, given),
        first_index=_worker_index(),
        idle=idle,
        workers=max(jobs, 1),
        **_limits(limit, gpus),
        function=given,
    )
    ran, any_crash = 0, False
    try:
        if here:
            ran = pool.run_here(job, stored)
        while not here:
            n, crashed = pool.run(job, jobs, stored)
            ran += n
            any_crash = any_crash or crashed is not None
            if not crashed or budget.out_of_time(job, stored):
                break
            recover(stored, blameless=pool.end_alone_runs(stored))  # (as in _round)
        if any_crash:  # a crash loses the round's count: the storage knows who ran what
            ran = retrying(lambda: ended_by_this_command(stored))
        c = retrying(stored.counts)
        if finished(c) >= stored.target:
            return ran, None
        if retrying(lambda: spent(stored, spec)):
            return ran, spent_grid(stored, c)  # (the worker stopped at once: no point left)
        return ran, budget.out_of_time(job, stored)
    finally:
        stored.close()


def spent_grid(stored: Stored, counts: dict[str, int]) -> str:
    """Why a grid with failed points stops short of its target."""
    return (
        f"every point of the grid has been tried: {finished(counts)}/{stored.target} finished, "
        f"{retrying(lambda: failures(stored))} failed (a grid has no other points to run in "
        f"their place; see `sweep trials {stored.name}`)"
    )


def _limits(limit: Budget | None, gpus: tuple[str, ...]) -> dict[str, Any]:
    """The Job fields of a time budget and devices."""
    deadline = {"deadline": limit.deadline, "deadline_by": limit.source} if limit else {}
    return {**deadline, "gpus": tuple(gpus)}


def _worker_index() -> int:
    """Distinct sampler seeds for workers on many machines: derived from host and pid."""
    return zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 100_000 + 1000
