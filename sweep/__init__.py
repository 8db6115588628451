"""lambda-sweep orchestration: study files, Optuna objective and storage, workers, reports, CLI."""

# The one place the version is written: pyproject.toml reads it from here
# ([tool.setuptools.dynamic]), `sweep --version` prints it.
__version__ = "0.3.0"
