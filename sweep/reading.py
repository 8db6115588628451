"""Reading a stored study from Python: `sweep.open(name)` returns a Study, whose
trials, best, table, figures and report are read from the storage at each call (so a
study that is still running shows its progress), with an HTML view for Jupyter.
"""

from __future__ import annotations

import dataclasses
import html
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.api import Storage, quieted, status, url_of
from sweep.errors import SweepError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from sweep.execution.progress import Best
    from sweep.results.inspection import StudyStatus
    from sweep.store.study import Stored


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
    found = Study(name, url_of(storage))
    found._stored()  # a missing study or storage fails here, in one line
    return found


@dataclasses.dataclass(frozen=True)
class Study:
    """A study in a storage (see `open`)."""

    name: str
    storage: str | None = None  # its URL (None: $SWEEP_STORAGE or sqlite:///sweeps.db)

    def _stored(self) -> Stored:
        with quieted():
            from sweep.results.inspection import load

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
        from sweep.execution.progress import Best  # after _stored: Optuna is first imported quietly

        return None if best is None else Best(best.number, dict(best.params), float(best.value))

    def trials(self, sort: str = "number") -> pd.DataFrame:
        """One row per trial, the columns of `sweep trials --format csv`: number, state,
        each searched parameter, value, se, tied, each metric, seconds, reason. ``sort``:
        number, value (the best first) or a searched parameter's name."""
        with quieted():
            from sweep.results.inspection import trials

            return trials(self.name, self.storage, sort).frame()

    def table(self) -> pd.DataFrame:
        """The study table (table.csv of `sweep table`): one row per ended trial (COMPLETE,
        PRUNED or FAIL, with its reason), sorted by the first parameter, with rank and the
        best marked."""
        with quieted():
            from sweep.results.tables import study_table

            return study_table(self._stored().study)

    def figure(self, kind: str = "param", param: str | None = None) -> Figure:
        """A matplotlib Figure, not saved (``fig.savefig(path)`` writes it).

        ``kind="param"``: the metric against a searched parameter (default: lambda, else
        the first numeric one, else the first), with the stages it was narrowed from
        overlaid and its range shaded, as in the report; a choices parameter's choices
        along the axis. ``kind="history"``: the metric in the order the
        trials finished, with the best so far.
        """
        with quieted():
            from sweep.results import figures
            from sweep.results.report import param_axis

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
                if not spec.search:
                    raise SweepError(f"study {self.name!r} searches no parameter to draw")
                param = "lambda" if "lambda" in spec.search else (numeric or sorted(spec.search))[0]
            if param not in spec.search:
                raise SweepError(
                    f"study {self.name!r} searches no parameter {param!r}; "
                    f"choose one of: {', '.join(sorted(spec.search)) or 'none'}"
                )
            choices = spec.search[param].choices
            if figures.numeric(choices):  # drawn on a number axis
                choices = None
            chain = [  # the stages drawn on the same axis (figures.axes_of)
                s
                for s in [*self._parents(stored), stored]
                if param in s.spec.search
                and figures.same_choices(s.spec.search[param].choices, choices)
            ]
            choices = None if choices is None else list(choices)
            data, ranges, log = param_axis(chain, param, choices)
            return figures.param_figure(
                data, ranges, param=param, metric=spec.metric, log=log, choices=choices
            )

    def report(self, out: str | os.PathLike[str] = "reports", *, fmt: str = "png") -> Path:
        """Write tables, figures and report.md into ``out`` (`sweep report`), with the
        stages this study was narrowed from; returns the path of report.md."""
        with quieted():
            from sweep.results.report import write_report

            names = [s.name for s in self._parents(self._stored())] + [self.name]
            return write_report(names, storage_url=self.storage, out=out, fmt=fmt).path

    def _parents(self, stored: Stored) -> list[Stored]:
        """The studies this one narrows from, oldest first, as far as the storage has them."""
        from sweep.errors import StudyNotFound
        from sweep.results.inspection import load
        from sweep.store import records

        chain: list[Stored] = []
        parent = stored.attrs.get(records.PARENT)
        while parent and parent not in {s.name for s in chain} | {self.name}:
            try:
                chain.insert(0, load(parent, self.storage))
            except StudyNotFound:
                break
            parent = chain[0].attrs.get(records.PARENT)
        return chain

    def __repr__(self) -> str:
        return f"sweep.open({self.name!r}, storage={self.storage!r})"

    def _repr_html_(self) -> str:
        """Jupyter's view: name, stage, counts, best, and the table's first rows."""
        from pandas.api.types import is_extension_array_dtype

        from sweep.results.display import label, number, params

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
            head = table.head(10).copy()
            # Blank cells for what has no value: na_rep takes neither None in an object
            # column nor <NA> in a nullable one (the rank of a failed trial).
            for name, dtype in head.dtypes.items():
                if dtype.kind == "O" or is_extension_array_dtype(dtype):
                    head[name] = head[name].astype(object).where(head[name].notna(), "")
            lines.append(head.to_html(index=False, na_rep="", float_format="{:.4g}".format))
            if len(table) > 10:
                lines.append(f"<p>... {len(table) - 10} more rows: <code>.table()</code></p>")
        return "\n".join(lines)
