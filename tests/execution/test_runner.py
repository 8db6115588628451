import math
import statistics

import optuna
import pytest

from core.data import DataError
from sweep.errors import RunFailed, StudyFileError, StudyNotFound
from sweep.execution.resume import resume_study
from sweep.execution.runner import run_study
from sweep.results.tables import display_table, study_table, write_tables
from sweep.spec import plan, studyfile
from sweep.store.study import open_study
from tests.conftest import study_text, write_cifar


def spec(tmp_path, name="s", trials=4, sampler="random", repeats=1, low=1e-4, high=1e-1):
    p = tmp_path / f"{name}.toml"
    search = f"low = {low}\nhigh = {high}"
    p.write_text(study_text(name, trials=trials, sampler=sampler, repeats=repeats, search=search))
    return studyfile.load(p)


def lambdas(url, name):
    study = optuna.load_study(study_name=name, storage=url)
    return sorted(
        t.params["lambda"] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    )


def test_same_lambdas_whatever_the_number_of_jobs(tmp_path, cifar_dir):
    one, three = f"sqlite:///{tmp_path}/one.db", f"sqlite:///{tmp_path}/three.db"
    s = spec(tmp_path, trials=5)
    r1 = run_study(s, storage_url=one, jobs=1, data_dir=cifar_dir)
    r3 = run_study(s, storage_url=three, jobs=3, data_dir=cifar_dir)
    assert r1.counts["COMPLETE"] == 5
    assert r3.counts["COMPLETE"] == 5  # the study lock prevents any overshoot
    planned = [
        plan.values_at("random", 7, i, {"lambda": (1e-4, 1e-1, True)})["lambda"] for i in range(5)
    ]
    assert lambdas(one, "s") == pytest.approx(sorted(planned))
    assert lambdas(three, "s") == pytest.approx(sorted(planned))
    # Nothing left in the queue, nothing sampled outside the plan.
    assert r3.counts["WAITING"] == 0 and r3.counts["FAIL"] == 0


