"""Pruning: a target that counts pruned trials, a median that cannot ratchet, reasons."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweep import studyfile
from sweep.cli import main
from sweep.pruning import STEP_STRIDE, MedianMarginPruner
from sweep.runner import run_study
from sweep.study import open_study
from tests.conftest import study_text

PER_SEED = 4  # recordings per seed in these studies


def study_with(trials, direction="maximize"):
    """An in-memory study holding finished trials with the given intermediate values."""
    study = optuna.create_study(direction=direction)
    for state, values in trials:
        study.add_trial(
            create_trial(
                state=state,
                value=list(values.values())[-1] if state == TrialState.COMPLETE else None,
                params={"x": 0.5},
                distributions={"x": FloatDistribution(0, 1)},
                intermediate_values=values,
            )
        )
    return study


def judged(study, pruner, step, value):
    """Whether ``pruner`` prunes a new trial reporting ``value`` at ``step``."""
    trial = study.ask()
    trial.report(value, step)
    frozen = study.get_trials(deepcopy=False)[-1]
    verdict = pruner.prune(study, frozen)
    study.tell(trial, state=TrialState.FAIL)  # out of the way of the next judgement
    return verdict


def test_pruned_trials_keep_counting_so_the_median_cannot_ratchet():
    # Five trials completed high; five were pruned lower. Optuna's MedianPruner only sees
    # the survivors (median 0.50) and prunes a trial at 0.44; ours sees all ten (0.45).
    trials = [(TrialState.COMPLETE, {3: 0.50})] * 5 + [(TrialState.PRUNED, {3: 0.40})] * 5
    study = study_with(trials)
    optunas = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    assert judged(study, optunas, 3, 0.44)
    ours = MedianMarginPruner()
    assert not judged(study, ours, 3, 0.44)
    assert ours.threshold(study, -1, 3).median == pytest.approx(0.45)
    assert judged(study, ours, 3, 0.42)  # more than the 2-point margin below the median


def test_no_pruning_during_warmup_or_with_too_few_trials():
    study = study_with([(TrialState.COMPLETE, {1: 0.5, 3: 0.5})] * 5)
    pruner = MedianMarginPruner()
    assert not judged(study, pruner, 1, 0.1)  # step 1 of 3: the first half never prunes
    few = study_with([(TrialState.COMPLETE, {3: 0.5})] * 3)
    assert not judged(few, pruner, 3, 0.1)  # 3 trials at the step: fewer than 4


def test_with_repeats_a_seed_is_compared_with_the_same_seed_and_step():
    # Seed 0's step 3 is Optuna step 3, seed 1's is STEP_STRIDE + 3: other values.
    study = study_with([(TrialState.COMPLETE, {3: 0.60, STEP_STRIDE + 3: 0.40})] * 5)
    pruner = MedianMarginPruner()
    assert judged(study, pruner, 3, 0.45)  # far below seed 0's 0.60
    assert not judged(study, pruner, STEP_STRIDE + 3, 0.45)  # above seed 1's 0.40


def test_a_minimising_study_prunes_values_above_the_median():
    study = study_with([(TrialState.COMPLETE, {3: 1.0})] * 5, direction="minimize")
    pruner = MedianMarginPruner()
    assert judged(study, pruner, 3, 1.05)
    assert not judged(study, pruner, 3, 0.95)


def pruned_spec(tmp_path, trials=8):
    # lambda up to 8: the large ones learn little (the decay factor nears 0) but stay finite.
    text = study_text(
        "p",
        trials=trials,
        seed=3,
        pruner="median",
        n_s=20,
        evals_per_cycle=PER_SEED,
        search="low = 1e-4\nhigh = 8.0",
    )
    path = tmp_path / "p.toml"
    # One trial at a time per worker: a pruner compares a trial with trials that got further,
    # and 8 trials in two packs of 4 would all run at once (README, "Packed trials").
    path.write_text(text.replace('name = "p"', 'name = "p"\npack = 1'))
    return studyfile.load(path)


def test_a_pruned_study_runs_exactly_its_target_and_says_why(tmp_path, cifar_dir, capsys):
    url = f"sqlite:///{tmp_path}/p.db"
    r = run_study(pruned_spec(tmp_path), storage_url=url, jobs=2, data_dir=cifar_dir)
    assert r.counts["COMPLETE"] + r.counts["PRUNED"] == 8 and r.counts["PRUNED"] >= 1
    assert r.counts["WAITING"] == 0 and r.counts["RUNNING"] == 0
    stored = open_study("p", url)
    pruned = stored.trials(TrialState.PRUNED)
    for t in pruned:
        assert "below the threshold" in t.user_attrs["prune_reason"]
        assert "of seed 3" in t.user_attrs["prune_reason"]
    # A raised target tops up by finished trials, as resume does.
    r = run_study(pruned_spec(tmp_path), storage_url=url, jobs=2, data_dir=cifar_dir, trials=10)
    assert r.counts["COMPLETE"] + r.counts["PRUNED"] == 10

    number = pruned[0].number
    capsys.readouterr()
    assert main(["trials", "p", "--storage", url, "--format", "csv"]) == 0
    row = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith(f"{number},")
    )
    assert "PRUNED" in row and "below the threshold" in row
    assert main(["show", "p", str(number), "--storage", url]) == 0
    assert "prune_reason: pruned at step" in capsys.readouterr().out
    assert main(["table", "p", "--storage", url, "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "p" / "table.md").read_text()
    assert "when pruned)" in table and "below the threshold" in table
