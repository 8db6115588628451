"""The search space: each searched parameter's kind and range, and how a point maps to it.

A parameter is a float or an int range (log or linear) or a categorical choice. A fine
stage's range is derived from an earlier study (`narrow_from`) and stored with the study;
`Dimension` is the range actually searched, `SearchRange` what the study file says.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from sweep.errors import StudyFileError


@dataclass(frozen=True)
class Dimension:
    """A searched range: [low, high] (log or linear, float or int) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = True
    is_int: bool = False
    choices: tuple[Any, ...] | None = None

    def value(self, u: float) -> Any:
        """The value at the unit coordinate u in [0, 1]."""
        if self.choices is not None:
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        assert self.low is not None and self.high is not None
        if self.log:
            x = 10 ** (math.log10(self.low) + u * (math.log10(self.high) - math.log10(self.low)))
            # 10 ** log10(8.0) is 8.000000000000004: outside the range, which Optuna refuses.
            x = min(max(x, self.low), self.high)
        else:
            x = self.low + u * (self.high - self.low)
        if self.is_int:
            return int(min(max(round(x), math.ceil(self.low)), math.floor(self.high)))
        return float(x)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """What the parameter is recorded with: by `suggest`, and with a queued trial's
        values when it is queued (sweep/store/enqueue.py), so the two always agree."""
        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.is_int:
            low, high = math.ceil(self.low), math.floor(self.high)
            return optuna.distributions.IntDistribution(low, high, log=self.log)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        d = self.distribution()
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            return trial.suggest_categorical(name, list(d.choices))
        if isinstance(d, optuna.distributions.IntDistribution):
            return trial.suggest_int(name, d.low, d.high, log=d.log)
        return trial.suggest_float(name, d.low, d.high, log=d.log)


def dimension(d: Dimension | tuple) -> Dimension:
    """Accept (low, high, log) tuples, as stored ranges are kept."""
    return d if isinstance(d, Dimension) else Dimension(float(d[0]), float(d[1]), bool(d[2]))


@dataclass(frozen=True)
class SearchRange:
    """One [search.NAME] table of a study file."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = True
    is_int: bool = False
    choices: list[Any] | None = None
    narrow_from: str | None = None
    top_k: int = 3
    margin: float = 0.25
    narrow: str = "top_k"  # or "tied": the hull of the trials tied with the best

    def fixed(self) -> Dimension:
        """The range when it is not narrowed from another study."""
        choices = tuple(self.choices) if self.choices is not None else None
        return Dimension(self.low, self.high, self.log, self.is_int, choices)


MAX_MARGIN = 10  # decades (log) or spans (linear) a narrowed range is widened by, at most
KEYS = ("low", "high", "log", "int", "choices", "narrow_from", "top_k", "margin", "narrow")
NARROW_RULES = ("top_k", "tied")


def parse_range(p: Any, name: str, spec: Any, study_name: str, *, is_int: bool) -> SearchRange:
    """Parse [search.NAME]; ``p`` is the study file's parser (it names file and key)."""
    key = f"search.{name}"
    if not isinstance(spec, dict):
        p.fail(key, f"must be a table like [search.{name}]")
    p.only(spec, f"{key}.", KEYS)
    is_int = p.get(spec, f"{key}.int", (bool,), is_int)
    log = p.get(spec, f"{key}.log", (bool,), not is_int)
    if "choices" in spec:
        if "narrow_from" in spec:
            p.fail(key, "has choices, which cannot be narrowed; drop narrow_from or choices")
        if any(k in spec for k in ("low", "high", "int", "log")):
            p.fail(key, "takes either choices or low/high, not both")
        choices = p.get(spec, f"{key}.choices", (list,))
        if not choices or any(not isinstance(c, (str, int, float, bool)) for c in choices):
            p.fail(f"{key}.choices", "must be a non-empty list of strings, numbers or booleans")
        return SearchRange(name=name, choices=list(choices), log=False)
    if "narrow_from" in spec:
        if "low" in spec or "high" in spec:
            p.fail(key, "takes either low/high or narrow_from, not both")
        r = SearchRange(
            name=name,
            log=log,
            is_int=is_int,
            narrow_from=p.get(spec, f"{key}.narrow_from", (str,)),
            top_k=p.get(spec, f"{key}.top_k", (int,), 3),
            margin=float(p.get(spec, f"{key}.margin", (float, int), 0.25)),
            narrow=p.choice(spec, f"{key}.narrow", NARROW_RULES, "top_k"),
        )
        if r.narrow_from == study_name:
            p.fail(f"{key}.narrow_from", "cannot name the study itself")
        if r.top_k < 1:
            p.fail(f"{key}.top_k", f"({r.top_k}) must be at least 1")
        if not 0 <= r.margin <= MAX_MARGIN:  # 10**(best + 320 decades) overflows
            p.fail(f"{key}.margin", f"({r.margin}) must be between 0 and {MAX_MARGIN}")
        return r
    r = SearchRange(
        name=name,
        low=_float(p, spec, f"{key}.low"),
        high=_float(p, spec, f"{key}.high"),
        log=log,
        is_int=is_int,
    )
    if not r.low < r.high:
        p.fail(f"{key}.low", f"({r.low}) must be below high ({r.high})")
    if not math.isfinite(r.high - r.low):  # a float cannot hold the width: Optuna fails
        p.fail(key, f"from {r.low:g} to {r.high:g} is wider than a float can hold; narrow it")
    if r.log and r.low <= 0:
        p.fail(f"{key}.low", f"({r.low}) must be positive for a log range")
    if r.is_int and math.ceil(r.low) > math.floor(r.high):
        p.fail(key, f"holds no integer between {r.low:g} and {r.high:g}")
    return r


