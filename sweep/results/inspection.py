"""Read-only views of the storage: status of every study, trials of one, one trial.

Each view returns a typed result with one method for its text form and one for its JSON
form; the CLI only prints them. Readers take no write lock, so they may run against a live
sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from sweep.errors import StudyNotFound, SweepError
from sweep.results.display import (
    label,
    metric_column,
    number,
    objective_column,
    param_column,
    params,
)
from sweep.spec.studyfile import StudyFile
from sweep.store import records
from sweep.store.records import (
    FAIL_REASON,
    PRUNE_REASON,
    RANGES,
    RESULT,
    STEP_STRIDE,
    WORKER,
    fail_reason,
    prune_reason,
    spec_of,
    values_of,
)
from sweep.store.storage import open_storage
from sweep.store.study import Stored, open_study
from sweep.store.uncertainty import Tied, study_ties, tied_span
from sweep.store.urls import resolve_url
from sweep.system.output import json_text, markdown_cell


def load(name: str, storage_url: str | None = None) -> Stored:
    return open_study(name, resolve_url(storage_url), read_only=True)


def seconds_of(t: FrozenTrial) -> float | None:
    if t.datetime_complete and t.datetime_start:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return None


def lambda_of(t: FrozenTrial) -> float | None:
    """The trial's lambda; a queued trial holds it among its planned values."""
    return values_of(t).get("lambda")


STALE = "no heartbeat for the grace period (worker gone or cut off); its values ran again"


def trial_reason(t: FrozenTrial) -> str:
    """Why a trial failed (only FAIL and PRUNED trials have a reason).

    Every FAIL the sweep decides records its reason first; the one it cannot is Optuna's
    own stale-heartbeat failure, which finishes the trial before the sweep is called.
    """
    if t.state.name == "PRUNED":
        return str(prune_reason(t) or "")
    if t.state.name == "FAIL":
        return str(fail_reason(t, STALE))
    return ""


# --- status ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyStatus:
    study: str
    stage: str | None
    parent: str | None
    target: int | None
    states: dict[str, int]
    best: dict[str, Any] | None  # {"trial", "lambda", "value", "params"}
    range: dict[str, float] | None  # {"low", "high"} of lambda
    metric: str = "val_accuracy"
    tied: Tied | None = None  # trials tied with the best, and the range of param they span
    param: str = "lambda"

    def json(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "stage": self.stage,
            "parent": self.parent,
            "target": self.target,
            "states": self.states,
            "best": self.best,
            "range": self.range,
            "metric": self.metric,
            "tied": self.tied.json() if self.tied else None,
        }

    def text(self) -> str:
        states = ", ".join(f"{k} {v}" for k, v in self.states.items()) or "no trials"
        line = f"{self.study} [{self.stage}"
        line += f" from {self.parent}]" if self.parent else "]"
        line += f" target {self.target}: {states}"
        if self.best:
            shown = params(self.best["params"])
            value = number(self.metric, self.best["value"])
            line += f"; best trial {self.best['trial']} {shown} -> {label(self.metric)} {value}"
        if self.range:
            line += f"; range [{self.range['low']:.3g}, {self.range['high']:.3g}]"
        if self.tied and self.tied.count is not None:
            line += f"; {self.tied.count} tied with the best"
            if self.tied.low is not None:
                line += f" ({self.param} {self.tied.low:.3g}..{self.tied.high:.3g})"
        return line


@dataclass(frozen=True)
class Status:
    studies: list[StudyStatus]

    def json(self) -> str:
        return json_text([s.json() for s in self.studies], indent=2)

    def text(self) -> str:
        if not self.studies:
            return "no studies in this storage yet; start one with `sweep run STUDY_FILE`"
        return "\n".join(s.text() for s in self.studies)


def status(storage_url: str | None = None) -> Status:
    """Every study: stage, parent, target, counts per state, best trial, range."""
    url = resolve_url(storage_url)
    storage = open_storage(url, read_only=True)
    rows = []
    for summary in storage.get_all_studies():
        stored = Stored(
            url, storage, optuna.load_study(study_name=summary.study_name, storage=storage)
        )
        attrs = stored.attrs
        b = stored.best() if len(summary.directions) == 1 else None  # one objective only
        lam = attrs.get(RANGES, {}).get("lambda")
        spec = spec_of(attrs)
        metric = spec.metric if spec else "value"
        # The span of the searched value tied trials cover: lambda, or the first parameter.
        param = "lambda" if spec and "lambda" in spec.search else min(spec.search) if spec else ""
        rows.append(
            StudyStatus(
                study=stored.name,
                stage=attrs.get(records.STAGE),
                parent=attrs.get(records.PARENT),
                target=attrs.get(records.TARGET),
                states={k: v for k, v in stored.counts().items() if v},
                best={
                    "trial": b.number,
                    "lambda": b.params.get("lambda"),
                    "value": b.value,
                    "params": b.params,
                }
                if b
                else None,
                range={"low": lam[0], "high": lam[1]} if lam else None,
                metric=metric,
                tied=tied_span(stored.study, metric, param) if spec else None,
                param=param,
            )
        )
    return Status(rows)


