"""lambda-sweep orchestration: study files, Optuna objective and storage, workers, reports, CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lambda-sweep")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
