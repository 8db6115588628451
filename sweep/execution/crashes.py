"""Where a user function crashed its process, in one line of the trial's reason.

A function that crashes its process (a segfault in a C extension, say) leaves no Python
exception to report. loky turns Python's fault handler on in every worker, and its dump
of every thread's stack (~50 lines a crash, the heartbeat's included) buried the
command's output. Pool workers now start with it off (`quiet_env`). A trial that crashed
a worker runs again alone (worker.run_isolated); that process writes its dump to a file
(`record_to`), from which `how` keeps the innermost frame of the user's code:
"SIGSEGV in objective at model.py:4". PYTHONFAULTHANDLER=1 (Python's own
setting) keeps the full dumps on stderr instead.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import signal
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

SETTING = "PYTHONFAULTHANDLER"
FRAME = re.compile(r'^\s*File "(?P<file>.+)", line (?P<line>\d+) in (?P<function>.+)$')


def quiet_env() -> dict[str, str]:
    """Pool workers' share of the environment: no dump unless the user set PYTHONFAULTHANDLER
    (loky turns the handler on unless the variable is set; Python reads "" as off)."""
    return {} if SETTING in os.environ else {SETTING: ""}


@contextlib.contextmanager
def log() -> Iterator[IO[bytes] | None]:
    """A file for a child process's dump, to pass as ``pass_fds=[log.fileno()]``. It has no
    name (POSIX removes it at once), so a process killed while it waits leaves nothing
    behind. None elsewhere, or if no temporary file can be made: the reason then names the
    signal alone."""
    if os.name != "posix":
        yield None  # (no signals there: a crash is an exit code)
        return
    with contextlib.ExitStack() as stack:
        try:
            dump = stack.enter_context(tempfile.TemporaryFile())
        except OSError:
            dump = None
        yield dump


def record_to(fd: int | None) -> None:
    """In the child: on a crash, write this thread's stack to the inherited ``fd``."""
    if fd is None or os.environ.get(SETTING):
        return  # the user asked for Python's dump on stderr
    with contextlib.suppress(OSError, ValueError):
        faulthandler.enable(file=fd, all_threads=False)


def dump_here() -> None:
    """`sweep worker --jobs 1` runs its trials in its own process: a function that crashes
    it ends the command, which then could say nothing. Python's dump on stderr says what
    happened and where ("Fatal Python error: Segmentation fault", the function's frames)."""
    if not faulthandler.is_enabled():
        with contextlib.suppress(OSError, ValueError, AttributeError):  # (no usable stderr)
            faulthandler.enable(all_threads=False)


def how(returncode: int, dump: IO[bytes] | None) -> str:
    """How a child process ended: "exit code 3", or "SIGSEGV" and where, read from its
    ``dump`` (`log`): "SIGSEGV in objective at model.py:4"."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    where = _where(dump)
    return f"{name} {where}" if where else name


def _where(dump: IO[bytes] | None) -> str:
    """The user's innermost frame in the dump: the innermost outside Python, its packages
    and lambda-sweep; for a function installed as a package itself, the one lambda-sweep
    called (not numpy's or ctypes' beneath it); else the innermost. "" without a dump."""
    try:
        dump.seek(0)  # type: ignore[union-attr]
        text = dump.read().decode("utf-8", "replace")  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return ""
    frames = [m for m in map(FRAME.match, text.splitlines()) if m]  # innermost first
    if not frames:
        return ""
    frame = next((f for f in frames if not _under(f["file"], *_installed())), None)
    if frame is None:
        ours = next((i for i, f in enumerate(frames) if _under(f["file"], _SWEEP)), 0)
        frame = frames[max(ours - 1, 0)]
    return f"in {frame['function']} at {Path(frame['file']).name}:{frame['line']}"


_SWEEP = str(Path(__file__).resolve().parents[1])  # the sweep/ package


def _installed() -> list[str]:
    """Python's folders, its packages' and lambda-sweep's."""
    paths = sysconfig.get_paths()
    return [*{paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}, _SWEEP]


def _under(file: str, *roots: str) -> bool:
    """Whether a frame's file is in one of ``roots`` (<string>, <frozen ...> are Python's)."""
    if file.startswith("<"):
        return True
    here = os.path.abspath(file)
    return any(here.startswith(os.path.abspath(root) + os.sep) for root in roots)
