"""Read-only views of the storage: status of every study, trials of one, one trial."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from sweep.errors import StudyNotFound
from sweep.runner import counts
from sweep.storage import open_storage


def load(name: str, storage_url: str | None = None) -> optuna.Study:
    storage = open_storage(storage_url, read_only=True)
    names = sorted(s.study_name for s in storage.get_all_studies())
    if name not in names:
        listed = ", ".join(names) if names else "none yet"
        raise StudyNotFound(f"no study named {name!r}; studies in this storage: {listed}")
    return optuna.load_study(study_name=name, storage=storage)


def status(storage_url: str | None = None) -> list[dict[str, Any]]:
    """Every study: stage, parent, target, counts per state, best trial, range."""
    storage = open_storage(storage_url, read_only=True)
    rows = []
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        attrs = study.user_attrs
        best = None
        if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            b = study.best_trial
            best = {"trial": b.number, "lambda": b.params.get("lambda"), "value": b.value}
        lam = attrs.get("ranges", {}).get("lambda")
        rows.append(
            {
                "study": study.study_name,
                "stage": attrs.get("stage"),
                "parent": attrs.get("parent"),
                "target": attrs.get("target"),
                "states": {k: v for k, v in counts(study).items() if v},
                "best": best,
                "range": {"low": lam[0], "high": lam[1]} if lam else None,
            }
        )
    return rows


def trials(name: str, storage_url: str | None = None, sort: str = "number") -> list[dict]:
    study = load(name, storage_url)
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if (t.datetime_complete and t.datetime_start)
            else None
        )
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "lambda": lambda_of(t),
                "value": t.value,
                "seconds": seconds,
                "reason": t.user_attrs.get("fail_reason", ""),
            }
        )
    key = {
        "number": lambda r: r["number"],
        "value": lambda r: -(r["value"] if r["value"] is not None else float("-inf")),
        "lambda": lambda r: r["lambda"] if r["lambda"] is not None else float("inf"),
    }[sort]
    return sorted(rows, key=key)


def lambda_of(t: optuna.trial.FrozenTrial) -> float | None:
    """The trial's lambda; a queued trial holds it among its fixed parameters."""
    return t.params.get("lambda", t.system_attrs.get("fixed_params", {}).get("lambda"))


def show(name: str, number: int, storage_url: str | None = None) -> dict[str, Any]:
    study = load(name, storage_url)
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise StudyNotFound(
            f"study {name!r} has no trial {number}; it has trials 0..{len(study.trials) - 1}"
        )
    t = found[0]
    return {
        "study": name,
        "number": t.number,
        "state": t.state.name,
        "params": t.params,
        "value": t.value,
        "started": t.datetime_start.isoformat() if t.datetime_start else None,
        "completed": t.datetime_complete.isoformat() if t.datetime_complete else None,
        "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start
        else None,
        "user_attrs": t.user_attrs,
    }


def best_lambda(name: str, storage: str | None = None) -> float:
    study = load(name, storage)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        raise StudyNotFound(f"study {name!r} has no COMPLETE trials yet; run or resume it first")
    return float(study.best_trial.params["lambda"])
