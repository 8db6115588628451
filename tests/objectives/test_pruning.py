"""Pruning: a target that counts pruned trials, a median that cannot ratchet, reasons."""

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweep.cli.main import main
from sweep.execution.runner import run_study
from sweep.objectives.pruning import STEP_STRIDE, MedianMarginPruner, Threshold
from sweep.spec import studyfile
from sweep.store.storage import open_storage
from sweep.store.study import open_study
from tests.conftest import study_text

PER_SEED = 4  # recordings per seed in these studies


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request, tmp_path):
    """Where the judged studies live. On an RDB storage the pruner reads the values at one
    step (sweep/store/queries.py); on any other it lists the trials through Optuna."""
    if request.param == "memory":
        return None
    if request.param == "postgres":
        return open_storage(request.getfixturevalue("pg_url"))
    return open_storage(f"sqlite:///{tmp_path}/p.db")


def study_with(storage, trials, direction="maximize"):
    """A study holding finished trials with the given intermediate values."""
    study = optuna.create_study(storage=storage, direction=direction)
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


def test_pruned_trials_keep_counting_so_the_median_cannot_ratchet(storage):
    # Five trials completed high; five were pruned lower. Optuna's MedianPruner only sees
    # the survivors (median 0.50) and prunes a trial at 0.44; ours sees all ten (0.45).
    trials = [(TrialState.COMPLETE, {3: 0.50})] * 5 + [(TrialState.PRUNED, {3: 0.40})] * 5
    study = study_with(storage, trials)
    optunas = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    assert judged(study, optunas, 3, 0.44)
    ours = MedianMarginPruner(storage=storage)
    assert not judged(study, ours, 3, 0.44)
    assert ours.threshold(study, -1, 3) == Threshold(median=0.45, threshold=0.43, trials=10)
    assert judged(study, ours, 3, 0.42)  # more than the 2-point margin below the median


def test_running_trials_count_and_the_judged_trial_is_not_its_own_comparison(storage):
    # Four others at the step: two COMPLETE, one PRUNED, one still RUNNING (0.60 each);
    # a FAILed trial never counts.
    trials = [
        (TrialState.COMPLETE, {1: 0.6, 3: 0.6}),
        (TrialState.COMPLETE, {1: 0.6, 3: 0.6}),
        (TrialState.PRUNED, {3: 0.6}),
        (TrialState.RUNNING, {3: 0.6}),
        (TrialState.FAIL, {3: 0.0}),
    ]
    study = study_with(storage, trials)
    pruner = MedianMarginPruner(storage=storage)
    assert pruner.threshold(study, 2, 3) is None  # trial 2 itself: 3 others only
    assert pruner.threshold(study, 5, 3) == Threshold(median=0.6, threshold=0.58, trials=4)
    assert judged(study, pruner, 3, 0.57) and not judged(study, pruner, 3, 0.59)


def test_no_pruning_during_warmup_or_with_too_few_trials(storage):
    study = study_with(storage, [(TrialState.COMPLETE, {1: 0.5, 3: 0.5})] * 5)
    pruner = MedianMarginPruner(storage=storage)
    assert not judged(study, pruner, 1, 0.1)  # step 1 of 3: the first half never prunes
    assert pruner.threshold(study, -1, 1) is None and pruner.threshold(study, -1, 3)
    few = study_with(storage, [(TrialState.COMPLETE, {3: 0.5})] * 3)
    assert not judged(few, pruner, 3, 0.1)  # 3 trials at the step: fewer than 4
    # The seed's length comes from COMPLETE trials only: running ones may report longer.
    longer = study_with(
        storage,
        [(TrialState.COMPLETE, {2: 0.5, 3: 0.5, 4: 0.5})] * 4
        + [(TrialState.RUNNING, {3: 0.5, 9: 0.5})],
    )
    assert pruner.threshold(longer, -1, 3).trials == 5  # 3 of 4: past the first half
    # Half-way is still the first half (README: "from the second half of its recordings
    # on"): of recordings at steps 10..80, step 40 is the 4th of 8.
    assert pruner.threshold(longer, -1, 2) is None


