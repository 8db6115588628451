"""Mini-batch gradient descent with cyclical learning rates, and its learning curves."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.errors import ConfigError, DivergedError
from core.network import (
    Evaluation,
    Params,
    cross_entropy,
    data_gradients,
    evaluate,
    forward,
    init_params,
)
from core.schedules import SCHEDULES, Schedule, eta

CLASSES = 10
DTYPES = ("float32", "float64")
# How the curves are recorded. "full": training and validation sets evaluated in full at
# every recording (the assignment's method). "cheap": the training curve is the running
# mean of the batches since the previous recording (free: they were computed anyway), the
# validation set is evaluated in full, and the last recording is exact on both full sets.
CURVES = ("full", "cheap")
CURVE_KEYS = (
    "step",
    "eta",
    "train_cost",
    "train_loss",
    "train_accuracy",
    "val_cost",
    "val_loss",
    "val_accuracy",
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides one training run (besides the data)."""

    lam: float = 0.01
    hidden: int = 50
    batch_size: int = 100
    eta_min: float = 1e-5
    eta_max: float = 1e-1
    n_s: int | str = "auto"
    cycles: int = 2
    schedule: str = "triangular"
    evals_per_cycle: int = 10
    dtype: str = "float32"
    seed: int = 0
    curves: str = "full"

    def __post_init__(self) -> None:
        if not (self.lam >= 0 and np.isfinite(self.lam)):
            raise ConfigError(f"lambda ({self.lam}) must be a finite number >= 0")
        if self.hidden < 1:
            raise ConfigError(f"hidden ({self.hidden}) must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size ({self.batch_size}) must be at least 1")
        if self.n_s != "auto" and (isinstance(self.n_s, str) or self.n_s <= 0):
            raise ConfigError(f"n_s ({self.n_s}) must be a positive number of steps or 'auto'")
        if self.cycles < 1:
            raise ConfigError(f"cycles ({self.cycles}) must be at least 1")
        if self.evals_per_cycle < 1:
            raise ConfigError(f"evals_per_cycle ({self.evals_per_cycle}) must be at least 1")
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}"
            )
        if self.curves not in CURVES:
            raise ConfigError(f"unknown curves {self.curves!r}; choose one of {', '.join(CURVES)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        # Fails early on eta_min >= eta_max with the schedule's own message.
        self.schedule_for(n_train=max(self.batch_size, 1))

    def step_size(self, n_train: int) -> int:
        """n_s in update steps: 'auto' is 2 * floor(n_train / batch_size)."""
        if self.n_s == "auto":
            return 2 * (n_train // self.batch_size)
        return int(self.n_s)

    def schedule_for(self, n_train: int) -> Schedule:
        return Schedule(self.schedule, self.eta_min, self.eta_max, max(self.step_size(n_train), 1))


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
class TrainResult:
    params: Params
    n_s: int
    steps: int
    curves: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    eval_seconds: float = 0.0
    val_correct: np.ndarray | None = None  # (n_val,) bool, from the last recording

    @property
    def final(self) -> dict[str, float]:
        return {key: values[-1] for key, values in self.curves.items()}


def eval_steps(n_s: int, cycles: int, evals_per_cycle: int) -> list[int]:
    """The update steps after which the curves are recorded; the last is the final step."""
    per_cycle = 2 * n_s
    return sorted(
        {round((i + 1) * per_cycle / evals_per_cycle) for i in range(cycles * evals_per_cycle)}
    )


def sgd_step(
    params: Params, X: np.ndarray, y: np.ndarray, lam: float, eta_t: float
) -> tuple[float, int]:
    """One update W <- W - eta * (dCE/dW + 2 lam W) on a batch; returns the batch's loss
    and how many of its images were classified correctly (before the update).

    The L2 term is applied as a decay factor (1 - 2 eta lam) so W1 is passed over twice,
    not five times.
    """
    H, P = forward(params, X)
    loss = cross_entropy(P, y)
    correct = int(np.count_nonzero(P.argmax(axis=1) == y))
    g = data_gradients(params, X, y, H, P, scale=eta_t)
    decay = 1.0 - 2.0 * eta_t * lam
    for w, gw in ((params.W1, g.W1), (params.W2, g.W2)):
        if decay != 1.0:
            w *= decay
        w -= gw
    for b, gb in ((params.b1, g.b1), (params.b2, g.b2)):
        b -= gb
    return loss, correct


def train(
    config: TrainConfig,
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    on_eval: Callable[[EvalPoint], None] | None = None,
    record: bool = True,
) -> TrainResult:
    """Train from scratch for ``cycles`` whole cycles (2 * n_s * cycles update steps).

    X (n, d) and X_val are normalised images of ``config.dtype``; y, y_val integer labels.
    The curves are recorded ``evals_per_cycle`` times per cycle (never if not ``record``:
    benchmarks time the updates alone that way). ``on_eval`` is called after each
    recording and may raise to stop training (the sweep prunes this way).
    Raises DivergedError when a batch's loss becomes non-finite.
    """
    n, d = X.shape
    if config.batch_size > n:
        raise ConfigError(
            f"batch_size ({config.batch_size}) is larger than the training set ({n} images)"
        )
    dtype = np.dtype(config.dtype)
    X = np.asarray(X, dtype=dtype)
    X_val = np.asarray(X_val, dtype=dtype)
    schedule = config.schedule_for(n)
    n_s = schedule.n_s
    total = 2 * n_s * config.cycles
    when = eval_steps(n_s, config.cycles, config.evals_per_cycle) if record else []

    rng = np.random.default_rng(config.seed)
    params = init_params(d, config.hidden, CLASSES, rng, dtype)
    batches = n // config.batch_size
    B = config.batch_size
    xb = np.empty((B, d), dtype=dtype)
    curves: dict[str, list[float]] = {key: [] for key in CURVE_KEYS}
    started = time.perf_counter()
    eval_seconds = 0.0
    order = rng.permutation(n)
    next_eval = 0
    since = _Running()  # the batches since the previous recording (cheap curves)
    val_correct = None
    # Divergence is detected from the loss below; overflow warnings would only be noise.
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(total):
            j = step % batches
            if j == 0 and step > 0:
                order = rng.permutation(n)
            idx = order[j * B : (j + 1) * B]
            np.take(X, idx, axis=0, out=xb)
            eta_t = eta(step, schedule)
            loss, correct = sgd_step(params, xb, y[idx], config.lam, eta_t)
            if not np.isfinite(loss):
                raise DivergedError(step + 1, loss)
            since.add(loss, correct, B)
            if next_eval < len(when) and step + 1 == when[next_eval]:
                t0 = time.perf_counter()
                last = next_eval == len(when) - 1
                train_part = None if config.curves == "full" or last else since
                point, val_correct = _record(
                    curves,
                    next_eval,
                    step + 1,
                    eta(step + 1, schedule),
                    params,
                    config.lam,
                    (X, y) if train_part is None else train_part,
                    X_val,
                    y_val,
                )
                since = _Running()
                eval_seconds += time.perf_counter() - t0
                next_eval += 1
                if not np.isfinite(point.train_cost):
                    raise DivergedError(step + 1, point.train_cost)
                if on_eval is not None:
                    on_eval(point)
    return TrainResult(
        params=params,
        n_s=n_s,
        steps=total,
        curves=curves,
        seconds=time.perf_counter() - started,
        eval_seconds=eval_seconds,
        val_correct=val_correct,
    )


@dataclass
class _Running:
    """Loss and correct count summed over batches (each batch's loss is a mean)."""

    loss: float = 0.0
    correct: int = 0
    images: int = 0

    def add(self, loss: float, correct: int, images: int) -> None:
        self.loss += loss * images
        self.correct += correct
        self.images += images


def _record(
    curves: dict[str, list[float]],
    index: int,
    step: int,
    eta_t: float,
    params: Params,
    lam: float,
    train_part: tuple[np.ndarray, np.ndarray] | _Running,
    X_val: np.ndarray,
    y_val: np.ndarray,
) -> tuple[EvalPoint, np.ndarray | None]:
    """One row of the curves, and which validation images were classified correctly.
    ``train_part`` is the training set (evaluated in full) or the running sums of the
    batches since the previous recording."""
    if isinstance(train_part, _Running):
        loss = train_part.loss / max(train_part.images, 1)
        tr = Evaluation(
            cost=loss + lam * params.sum_squared_weights(),
            loss=loss,
            accuracy=train_part.correct / max(train_part.images, 1),
        )
    else:
        tr = evaluate(params, *train_part, lam)
    va = evaluate(params, X_val, y_val, lam) if len(y_val) else tr
    point = EvalPoint(
        index=index,
        step=step,
        eta=eta_t,
        train_cost=tr.cost,
        train_loss=tr.loss,
        train_accuracy=tr.accuracy,
        val_cost=va.cost,
        val_loss=va.loss,
        val_accuracy=va.accuracy,
    )
    for key in CURVE_KEYS:
        curves[key].append(getattr(point, key))
    return point, va.correct
