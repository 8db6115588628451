"""One training run on a split: the `sweep train` command's library function."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data import Split
from core.errors import ConfigError
from core.network import evaluate
from core.training import TrainConfig, TrainResult, train
from sweep.objectives import datacache
from sweep.objectives.data import ensure_data, load_split
from sweep.system.output import write_with


@dataclass
class RunSummary:
    """What `sweep train --json` prints (accuracies as fractions)."""

    split: str
    config: TrainConfig
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    steps: int
    n_s: int
    seconds: float
    sizes: dict[str, int] = field(default_factory=dict)
    model: str | None = None

    def describe(self) -> str:
        c = self.config
        sizes = " / ".join(f"{n} {k}" for k, n in self.sizes.items())
        lines = [
            f"split {self.split} ({sizes}); lambda {c.lam:g}, n_s {self.n_s}, "
            f"{c.cycles} cycle(s) = {self.steps} steps, batch {c.batch_size}, "
            f"eta {c.eta_min:g}..{c.eta_max:g}, hidden {c.hidden}, seed {c.seed}",
            f"train accuracy {self.train_accuracy:.2%}   validation {self.val_accuracy:.2%}   "
            f"test {self.test_accuracy:.2%}   ({self.seconds:.1f} s)",
        ]
        if self.model:
            lines.append(f"model saved to {self.model}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        config = asdict(self.config)
        lam = config.pop("lam")
        return {
            "lambda": lam,
            "train_accuracy": self.train_accuracy,
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "split": self.split,
            "sizes": self.sizes,
            "model": self.model,
            **config,
            "n_s": self.n_s,
        }


def run_training(
    config: TrainConfig,
    *,
    split: str,
    data_dir: str | Path | None = None,
    save_model: str | Path | None = None,
    progress: bool = True,
) -> tuple[RunSummary, TrainResult]:
    """Train once on ``split`` and measure train/validation/test accuracy."""
    data = training_data(split, data_dir, config.dtype)
    bar = _eval_bar(config) if progress and sys.stderr.isatty() else None
    try:
        result = train(
            config,
            data.X_train,
            data.y_train,
            data.X_val,
            data.y_val,
            on_eval=(lambda p: bar.update(1)) if bar else None,
        )
    finally:
        if bar:
            bar.close()
    test = evaluate(result.params, data.X_test, data.y_test, config.lam)
    if save_model:
        arrays = {
            **result.params.arrays(),
            "mean": data.mean,
            "std": data.std,
            **{f"curve_{k}": np.asarray(v) for k, v in result.curves.items()},
        }

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: numpy adds no ".npz" to the name
                np.savez(f, **arrays)

        save_model = write_with(save_model, write)  # whole or not at all
    final = result.final
    summary = RunSummary(
        split=split,
        config=config,
        train_accuracy=final["train_accuracy"],
        val_accuracy=final["val_accuracy"],
        test_accuracy=test.accuracy,
        steps=result.steps,
        n_s=result.n_s,
        seconds=result.seconds,
        sizes=data.sizes,
        model=str(save_model) if save_model else None,
    )
    return summary, result


def training_data(split: str, data_dir: str | Path | None, dtype: str) -> Split:
    """The normalised split from the copy the sweeps share (sweep/objectives/datacache.py):
    made once, then opened in milliseconds; loading the final split from its batches takes
    ~3 s. The same numbers either way. Where that copy cannot be written (neither in the data
    folder nor in the per-user cache, or a full disk) the split is loaded from the batches."""
    root = ensure_data(data_dir)  # a download's errors are its own, not a reason to retry
    try:
        # Not builtin.cifar10, which keeps a process's first answer: a notebook that trains
        # again after the batches changed gets their new copy (this check takes ~4 ms).
        return datacache.load(split, root, dtype)
    except (OSError, datacache.Unwritable):
        return load_split(split, root, dtype)


def warm_split(split: str, data_dir: str | Path | None, dtype: str) -> None:
    """Make the shared copy of ``split`` now if it is not there yet (~5 s of one core for
    the final split, the first time), so that a run started later opens it at once. Best
    effort: a run meets any real problem with the data again, and reports it."""
    with contextlib.suppress(Exception):
        datacache.prepare(split, data_dir, dtype)


def _eval_bar(config: TrainConfig):
    from tqdm import tqdm

    return tqdm(
        total=config.cycles * config.evals_per_cycle,
        unit="eval",
        desc="training",
        file=sys.stderr,
        leave=False,
    )


def resolve_config(
    *,
    study_file: str | None = None,
    lam: str | float | None = None,
    split: str | None = None,
    storage: str | None = None,
    seed: int | None = None,
    data_dir: str | None = None,
    **train_overrides,
) -> tuple[str, TrainConfig, str | None]:
    """The split, config and data folder of a run: study file [train] values, then the
    given overrides.

    ``lam`` is a number or ``best:STUDY``: the best trial of that stored study, its lambda
    and whatever else of [train] it searched (hidden, dropout...), unless given here too.
    The data folder is ``data_dir``; else, for ``best:STUDY`` without $SWEEP_DATA_DIR, the
    folder that study ran on when it still holds CIFAR-10 (as `sweep resume` finds it), so
    that a session run with --data-dir DIR does not download a second copy; else None,
    the default lookup.
    """
    from sweep.spec import studyfile

    base = studyfile.load(study_file) if study_file else None
    if base is not None and base.train is None:
        raise ConfigError(
            f"{study_file} names its own objective ({base.objective.source}); `sweep train` "
            "runs the built-in network: run the study with `sweep run` instead"
        )
    # A single run records full-set curves (the assignment's method) unless --curves says.
    config = (
        dataclasses.replace(base.train, curves="full")
        if base
        else TrainConfig(lam=0.01, cycles=1, n_s=500)
    )
    chosen_split = split or (base.split if base else "exercise")
    changes = {k: v for k, v in train_overrides.items() if v is not None}
    if seed is not None:
        changes["seed"] = seed
    if isinstance(lam, str) and lam.startswith("best:"):
        best, recorded = _best_settings(lam.removeprefix("best:"), storage, changes)
        changes = {**best, **changes}
        if data_dir is None and not os.environ.get("SWEEP_DATA_DIR") and recorded:
            from core.data import FOLDER

            if (Path(recorded["dir"]) / FOLDER).is_dir():
                data_dir = recorded["dir"]
    elif lam is not None:
        try:
            changes["lam"] = float(lam)
        except ValueError:
            raise ConfigError(f"--lambda {lam!r} is neither a number nor best:STUDY") from None
    return chosen_split, dataclasses.replace(config, **changes), data_dir


def _best_settings(
    study: str, storage: str | None, given: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The TrainConfig fields the best trial of ``study`` searched (a note on stderr names
    the ones besides lambda, and those that options given here replace), and where the
    study's data was."""
    from sweep.results.inspection import best_params
    from sweep.spec.builtin import SEARCHABLE, TRAIN_KEYS

    params, spec, recorded = best_params(study, storage)
    # Only a study of the built-in network searched its [train] values (a user function's
    # "hidden" is its own, of its own type): of any other, lambda alone.
    builtin = spec.objective.builtin
    order = sorted(params, key=lambda k: (k != "lambda", k))  # lambda first
    taken = [k for k in order if k == "lambda" or (builtin and k in SEARCHABLE)]
    fields = {TRAIN_KEYS[k][0]: (k, params[k]) for k in taken}
    others = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.values()]
    if len(others) > 1:
        kept = [f for f in fields if f in given]
        logging.getLogger(__name__).warning(
            f"best:{study} trains with its best trial's {', '.join(others)}"
            + (f" ({', '.join(fields[f][0] for f in kept)} as given here instead)" if kept else "")
        )
    return {field: v for field, (_, v) in fields.items()}, recorded


def ensemble_accuracy(models: list[str | Path], split: str, data_dir) -> dict:
    """Test accuracy of the saved models' average class probabilities (and each model's
    own), on ``split``'s test set."""
    from core.network import Params, forward

    data = training_data(split, data_dir, "float32")
    mean = None
    alone = []
    for path in models:
        with np.load(path) as saved:
            params = Params(*(saved[k] for k in ("W1", "b1", "W2", "b2")))
        _, P = forward(params, data.X_test)
        alone.append(float(np.mean(P.argmax(axis=1) == data.y_test)))
        mean = P if mean is None else mean + P
    assert mean is not None
    correct = mean.argmax(axis=1) == data.y_test
    return {"test_accuracy": float(np.mean(correct)), "members_test_accuracy": alone}
