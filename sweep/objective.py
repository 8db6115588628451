"""The Optuna objective: suggest, call the study's function once per seed, record, return.

The only module that turns a trial into a function call. Any function, the built-in
network included, is called as ``function(params, ctx) -> float | dict[str, float]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

from sweep import __version__, pruning
from sweep.space import Dimension
from sweep.studyfile import StudyFile
from sweep.uncertainty import pack

# Seed r's step s is Optuna step r * STEP_STRIDE + s, so a pruner compares like with like.
STEP_STRIDE = pruning.STEP_STRIDE


class ObjectiveError(Exception):
    """The function's result cannot be used (missing metric, not a number)."""


class Context:
    """What a function gets besides its params: ``report``, ``data_dir`` and ``trial``."""

    def __init__(self, trial: optuna.Trial, repeat: int, seed: int, data_dir: str | None):
        self._trial = trial
        self._offset = repeat * STEP_STRIDE
        self._seed = seed
        self.trial = trial.number
        self.data_dir = data_dir
        self.curves: dict[str, list[float]] = {}
        self.outcomes: np.ndarray | None = None
        # should_prune() reads the trial back from the storage: skip it when nothing prunes.
        self._prunes = not isinstance(trial.study.pruner, optuna.pruners.NopPruner)

    def keep_outcomes(self, correct: np.ndarray) -> None:
        """Which validation images the final model classifies correctly (bool, one per
        image): kept with the trial, one bit each, to test ties with the best."""
        self.outcomes = np.asarray(correct, dtype=bool)

    def report(self, step: int, value: float, **more: float) -> None:
        """An intermediate value at ``step`` (for pruners and the learning curves); ``more``
        adds other curves. Raises optuna.TrialPruned when the trial should stop."""
        if not 0 <= int(step) < STEP_STRIDE:
            raise ValueError(f"report step {step} must lie in 0..{STEP_STRIDE - 1}")
        for key, v in {"step": step, "value": value, **more}.items():
            self.curves.setdefault(key, []).append(float(v))
        trial_step = self._offset + int(step)
        self._trial.report(float(value), trial_step)
        if self._prunes and self._trial.should_prune():
            where = f"at step {step} of seed {self._seed}"
            raise optuna.TrialPruned(
                pruning.reason(self._trial.study, self.trial, trial_step, float(value), where)
            )


def metrics_of(result: Any, metric: str | None) -> dict[str, float]:
    """A function's return value as {name: number}; raises ObjectiveError if unusable."""
    if isinstance(result, dict):
        if metric is None:
            raise ObjectiveError(
                "the function returned a dict; name the key to optimise in [objective] metric"
            )
        try:
            metrics = {str(k): float(v) for k, v in result.items()}
        except (TypeError, ValueError):
            raise ObjectiveError(
                "the function returned a dict with a value that is not a number"
            ) from None
        if metric not in metrics:
            returned = ", ".join(metrics) or "nothing"
            raise ObjectiveError(f"the function returned no {metric!r} (it returned {returned})")
        return metrics
    if isinstance(result, bool) or not isinstance(result, (int, float, np.floating, np.integer)):
        raise ObjectiveError(
            f"the function returned {type(result).__name__}, not a number or a dict"
        )
    return {metric or "value": float(result)}


class Objective:
    """The mean of the study's metric over ``repeats`` seeds for the suggested values."""

    def __init__(
        self,
        spec: StudyFile,
        space: dict[str, Dimension],
        function: Callable[..., Any],
        data_dir: str | None,
        fingerprint: str | None = None,
    ):
        self.spec = spec
        self.space = space
        self.function = function
        self.data_dir = data_dir
        self.fingerprint = fingerprint

    def __call__(self, trial: optuna.Trial) -> float:
        values = {name: dim.suggest(trial, name) for name, dim in sorted(self.space.items())}
        metric = self.spec.metric
        runs, seconds, curves, kept = [], [], None, []
        for r in range(self.spec.study.repeats):
            seed = self.spec.study.seed + r
            ctx = Context(trial, r, seed, self.data_dir)
            started = time.perf_counter()
            out = self.function({**self.spec.fixed, **values, "seed": seed}, ctx)
            seconds.append(time.perf_counter() - started)
            runs.append(metrics_of(out, self.spec.objective.metric))
            if ctx.outcomes is not None:
                kept.append(ctx.outcomes)
            if curves is None and ctx.curves:  # the first seed's, with the value named
                curves = {metric if k == "value" else k: v for k, v in ctx.curves.items()}
        means = {k: float(np.mean([run[k] for run in runs])) for k in runs[0]}
        sds = (
            {k: float(np.std([run[k] for run in runs], ddof=1)) for k in runs[0]}
            if len(runs) > 1
            else {}
        )
        # One write for everything a report needs (each attribute is a transaction).
        trial.set_user_attr(
            "result",
            {
                "metrics": means,
                "sd": sds,
                "per_seed": runs,
                "seeds": [self.spec.study.seed + r for r in range(len(runs))],
                "seconds": seconds,
                "curves": curves,
                "outcomes": {"n": len(kept[0]), "bits": [pack(k) for k in kept]}
                if len(kept) == len(runs)
                else None,
                "data_fingerprint": self.fingerprint,
                "version": __version__,
            },
        )
        value = means[metric]
        if not math.isfinite(value):
            raise ObjectiveError(f"{metric} is {value}")
        return value
