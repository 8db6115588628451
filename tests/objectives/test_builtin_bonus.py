"""The bonus [train] settings of the built-in objective: dropout, flip, translate, wide and
mixed hidden widths; parsed strictly, searchable, and packed."""

import dataclasses
import tomllib

import optuna
import pytest
from optuna.trial import TrialState

from core import training
from sweep.errors import StudyFileError
from sweep.execution.runner import run_study
from sweep.objectives import builtin
from sweep.spec import studyfile
from tests.conftest import study_text

GOOD = study_text("s", trials=3, n_s=5)


def parse(text):
    return studyfile.parse(tomllib.loads(text), "s.toml")


def with_train(extra: str, text: str = GOOD) -> str:
    return text.replace("cycles = 1", f"cycles = 1\n{extra}")


def test_the_bonus_keys_reach_the_training_config_and_the_calls():
    spec = parse(with_train("dropout = 0.3\nflip = true\ntranslate = 2\nhidden = 1000"))
    t = spec.train
    assert (t.dropout, t.flip, t.translate, t.hidden) == (0.3, True, 2, 1000)
    assert {k: spec.fixed[k] for k in ("dropout", "flip", "translate", "hidden")} == {
        "dropout": 0.3,
        "flip": True,
        "translate": 2,
        "hidden": 1000,
    }
    assert builtin.config({**spec.fixed, "seed": 1}) == dataclasses.replace(t, seed=1)
    assert isinstance(parse(with_train("dropout = 0")).train.dropout, float)


def test_a_study_without_them_passes_the_same_params_as_v0_2():
    spec = parse(GOOD)
    assert not {"dropout", "flip", "translate"} & set(spec.fixed)
    # a study stored before the keys existed still compares equal to its file
    stored = spec.to_dict()
    for key in ("dropout", "flip", "translate"):
        del stored["train"][key]
    again = studyfile.StudyFile.from_dict(stored)
    assert again.train == spec.train and again.fixed == spec.fixed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("dropout = 1.0", "[train]: dropout (1.0) must be in [0, 1)"),
        ("dropout = -0.2", "[train]: dropout (-0.2) must be in [0, 1)"),
        ("translate = -1", "[train]: translate (-1) must be a whole number of pixels from 0 to 8"),
        ("translate = 1.5", "train.translate must be a whole number, not float 1.5"),
        ("flip = 1", "train.flip must be true or false, not int 1"),
        ("hidden = 0", "[train]: hidden (0) must be at least 1"),
    ],
)
def test_bad_bonus_values_name_the_file_and_the_rule(extra, message):
    with pytest.raises(StudyFileError) as info:
        parse(with_train(extra))
    assert "s.toml" in str(info.value) and message in str(info.value)


def search(name: str, body: str) -> str:
    return GOOD + f"[search.{name}]\n{body}\n"


def test_dropout_and_hidden_are_searchable_as_float_and_int():
    spec = parse(search("dropout", "low = 0.0\nhigh = 0.5\nlog = false"))
    r = spec.search["dropout"]
    assert (r.low, r.high, r.log, r.is_int) == (0.0, 0.5, False, False)
    spec = parse(search("hidden", "low = 50\nhigh = 2000"))
    assert spec.search["hidden"].is_int


def test_flip_and_translate_cannot_be_searched():
    for name in ("flip", "translate"):
        with pytest.raises(StudyFileError, match=f"search.{name} cannot be searched"):
            parse(search(name, "choices = [1, 2]"))


class PackCtx:
    """A stand-in for sweep.objectives.objective.PackContext: records what each member reports."""

    def __init__(self, data_dir):
        self.data_dir = str(data_dir)
        self.timings = {}
        self.reports = {}

    def report(self, i, step, value, **more):
        self.reports.setdefault(i, []).append(value)

    def keep_outcomes(self, i, correct):
        pass

    def keep_step_outcomes(self, i, step, correct):
        pass

    def end(self, i, exc):
        self.ended = [*getattr(self, "ended", []), (i, exc, sum(map(len, self.reports.values())))]


class OneCtx(PackCtx):
    def report(self, step, value, **more):
        super().report(0, step, value)

    def keep_outcomes(self, correct):
        pass

    def keep_step_outcomes(self, step, correct):
        pass


def test_runs_of_different_widths_and_dropouts_train_as_one_pack(cifar_dir, monkeypatch):
    spec = parse(
        with_train("flip = true", GOOD.replace('split = "exercise"', 'split = "exercise"'))
    )
    base = {**spec.fixed, "seed": 3, "lambda": 0.01}
    params = [
        {**base, "hidden": 50},
        {**base, "hidden": 120, "dropout": 0.2},
        {**base, "hidden": 20},
    ]
    calls = []
    real = training.train_pack

    def spy(configs, *args, **kwargs):
        calls.append([c.hidden for c in configs])
        return real(configs, *args, **kwargs)

    monkeypatch.setattr(builtin, "train_pack", spy)
    packed = builtin.objective_many(params, PackCtx(cifar_dir))
    assert calls == [[50, 120, 20]]  # one mixed-width pack
    for p, got in zip(params, packed, strict=True):
        alone = builtin.objective(p, OneCtx(cifar_dir))
        assert got["val_accuracy"] == pytest.approx(alone["val_accuracy"], abs=0.003)
        assert got["train_loss"] == pytest.approx(alone["train_loss"], rel=1e-3)


def test_a_study_searching_hidden_packs_its_trials(tmp_path, cifar_dir):
    text = study_text("widths", trials=3, sampler="random", n_s=5).replace(
        "[search.lambda]\nlow = 1e-4\nhigh = 1e-1",
        "[search.hidden]\nlow = 20\nhigh = 200",
    )
    text = text.replace('name = "widths"', 'name = "widths"\npack = 3')
    path = tmp_path / "widths.toml"
    path.write_text(text)
    url = f"sqlite:///{tmp_path}/w.db"
    run_study(studyfile.load(path), storage_url=url, jobs=1, data_dir=cifar_dir)
    trials = optuna.load_study(study_name="widths", storage=url).trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3 and len({t.params["hidden"] for t in done}) == 3
    numbers = sorted(t.number for t in done)
    assert all(t.user_attrs["result"]["pack"] == numbers for t in done)  # trained together


def test_a_member_that_diverges_is_ended_through_the_context_as_it_leaves(cifar_dir):
    spec = parse(GOOD)
    base = {**spec.fixed, "seed": 3, "n_s": 20, "evals_per_cycle": 4}
    params = [{**base, "lambda": 0.01}, {**base, "lambda": 1e6}, {**base, "lambda": 0.001}]
    ctx = PackCtx(cifar_dir)
    out = builtin.objective_many(params, ctx)
    ((i, exc, reports_then),) = ctx.ended
    assert i == 1 and exc is out[1] and "diverged" in str(exc)
    assert reports_then < sum(map(len, ctx.reports.values()))  # before the others finished
