"""Study files (studies/*.toml), parsed strictly into frozen dataclasses.

Every error names the file and the key: unknown keys, wrong types and bad values are
all rejected before anything touches the storage.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data import SPLITS
from core.errors import ConfigError
from core.training import TrainConfig
from sweep.errors import StudyFileError

SAMPLERS = ("random", "qmc", "tpe", "grid")
PRUNERS = ("none", "median", "hyperband")

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
}
SEARCHABLE = ("lambda", "eta_min", "eta_max", "hidden", "batch_size")
MAX_TRIALS = 10_000  # a study's target; each queued trial is one storage transaction
MAX_SEED = 2**32 - 1  # numpy and Optuna's samplers take 32-bit seeds
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # safe as a file name in --out


def check_trials(n: int, where: str) -> int:
    if not 1 <= n <= MAX_TRIALS:
        raise StudyFileError(f"{where} ({n}) must be between 1 and {MAX_TRIALS}")
    return n


@dataclass(frozen=True)
class StudySection:
    name: str
    trials: int = 10
    seed: int = 2424
    sampler: str = "random"
    pruner: str = "none"
    repeats: int = 1


@dataclass(frozen=True)
class SearchRange:
    """One searched parameter: a fixed range, or one narrowed from an earlier study."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = True
    narrow_from: str | None = None
    top_k: int = 3
    margin: float = 0.25

    @property
    def is_int(self) -> bool:
        return self.name in ("hidden", "batch_size")


