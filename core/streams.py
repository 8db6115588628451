"""The random numbers of a training run: each kind from its own stream of the seed.

- Initial weights: the first draws of ``default_rng(seed)``, as in v0.2, at any width.
- Batch order: ``default_rng(seed)`` past the draws of a width-50 initialisation
  (ORDER_WIDTH), one permutation per epoch. v0.2 drew the order from the generator that
  had just drawn the weights, so it depended on the width; this way runs of every width
  see the same batches (and can share a pack), and width 50 stays bit-identical to v0.2
  (the seed study). At another width the initial weights are v0.2's, the order is new.
- Dropout masks and augmentation: children of the seed (SeedSequence spawn keys), so
  they never move the batch order, and a run without them draws exactly what v0.2 drew.
  The pack shares one augmentation stream (its members share the batch); each member
  with dropout has its own copy of the dropout stream, as it would alone, so members of
  one width and rate also share their masks.
"""

from __future__ import annotations

import numpy as np

from core.augment import Augmenter
from core.network import CLASSES, dropout_mask, init_params
from core.pack import Pack

ORDER_WIDTH = 50
DROPOUT_STREAM = 1
AUGMENT_STREAM = 2


def stream(seed: int, key: int) -> np.random.Generator:
    """The seed's child generator number ``key`` (DROPOUT_STREAM, AUGMENT_STREAM)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def initial_pack(
    seed: int, d: int, widths: list[int], dtype: np.dtype
) -> tuple[Pack, np.random.Generator]:
    """Members of the given widths, each initialised as it would be alone, and the
    generator of the epochs' orders (`order_stream`). When a member has width
    ORDER_WIDTH, its initialisation made the draws that the order stream skips: its
    generator is that stream, and the ~1.5 ms of drawing them again is saved."""
    inits, order = {}, None
    for m in dict.fromkeys(widths):
        rng = np.random.default_rng(seed)
        inits[m] = init_params(d, m, CLASSES, rng, dtype)
        if m == ORDER_WIDTH:
            order = rng
    if order is None:
        order = order_stream(seed, d, dtype)
    return Pack.stack([inits[m] for m in widths]), order


def order_stream(seed: int, d: int, dtype: np.dtype) -> np.random.Generator:
    """The generator of the epochs' orders (see ORDER_WIDTH in the module docstring)."""
    rng = np.random.default_rng(seed)
    init_params(d, ORDER_WIDTH, CLASSES, rng, dtype)  # discarded: only its draws matter
    return rng


class Draws:
    """What a packed run draws as it goes: the epochs' orders, the batches (augmented or
    not) and the members' dropout masks. X (n, d) is the training set; ``order``, the
    seed's order stream if `initial_pack` gave it (else it is drawn here)."""

    def __init__(
        self,
        X: np.ndarray,
        seed: int,
        flip: bool,
        translate: int,
        dropouts: list[float],
        order: np.random.Generator | None = None,
    ):
        self.X = X
        self.order = order_stream(seed, X.shape[1], X.dtype) if order is None else order
        self.augment = None
        if flip or translate:
            self.augment = Augmenter(flip, translate, stream(seed, AUGMENT_STREAM))
            # gathered pixel by pixel from the flat images: a view when X is C-ordered (a
            # split is), else one copy here rather than one per step
            self.X_flat = np.ascontiguousarray(X).reshape(-1)
        self.rates = dropouts
        self.drops = {k: stream(seed, DROPOUT_STREAM) for k, p in enumerate(dropouts) if p > 0}

    def permutation(self) -> np.ndarray:
        return self.order.permutation(len(self.X))

    def batch(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Images ``rows`` of X into ``out`` (n, d): one batch for the whole pack."""
        if self.augment is None:
            # mode="clip": the rows are a permutation's, always in range. With the default
            # mode="raise", numpy gathers into a temporary and then copies it into ``out``
            # (numpy.take's documentation): 300 against 150 us a batch of 100 images here.
            return np.take(self.X, rows, axis=0, out=out, mode="clip")
        return self.augment.batch(self.X_flat, rows, out)

    def mask(self, net: Pack, live: list[int], n: int) -> np.ndarray | None:
        """One step's dropout multiplier (n, M) of the members still in the pack (original
        indices ``live``; ones for those without dropout), or None if none has dropout."""
        if not self.drops or not any(k in self.drops for k in live):
            return None
        mask = np.ones((n, net.W1.shape[1]), dtype=net.W1.dtype)
        for j, k in enumerate(live):
            if k in self.drops:
                shape = (n, net.widths[j])
                mask[:, net.cols(j)] = dropout_mask(self.drops[k], shape, self.rates[k], mask.dtype)
        return mask
