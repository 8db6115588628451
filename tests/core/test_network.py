import numpy as np
import pytest

from core.gradcheck import check
from core.network import Params, backward, evaluate, init_params


def test_init_has_the_assignment_scales():
    p = init_params(3072, 50, 10, np.random.default_rng(0))
    assert p.W1.shape == (3072, 50) and p.W2.shape == (50, 10)
    assert p.W1.std() == pytest.approx(1 / np.sqrt(3072), rel=0.02)
    assert p.W2.std() == pytest.approx(1 / np.sqrt(50), rel=0.15)
    assert not p.b1.any() and not p.b2.any()


def test_cost_equals_independently_computed_cross_entropy_plus_l2():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((7, 12))
    y = rng.integers(0, 10, 7)
    p = init_params(12, 6, 10, rng, np.float64)
    lam = 0.3
    # Independent: plain loops, log of softmax via logsumexp.
    ce = 0.0
    for i in range(7):
        h = np.maximum(0, X[i] @ p.W1 + p.b1)
        s = h @ p.W2 + p.b2
        ce += -(s[y[i]] - np.log(np.sum(np.exp(s))))
    expected = ce / 7 + lam * (np.sum(p.W1**2) + np.sum(p.W2**2))
    cost, _ = backward(p, X, y, lam)
    assert cost == pytest.approx(expected, rel=1e-12)
    assert evaluate(p, X, y, lam).cost == pytest.approx(expected, rel=1e-12)


def test_softmax_survives_huge_scores():
    rng = np.random.default_rng(0)
    p = init_params(4, 3, 10, rng, np.float64)
    p.W2[:] *= 1e4
    ev = evaluate(p, rng.standard_normal((5, 4)) * 100, np.zeros(5, dtype=int), 0.0)
    assert np.isfinite(ev.loss)


def test_gradients_match_centred_differences():
    errors = check()
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    for name, e in errors.items():
        assert e.max_rel <= 1e-7, (name, e)


def test_gradient_check_catches_a_wrong_regulariser_gradient():
    # If the analytic L2 gradient were lam*W instead of 2*lam*W, the check must fail.
    def wrong(params, X, y, lam):
        cost, g = backward(params, X, y, lam)
        return cost, Params(g.W1 - lam * params.W1, g.b1, g.W2, g.b2)

    errors = check(lambdas=(0.1,), analytic=wrong)
    assert errors["W1"].max_rel > 1e-3