def test_with_repeats_a_seed_is_compared_with_the_same_seed_and_step(storage):
    # Seed 0's step 3 is Optuna step 3, seed 1's is STEP_STRIDE + 3: other values.
    study = study_with(storage, [(TrialState.COMPLETE, {3: 0.60, STEP_STRIDE + 3: 0.40})] * 5)
    pruner = MedianMarginPruner(storage=storage)
    assert judged(study, pruner, 3, 0.45)  # far below seed 0's 0.60
    assert not judged(study, pruner, STEP_STRIDE + 3, 0.45)  # above seed 1's 0.40
    # Each seed's warm-up is the first half of that seed's recordings: here seed 0 records
    # up to step 9 and seed 1 up to step 3, so step 2 may prune in seed 1, not in seed 0.
    uneven = {2: 0.6, 9: 0.6, STEP_STRIDE + 2: 0.6, STEP_STRIDE + 3: 0.6}
    study = study_with(storage, [(TrialState.COMPLETE, uneven)] * 5)
    assert judged(study, pruner, STEP_STRIDE + 2, 0.1)
    assert not judged(study, pruner, 2, 0.1)


def test_a_minimising_study_prunes_values_above_the_median(storage):
    study = study_with(storage, [(TrialState.COMPLETE, {3: 1.0})] * 5, direction="minimize")
    pruner = MedianMarginPruner(storage=storage)
    assert pruner.threshold(study, -1, 3) == Threshold(median=1.0, threshold=1.02, trials=5)
    assert judged(study, pruner, 3, 1.05)
    assert judged(study, pruner, 3, 1.025)  # just beyond the margin
    assert not judged(study, pruner, 3, 1.015)  # worse than the median, within the margin
    assert not judged(study, pruner, 3, 0.95)


def test_infinite_and_nan_values_are_read_back_as_they_were_reported(storage):
    values = [0.5, math.inf, -math.inf, 0.7]
    study = study_with(storage, [(TrialState.COMPLETE, {3: v}) for v in values])
    pruner = MedianMarginPruner(storage=storage)
    assert pruner.threshold(study, -1, 3).median == pytest.approx(0.6)
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={3: math.nan}))
    assert pruner.threshold(study, -1, 3).trials == 5


def pruned_spec(tmp_path, trials=8):
    # lambda up to 8: the large ones learn little (the decay factor nears 0) but stay finite.
    # With seed 24 the only such lambda is trial 5's (4.99; the others are at most 0.1). Two
    # workers take one trial at a time, so when trial 5 starts at least four of trials 0-4
    # have completed: its bar has four trials behind it whatever the workers' timing. (With
    # seed 3 the bad lambda was trial 4's, which had a bar only if the other worker's trial
    # was ahead of it: it was pruned in most runs, not all.)
    text = study_text(
        "p",
        trials=trials,
        seed=24,
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
        assert "of seed 24" in t.user_attrs["prune_reason"]
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
    assert "reason: pruned at step" in capsys.readouterr().out
    assert main(["table", "p", "--storage", url, "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "p" / "table.md").read_text()
    assert "when pruned)" in table and "below the threshold" in table


CURVES = """
def curve(params, ctx):
    # A learning curve that ends at x: every trial ranks the same at every step.
    for step in range(1, 10):
        ctx.report(step, params["x"] * step / 9)
    return params["x"]
"""


def test_hyperband_prunes_some_trials_and_says_by_what(tmp_path):
    (tmp_path / "curve.py").write_text(CURVES)
    (tmp_path / "h.toml").write_text(
        '[study]\nname = "h"\ntrials = 12\nseed = 1\nsampler = "random"\npruner = "hyperband"\n'
        '[objective]\nfile = "curve.py"\nfunction = "curve"\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    url = f"sqlite:///{tmp_path}/h.db"
    r = run_study(studyfile.load(tmp_path / "h.toml"), storage_url=url, jobs=1)
    assert r.counts["COMPLETE"] + r.counts["PRUNED"] == 12 and r.counts["PRUNED"] >= 1
    stored = open_study("h", url)
    pruned = stored.trials(TrialState.PRUNED)
    assert all("by the HyperbandPruner" in t.user_attrs["prune_reason"] for t in pruned)
    # Every curve ranks as its end does: the pruned ones are never the best.
    best = max(stored.trials(), key=lambda t: t.params["x"])
    assert best.state == TrialState.COMPLETE and best.value == best.params["x"]
    assert all(t.intermediate_values[t.last_step] < best.params["x"] for t in pruned)
