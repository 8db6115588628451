"""What `sweep run` and `sweep resume` return: a study's counts, best and notes, as the
storage holds them, and the lines the CLI prints; and what `sweep worker` returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sweep.execution.progress import Best, finished, progress
from sweep.results.display import label, number, params
from sweep.store import records
from sweep.store.study import Stored
from sweep.system.output import json_text


class WorkerResult(NamedTuple):
    """What `sweep.worker` returns: how many trials this call ran, and why it stopped short
    of the study's target (None: the study is done). A tuple: ``ran, stopped = ...``."""

    ran: int
    stopped: str | None


@dataclass
class RunResult:
    study: str
    stage: str
    target: int
    counts: dict[str, int]
    best_value: float | None
    best_params: dict[str, Any]
    ranges: dict[str, tuple[float, float, bool]]
    notes: list[str]
    seconds: float
    metric: str = "val_accuracy"
    already_done: bool = False
    tables: list[Path] = field(default_factory=list)
    best_trial: int | None = None

    @property
    def best(self) -> Best | None:
        """The best COMPLETE trial (None before the first one)."""
        if self.best_trial is None or self.best_value is None:
            return None
        return Best(self.best_trial, self.best_params, self.best_value)

    def json(self) -> str:
        """`sweep run/resume --json`: {"study", "stage", "target", "finished", "states",
        "best": {"trial", "params", "value"} or null, "ranges", "notes", "seconds",
        "tables"}."""
        best = self.best
        return json_text(
            {
                "study": self.study,
                "stage": self.stage,
                "target": self.target,
                "finished": self.finished,
                "states": self.counts,
                "best": None if best is None else dataclasses.asdict(best),
                "ranges": {k: {"low": v[0], "high": v[1]} for k, v in self.ranges.items()},
                "notes": self.notes,
                "seconds": round(self.seconds, 2),
                "tables": [str(p) for p in self.tables],
            },
            indent=2,
        )

    @property
    def finished(self) -> int:
        """Trials that count towards the target (COMPLETE and PRUNED)."""
        return finished(self.counts)

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"RunResult(study={self.study!r}, stage={self.stage!r}, "
            f"finished={self.finished}/{self.target}, failed={c.get('FAIL', 0)}, "
            f"best={self.best!r}, seconds={self.seconds:.1f})"
        )

    @classmethod
    def of(
        cls, stored: Stored, *, notes: list[str], seconds: float, already_done: bool = False
    ) -> RunResult:
        """The result as the storage now holds it."""
        p = progress(stored)
        return cls(
            study=stored.name,
            stage=stored.attrs.get(records.STAGE, "coarse"),
            target=p.target,
            counts=p.counts,
            best_value=p.best_value,
            best_params=p.best_params or {},
            ranges=stored.ranges,
            notes=notes,
            seconds=seconds,
            metric=stored.spec.metric,
            already_done=already_done,
            best_trial=p.best_trial,
        )

    def text(self) -> str:
        if self.already_done:
            done = self.counts["COMPLETE"] + self.counts["PRUNED"]
            return "\n".join(
                [
                    f"study {self.study!r} is already finished: {done}/{self.target} trials "
                    f"finished ({self.counts['COMPLETE']} COMPLETE); nothing to run",
                    *(f"wrote {path}" for path in self.tables),
                ]
            )
        c = self.counts
        lam = self.ranges.get("lambda")
        lines = [*self.notes]
        lines.append(
            f"{self.study} ({self.stage}): {c['COMPLETE'] + c['PRUNED']}/{self.target} "
            f"finished ({c['COMPLETE']} COMPLETE, {c['PRUNED']} pruned), {c['FAIL']} failed "
            f"in {self.seconds:.1f} s"
            + (f"; lambda range [{lam[0]:.3g}, {lam[1]:.3g}]" if lam else "")
        )
        if self.best_value is not None:
            value = number(self.metric, self.best_value)
            lines.append(f"best: {params(self.best_params)} -> {label(self.metric)} {value}")
        lines += [f"wrote {path}" for path in self.tables]
        return "\n".join(lines)
