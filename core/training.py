"""Mini-batch gradient descent with cyclical learning rates, and its learning curves."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core import augment, pack
from core.curves import EvalPoint, Running, curve_rows
from core.errors import ConfigError, DivergedError
from core.network import CLASSES, Evaluation, Params  # noqa: F401 (CLASSES: v0.2's home)
from core.schedules import SCHEDULES, Schedule, eta
from core.streams import Draws, initial_pack

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
    dropout: float = 0.0  # fraction of hidden units dropped in each training step
    flip: bool = False  # flip training images left-right with probability 1/2
    translate: int = 0  # shift training images by up to this many pixels in x and y

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
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout ({self.dropout}) must be in [0, 1)")
        augment.check(self.flip, self.translate)
        # Fails early on eta_min >= eta_max with the schedule's own message.
        self.schedule_for(n_train=max(self.batch_size, 1))

    def step_size(self, n_train: int) -> int:
        """n_s in update steps: 'auto' is 2 * floor(n_train / batch_size)."""
        if self.n_s == "auto":
            return 2 * (n_train // self.batch_size)
        return int(self.n_s)

    def schedule_for(self, n_train: int) -> Schedule:
        return Schedule(self.schedule, self.eta_min, self.eta_max, max(self.step_size(n_train), 1))


@dataclass
class TrainResult:
    params: Params
    n_s: int
    steps: int
    curves: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    eval_seconds: float = 0.0  # recording the curves, the last recording included
    final_eval_seconds: float = 0.0  # the last recording: the final values (exact)
    val_correct: np.ndarray | None = None  # (n_val,) bool, from the last recording

    @property
    def final(self) -> dict[str, float]:
        return {key: values[-1] for key, values in self.curves.items()}


def eval_steps(n_s: int, cycles: int, evals_per_cycle: int) -> list[int]:
    """The update steps after which the curves are recorded; the last is the final step.
    More recordings than steps give one after each step (none before the first: a step 0
    would never come, and with it no recording at all)."""
    per_cycle = 2 * n_s
    return sorted(
        {
            max(1, round((i + 1) * per_cycle / evals_per_cycle))
            for i in range(cycles * evals_per_cycle)
        }
    )


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
    recording and may raise to stop training (the sweep prunes this way); the exception
    propagates. Raises DivergedError when a batch's loss becomes non-finite.
    """
    callback = None if on_eval is None else (lambda _k, point: on_eval(point))
    (outcome,) = train_pack([config], X, y, X_val, y_val, on_eval=callback, record=record)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


# What decides the batches (and their augmentation) and the recordings: members of a pack
# share it; lambda, the learning-rate schedule, the width and dropout may differ.
SHARED = ("batch_size", "n_s", "cycles", "evals_per_cycle", "dtype", "seed", "curves")
SHARED += ("flip", "translate")


