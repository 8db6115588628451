"""Run a study: create it, plan and enqueue its values, start worker processes, top up.

The orchestrator (``run_study``) is the only process that creates the study and enqueues
trials; workers (``work``) receive plain arguments, open the storage themselves, load the
study by name and run queued trials until the study has its target of COMPLETE trials.
Every count is read from the storage, so rerunning any command continues correctly.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sweep import plan
from sweep.errors import (
    Interrupted,
    RunFailed,
    StorageError,
    StudyFileError,
    StudyNotFound,
    SweepError,
)
from sweep.narrowing import narrow
from sweep.storage import StudyLock, count_states, open_storage, resolve_url, validate_url
from sweep.studyfile import StudyFile

STATES = ("COMPLETE", "RUNNING", "WAITING", "FAIL", "PRUNED")
WAIT_SECONDS = 0.1  # how often idle workers look at the storage (a cheap COUNT query)


@dataclass
class Progress:
    study: str
    target: int
    counts: dict[str, int]
    best_value: float | None = None
    best_params: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        c = self.counts
        text = (
            f"{self.study}: {c.get('COMPLETE', 0)}/{self.target} complete, "
            f"{c.get('RUNNING', 0)} running, {c.get('FAIL', 0)} failed"
        )
        if self.best_value is not None:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in self.best_params.items())
            text += f"; best {self.best_value:.2%} ({shown})"
        return text


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state, read from the storage."""
    return {**dict.fromkeys(STATES, 0), **count_states(study._storage, study._study_id)}


def progress(study: optuna.Study, target: int) -> Progress:
    p = Progress(study.study_name, target, counts(study))
    if p.counts["COMPLETE"]:
        best = study.best_trial
        p.best_value, p.best_params = best.value, best.params
    return p


# --- creating a study -----------------------------------------------------------------


def _comparable(spec: StudyFile) -> dict:
    d = spec.to_dict()
    d.pop("path")
    d["study"].pop("trials")
    return d


def prepare_study(spec: StudyFile, storage, *, target: int) -> tuple[optuna.Study, list[str]]:
    """Create the study (or load it), store its settings and ranges once; set the target.

    Every step checks what the storage already holds, so a run killed half-way through
    creating a study is completed by the next one. Returns the study and notes for the
    user (e.g. how a fine range was derived).
    """
    notes: list[str] = []
    name = spec.study.name
    existing = {s.study_name for s in storage.get_all_studies()}
    if name not in existing:
        if spec.parent:
            _parent_results(spec, storage, existing)  # fail before creating anything
        optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study = optuna.load_study(study_name=name, storage=storage)
    attrs = study.user_attrs
    if "spec" not in attrs:
        study.set_user_attr("spec", spec.to_dict())
        study.set_user_attr("stage", spec.stage)
        study.set_user_attr("parent", spec.parent)
    elif _comparable(StudyFile.from_dict(attrs["spec"])) != _comparable(spec):
        raise StudyFileError(
            f"{spec.path}: study {name!r} already exists in the storage with other settings; "
            "give the study a new name (or use another --storage)"
        )
    if "ranges" not in attrs:  # derived once; a resumed fine stage never recomputes it
        ranges = {}
        for pname, r in spec.search.items():
            if r.narrow_from:
                narrowed = narrow(
                    _parent_results(spec, storage, existing, pname), top_k=r.top_k, margin=r.margin
                )
                ranges[pname] = (narrowed.low, narrowed.high, True)
                notes.append(
                    f"{pname} range narrowed from {r.narrow_from}: "
                    f"[{narrowed.low:.3g}, {narrowed.high:.3g}] ({narrowed.note})"
                )
                study.set_user_attr("range_note", narrowed.note)
            else:
                ranges[pname] = (r.low, r.high, r.log)
        study.set_user_attr("ranges", {k: list(v) for k, v in ranges.items()})
    if attrs.get("target") != target:
        study.set_user_attr("target", target)
    return study, notes


