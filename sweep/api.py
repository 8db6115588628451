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
import html
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sweep.errors import StudyFileError, SweepError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from sweep.inspection import Status, StudyStatus
    from sweep.progress import Best, Progress
    from sweep.runner import RunResult
    from sweep.study import Stored
    from sweep.studyfile import StudyFile

logger = logging.getLogger("sweep")

Storage = str | os.PathLike | None  # a URL, or the path of a SQLite file


@runtime_checkable
class Context(Protocol):
    """What an objective receives besides its params (sweep/objective.py Context is one).

    Example:
        >>> import sweep
        >>> def objective(params: dict, ctx: sweep.Context) -> float:
        ...     for epoch in range(3):
        ...         ctx.report(epoch, 0.5 + 0.1 * epoch)  # pruners may stop the trial here
        ...     return 0.7
    """

    trial: int  # the trial's number in its study
    data_dir: str | None  # the data_dir given to run/resume/worker (`--data-dir`), or None

    def report(self, step: int, value: float, **more: float) -> None:
        """An intermediate value at ``step``; ``more`` adds other curves. Raises
        optuna.TrialPruned when the study's pruner stops the trial."""
        ...

    def keep_outcomes(self, correct: Any) -> None:
        """Which validation examples the final model got right (bool array): kept with
        the trial, to tell ties with the best apart (McNemar)."""
        ...


Objective = Callable[[dict[str, Any], Context], "float | Mapping[str, float]"]


# --- running -----------------------------------------------------------------------------


