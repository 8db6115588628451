"""lambda-sweep: coarse-to-fine hyperparameter sweeps with Optuna, from Python or the CLI.

The public API (DESIGN.md "Python API"); the `sweep` command is a thin layer over it.
Importing `sweep` is cheap: Optuna, pandas and matplotlib load when a function needs them.

Example:
    >>> import sweep
    >>> def objective(params: dict, ctx: sweep.Context) -> float:
    ...     return -((params["x"] - 1.0) ** 2)
    >>> study = {
    ...     "study": {"name": "demo", "trials": 8},
    ...     "search": {"x": {"low": -4.0, "high": 4.0, "log": False}},
    ... }
    >>> result = sweep.run(study, objective=objective, storage="sqlite:///demo.db", jobs=2)
    >>> result.best
    Best(number=5, params={'x': 0.93}, value=-0.0049)
    >>> sweep.open("demo", storage="sqlite:///demo.db").trials()
"""

import importlib as _importlib
import logging as _logging
import sys as _sys
import types as _types
from importlib.metadata import PackageNotFoundError, version

from sweep.api import reproduce, resume, run, status, worker
from sweep.context import Context
from sweep.errors import SweepError
from sweep.reading import Study, open

try:
    __version__ = version("lambda-sweep")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "Context",
    "Study",
    "SweepError",
    "__version__",
    "open",
    "reproduce",
    "resume",
    "run",
    "status",
    "worker",
]

_logging.getLogger("sweep").addHandler(_logging.NullHandler())  # a library's logger

_FUNCTIONS = frozenset({"reproduce", "resume", "worker"})


class _Package(_types.ModuleType):
    """sweep/reproduce.py, resume.py and worker.py share their names with API functions.
    Importing such a module sets it as an attribute of this package, which would hide the
    function (``sweep.resume`` would become the module): the function is kept.
    ``from sweep.resume import resume_study`` and pickling are unaffected (they look the
    module up in sys.modules)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _FUNCTIONS and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)

    def __reduce__(self) -> tuple:
        # A function that uses `sweep` (sent to workers by cloudpickle) refers to it by
        # name, as to any module.
        return (_importlib.import_module, (self.__name__,))


_sys.modules[__name__].__class__ = _Package
