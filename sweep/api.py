"""The public Python API (`import sweep`): run, resume and join studies, and read them.

The `sweep` command is a thin layer over these functions. Importing this module is cheap:
Optuna, pandas and matplotlib are imported inside the functions that need them.

Library use is quiet. While a function of this module runs, Optuna's log lines ("A new
study created ...") and its ExperimentalWarnings are silenced, and what was set before is
put back afterwards; worker processes are always quiet. Pass ``quiet=False`` to `run`,
`resume` or `worker` to see Optuna's own output. The sweep's notes (a narrowed range, a
recovered trial) go to the Python logger named "sweep"; show them with
``logging.basicConfig(level=logging.INFO)`` or a handler on ``logging.getLogger("sweep")``.

Example:
    >>> import sweep
    >>> def objective(params, ctx):  # any callable f(params, ctx), a notebook cell's too
    ...     return (params["x"] - 1.0) ** 2
    >>> result = sweep.run(
    ...     {
    ...         "study": {"name": "doc-quadratic", "trials": 4},
    ...         "objective": {"direction": "minimize"},
    ...         "search": {"x": {"low": -3.0, "high": 3.0, "log": False}},
    ...     },
    ...     objective=objective,
    ...     storage="sqlite:///doc.db",
    ... )
    >>> result.best.value < 4
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.errors import StudyFileError, SweepError, translated
from sweep.objectives.context import Function
from sweep.system import signals

if TYPE_CHECKING:
    from sweep.execution.progress import Progress
    from sweep.execution.result import WorkerResult
    from sweep.execution.runner import RunResult
    from sweep.results.inspection import Status
    from sweep.spec.studyfile import StudyFile

logger = logging.getLogger("sweep")

Storage = str | os.PathLike | None  # a URL string, or a Path of a SQLite file


# --- running -----------------------------------------------------------------------------


def run(
    study: str | os.PathLike[str] | Mapping[str, Any] | StudyFile,
    *,
    objective: Function | None = None,
    storage: Storage = None,
    jobs: int = 1,
    trials: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool | Callable[[Progress], None] | None = None,
    seed: int | None = None,
    threads: int | None = None,
    oversubscribe: bool = False,
    objective_dir: str | None = None,
    partial_parent: bool = False,
    time_limit: float | None = None,
    gpus: str | tuple[str, ...] = (),
    workers_per_gpu: int = 1,
    quiet: bool = True,
) -> RunResult:
    """Run a study until it has its target of finished trials (`sweep run`); rerunning it
    tops it up.

    Args:
        study: a study file's path, a dict with its keys as TOML would parse them
            (``{"study": {...}, "search": {"x": {...}}, ...}``), or a parsed StudyFile.
        objective: any callable ``f(params, ctx)``, a function of a notebook cell, a
            lambda or a closure included: it is sent to the worker processes by value
            (cloudpickle). The study's [objective] section then holds at most ``metric``
            and ``direction``. The study remembers that its function lived in memory:
            `resume` and `worker` need it passed again.
        storage: a storage URL string (``sqlite:///sweeps.db``, ``postgresql+psycopg://...``,
            ``journal:///PATH``) or a pathlib.Path of a SQLite file; default
            ``$SWEEP_STORAGE``, else sqlite:///sweeps.db.
        jobs: worker processes. trials: the target (default: the study's).
        data_dir: passed to the function as ``ctx.data_dir`` (the built-in network: where
            CIFAR-10 is).
        progress: True prints a line to stderr as trials finish; a callable gets each
            Progress (``.text()``, ``.counts``, ``.best_value``).
        seed, threads, oversubscribe, objective_dir, partial_parent: as `sweep run`'s flags.
        quiet: silence Optuna's log lines and warnings in this process.

    Returns the RunResult: counts, ``best`` (number, params, value), ranges, notes.

    Example:
        >>> import sweep
        >>> width = 2.0
        >>> result = sweep.run(
        ...     {
        ...         "study": {"name": "quadratic", "trials": 6},
        ...         "objective": {"metric": "loss", "direction": "minimize"},
        ...         "search": {"x": {"low": -5.0, "high": 5.0, "log": False}},
        ...     },
        ...     objective=lambda params, ctx: {"loss": (params["x"] / width) ** 2},
        ...     storage="sqlite:///quadratic.db",
        ...     jobs=2,
        ... )
        >>> result
        RunResult(study='quadratic', stage='coarse', finished=6/6, failed=0, best=...)
    """
    with signals.handled_in_call(), translated(), quieted(quiet):
        with signals.held():
            from sweep.execution.runner import run_study
            from sweep.objectives.functions import given_name

        spec = _study_file(study, None if objective is None else given_name(objective), seed)
        result = run_study(
            spec,
            storage_url=url_of(storage),
            jobs=jobs,
            data_dir=_str(data_dir),
            trials=trials,
            threads=threads,
            on_progress=_on_progress(progress),
            oversubscribe=oversubscribe,
            objective_dir=objective_dir,
            partial_parent=partial_parent,
            time_limit=time_limit,
            gpus=gpus,
            workers_per_gpu=workers_per_gpu,
            function=objective,
        )
    for note in result.notes:
        logger.info(note)
    return result


def resume(
    name: str,
    *,
    objective: Function | None = None,
    storage: Storage = None,
    jobs: int = 1,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool | Callable[[Progress], None] | None = None,
    oversubscribe: bool = False,
    objective_dir: str | None = None,
    quiet: bool = True,
) -> RunResult:
    """Recover a stored study's dead trials and top it up to its target (`sweep resume`).

    Everything comes from the storage, except a function that was given in memory to
    `run`: pass it again as ``objective`` (without it: a SweepError saying so).

    Example (the study of `run`'s example, its function given again):
        >>> loss = lambda params, ctx: {"loss": (params["x"] / width) ** 2}
        >>> sweep.resume("quadratic", objective=loss, storage="sqlite:///quadratic.db")
    """
    with signals.handled_in_call(), translated(), quieted(quiet):
        with signals.held():
            from sweep.execution.resume import resume_study

        result = resume_study(
            name,
            storage_url=url_of(storage),
            jobs=jobs,
            data_dir=_str(data_dir),
            on_progress=_on_progress(progress),
            oversubscribe=oversubscribe,
            objective_dir=objective_dir,
            function=objective,
        )
    for note in result.notes:
        logger.info(note)
    return result


def worker(
    name: str,
    *,
    objective: Function | None = None,
    storage: Storage = None,
    jobs: int = 1,
    data_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    idle: float = 60.0,
    oversubscribe: bool = False,
    objective_dir: str | None = None,
    time_limit: float | None = None,
    gpus: str | tuple[str, ...] = (),
    workers_per_gpu: int = 1,
    quiet: bool = True,
) -> WorkerResult:
    """Run trials of a study created elsewhere until its target (`sweep worker`), or until
    ``time_limit`` (seconds; or the scheduler's job end time) leaves no time for another
    trial; returns how many this call ran, and why it stopped early (None: the study is
    done). ``objective``: as for `resume`.

    Example (on another machine; ``loss`` as in `resume`'s example):
        >>> sweep.worker("quadratic", objective=loss, storage="postgresql+psycopg://...")
        WorkerResult(ran=3, stopped=None)
    """
    with signals.handled_in_call(), translated(), quieted(quiet):
        with signals.held():
            from sweep.execution.result import WorkerResult
            from sweep.execution.runner import join_study

        ran, stopped = join_study(
            name,
            storage_url=url_of(storage),
            jobs=jobs,
            data_dir=_str(data_dir),
            threads=threads,
            idle=idle,
            oversubscribe=oversubscribe,
            objective_dir=objective_dir,
            time_limit=time_limit,
            gpus=gpus,
            workers_per_gpu=workers_per_gpu,
            function=objective,
        )
        return WorkerResult(ran, stopped)


def status(storage: Storage = None) -> Status:
    """Every study in the storage (`sweep status`): ``.studies``, ``.text()``, ``.json()``.

    Example:
        >>> print(sweep.status("sqlite:///quadratic.db").text())
        quadratic [coarse] target 6: COMPLETE 6; best trial 0 x 0.6545 -> loss 0.1071
    """
    with quieted():
        with signals.held():
            from sweep.results.inspection import status as read_status

        return read_status(url_of(storage))


def reproduce(
    *,
    out: str | os.PathLike[str] | None = None,
    jobs: int = 2,
    data_dir: str | os.PathLike[str] | None = None,
    storage: Storage = None,
    studies: str | os.PathLike[str] | None = None,
    progress: bool | Callable[[Progress], None] | None = None,
    bonus: bool = False,
) -> dict[str, Any]:
    """The whole seed study, resumable (`sweep reproduce`); returns what OUT/summary.json
    holds. Each stage's line goes to the "sweep" logger. ``bonus``: the bonus search and
    its final model instead (`sweep reproduce --bonus`). ``out``: default report/, with
    ``bonus`` report_bonus/.

    Example:
        >>> summary = sweep.reproduce(out="report", jobs=2)
        >>> summary["final"]["test_accuracy"]  # README "What to expect"
        0.5166
    """
    with signals.handled_in_call(), translated(), quieted():
        with signals.held():
            from sweep.execution.bonus import reproduce_bonus
            from sweep.execution.reproduce import reproduce as seed

        return (reproduce_bonus if bonus else seed)(
            out=out or ("report_bonus" if bonus else "report"),
            jobs=jobs,
            data_dir=_str(data_dir),
            storage_url=url_of(storage),
            studies_dir=_str(studies, "studies"),
            say=logger.info,
            on_progress=_on_progress(progress),
        )


# --- helpers -----------------------------------------------------------------------------


@contextlib.contextmanager
def quieted(quiet: bool = True) -> Iterator[None]:
    """Optuna's log lines and ExperimentalWarnings off while the block runs, then put back
    as they were (the warning filters by warnings.catch_warnings)."""
    if not quiet:
        yield
        return
    with warnings.catch_warnings():
        # Optuna imports tqdm.auto, which warns in a notebook without ipywidgets; the
        # sweep draws no progress bars.
        warnings.filterwarnings("ignore", message="IProgress not found")
        with signals.held():  # (a Ctrl-C in an import broke every later call)
            import optuna

            from sweep.store.storage import quiet_optuna

        verbosity = optuna.logging.get_verbosity()
        pool = logging.getLogger("sqlalchemy.pool")
        level = pool.level
        quiet_optuna()
        try:
            yield
        finally:
            optuna.logging.set_verbosity(verbosity)
            pool.setLevel(level)


def _study_file(
    study: str | os.PathLike[str] | Mapping[str, Any] | StudyFile,
    given: str | None,
    seed: int | None,
) -> StudyFile:
    """The study as parsed: from a path, a dict or a StudyFile; ``given``: the name of a
    function given in memory."""
    from sweep.spec import studyfile

    if isinstance(study, studyfile.StudyFile):
        if given is not None and not study.objective.in_memory:
            raise StudyFileError(
                f"study {study.study.name!r} was parsed for {study.objective.source}; to give "
                "a function with objective=, pass the study as a path or a dict"
            )
        if seed is not None:
            study = dataclasses.replace(study, study=dataclasses.replace(study.study, seed=seed))
        return study
    if isinstance(study, Mapping):
        section = study.get("study")
        name = section.get("name", "") if isinstance(section, Mapping) else ""
        where = f"study dict {name!r}".replace(" ''", "")
        return studyfile.parse(_plain(study), where, os.getcwd(), given=given, seed=seed)
    if isinstance(study, str | os.PathLike):
        return studyfile.load(study, given=given, seed=seed)
    raise StudyFileError(
        f"study must be a study file's path, a dict or a StudyFile, not {type(study).__name__}"
    )


def _plain(value: Any) -> Any:
    """Mappings as dicts all the way down, as tomllib gives them (a numpy integer as an
    int: trials=np.int64(3) was refused, where a numpy float was taken)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | int):
        return int(value)
    return value


def url_of(storage: Storage) -> str | None:
    """A storage given as a URL string (kept), a Path (a SQLite file) or None (the default)."""
    if storage is None or isinstance(storage, str):
        return storage
    if not isinstance(storage, os.PathLike):
        raise SweepError(
            f"storage ({storage!r}) must be a URL string (sqlite:///PATH.db, "
            "postgresql+psycopg://..., journal:///PATH) or the path of a SQLite file"
        )
    from sweep.store.urls import sqlite_url

    return sqlite_url(Path(storage).absolute())


def _str(path: str | os.PathLike[str] | None, what: str = "data_dir") -> str | None:
    if path is not None and not isinstance(path, str | os.PathLike):
        raise SweepError(f"{what} ({path!r}) must be a folder's path, a str or a pathlib.Path")
    return None if path is None else os.fspath(path)


def _on_progress(
    progress: bool | Callable[[Progress], None] | None,
) -> Callable[[Progress], None] | None:
    if progress is True:
        return lambda p: print(p.text(), file=sys.stderr, flush=True)
    if progress not in (None, False) and not callable(progress):
        raise SweepError(f"progress ({progress!r}) must be True, False, None or a callable")
    return progress or None
