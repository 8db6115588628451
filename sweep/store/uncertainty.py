"""Which trials can be told apart from the best, and how precise each value is.

An accuracy measured on n images has the standard error sqrt(p (1 - p) / n). Two
classifiers evaluated on the same validation images are compared the way Dietterich (1998)
recommends: McNemar's exact test on the images exactly one of them gets right (with
repeats, seed s of one trial is paired with seed s of the other and the counts pooled). A
trial is tied with the best when the test cannot reject equality at the 5% level. A
function that returns "<metric>_se" instead gets the normal rule
|best - value| < 1.96 sqrt(se_best^2 + se^2); with neither, ties are unknown (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweep.store.records import TrialResult

LEVEL = 0.05
Z = 1.96  # the two-sided 5% point of the normal distribution


def standard_error(p: float, n: int) -> float:
    """The standard error of an accuracy p measured on n images."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided p-value of McNemar's exact test: b and c are the discordant counts (images
    only the first, only the second classifier gets right). Under equality b ~ Bin(b + c,
    1/2); p = min(1, 2 P(X <= min(b, c)))."""
    n = b + c
    if n == 0:
        return 1.0
    k = np.arange(min(b, c) + 1)
    log_pmf = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in k])
        - n * math.log(2)
    )
    top = log_pmf.max()
    tail = math.exp(top) * float(np.exp(log_pmf - top).sum())
    return min(1.0, 2 * tail)


# --- per-image outcomes, stored compactly ------------------------------------------------


def outcomes(t: FrozenTrial) -> list[np.ndarray] | None:
    """The trial's per-image outcomes, one array per seed, or None if it kept none."""
    return TrialResult.of(t).outcome_arrays()


def discordant(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[int, int]:
    """(images only a gets right, only b gets right), pooled over seeds paired by seed."""
    only_a = sum(int(np.count_nonzero(x & ~y)) for x, y in zip(a, b, strict=False))
    only_b = sum(int(np.count_nonzero(~x & y)) for x, y in zip(a, b, strict=False))
    return only_a, only_b


# --- a study's ties ----------------------------------------------------------------------


@dataclass(frozen=True)
class Uncertainty:
    se: float | None  # the objective metric's standard error
    tied: bool | None  # cannot be told apart from the best (None: unknown)
    p_value: float | None = None  # McNemar's, when per-image outcomes were kept


def se_of(t: FrozenTrial, metric: str) -> float | None:
    """The metric's standard error: from the per-image outcomes, or as the function gave it."""
    result = TrialResult.of(t)
    if result.outcomes and t.value is not None:
        return standard_error(float(t.value), result.outcomes["n"])
    se = result.metrics.get(f"{metric}_se")
    return float(se) if se is not None else None


def compare(best: FrozenTrial, t: FrozenTrial, metric: str, same_study: bool = True) -> Uncertainty:
    """How ``t`` stands against ``best`` (both COMPLETE; ``same_study``: of one study, where
    a trial's number names it: a fine stage's trial 3 is not its coarse stage's)."""
    se = se_of(t, metric)
    a, b = outcomes(best), outcomes(t)
    if same_study and t.number == best.number:  # tied with itself, where ties can be told
        return (
            Uncertainty(se, True, 1.0) if a is not None or se is not None else Uncertainty(se, None)
        )
    if a is not None and b is not None and len(a[0]) == len(b[0]):
        p = mcnemar_exact(*discordant(a, b))
        return Uncertainty(se, p >= LEVEL, p)
    se_best = se_of(best, metric)
    if se is None or se_best is None or best.value is None or t.value is None:
        return Uncertainty(se, None)
    return Uncertainty(se, abs(best.value - t.value) < Z * math.hypot(se_best, se))


def study_ties(study: optuna.Study, metric: str) -> dict[int, Uncertainty]:
    """Every trial's se, and for COMPLETE trials whether it is tied with the study's best."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        return {t.number: Uncertainty(se_of(t, metric), None) for t in trials}
    pick = min if study.direction == StudyDirection.MINIMIZE else max
    best = pick(done, key=lambda t: t.value)
    return {
        t.number: compare(best, t, metric)
        if t.state == TrialState.COMPLETE
        else Uncertainty(se_of(t, metric), None)
        for t in trials
    }


@dataclass(frozen=True)
class Tied:
    """The trials that cannot be told apart from the best: how many, and the range of a
    searched parameter they span (None when ties are unknown)."""

    count: int | None
    low: float | None
    high: float | None

    def json(self) -> dict[str, float | int | None]:
        return {"count": self.count, "low": self.low, "high": self.high}


def tied_span(study: optuna.Study, metric: str, param: str) -> Tied:
    ties = study_ties(study, metric)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done or any(ties[t.number].tied is None for t in done):
        return Tied(None, None, None)
    values = [t.params[param] for t in done if ties[t.number].tied and param in t.params]
    numeric = [v for v in values if isinstance(v, (int, float))]
    return Tied(
        sum(bool(ties[t.number].tied) for t in done),
        min(numeric) if numeric else None,
        max(numeric) if numeric else None,
    )
