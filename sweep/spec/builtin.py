"""The built-in network's part of a study file: [data] and [train], checked strictly, which
of them may be searched, and the fixed params its trials record. What runs them is
sweep/objectives/builtin.py."""

from __future__ import annotations

import dataclasses
from typing import Any

from core.data import SPLITS
from core.errors import ConfigError
from core.training import TrainConfig
from sweep.errors import StudyFileError
from sweep.spec.strict import Parser

# [train] key -> (TrainConfig field, accepted types). "lambda" is a Python keyword.
TRAIN_KEYS: dict[str, tuple[str, tuple[type, ...]]] = {
    "lambda": ("lam", (float, int)),
    "hidden": ("hidden", (int,)),
    "batch_size": ("batch_size", (int,)),
    "eta_min": ("eta_min", (float, int)),
    "eta_max": ("eta_max", (float, int)),
    "n_s": ("n_s", (int, str)),
    "cycles": ("cycles", (int,)),
    "schedule": ("schedule", (str,)),
    "dtype": ("dtype", (str,)),
    "evals_per_cycle": ("evals_per_cycle", (int,)),
    "curves": ("curves", (str,)),
    "dropout": ("dropout", (float, int)),
    "flip": ("flip", (bool,)),
    "translate": ("translate", (int,)),
}
# [train] keys added after v0.2: left out of the fixed params at their defaults, so a
# study stored before them still compares equal to its file.
LATER_DEFAULTS = {"dropout": 0.0, "flip": False, "translate": 0}
SEARCHABLE = ("lambda", "eta_min", "eta_max", "hidden", "batch_size", "dropout")
# What a fine stage's narrowed range may not leave (a margin can reach past them).
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "dropout": (0.0, 0.9),
    "hidden": (1, 2000),
    "batch_size": (1, None),
}


def fixed_params(split: str | None, train: TrainConfig | None) -> dict[str, Any]:
    """The built-in objective's fixed params: [train] under its study-file names, the split."""
    if train is None:
        return {}
    names = {field: key for key, (field, _) in TRAIN_KEYS.items()}
    values = {names[k]: v for k, v in dataclasses.asdict(train).items() if k in names}
    for key, default in LATER_DEFAULTS.items():
        if values.get(key) == default:
            del values[key]
    return {**values, "split": split}


def settings(p: Parser, raw: dict, seed: int) -> tuple[str, TrainConfig]:
    """[data] and [train] of the built-in objective, checked strictly."""
    d = p.table(raw, "data")
    p.only(d, "data.", ("split",))
    split = p.choice(d, "data.split", tuple(SPLITS), "search")
    t = p.table(raw, "train")
    p.only(t, "train.", tuple(TRAIN_KEYS))
    values = {}
    for key, (name, types) in TRAIN_KEYS.items():
        if key in t:
            values[name] = p.get(t, f"train.{key}", types)
    if isinstance(values.get("n_s"), str) and values["n_s"] != "auto":
        p.fail("train.n_s", f'must be a positive integer or "auto", not {values["n_s"]!r}')
    for name in ("lam", "eta_min", "eta_max", "dropout"):
        if name in values:
            values[name] = float(values[name])
    values.setdefault("curves", "cheap")  # studies need the final values, not full curves
    try:
        return split, TrainConfig(seed=seed, **values)
    except ConfigError as exc:
        raise StudyFileError(f"{p.where}: [train]: {exc}") from None
