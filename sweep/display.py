"""How values are shown to people: metric labels, and numbers (accuracies in percent)."""

from __future__ import annotations

import math
from typing import Any


def label(name: str) -> str:
    """A column heading: val_accuracy -> "val accuracy"."""
    return name.replace("_", " ")


def number(name: str, value: Any) -> str:
    """A value of the metric or parameter ``name``: accuracies as percentages, other
    numbers to 4 significant digits, missing ones as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.2%}" if "accuracy" in name else f"{value:.4g}"
    return str(value)


def params(values: dict[str, Any]) -> str:
    """Searched values in one line: "lambda 0.003061, hidden 50"."""
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )
