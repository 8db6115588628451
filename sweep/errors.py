"""The one exception family of the sweep layer, translated into `error: ...` by the CLI."""

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
    """Ctrl-C (exit code 130) or SIGTERM (143) stopped the command; its running trials
    were marked failed and queued again (sweep/signals.py)."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code
