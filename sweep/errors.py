"""The one exception family of the sweep layer, translated into `error: ...` by the CLI."""

import threading


class SweepError(Exception):
    """An error with a message that says what is wrong and what to do. Exit code 2."""

    exit_code = 2


class StudyFileError(SweepError):
    """A study file is missing, not TOML, or has an unknown key, a wrong type or a bad value."""


class StorageError(SweepError):
    """The storage URL is unusable: unknown scheme, unreachable server, not a database."""


class StudyNotFound(SweepError):
    """No study of that name in the storage."""


class RunFailed(SweepError):
    """A run or check finished but failed (exit code 1)."""

    exit_code = 1


class Interrupted(SweepError):
    """The user pressed Ctrl-C; running trials were marked failed (exit code 130)."""

    exit_code = 130


# Set by the console script's Ctrl-C handler (cli.entry). A Ctrl-C that lands while Python
# runs a garbage-collection callback is printed as "ignored" there and lost; loops that
# wait (pool.run) look at this flag so that it still stops the command.
INTERRUPTED = threading.Event()
