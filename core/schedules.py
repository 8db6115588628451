"""Cyclical learning rates (Smith 2015) as pure functions of the update step."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    """A cyclical learning rate: one cycle is ``2 * n_s`` update steps.

    ``gamma`` is only used by ``exp_range`` (the amplitude is multiplied by ``gamma**step``).
    """

    kind: str = "triangular"
    eta_min: float = 1e-5
    eta_max: float = 1e-1
    n_s: int = 500
    gamma: float = 0.99994

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}"
            )
        if not self.eta_min > 0:
            raise ConfigError(f"eta_min ({self.eta_min}) must be positive")
        if not math.isfinite(self.eta_max):
            raise ConfigError(f"eta_max ({self.eta_max}) must be a finite number")
        if not self.eta_min < self.eta_max:
            raise ConfigError(f"eta_min ({self.eta_min}) must be below eta_max ({self.eta_max})")
        if self.n_s <= 0:
            raise ConfigError(f"n_s ({self.n_s}) must be a positive number of steps")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma ({self.gamma}) must lie in (0, 1]")


def _triangle(step: int, n_s: int) -> float:
    """0 at t = 2l*n_s, 1 at t = (2l+1)*n_s, linear in between."""
    phase = step % (2 * n_s)
    return phase / n_s if phase <= n_s else 2.0 - phase / n_s


def triangular(step: int, s: Schedule) -> float:
    return s.eta_min + (s.eta_max - s.eta_min) * _triangle(step, s.n_s)


def triangular2(step: int, s: Schedule) -> float:
    """Triangular with the amplitude halved after every cycle."""
    cycle = step // (2 * s.n_s)
    return s.eta_min + (s.eta_max - s.eta_min) * _triangle(step, s.n_s) * 0.5**cycle


def exp_range(step: int, s: Schedule) -> float:
    """Triangular with the amplitude scaled by ``gamma**step``."""
    return s.eta_min + (s.eta_max - s.eta_min) * _triangle(step, s.n_s) * math.pow(s.gamma, step)


SCHEDULES: dict[str, Callable[[int, Schedule], float]] = {
    "triangular": triangular,
    "triangular2": triangular2,
    "exp_range": exp_range,
}


def eta(step: int, schedule: Schedule) -> float:
    """The learning rate at update step ``step`` (0-based)."""
    return SCHEDULES[schedule.kind](step, schedule)
