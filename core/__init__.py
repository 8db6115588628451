"""The numpy core of lambda-sweep: data, network, schedules, training, gradient check.

Pure numpy: no printing, no optuna/pandas/matplotlib. Only ``core.data`` touches files
or the network.
"""

from core.errors import ConfigError, CoreError, DataError, DivergedError

# Which distribution this `core` belongs to: sweep/__init__.py checks it, since other
# projects name packages `core` too.
__distribution__ = "lambda-sweep"

__all__ = ["ConfigError", "CoreError", "DataError", "DivergedError"]
