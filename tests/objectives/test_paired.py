"""pruner = "paired": a member is stopped only when McNemar says it is worse than the best."""

import re
import tomllib

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from sweep.errors import StudyFileError
from sweep.execution.runner import run_study
from sweep.objectives import builtin, paired
from sweep.objectives.objective import PackContext, TrialContext
from sweep.spec import studyfile
from sweep.store import records
from tests.conftest import study_text

N = 1000


def bits(right: int, *, offset: int = 0) -> np.ndarray:
    """Outcomes on N images: ``right`` of them correct, starting at ``offset``."""
    correct = np.zeros(N, dtype=bool)
    correct[offset : offset + right] = True
    return correct


def study_of(outcomes: list[np.ndarray], step: int = 5) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for correct in outcomes:
        t = study.ask()
        t.set_user_attr(paired.key(step), paired.stored(correct))
        t.report(float(correct.mean()), step)
    return study


def judged(study: optuna.Study, number: int, step: int = 5):
    pruner = paired.PairedPruner(reports=20)
    trial = study.get_trials(deepcopy=False)[number]
    return pruner.prune(study, trial), pruner


def test_a_clearly_worse_trial_is_pruned_with_the_p_value_in_its_reason():
    study = study_of([bits(500), bits(400)])
    prune, pruner = judged(study, 1)
    assert prune
    reason = pruner.reason(study, 1, 5, "at step 5 of seed 1")
    assert "0.4000 against the best 0.5000 (trial 0)" in reason
    assert "McNemar p = " in reason and "< 0.01" in reason and "at step 5 of seed 1" in reason


def test_trials_within_noise_of_the_best_and_the_best_itself_are_never_pruned():
    # 10 of 1,000 images apart: 20 discordant images split 15/5, p ~ 0.04, not below 0.01
    study = study_of([bits(500), bits(490, offset=15), bits(500)])
    assert not judged(study, 1)[0]
    assert not judged(study, 0)[0]  # one of two equal bests
    assert not judged(study, 2)[0]


def test_only_rung_steps_and_the_same_step_are_compared():
    study = study_of([bits(500), bits(400)], step=5)
    t = study.ask()
    t.report(0.1, 7)  # a step without outcomes: not a rung, never pruned
    assert not judged(study, 2, step=7)[0]
    assert paired.rung_recordings((0.25, 0.5), 20) == {5, 10}
    assert paired.rung_recordings((0.25, 0.5), 2) == {1}  # the last recording never


def parse(text: str) -> studyfile.StudyFile:
    return studyfile.parse(tomllib.loads(text))


# Two cycles of 4 recordings: the default rung is the end of the first, the 4th of 8.
PAIRED = study_text("p", pruner="paired", n_s=20, evals_per_cycle=4).replace(
    "cycles = 1", "cycles = 2"
)


def test_the_study_file_keys():
    spec = parse(PAIRED)
    assert (spec.study.prune_level, spec.study.rungs, spec.rungs) == (0.01, (), (0.5,))
    three = parse(PAIRED.replace("cycles = 2", "cycles = 3"))
    assert three.rungs == (1 / 3, 2 / 3)  # the ends of cycles 1 and 2
    assert parse(PAIRED.replace("cycles = 2", "cycles = 1")).rungs == ()  # one cycle: none
    spec = parse(PAIRED.replace('pruner = "paired"', 'pruner = "paired"\nrungs = [0.5, 0.2]'))
    assert spec.study.rungs == spec.rungs == (0.2, 0.5)
    assert studyfile.StudyFile.from_dict(spec.to_dict()) == spec
    for bad, message in [
        ("prune_level = 0.7", "study.prune_level (0.7) must lie between 0 and 0.5"),
        ("rungs = [1.5]", "study.rungs ([1.5]) must be a list of fractions"),
        ("rungs = []", "study.rungs ([]) must be a list of fractions"),
    ]:
        with pytest.raises(StudyFileError, match=re.escape(message)):
            parse(PAIRED.replace('pruner = "paired"', f'pruner = "paired"\n{bad}'))
    with pytest.raises(StudyFileError, match='only used with pruner = "paired"'):
        parse(study_text("m", pruner="median").replace('"median"', '"median"\nrungs = [0.5]'))