def _float(p: Any, spec: dict, key: str) -> float:
    """A required bound as a float; an integer too large for one is refused in one line."""
    value = p.get(spec, key, (float, int), required=True)
    try:
        return float(value)
    except OverflowError:
        p.fail(key, "is larger than a float can hold")
        raise  # (p.fail raises)


def check_search(
    p: Any, raw: dict, search: dict[str, SearchRange], sampler: str, trials: int
) -> None:
    """Refuse what would silently run other values than the study file says; ``p`` is
    the study file's parser, ``raw`` the parsed TOML."""
    if "seed" in search:
        p.fail(
            "search.seed",
            "cannot be searched: every call gets the study's seed ([study] seed, and "
            "seed + 1, ... with repeats); search another name and use it as your seed",
        )
    for table in ("data", "train"):
        for key in p.table(raw, table):
            if key in search:
                p.fail(
                    f"{table}.{key}",
                    f"is fixed here and searched in [search.{key}]; remove one of the two",
                )
    for name, r in search.items():
        if r.choices is not None:
            for i, a in enumerate(r.choices):
                for b in r.choices[:i]:
                    if a == b:  # 1 == 1.0 == true in Python: Optuna could not tell them apart
                        p.fail(
                            f"search.{name}.choices",
                            f"holds {_toml(b)} and {_toml(a)}, which are equal in Python; "
                            "keep one (use strings to tell them apart)",
                        )
    check_grid(sampler, trials, search, p.where)


def distinct_values(r: SearchRange) -> int | None:
    """How many different values a range can take (None: a continuum)."""
    if r.choices is not None:
        return len(r.choices)
    if r.is_int and r.low is not None and r.high is not None:
        return math.floor(r.high) - math.ceil(r.low) + 1
    return None


def check_trials(n: int, where: str, maximum: int) -> int:
    """A study's target (--trials) within 1..maximum."""
    if isinstance(n, bool | np.bool_) or not isinstance(n, numbers.Integral):
        raise StudyFileError(f"{where} ({n!r}) must be a whole number of trials")
    if not 1 <= n <= maximum:
        raise StudyFileError(f"{where} ({n}) must be between 1 and {maximum}")
    return int(n)  # numpy's too, as jobs= takes them


def check_grid(sampler: str, trials: int, search: dict[str, SearchRange], where: str) -> None:
    """A grid searches one parameter (its points are fractions of one range, which
    refinements keep: sweep/store/queue.py) and runs each point once: it cannot have more
    points than values."""
    if sampler != "grid":
        return
    if len(search) > 1:
        # Each point's one fraction would go to every parameter alike: a diagonal, never
        # a grid of their combinations.
        names = ", ".join(f"search.{name}" for name in sorted(search))
        raise StudyFileError(
            f"{where}: a grid searches one parameter, and {names} are searched; use "
            'sampler = "qmc" (evenly spread points over several parameters), or keep one '
            "searched and fix the others in [train]"
        )
    for name, r in search.items():
        n = distinct_values(r)
        if n is not None and trials > n:
            raise StudyFileError(
                f"{where}: a grid of {trials} points over search.{name} would run its "
                f"{n} values more than once; set trials to at most {n} (or --trials)"
            )


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
