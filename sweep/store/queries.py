"""Reads of Optuna's tables that its public API has no cheap call for.

Each worker runs these once per trial (the median pruner's two once per report). Optuna's
calls that answer the same questions load whole trials through its ORM (every parameter
and attribute of every trial listed: ~10 ms of CPU for a 400-trial study on PostgreSQL,
against ~0.5 ms here), and a study fed by 16 workers spends most of its CPU there
(bench/scale.py). Only reads, on the storage's own engine; tests/store/test_queries.py (and
test_study.py for count_states) pins the table and column names on SQLite and PostgreSQL.

A journal file (sweep/store/journal.py) has no tables: each process holds the replayed journal in
memory, so there every read lists the trials through Optuna's public `get_all_trials`
(`_listed`), with the same results.
"""

from __future__ import annotations

import datetime
import json
import math
from collections import Counter
from typing import Any, NamedTuple

import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sweep.store.records import CRASHES, POINT

STATES = ("COMPLETE", "RUNNING", "WAITING", "FAIL", "PRUNED")


def _state(stored: Any) -> str:
    return str(stored).rsplit(".", 1)[-1]  # the enum's name, whatever the driver returns


def _listed(storage: BaseStorage, study_id: int, *states: TrialState) -> list[FrozenTrial]:
    """A storage without tables (a journal): its trials through Optuna, not copied."""
    return storage.get_all_trials(study_id, deepcopy=False, states=states or None)


def count_states(storage: BaseStorage, study_id: int) -> dict[str, int]:
    """Trials per state (every state present, 0 if none), counted by the database."""
    if not isinstance(storage, RDBStorage):
        found = Counter(t.state.name for t in _listed(storage, study_id))
        return {**dict.fromkeys(STATES, 0), **found}
    with storage.engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "SELECT state, COUNT(*) FROM trials WHERE study_id = :id GROUP BY state"
            ),
            {"id": study_id},
        ).all()
    found = {_state(state): int(n) for state, n in rows}
    return {**dict.fromkeys(STATES, 0), **found}


class Queued(NamedTuple):
    """A WAITING trial as `queued_trials` lists it."""

    trial_id: int
    number: int
    params: int  # how many parameters it holds
    crashes: int = 0  # how often its values ended their worker's process (user attribute)


def queued_trials(storage: BaseStorage, study_id: int, limit: int) -> list[Queued]:
    """The oldest ``limit`` WAITING trials of a study."""
    if not isinstance(storage, RDBStorage):
        waiting = sorted(_listed(storage, study_id, TrialState.WAITING), key=lambda t: t.number)
        find = storage.get_trial_id_from_study_id_trial_number
        return [
            Queued(
                find(study_id, t.number),
                t.number,
                len(t.params),
                int(t.user_attrs.get(CRASHES, 0)),
            )
            for t in waiting[:limit]
        ]
    query = sqlalchemy.text(
        "SELECT w.trial_id, w.number,"
        " (SELECT COUNT(*) FROM trial_params p WHERE p.trial_id = w.trial_id),"
        " (SELECT a.value_json FROM trial_user_attributes a"
        f"  WHERE a.trial_id = w.trial_id AND a.key = '{CRASHES}')"
        " FROM trials w WHERE w.study_id = :id AND w.state = 'WAITING'"
        " ORDER BY w.number LIMIT :limit"
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query, {"id": study_id, "limit": limit}).all()
    return [
        Queued(int(trial_id), int(number), int(params), int(crashes or 0))
        for trial_id, number, params, crashes in rows
    ]


def earlier_holder(storage: BaseStorage, study_id: int, trial_id: int, window: int) -> int | None:
    """The lowest number of a trial of the study, not FAILed and created before ``trial_id``
    (at most ``window`` trial ids before it), that has the same "point" user attribute.
    Optuna keeps a user attribute as JSON text, so equal points have equal text."""
    if not isinstance(storage, RDBStorage):  # a journal: numbers before it (as many or fewer)
        mine = storage.get_trial(trial_id)
        if POINT not in mine.user_attrs:
            return None
        point = json.dumps(mine.user_attrs[POINT])
        return min(
            (
                t.number
                for t in _listed(storage, study_id)
                if mine.number - window <= t.number < mine.number
                and t.state != TrialState.FAIL
                and POINT in t.user_attrs
                and json.dumps(t.user_attrs[POINT]) == point
            ),
            default=None,
        )
    query = sqlalchemy.text(
        "SELECT MIN(t.number) FROM trials t"
        f" JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = '{POINT}'"
        f" JOIN trial_user_attributes mine ON mine.trial_id = :trial AND mine.key = '{POINT}'"
        "  AND mine.value_json = a.value_json"
        " WHERE t.study_id = :study AND t.trial_id < :trial AND t.trial_id >= :first"
        "  AND t.state <> 'FAIL'"
    )
    params = {"study": study_id, "trial": trial_id, "first": trial_id - window}
    with storage.engine.connect() as conn:
        first = conn.execute(query, params).scalar()
    return None if first is None else int(first)


