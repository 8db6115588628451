"""The values a study tries: computed from the study seed, so `--jobs` never changes them.

For `random`, `qmc` and `grid` the orchestrator enqueues point i of a deterministic,
prefix-stable sequence (point i does not depend on how many points are asked for), so
topping up a study continues the same sequence. `tpe` adapts to results, so its workers
sample (each with its own seed) and nothing is planned.
"""

from __future__ import annotations

import math

import numpy as np
import optuna

PLANNED = ("random", "qmc", "grid")
PRIMES = (2, 3, 5, 7, 11, 13)


def unit_point(sampler: str, seed: int, index: int, dim: int, total: int) -> list[float]:
    """Point ``index`` in [0, 1)^dim of the study's sequence."""
    if sampler == "random":
        return list(np.random.default_rng([seed, index]).random(dim))
    if sampler == "qmc":
        # Halton sequence with a Cranley-Patterson rotation drawn from the seed.
        shift = np.random.default_rng([seed, 0x9E3779B9]).random(dim)
        return [(_radical_inverse(index + 1, PRIMES[j]) + shift[j]) % 1.0 for j in range(dim)]
    if sampler == "grid":
        # Evenly spaced, both ends included; a grid has exactly `total` points.
        return [index / (total - 1) if total > 1 else 0.5] * dim
    raise ValueError(f"sampler {sampler!r} plans no points")


def _radical_inverse(i: int, base: int) -> float:
    out, f = 0.0, 1.0 / base
    while i:
        i, digit = divmod(i, base)
        out += digit * f
        f /= base
    return out


def point(
    sampler: str, seed: int, index: int, ranges: dict[str, tuple[float, float, bool]], total: int
) -> dict[str, float]:
    """Parameter values of point ``index``: ranges = {name: (low, high, log)}."""
    u = unit_point(sampler, seed, index, len(ranges), total)
    values = {}
    for (name, (low, high, log)), x in zip(sorted(ranges.items()), u, strict=True):
        if log:
            values[name] = 10 ** (math.log10(low) + x * (math.log10(high) - math.log10(low)))
        else:
            values[name] = low + x * (high - low)
    return values


def sampler_for(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler a worker uses for trials that were not enqueued."""
    table = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "qmc": lambda: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
    }
    return table[name]()


def pruner_for(name: str) -> optuna.pruners.BasePruner:
    table = {
        "none": optuna.pruners.NopPruner,
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
        "hyperband": optuna.pruners.HyperbandPruner,
    }
    return table[name]()
