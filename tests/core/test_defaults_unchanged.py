"""With the defaults (no dropout, no augmentation, width 50) training is bit-identical to v0.2.

The seed study's tied lambdas are told apart by float32 rounding (commit ea71353 measured a
change of rounding moving its final test accuracy from 51.81% to 51.51%), so the default
path must not change a single bit. `legacy_train` below is a frozen copy of v0.2's training
loop and pack step (core/training.py and core/pack.py at 8fcc429, recordings left out):
any extra draw from the seed's generator, a changed order of operations or another layout
of the weights makes these tests fail.
"""

import numpy as np
import pytest

from core import pack
from core.network import init_params
from core.schedules import eta
from core.training import CLASSES, TrainConfig, train, train_pack


def legacy_step(W1, b1, W2, b2, X, y, lams, etas):
    """core.pack.step at 8fcc429: W1 (d, K*m), b1 (K*m,), W2 (K, m, C), b2 (K, C)."""
    n = len(y)
    K, m = W2.shape[0], W2.shape[1]
    H = X @ W1
    H += b1
    np.maximum(H, 0, out=H)
    S = np.matmul(H.reshape(n, K, -1).transpose(1, 0, 2), W2)
    S += b2[:, None, :]
    S -= S.max(axis=2, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=2, keepdims=True)
    G = S
    G[:, np.arange(n), y] -= 1
    G *= (etas / n).astype(G.dtype)[:, None, None]
    Hk = H.reshape(n, K, m).transpose(1, 0, 2)
    gW2 = np.matmul(Hk.transpose(0, 2, 1), G)
    gb2 = G.sum(axis=1)
    gH = np.matmul(G, W2.transpose(0, 2, 1)).transpose(1, 0, 2).reshape(n, K * m)
    gH *= H > 0
    gW1 = X.T @ gH
    gb1 = gH.sum(axis=0)
    decay = (1.0 - 2.0 * etas * lams).astype(W1.dtype)
    if np.any(decay != 1):
        W1 *= decay[0] if K == 1 else np.repeat(decay, m)
        W2 *= decay[:, None, None]
    W1 -= gW1
    W2 -= gW2
    b1 -= gb1
    b2 -= gb2


def legacy_train(configs: list[TrainConfig], X, y):
    """core.training.train_pack at 8fcc429 without recordings: the weights at the end."""
    first = configs[0]
    n, d = X.shape
    dtype = np.dtype(first.dtype)
    X = np.asarray(X, dtype=dtype)
    schedules = [c.schedule_for(n) for c in configs]
    total = 2 * schedules[0].n_s * first.cycles
    rng = np.random.default_rng(first.seed)
    p = init_params(d, first.hidden, CLASSES, rng, dtype)
    K = len(configs)
    W1, b1 = np.tile(p.W1, (1, K)), np.tile(p.b1, K)
    W2, b2 = np.repeat(p.W2[None], K, axis=0), np.repeat(p.b2[None], K, axis=0)
    lams = np.array([c.lam for c in configs])
    B = first.batch_size
    batches = n // B
    xb = np.empty((B, d), dtype=dtype)
    order = rng.permutation(n)
    for step in range(total):
        batch = step % batches
        if batch == 0 and step > 0:
            order = rng.permutation(n)
        idx = order[batch * B : (batch + 1) * B]
        np.take(X, idx, axis=0, out=xb)
        etas = np.array([eta(step, s) for s in schedules])
        legacy_step(W1, b1, W2, b2, xb, y[idx], lams, etas)
    m = first.hidden
    return [(W1[:, k * m : (k + 1) * m], b1[k * m : (k + 1) * m], W2[k], b2[k]) for k in range(K)]


@pytest.fixture(scope="module")
def problem():
    """Three epochs' worth of a CIFAR-shaped problem (d = 3072), learnable labels."""
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((CLASSES, 3072))
    y = rng.integers(0, CLASSES, 400)
    X = (centres[y] + 2 * rng.standard_normal((400, 3072))).astype(np.float32)
    return X, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lams", [[0.01], [1e-4, 3e-3, 1e-2, 5e-2]], ids=["alone", "pack4"])
def test_default_training_is_bit_identical_to_v0_2(problem, dtype, lams):
    X, y = problem
    configs = [
        TrainConfig(lam=lam, n_s=6, cycles=2, batch_size=40, seed=5, dtype=dtype) for lam in lams
    ]
    want = legacy_train(configs, X, y)
    got = train_pack(configs, X, y, X[:0], y[:0], record=False)
    for (W1, b1, W2, b2), result in zip(want, got, strict=True):
        p = result.params
        for name, ref in (("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2)):
            assert np.array_equal(getattr(p, name), ref), name


def test_recording_the_curves_draws_nothing_from_the_training_streams(problem):
    X, y = problem
    config = TrainConfig(n_s=6, cycles=2, batch_size=40, seed=5, evals_per_cycle=3)
    recorded = train(config, X, y, X[:100], y[:100])
    plain = train(config, X, y, X[:0], y[:0], record=False)
    assert np.array_equal(recorded.params.W1, plain.params.W1)


def test_pack_evaluation_is_bit_identical_to_v0_2(problem):
    X, y = problem
    rng = np.random.default_rng(0)
    net = pack.Pack.of(init_params(3072, 50, CLASSES, rng), 3)
    net.W1 += rng.standard_normal(net.W1.shape).astype(np.float32) * 0.01
    lams = np.array([0.0, 0.1, 1.0])
    got = pack.evaluate(net, X, y, lams, block=128)
    # v0.2: ||W1||^2 per member by einsum over (d, K, m), ||W2||^2 over (K, m, C)
    w1 = np.einsum("dkm,dkm->k", *(net.W1.reshape(3072, 3, 50),) * 2, dtype=np.float64)
    W2 = np.stack([net.member(k).W2 for k in range(3)])
    w2 = np.einsum("kmc,kmc->k", W2, W2, dtype=np.float64)
    assert np.array_equal(net.sum_squared_weights(), w1 + w2)
    for k, e in enumerate(got):
        assert e.cost == e.loss + lams[k] * (w1 + w2)[k]
