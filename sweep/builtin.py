"""The built-in objective: the two-layer network on CIFAR-10, as `objective(params, ctx)`.

It goes through the same interface as any user function: ``params`` holds the study file's
[train] values (under their study-file names), the [data] split, the searched values and
``seed``; it reports validation accuracy at each recording and returns the final metrics.
"""

from __future__ import annotations

import functools
from typing import Any

from core.data import Split
from core.training import EvalPoint, TrainConfig, train
from sweep import datacache
from sweep.studyfile import TRAIN_KEYS
from sweep.uncertainty import standard_error


@functools.cache
def cifar10(split: str, data_dir: str | None, dtype: str = "float32") -> Split:
    """The normalised split, memory-mapped once per process (shared between processes
    through the page cache); the pattern any objective should use for its data."""
    return datacache.open_split(datacache.prepare(split, data_dir, dtype).folder)


def config(params: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a call: study-file names ("lambda") to its fields ("lam")."""
    values = {field: params[key] for key, (field, _) in TRAIN_KEYS.items() if key in params}
    return TrainConfig(**values, seed=params["seed"])


def objective(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    cfg = config(params)
    d = cifar10(params["split"], ctx.data_dir, cfg.dtype)

    def report(p: EvalPoint) -> None:
        ctx.report(
            p.step,
            p.val_accuracy,
            eta=p.eta,
            train_cost=p.train_cost,
            train_loss=p.train_loss,
            train_accuracy=p.train_accuracy,
            val_cost=p.val_cost,
            val_loss=p.val_loss,
        )

    result = train(cfg, d.X_train, d.y_train, d.X_val, d.y_val, on_eval=report)
    final = result.final
    # Which validation images it gets right (from the last recording): ties with the best
    # are tested on these.
    ctx.keep_outcomes(result.val_correct)
    return {
        "val_accuracy": final["val_accuracy"],
        "train_accuracy": final["train_accuracy"],
        "train_accuracy_se": standard_error(final["train_accuracy"], len(d.y_train)),
        "val_loss": final["val_loss"],
        "val_cost": final["val_cost"],
        "train_loss": final["train_loss"],
        "train_cost": final["train_cost"],
    }
