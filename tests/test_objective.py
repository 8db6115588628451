"""The built-in objective: suggest, train each seed, record the result, return the mean."""

import dataclasses

import numpy as np
import optuna
import pytest

from core.data import load_split
from core.errors import DivergedError
from sweep import studyfile
from sweep.objective import Objective
from tests.conftest import study_text


@pytest.fixture(scope="module")
def split(cifar_dir):
    return load_split("exercise", cifar_dir)


def objective_for(tmp_path, split, repeats=1, search="low = 1e-4\nhigh = 1e-1"):
    (tmp_path / "o.toml").write_text(study_text("o", repeats=repeats, search=search))
    spec = studyfile.load(tmp_path / "o.toml")
    ranges = {k: (r.low, r.high, r.log) for k, r in spec.search.items()}
    return spec, Objective(spec, ranges, split, fingerprint="fp")


def test_the_value_is_the_mean_over_seeds_and_the_result_is_recorded(tmp_path, split):
    spec, objective = objective_for(tmp_path, split, repeats=2)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"lambda": 0.01})
    trial = study.ask()
    value = objective(trial)
    result = trial.study.get_trials()[-1].user_attrs["result"]
    assert result["seeds"] == [spec.study.seed, spec.study.seed + 1]
    assert value == pytest.approx(np.mean(result["val_accuracies"]))
    assert result["config"]["lam"] == 0.01 and result["data_fingerprint"] == "fp"
    assert 0.0 < value <= 1.0 and len(result["curves"]["val_accuracy"]) == 2


def test_a_diverging_lambda_raises_instead_of_returning_a_number(tmp_path, split):
    # 1 - 2 eta lambda < -1 at eta_max 0.1: the weights flip sign and grow every step.
    _, objective = objective_for(tmp_path, split, search="low = 1e3\nhigh = 1e4")
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"lambda": 5e3})
    with pytest.raises(DivergedError, match="diverged"):
        objective(study.ask())


def test_searched_values_reach_the_training_config(tmp_path, split):
    spec, objective = objective_for(tmp_path, split)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"lambda": 0.002})
    objective(study.ask())
    config = study.get_trials()[-1].user_attrs["result"]["config"]
    expected = dataclasses.replace(spec.train, lam=0.002)
    assert config == dataclasses.asdict(expected)
