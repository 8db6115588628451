"""How far a study is: finished trials against the target, the best so far, the line
shown while it runs, the error when it stops making progress, and a run's result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from sweep.errors import RunFailed
from sweep.results.display import number, params
from sweep.spec.studyfile import StudyFile
from sweep.store.records import fail_reason, requeued
from sweep.store.study import Stored, finished


@dataclass(frozen=True)
class Best:
    """A study's best COMPLETE trial: its number, searched values and objective value."""

    number: int
    params: dict[str, Any]
    value: float


@dataclass(frozen=True)
class Progress:
    study: str
    target: int
    counts: dict[str, int]
    best_value: float | None = None
    best_params: dict[str, Any] | None = None
    metric: str = "val_accuracy"
    best_trial: int | None = None

    def text(self) -> str:
        c = self.counts
        line = f"{self.study}: {finished(c)}/{self.target} finished ({c['COMPLETE']} complete"
        line += f", {c['PRUNED']} pruned)" if c["PRUNED"] else ")"
        line += f", {c['RUNNING']} running, {c['FAIL']} failed"
        if self.best_value is not None:
            shown = params(self.best_params or {})
            line += f"; best {number(self.metric, self.best_value)} ({shown})"
        return line


def progress(stored: Stored) -> Progress:
    best = stored.best()
    return Progress(
        stored.name,
        stored.target,
        stored.counts(),
        best.value if best else None,
        best.params if best else None,
        stored.spec.metric,
        best.number if best else None,
    )


def failures(stored: Stored) -> int:
    """Failed trials whose values were not queued again: the failures of the study itself
    (an interrupted or recovered trial is not one)."""
    return sum(1 for t in stored.trials(TrialState.FAIL) if not requeued(t))


def no_progress(stored: Stored, spec: StudyFile) -> RunFailed:
    """The error for a study whose trials keep failing, with the first reasons."""
    failed = [t for t in stored.trials(TrialState.FAIL) if not requeued(t)]
    reasons = "; ".join(
        f"trial {t.number}: {fail_reason(t, 'no reason recorded')}" for t in failed[:3]
    )
    return RunFailed(
        f"study {spec.study.name!r} made no progress: {len(failed)} trial(s) failed ({reasons}); "
        f"see `sweep trials {spec.study.name}`"
    )
