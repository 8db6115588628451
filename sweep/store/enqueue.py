"""Queueing a trial: a planned point's values, or a failed trial's values again.

A queued trial is what Optuna's `enqueue_trial` adds, plus the values as its parameters
and the sweep's own attributes (sweep/store/records.py: point, values, retry, crashes).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.store.records import (
    ATTEMPT_ATTRS,
    CRASHES,
    OUTCOMES_PREFIX,
    RETRY,
    VALUES,
    crashes_of,
    retries_of,
    values_of,
)

# A value whose trial's process died is queued again, to run alone in a process of its own
# (sweep/execution/worker.py run_isolated), so that a pack-mate or a neighbour of the
# culprit is never blamed. It is not run again once it has ended that process MAX_CRASHES
# times, the last one alone (os._exit is caught, but a segfault, SIGKILL or the OOM killer
# is not), nor
# after MAX_RETRY deaths of any kind (a lost heartbeat, a worker gone, a kill -9).
MAX_CRASHES = 2
MAX_RETRY = 3


def enqueue(
    study: optuna.Study,
    values: dict[str, Any],
    distributions: dict[str, optuna.distributions.BaseDistribution],
    user_attrs: dict[str, Any],
) -> None:
    """Queue a trial of these values: what `study.enqueue_trial` adds (the values as its
    fixed params), holding them as its parameters already, so that the worker that pops it
    writes nothing before the objective runs (each write is a round trip on the trial's
    path: sweep/store/queue.py). Without every value's distribution, as enqueue_trial does."""
    params = values if set(distributions) == set(values) else None
    trial = optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=params,
        distributions=distributions if params else None,
        user_attrs=user_attrs,
        system_attrs={"fixed_params": values},
    )
    study.add_trial(trial)


def enqueue_again(
    study: optuna.Study, trial: FrozenTrial, *, crashed: bool = True, final: bool = False
) -> bool:
    """Queue a failed trial's values again as a clean attempt (no worker, no reason); also
    the storage's callback for a trial Optuna failed for its stale heartbeat (a crash: its
    worker died or hung). ``crashed=False``: the sweep stopped the trial itself (Ctrl-C,
    SIGTERM), which is no fault of its values. ``final``: they are not run again.
    Returns whether they were queued."""
    if final or not values_of(trial) or crashes_of(trial) + int(crashed) > MAX_RETRY:
        return False
    values = values_of(trial)
    attrs = {
        k: v
        for k, v in trial.user_attrs.items()
        if k not in ATTEMPT_ATTRS and not k.startswith(OUTCOMES_PREFIX)  # a rung's: this attempt's
    }
    retry = retries_of(trial) + 1
    crashes = crashes_of(trial) + int(crashed)
    enqueue(
        study,
        values,
        trial.distributions,
        {**attrs, VALUES: values, RETRY: retry, CRASHES: crashes},
    )
    return True