# --- trials ----------------------------------------------------------------------------

JSON_KEYS = ("number", "state", "lambda", "value", "seconds", "se", "tied", "reason")
JSON_KEYS += ("params", "metrics")


@dataclass(frozen=True)
class Trials:
    rows: list[dict[str, Any]]  # JSON_KEYS plus "reason"
    metric: str = ""  # the study's objective

    def json(self) -> str:
        return json_text([{k: r[k] for k in JSON_KEYS} for r in self.rows], indent=2)

    def frame(self):
        """One column per searched parameter and per metric (under param.NAME or
        metric.NAME where the name is one of the tool's columns: display.TOOL_COLUMNS)."""
        import pandas as pd

        params = list(dict.fromkeys(k for r in self.rows for k in r["params"]))
        metrics = list(dict.fromkeys(k for r in self.rows for k in r["metrics"]))
        if self.metric == "value":  # a bare number returned: it is the value column's
            metrics = [m for m in metrics if m != "value"]
        pcols = {p: param_column(p) for p in params}
        mcols = {m: metric_column(m, params) for m in metrics}
        flat = [
            {
                "number": r["number"],
                "state": r["state"],
                **{pcols[p]: r["params"].get(p) for p in params},
                "value": r["value"],
                "se": r["se"],
                "tied": r["tied"],
                **{mcols[m]: r["metrics"].get(m) for m in metrics},
                "seconds": r["seconds"],
                "reason": r["reason"],
            }
            for r in self.rows
        ]
        columns = ["number", "state", *pcols.values(), "value", "se", "tied", *mcols.values()]
        return pd.DataFrame(flat, columns=[*columns, "seconds", "reason"])

    def csv(self) -> str:
        return self.frame().to_csv(index=False)

    def text(self) -> str:
        if not self.rows:
            return "no trials yet"
        import pandas as pd
        import tabulate

        frame = self.frame()
        # Missing values blank, as in the CSV and JSON ("nan" for a waiting trial's
        # seconds); a "|" in a name, a choice or a reason escaped, or it splits the row.
        rows = [
            [None if pd.isna(v) else markdown_cell(v) if isinstance(v, str) else v for v in row]
            for row in frame.itertuples(index=False)
        ]
        headers = [markdown_cell(c) for c in frame.columns]
        # Strings as they are: tabulate reads "007" as a number and printed it as 7.
        strings = [i for i in range(len(headers)) if any(isinstance(r[i], str) for r in rows)]
        style = {"tablefmt": "pipe", "floatfmt": ".4g", "missingval": ""}
        return tabulate.tabulate(rows, headers, **style, disable_numparse=strings or False)


SORTS = {
    "number": lambda r: r["number"],
    "value": lambda r: -(r["value"] if r["value"] is not None else float("-inf")),
}


def _by_param(name: str) -> Callable[[dict[str, Any]], tuple]:
    """Rows in the order of a searched value (numbers, then choices by name; none last)."""

    def key(row: dict[str, Any]) -> tuple:
        v = row["params"].get(name)
        number = isinstance(v, int | float) and not isinstance(v, bool)
        return (v is None, not number, v if number else 0, str(v))

    return key


def trials(name: str, storage_url: str | None = None, sort: str = "number") -> Trials:
    """A study's trials; ``sort``: number, value (the best first) or a searched parameter,
    by its column's name (param.NAME for one named like a column of the tool's)."""
    stored = load(name, storage_url)
    columns = {param_column(p): p for p in stored.spec.search}
    if sort not in SORTS and sort not in columns and sort not in stored.spec.search:
        choices = ", ".join([*SORTS, *sorted(columns)])
        raise SweepError(f"sort {sort!r} is not one of: {choices}")
    minimize = stored.study.direction == StudyDirection.MINIMIZE
    ties = study_ties(stored.study, stored.spec.metric)
    rows = []
    for t in stored.trials():
        result = t.user_attrs.get(RESULT) or {}
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "lambda": lambda_of(t),
                "value": t.value,
                "seconds": seconds_of(t),
                "se": ties[t.number].se,
                "tied": ties[t.number].tied,
                "params": values_of(t),
                "metrics": result.get("metrics") or {},
                "reason": trial_reason(t),
            }
        )
    key = SORTS[sort] if sort in SORTS else _by_param(columns.get(sort, sort))
    if sort == "value" and minimize:  # best first
        key = lambda r: r["value"] if r["value"] is not None else float("inf")  # noqa: E731
    return Trials(sorted(rows, key=key), stored.spec.metric)


