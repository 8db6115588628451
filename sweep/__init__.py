"""lambda-sweep: coarse-to-fine hyperparameter sweeps with Optuna, from Python or the CLI.

The public API (README "From Python and Jupyter"); the `sweep` command is a thin layer over it.
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
    Best(number=3, params={'x': 1.2356...}, value=-0.0555...)
    >>> sweep.open("demo", storage="sqlite:///demo.db").trials()  # a DataFrame, a row per trial
"""

import importlib.util
from pathlib import Path

# The one place the version is written: pyproject.toml reads it from here
# ([tool.setuptools.dynamic]), `sweep --version` prints it.
__version__ = "0.3.0"


def _check_core() -> None:
    """Make sure `core` is this distribution's own package.

    The design names the numpy core's import package plain `core`, a name other
    projects use too: a core.py or core/ in the working folder (python -m, notebooks), on
    PYTHONPATH, or another distribution's `core` installed over ours would be imported in
    its place and fail somewhere deep inside a trial. Ours sits beside this package (in a
    wheel, an editable install or a checkout alike); anything else is refused here, at
    import, with the place it was found. find_spec reads where `core` would come from
    without running it (or returns the module already imported).
    """
    ours = Path(__file__).resolve().parent.parent / "core" / "__init__.py"
    spec = importlib.util.find_spec("core")
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    if origin == ours:
        import core  # ours by place; by content too, unless another `core` was installed over it

        if getattr(core, "__distribution__", None) == "lambda-sweep":
            return
    where = origin or (list(spec.submodule_search_locations or []) if spec else "nowhere")
    raise ImportError(
        f"lambda-sweep needs its own package 'core' ({ours.parent}), but Python imports "
        f"another one ({where}): rename or move that core (or take it off PYTHONPATH), "
        "or reinstall lambda-sweep if another distribution's core was installed over it"
    )


_check_core()

import logging as _logging  # noqa: E402

from sweep.api import reproduce, resume, run, status, worker  # noqa: E402
from sweep.errors import SweepError  # noqa: E402
from sweep.objectives.context import Context  # noqa: E402
from sweep.reading import Study, open  # noqa: E402

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