def _parent_results(
    spec: StudyFile, storage, existing: set[str], pname: str = "lambda"
) -> list[tuple[float, float]]:
    """(value, validation accuracy) of the parent study's COMPLETE trials."""
    parent_name = spec.parent
    if parent_name not in existing:
        raise StudyNotFound(
            f"the fine stage narrows from study {parent_name!r}, which is not in the storage; "
            f"run it first (e.g. sweep run studies/{parent_name}.toml)"
        )
    parent = optuna.load_study(study_name=parent_name, storage=storage)
    done = [
        (t.params[pname], t.value)
        for t in parent.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if pname in t.params
    ]
    if not done:
        raise StudyNotFound(
            f"study {parent_name!r} has no COMPLETE trials to narrow from; run or resume it first"
        )
    return done


def ranges_of(study: optuna.Study) -> dict[str, tuple[float, float, bool]]:
    return {
        k: (float(v[0]), float(v[1]), bool(v[2])) for k, v in study.user_attrs["ranges"].items()
    }


def next_point(study: optuna.Study) -> int:
    """The index of the first planned point not yet queued, derived from the trials
    themselves (each carries its point; retries keep it), so no counter can drift."""
    points = [
        t.user_attrs["point"] for t in study.get_trials(deepcopy=False) if "point" in t.user_attrs
    ]
    return max(points, default=-1) + 1


def top_up(study: optuna.Study, spec: StudyFile) -> int:
    """Enqueue the next planned points so that the queue covers the missing trials.

    Workers check the counts and pop under a lock (StudyLock), so exactly the missing
    points are queued and the study never overshoots its target.
    Returns how many points were enqueued.
    """
    if spec.study.sampler not in plan.PLANNED:
        return 0
    c = counts(study)
    target = study.user_attrs["target"]
    want = max(target - c["COMPLETE"] - c["RUNNING"], 0) - c["WAITING"]
    start = next_point(study)
    if spec.study.sampler == "grid":  # a grid has exactly `target` points
        want = min(want, target - start)
    ranges = ranges_of(study)
    for i in range(start, start + max(want, 0)):
        values = plan.point(spec.study.sampler, spec.study.seed, i, ranges, target)
        study.enqueue_trial(values, user_attrs={"point": i})
    return max(want, 0)


# --- workers --------------------------------------------------------------------------