def run(
    study: str | os.PathLike[str] | Mapping[str, Any] | StudyFile,
    *,
    objective: Objective | None = None,
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
        storage: a storage URL (``sqlite:///sweeps.db``, ``postgresql+psycopg://...``) or
            the path of a SQLite file; default ``$SWEEP_STORAGE``, else sqlite:///sweeps.db.
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
    with quieted(quiet):
        from sweep.functions import given_name
        from sweep.runner import run_study

        spec = _study_file(study, None if objective is None else given_name(objective), seed)
        result = run_study(
            spec,
            storage_url=_url(storage),
            jobs=jobs,
            data_dir=_str(data_dir),
            trials=trials,
            threads=threads,
            on_progress=_on_progress(progress),
            oversubscribe=oversubscribe,
            objective_dir=objective_dir,
            partial_parent=partial_parent,
            function=objective,
        )
    for note in result.notes:
        logger.info(note)
    return result


def resume(
    name: str,
    *,
    objective: Objective | None = None,
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

    Example:
        >>> sweep.resume("quadratic", objective=f, storage="sqlite:///quadratic.db")
    """
    with quieted(quiet):
        from sweep.resume import resume_study

        result = resume_study(
            name,
            storage_url=_url(storage),
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
    objective: Objective | None = None,
    storage: Storage = None,
    jobs: int = 1,
    data_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    idle: float = 60.0,
    oversubscribe: bool = False,
    objective_dir: str | None = None,
    quiet: bool = True,
) -> int:
    """Run trials of a study created elsewhere until its target (`sweep worker`); returns
    how many this call ran. ``objective``: as for `resume`.

    Example:
        >>> sweep.worker("quadratic", objective=f, storage="postgresql+psycopg://...")
        3
    """
    with quieted(quiet):
        from sweep.runner import join_study

        return join_study(
            name,
            storage_url=_url(storage),
            jobs=jobs,
            data_dir=_str(data_dir),
            threads=threads,
            idle=idle,
            oversubscribe=oversubscribe,
            objective_dir=objective_dir,
            function=objective,
        )


def status(storage: Storage = None) -> Status:
    """Every study in the storage (`sweep status`): ``.studies``, ``.text()``, ``.json()``.

    Example:
        >>> print(sweep.status("sqlite:///quadratic.db").text())
        quadratic [coarse] target 6: COMPLETE 6; best trial 4 x 0.1021 -> loss 0.002608
    """
    with quieted():
        from sweep.inspection import status as read_status

        return read_status(_url(storage))


def reproduce(
    *,
    out: str | os.PathLike[str] = "report",
    jobs: int = 2,
    data_dir: str | os.PathLike[str] | None = None,
    storage: Storage = None,
    studies: str | os.PathLike[str] | None = None,
    progress: bool | Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """The whole seed study, resumable (`sweep reproduce`); returns what OUT/summary.json
    holds. Each stage's line goes to the "sweep" logger.

    Example:
        >>> summary = sweep.reproduce(out="report", jobs=2)
        >>> summary["final"]["test_accuracy"]
        0.5213
    """
    with quieted():
        from sweep.reproduce import reproduce as run_all

        return run_all(
            out=out,
            jobs=jobs,
            data_dir=_str(data_dir),
            storage_url=_url(storage),
            studies_dir=_str(studies),
            say=logger.info,
            on_progress=_on_progress(progress),
        )


# --- reading -----------------------------------------------------------------------------


def open(name: str, *, storage: Storage = None) -> Study:
    """A stored study, to read: its trials, best, table, figures and report.

    Every read goes to the storage, so a study that is still running shows its progress.

    Example:
        >>> study = sweep.open("quadratic", storage="sqlite:///quadratic.db")
        >>> study.best
        Best(number=4, params={'x': 0.1021}, value=0.0026)
        >>> study.trials()[["number", "state", "x", "value"]].head(2)
        >>> study.figure()  # a matplotlib Figure; Jupyter shows it inline
    """
    found = Study(name, _url(storage))
    found._stored()  # a missing study or storage fails here, in one line
    return found


@dataclasses.dataclass(frozen=True)
class Study:
    """A study in a storage (see `open`)."""

    name: str
    storage: str | None = None  # its URL (None: $SWEEP_STORAGE or sqlite:///sweeps.db)

    def _stored(self) -> Stored:
        with quieted():
            from sweep.inspection import load

            return load(self.name, self.storage)

    def status(self) -> StudyStatus:
        """Stage, parent, target, counts per state, best, range (`sweep status`'s row)."""
        return next(s for s in status(self.storage).studies if s.study == self.name)

    @property
    def counts(self) -> dict[str, int]:
        """Trials per state: COMPLETE, PRUNED, FAIL, RUNNING, WAITING."""
        return self._stored().counts()

    @property
    def best(self) -> Best | None:
        """The best COMPLETE trial: number, params, value (None before the first one)."""
        best = self._stored().best()
        from sweep.progress import Best  # after _stored: Optuna is first imported quietly

        return None if best is None else Best(best.number, dict(best.params), float(best.value))

    def trials(self, sort: str = "number") -> pd.DataFrame:
        """One row per trial, the columns of `sweep trials --format csv`: number, state,
        each searched parameter, value, se, tied, each metric, seconds, reason."""
        with quieted():
            from sweep.inspection import trials

            return trials(self.name, self.storage, sort).frame()

    def table(self) -> pd.DataFrame:
        """The study table (table.csv of `sweep table`): one row per finished trial, sorted
        by the first parameter, with rank and the best marked."""
        with quieted():
            from sweep.tables import study_table

            return study_table(self._stored().study)

    def figure(self, kind: str = "param", param: str | None = None) -> Figure:
        """A matplotlib Figure, not saved (``fig.savefig(path)`` writes it).

        ``kind="param"``: the metric against a searched parameter (default: lambda, else
        the first numeric one), with the stages it was narrowed from overlaid and its
        range shaded, as in the report. ``kind="history"``: the metric in the order the
        trials finished, with the best so far.
        """
        with quieted():
            from sweep import figures

            stored = self._stored()
            spec = stored.spec
            if kind == "history":
                title = f"{self.name}: optimisation history"
                return figures.history_figure(
                    figures.history_data(stored.study), title, spec.metric
                )
            if kind != "param":
                raise SweepError(f"figure kind {kind!r} is not one of: param, history")
            numeric = sorted(p for p, r in spec.search.items() if r.choices is None)
            if param is None:
                if not numeric:
                    raise SweepError(f"study {self.name!r} searches no numeric parameter to draw")
                param = "lambda" if "lambda" in numeric else numeric[0]
            if param not in numeric:
                raise SweepError(
                    f"study {self.name!r} searches no numeric parameter {param!r}; "
                    f"choose one of: {', '.join(numeric) or 'none'}"
                )
            chain = [*self._parents(stored), stored]
            ranges = {s.name: s.ranges[param][:2] for s in chain if param in s.ranges}
            log = all(s.ranges[param][2] for s in chain if param in s.ranges)
            return figures.param_figure(
                figures.param_data([s.study for s in chain], param),
                ranges,
                param=param,
                metric=spec.metric,
                log=log,
            )

    def report(self, out: str | os.PathLike[str] = "reports", *, fmt: str = "png") -> Path:
        """Write tables, figures and report.md into ``out`` (`sweep report`), with the
        stages this study was narrowed from; returns the path of report.md."""
        with quieted():
            from sweep.report import write_report

            names = [s.name for s in self._parents(self._stored())] + [self.name]
            return write_report(names, storage_url=self.storage, out=out, fmt=fmt).path

    def _parents(self, stored: Stored) -> list[Stored]:
        """The studies this one narrows from, oldest first, as far as the storage has them."""
        from sweep.errors import StudyNotFound
        from sweep.inspection import load

        chain: list[Stored] = []
        parent = stored.attrs.get("parent")
        while parent and parent not in {s.name for s in chain} | {self.name}:
            try:
                chain.insert(0, load(parent, self.storage))
            except StudyNotFound:
                break
            parent = chain[0].attrs.get("parent")
        return chain

    def __repr__(self) -> str:
        return f"sweep.open({self.name!r}, storage={self.storage!r})"

    def _repr_html_(self) -> str:
        """Jupyter's view: name, stage, counts, best, and the table's first rows."""
        from sweep.display import label, number, params

        s = self.status()
        states = ", ".join(f"{k} {v}" for k, v in s.states.items()) or "no trials"
        stage = html.escape(s.stage or "?") + (
            f" from <code>{html.escape(s.parent)}</code>" if s.parent else ""
        )
        lines = [
            f"<p><b>study <code>{html.escape(self.name)}</code></b> ({stage}): "
            f"target {s.target}; {html.escape(states)}</p>"
        ]
        if s.best:
            value = number(s.metric, s.best["value"])
            lines.append(
                f"<p>best: trial {s.best['trial']}, {html.escape(params(s.best['params']))} "
                f"&rarr; {html.escape(label(s.metric))} {html.escape(value)}</p>"
            )
        table = self.table()
        if len(table):
            lines.append(
                table.head(10).to_html(index=False, na_rep="", float_format="{:.4g}".format)
            )
            if len(table) > 10:
                lines.append(f"<p>... {len(table) - 10} more rows: <code>.table()</code></p>")
        return "\n".join(lines)


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
        import optuna

        from sweep.storage import quiet_optuna

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
    from sweep import studyfile

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
        where = f"study dict {study.get('study', {}).get('name', '')!r}".replace(" ''", "")
        return studyfile.parse(_plain(study), where, os.getcwd(), given=given, seed=seed)
    if isinstance(study, str | os.PathLike):
        return studyfile.load(study, given=given, seed=seed)
    raise StudyFileError(
        f"study must be a study file's path, a dict or a StudyFile, not {type(study).__name__}"
    )


def _plain(value: Any) -> Any:
    """Mappings as dicts all the way down, as tomllib gives them."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


def _url(storage: Storage) -> str | None:
    if storage is None or isinstance(storage, str):
        return storage
    return f"sqlite:///{Path(storage).absolute()}"


def _str(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.fspath(path)


def _on_progress(
    progress: bool | Callable[[Progress], None] | None,
) -> Callable[[Progress], None] | None:
    if progress is True:
        return lambda p: print(p.text(), file=sys.stderr, flush=True)
    return progress or None
