"""Packed training (core.pack, core.training.train_pack): members match training alone."""

import dataclasses

import numpy as np
import pytest

from core import pack
from core.data import load_split
from core.errors import ConfigError, DivergedError
from core.network import backward, init_params
from core.schedules import eta
from core.streams import ORDER_WIDTH
from core.training import CLASSES, TrainConfig, train, train_pack

LAMS = [1e-4, 3e-3, 1e-2, 5e-2]
WIDTHS = [20, 50, 137, 64]  # a mixed pack's, one per lambda


@pytest.fixture(scope="module")
def exercise(cifar_dir):
    return load_split("exercise", cifar_dir)


def reference(config: TrainConfig, X, y):
    """Plain mini-batch gradient descent written from the formulas (network.backward, whose
    gradients are checked numerically): W <- W - eta * dJ/dW, the same seed, init and order
    (the seed's first draws initialise the network; the order comes after the draws of a
    width-50 initialisation, whatever the width)."""
    n, d = X.shape
    schedule = config.schedule_for(n)
    p = init_params(d, config.hidden, CLASSES, np.random.default_rng(config.seed), np.float64)
    rng = np.random.default_rng(config.seed)
    init_params(d, ORDER_WIDTH, CLASSES, rng)
    order = rng.permutation(n)
    batches = n // config.batch_size
    for step in range(2 * schedule.n_s * config.cycles):
        if step % batches == 0 and step > 0:
            order = rng.permutation(n)
        idx = order[(step % batches) * config.batch_size :][: config.batch_size]
        _, g = backward(p, X[idx].astype(np.float64), y[idx], config.lam)
        for name in ("W1", "b1", "W2", "b2"):
            getattr(p, name)[...] -= eta(step, schedule) * getattr(g, name)
    return p


def configs(**fixed):
    return [TrainConfig(lam=lam, **fixed) for lam in LAMS]


def test_each_member_of_a_pack_of_4_has_the_weights_of_training_alone_after_50_steps(exercise):
    X, y = exercise.X_train, exercise.y_train
    fixed = dict(n_s=25, cycles=1, batch_size=100, seed=3)  # 50 update steps
    packed = train_pack(configs(**fixed), X, y, X[:0], y[:0], record=False)
    for config, member in zip(configs(**fixed), packed, strict=True):
        alone = train(config, X, y, X[:0], y[:0], record=False)
        ref = reference(config, X, y)
        for name in ("W1", "b1", "W2", "b2"):
            got = getattr(member.params, name)
            scale = np.abs(getattr(ref, name)).max()
            np.testing.assert_allclose(got, getattr(alone.params, name), rtol=1e-4, atol=1e-6)
            # float32 against float64 formulas: equal to rounding, relative to the weights
            np.testing.assert_allclose(got, getattr(ref, name), rtol=1e-3, atol=1e-4 * scale)


