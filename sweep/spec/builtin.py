"""The built-in network's part of a study file: [data] and [train], checked strictly, which
of them may be searched, and the fixed params its trials record. What runs them is
sweep/objectives/builtin.py."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from core.data import SPLITS
from core.errors import ConfigError
from core.training import TrainConfig
from sweep.errors import StudyFileError
from sweep.spec.space import SearchRange
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


# Training images of each split of the official CIFAR-10 (10,000 per batch file). A
# smaller copy of the data is checked against the batch size when it loads.
TRAIN_IMAGES = {
    name: 10_000 * len(batches) - (validation if isinstance(validation, int) else 0)
    for name, (batches, validation) in SPLITS.items()
}


def limits(name: str, split: str | None) -> tuple[float | None, float | None]:
    """The values a fine stage's narrowed range of ``name`` may not leave: LIMITS, and for
    the batch size the split's training images (an edge extension reached 17,500 of 10,000)."""
    low, high = LIMITS.get(name, (None, None))
    if name == "batch_size" and split in TRAIN_IMAGES:
        high = TRAIN_IMAGES[split]
    return low, high


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
        train = TrainConfig(seed=seed, **values)
    except ConfigError as exc:
        raise StudyFileError(f"{p.where}: [train]: {exc}") from None
    if train.batch_size > TRAIN_IMAGES[split]:
        p.fail("train.batch_size", f"({train.batch_size}) is {_too_large(split)}")
    return split, train


def check_search(p: Parser, search: dict[str, SearchRange], split: str, train: TrainConfig) -> None:
    """Each value a searched [train] key can take (a range's ends, each choice) is one the
    network takes (a searched hidden of 100.5 or 0, a dropout grid reaching 1.0 failed
    every trial it ran). eta_min must stay below eta_max: with both searched, a value of
    one is checked against the other's most lenient (the smallest eta_min, the largest
    eta_max), so a search in which no pair works is refused; pairs that fail among others
    that work fail as trials."""
    fields = {key: field for key, (field, _) in TRAIN_KEYS.items()}
    lenient = {}
    for key, pick, unknown in (("eta_min", min, 1e-300), ("eta_max", max, 1e300)):
        if key in search:  # (unknown until narrowed, for a fine stage: left out)
            r = search[key]
            known = r.choices if r.choices is not None else [r.low, r.high]
            values = [v for v in known if isinstance(v, int | float) and v is not None]
            lenient[fields[key]] = pick(values) if values else unknown
    for key, r in search.items():
        if r.choices is not None:
            values, what = list(r.choices), "holds"
        elif r.low is not None and r.high is not None:  # (not yet narrowed: a fine stage's)
            ends = [math.ceil(r.low), math.floor(r.high)] if r.is_int else [r.low, r.high]
            values, what = ends, "reaches"
        else:
            continue
        for value in values:
            whole = isinstance(value, int) and not isinstance(value, bool)
            if key in ("hidden", "batch_size") and not whole:
                p.fail(f"search.{key}", f"holds {value!r}; {key} is a whole number")
            try:
                dataclasses.replace(train, **{**lenient, fields[key]: value})
            except (ConfigError, TypeError) as exc:
                p.fail(f"search.{key}", f"{what} {value!r}, which the network refuses: {exc}")
            if key == "batch_size" and value > TRAIN_IMAGES[split]:
                p.fail(f"search.{key}", f"{what} {value}, {_too_large(split)}")


def _too_large(split: str) -> str:
    return f"more than the {split} split's {TRAIN_IMAGES[split]:,} training images; lower it"
