"""The console while a command works: lines that a closed pipe (`| head`) never stops,
and the progress line."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
from collections.abc import Iterator
from typing import Any

from sweep.cli.arguments import TABLES
from sweep.system import signals


def emit(text: str, stream: Any = None, end: str = "\n") -> None:
    """Print while the work goes on: a reader that went away (`| head`) must not stop it."""
    stream = stream or sys.stdout
    try:
        print(text, end=end, file=stream, flush=True)
    except BrokenPipeError:
        silence(stream)


def live() -> bool:
    """Whether progress may redraw one line (a terminal that is not TERM=dumb); otherwise
    each update is a plain line, as logs and CI want."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


class _Line:
    """The progress line on a terminal: tqdm's status line (it knows how each console
    redraws a line, Windows' included)."""

    bar = None

    @classmethod
    def show(cls, text: str) -> None:
        if cls.bar is None:
            from tqdm import tqdm

            cls.bar = tqdm(total=0, bar_format="{desc}", file=sys.stderr, leave=False)
        try:
            cls.bar.set_description_str(text)
        except BrokenPipeError:
            silence(sys.stderr)

    @classmethod
    def end(cls) -> None:
        if cls.bar is not None:
            cls.bar.close()
            cls.bar = None


_printed = {"line": None}  # the last progress line printed as a plain line


def print_progress(p) -> None:
    text = p.text()
    if live():
        _Line.show(text)
    elif text != _printed["line"]:  # a log gets each state once, not once per poll
        _printed["line"] = text
        emit(text, sys.stderr)


def end_progress() -> None:
    """Clear the progress line before other output."""
    _Line.end()
    _printed["line"] = None


def silence_closed() -> bool:
    """Point stdout and stderr at the null device where their reader went away (`| head`);
    whether one had. A BrokenPipeError with both still read came from the command's own
    work (a helper process that could not start, say): a failure, not a finished command."""
    gone = [stream for stream in (sys.stdout, sys.stderr) if reader_gone(stream)]
    for stream in gone:
        silence(stream)
    return bool(gone)


def reader_gone(stream: Any) -> bool:
    """Whether ``stream`` is a pipe whose reading end is closed (poll() says so: POLLERR
    on Linux, POLLHUP elsewhere). Without poll() (Windows) any broken pipe is taken for the
    output's."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def silence(stream: Any) -> None:
    """Point a closed pipe's stream at the null device, so that the interpreter's last
    flush does not print 'Exception ignored ... BrokenPipeError'."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):
        pass


class Warnings(logging.Handler):
    """The library's warnings (a download starting, a journal lock broken) as plain lines
    on the current stderr while a command runs; its INFO notes the commands print
    themselves. Library use stays quiet (the "sweep" logger has only a NullHandler)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        end_progress()
        emit(record.getMessage(), sys.stderr)

    @classmethod
    @contextlib.contextmanager
    def shown(cls) -> Iterator[None]:
        """One such handler on the "sweep" logger while the block (a command) runs."""
        logger, handler = logging.getLogger("sweep"), cls()
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)


@contextlib.contextmanager
def trials_print_to_stderr() -> Iterator[None]:
    """While trials run in this process (`sweep worker --jobs 1`): what a function prints,
    Python's print or a C library's, goes to stderr, as it does from a worker process
    (sweep/execution/processes.py init_process), so that stdout (`--json`, a pipe) stays the
    command's own."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # a closed stream: leave it as it is
        yield
        return
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def tables_in(out: str) -> Iterator[None]:
    """`sweep run` and `resume`: the resume commands printed meanwhile (Ctrl-C, a time
    limit) pass ``out`` on, so the resumed run's tables land beside the first ones (the
    default needs no --out: it is the resumed run's default too)."""
    from sweep.execution.runner import TABLES_OUT

    token = TABLES_OUT.set(shown_out(out))
    try:
        yield
    finally:
        TABLES_OUT.reset(token)


def shown_out(out: str) -> str | None:
    """``out`` as a printed resume command passes it: None for the default."""
    return None if out == TABLES else out


def print_run(result, out: str, storage: str | None, as_json: bool) -> None:
    """`sweep run` and `resume`: write the study's tables, then print the result."""
    from sweep.results.tables import write_study_tables

    end_progress()  # tables even of a finished study: a Ctrl-C may have come before them
    try:
        result.tables = write_study_tables(result.study, storage, out)
    except KeyboardInterrupt:  # after the last trial: the study is done
        from sweep.errors import Interrupted
        from sweep.execution.runner import resume_command
        from sweep.store.urls import resolve_url

        command = resume_command(result.study, resolve_url(storage), None, out=shown_out(out))
        raise Interrupted(
            f"{signals.reason()}; the run had ended, its tables were not written. "
            f"Write them with: {command}",
            exit_code=signals.exit_code(),
        ) from None
    print(result.json() if as_json else result.text())
