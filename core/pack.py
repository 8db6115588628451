"""K copies of the two-layer network trained side by side: one wide first layer.

The members share their input batch, so their first layers sit side by side in one
d x M matrix (M = m_1 + ... + m_K, the members' hidden widths, which may differ) and the
two 3072-wide products of a step (X @ W1 and X.T @ dH) are one wide product each instead
of K thin ones, which runs much nearer the CPU's peak. The second layers are stacked in
one M x C matrix with member k in the same rows as its columns of W1; they, the softmax
and the updates are per member: batched over a leading K axis when the widths are equal,
one small product per member when they differ. Each member has its own lambda, learning
rate and dropout mask; member k alone gives the same numbers as `core.network` up to
float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.network import Evaluation, Params


@dataclass
class Pack:
    """The weights of K members of hidden widths ``widths`` (M = sum of them): W1 (d, M)
    with member k in columns ``cols(k)``, b1 (M,), W2 (M, C) with member k in the same rows,
    b2 (K, C). Updated in place by `step`."""

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    widths: tuple[int, ...]

    def __post_init__(self) -> None:
        self.widths = tuple(int(m) for m in self.widths)
        self.offsets = np.concatenate([[0], np.cumsum(self.widths, dtype=np.int64)])

    @property
    def size(self) -> int:
        return len(self.widths)

    @property
    def uniform(self) -> bool:
        """Whether every member has the same width (then the per-member parts are batched)."""
        return len(set(self.widths)) == 1

    def cols(self, k: int) -> slice:
        """Member k's columns of W1 and b1, and its rows of W2."""
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))

    @classmethod
    def stack(cls, members: list[Params]) -> Pack:
        """A pack of the given networks (copies), side by side in that order."""
        return cls(
            W1=np.concatenate([p.W1 for p in members], axis=1),
            b1=np.concatenate([p.b1 for p in members]),
            W2=np.concatenate([p.W2 for p in members], axis=0),
            b2=np.stack([p.b2 for p in members]),
            widths=tuple(p.W1.shape[1] for p in members),
        )

    @classmethod
    def of(cls, params: Params, k: int) -> Pack:
        """K members starting from the same weights."""
        return cls.stack([params] * k)

    def member(self, k: int) -> Params:
        """A copy of member k's weights as a single network's."""
        cols = self.cols(k)
        return Params(
            W1=self.W1[:, cols].copy(),
            b1=self.b1[cols].copy(),
            W2=self.W2[cols].copy(),
            b2=self.b2[k].copy(),
        )

    def keep(self, members: list[int]) -> Pack:
        """A pack of only the given members (copies: used when a member leaves)."""
        if not members:  # the last one left: an empty pack, on which training stops
            return Pack(self.W1[:, :0], self.b1[:0], self.W2[:0], self.b2[:0], widths=())
        return Pack.stack([self.member(k) for k in members])

    def by_member(self, H: np.ndarray) -> np.ndarray:
        """(n, M) activations as a (K, n, m) view, member first (equal widths only)."""
        return H.reshape(len(H), self.size, self.widths[0]).transpose(1, 0, 2)

    def W2_by_member(self) -> np.ndarray:
        """W2 as a (K, m, C) view (equal widths only)."""
        return self.W2.reshape(self.size, self.widths[0], -1)

    def sum_squared_weights(self) -> np.ndarray:
        """||W1||^2 + ||W2||^2 of each member, shape (K,)."""
        if self.uniform:
            d, K, m = self.W1.shape[0], self.size, self.widths[0]
            w1 = np.einsum("dkm,dkm->k", *(self.W1.reshape(d, K, m),) * 2, dtype=np.float64)
            W2 = self.W2_by_member()
            w2 = np.einsum("kmc,kmc->k", W2, W2, dtype=np.float64)
            return w1 + w2
        out = np.empty(self.size)
        for k in range(self.size):
            W1, W2 = self.W1[:, self.cols(k)], self.W2[self.cols(k)]
            w1 = np.einsum("dm,dm->", W1, W1, dtype=np.float64)
            out[k] = w1 + np.einsum("mc,mc->", W2, W2, dtype=np.float64)
        return out


def scores(pack: Pack, H: np.ndarray) -> np.ndarray:
    """Each member's class scores H_k @ W2_k + b2_k, shape (K, n, C), from H (n, M)."""
    if pack.uniform:
        S = np.matmul(pack.by_member(H), pack.W2_by_member())
    else:
        S = np.empty((pack.size, len(H), pack.W2.shape[1]), dtype=H.dtype)
        for k in range(pack.size):
            cols = pack.cols(k)
            np.matmul(H[:, cols], pack.W2[cols], out=S[k])
    S += pack.b2[:, None, :]
    return S