# --- one trial -------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialInfo:
    study: str
    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    started: str | None
    completed: str | None
    seconds: float | None
    user_attrs: dict[str, Any]
    metric: str = "val_accuracy"
    reported: dict[int, float] = field(default_factory=dict)  # what it gave Optuna, by step

    @property
    def curves(self) -> dict[str, list[float]]:
        """Its learning curves; a trial that kept none (pruned, failed) has those of what
        it reported before it stopped, the first seed's."""
        kept = (self.user_attrs.get(RESULT) or {}).get("curves") or {}
        if kept or not self.reported:
            return kept
        steps = sorted(s for s in self.reported if s < STEP_STRIDE)
        return {"step": steps, self.metric: [self.reported[s] for s in steps]}

    def json(self) -> str:
        return json_text(self.__dict__, indent=2, default=str)

    def text(self) -> str:
        """What a person reads; the raw record (outcome bits, planned point, curves) is
        the JSON form's."""
        attrs = self.user_attrs
        result = attrs.get(RESULT) or {}
        lines = [f"study {self.study} trial {self.number}: {self.state}"]
        if self.params:
            lines.append(f"  params: {params(self.params)}")
        if self.value is not None:
            lines.append(f"  value: {number(self.metric, self.value)} ({label(self.metric)})")
        reason = attrs.get(FAIL_REASON) or attrs.get(PRUNE_REASON)
        if reason:
            lines.append(f"  reason: {reason}")
        if self.seconds is not None:
            lines.append(f"  seconds: {self.seconds:.2f} (started {self.started})")
        worker = attrs.get(WORKER)
        if worker:
            lines.append(f"  worker: {worker['host']} pid {worker['pid']}")
        sd = result.get("sd") or {}
        for name, v in (result.get("metrics") or {}).items():
            shown = number(name, v) + (f" (sd {number(name, sd[name])})" if name in sd else "")
            # Named as in `sweep trials`: a metric "value" or "state" is not the trial's own.
            column = objective_column if name == self.metric else metric_column
            lines.append(f"  {label(column(name, list(self.params)))}: {shown}")
        if len(result.get("seeds") or []) > 1:
            lines.append(f"  seeds: {', '.join(str(x) for x in result['seeds'])}")
        if result.get("pack"):
            lines.append(f"  trained with trials: {', '.join(str(n) for n in result['pack'])}")
        curves = self.curves
        if curves.get("step"):
            names = [k for k in curves if k != "step"]
            last = curves.get(self.metric) or curves.get(names[0]) if names else None
            shown = f"; last {label(self.metric)} {number(self.metric, last[-1])}" if last else ""
            lines.append(f"  curves: {len(curves['step'])} points of {', '.join(names)}{shown}")
        return "\n".join(lines)


def show(name: str, number: int, storage_url: str | None = None) -> TrialInfo:
    stored = load(name, storage_url)
    found = [t for t in stored.trials() if t.number == number]
    if not found:
        count = len(stored.trials())
        has = f"it has trials 0..{count - 1}" if count else "it has no trials yet"
        raise StudyNotFound(f"study {name!r} has no trial {number}; {has}")
    t = found[0]
    return TrialInfo(
        study=name,
        number=t.number,
        state=t.state.name,
        params=t.params,
        value=t.value,
        started=t.datetime_start.isoformat() if t.datetime_start else None,
        completed=t.datetime_complete.isoformat() if t.datetime_complete else None,
        seconds=seconds_of(t),
        user_attrs=t.user_attrs,
        metric=stored.spec.metric,
        reported=dict(t.intermediate_values),
    )


def best_params(
    name: str, storage: str | None = None
) -> tuple[dict[str, Any], StudyFile, dict[str, str] | None]:
    """The searched values of the study's best trial (it must search lambda), the study's
    file as stored, and where its data was (records.DATA; None for a user function's)."""
    stored = load(name, storage)
    best = stored.best()
    if best is None:
        raise StudyNotFound(f"study {name!r} has no COMPLETE trials yet; run or resume it first")
    if "lambda" not in best.params:
        searched = ", ".join(sorted(best.params)) or "nothing"
        raise SweepError(f"study {name!r} does not search lambda (it searches {searched})")
    return dict(best.params), stored.spec, stored.attrs.get(records.DATA)
