"""Exceptions raised by the core; the CLI maps them to exit codes."""


class CoreError(Exception):
    """Base class for every error the core raises on purpose."""


class ConfigError(CoreError, ValueError):
    """A hyperparameter or option is out of range (bad input, exit code 2)."""


class DataError(CoreError):
    """The data set is missing, corrupt or cannot be downloaded (bad input, exit code 2)."""


class DivergedError(CoreError):
    """Training produced a non-finite cost; ``step`` is the update step where it happened."""

    def __init__(self, step: int, cost: float):
        super().__init__(f"training diverged at step {step}: cost is {cost}")
        self.step = step
        self.cost = cost
