"""A stored study: planned points, top-up, re-queueing and recovery, on a real SQLite file."""

import contextlib
import multiprocessing as mp
import os
from fractions import Fraction

import optuna
import pytest
from optuna.trial import TrialState

from sweep.spec import plan, studyfile
from sweep.store import queue
from sweep.store.enqueue import MAX_RETRY
from sweep.store.queries import count_states
from sweep.store.queue import pending_points, pop_waiting, requeue, top_up
from sweep.store.recovery import fail_running, recover
from sweep.store.storage import open_storage
from sweep.store.study import open_study, prepare
from tests.conftest import study_text


def prepared(tmp_path, sampler="random", trials=4):
    (tmp_path / "s.toml").write_text(study_text("s", trials=trials, sampler=sampler))
    spec = studyfile.load(tmp_path / "s.toml")
    stored, _ = prepare(spec, f"sqlite:///{tmp_path}/s.db", target=trials)
    return spec, stored


@pytest.mark.parametrize("sampler", ["random", "qmc"])
def test_planned_points_are_prefix_stable(tmp_path, sampler):
    # Topping up 2 then 5 queues the same values as 5 at once: a rerun continues the plan.
    spec, stored = prepared(tmp_path, sampler, trials=2)
    top_up(stored, spec)
    stored.study.set_user_attr("target", 5)
    top_up(stored, spec)
    queued = [t.user_attrs["values"]["lambda"] for t in stored.trials(TrialState.WAITING)]
    ranges = {"lambda": (1e-4, 1e-1, True)}
    assert queued == [plan.values_at(sampler, 7, i, ranges)["lambda"] for i in range(5)]
    assert [t.user_attrs["point"] for t in stored.trials()] == list(range(5))
    assert len(set(queued)) == 5 and all(1e-4 <= v <= 1e-1 for v in queued)


def test_a_refined_grid_queues_only_its_new_points(tmp_path):
    spec, stored = prepared(tmp_path, "grid", trials=3)
    top_up(stored, spec)
    assert [Fraction(*t.user_attrs["point"]) for t in stored.trials()] == [0, Fraction(1, 2), 1]
    stored.study.set_user_attr("target", 5)
    assert pending_points(stored, spec, 5) == [[1, 4], [3, 4]]
    assert plan.grid_units(1) == [Fraction(1, 2)]


def test_a_refined_grid_set_back_to_fewer_points_stays_refined(tmp_path):
    # A grid of 3 refined to 5 (its points queued, some run), then the file's 3 again: the
    # target went back to 3 and the run ended on whichever of the 5 points were queued
    # first (0, 1/4, 1/2 here): the grid's 1 never ran, and 3/4 and 1 waited for ever.
    spec, stored = prepared(tmp_path, "grid", trials=3)
    stored.study.set_user_attr("target", 5)
    top_up(stored, spec)
    _, notes = prepare(spec, f"sqlite:///{tmp_path}/s.db", target=3)
    assert stored.target == 5
    assert notes == [
        "study 's' is a grid refined to 5 points, 5 of them given to trials: it stays a grid "
        "of 5 points (a grid of 3 would leave those out of place)"
    ]


def test_a_grid_set_back_to_the_points_it_has_run_takes_the_smaller_target(tmp_path):
    spec, stored = prepared(tmp_path, "grid", trials=3)
    top_up(stored, spec)
    stored.study.set_user_attr("target", 5)  # raised, but none of its new points queued yet
    _, notes = prepare(spec, f"sqlite:///{tmp_path}/s.db", target=3)
    assert stored.target == 3 and notes == []


def test_top_up_never_queues_past_the_target(tmp_path):
    spec, stored = prepared(tmp_path, trials=3)
    assert top_up(stored, spec) == 3
    assert top_up(stored, spec) == 0  # a second orchestrator finds nothing missing
    assert count_states(stored.storage, stored.study_id)["WAITING"] == 3


