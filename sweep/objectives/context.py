"""What an objective receives: the Context protocol (`sweep.Context`), for type hints.

sweep/objectives/objective.py Context is the real one, and satisfies it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Context(Protocol):
    """What an objective receives besides its params (sweep/objectives/objective.py Context is one).

    Example:
        >>> import sweep
        >>> def objective(params: dict, ctx: sweep.Context) -> float:
        ...     for epoch in range(3):
        ...         ctx.report(epoch, 0.5 + 0.1 * epoch)  # pruners may stop the trial here
        ...     return 0.7
    """

    trial: int  # the trial's number in its study
    data_dir: str | None  # the data_dir given to run/resume/worker (`--data-dir`), or None

    def report(self, step: int, value: float, **more: float) -> None:
        """An intermediate value at ``step``; ``more`` adds other curves. Raises
        optuna.TrialPruned when the study's pruner stops the trial."""
        ...

    def keep_outcomes(self, correct: Any) -> None:
        """Which validation examples the final model got right (bool array): kept with
        the trial, to tell ties with the best apart (McNemar)."""
        ...


# The function a study optimises: f(params, ctx) -> a number, or a dict of named numbers.
Function = Callable[[dict[str, Any], Context], "float | Mapping[str, float]"]
