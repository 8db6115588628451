"""The values a study tries: computed from the study seed, so `--jobs` never changes them.

For `random`, `qmc` and `grid` the orchestrator enqueues point i of a deterministic,
prefix-stable sequence (point i does not depend on how many points are asked for), so
topping up a study continues the same sequence. `tpe` adapts to results, so its workers
sample (each with its own seed) and nothing is planned.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import optuna

from sweep.spec.space import Dimension, dimension

PLANNED = ("random", "qmc", "grid")
PRIMES = (2, 3, 5, 7, 11, 13)


def unit_point(sampler: str, seed: int, point: Any, dim: int) -> list[float]:
    """A planned point in [0, 1]^dim: ``point`` is an index into the seeded sequence
    (random, qmc) or, for a grid, [j, intervals] = the fraction j / intervals."""
    if sampler == "random":
        return list(np.random.default_rng([seed, point]).random(dim))
    if sampler == "qmc":
        # Halton sequence with a Cranley-Patterson rotation drawn from the seed.
        shift = np.random.default_rng([seed, 0x9E3779B9]).random(dim)
        return [(_radical_inverse(point + 1, PRIMES[j]) + shift[j]) % 1.0 for j in range(dim)]
    if sampler == "grid":
        return [float(Fraction(*point))] * dim
    raise ValueError(f"sampler {sampler!r} plans no points")


def grid_units(total: int) -> list[Fraction]:
    """A grid of ``total`` evenly spaced points of [0, 1], both ends included (one: 1/2)."""
    if total == 1:
        return [Fraction(1, 2)]
    return [Fraction(j, total - 1) for j in range(total)]


def _radical_inverse(i: int, base: int) -> float:
    out, f = 0.0, 1.0 / base
    while i:
        i, digit = divmod(i, base)
        out += digit * f
        f /= base
    return out


def values_at(
    sampler: str, seed: int, point: Any, space: dict[str, Dimension | tuple]
) -> dict[str, Any]:
    """Parameter values of a planned point: space = {name: Dimension or (low, high, log)}."""
    u = unit_point(sampler, seed, point, len(space))
    return {
        name: dimension(d).value(x) for (name, d), x in zip(sorted(space.items()), u, strict=True)
    }


def sampler_for(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler a worker uses for trials that were not enqueued."""
    seed %= 2**32  # numpy's legacy generators, which Optuna seeds, take 32-bit seeds
    table = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "qmc": lambda: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
    }
    return table[name]()