def test_count_states_agrees_with_optuna(tmp_path):
    spec, stored = prepared(tmp_path, trials=3)
    top_up(stored, spec)
    trial = stored.study.ask()
    stored.study.tell(trial, 0.5)
    stored.study.tell(stored.study.ask(), state=TrialState.FAIL)
    counted = count_states(stored.storage, stored.study_id)
    for state in TrialState:
        if state.name in counted:
            assert counted[state.name] == len(stored.trials(state)), state


def _exit_at_once() -> None:
    pass


def dead_pid() -> int:
    proc = mp.get_context("fork").Process(target=_exit_at_once)
    proc.start()
    proc.join()
    return proc.pid


def test_recover_requeues_the_values_of_a_trial_whose_worker_is_gone(tmp_path):
    spec, stored = prepared(tmp_path, trials=2)
    top_up(stored, spec)
    dead = stored.study.ask()
    dead.set_user_attr("worker", {"host": os.uname().nodename, "pid": dead_pid()})
    alive = stored.study.ask()
    alive.set_user_attr("worker", {"host": os.uname().nodename, "pid": os.getpid()})
    lam = dead.params.get("lambda") or dead.suggest_float("lambda", 1e-4, 1e-1, log=True)

    notes = recover(stored)
    assert len(notes) == 1 and f"trial {dead.number} recovered" in notes[0]
    trials = {t.number: t for t in stored.trials()}
    assert trials[dead.number].state == TrialState.FAIL
    assert "is gone" in trials[dead.number].user_attrs["fail_reason"]
    assert trials[alive.number].state == TrialState.RUNNING  # its worker still runs
    retry = stored.trials(TrialState.WAITING)
    assert len(retry) == 1 and retry[0].user_attrs["values"]["lambda"] == pytest.approx(lam)
    assert retry[0].user_attrs["retry"] == 1 and "worker" not in retry[0].user_attrs
    assert recover(stored) == []  # exactly once


def test_a_trial_run_alone_is_left_to_its_watching_worker_while_that_one_runs(tmp_path):
    # A trial run alone (worker.run_isolated) died with its process: an idle sibling that
    # saw the dead pid first failed it as "gone", a crash on no proof, before the worker
    # watching the process could record how it ended (a value was then not run again after
    # four such recoveries, never proven to crash a process; 1 run in 8 of
    # test_a_value_that_kills_its_worker_twice_is_not_run_again).
    spec, stored = prepared(tmp_path, trials=3)
    top_up(stored, spec)
    host = os.uname().nodename
    watched = stored.study.ask()
    watched.set_user_attr("worker", {"host": host, "pid": dead_pid(), "watcher": os.getpid()})
    orphan = stored.study.ask()
    orphan.set_user_attr("worker", {"host": host, "pid": dead_pid(), "watcher": dead_pid()})
    notes = recover(stored)
    assert len(notes) == 1 and f"trial {orphan.number} recovered" in notes[0], notes
    assert {t.number for t in stored.trials(TrialState.RUNNING)} == {watched.number}
    # After a broken pool the command ends such trials itself: not counted as crashes.
    stored.study.ask().set_user_attr("worker", {"host": host, "pid": dead_pid()})
    blameless = {t.number for t in stored.trials(TrialState.RUNNING)} - {watched.number}
    recover(stored, blameless=blameless)
    crashes = [t.user_attrs.get("crashes", 0) for t in stored.trials(TrialState.WAITING)]
    assert sorted(crashes) == [0, 1], crashes  # the orphan's crash; not the blameless one's


def test_a_value_whose_worker_keeps_dying_is_queued_again_at_most_max_retry_times(tmp_path):
    spec, stored = prepared(tmp_path, trials=1)
    top_up(stored, spec)
    attempts = []
    while len(attempts) <= MAX_RETRY + 1:  # (one more than allowed, if it never stops)
        popped = pop_waiting(stored, 1)
        if not popped:
            break
        (trial,) = popped
        attempts.append(trial.number)
        gone = {"host": os.uname().nodename, "pid": dead_pid()}  # the worker died with it
        stored.storage.set_trial_user_attr(trial.id, "worker", gone)
        assert len(recover(stored)) == 1
    assert len(attempts) == MAX_RETRY + 1  # the first run and MAX_RETRY retries
    trials = stored.trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * (MAX_RETRY + 1)
    assert [t.user_attrs.get("retry", 0) for t in trials] == list(range(MAX_RETRY + 1))
    assert len({t.params["lambda"] for t in trials}) == 1  # the same value each time
    assert all("is gone" in t.user_attrs["fail_reason"] for t in trials)
    assert not trials[-1].user_attrs.get("requeued")  # not queued again: its value failed
    assert stored.counts()["WAITING"] == 0


