"""What differs between Linux, macOS and Windows, in one place.

File locks, process liveness, the per-user cache folder and quoting a command for the
user's shell. The rest of the project calls these instead of POSIX-only interfaces
(fcntl.flock, os.kill(pid, 0), /proc/PID/stat, shlex for every shell), so its main path
has no POSIX-only call (README "Installing elsewhere, and where it runs");
tests/system/test_portable.py runs a study with fcntl and signal.pthread_sigmask taken away.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import filelock
import platformdirs
import psutil

from sweep.errors import SweepError

APP = "lambda-sweep"

# filelock waits by retrying a non-blocking lock; 5 ms keeps a waiting worker's delay
# small (the study lock is held for milliseconds) at ~20 us of CPU per retry.
POLL_SECONDS = 0.005


class FileLock:
    """An exclusive lock between processes on ``path`` (created if missing, never deleted).

    filelock's FileLock: flock on POSIX (so it excludes processes that still use a plain
    flock on the same file, as version 0.2 did), msvcrt.locking on Windows. Like an flock
    on one open file, one FileLock object is shared by its process's threads: a lock
    taken in one thread may be released in another (``thread_local=False``). Reentrant:
    each acquire needs its release.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = filelock.FileLock(str(path), thread_local=False)

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; with ``wait=False`` only if nobody holds it. Whether it is held."""
        try:
            self._lock.acquire(timeout=-1 if wait else 0, poll_interval=POLL_SECONDS)
        except filelock.Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def close(self) -> None:
        """Release the lock however many times it was taken."""
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs. A zombie (killed, not yet reaped by its
    parent) does not: its trial is over."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # psutil.ZombieProcess is one too
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


NO_HOME = (
    "no per-user cache folder: the home folder is unknown ({why}); set HOME, or "
    "XDG_CACHE_HOME, to an absolute path, or pass --data-dir"
)


def user_cache_dir() -> Path:
    """The per-user cache folder: ~/.cache/lambda-sweep on Linux ($XDG_CACHE_HOME
    honoured), ~/Library/Caches/lambda-sweep on macOS, %LOCALAPPDATA%/lambda-sweep/Cache
    on Windows. A process with no home folder (HOME unset and a user id with no account,
    as in some containers) gets a one-line SweepError."""
    try:
        return Path(platformdirs.user_cache_dir(APP, appauthor=False))
    except RuntimeError as exc:  # platformdirs: "could not determine the home directory"
        raise SweepError(NO_HOME.format(why=exc)) from None


def home() -> Path:
    """The user's home folder (Path.home()), or the same one-line SweepError."""
    try:
        return Path.home()
    except RuntimeError as exc:
        raise SweepError(NO_HOME.format(why=exc)) from None


def shell_join(args: Sequence[str], *, windows: bool | None = None) -> str:
    """``args`` as one command line to paste into the user's shell: POSIX quoting
    (shlex.join), or on Windows (``windows``, default: this system) the quoting that its
    programs' argument parsing undoes (subprocess.list2cmdline)."""
    if os.name == "nt" if windows is None else windows:
        return subprocess.list2cmdline(list(args))
    return shlex.join(args)


def console_script(name: str) -> str | None:
    """The path of a console script installed with this Python (a venv's bin/ or
    Scripts/, which need not be on PATH), else None."""
    folder = Path(sysconfig.get_path("scripts"))
    for candidate in (folder / name, folder / f"{name}.exe"):
        if candidate.is_file():
            return str(candidate)
    return None


def tolerant_output() -> None:
    """Let stdout and stderr replace what their encoding cannot show (a Windows console
    or a pipe in cp1252 has no λ or ★) with "?" instead of failing the command."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # None under pythonw; pytest's capture has it
            stream.reconfigure(errors="replace")
