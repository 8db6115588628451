"""The Optuna objective: suggest, build the core config, train, report, return a float.

The only module that imports both optuna and core.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import optuna

from core.data import Split
from core.errors import DivergedError
from core.training import EvalPoint, train
from sweep import __version__, pruning
from sweep.studyfile import StudyFile

# searched name -> TrainConfig field
FIELDS = {
    "lambda": "lam",
    "eta_min": "eta_min",
    "eta_max": "eta_max",
    "hidden": "hidden",
    "batch_size": "batch_size",
}


class Objective:
    """Mean final validation accuracy over ``repeats`` seeds for the suggested values."""

    def __init__(
        self,
        spec: StudyFile,
        ranges: dict[str, tuple[float, float, bool]],
        data: Split,
        fingerprint: str,
    ):
        self.spec = spec
        self.ranges = ranges
        self.data = data
        self.fingerprint = fingerprint

    def suggest(self, trial: optuna.Trial) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, (low, high, log) in sorted(self.ranges.items()):
            if name in ("hidden", "batch_size"):
                values[name] = trial.suggest_int(name, int(low), int(high), log=log)
            else:
                values[name] = trial.suggest_float(name, low, high, log=log)
        return values

    def __call__(self, trial: optuna.Trial) -> float:
        values = self.suggest(trial)
        config = dataclasses.replace(
            self.spec.train, **{FIELDS[name]: v for name, v in values.items()}
        )
        d = self.data
        prune = self.spec.study.pruner != "none"
        points = config.cycles * config.evals_per_cycle
        accuracies, seconds, curves = [], [], None
        for r in range(self.spec.study.repeats):
            seeded = dataclasses.replace(config, seed=self.spec.study.seed + r)

            def report(p: EvalPoint, offset: int = r * points, seed: int = seeded.seed) -> None:
                # Steps are per seed, so a pruner compares like with like (seed and step).
                step = offset + p.index
                trial.report(p.val_accuracy, step)
                if trial.should_prune():
                    where = f"at update step {p.step} of seed {seed}"
                    why = pruning.reason(trial.study, trial.number, step, p.val_accuracy, where)
                    raise optuna.TrialPruned(why)

            result = train(
                seeded, d.X_train, d.y_train, d.X_val, d.y_val, on_eval=report if prune else None
            )
            accuracies.append(result.final["val_accuracy"])
            seconds.append(result.seconds)
            curves = curves or result.curves
        value = float(np.mean(accuracies))
        # One write for everything a report needs (each attribute is a transaction).
        trial.set_user_attr(
            "result",
            {
                "config": dataclasses.asdict(config),
                "seeds": [self.spec.study.seed + r for r in range(len(accuracies))],
                "val_accuracies": accuracies,
                "val_sd": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else None,
                "train_accuracy": curves["train_accuracy"][-1] if curves else None,
                "train_seconds": seconds,
                "curves": curves,
                "data_fingerprint": self.fingerprint,
                "version": __version__,
            },
        )
        if not math.isfinite(value):
            raise DivergedError(0, value)
        return value
