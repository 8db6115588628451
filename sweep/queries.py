"""Reads of Optuna's tables that its public API has no cheap call for.

Each worker runs these once per trial. Optuna's calls that answer the same questions load
whole trials through its ORM (every parameter and attribute of every trial listed: ~10 ms
of CPU for a 400-trial study on PostgreSQL, against ~0.5 ms here), and a study fed by 16
workers spends most of its CPU there (bench/scale.py). Only reads, on the storage's own
engine; tests/test_queries.py (and test_study.py for count_states) pins the table and
column names on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy
from optuna.storages import RDBStorage

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
        "  WHERE a.trial_id = w.trial_id AND a.key = 'crashes')"
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
        " JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'point'"
        " JOIN trial_user_attributes mine ON mine.trial_id = :trial AND mine.key = 'point'"
        "  AND mine.value_json = a.value_json"
        " WHERE t.study_id = :study AND t.trial_id < :trial AND t.trial_id >= :first"
        "  AND t.state <> 'FAIL'"
    )
    params = {"study": study_id, "trial": trial_id, "first": trial_id - window}
    with storage.engine.connect() as conn:
        first = conn.execute(query, params).scalar()
    return None if first is None else int(first)