def pack_of(params: list[dict], spec: studyfile.StudyFile, data_dir) -> tuple[list, list]:
    """Train ``params`` as one pack, each member a trial of one in-memory study with the
    paired pruner (no other trials: members are compared with their packmates)."""
    pruner = paired.PairedPruner(reports=spec.per_seed_reports, rungs=spec.rungs)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trials = [study.ask() for _ in params]
    ctx = PackContext([TrialContext(t, 0, 3, str(data_dir)) for t in trials], str(data_dir))
    return builtin.objective_many(params, ctx), trials


def test_a_member_far_worse_than_its_packmates_leaves_the_pack_and_the_rest_go_on(cifar_dir):
    spec = parse(PAIRED.replace("cycles = 2", 'cycles = 2\ndtype = "float64"'))
    base = {**spec.fixed, "seed": 3}
    good = {**base, "lambda": 0.001}
    # lambda 8 shrinks the weights by a factor ~0.2 a step: it learns next to nothing.
    outs, trials = pack_of([good, {**base, "lambda": 8.0}, good], spec, cifar_dir)
    assert isinstance(outs[1], optuna.TrialPruned)
    reason = str(outs[1])
    assert "at step 40 of seed 3" in reason and "McNemar p = " in reason  # the rung
    # Two identical configs are never pruned: they complete, with the results they have
    # trained without the pruned member.
    alone, _ = pack_of([good, good], spec, cifar_dir)
    for got, want in zip([outs[0], outs[2]], alone, strict=True):
        assert isinstance(got, dict)
        assert got["val_accuracy"] == want["val_accuracy"]
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-9)
    kept = [
        k for k in trials[0].study.trials[0].user_attrs if k.startswith(records.OUTCOMES_PREFIX)
    ]
    assert kept == [paired.key(40)]  # the end of the first cycle, recording 4 of 8


def test_a_paired_study_prunes_the_hopeless_and_completes_the_rest(tmp_path, cifar_dir):
    text = PAIRED.replace('name = "p"', 'name = "p"\npack = 4').replace(
        'sampler = "random"', 'sampler = "grid"'
    )
    path = tmp_path / "p.toml"
    path.write_text(text.replace("low = 1e-4\nhigh = 1e-1", "low = 1e-3\nhigh = 8.0"))
    url = f"sqlite:///{tmp_path}/p.db"
    r = run_study(studyfile.load(path), storage_url=url, jobs=1, data_dir=cifar_dir)
    assert r.counts["COMPLETE"] + r.counts["PRUNED"] == 4 and r.counts["PRUNED"] >= 1
    trials = optuna.load_study(study_name="p", storage=url).trials
    by_lambda = {t.params["lambda"]: t for t in trials}
    worst = by_lambda[max(by_lambda)]
    assert worst.state == TrialState.PRUNED
    assert "McNemar p = " in worst.user_attrs["prune_reason"]
    assert by_lambda[min(by_lambda)].state == TrialState.COMPLETE


def test_a_log_range_end_stays_inside_the_range():
    # 10 ** log10(8.0) is 8.000000000000004, which Optuna refuses as outside [1e-3, 8.0].
    from sweep.spec.space import Dimension

    r = Dimension(low=1e-3, high=8.0, log=True)
    assert r.value(1.0) == 8.0 and r.value(0.0) == 1e-3


def test_a_retried_trial_does_not_inherit_its_failed_attempts_rung_outcomes():
    from sweep.store.enqueue import enqueue_again

    study = optuna.create_study(direction="maximize")
    dist = optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)
    t = study.ask({"lambda": dist})
    t.set_user_attr(paired.key(5), paired.stored(bits(10)))
    t.set_user_attr("retry", 0)
    study.tell(t, state=TrialState.FAIL)
    enqueue_again(study, study.trials[0], crashed=False)
    again = study.get_trials(states=(TrialState.WAITING,))
    assert len(again) == 1 and paired.key(5) not in again[0].user_attrs
    assert again[0].user_attrs["retry"] == 1