# Optuna keeps an intermediate value as a number and a kind (a NULL number for the others).
_SPECIAL = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}


def _number(value: float | None, kind: Any) -> float:
    special = _SPECIAL.get(_state(kind))
    return float(value) if special is None else special  # type: ignore[arg-type]


def values_at_step(storage: BaseStorage, study_id: int, step: int, exclude: int) -> list[float]:
    """The intermediate values at ``step`` of the study's COMPLETE, PRUNED and RUNNING trials,
    except trial number ``exclude`` (in no particular order).

    Optuna's way, listing the trials, reads every value of every unfinished trial, the
    asking trial's own included: a pruner that asks at each of a trial's N reports reads
    O(N^2) values (bench/pruning.py). This reads one row per trial, through the unique
    (trial_id, step) index."""
    if not isinstance(storage, RDBStorage):
        counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        return [
            float(t.intermediate_values[step])
            for t in _listed(storage, study_id, *counted)
            if t.number != exclude and step in t.intermediate_values
        ]
    query = sqlalchemy.text(
        "SELECT v.intermediate_value, v.intermediate_value_type FROM trials t"
        " JOIN trial_intermediate_values v ON v.trial_id = t.trial_id AND v.step = :step"
        " WHERE t.study_id = :study AND t.number <> :number"
        "  AND t.state IN ('COMPLETE', 'PRUNED', 'RUNNING')"
    )
    params = {"study": study_id, "step": step, "number": exclude}
    with storage.engine.connect() as conn:
        rows = conn.execute(query, params).all()
    return [_number(value, kind) for value, kind in rows]


def last_complete_step(storage: BaseStorage, study_id: int, low: int, high: int) -> int | None:
    """The largest step in [low, high) at which a COMPLETE trial of the study reported a
    value, or None. One index lookup per COMPLETE trial (its last step in the range), not a
    read of all its values."""
    if not isinstance(storage, RDBStorage):
        complete = _listed(storage, study_id, TrialState.COMPLETE)
        steps = (s for t in complete for s in t.intermediate_values if low <= s < high)
        return max(steps, default=None)
    query = sqlalchemy.text(
        "SELECT MAX(last) FROM (SELECT (SELECT v.step FROM trial_intermediate_values v"
        "  WHERE v.trial_id = t.trial_id AND v.step >= :low AND v.step < :high"
        "  ORDER BY v.step DESC LIMIT 1) AS last"
        " FROM trials t WHERE t.study_id = :study AND t.state = 'COMPLETE') AS per_trial"
    )
    with storage.engine.connect() as conn:
        last = conn.execute(query, {"study": study_id, "low": low, "high": high}).scalar()
    return None if last is None else int(last)


def recent_durations(storage: BaseStorage, study_id: int, limit: int) -> list[float]:
    """How long the study's last ``limit`` COMPLETE trials took, from their claim to their
    end (seconds): what a worker with a deadline expects the next one to take
    (sweep/execution/budget.py). The members of a pack train together, so each one's time is the
    pack's. Differences of the worker's own clock, so clocks of other machines do not
    matter."""
    if not isinstance(storage, RDBStorage):
        done = [
            t
            for t in _listed(storage, study_id, TrialState.COMPLETE)
            if t.datetime_start is not None and t.datetime_complete is not None
        ]
        done.sort(key=lambda t: t.datetime_complete, reverse=True)
        return [(t.datetime_complete - t.datetime_start).total_seconds() for t in done[:limit]]
    query = sqlalchemy.text(
        "SELECT datetime_start, datetime_complete FROM trials"
        " WHERE study_id = :id AND state = 'COMPLETE' AND datetime_start IS NOT NULL"
        " AND datetime_complete IS NOT NULL ORDER BY datetime_complete DESC LIMIT :limit"
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query, {"id": study_id, "limit": limit}).all()
    return [(_when(end) - _when(start)).total_seconds() for start, end in rows]


def _when(value: Any) -> datetime.datetime:
    """A datetime column: SQLite hands text back to a textual query, PostgreSQL a datetime."""
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)
