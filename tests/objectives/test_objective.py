"""The Optuna objective: suggest, call the function once per seed, record, return the mean."""

import dataclasses

import numpy as np
import optuna
import pytest

from core.errors import DivergedError
from sweep.objectives import builtin
from sweep.objectives.objective import STEP_STRIDE, Objective, PackContext
from sweep.objectives.outcomes import ObjectiveError, metrics_of
from sweep.spec import studyfile
from tests.conftest import study_text


def objective_for(tmp_path, cifar_dir, function=builtin.objective, **kwargs):
    (tmp_path / "o.toml").write_text(study_text("o", **kwargs))
    spec = studyfile.load(tmp_path / "o.toml")
    space = {k: r.fixed() for k, r in spec.search.items()}
    return spec, Objective(spec, space, function, str(cifar_dir), fingerprint="fp")


def run(objective, **values):
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(values)
    trial = study.ask()
    value = objective(trial)
    return value, study.get_trials()[-1].user_attrs["result"]


def test_the_value_is_the_mean_over_seeds_and_every_metric_is_recorded(tmp_path, cifar_dir):
    spec, objective = objective_for(tmp_path, cifar_dir, repeats=2)
    value, result = run(objective, **{"lambda": 0.01})
    assert result["seeds"] == [spec.study.seed, spec.study.seed + 1]
    per_seed = [run["val_accuracy"] for run in result["per_seed"]]
    assert value == pytest.approx(np.mean(per_seed)) == result["metrics"]["val_accuracy"]
    assert result["sd"]["val_accuracy"] == pytest.approx(np.std(per_seed, ddof=1))
    assert set(result["metrics"]) >= {"val_accuracy", "train_accuracy", "val_loss", "train_cost"}
    assert result["data_fingerprint"] == "fp" and 0.0 < value <= 1.0
    # The first seed's curves, the reported value named by the metric.
    assert len(result["curves"]["val_accuracy"]) == 2 and "train_loss" in result["curves"]


def test_the_built_in_gets_the_study_file_settings_and_searched_values(tmp_path, cifar_dir):
    spec, _ = objective_for(tmp_path, cifar_dir)
    seen = []

    def spy(params, ctx):
        seen.append((params, ctx.data_dir, ctx.trial))
        return builtin.objective(params, ctx)

    spec, objective = objective_for(tmp_path, cifar_dir, function=spy)
    run(objective, **{"lambda": 0.002})
    params, data_dir, number = seen[0]
    assert params["lambda"] == 0.002 and params["seed"] == spec.study.seed
    assert params["split"] == "exercise" and params["n_s"] == 5 and number == 0
    assert data_dir == str(cifar_dir)
    config = builtin.config(params)
    assert config == dataclasses.replace(spec.train, lam=0.002)


def test_a_diverging_lambda_raises_instead_of_returning_a_number(tmp_path, cifar_dir):
    # 1 - 2 eta lambda < -1 at eta_max 0.1: the weights flip sign and grow every step.
    _, objective = objective_for(tmp_path, cifar_dir, search="low = 1e3\nhigh = 1e4")
    with pytest.raises(DivergedError, match="diverged"):
        run(objective, **{"lambda": 5e3})


def test_reports_of_later_seeds_are_offset(tmp_path, cifar_dir):
    def reporting(params, ctx):
        for step in (10, 20):
            ctx.report(step, 0.5)
        return 0.5

    _, objective = objective_for(tmp_path, cifar_dir, function=reporting, repeats=2)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"lambda": 0.01})
    objective(study.ask())
    steps = sorted(study.get_trials()[-1].intermediate_values)
    assert steps == [10, 20, STEP_STRIDE + 10, STEP_STRIDE + 20]


@pytest.mark.parametrize(
    ("returned", "metric", "message"),
    [
        ({"loss": 1.0}, "acc", "returned no 'acc' (it returned loss)"),
        ({"acc": 1.0}, None, "name the key to optimise in [objective] metric"),
        ({"acc": "high"}, "acc", "not a number"),
        ("0.5", None, "returned str, not a number or a dict"),
        (True, None, "returned bool"),
        # a negative standard error became COMPLETE (even "tied"), then `sweep report` failed
        ({"m": 0.5, "m_se": -1.0}, "m", "returned m_se = -1.0: the standard error of m is 0"),
    ],
)
def test_unusable_results_are_clear_errors(returned, metric, message):
    with pytest.raises(
        ObjectiveError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        metrics_of(returned, metric)


def test_a_bare_number_or_a_dict_become_metrics():
    assert metrics_of(0.25, None) == {"value": 0.25}
    assert metrics_of(np.float32(0.5), "acc") == {"acc": 0.5}
    assert metrics_of({"acc": 1, "loss": 2.5}, "acc") == {"acc": 1.0, "loss": 2.5}
    # "_se" pairs with a metric only: a key of the user's own that ends so is any number
    assert metrics_of({"acc": 1, "fit_se": -2}, "acc") == {"acc": 1.0, "fit_se": -2.0}


def test_after_a_list_form_raised_a_pruned_member_stays_pruned_and_the_others_run_alone(capsys):
    class Member:  # the part of a TrialContext that the fallback uses
        trial = 0

        def __init__(self, pruned=None, fresh=False):
            self.pruned, self.fresh = pruned, fresh

        def again(self):
            return Member(fresh=True)

    pruned = optuna.TrialPruned("pruned at step 3")
    ctx = PackContext([Member(), Member(pruned), Member()], data_dir=None)
    ctx.timings["train"] = 1.0
    objective = Objective.__new__(Objective)  # only its function is called
    objective.function = lambda params, member: (params["x"], member.fresh)
    outs = objective._one_by_one([{"x": 1}, {"x": 2}, {"x": 3}], ctx, ValueError("bad"))
    assert outs == [(1, True), pruned, (3, True)]  # not re-run: its report pruned it
    assert ctx.timings == {}  # the list form's timings are not the single runs'
    err = capsys.readouterr().err
    assert "the list form raised ValueError: bad; its trials run one by one" in err


def test_a_list_forms_report_or_end_for_a_member_out_of_range_is_refused():
    # A negative index addressed another member (-1: the last) without a word.
    from sweep.objectives.objective import PackContext

    class Member:
        trial = 0

    ctx = PackContext([Member(), Member()], data_dir=None)
    for call in (lambda: ctx.report(-1, 7, 123.0), lambda: ctx.end(2, ValueError("x"))):
        with pytest.raises(IndexError, match="of a pack of 2"):
            call()
