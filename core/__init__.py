"""The numpy core of lambda-sweep: data, network, schedules, training, gradient check.

Pure numpy: no printing, no optuna/pandas/matplotlib. Only ``core.data`` touches files
or the network.
"""

from core.errors import ConfigError, CoreError, DataError, DivergedError

__all__ = ["ConfigError", "CoreError", "DataError", "DivergedError"]
