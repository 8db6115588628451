"""The search space: each searched parameter's kind and range, and how a point maps to it.

A parameter is a float or an int range (log or linear) or a categorical choice. A fine
stage's range is derived from an earlier study (`narrow_from`) and stored with the study;
`Dimension` is the range actually searched, `SearchRange` what the study file says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna


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
        else:
            x = self.low + u * (self.high - self.low)
        if self.is_int:
            return int(min(max(round(x), math.ceil(self.low)), math.floor(self.high)))
        return float(x)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """What the parameter is recorded with: by `suggest`, and with a queued trial's
        values when it is queued (sweep/enqueue.py), so the two always agree."""
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
        if r.margin < 0:
            p.fail(f"{key}.margin", f"({r.margin}) must be >= 0")
        return r
    r = SearchRange(
        name=name,
        low=float(p.get(spec, f"{key}.low", (float, int), required=True)),
        high=float(p.get(spec, f"{key}.high", (float, int), required=True)),
        log=log,
        is_int=is_int,
    )
    if not r.low < r.high:
        p.fail(f"{key}.low", f"({r.low}) must be below high ({r.high})")
    if r.log and r.low <= 0:
        p.fail(f"{key}.low", f"({r.low}) must be positive for a log range")
    if r.is_int and math.ceil(r.low) > math.floor(r.high):
        p.fail(key, f"holds no integer between {r.low:g} and {r.high:g}")
    return r