@dataclass(frozen=True)
class StudyFile:
    path: str
    study: StudySection
    split: str
    train: TrainConfig
    search: dict[str, SearchRange] = field(default_factory=dict)

    @property
    def parent(self) -> str | None:
        """The study a fine stage narrows from, if any."""
        return next((r.narrow_from for r in self.search.values() if r.narrow_from), None)

    @property
    def stage(self) -> str:
        return "fine" if self.parent else "coarse"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy, stored with the study so that resume needs no file."""
        return {
            "path": self.path,
            "study": dataclasses.asdict(self.study),
            "split": self.split,
            "train": dataclasses.asdict(self.train),
            "search": {k: dataclasses.asdict(v) for k, v in self.search.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudyFile:
        return cls(
            path=d["path"],
            study=StudySection(**d["study"]),
            split=d["split"],
            train=TrainConfig(**d["train"]),
            search={k: SearchRange(**v) for k, v in d["search"].items()},
        )


def load(path: str | Path, **overrides: Any) -> StudyFile:
    """Parse a study file. ``overrides`` replace [study] values (e.g. trials, seed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StudyFileError(
            f"study file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except FileNotFoundError:
        raise StudyFileError(
            f"study file {path} does not exist; see studies/ for examples"
        ) from None
    except OSError as exc:
        raise StudyFileError(f"cannot read study file {path}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{path}: TOML syntax error: {exc}") from None
    return parse(raw, str(path), **overrides)


def parse(raw: dict[str, Any], where: str = "<study>", **overrides: Any) -> StudyFile:
    p = _Parser(where)
    p.only(raw, "", ("study", "data", "train", "search"))
    s = p.table(raw, "study")
    p.only(s, "study.", ("name", "trials", "seed", "sampler", "pruner", "repeats"))
    study = StudySection(
        name=p.get(s, "study.name", (str,), required=True),
        trials=p.get(s, "study.trials", (int,), 10),
        seed=p.get(s, "study.seed", (int,), 2424),
        sampler=p.choice(s, "study.sampler", SAMPLERS, "random"),
        pruner=p.choice(s, "study.pruner", PRUNERS, "none"),
        repeats=p.get(s, "study.repeats", (int,), 1),
    )
    study = dataclasses.replace(study, **{k: v for k, v in overrides.items() if v is not None})
    if not NAME.fullmatch(study.name):
        p.fail(
            "study.name",
            f"({study.name!r}) must be 1-64 letters, digits, '.', '_' or '-', starting with "
            "a letter or digit (it names the study's folder of tables)",
        )
    if not 1 <= study.trials <= MAX_TRIALS:
        p.fail("study.trials", f"({study.trials}) must be between 1 and {MAX_TRIALS}")
    if not 0 <= study.seed <= MAX_SEED:
        p.fail("study.seed", f"({study.seed}) must be between 0 and 2**32 - 1")
    if not 1 <= study.repeats <= 100:
        p.fail("study.repeats", f"({study.repeats}) must be between 1 and 100")

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
    for name in ("lam", "eta_min", "eta_max"):
        if name in values:
            values[name] = float(values[name])
    try:
        train = TrainConfig(seed=study.seed, **values)
    except ConfigError as exc:
        raise StudyFileError(f"{where}: [train]: {exc}") from None

    search = {}
    for name, spec in p.table(raw, "search").items():
        search[name] = _search_range(p, name, spec, study.name)
    return StudyFile(path=where, study=study, split=split, train=train, search=search)


def _search_range(p: _Parser, name: str, spec: Any, study_name: str) -> SearchRange:
    key = f"search.{name}"
    if name not in SEARCHABLE:
        p.fail(key, f"cannot be searched; searchable parameters: {', '.join(SEARCHABLE)}")
    if not isinstance(spec, dict):
        p.fail(key, "must be a table like [search.lambda]")
    p.only(spec, f"{key}.", ("low", "high", "log", "narrow_from", "top_k", "margin"))
    if "narrow_from" in spec:
        if "low" in spec or "high" in spec:
            p.fail(key, "takes either low/high or narrow_from, not both")
        r = SearchRange(
            name=name,
            log=p.get(spec, f"{key}.log", (bool,), True),
            narrow_from=p.get(spec, f"{key}.narrow_from", (str,)),
            top_k=p.get(spec, f"{key}.top_k", (int,), 3),
            margin=float(p.get(spec, f"{key}.margin", (float, int), 0.25)),
        )
        if r.narrow_from == study_name:
            p.fail(f"{key}.narrow_from", "cannot name the study itself")
        if r.top_k < 1:
            p.fail(f"{key}.top_k", f"({r.top_k}) must be at least 1")
        if r.margin < 0:
            p.fail(f"{key}.margin", f"({r.margin}) must be >= 0")
        if not r.log:
            p.fail(f"{key}.log", "narrowing works in log space; set log = true")
        return r
    r = SearchRange(
        name=name,
        low=float(p.get(spec, f"{key}.low", (float, int), required=True)),
        high=float(p.get(spec, f"{key}.high", (float, int), required=True)),
        log=p.get(spec, f"{key}.log", (bool,), True),
    )
    if not r.low < r.high:
        p.fail(f"{key}.low", f"({r.low}) must be below high ({r.high})")
    if r.log and r.low <= 0:
        p.fail(f"{key}.low", f"({r.low}) must be positive for a log range")
    if name == "lambda" and r.low < 0:
        p.fail(f"{key}.low", f"({r.low}) must be >= 0")
    return r


class _Parser:
    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, message: str):
        raise StudyFileError(f"{self.where}: {key} {message}")

    def only(self, table: dict, prefix: str, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                self.fail(f"{prefix}{key}", f"is not a known key; known keys: {', '.join(allowed)}")

    def table(self, raw: dict, name: str) -> dict:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            self.fail(name, f"must be a table [{name}]")
        return value

    def get(
        self,
        table: dict,
        key: str,
        types: tuple[type, ...],
        default: Any = None,
        required: bool = False,
    ) -> Any:
        short = key.rsplit(".", 1)[-1]
        if short not in table:
            if required:
                self.fail(key, "is required")
            return default
        value = table[short]
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, f"must be a finite number, not {value}")
        # bool is a subclass of int in Python; TOML true is not a number.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types).replace("str", "string")
            names = names.replace("float or int", "number")
            self.fail(key, f"must be a {names}, not {type(value).__name__} {value!r}")
        return value

    def choice(self, table: dict, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(table, key, (str,), default)
        if value not in choices:
            self.fail(key, f"is {value!r}; choose one of {', '.join(choices)}")
        return value
