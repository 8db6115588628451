"""The reads of Optuna's tables in sweep/store/queries.py, on SQLite and PostgreSQL (and their
journal-file equivalents): they must agree with what Optuna's own (slower) calls say, so a
schema change shows up here."""

import math

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from sweep.objectives.pruning import COUNTED
from sweep.spec import studyfile
from sweep.store.enqueue import enqueue
from sweep.store.queries import (
    Queued,
    earlier_holder,
    last_complete_step,
    queued_trials,
    values_at_step,
)
from sweep.store.queue import pop_waiting, queue_next
from sweep.store.storage import StudyLock, open_storage
from sweep.store.study import open_study, prepare
from tests.conftest import study_text


@pytest.fixture(params=["sqlite", "journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param in ("sqlite", "journal"):  # a journal: the same reads, through Optuna
        return f"{request.param}:///{tmp_path}/q.{'db' if request.param == 'sqlite' else 'journal'}"
    return request.getfixturevalue("pg_url")


def prepared(tmp_path, url, name="q", trials=5):
    (tmp_path / f"{name}.toml").write_text(study_text(name, trials=trials))
    spec = studyfile.load(tmp_path / f"{name}.toml")
    stored, _ = prepare(spec, url, target=trials)
    return spec, stored


def ids(stored, *numbers):
    find = stored.storage.get_trial_id_from_study_id_trial_number
    return [find(stored.study_id, n) for n in numbers]


def test_queued_trials_are_the_oldest_waiting_ones_with_their_parameter_count(tmp_path, url):
    spec, stored = prepared(tmp_path, url)
    with stored.locked():
        assert queue_next(stored, spec) == 5  # queued holding their values as parameters
    stored.study.enqueue_trial({"lambda": 0.01})  # Optuna's way: no parameters yet
    (popped,) = pop_waiting(stored, 1)
    waiting = stored.trials(TrialState.WAITING)
    assert popped.number == 0 and [t.number for t in waiting] == [1, 2, 3, 4, 5]
    trial_ids = ids(stored, 1, 2, 3, 4, 5)
    expected = [Queued(i, t.number, len(t.params)) for i, t in zip(trial_ids, waiting, strict=True)]
    assert queued_trials(stored.storage, stored.study_id, 10) == expected
    assert [q.params for q in expected] == [1, 1, 1, 1, 0]
    assert queued_trials(stored.storage, stored.study_id, 2) == expected[:2]


def test_earlier_holder_is_a_live_trial_created_before_with_the_same_point(tmp_path, url):
    _, stored = prepared(tmp_path, url)
    _, other = prepared(tmp_path, url, name="other")  # another study: never a holder
    dists = {"lambda": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    for study, point in [(other.study, 0), (stored.study, 0), (stored.study, 1), (stored.study, 0)]:
        enqueue(study, {"lambda": 0.01 + 0.01 * point}, dists, {"point": point})
    first, single, copy = ids(stored, 0, 1, 2)

    def holder(trial_id):
        return earlier_holder(stored.storage, stored.study_id, trial_id, window=4096)

    assert (holder(first), holder(single), holder(copy)) == (None, None, 0)
    assert earlier_holder(stored.storage, stored.study_id, copy, window=copy - first - 1) is None
    stored.storage.set_trial_state_values(first, TrialState.RUNNING)
    stored.storage.set_trial_state_values(first, TrialState.FAIL)
    assert holder(copy) is None  # a failed trial holds nothing: its point may run again


def test_a_point_queued_twice_is_popped_once_and_its_copy_dropped(tmp_path, url):
    # Two top-ups at once (a server restart ended the lock's session) queue a point twice.
    spec, stored = prepared(tmp_path, url, trials=2)
    with stored.locked():
        queue_next(stored, spec)
    for t in stored.trials(TrialState.WAITING):
        enqueue(stored.study, t.user_attrs["values"], t.distributions, dict(t.user_attrs))
    popped = pop_waiting(stored, 4)
    assert [p.number for p in popped] == [0, 1]
    dropped = stored.trials(TrialState.FAIL)
    assert [t.user_attrs["fail_reason"] for t in dropped] == [
        "a duplicate of trial 0",
        "a duplicate of trial 1",
    ]
    assert all(t.user_attrs["requeued"] for t in dropped)  # not a failure of its value


def test_a_claim_that_loses_never_pops_the_trial(tmp_path, url, monkeypatch):
    # Another worker claims trials between this worker's listing of the queue and its own
    # claim: its `set_trial_state_values` then answers False, and the trial is not this
    # worker's to run (both would run it: a value evaluated twice).
    spec, stored = prepared(tmp_path, url, trials=4)
    with stored.locked():
        queue_next(stored, spec)
    other = open_study("q", url)
    wins, taken = [2, 1], []  # how many of each listing the other worker claims first

    def listed_then_claimed_elsewhere(storage, study_id, limit):
        found = queued_trials(storage, study_id, limit)
        for q in found[: wins.pop(0)]:
            assert other.storage.set_trial_state_values(q.trial_id, TrialState.RUNNING)
            taken.append(q.number)
        return found

    monkeypatch.setattr("sweep.store.queue.queued_trials", listed_then_claimed_elsewhere)
    (mine,) = pop_waiting(stored, 1)  # 0 and 1 were lost: 2 or 3 (tried in random order)
    assert taken == [0, 1] and mine.number in (2, 3)
    assert pop_waiting(stored, 1) == []  # the last one was lost too
    assert sorted([*taken, mine.number]) == [0, 1, 2, 3]
    assert [t.state for t in stored.trials()] == [TrialState.RUNNING] * 4


def test_a_popped_trial_holds_its_values_and_one_queued_without_them_still_runs(tmp_path, url):
    spec, stored = prepared(tmp_path, url, trials=1)
    with stored.locked():
        queue_next(stored, spec)
    stored.study.enqueue_trial({"lambda": 0.02})  # without parameters
    planned, plain = pop_waiting(stored, 2)
    values = stored.trials()[0].user_attrs["values"]
    assert planned.trial.params == values  # recorded when it was queued
    assert planned.trial.suggest_float("lambda", 1e-4, 1e-1, log=True) == values["lambda"]
    assert plain.trial.params == {}
    assert plain.trial.suggest_float("lambda", 1e-4, 1e-1, log=True) == 0.02
    assert stored.trials()[1].params == {"lambda": 0.02}


def test_the_study_lock_can_be_tried_without_waiting(tmp_path, url):
    _, stored = prepared(tmp_path, url)
    mine, theirs = (StudyLock(stored.storage, url, "q") for _ in range(2))
    try:
        assert mine.acquire(wait=False)
        assert not theirs.acquire(wait=False)  # held elsewhere: returns at once
        mine.release()
        assert theirs.acquire(wait=False)
        theirs.release()
    finally:
        mine.close()
        theirs.close()


def test_the_pruners_reads_agree_with_optunas_trials(url):
    storage = open_storage(url)
    studies = [optuna.create_study(study_name=n, storage=storage) for n in ("v", "other")]
    rows = [
        (TrialState.COMPLETE, {0: 0.1, 2: 0.2, 5: 0.3, 1_000_001: 0.4}),
        (TrialState.COMPLETE, {2: math.inf, 3: -math.inf}),
        (TrialState.PRUNED, {2: 0.25, 7: 0.5}),
        (TrialState.RUNNING, {2: math.nan, 8: 0.6}),
        (TrialState.FAIL, {2: 0.9, 9: 0.9}),
        (TrialState.WAITING, {}),
    ]
    for state, values in rows:
        studies[0].add_trial(
            create_trial(
                state=state,
                value=0.0 if state == TrialState.COMPLETE else None,
                intermediate_values=values,
            )
        )
    studies[1].add_trial(
        create_trial(state=TrialState.COMPLETE, value=1.0, intermediate_values={2: 5.0, 6: 5.0})
    )
    study_id = storage.get_study_id_from_name("v")
    trials = studies[0].get_trials(states=COUNTED)

    def shown(values):  # in one order, NaN last and equal to itself
        return repr(sorted(values, key=lambda v: (math.isnan(v), v)))

    assert shown(values_at_step(storage, study_id, 2, -1)) == "[0.2, 0.25, inf, nan]"
    for step in (0, 2, 3, 7, 8, 9, 1_000_001):
        for exclude in (-1, 0, 3):
            want = [
                t.intermediate_values[step]
                for t in trials
                if t.number != exclude and step in t.intermediate_values
            ]
            got = values_at_step(storage, study_id, step, exclude)
            assert shown(got) == shown(want), (step, exclude)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for low, high in ((0, 1_000_000), (0, 3), (3, 4), (6, 1_000_000), (1_000_000, 2_000_000)):
        steps = [s for t in complete for s in t.intermediate_values if low <= s < high]
        assert last_complete_step(storage, study_id, low, high) == max(steps, default=None)
