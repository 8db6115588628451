"""Study files (studies/*.toml), parsed strictly into frozen dataclasses.

Every error names the file and the key: unknown keys, wrong types and bad values are
all rejected before anything touches the storage.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.training import TrainConfig
from sweep.errors import StudyFileError
from sweep.spec import builtin
from sweep.spec.space import SearchRange, check_search, parse_range
from sweep.spec.strict import Parser as _Parser

SAMPLERS = ("random", "qmc", "tpe", "grid")
DIRECTIONS = ("maximize", "minimize")
PRUNERS = ("none", "median", "hyperband", "paired")

MAX_TRIALS = 10_000  # a study's target; each queued trial is one storage transaction
MAX_SEED = 2**32 - 1  # numpy and Optuna's samplers take 32-bit seeds
MAX_PACK = 64
# Trials a worker trains together when the function has a list form (chosen by measurement:
# README "What to expect"); a function without one runs its trials one by one.
DEFAULT_PACK = 8
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # safe as a file name in --out


@dataclass(frozen=True)
class StudySection:
    name: str
    trials: int = 10
    seed: int = 2424
    sampler: str = "random"
    pruner: str = "none"
    repeats: int = 1
    pack: int | None = None  # trials a worker trains together; None: DEFAULT_PACK if it can
    trial_timeout: float | None = None  # seconds; a trial past it fails (None: no limit)
    prune_level: float = 0.01  # the paired pruner's McNemar level (sweep/objectives/paired.py)
    rungs: tuple[float, ...] = ()  # its rungs, fractions of a seed's recordings (StudyFile.rungs)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rungs", tuple(self.rungs))  # a list when read back from JSON


@dataclass(frozen=True)
class ObjectiveSection:
    """The function a study optimises: ``objective(params, ctx)`` from a file or module."""

    function: str = "objective"
    file: str | None = None  # as written, relative to the study file's folder
    module: str | None = None
    folder: str = "."  # the study file's folder (absolute), where `file` is looked up
    metric: str | None = None  # the returned dict's key to optimise
    direction: str = "maximize"
    # A function given in memory (`sweep.run(study, objective=f)`): its name. No file holds
    # it: workers get it from the caller (functions.dumps); `sweep worker` cannot.
    in_memory: str | None = None

    @property
    def builtin(self) -> bool:
        return self.module == BUILTIN.module and self.function == BUILTIN.function

    @property
    def source(self) -> str:
        if self.in_memory:
            return f"{self.in_memory} (given in memory)"
        return f"{self.file or self.module}:{self.function}"


# The two-layer network, called through the same interface as any user function.
BUILTIN = ObjectiveSection(module="sweep.objectives.builtin", metric="val_accuracy")


@dataclass(frozen=True)
class StudyFile:
    path: str
    study: StudySection
    objective: ObjectiveSection = BUILTIN
    split: str | None = None  # the built-in objective's [data] split
    train: TrainConfig | None = None  # the built-in objective's checked [train] settings
    fixed: dict[str, Any] = field(default_factory=dict)  # passed with every call
    search: dict[str, SearchRange] = field(default_factory=dict)

    @property
    def parent(self) -> str | None:
        """The study a fine stage narrows from, if any."""
        return next((r.narrow_from for r in self.search.values() if r.narrow_from), None)

    @property
    def stage(self) -> str:
        return "fine" if self.parent else "coarse"

    @property
    def metric(self) -> str:
        return self.objective.metric or "value"

    @property
    def rungs(self) -> tuple[float, ...]:
        """Where the paired pruner compares: [study] rungs, else the end of every cycle but
        the last. There the learning rate is at its minimum and the ranking is the final
        one's (measured, README "Pruning"); at its peak trials rank by eta_max instead."""
        if self.study.rungs:
            return self.study.rungs
        cycles = self.train.cycles if self.train else 1
        return tuple(k / cycles for k in range(1, cycles))

    @property
    def per_seed_reports(self) -> int | None:
        """How many times the built-in objective reports per seed (None: unknown)."""
        return self.train.cycles * self.train.evals_per_cycle if self.train else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy, stored with the study so that resume needs no file."""
        return {
            "path": self.path,
            "study": dataclasses.asdict(self.study),
            "objective": _objective_dict(self.objective),
            "split": self.split,
            "train": dataclasses.asdict(self.train) if self.train else None,
            "fixed": self.fixed,
            "search": {k: dataclasses.asdict(v) for k, v in self.search.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudyFile:
        train = TrainConfig(**d["train"]) if d.get("train") else None
        return cls(
            path=d["path"],
            study=StudySection(**d["study"]),
            objective=ObjectiveSection(**d.get("objective", dataclasses.asdict(BUILTIN))),
            split=d.get("split"),
            train=train,
            # Studies stored before user objectives existed: derive what the call gets.
            fixed=d.get("fixed") or builtin.fixed_params(d.get("split"), train),
            search={k: SearchRange(**v) for k, v in d["search"].items()},
        )


def _objective_dict(section: ObjectiveSection) -> dict[str, Any]:
    """[objective] as stored; ``in_memory`` only when set, so that a study of a file or a
    module is stored exactly as before it existed."""
    d = dataclasses.asdict(section)
    if d["in_memory"] is None:
        del d["in_memory"]
    return d


def load(path: str | Path, *, given: str | None = None, **overrides: Any) -> StudyFile:
    """Parse a study file. ``overrides`` replace [study] values (e.g. trials, seed);
    ``given`` as for `parse`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # Notepad starts UTF-8 with a BOM
    except UnicodeDecodeError as exc:
        raise StudyFileError(
            f"study file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except FileNotFoundError:
        raise StudyFileError(
            f"study file {path} does not exist; `sweep init DIR` writes the seed's study "
            "files and an example into DIR to start from"
        ) from None
    except OSError as exc:
        raise StudyFileError(f"cannot read study file {path}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{path}: TOML syntax error: {exc}") from None
    return parse(raw, str(path), str(path.parent), given=given, **overrides)


def check_storable(p: _Parser, key: str, value: object) -> None:
    """A fixed setting the study can store (as JSON) and pass on: a string, a boolean, a
    finite number, or an array or table of them; a TOML date or time is refused."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_storable(p, f"{key}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_storable(p, f"{key}[{i}]", v)
    elif isinstance(value, float) and not math.isfinite(value):
        p.fail(key, f"must be a finite number, not {value}")
    elif not isinstance(value, str | bool | int | float):
        p.fail(key, f"is a TOML {type(value).__name__}, which a study cannot store; quote it")


def parse(
    raw: dict[str, Any],
    where: str = "<study>",
    folder: str = ".",
    *,
    given: str | None = None,
    **overrides: Any,
) -> StudyFile:
    """A parsed study file; ``folder`` is where its objective file is looked up.

    ``given``: the name of a function given in memory (`sweep.run(objective=f)`); the
    [objective] section may then hold only metric and direction, or be absent.
    """
    p = _Parser(where)
    p.only(raw, "", ("study", "objective", "data", "train", "search"))
    study = _study(p, p.table(raw, "study"), overrides)
    if given is not None:
        objective = _given(p, p.table(raw, "objective"), given)
    elif "objective" in raw:
        objective = _objective(p, p.table(raw, "objective"), folder)
    else:
        objective = BUILTIN
    if study.pruner == "paired" and not objective.builtin:
        p.fail("study.pruner", '"paired" needs the built-in objective (its per-image outcomes)')
    if objective.builtin:
        split, train = builtin.settings(p, raw, study.seed)
        fixed = builtin.fixed_params(split, train)
    else:  # a user function gets [data] and [train] as they are
        split, train = None, None
        for section in ("data", "train"):
            for key, value in p.table(raw, section).items():
                check_storable(p, f"{section}.{key}", value)
        fixed = {**p.table(raw, "data"), **p.table(raw, "train")}
    search = {}
    for name, spec in p.table(raw, "search").items():
        if not name.strip():  # a column without a header, a figure named ".png"
            p.fail("search", f"has a parameter named {name!r}; give it a name")
        if objective.builtin and name not in builtin.SEARCHABLE:
            p.fail(
                f"search.{name}",
                f"cannot be searched; searchable parameters: {', '.join(builtin.SEARCHABLE)}",
            )
        is_int = objective.builtin and name in ("hidden", "batch_size")
        search[name] = parse_range(p, name, spec, study.name, is_int=is_int)
    if not search:
        p.fail("search", "names no parameter; add a table like [search.lambda]")
    check_search(p, raw, search, study.sampler, study.trials)
    if "lambda" in search and objective.builtin and (search["lambda"].low or 0) < 0:
        p.fail("search.lambda.low", f"({search['lambda'].low}) must be >= 0")
    if objective.builtin:
        builtin.check_search(p, search, split, train)
    return StudyFile(where, study, objective, split, train, fixed, search)


def _study(p: _Parser, s: dict, overrides: dict[str, Any]) -> StudySection:
    p.only(
        s,
        "study.",
        (*STUDY_KEYS, *PAIRED_KEYS),
    )
    study = StudySection(
        name=p.get(s, "study.name", (str,), required=True),
        trials=p.get(s, "study.trials", (int,), 10),
        seed=p.get(s, "study.seed", (int,), 2424),
        sampler=p.choice(s, "study.sampler", SAMPLERS, "random"),
        pruner=p.choice(s, "study.pruner", PRUNERS, "none"),
        repeats=p.get(s, "study.repeats", (int,), 1),
        pack=p.get(s, "study.pack", (int,)),
        trial_timeout=p.get(s, "study.trial_timeout", (float, int)),
        **_paired(p, s),
    )
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():  # (from the API as they come: a seed "x" was a TypeError)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise StudyFileError(f"{key} ({value!r}) must be a whole number")
    study = dataclasses.replace(study, **{k: int(v) for k, v in given.items()})
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
    if study.pack is not None and not 1 <= study.pack <= MAX_PACK:
        p.fail("study.pack", f"({study.pack}) must be between 1 and {MAX_PACK}")
    if study.trial_timeout is not None:
        if study.trial_timeout <= 0:
            p.fail(
                "study.trial_timeout",
                f"({study.trial_timeout}) must be a positive number of seconds",
            )
        study = dataclasses.replace(study, trial_timeout=float(study.trial_timeout))
    return study


STUDY_KEYS = ("name", "trials", "seed", "sampler", "pruner", "repeats", "pack", "trial_timeout")
PAIRED_KEYS = ("prune_level", "rungs")


def _paired(p: _Parser, s: dict) -> dict[str, Any]:
    """[study] prune_level and rungs, which only the paired pruner reads."""
    given = [k for k in PAIRED_KEYS if k in s]
    if given and s.get("pruner") != "paired":
        p.fail(f"study.{given[0]}", 'is only used with pruner = "paired"')
    out: dict[str, Any] = {}
    level = p.get(s, "study.prune_level", (float, int))
    if level is not None:
        if not 0 < level < 0.5:
            p.fail("study.prune_level", f"({level}) must lie between 0 and 0.5")
        out["prune_level"] = float(level)
    rungs = p.get(s, "study.rungs", (list,))
    if rungs is not None:
        ok = rungs and all(isinstance(f, float | int) and not isinstance(f, bool) for f in rungs)
        if not ok or not all(0 < f < 1 for f in rungs):
            p.fail("study.rungs", f"({rungs}) must be a list of fractions between 0 and 1")
        out["rungs"] = tuple(sorted({float(f) for f in rungs}))
    return out


def _objective(p: _Parser, o: dict, folder: str) -> ObjectiveSection:
    p.only(o, "objective.", ("file", "module", "function", "metric", "direction"))
    file = p.get(o, "objective.file", (str,))
    module = p.get(o, "objective.module", (str,))
    if (file is None) == (module is None):
        p.fail("objective", "needs exactly one of file (a .py path) or module (an importable name)")
    objective = ObjectiveSection(
        function=p.get(o, "objective.function", (str,), "objective"),
        file=file,
        module=module,
        folder=str(Path(folder).resolve()),
        metric=_metric(p, o),
        direction=p.choice(o, "objective.direction", DIRECTIONS, "maximize"),
    )
    if not objective.function.isidentifier():
        p.fail("objective.function", f"({objective.function!r}) is not a Python name")
    return objective


def _given(p: _Parser, o: dict, name: str) -> ObjectiveSection:
    """[objective] of a study whose function is given in memory: metric and direction."""
    p.only(o, "objective.", ("file", "module", "function", "metric", "direction"))
    for key in ("file", "module", "function"):
        if key in o:
            p.fail(
                f"objective.{key}",
                "names a function, but one was given in memory (objective=); give one or the "
                "other (with objective=, [objective] holds only metric and direction)",
            )
    return ObjectiveSection(
        function=name if name.isidentifier() else "objective",
        metric=_metric(p, o),
        direction=p.choice(o, "objective.direction", DIRECTIONS, "maximize"),
        in_memory=name,
    )


def _metric(p: _Parser, o: dict) -> str | None:
    metric = p.get(o, "objective.metric", (str,))
    if metric is not None and not metric.strip():
        p.fail("objective.metric", "is empty; name the key of the returned dict to optimise")
    return metric