def work(
    url: str, study_name: str, index: int, threads: int, data_folder: str, idle: float = 0.0
) -> int:
    """One worker process: run trials of ``study_name`` until its target is reached.

    While the last trials run elsewhere the worker waits, recovering any whose worker dies
    (their values are queued again and this worker runs them). With nothing queued and
    nothing running it exits after ``idle`` seconds (remote workers wait for the
    orchestrator to top up; the orchestrator's own workers exit at once and it tops up).
    Returns the number of trials this worker ran.
    """
    from threadpoolctl import threadpool_limits

    from core.errors import DivergedError
    from sweep.datacache import open_split
    from sweep.objective import Objective
    from sweep.resume import recover

    # Ctrl-C is the orchestrator's to handle: it kills the workers and fails their trials.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    storage = open_storage(url, create=False)
    study_id = storage.get_study_id_from_name(study_name)
    spec = StudyFile.from_dict(storage.get_study_user_attrs(study_id)["spec"])
    data = open_split(Path(data_folder))
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=plan.sampler_for(spec.study.sampler, spec.study.seed + 1 + index),
        pruner=plan.pruner_for(spec.study.pruner),
    )
    objective = Objective(spec, ranges_of(study), data, fingerprint=Path(data_folder).name)
    planned = spec.study.sampler in plan.PLANNED
    lock = StudyLock(storage, url, study_name)
    # The objective's first act is to let the next worker check and pop.
    objective.on_start = lock.release
    ran = 0
    idle_since = None
    try:
        with threadpool_limits(limits=threads):
            while True:
                lock.acquire()
                c = counts(study)
                target = study.user_attrs["target"]  # read afresh: a rerun may raise it
                if c["COMPLETE"] >= target:
                    break
                room = c["COMPLETE"] + c["RUNNING"] < target
                if room and (c["WAITING"] > 0 or not planned):
                    idle_since = None
                    study.optimize(objective, n_trials=1, catch=(DivergedError,))
                    lock.release()  # in case the trial ended before the objective ran
                    ran += 1
                    continue
                lock.release()
                if c["RUNNING"] == 0:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= idle:
                        break
                time.sleep(WAIT_SECONDS)
                recover(study)
    finally:
        lock.close()
    return ran


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class RunResult:
    study: str
    stage: str
    target: int
    counts: dict[str, int]
    best_value: float | None
    best_params: dict[str, float]
    ranges: dict[str, tuple[float, float, bool]]
    notes: list[str]
    seconds: float
    worker_seconds: float = 0.0
    already_done: bool = False


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
) -> RunResult:
    """Run ``spec`` until its study has ``trials`` (default: the file's) COMPLETE trials.

    Each worker gets ``threads`` BLAS threads (default: cores // jobs, so that parallel
    workers never oversubscribe the machine).
    """
    from sweep import datacache
    from sweep.resume import recover

    started = time.perf_counter()
    # Bad input fails before anything is written: the URL, then the data, then the storage.
    try:
        url = validate_url(storage_url, create=not spec.parent)
    except StorageError:
        if spec.parent:  # a fine stage's parent must already be in the storage
            raise StudyNotFound(
                f"the fine stage narrows from study {spec.parent!r}, which is not in the "
                f"storage {resolve_url(storage_url)}; run it first"
            ) from None
        raise
    if jobs:
        _start_workers(jobs)  # they start up while the data and storage are prepared
    cached = datacache.prepare(spec.split, data_dir, spec.train.dtype)
    storage = open_storage(url, create=not spec.parent)
    target = trials or spec.study.trials
    study, notes = prepare_study(spec, storage, target=target)
    notes += recover(study)
    threads = threads or max(1, cpu_count() // max(jobs, 1))
    worker_seconds = 0.0
    stalled = 0
    while True:
        before = counts(study)
        if before["COMPLETE"] >= target:
            break
        top_up(study, spec)
        if jobs == 0:  # workers elsewhere (`sweep worker`) do the work: watch and recover
            time.sleep(poll)
            notes += recover(study)
            if on_progress:
                on_progress(progress(study, target))
            continue
        t0 = time.perf_counter()
        _, crashed = _run_workers(
            url, spec.study.name, jobs, threads, str(cached.folder), study, on_progress, poll
        )
        worker_seconds += time.perf_counter() - t0
        if crashed:
            recovered = recover(study)
            notes.append(f"a worker died ({crashed}); {len(recovered)} trial(s) queued again")
        after = counts(study)
        if after["COMPLETE"] > before["COMPLETE"]:
            stalled = 0
        elif after["COMPLETE"] + after["RUNNING"] >= target:
            # The missing trials run elsewhere (another machine, or a worker whose heartbeat
            # has not gone stale yet): wait for them, recovering any that turn stale.
            time.sleep(poll)
            notes += recover(study)
        else:
            stalled += 1
            exhausted = spec.study.sampler == "grid" and next_point(study) >= target
            if stalled >= 5 or exhausted:
                raise RunFailed(
                    f"study {spec.study.name!r} made no progress: {after['FAIL']} trials failed "
                    f"(see `sweep trials {spec.study.name}` for the reasons)"
                )
    p = progress(study, target)
    if on_progress:
        on_progress(p)
    return RunResult(
        study=spec.study.name,
        stage=spec.stage,
        target=target,
        counts=p.counts,
        best_value=p.best_value,
        best_params=p.best_params,
        ranges=ranges_of(study),
        notes=notes,
        seconds=time.perf_counter() - started,
        worker_seconds=worker_seconds,
    )


def resume_study(
    name: str,
    *,
    storage_url: str | None = None,
    jobs: int = 1,
    data_dir: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Recover dead trials of a stored study and top it up to its stored target."""
    from sweep.inspect import load
    from sweep.resume import recover

    study = load(name, storage_url)
    spec = StudyFile.from_dict(study.user_attrs["spec"])
    target = int(study.user_attrs["target"])
    notes = recover(study)
    c = counts(study)
    if c["COMPLETE"] >= target and c["RUNNING"] == 0:
        p = progress(study, target)
        return RunResult(
            study=name,
            stage=spec.stage,
            target=target,
            counts=p.counts,
            best_value=p.best_value,
            best_params=p.best_params,
            ranges=ranges_of(study),
            notes=notes,
            seconds=0.0,
            already_done=True,
        )
    result = run_study(
        spec,
        storage_url=storage_url,
        jobs=jobs,
        data_dir=data_dir,
        trials=target,
        on_progress=on_progress,
    )
    result.notes[:0] = notes
    return result


def join_study(
    name: str,
    *,
    storage_url: str | None = None,
    jobs: int = 1,
    data_dir: str | None = None,
    threads: int | None = None,
    idle: float = 60.0,
) -> int:
    """`sweep worker`: run trials of an existing study (from any machine) until its target.

    The trials run in loky worker processes here too, so that Ctrl-C and a killed worker
    are handled as in `sweep run`. Returns the number of trials run.
    """
    from sweep import datacache
    from sweep.inspect import load
    from sweep.resume import recover

    url = resolve_url(storage_url)
    study = load(name, url)
    spec = StudyFile.from_dict(study.user_attrs["spec"])
    cached = datacache.prepare(spec.split, data_dir, spec.train.dtype)
    threads = threads or max(1, cpu_count() // jobs)
    ran = 0
    while True:
        n, crashed = _run_workers(
            url,
            name,
            jobs,
            threads,
            str(cached.folder),
            study,
            first_index=_worker_index(),
            idle=idle,
        )
        ran += n
        if not crashed:
            return ran
        recover(study)


def _worker_index() -> int:
    """Distinct sampler seeds for workers on many machines: derived from host and pid."""
    import socket
    import zlib

    return zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 100_000 + 1000


def _warm_up() -> int:
    import sweep.objective  # noqa: F401  (the imports are most of a worker's start-up)

    return os.getpid()


def _start_workers(jobs: int) -> None:
    from joblib.externals.loky import get_reusable_executor

    executor = get_reusable_executor(max_workers=jobs, timeout=60)
    for _ in range(jobs):
        executor.submit(_warm_up)


def _run_workers(
    url: str,
    name: str,
    jobs: int,
    threads: int,
    folder: str,
    study: optuna.Study,
    on_progress: Callable[[Progress], None] | None = None,
    poll: float = 1.0,
    *,
    first_index: int = 0,
    idle: float = 0.0,
) -> tuple[int, str | None]:
    """Run ``jobs`` loky worker processes, reporting progress from the storage meanwhile.

    Returns the number of trials they ran and None, or why a worker died (killed, out of
    memory): the caller recovers the trials and starts new workers, so a crash costs the
    running trials' progress and nothing more. Ctrl-C stops the workers, fails their
    trials (queued again) and raises Interrupted.
    """
    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import BrokenProcessPool

    executor = get_reusable_executor(max_workers=jobs, timeout=60)
    futures = [
        executor.submit(work, url, name, first_index + i, threads, folder, idle)
        for i in range(jobs)
    ]
    last = None
    try:
        while not all(f.done() for f in futures):
            concurrent.futures.wait(futures, timeout=poll)
            if on_progress:
                p = progress(study, study.user_attrs["target"])
                if p.line() != last:
                    on_progress(p)
                    last = p.line()
        return sum(f.result() for f in futures), None
    except KeyboardInterrupt:
        from sweep.resume import fail_running

        executor.shutdown(wait=True, kill_workers=True)
        n = fail_running(study, reason="interrupted")
        raise Interrupted(
            f"interrupted; {n} running trial(s) marked FAIL and queued again. Resume with: "
            f"sweep resume {name} --storage {url}"
        ) from None
    except BrokenProcessPool as exc:
        executor.shutdown(wait=True, kill_workers=True)
        return 0, str(exc).splitlines()[0]
    except SweepError:
        raise
    except Exception as exc:
        raise RunFailed(f"a worker of study {name!r} failed: {type(exc).__name__}: {exc}") from exc
