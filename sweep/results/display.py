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


# The tool's own columns, in tables, `sweep trials` and the figures' data. A searched
# parameter or a metric of the same name keeps its value under param.NAME / metric.NAME,
# never over the tool's column (a metric "state" beside the real state).
TOOL_COLUMNS = frozenset(
    {"trial", "number", "state", "value", "se", "sd", "tied", "rank", "best", "reason"}
    | {"seconds", "study", "stage", "best_in_study"}
)


RENAMED = ("param.", "metric.")  # a name like a renamed column's is renamed too


def param_column(name: str) -> str:
    return f"param.{name}" if name in TOOL_COLUMNS or name.startswith(RENAMED) else name


def objective_column(metric: str, params: list[str] | tuple[str, ...] = ()) -> str:
    """The objective's column: "value" when that is its name (a function that returns a
    bare number), since the trial's value is that number, else as `metric_column`."""
    return "value" if metric == "value" else metric_column(metric, params)


def metric_column(name: str, params: list[str] | tuple[str, ...] = ()) -> str:
    """A metric's column: its name, unless that is a tool column, a parameter's name,
    looks like one of the sd columns or like a renamed column ("metric.value")."""
    clash = name in TOOL_COLUMNS or name in params or name.endswith("_sd")
    return f"metric.{name}" if clash or name.startswith(RENAMED) else name