class Killed(Exception):
    """The process dies here."""


def test_values_whose_retry_was_lost_run_again_rather_than_a_new_point(tmp_path, monkeypatch):
    # Failing a trial and queueing its values again are two writes: a kill -9 or a database
    # restart between them once lost planned point 17 of 200 in CI (a new point 200 ran in
    # its place). The next top-up queues the lost values again, exactly once.
    spec, stored = prepared(tmp_path, trials=4)
    top_up(stored, spec)
    done, requeued, stale, raised = pop_waiting(stored, 4)
    stored.study.tell(done.trial, 0.5)

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(queue, "enqueue_again", die)  # the sweep's requeue dies half-way
    with pytest.raises(Killed):
        requeue(stored, stored.storage.get_trial(requeued.id), "worker gone", crashed=True)
    monkeypatch.undo()
    # Optuna's fail_stale_trials fails a trial, then its callback is never called.
    stored.storage.set_trial_state_values(stale.id, state=TrialState.FAIL)
    # A failure of its values: it is not run again, a new point replaces it.
    stored.storage.set_trial_user_attr(raised.id, "fail_reason", "the function raised")
    stored.storage.set_trial_state_values(raised.id, state=TrialState.FAIL)

    assert top_up(stored, spec) == 3
    waiting = stored.trials(TrialState.WAITING)
    points = [t.user_attrs["point"] for t in waiting]
    assert points == [requeued.trial.user_attrs["point"], stale.trial.user_attrs["point"], 4]
    for again, lost in zip(waiting[:2], (requeued, stale), strict=True):
        assert again.params == lost.trial.params and again.user_attrs["retry"] == 1
    assert top_up(stored, spec) == 0  # exactly once
    # A copy dropped as a duplicate (marked requeued) does not bring back a failed value.
    copy = optuna.trial.create_trial(
        state=TrialState.FAIL,
        user_attrs={
            **raised.trial.user_attrs,
            "requeued": True,
            "fail_reason": f"{queue.DUPLICATE} 3",
        },
    )
    stored.study.add_trial(copy)
    assert queue.lost_retries(stored.trials()) == []


def test_fail_running_after_ctrl_c_requeues_trials_killed_before_they_started(tmp_path):
    # A worker popped the trial and died before recording itself or asking for values.
    spec, stored = prepared(tmp_path, trials=1)
    top_up(stored, spec)
    stored.study.ask()
    assert fail_running(stored, reason="interrupted") == 1
    (failed,) = stored.trials(TrialState.FAIL)
    (again,) = stored.trials(TrialState.WAITING)
    assert failed.user_attrs["fail_reason"] == "interrupted"
    assert again.user_attrs["values"] == failed.user_attrs["values"]


@pytest.mark.postgres
def test_count_states_on_postgresql(pg_url):
    storage = open_storage(pg_url)
    study = optuna.create_study(study_name="c", storage=storage)
    study.set_user_attr("spec", {})  # open_study opens only studies lambda-sweep made
    study.enqueue_trial({"x": 1.0})
    study.tell(study.ask(), 1.0)
    study.tell(study.ask(), state=TrialState.PRUNED)
    study_id = storage.get_study_id_from_name("c")
    counted = count_states(storage, study_id)
    assert counted["COMPLETE"] == 1 and counted["PRUNED"] == 1 and counted["WAITING"] == 0
    assert open_study("c", pg_url, read_only=True).counts() == counted


PARENT_FN = "def f(params, ctx):\n    return -abs(params['x'] - 0.3)\n"


