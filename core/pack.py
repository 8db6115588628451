"""K copies of the two-layer network trained side by side: one wide first layer.

The members share their input batch, so their first layers sit side by side in one
d x K*m matrix and the two 3072-wide products of a step (X @ W1 and X.T @ dH) are one wide
product each instead of K thin ones, which runs much nearer the CPU's peak. The second
layers, the softmax and the updates are per member, batched over a leading K axis. Each
member has its own lambda and learning rate; member k alone gives the same numbers as
`core.network` up to float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.network import Evaluation, Params


@dataclass
class Pack:
    """The weights of K members: W1 (d, K*m) with member k in columns k*m:(k+1)*m, b1 (K*m,),
    W2 (K, m, C), b2 (K, C). Updated in place by `step`."""

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray

    @property
    def size(self) -> int:
        return self.W2.shape[0]

    @classmethod
    def of(cls, params: Params, k: int) -> Pack:
        """K members starting from the same weights."""
        return cls(
            W1=np.tile(params.W1, (1, k)),
            b1=np.tile(params.b1, k),
            W2=np.repeat(params.W2[None], k, axis=0),
            b2=np.repeat(params.b2[None], k, axis=0),
        )

    def member(self, k: int) -> Params:
        """A copy of member k's weights as a single network's."""
        m = self.W2.shape[1]
        cols = slice(k * m, (k + 1) * m)
        return Params(
            W1=self.W1[:, cols].copy(),
            b1=self.b1[cols].copy(),
            W2=self.W2[k].copy(),
            b2=self.b2[k].copy(),
        )

    def keep(self, members: list[int]) -> Pack:
        """A pack of only the given members (copies: used when a member leaves)."""
        d, m = self.W1.shape[0], self.W2.shape[1]
        W1 = self.W1.reshape(d, self.size, m)[:, members, :].reshape(d, len(members) * m)
        b1 = self.b1.reshape(self.size, m)[members].reshape(-1)
        return Pack(W1=W1, b1=b1, W2=self.W2[members], b2=self.b2[members])

    def sum_squared_weights(self) -> np.ndarray:
        """||W1||^2 + ||W2||^2 of each member, shape (K,)."""
        d, m = self.W1.shape[0], self.W2.shape[1]
        w1 = np.einsum("dkm,dkm->k", *(self.W1.reshape(d, self.size, m),) * 2, dtype=np.float64)
        w2 = np.einsum("kmc,kmc->k", self.W2, self.W2, dtype=np.float64)
        return w1 + w2


def forward(pack: Pack, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden activations H (n, K*m) and probabilities P (K, n, C) of every member."""
    n = len(X)
    H = X @ pack.W1
    H += pack.b1
    np.maximum(H, 0, out=H)
    S = np.matmul(H.reshape(n, pack.size, -1).transpose(1, 0, 2), pack.W2)
    S += pack.b2[:, None, :]
    S -= S.max(axis=2, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=2, keepdims=True)
    return H, S


def losses(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each member's mean cross-entropy, shape (K,) (float64)."""
    picked = np.maximum(P[:, np.arange(len(y)), y], np.finfo(P.dtype).tiny)
    return -np.log(picked, dtype=np.float64).mean(axis=1)


def step(
    pack: Pack, X: np.ndarray, y: np.ndarray, lams: np.ndarray, etas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One update of every member, W <- W - eta_k * (dCE/dW + 2 lam_k W), on one batch.

    Returns each member's batch loss and correct count (before the update), shape (K,).
    As in `core.training.sgd_step`, the learning rate is folded into the output gradient so
    the wide dW1 comes out of its product already scaled, and L2 is a decay factor.
    """
    n = len(y)
    K, m = pack.size, pack.W2.shape[1]
    H, P = forward(pack, X)
    loss = losses(P, y)
    correct = np.count_nonzero(P.argmax(axis=2) == y, axis=1)
    G = P
    G[:, np.arange(n), y] -= 1
    G *= (etas / n).astype(G.dtype)[:, None, None]
    Hk = H.reshape(n, K, m).transpose(1, 0, 2)
    gW2 = np.matmul(Hk.transpose(0, 2, 1), G)
    gb2 = G.sum(axis=1)
    gH = np.matmul(G, pack.W2.transpose(0, 2, 1)).transpose(1, 0, 2).reshape(n, K * m)
    gH *= H > 0
    gW1 = X.T @ gH
    gb1 = gH.sum(axis=0)
    decay = (1.0 - 2.0 * etas * lams).astype(pack.W1.dtype)
    if np.any(decay != 1):
        # One member (a single run): a scalar multiply, measured 2x faster than the row
        # vector's with two BLAS threads (0.09 against 0.2 ms per step on 3072 x 50).
        pack.W1 *= decay[0] if K == 1 else np.repeat(decay, m)
        pack.W2 *= decay[:, None, None]
    pack.W1 -= gW1
    pack.W2 -= gW2
    pack.b1 -= gb1
    pack.b2 -= gb2
    return loss, correct


def evaluate(
    pack: Pack, X: np.ndarray, y: np.ndarray, lams: np.ndarray, block: int = 2048
) -> list[Evaluation]:
    """Each member's cost, loss and accuracy on a whole set (and which images it gets
    right), in blocks of rows as `core.network.evaluate`."""
    n = len(y)
    loss_sum = np.zeros(pack.size)
    correct = np.empty((pack.size, n), dtype=bool)
    for start in range(0, n, block):
        _, P = forward(pack, X[start : start + block])
        yb = y[start : start + block]
        loss_sum += losses(P, yb) * len(yb)
        np.equal(P.argmax(axis=2), yb, out=correct[:, start : start + block])
    loss = loss_sum / max(n, 1)
    cost = loss + lams * pack.sum_squared_weights()
    return [
        Evaluation(
            cost=float(cost[k]),
            loss=float(loss[k]),
            accuracy=int(np.count_nonzero(correct[k])) / max(n, 1),
            correct=correct[k],
        )
        for k in range(pack.size)
    ]
