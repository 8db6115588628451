"""Inverted dropout on the hidden layer: gradients, masks, seeding, packs, evaluation."""

import json

import numpy as np
import pytest

from core import pack
from core.data import load_split
from core.errors import ConfigError
from core.gradcheck import TOLERANCE, check
from core.network import (
    Params,
    backward,
    cross_entropy,
    data_gradients,
    dropout_mask,
    evaluate,
    forward,
    init_params,
)
from core.training import CLASSES, TrainConfig, train, train_pack


@pytest.fixture(scope="module")
def exercise(cifar_dir):
    return load_split("exercise", cifar_dir)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_gradients_with_a_fixed_dropout_mask_match_centred_differences(p):
    errors = check(dropout=p)
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    for name, e in errors.items():
        assert e.max_rel <= TOLERANCE and e.max_rel <= 1e-7, (name, e)


def test_a_nearly_total_dropout_passes_on_the_gradients_it_can_measure():
    # p = 0.99 keeps one hidden unit of ten: W2 entries of ~2e-10 were compared with
    # themselves, and the numerical gradient's own rounding (~2.5e-13) "failed" them (7e-4)
    errors = check(dropout=0.99)
    assert all(e.max_rel <= TOLERANCE for e in errors.values()), errors
    assert 1e-14 < errors["W2"].max_abs < 1e-9  # the same differences as before


def test_the_dropout_check_catches_a_gradient_that_forgets_the_mask_scale():
    def wrong(params, X, y, lam, mask):
        H, P = forward(params, X, mask)
        cost = cross_entropy(P, y) + lam * params.sum_squared_weights()
        g = data_gradients(params, X, y, H, P, mask=(mask > 0).astype(float))  # no 1/(1-p)
        return cost, Params(g.W1 + 2 * lam * params.W1, g.b1, g.W2 + 2 * lam * params.W2, g.b2)

    errors = check(lambdas=(0.1,), dropout=0.5, analytic=wrong)
    assert errors["W1"].max_rel > 1e-3 and errors["b1"].max_rel > 1e-3


def test_a_mask_drops_about_p_of_the_units_and_keeps_the_mean():
    mask = dropout_mask(np.random.default_rng(0), (200, 500), 0.3, np.float32)
    assert mask.shape == (200, 500) and mask.dtype == np.float32
    assert set(np.unique(mask)) == {np.float32(0), np.float32(1 / 0.7)}
    assert np.mean(mask == 0) == pytest.approx(0.3, abs=0.005)
    assert mask.mean() == pytest.approx(1.0, abs=0.01)


def test_a_pack_step_with_dropout_is_each_members_gradient_step_on_its_thinned_network():
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((16, 30)), rng.integers(0, CLASSES, 16)
    members = [init_params(30, m, CLASSES, rng, np.float64) for m in (6, 9)]
    for p in members:
        p.b1[:] = rng.normal(0, 0.1, p.b1.shape)
    masks = [dropout_mask(rng, (16, 6), 0.5, np.float64), np.ones((16, 9))]  # second: none
    lams, etas = np.array([0.01, 0.2]), np.array([0.1, 0.05])
    net = pack.Pack.stack(members)
    pack.step(net, X, y, lams, etas, np.concatenate(masks, axis=1))
    for k, (p, mask) in enumerate(zip(members, masks, strict=True)):
        _, g = backward(p, X, y, lams[k], mask)
        for name in ("W1", "b1", "W2", "b2"):
            want = getattr(p, name) - etas[k] * getattr(g, name)
            np.testing.assert_allclose(getattr(net.member(k), name), want, rtol=1e-12, atol=1e-14)


def config(**more):
    return TrainConfig(n_s=10, cycles=1, seed=6, evals_per_cycle=2, **more)


def test_dropout_is_seeded_and_changes_training(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    a, b = train(config(dropout=0.3), *args), train(config(dropout=0.3), *args)
    plain = train(config(), *args)
    assert np.array_equal(a.params.W1, b.params.W1)
    assert not np.array_equal(a.params.W1, plain.params.W1)


def test_dropout_draws_from_its_own_stream_and_leaves_the_batch_order_alone(exercise):
    # A rate this small drops no unit of these batches (checked: no uniform draw is 0) and
    # its scale 1 / (1 - p) rounds to 1 in float32: if the masks came from the order's
    # generator, the batches would move and the weights with them.
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    tiny = train(config(dropout=1e-9), *args)
    plain = train(config(), *args)
    for name in ("W1", "b1", "W2", "b2"):
        assert np.array_equal(getattr(tiny.params, name), getattr(plain.params, name))


def test_evaluation_uses_the_whole_network(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    r = train(config(dropout=0.5, curves="full"), *args)
    full = evaluate(r.params, exercise.X_val, exercise.y_val, 0.01)
    assert r.final["val_accuracy"] == full.accuracy
    assert r.final["val_cost"] == pytest.approx(full.cost, rel=1e-5)


def test_members_with_their_own_dropout_rates_and_widths_equal_training_alone(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    runs = [
        config(lam=1e-3),
        config(lam=1e-2, dropout=0.3),
        config(lam=1e-2, dropout=0.5, hidden=30),
        config(lam=1e-3, dropout=0.3, hidden=80),
    ]
    packed = train_pack(runs, *args)
    for run, member in zip(runs, packed, strict=True):
        alone = train(run, *args)
        np.testing.assert_allclose(member.params.W1, alone.params.W1, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(member.params.W2, alone.params.W2, rtol=1e-4, atol=1e-6)
        assert member.final["val_accuracy"] == pytest.approx(alone.final["val_accuracy"], abs=3e-3)
    # the same width and rate: the same masks, like the same batches (other masks would
    # move the weights by far more than float32 rounding in the wide product)
    twins = train_pack([runs[1], runs[1]], *args)
    np.testing.assert_allclose(twins[0].params.W1, twins[1].params.W1, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan")])
def test_a_dropout_outside_0_1_is_refused_with_the_rule(p):
    with pytest.raises(ConfigError, match=r"dropout \(.*\) must be in \[0, 1\)"):
        TrainConfig(dropout=p)


def test_sweep_gradcheck_dropout_keeps_the_json_keys(capsys):
    from sweep.cli.main import main

    assert main(["gradcheck", "--dropout", "0.5", "--json"]) == 0
    errors = json.loads(capsys.readouterr().out)
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    assert all(v["max_rel"] <= TOLERANCE for v in errors.values())
    assert main(["gradcheck", "--dropout", "1"]) == 2
    assert "dropout (1.0) must be in [0, 1)" in capsys.readouterr().err