def test_rerun_tops_up_to_a_new_target_and_never_recomputes(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/s.db"
    s = spec(tmp_path, trials=3)
    run_study(s, storage_url=url, jobs=1, data_dir=cifar_dir)
    again = run_study(s, storage_url=url, jobs=1, data_dir=cifar_dir)
    assert again.counts["COMPLETE"] == 3  # already finished: nothing more ran
    more = run_study(s, storage_url=url, jobs=1, data_dir=cifar_dir, trials=5)
    assert more.counts["COMPLETE"] == 5


def test_repeats_average_several_seeds(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/r.db"
    run_study(spec(tmp_path, trials=2, repeats=3), storage_url=url, data_dir=cifar_dir)
    study = optuna.load_study(study_name="s", storage=url)
    for t in study.trials:
        result = t.user_attrs["result"]
        runs = result["per_seed"]
        assert len(runs) == 3 and result["seeds"] == [7, 8, 9]
        # Each seed trains its own network: (on these separable synthetic images every
        # seed may reach the same accuracy, but never the same validation loss).
        assert len({run["val_loss"] for run in runs}) == 3
        for key, mean in result["metrics"].items():  # every metric: the mean over the seeds
            values = [run[key] for run in runs]
            assert mean == sum(values) / 3
            assert result["sd"][key] == pytest.approx(statistics.stdev(values), rel=1e-12)
        assert t.value == result["metrics"]["val_accuracy"]
    df = study_table(study)
    shown = display_table(df, "val_accuracy", ["lambda"])
    assert df["val_accuracy_sd"].notna().all() and "±" in shown["val accuracy ± se"].iloc[0]
    assert shown["sd over seeds"].str.endswith("%").all()


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path, cifar_dir):
    # lambda >= ~10 makes the decay factor 1 - 2 eta lambda < -1: the weights explode.
    url = f"sqlite:///{tmp_path}/nan.db"
    s = spec(tmp_path, trials=4, sampler="grid", low=1e-3, high=1e4)
    result = run_study(s, storage_url=url, jobs=2, data_dir=cifar_dir)
    assert any("every point of the grid has been tried" in note for note in result.notes)
    study = optuna.load_study(study_name="s", storage=url)
    c = open_study("s", url).counts()
    assert c["COMPLETE"] >= 2 and c["FAIL"] >= 1
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert all("diverged" in t.user_attrs["fail_reason"] for t in failed)
    assert all(t.params["lambda"] > 1 for t in failed)
    # A fine stage narrows from the spent grid without --partial-parent: it cannot finish
    # more (it said "finish it first (sweep resume s)", and resume ran nothing).
    path = tmp_path / "fine.toml"
    fine = study_text("f", trials=2).replace("low = 1e-4\nhigh = 1e-1", 'narrow_from = "s"')
    path.write_text(fine)
    result = run_study(studyfile.load(path), storage_url=url, jobs=1, data_dir=cifar_dir)
    assert result.counts["COMPLETE"] == 2
    assert any("narrowed on a partial parent: s had" in n for n in result.notes), result.notes


def test_random_top_up_replaces_failed_trials(tmp_path, cifar_dir):
    # In these 10-step runs lambda >= 1e4 diverges (test_objective) and lambda <= 1e3 does
    # not. The plan is seeded, so which points diverge is known before the run.
    url = f"sqlite:///{tmp_path}/nan2.db"
    s = spec(tmp_path, trials=4, low=1e-3, high=1e9)
    ranges = {"lambda": (1e-3, 1e9, True)}
    planned = [plan.values_at("random", 7, i, ranges)["lambda"] for i in range(7)]
    assert not any(1e3 < v < 1e4 for v in planned)
    diverging = sum(v >= 1e4 for v in planned)
    assert sum(v < 1e3 for v in planned[:4]) < 4 <= sum(v < 1e3 for v in planned)
    r = run_study(s, storage_url=url, jobs=2, data_dir=cifar_dir)
    assert r.counts["COMPLETE"] == 4 and r.counts["FAIL"] == diverging
    study = optuna.load_study(study_name="s", storage=url)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert all("diverged" in t.user_attrs["fail_reason"] for t in failed)
    assert all(t.params["lambda"] >= 1e4 for t in failed)


def test_fine_stage_narrows_from_the_parent_and_keeps_its_range(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/f.db"
    fine_text = study_text(
        "fine", trials=3, sampler="qmc", search='narrow_from = "coarse"\ntop_k = 2\nmargin = 0.1'
    )
    (tmp_path / "fine.toml").write_text(fine_text)
    fine = studyfile.load(tmp_path / "fine.toml")
    with pytest.raises(StudyNotFound, match="'coarse', which is not in the storage"):
        run_study(fine, storage_url=url, data_dir=cifar_dir)
    run_study(spec(tmp_path, name="coarse", trials=4), storage_url=url, data_dir=cifar_dir)
    r = run_study(fine, storage_url=url, data_dir=cifar_dir)
    low, high, _ = r.ranges["lambda"]
    study = optuna.load_study(study_name="fine", storage=url)
    assert study.user_attrs["parent"] == "coarse" and study.user_attrs["stage"] == "fine"
    assert all(low * 0.999 <= v <= high * 1.001 for v in lambdas(url, "fine"))
    # More coarse trials later must not move the stored fine range.
    run_study(
        spec(tmp_path, name="coarse", trials=4), storage_url=url, data_dir=cifar_dir, trials=6
    )
    r2 = run_study(fine, storage_url=url, data_dir=cifar_dir, trials=4)
    assert r2.ranges["lambda"][:2] == pytest.approx((low, high))


def test_fine_stage_whose_parent_has_no_complete_trials(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/e.db"
    optuna.create_study(study_name="coarse", storage=url)
    text = study_text("fine", trials=2, sampler="qmc", search='narrow_from = "coarse"')
    (tmp_path / "fine.toml").write_text(text)
    with pytest.raises(StudyNotFound, match="'coarse' has no COMPLETE trials"):
        run_study(studyfile.load(tmp_path / "fine.toml"), storage_url=url, data_dir=cifar_dir)


def test_changed_settings_under_the_same_name_are_refused(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/c.db"
    run_study(spec(tmp_path, trials=1), storage_url=url, data_dir=cifar_dir)
    with pytest.raises(StudyFileError, match="already exists in the storage with other settings"):
        run_study(spec(tmp_path, trials=1, high=0.5), storage_url=url, data_dir=cifar_dir)
    with pytest.raises(StudyFileError) as info:  # which setting: the user edits one of many
        run_study(spec(tmp_path, trials=1, high=0.5), storage_url=url, data_dir=cifar_dir)
    assert "settings (search.lambda.high: 0.1 stored, 0.5 here); give" in str(info.value)


def test_table_data_and_files(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/t.db"
    run_study(spec(tmp_path, trials=3), storage_url=url, data_dir=cifar_dir)
    study = optuna.load_study(study_name="s", storage=url)
    df = study_table(study)
    assert list(df["lambda"]) == sorted(t.params["lambda"] for t in study.trials)
    assert df["best"].sum() == 1
    assert df["train_accuracy"].between(0, 1).all() and df["val_accuracy_sd"].isna().all()
    best = df[df["best"]].iloc[0]
    assert best["val_accuracy"] == max(t.value for t in study.trials)
    assert best["rank"] == 1 and math.isclose(best["lambda"], study.best_params["lambda"])
    paths = write_tables(study, tmp_path / "out")
    assert [p.name for p in paths] == ["table.csv", "table.md", "table.tex"]
    assert "★" in paths[1].read_text() and r"\begin{tabular}" in paths[2].read_text()


def test_raising_a_grid_target_refines_the_grid_without_repeating_a_value(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/g.db"
    s = spec(tmp_path, trials=4, sampler="grid", low=1e-4, high=1e-1)
    run_study(s, storage_url=url, jobs=2, data_dir=cifar_dir)
    r = run_study(s, storage_url=url, jobs=2, data_dir=cifar_dir, trials=7)
    assert r.counts["COMPLETE"] == 7 and r.counts["WAITING"] == 0
    # 7 evenly spaced points in log space: the 4 old ones and the 3 between them.
    assert lambdas(url, "s") == pytest.approx([10 ** (-4 + j / 2) for j in range(7)])
    # Back to the file's 4 (a rerun without --trials): the grid stays one of 7 points (the
    # 4 are among them), none runs again.
    again = run_study(s, storage_url=url, jobs=2, data_dir=cifar_dir)
    assert again.counts["COMPLETE"] == 7 and len(lambdas(url, "s")) == 7
    assert optuna.load_study(study_name="s", storage=url).user_attrs["target"] == 7
    # To 10: 10 does not hold the 7 that ran (the check compared the targets alone, and the
    # study claimed a 10-point grid it never ran).
    with pytest.raises(StudyFileError, match=r"grid of 7 points; 10 points .*7, 13"):
        run_study(s, storage_url=url, jobs=2, data_dir=cifar_dir, trials=10)
    finer = run_study(s, storage_url=url, jobs=2, data_dir=cifar_dir, trials=13)
    assert lambdas(url, "s") == pytest.approx([10 ** (-4 + j / 4) for j in range(13)])
    assert finer.counts["COMPLETE"] == 13


def test_a_grid_target_that_would_repeat_values_is_refused(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/g.db"
    s = spec(tmp_path, trials=4, sampler="grid")
    run_study(s, storage_url=url, jobs=1, data_dir=cifar_dir)
    with pytest.raises(StudyFileError, match=r"grid of 4 points; 6 points would not contain"):
        run_study(s, storage_url=url, jobs=1, data_dir=cifar_dir, trials=6)
    study = optuna.load_study(study_name="s", storage=url)
    assert study.user_attrs["target"] == 4 and len(study.trials) == 4


def test_a_study_whose_every_trial_fails_stops_after_one_round_with_the_reasons(
    tmp_path, cifar_dir
):
    url = f"sqlite:///{tmp_path}/all.db"
    s = spec(tmp_path, trials=4, low=1e3, high=1e4)  # every lambda diverges
    with pytest.raises(RunFailed, match=r"made no progress: 4 trial\(s\) failed \(trial 0: "):
        run_study(s, storage_url=url, jobs=2, data_dir=cifar_dir)
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 4  # not 5 x 4


def test_resume_finds_the_data_the_study_ran_on(tmp_path, cifar_dir, monkeypatch):
    url = f"sqlite:///{tmp_path}/d.db"
    run_study(spec(tmp_path, trials=2), storage_url=url, data_dir=cifar_dir)
    optuna.load_study(study_name="s", storage=url).set_user_attr("target", 3)  # unfinished
    # Without the recorded folder the default lookup would try to download.
    monkeypatch.setenv("SWEEP_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("SWEEP_CIFAR_URL", "http://127.0.0.1:9/none.tar.gz")
    assert resume_study("s", storage_url=url).counts["COMPLETE"] == 3


def test_a_study_refuses_data_other_than_what_it_ran_on(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/d.db"
    run_study(spec(tmp_path, trials=2), storage_url=url, data_dir=cifar_dir)
    other = write_cifar(tmp_path / "other", per_batch=200, seed=1)
    with pytest.raises(DataError, match="is not the data study 's' ran on"):
        run_study(spec(tmp_path, trials=2), storage_url=url, data_dir=other, trials=3)
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 2


def test_workers_start_with_their_blas_thread_count_in_the_environment(tmp_path):
    """macOS Accelerate reads VECLIB_MAXIMUM_THREADS when NumPy loads, before threadpoolctl
    could limit it: each worker process starts with it set to its --threads."""
    import os

    import sweep

    def objective(params, ctx):
        return {"score": params["x"], "veclib": float(os.environ["VECLIB_MAXIMUM_THREADS"])}

    study = {
        "study": {"name": "env", "trials": 4},
        "objective": {"metric": "score"},
        "search": {"x": {"low": 0.1, "high": 1.0}},
    }
    url = f"sqlite:///{tmp_path / 'env.db'}"
    sweep.run(study, objective=objective, storage=url, jobs=2, threads=3)
    trials = open_study("env", url).trials(optuna.trial.TrialState.COMPLETE)
    assert len(trials) == 4
    assert {t.user_attrs["result"]["metrics"]["veclib"] for t in trials} == {3.0}


def test_workers_run_in_the_callers_folder_even_when_the_pool_is_reused(tmp_path, monkeypatch):
    """The worker processes outlive a run (loky reuses them): a second run from another
    folder must find its relative storage, and its function its relative files, there."""
    import os

    import sweep

    def objective(params, ctx):
        return {"score": params["x"], "here": float(os.path.exists("marker"))}

    study = {
        "study": {"name": "cwd", "trials": 4},
        "objective": {"metric": "score"},
        "search": {"x": {"low": 0.1, "high": 1.0}},
    }
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "marker").write_text("")
        monkeypatch.chdir(tmp_path / folder)
        sweep.run(study, objective=objective, storage="sqlite:///rel.db", jobs=2)
        url = f"sqlite:///{tmp_path / folder / 'rel.db'}"
        trials = open_study("cwd", url).trials(optuna.trial.TrialState.COMPLETE)
        assert len(trials) == 4
        assert {t.user_attrs["result"]["metrics"]["here"] for t in trials} == {1.0}


def test_a_run_whose_workers_change_nothing_fails_instead_of_looping(tmp_path, monkeypatch):
    """Workers that return without running a trial (as ones started in another folder
    once did) make the run fail with a line after a few rounds, never spin for ever."""
    import sweep
    from sweep.execution import pool

    rounds = []
    monkeypatch.setattr(pool, "run", lambda *a, **k: rounds.append(1) or (0, None))
    study = {
        "study": {"name": "idle", "trials": 2},
        "objective": {"metric": "score"},
        "search": {"x": {"low": 0.1, "high": 1.0}},
    }
    with pytest.raises(RunFailed, match="ran no trial in 3 rounds"):
        sweep.run(
            study, objective=lambda p, ctx: p["x"], storage=f"sqlite:///{tmp_path}/i.db", jobs=2
        )
    assert len(rounds) == 4  # the first round queues the trials; three change nothing


def test_meanwhile_runs_once_while_the_workers_have_the_first_round(tmp_path):
    """The workers of the first round wait for a file only ``meanwhile`` writes: were it
    called after them (or never), they would time out and fail. Timing-free: the study's
    first trials fail on purpose, so it takes several rounds, and ``meanwhile`` runs once."""
    import time

    from sweep.api import _study_file

    go = tmp_path / "go"

    def objective(params, ctx):
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("meanwhile did not run while the workers waited")
            time.sleep(0.01)
        if ctx.trial < 2:
            raise ValueError("failed on purpose: replaced in a later round")
        return params["x"]

    calls = []

    def meanwhile():
        calls.append(1)
        go.write_text("")

    study = {
        "study": {"name": "m", "trials": 4},
        "objective": {"metric": "value"},
        "search": {"x": {"low": 0.1, "high": 1.0}},
    }
    url = f"sqlite:///{tmp_path}/m.db"
    spec_ = _study_file(study, "objective", None)
    r = run_study(spec_, storage_url=url, jobs=2, function=objective, meanwhile=meanwhile)
    assert r.counts["COMPLETE"] == 4 and r.counts["FAIL"] == 2  # more than one round
    assert len(calls) == 1
    trials = open_study("m", url).trials(optuna.trial.TrialState.FAIL)
    assert all("on purpose" in str(t.user_attrs) for t in trials)  # not the timeout