def forward(
    pack: Pack, X: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Hidden activations H (n, M) and probabilities P (K, n, C) of every member.

    ``mask`` (n, M), if given, multiplies the hidden activations after the ReLU (inverted
    dropout: entries 0 or 1 / (1 - p), see `core.network.dropout_mask`).
    """
    H = X @ pack.W1
    H += pack.b1
    np.maximum(H, 0, out=H)
    if mask is not None:
        H *= mask
    S = scores(pack, H)
    S -= S.max(axis=2, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=2, keepdims=True)
    return H, S


def losses(P: np.ndarray, y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Each member's mean cross-entropy, shape (K,) (float64). ``rows``: arange(len(y)),
    if the caller has it."""
    rows = np.arange(len(y)) if rows is None else rows
    picked = np.maximum(P[:, rows, y], np.finfo(P.dtype).tiny)
    return -np.log(picked, dtype=np.float64).mean(axis=1)


def second_layer_gradients(
    pack: Pack, H: np.ndarray, G: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """dW2 (M, C) = H_k.T @ G_k and dH (n, M) = G_k @ W2_k.T of every member, from H (n, M)
    and the output gradients G (K, n, C)."""
    n, M = H.shape
    if pack.uniform:
        gW2 = np.matmul(pack.by_member(H).transpose(0, 2, 1), G).reshape(M, -1)
        gH = np.matmul(G, pack.W2_by_member().transpose(0, 2, 1))
        return gW2, gH.transpose(1, 0, 2).reshape(n, M)
    gW2 = np.empty_like(pack.W2)
    gH = np.empty_like(H)
    for k in range(pack.size):
        cols = pack.cols(k)
        np.matmul(H[:, cols].T, G[k], out=gW2[cols])
        np.matmul(G[k], pack.W2[cols].T, out=gH[:, cols])
    return gW2, gH


def step(
    pack: Pack,
    X: np.ndarray,
    y: np.ndarray,
    lams: np.ndarray,
    etas: np.ndarray,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One update of every member, W <- W - eta_k * (dCE/dW + 2 lam_k W), on one batch.

    ``mask`` (n, M) is the batch's dropout multiplier (see `forward`), or None.
    Returns each member's batch loss and correct count (before the update), shape (K,).
    As everywhere in this module, the learning rate is folded into the output gradient so
    the wide dW1 comes out of its product already scaled, and L2 is a decay factor.
    """
    n = len(y)
    K = pack.size
    H, P = forward(pack, X, mask)
    rows = np.arange(n)
    loss = losses(P, y, rows)
    correct = np.count_nonzero(P.argmax(axis=2) == y, axis=1)
    G = P
    G[:, rows, y] -= 1
    G *= (etas / n).astype(G.dtype)[:, None, None]
    gW2, gH = second_layer_gradients(pack, H, G)
    gb2 = G.sum(axis=1)
    # H is zero where the ReLU is off or the unit was dropped: through a kept unit the
    # gradient is scaled by the mask's 1 / (1 - p) as the activation was.
    gH *= H > 0
    if mask is not None:
        gH *= mask
    gb1 = gH.sum(axis=0)
    decay = (1.0 - 2.0 * etas * lams).astype(pack.W1.dtype)
    per_unit = None
    if np.any(decay != 1):
        # One member (a single run): a scalar multiply, measured 2x faster than the row
        # vector's with two BLAS threads (0.09 against 0.2 ms per step on 3072 x 50).
        if K == 1:
            per_unit = decay[0]
            pack.W2 *= per_unit
        else:
            per_unit = np.repeat(decay, pack.widths)
            pack.W2 *= per_unit[:, None]
    update_first_layer(pack.W1, X, gH, per_unit)
    pack.W2 -= gW2
    pack.b1 -= gb1
    pack.b2 -= gb2
    return loss, correct


# Bytes of W1 per block in `update_first_layer`: 384 rows of a pack of five (250 float32
# columns), well inside a core's L2 cache. Blocks are cut on multiples of 384 rows, which
# make the same products as the whole one, bit for bit, with OpenBLAS's Haswell and
# SkylakeX kernels (measured for 50 to 400 columns and batches of 40 and 100, one and two
# threads; with the Haswell kernel blocks of 48, 96, 240 or 480 rows do not, and a pack of
# four's 480-row blocks failed tests/core/test_defaults_unchanged.py). A narrow W1 gets
# taller blocks: a single run's (50 columns) is cut in two, not eight, which with two BLAS
# threads made its update ~15% faster (small blocks split badly between threads). A wider
# W1 keeps 384-row blocks; past ~700 columns a block no longer fits in L2, and its decay
# and update cost what whole-matrix passes would.
UPDATE_BYTES = 384 * 250 * 4
TILE_ROWS = 384


def update_rows(W1: np.ndarray) -> int:
    """Rows of W1 per block in `update_first_layer` (see UPDATE_BYTES)."""
    rows = UPDATE_BYTES // max(1, W1.shape[1] * W1.itemsize)
    return max(TILE_ROWS, rows // TILE_ROWS * TILE_ROWS)


def update_first_layer(
    W1: np.ndarray, X: np.ndarray, gH: np.ndarray, decay: np.ndarray | None
) -> None:
    """W1 <- decay * W1 - X.T @ gH, in blocks of `update_rows` rows.

    Each block's gradient is computed, and W1's rows decayed and updated, while they are
    in the cache: one pass over W1 instead of three (write dW1, decay, subtract). On a
    pack of five this made the step 13-17% faster, with the same numbers.
    """
    Xt = X.T
    step = update_rows(W1)
    block = np.empty((min(step, len(W1)), W1.shape[1]), dtype=W1.dtype)
    for start in range(0, len(W1), step):
        rows = slice(start, start + step)
        grad = np.matmul(Xt[rows], gH, out=block[: len(W1[rows])])
        if decay is not None:
            W1[rows] *= decay
        W1[rows] -= grad


def evaluate(
    pack: Pack, X: np.ndarray, y: np.ndarray, lams: np.ndarray, block: int = 2048
) -> list[Evaluation]:
    """Each member's cost, loss and accuracy on a whole set (and which images it gets
    right), in blocks of rows as `core.network.evaluate`. No dropout: the full network."""
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
