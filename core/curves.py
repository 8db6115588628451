"""One recording of the learning curves: each member's row and its validation outcomes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core import pack
from core.network import Evaluation
from core.pack import Pack


@dataclass(frozen=True)
class EvalPoint:
    """One row of the learning curves, handed to the evaluation callback."""

    index: int  # 0-based evaluation number
    step: int  # update steps done so far
    eta: float
    train_cost: float
    train_loss: float
    train_accuracy: float
    val_cost: float
    val_loss: float
    val_accuracy: float


@dataclass
class Running:
    """Loss and correct count summed over batches (each batch's loss is a mean)."""

    loss: float = 0.0
    correct: int = 0
    images: int = 0

    def add(self, loss: float, correct: int, images: int) -> None:
        self.loss += loss * images
        self.correct += correct
        self.images += images


def curve_rows(
    net: Pack,
    index: int,
    step: int,
    etas: list[float],
    lams: np.ndarray,
    running: list[Running] | None,
    train_set: tuple[np.ndarray, np.ndarray],
    X_val: np.ndarray,
    y_val: np.ndarray,
) -> list[tuple[EvalPoint, np.ndarray | None]]:
    """One row of the curves of each member, and which validation images it classifies
    correctly. The training columns come from ``running`` (the batches since the previous
    recording) when given, else from the training set in full."""
    if running is None:
        tr = pack.evaluate(net, *train_set, lams)
    else:
        squares = net.sum_squared_weights()
        tr = []
        for j, r in enumerate(running):
            loss = r.loss / max(r.images, 1)
            accuracy = r.correct / max(r.images, 1)
            tr.append(Evaluation(cost=loss + lams[j] * squares[j], loss=loss, accuracy=accuracy))
    va = pack.evaluate(net, X_val, y_val, lams) if len(y_val) else tr
    rows = []
    for j in range(net.size):
        point = EvalPoint(
            index=index,
            step=step,
            eta=etas[j],
            train_cost=tr[j].cost,
            train_loss=tr[j].loss,
            train_accuracy=tr[j].accuracy,
            val_cost=va[j].cost,
            val_loss=va[j].loss,
            val_accuracy=va[j].accuracy,
        )
        rows.append((point, va[j].correct))
    return rows
