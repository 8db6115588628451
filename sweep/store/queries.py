"""Reads of Optuna's tables that its public API has no cheap call for.

Each worker runs these once per trial (the median pruner's two once per report). Optuna's
calls that answer the same questions load whole trials through its ORM (every parameter
and attribute of every trial listed: ~10 ms of CPU for a 400-trial study on PostgreSQL,
against ~0.5 ms here), and a study fed by 16 workers spends most of its CPU there
(bench/scale.py). Only reads, on the storage's own engine; tests/store/test_queries.py (and
test_study.py for count_states) pins the table and column names on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, NamedTuple

import sqlalchemy
from optuna.storages import RDBStorage

from sweep.store.records import CRASHES, POINT

STATES = ("COMPLETE", "RUNNING", "WAITING", "FAIL", "PRUNED")


def _state(stored: Any) -> str:
    return str(stored).rsplit(".", 1)[-1]  # the enum's name, whatever the driver returns


def count_states(storage: RDBStorage, study_id: int) -> dict[str, int]:
    """Trials per state (every state present, 0 if none), counted by the database."""
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


def queued_trials(storage: RDBStorage, study_id: int, limit: int) -> list[Queued]:
    """The oldest ``limit`` WAITING trials of a study."""
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


def earlier_holder(storage: RDBStorage, study_id: int, trial_id: int, window: int) -> int | None:
    """The lowest number of a trial of the study, not FAILed and created before ``trial_id``
    (at most ``window`` trial ids before it), that has the same "point" user attribute.
    Optuna keeps a user attribute as JSON text, so equal points have equal text."""
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


def values_at_step(storage: RDBStorage, study_id: int, step: int, exclude: int) -> list[float]:
    """The intermediate values at ``step`` of the study's COMPLETE, PRUNED and RUNNING trials,
    except trial number ``exclude`` (in no particular order).

    Optuna's way, listing the trials, reads every value of every unfinished trial, the
    asking trial's own included: a pruner that asks at each of a trial's N reports reads
    O(N^2) values (bench/pruning.py). This reads one row per trial, through the unique
    (trial_id, step) index."""
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


def last_complete_step(storage: RDBStorage, study_id: int, low: int, high: int) -> int | None:
    """The largest step in [low, high) at which a COMPLETE trial of the study reported a
    value, or None. One index lookup per COMPLETE trial (its last step in the range), not a
    read of all its values."""
    query = sqlalchemy.text(
        "SELECT MAX(last) FROM (SELECT (SELECT v.step FROM trial_intermediate_values v"
        "  WHERE v.trial_id = t.trial_id AND v.step >= :low AND v.step < :high"
        "  ORDER BY v.step DESC LIMIT 1) AS last"
        " FROM trials t WHERE t.study_id = :study AND t.state = 'COMPLETE') AS per_trial"
    )
    with storage.engine.connect() as conn:
        last = conn.execute(query, {"study": study_id, "low": low, "high": high}).scalar()
    return None if last is None else int(last)


def recent_durations(storage: RDBStorage, study_id: int, limit: int) -> list[float]:
    """How long the study's last ``limit`` COMPLETE trials took, from their claim to their
    end (seconds): what a worker with a deadline expects the next one to take
    (sweep/execution/budget.py). The members of a pack train together, so each one's time is the
    pack's. Differences of the worker's own clock, so clocks of other machines do not
    matter."""
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
