"""The console while a command works: lines that a closed pipe (`| head`) never stops,
and the progress line."""

from __future__ import annotations

import os
import sys
from typing import Any


def emit(text: str, stream: Any = None, end: str = "\n") -> None:
    """Print while the work goes on: a reader that went away (`| head`) must not stop it."""
    stream = stream or sys.stdout
    try:
        print(text, end=end, file=stream, flush=True)
    except BrokenPipeError:
        silence(stream)


def print_progress(p) -> None:
    if sys.stderr.isatty():
        emit("\r\033[K" + p.text(), sys.stderr, end="")
    else:
        emit(p.text(), sys.stderr)


def silence(stream: Any) -> None:
    """Point a closed pipe's stream at the null device, so that the interpreter's last
    flush does not print 'Exception ignored ... BrokenPipeError'."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):
        pass
