"""How a trial's end is told to the storage: its state, value and reason, once."""

from __future__ import annotations

import math

import optuna
from optuna.trial import TrialState

from core.errors import DivergedError
from sweep.errors import message_of
from sweep.objectives.outcomes import FAILED_SEED, ObjectiveError, TrialTimeout
from sweep.store import records
from sweep.store.outage import retrying
from sweep.store.queue import Popped
from sweep.store.study import Stored


def settle(stored: Stored, trial: Popped, outcome: float | BaseException) -> TrialState:
    """End ``trial`` as its outcome says: PRUNED, FAIL with its reason, or COMPLETE."""
    if isinstance(outcome, optuna.TrialPruned):
        return tell(stored, trial, TrialState.PRUNED, records.PRUNE_REASON, str(outcome))
    if isinstance(outcome, BaseException):  # the trial fails with its reason; the study goes on
        return tell(stored, trial, TrialState.FAIL, records.FAIL_REASON, failure_text(outcome))
    if not math.isfinite(outcome):
        return tell(
            stored, trial, TrialState.FAIL, records.FAIL_REASON, f"the objective returned {outcome}"
        )
    return tell(stored, trial, TrialState.COMPLETE, value=outcome)


def tell(
    stored: Stored,
    trial: Popped,
    state: TrialState,
    key: str | None = None,
    reason: str = "",
    value: float | None = None,
) -> TrialState:
    """End a trial. Not through `study.tell` but the storage call it ends with: tell reads
    the whole trial back twice (to check it is RUNNING, which the storage call checks too,
    and to return it), a quarter of a trial's storage work in bench/scale.py; the samplers
    the sweep makes (plan.sampler_for) do nothing after a trial, which is what tell adds.
    A pruned trial goes through tell, which gives it its last reported value."""

    def told() -> None:
        try:
            if key:
                stored.storage.set_trial_user_attr(trial.id, key, reason)
            if state == TrialState.PRUNED:
                stored.study.tell(trial.trial, state=state)
            else:
                values = None if value is None else [value]
                stored.storage.set_trial_state_values(trial.id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # told already (a retry after the reply was lost), or recovered meanwhile

    retrying(told)
    return state


REASON_CHARS = 300  # a reason is a cell of the tables and part of a run's one-line error


def failure_text(exc: BaseException) -> str:
    """A failed trial's one-line reason: the exception's type and message, clipped; with
    repeats, first the seed it failed on."""
    own = isinstance(exc, DivergedError | ObjectiveError | TrialTimeout)
    message = message_of(exc)
    text = message if own or not message else f"{type(exc).__name__}: {message}"
    line = (text.splitlines() or [type(exc).__name__])[0]
    seed = getattr(exc, FAILED_SEED, None)
    if seed is not None:
        line = f"seed {seed}: {line}"
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 3] + "..."