def test_a_full_packed_run_ends_at_the_accuracy_of_each_run_alone(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    fixed = dict(n_s=60, cycles=2, seed=5, evals_per_cycle=4, curves="cheap")
    packed = train_pack(configs(**fixed), *args)
    for config, member in zip(configs(**fixed), packed, strict=True):
        alone = train(config, *args)
        assert abs(member.final["val_accuracy"] - alone.final["val_accuracy"]) <= 0.003
        assert member.curves["step"] == alone.curves["step"]
        np.testing.assert_allclose(member.curves["val_loss"], alone.curves["val_loss"], rtol=1e-3)
        assert np.array_equal(member.val_correct, alone.val_correct) or (
            np.mean(member.val_correct != alone.val_correct) <= 0.003
        )


def test_a_diverging_member_leaves_the_pack_and_the_others_finish_unchanged(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    fixed = dict(n_s=20, cycles=1, seed=2, evals_per_cycle=2, eta_max=0.1)
    runs = configs(**fixed)
    runs[1] = dataclasses.replace(runs[1], lam=1e3)  # decay 1 - 2 eta lam far below -1
    out = train_pack(runs, *args)
    assert isinstance(out[1], DivergedError)
    for k in (0, 2, 3):
        alone = train(runs[k], *args)
        np.testing.assert_allclose(out[k].params.W1, alone.params.W1, rtol=1e-4, atol=1e-6)
        assert out[k].final["val_accuracy"] == pytest.approx(alone.final["val_accuracy"], abs=3e-3)


def test_a_diverging_member_leaves_the_cheap_training_curves_of_the_others_alone(exercise):
    # The cheap training curve sums each member's batch losses: the step where member 1
    # diverged must not add its non-finite loss to the member after it (which then
    # "diverged" at the next recording).
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    fixed = dict(n_s=20, cycles=1, seed=2, evals_per_cycle=2, eta_max=0.1, curves="cheap")
    runs = configs(**fixed)
    runs[1] = dataclasses.replace(runs[1], lam=1e3)
    out = train_pack(runs, *args)
    assert isinstance(out[1], DivergedError)
    for k in (0, 2, 3):
        alone = train(runs[k], *args)
        assert not isinstance(out[k], Exception), out[k]
        np.testing.assert_allclose(
            out[k].curves["train_loss"], alone.curves["train_loss"], rtol=1e-4
        )


def test_a_member_leaving_is_told_as_it_leaves_while_the_others_train_on(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    runs = configs(n_s=20, cycles=1, seed=2, evals_per_cycle=4, eta_max=0.1)
    runs[1] = dataclasses.replace(runs[1], lam=1e3)
    recorded, left = [], []
    out = train_pack(
        runs,
        *args,
        on_eval=lambda k, point: recorded.append(point.step),
        on_leave=lambda k, exc: left.append((k, exc, len(recorded))),
    )
    ((k, exc, recordings_then),) = left
    assert k == 1 and exc is out[1] and isinstance(exc, DivergedError)
    assert recordings_then < len(recorded)  # told before the pack's end, not with it


def test_when_every_member_of_a_mixed_pack_diverges_each_gets_its_error(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    runs = [TrainConfig(lam=1e3, hidden=m, n_s=10, cycles=1) for m in WIDTHS]
    out = train_pack(runs, *args)
    assert all(isinstance(o, DivergedError) for o in out)


def test_a_member_stopped_by_its_callback_leaves_and_the_others_go_on(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    runs = configs(n_s=20, cycles=1, seed=2, evals_per_cycle=4)
    seen: dict[int, list[int]] = {}

    class Stop(Exception):
        pass

    def on_eval(k, point):
        seen.setdefault(k, []).append(point.step)
        if k == 2 and point.index == 1:
            raise Stop("pruned")

    out = train_pack(runs, *args, on_eval=on_eval)
    assert isinstance(out[2], Stop)
    assert seen[2] == [10, 20]  # no recording after it left
    for k in (0, 1, 3):
        assert seen[k] == [10, 20, 30, 40] and out[k].steps == 40


def test_members_must_share_everything_but_lambda_the_schedule_and_the_width(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    with pytest.raises(ConfigError, match="must share"):
        train_pack([TrainConfig(batch_size=50), TrainConfig(batch_size=20)], *args)
    with pytest.raises(ConfigError, match="must share"):
        train_pack([TrainConfig(seed=1), TrainConfig(seed=2)], *args)
    # the learning rate may differ: each member follows its own schedule
    a, b = TrainConfig(n_s=5, cycles=1, eta_max=0.05), TrainConfig(n_s=5, cycles=1)
    out = train_pack([a, b], *args)
    assert out[0].curves["eta"] != out[1].curves["eta"]
    assert out[1].curves["eta"] == train(b, *args).curves["eta"]


def test_pack_evaluation_equals_each_members_own(exercise):
    rng = np.random.default_rng(0)
    params = [init_params(exercise.X_train.shape[1], 8, CLASSES, rng) for _ in range(3)]
    net = pack.Pack.of(params[0], 3)
    for k, p in enumerate(params):  # three different networks in one pack
        net.W1[:, k * 8 : (k + 1) * 8] = p.W1
        net.W2[net.cols(k)] = p.W2
    lams = np.array([0.0, 0.1, 1.0])
    got = pack.evaluate(net, exercise.X_val, exercise.y_val, lams, block=7)
    from core.network import evaluate

    for k, p in enumerate(params):
        want = evaluate(p, exercise.X_val, exercise.y_val, lams[k])
        assert got[k].accuracy == want.accuracy
        assert got[k].cost == pytest.approx(want.cost, rel=1e-5)
        assert np.array_equal(got[k].correct, want.correct)
        assert np.array_equal(net.member(k).W1, p.W1)


def test_a_mixed_width_pack_gives_each_member_the_weights_of_training_alone(exercise):
    X, y = exercise.X_train, exercise.y_train
    fixed = dict(n_s=15, cycles=1, batch_size=100, seed=3)  # 30 update steps
    runs = [TrainConfig(lam=lam, hidden=m, **fixed) for lam, m in zip(LAMS, WIDTHS, strict=True)]
    packed = train_pack(runs, X, y, X[:0], y[:0], record=False)
    for config, member in zip(runs, packed, strict=True):
        alone = train(config, X, y, X[:0], y[:0], record=False)
        ref = reference(config, X, y)
        assert member.params.W1.shape == (X.shape[1], config.hidden)
        for name in ("W1", "b1", "W2", "b2"):
            got = getattr(member.params, name)
            scale = np.abs(getattr(ref, name)).max()
            np.testing.assert_allclose(got, getattr(alone.params, name), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(got, getattr(ref, name), rtol=1e-3, atol=1e-4 * scale)


def test_a_mixed_width_pack_in_float64_equals_training_alone_tightly(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    fixed = dict(n_s=10, cycles=1, seed=4, dtype="float64", evals_per_cycle=2)
    runs = [TrainConfig(lam=lam, hidden=m, **fixed) for lam, m in zip(LAMS, WIDTHS, strict=True)]
    for config, member in zip(runs, train_pack(runs, *args), strict=True):
        alone = train(config, *args)
        for name in ("W1", "b1", "W2", "b2"):
            got, want = getattr(member.params, name), getattr(alone.params, name)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(member.curves["val_cost"], alone.curves["val_cost"], rtol=1e-12)
        assert member.curves["val_accuracy"] == alone.curves["val_accuracy"]


def test_a_run_of_any_width_starts_from_the_seeds_first_draws_as_in_v0_2(exercise):
    X, y = exercise.X_train, exercise.y_train
    for m in (20, ORDER_WIDTH, 300):
        # a learning rate so small that the weights cannot move: what is left is the init
        config = TrainConfig(hidden=m, seed=9, n_s=1, cycles=1, eta_min=1e-30, eta_max=2e-30)
        start = train(config, X, y, X[:0], y[:0], record=False)
        want = init_params(X.shape[1], m, CLASSES, np.random.default_rng(9))
        assert np.array_equal(start.params.W1, want.W1)
        assert np.array_equal(start.params.W2, want.W2)


def test_a_diverging_member_of_another_width_leaves_a_mixed_pack(exercise):
    args = (exercise.X_train, exercise.y_train, exercise.X_val, exercise.y_val)
    fixed = dict(n_s=10, cycles=1, seed=2, evals_per_cycle=2)
    runs = [TrainConfig(lam=lam, hidden=m, **fixed) for lam, m in zip(LAMS, WIDTHS, strict=True)]
    runs[2] = dataclasses.replace(runs[2], lam=1e3)
    out = train_pack(runs, *args)
    assert isinstance(out[2], DivergedError)
    for k in (0, 1, 3):
        alone = train(runs[k], *args)
        np.testing.assert_allclose(out[k].params.W1, alone.params.W1, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out[k].params.W2, alone.params.W2, rtol=1e-4, atol=1e-6)


def test_width_2000_trains_alone_and_beside_width_50(exercise):
    X, y = exercise.X_train, exercise.y_train
    fixed = dict(n_s=2, cycles=1, batch_size=100, seed=1)  # 4 update steps
    wide, thin = TrainConfig(hidden=2000, **fixed), TrainConfig(hidden=50, **fixed)
    alone = train(wide, X, y, X[:0], y[:0], record=False)
    packed = train_pack([thin, wide], X, y, X[:0], y[:0], record=False)
    assert alone.params.W1.shape == (X.shape[1], 2000) and alone.params.W2.shape == (2000, 10)
    assert np.isfinite(alone.params.W1).all()
    np.testing.assert_allclose(packed[1].params.W1, alone.params.W1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(packed[1].params.W2, alone.params.W2, rtol=1e-4, atol=1e-6)


def test_mixed_pack_evaluation_and_keep_follow_each_members_columns(exercise):
    rng = np.random.default_rng(0)
    params = [init_params(exercise.X_train.shape[1], m, CLASSES, rng) for m in (8, 3, 12)]
    for p in params:
        p.b1[:] = rng.normal(0, 0.1, p.b1.shape)
        p.b2[:] = rng.normal(0, 0.1, p.b2.shape)
    net = pack.Pack.stack(params)
    assert net.W1.shape == (3072, 23) and net.W2.shape == (23, 10) and net.widths == (8, 3, 12)
    lams = np.array([0.0, 0.1, 1.0])
    got = pack.evaluate(net, exercise.X_val, exercise.y_val, lams, block=7)
    from core.network import evaluate

    for k, p in enumerate(params):
        want = evaluate(p, exercise.X_val, exercise.y_val, lams[k])
        assert got[k].accuracy == want.accuracy
        assert got[k].cost == pytest.approx(want.cost, rel=1e-5)
        for name in ("W1", "b1", "W2", "b2"):
            assert np.array_equal(getattr(net.member(k), name), getattr(p, name))
    kept = net.keep([2, 0])
    assert kept.widths == (12, 8)
    assert np.array_equal(kept.member(0).W2, params[2].W2)
    assert np.array_equal(kept.member(1).W1, params[0].W1)


@pytest.mark.parametrize("d", [3072, 1000, 100])
def test_the_blocked_first_layer_update_is_the_decayed_weights_minus_the_gradient(d):
    # 1000 and 100 rows are not whole blocks: the last one is shorter, or the only one.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, d)).astype(np.float32)
    gH = rng.standard_normal((40, 130)).astype(np.float32) * 1e-3
    W1 = rng.standard_normal((d, 130)).astype(np.float32)
    decay = (1 - rng.random(130) * 1e-2).astype(np.float32)
    want = W1 * decay - (X.T @ gH)
    got = W1.copy()
    pack.update_first_layer(got, X, gH, decay)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    plain = W1.copy()
    pack.update_first_layer(plain, X, gH, None)  # no decay (lambda 0 or eta 0)
    np.testing.assert_allclose(plain, W1 - X.T @ gH, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("batch", [40, 100])
@pytest.mark.parametrize("width", [50, 200, 250, 400])
def test_the_blocked_first_layer_update_is_bit_identical_to_the_whole_product(width, batch):
    # Default training must stay v0.2's bit for bit (test_defaults_unchanged.py): the blocks
    # may change how fast the backward product is made, never a bit of it. Blocks of 480
    # rows (a pack of four, when they were cut on multiples of 48) changed it with OpenBLAS's
    # Haswell kernel, the one CI's machines run.
    rng = np.random.default_rng(width + batch)
    X = rng.standard_normal((batch, 3072)).astype(np.float32)
    gH = rng.standard_normal((batch, width)).astype(np.float32) * 1e-3
    W1 = rng.standard_normal((3072, width)).astype(np.float32)
    decay = (1 - rng.random(width) * 1e-2).astype(np.float32)
    want = W1 * decay
    want -= X.T @ gH
    got = W1.copy()
    pack.update_first_layer(got, X, gH, decay)
    assert np.array_equal(got, want)
