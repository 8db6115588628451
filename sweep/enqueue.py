"""Queueing a trial: a planned point's values, or a failed trial's values again.

A queued trial is what Optuna's `enqueue_trial` adds, plus the values as its parameters
and the sweep's own attributes ("point", "values", "retry").
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep import journal, paired

# A value whose trial's process died is queued again, to run alone in a process of its own
# (sweep/worker.py run_isolated), so that a pack-mate or a neighbour of the culprit is never
# blamed. It is not run again once it has ended that process MAX_CRASHES times, the last
# one alone (os._exit is caught, but a segfault, SIGKILL or the OOM killer is not), nor
# after MAX_RETRY deaths of any kind (a lost heartbeat, a worker gone, a kill -9).
MAX_CRASHES = 2
MAX_RETRY = 3
# Belong to one attempt, never to its retry ("requeued": this attempt's values run again).
ATTEMPT_ATTRS = ("worker", "fail_reason", "requeued", journal.HEARTBEAT_ATTR)


def enqueue(
    study: optuna.Study,
    values: dict[str, Any],
    distributions: dict[str, optuna.distributions.BaseDistribution],
    user_attrs: dict[str, Any],
) -> None:
    """Queue a trial of these values: what `study.enqueue_trial` adds (the values as its
    fixed params), holding them as its parameters already, so that the worker that pops it
    writes nothing before the objective runs (each write is a round trip on the trial's
    path: sweep/queue.py). Without every value's distribution, as enqueue_trial does."""
    params = values if set(distributions) == set(values) else None
    trial = optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=params,
        distributions=distributions if params else None,
        user_attrs=user_attrs,
        system_attrs={"fixed_params": values},
    )
    study.add_trial(trial)


def values_of(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's searched values: its params, or for a queued trial the planned values
    the sweep stored with it."""
    return trial.params or dict(trial.user_attrs.get("values", {}))


def enqueue_again(
    study: optuna.Study, trial: FrozenTrial, *, crashed: bool = True, final: bool = False
) -> None:
    """Queue a failed trial's values again as a clean attempt (no worker, no reason); also
    the storage's callback for a trial Optuna failed for its stale heartbeat (a crash: its
    worker died or hung). ``crashed=False``: the sweep stopped the trial itself (Ctrl-C,
    SIGTERM), which is no fault of its values. ``final``: they are not run again."""
    if final or not values_of(trial) or crashes_of(trial) + int(crashed) > MAX_RETRY:
        return
    values = values_of(trial)
    attrs = {
        k: v
        for k, v in trial.user_attrs.items()
        if k not in ATTEMPT_ATTRS and not k.startswith(paired.PREFIX)  # a rung's: this attempt's
    }
    retry = int(trial.user_attrs.get("retry", 0)) + 1
    crashes = crashes_of(trial) + int(crashed)
    enqueue(
        study,
        values,
        trial.distributions,
        {**attrs, "values": values, "retry": retry, "crashes": crashes},
    )


def crashes_of(trial: FrozenTrial) -> int:
    """How many times this trial's values were running when their process died."""
    return int(trial.user_attrs.get("crashes", 0))
