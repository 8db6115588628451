"""What a user's function gives back, and how it fails: its metrics, its per-image
outcomes, and the failures a trial ends with (the function's own, a timeout, an exit).

sweep/objectives/objective.py calls the function; this module judges what came back.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any

import numpy as np
import optuna

from sweep.errors import message_of
from sweep.objectives.functions import ProcessExit
from sweep.system import signals


class ObjectiveError(Exception):
    """The function's result cannot be used (missing metric, not a number)."""


class TrialTimeout(BaseException):
    """The trial ran past [study] trial_timeout (raised in the function by worker.deadline).
    Not an Exception, so that a function's own ``except Exception`` does not swallow it."""

    def __init__(self, seconds: float):
        super().__init__(f"timed out after {seconds:g} s ([study] trial_timeout)")
        self.seconds = seconds


def failure_of(exc: BaseException) -> BaseException:
    """What a BaseException raised by a user's function becomes: the trial's failure, or
    the exception itself when it is this command being stopped (Ctrl-C, SIGTERM)."""
    if isinstance(exc, KeyboardInterrupt) and signals.STOP.is_set():
        raise exc  # a real stop signal (only the command's own process gets one)
    if isinstance(exc, Exception | TrialTimeout):
        return exc
    if isinstance(exc, ProcessExit):
        return ObjectiveError(f"the function called os._exit({exc.code})")
    if isinstance(exc, SystemExit):
        return ObjectiveError(f"the function exited (SystemExit: {exc.code})")
    if isinstance(exc, KeyboardInterrupt):
        return ObjectiveError("the function raised KeyboardInterrupt")
    return ObjectiveError(f"the function raised {type(exc).__name__}: {message_of(exc)}")


def per_image(correct: Any, call: str) -> np.ndarray:
    """``correct`` as one bool per validation image. Anything else raises a TypeError in
    the function that says what ``call`` takes, so that its trial fails with that reason
    (stored as it was, it broke the worker when the trial ended)."""
    a = np.asarray(correct) if not isinstance(correct, str | bytes) else np.asarray(None)
    if a.dtype == bool:
        ones = True
    else:
        ones = np.issubdtype(a.dtype, np.number) and bool(np.isin(a, (0, 1)).all())
    if a.ndim != 1 or a.size == 0 or not ones:
        given = f"shape {a.shape}" if a.ndim else type(correct).__name__
        raise TypeError(
            f"ctx.{call} takes one True/False (or 1/0) per validation image, a 1-D array "
            f"of at least one; it got {given}"
            + (f" of {a.dtype}" if a.ndim and a.dtype != bool else "")
        )
    return a.astype(bool)


FAILED_SEED = "sweep_failed_seed"  # the attribute `on_seed` sets on a failure


def on_seed(exc: BaseException, seed: int | None) -> BaseException:
    """``exc``, marked with the seed it happened on, so that the trial's reason names it
    (sweep/execution/settle.py): with ``repeats`` a user asks which seed failed. ``seed``
    None (a study of one seed) and pruning, which is not a failure, leave it as it is."""
    with contextlib.suppress(AttributeError, TypeError):  # an exception without __dict__
        if seed is not None and not isinstance(exc, optuna.TrialPruned):
            setattr(exc, FAILED_SEED, seed)
        elif hasattr(exc, FAILED_SEED):  # a function's stored exception, raised again
            delattr(exc, FAILED_SEED)
    return exc


def metrics_of(result: Any, metric: str | None) -> dict[str, float]:
    """A function's return value as {name: number}; raises ObjectiveError if unusable."""
    if isinstance(result, dict):
        if metric is None:
            raise ObjectiveError(
                "the function returned a dict; name the key to optimise in [objective] metric"
            )
        for k, v in result.items():
            if not _is_number(v):
                raise ObjectiveError(
                    f"the function returned {k} = {v!r} ({type(v).__name__}), not a number"
                )
            if not math.isfinite(v):
                raise ObjectiveError(f"the function returned {k} = {float(v)}, not a finite number")
        metrics = {str(k): float(v) for k, v in result.items()}
        for k, v in metrics.items():
            if k.endswith("_se") and k[: -len("_se")] in metrics and v < 0:
                raise ObjectiveError(
                    f"the function returned {k} = {v}: the standard error of "
                    f"{k[: -len('_se')]} is 0 or more"
                )
        if metric not in metrics:
            returned = ", ".join(metrics) or "nothing"
            raise ObjectiveError(f"the function returned no {metric!r} (it returned {returned})")
        return metrics
    if not _is_number(result):
        raise ObjectiveError(
            f"the function returned {type(result).__name__}, not a number or a dict"
        )
    if not math.isfinite(result):  # as a dict's values: before repeats average it
        raise ObjectiveError(f"the function returned {float(result)}, not a finite number")
    return {metric or "value": float(result)}


def _is_number(v: Any) -> bool:
    """Numbers only: a bool or a string is not a metric, even where float() takes it."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)
