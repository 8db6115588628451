"""What a study and its trials store, and the one module that knows the keys.

Optuna keeps what lambda-sweep adds to a study or a trial as JSON user attributes. These are
all of them (docs/architecture.md, "What is stored"):

- study: ``spec`` (the study file as a dict), ``stage``, ``parent``, ``ranges`` (the ranges
  derived for a fine stage), ``target`` (trials to reach), ``data`` (the CIFAR-10 copy a
  built-in study was made on), ``schema`` (SCHEMA, written when the study is created).
- trial: ``result`` (a TrialResult), ``fail_reason``, ``prune_reason``, ``requeued`` (this
  attempt's values run again), ``worker`` (host:pid), ``point`` (the planned point it runs),
  ``values``, ``retry`` and ``crashes`` (a queued retry's values, how often they were
  queued again and how often they ended their process), ``heartbeat`` (a journal storage's
  liveness), ``outcomes@STEP`` (per-image
  outcomes at a pruning rung).

SCHEMA 2 is version 0.3's. A study without the ``schema`` key was written by 0.2 or 0.1 and
reads the same, but for two things translated here: 0.2 named the built-in objective's module
``sweep.builtin``, and 0.1 kept a narrower result (``train_accuracy``, ``val_sd``).
tests/store/test_records.py reads a study that 0.2 wrote (tests/data/v0.2.db).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial

from sweep.spec.studyfile import StudyFile

SCHEMA = 2

# study attributes
SPEC, STAGE, PARENT, RANGES, TARGET, DATA, SCHEMA_KEY = (
    *("spec", "stage", "parent", "ranges", "target", "data", "schema"),
)
# trial attributes
RESULT, FAIL_REASON, PRUNE_REASON, REQUEUED, WORKER = (
    *("result", "fail_reason", "prune_reason", "requeued", "worker"),
)
POINT, VALUES, RETRY, CRASHES = "point", "values", "retry", "crashes"
HEARTBEAT = "heartbeat"  # a journal storage's trial: its last beat (sweep/store/journal.py)
# The Optuna step of seed r's step s is r * STEP_STRIDE + s: each seed's intermediate
# values apart, so a pruner compares like with like (sweep/objectives/objective.py).
STEP_STRIDE = 1_000_000
OUTCOMES_PREFIX = "outcomes@"  # + the Optuna step: a trial's per-image outcomes at a rung
# Belong to one attempt, never to its retry.
ATTEMPT_ATTRS = (WORKER, FAIL_REASON, REQUEUED, HEARTBEAT)

_RENAMED_MODULES = {"sweep.builtin": "sweep.objectives.builtin"}  # 0.2 -> 0.3


def spec_of(attrs: dict[str, Any]) -> StudyFile | None:
    """The study file a study was created from (None: a study Optuna made alone)."""
    if SPEC not in attrs:
        return None
    raw = attrs[SPEC]
    objective = dict(raw.get("objective") or {})
    if schema_of(attrs) < 2 and objective.get("module") in _RENAMED_MODULES:
        objective["module"] = _RENAMED_MODULES[objective["module"]]
        raw = {**raw, "objective": objective}
    return StudyFile.from_dict(raw)


def schema_of(attrs: dict[str, Any]) -> int:
    """The schema a study was written with (1: before the key existed, 0.1 and 0.2)."""
    return int(attrs.get(SCHEMA_KEY, 1))


def outcomes_key(step: int) -> str:
    return f"{OUTCOMES_PREFIX}{step}"


def pack_bits(correct: np.ndarray) -> str:
    """Per-image outcomes (True = right) as stored: one bit per image, base64."""
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode()


def unpack_bits(text: str, n: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), count=n)
    return bits.astype(bool)


@dataclass(frozen=True)
class TrialResult:
    """What the objective stores when a trial ends (one attribute: one transaction)."""

    metrics: dict[str, float] = field(default_factory=dict)  # mean over seeds
    sd: dict[str, float] = field(default_factory=dict)  # over seeds, with two or more
    n: dict[str, int] = field(default_factory=dict)  # seeds behind a metric not all returned
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    seconds: float | None = None
    timings: dict[str, Any] | None = None
    pack: list[int] | None = None  # the trial numbers it was trained beside
    curves: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, Any] | None = None  # {"n": images, "bits": [one per seed]}
    data_fingerprint: str | None = None
    version: str | None = None

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialResult:
        raw = trial.user_attrs.get(RESULT) or {}
        if "metrics" not in raw:  # 0.1's narrower record
            metrics = {"train_accuracy": raw["train_accuracy"]} if "train_accuracy" in raw else {}
            sd = {"val_accuracy": raw["val_sd"]} if raw.get("val_sd") is not None else {}
            return cls(metrics=metrics, sd=sd, curves=raw.get("curves") or {})
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in known and v is not None})

    def stored(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def outcome_arrays(self) -> list[np.ndarray] | None:
        """The per-image outcomes, one array per seed, or None if the trial kept none."""
        if not self.outcomes:
            return None
        return [unpack_bits(text, self.outcomes["n"]) for text in self.outcomes["bits"]]


def fail_reason(trial: FrozenTrial, default: str | None = None) -> str | None:
    return trial.user_attrs.get(FAIL_REASON, default)


def prune_reason(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(PRUNE_REASON)


def requeued(trial: FrozenTrial) -> bool:
    """Its values were queued again: a failure of this attempt, not of its values."""
    return bool(trial.user_attrs.get(REQUEUED))


def worker_of(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(WORKER)


def values_of(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's searched values: its params, or for a queued trial the planned values
    stored with it."""
    return trial.params or dict(trial.user_attrs.get(VALUES, {}))


def crashes_of(trial: FrozenTrial) -> int:
    """How many times this trial's values were running when their process died."""
    return int(trial.user_attrs.get(CRASHES, 0))


def retries_of(trial: FrozenTrial) -> int:
    return int(trial.user_attrs.get(RETRY, 0))


def point_of(trial: FrozenTrial) -> Any:
    return trial.user_attrs.get(POINT)