def packable(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether two runs can be trained in one pack (same data order and recordings)."""
    return all(getattr(a, key) == getattr(b, key) for key in SHARED)


def train_pack(
    configs: list[TrainConfig],
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    on_eval: Callable[[int, EvalPoint], None] | None = None,
    on_record: Callable[[list[tuple[int, EvalPoint, np.ndarray]]], None] | None = None,
    on_leave: Callable[[int, Exception], None] | None = None,
    record: bool = True,
) -> list[TrainResult | Exception]:
    """Train K runs that differ only in lambda, schedule, width and dropout side by side
    (`core.pack`): the same seed gives them the same batches (`core.streams`).

    Returns one outcome per config: its TrainResult, or the exception that made it leave
    the pack early: DivergedError when its loss became non-finite, or whatever
    ``on_eval(k, point)`` raised for it (a pruned run). The others go on; ``seconds`` of
    every result is the pack's wall time. ``on_record(rows)``, if given, gets every live
    member's (k, point, validation outcomes) at each recording before ``on_eval`` judges
    any of them, so a pruner comparing members with each other sees them all.
    ``on_leave(k, exc)``, if given, is called as member k leaves the pack with its
    exception, while the others train on (a sweep records its end at once).
    """
    first = configs[0]
    for other in configs[1:]:
        if not packable(first, other):
            raise ConfigError(f"runs of one pack must share {', '.join(SHARED)}")
    n, d = X.shape
    if first.batch_size > n:
        raise ConfigError(
            f"batch_size ({first.batch_size}) is larger than the training set ({n} images)"
        )
    dtype = np.dtype(first.dtype)
    X = np.asarray(X, dtype=dtype)
    X_val = np.asarray(X_val, dtype=dtype)
    schedules = [c.schedule_for(n) for c in configs]
    n_s = schedules[0].n_s
    total = 2 * n_s * first.cycles
    when = eval_steps(n_s, first.cycles, first.evals_per_cycle) if record else []

    net, order_rng = initial_pack(first.seed, d, [c.hidden for c in configs], dtype)
    dropouts = [c.dropout for c in configs]
    draws = Draws(X, first.seed, first.flip, first.translate, dropouts, order_rng)
    live = list(range(len(configs)))  # the original index of each member still in the pack
    outcomes: list[TrainResult | Exception | None] = [None] * len(configs)
    curves = [{key: [] for key in CURVE_KEYS} for _ in configs]
    lams = np.array([c.lam for c in configs])
    batches = n // first.batch_size
    B = first.batch_size
    xb = np.empty((B, d), dtype=dtype)
    started = time.perf_counter()
    eval_seconds = final_eval_seconds = 0.0
    order = draws.permutation()
    next_eval = 0
    since = [Running() for _ in configs]  # the batches since the previous recording
    val_correct: list[np.ndarray | None] = [None] * len(configs)  # from the last recording

    def leave(gone: dict[int, Exception]) -> None:
        nonlocal net, live
        stay = [j for j, k in enumerate(live) if k not in gone]
        net = net.keep(stay)
        live = [live[j] for j in stay]
        for k, exc in gone.items():
            outcomes[k] = exc
            if on_leave is not None:
                on_leave(k, exc)

    # Divergence is detected from the loss below; overflow warnings would only be noise.
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(total):
            if not live:
                break
            batch = step % batches
            if batch == 0 and step > 0:
                order = draws.permutation()
            idx = order[batch * B : (batch + 1) * B]
            draws.batch(idx, out=xb)
            etas = np.array([eta(step, schedules[k]) for k in live])
            mask = draws.mask(net, live, B)
            loss, correct = pack.step(net, xb, y[idx], lams[live], etas, mask)
            # As Python numbers at once: one call, not two numpy scalars per member.
            step_losses, step_correct = loss.tolist(), correct.tolist()
            for k, member_loss, member_correct in zip(live, step_losses, step_correct, strict=True):
                since[k].add(member_loss, member_correct, B)
            if not all(map(math.isfinite, step_losses)):
                leave(
                    {
                        k: DivergedError(step + 1, step_losses[j])
                        for j, k in enumerate(live)
                        if not math.isfinite(step_losses[j])
                    }
                )
            if next_eval < len(when) and step + 1 == when[next_eval] and live:
                t0 = time.perf_counter()
                last = next_eval == len(when) - 1
                cheap = first.curves == "cheap" and not last
                rows = curve_rows(
                    net,
                    next_eval,
                    step + 1,
                    [eta(step + 1, schedules[k]) for k in live],
                    lams[live],
                    [since[k] for k in live] if cheap else None,
                    (X, y),
                    X_val,
                    y_val,
                )
                since = [Running() for _ in configs]
                eval_seconds += time.perf_counter() - t0
                final_eval_seconds = time.perf_counter() - t0 if last else 0.0
                next_eval += 1
                if on_record is not None:
                    on_record([(k, p, c) for k, (p, c) in zip(live, rows, strict=True)])
                gone: dict[int, Exception] = {}
                for k, (point, correct) in zip(live, rows, strict=True):
                    for key in CURVE_KEYS:
                        curves[k][key].append(getattr(point, key))
                    val_correct[k] = correct
                    if not np.isfinite(point.train_cost):
                        gone[k] = DivergedError(step + 1, point.train_cost)
                    elif on_eval is not None:
                        try:
                            on_eval(k, point)
                        except Exception as exc:  # this member stops; the others go on
                            gone[k] = exc
                if gone:
                    leave(gone)
    seconds = time.perf_counter() - started
    for j, k in enumerate(live):
        outcomes[k] = TrainResult(
            params=net.member(j),
            n_s=n_s,
            steps=total,
            curves=curves[k],
            seconds=seconds,
            eval_seconds=eval_seconds,
            final_eval_seconds=final_eval_seconds,
            val_correct=val_correct[k],
        )
    return outcomes  # type: ignore[return-value]