def _stage(folder, name, search, trials=10):
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\ntrials = {trials}\nseed = 1\n'
        f'[objective]\nfile = "f.py"\nfunction = "f"\n{search}'
    )
    return path


def test_a_fine_stage_refuses_a_parent_that_has_not_reached_its_target(tmp_path, capsys):
    from sweep.cli.main import main
    from tests.conftest import check

    (tmp_path / "f.py").write_text(PARENT_FN)
    coarse = _stage(tmp_path, "A", "[search.x]\nlow = 0.01\nhigh = 1.0\n")
    fine = _stage(tmp_path, "B", '[search.x]\nnarrow_from = "A"\n', trials=4)
    url = f"sqlite:///{tmp_path}/s.db"
    argv = ["--storage", url, "--out", str(tmp_path / "o")]
    assert main(["run", str(coarse), "--trials", "5", *argv]) == 0
    with optuna_target(url, "A") as set_target:
        set_target(10)  # as an interrupted run of the 10-trial file leaves it: 5 of 10
    check(capsys, ["run", str(fine), *argv], "has 5 of its 10 trials; finish it first")
    assert "B" not in optuna.get_all_study_names(storage=url)  # nothing was created
    assert main(["run", str(fine), "--partial-parent", *argv]) == 0
    assert "narrowed on a partial parent: A had 5 of its 10 trials" in capsys.readouterr().out
    assert main(["report", "A", "B", "--storage", url, "--out", str(tmp_path / "r")]) == 0
    assert "a partial parent: 5 of its 10 trials" in (tmp_path / "r" / "report.md").read_text()


def test_narrowing_a_parameter_the_parent_does_not_search_writes_nothing(tmp_path, capsys):
    from sweep.cli.main import main
    from tests.conftest import check

    (tmp_path / "f.py").write_text(PARENT_FN)
    coarse = _stage(tmp_path, "A0", "[search.x]\nlow = 0.01\nhigh = 1.0\n", trials=4)
    fine = _stage(tmp_path, "B0", '[search.y]\nnarrow_from = "A0"\n', trials=4)
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["run", str(coarse), "--storage", url, "--out", str(tmp_path / "o")]) == 0
    check(capsys, ["run", str(fine), "--storage", url], "study 'A0' does not search 'y'")
    assert optuna.get_all_study_names(storage=url) == ["A0"]
    fine.write_text(fine.read_text().replace("search.y", "search.x"))
    assert main(["run", str(fine), "--storage", url, "--out", str(tmp_path / "o")]) == 0


@contextlib.contextmanager
def optuna_target(url, name):
    study = optuna.load_study(study_name=name, storage=url)
    yield lambda n: study.set_user_attr("target", n)


def test_a_fine_stage_narrows_around_its_parents_best_by_the_parents_direction(tmp_path, capsys):
    # A minimising parent and a maximising fine stage: the parent's trials were ranked by
    # the fine stage's direction, so it narrowed around the parent's worst values (here the
    # lowest x tried, "the smallest tried: range extended below it").
    from sweep.cli.main import main

    (tmp_path / "f.py").write_text("def f(params, ctx):\n    return abs(params['x'] - 0.3)\n")
    coarse = _stage(tmp_path, "M", "[search.x]\nlow = 0.01\nhigh = 1.0\n", trials=8)
    coarse.write_text(
        coarse.read_text().replace('function = "f"\n', 'function = "f"\ndirection = "minimize"\n')
    )
    fine = _stage(tmp_path, "X", '[search.x]\nnarrow_from = "M"\ntop_k = 1\n', trials=2)
    url = f"sqlite:///{tmp_path}/s.db"
    argv = ["--storage", url, "--out", str(tmp_path / "o")]
    assert main(["run", str(coarse), *argv]) == 0
    parent = optuna.load_study(study_name="M", storage=url)
    best = parent.best_trial.params["x"]
    capsys.readouterr()
    assert main(["run", str(fine), *argv]) == 0
    low, high = optuna.load_study(study_name="X", storage=url).user_attrs["ranges"]["x"][:2]
    assert low < best < high, (low, best, high)
