"""Ctrl-C and SIGTERM: how a command stops, the same way on every signal that asks it to.

The console script (`entry` in sweep/cli/main.py) installs `handle` for SIGINT, SIGTERM
and, on Windows, SIGBREAK. The first signal raises `Stopped` (a KeyboardInterrupt, so every `except
KeyboardInterrupt` that cleans up also runs for SIGTERM); any later one is ignored, so a
second Ctrl-C 10 ms after the first (what `timeout` and some terminals send) cannot break
the clean-up half-way. Inside `deferred()` a signal is held back until the block ends, for
steps that must not be cut in two (creating the schema, ending a trial).

Worker processes never act on these signals (`ignore_in_children`): the command that
started them stops them, fails their trials with the reason (`reason()`) and exits with
`exit_code()`: 130 for Ctrl-C, 143 for SIGTERM, as shells report them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator

STOP = threading.Event()  # a stop signal arrived (loops that wait look at it)
# "watch": a stop ends the process if its clean-up hangs (the command; not a library call,
# whose caller, a notebook's kernel say, lives on).
_state: dict = {"signum": None, "deferred": 0, "pending": False, "watch": True, "watching": False}
_watching = threading.Lock()

SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name)
)


class Stopped(KeyboardInterrupt):
    """The command was asked to stop (Ctrl-C or SIGTERM)."""


def handle(signum: int, frame: object) -> None:
    """The handler for SIGNALS in the command's own process."""
    if STOP.is_set():
        return  # cleaning up after the first one already
    STOP.set()
    _state["signum"] = signum
    if _state["watch"]:
        _watch_the_exit()
    if _state["deferred"]:
        _state["pending"] = True
        return
    raise Stopped


# How long the clean-up after a stop signal may take before the process ends regardless.
# It takes well under a second; once, in CI, a Ctrl-C early in `sweep run` left the command
# waiting at its exit for over 60 s (not reproduced in 305 attempts since).
STOP_GRACE_SECONDS = 30.0


def _watch_the_exit() -> None:
    """A command asked to stop must stop: if the clean-up has not ended this process
    STOP_GRACE_SECONDS after the signal, say so and exit with the signal's code. Trials
    it left running are queued again once their heartbeat goes stale (sweep resume).
    Once per process: the signal's thread (`_hear_signals`) and `handle` both call it."""
    with _watching:
        if _state["watching"]:
            return
        _state["watching"] = True

    def force() -> None:
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"error: {reason()}; the clean-up took over {STOP_GRACE_SECONDS:g} s, "
                "so the command ends without it (`sweep resume` recovers its trials)\n"
            )
            sys.stderr.flush()
        _exit(exit_code())

    timer = threading.Timer(STOP_GRACE_SECONDS, force)
    timer.daemon = True
    timer.start()


def install() -> None:
    """Handle SIGNALS with `handle` in this process (the `sweep` command). Installed
    already (the console script, then sweep/cli/main.py), it keeps a signal that arrived
    in between and that a library's bare ``except`` swallowed: STOP still says so."""
    if all(signal.getsignal(sig) is handle for sig in SIGNALS):
        return
    _take_signals(watch=True)
    _hear_signals()


def _hear_signals() -> None:
    """Start the command's STOP_GRACE_SECONDS as the signal arrives, in a thread.

    Python runs `handle` in the main thread between two bytecodes: one blocked in C code
    does not run it. A SQLite call waiting up to 60 s for another program's lock on the
    database (a DB browser's open transaction) left a SIGTERM unanswered until the lock
    was released, 73 s later, and the grace period never began. Python's C-level handler
    writes each signal's number to the wakeup fd at once, whatever the main thread does;
    this thread reads it. (Not for library calls: a notebook's event loop owns the fd.)
    """
    if _state.get("wakeup"):
        return
    try:
        reader, writer = socket.socketpair()
    except OSError:  # (Windows: a loopback TCP pair, which a firewall may refuse)
        return
    writer.setblocking(False)
    try:
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main thread, or a platform without it
        reader.close()
        writer.close()
        return
    _state["wakeup"] = (reader, writer)  # kept open for the process's life
    if hasattr(os, "register_at_fork"):  # a child forked by the user's function (a
        # multiprocessing Pool's) would write its own signals to this process's fd
        os.register_at_fork(after_in_child=_deaf_child)

    def hear() -> None:
        while data := reader.recv(64):
            stops = [n for n in data if n in SIGNALS]
            if stops and _state["watch"]:
                if _state["signum"] is None:
                    _state["signum"] = stops[0]
                _watch_the_exit()

    threading.Thread(target=hear, name="sweep-signals", daemon=True).start()


def _deaf_child() -> None:
    """In a process forked from the command: its signals are its own, not the command's
    (a Pool's workers get SIGTERM as the pool closes; through the inherited wakeup fd
    that started the command's 30-s exit, which ended `sweep worker` mid-trial)."""
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
    for end in _state.pop("wakeup", ()):
        end.close()
    _state["watch"] = False


def _take_signals(*, watch: bool) -> None:
    """`handle` for SIGNALS, with no stop seen yet; ``watch``: see _state."""
    STOP.clear()
    _state.update(signum=None, deferred=0, pending=False, watch=watch)
    for sig in SIGNALS:
        signal.signal(sig, handle)


@contextlib.contextmanager
def handled_in_call() -> Iterator[None]:
    """A library call (sweep.run, resume, worker, reproduce) in a script or a notebook:
    SIGNALS handled as in the command while it runs (the first fails the running trials
    and raises Stopped, a KeyboardInterrupt; a second during that clean-up is ignored,
    where Python's own handler broke it half-way, and SIGTERM no longer ends the process
    on the spot), then the caller's handlers put back. Only the main thread can set them:
    from another one, or inside the command (installed already), nothing changes."""
    mine = all(signal.getsignal(sig) is handle for sig in SIGNALS)
    if mine or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _take_signals(watch=False)
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, signal.SIG_DFL if before is None else before)
        _state["watch"] = True
        STOP.clear()  # the call's stop is over: a later run in this process is not stopped


def ignore_all() -> None:
    """After the command's work is done: an interrupt during interpreter shutdown (loky's
    exit handlers) would only print a traceback."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def ignore_here() -> None:
    """A worker process: ignore SIGNALS, and lift the block it was started with (see
    `ignore_in_children`) so that what it starts has the usual mask."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(SIGNALS))


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal back until the block ends (then raise Stopped)."""
    _state["deferred"] += 1
    try:
        yield
    finally:
        _state["deferred"] -= 1
    if not _state["deferred"] and _state["pending"]:
        _state["pending"] = False
        raise Stopped


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Imports a Ctrl-C must not break half-way: a half-imported SQLAlchemy stays broken in
    the process, and every later call in a notebook failed ("module 'sqlalchemy' has no
    attribute 'event'"). The signal is held back to the block's end: by `deferred` under
    this module's handler, else (a notebook's reading call) by a handler set for the block,
    then raised as Python's own KeyboardInterrupt."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is handle:
        with deferred():
            yield
        return
    heard: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: heard.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if before is None else before)
    if heard:
        raise KeyboardInterrupt


@contextlib.contextmanager
def ignore_in_children() -> Iterator[None]:
    """Processes started in here act on no SIGINT or SIGTERM until they ignore them, and
    one that reaches this process meanwhile is held back to the block's end, then handled
    as usual (a Stopped in the command; Python's own KeyboardInterrupt in a script).

    POSIX: this thread blocks the signals, and children start with their creator's mask
    (fork and exec keep it) and lift it once they ignore them (`ignore_here`). One that
    another thread of this process takes (NumPy's BLAS threads, tqdm's monitor) runs the
    handler set here, which holds it. Ignoring them here instead, so that the children
    inherit the ignore, lost them: an ignored signal is dropped by a thread that does not
    block it (Linux) or at once (macOS); measured on Linux, a SIGTERM 0.25-0.40 s into
    `sweep run` ended in a finished run and exit code 0 in 10 of 93 tries, 0 since.
    Windows has no signal masks: there the children inherit the ignore.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal.signal works only in the main thread
        return
    old = {sig: signal.getsignal(sig) for sig in SIGNALS}
    masked = hasattr(signal, "pthread_sigmask")
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    if masked:
        _start_resource_tracker()
    for sig in SIGNALS:
        signal.signal(sig, hold if masked else signal.SIG_IGN)
    if masked:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(SIGNALS))
    try:
        yield
    finally:
        for sig, handler in old.items():
            if handler is not None:  # None: set outside Python, and left as it is
                signal.signal(sig, handler)
        if masked:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # one still pending arrives now
            if held:
                signal.raise_signal(held[0])  # one that a thread took, to the usual handler


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker now, outside `ignore_in_children`'s block.

    loky starts it with its first worker. Python 3.11-3.13's tracker, once started,
    unblocks SIGINT and SIGTERM in the calling thread instead of restoring its mask (3.14
    restores it): inside the block, the workers started after it would not inherit the
    block, and one arriving then was lost. Started first, it is found running there.
    (A workaround: the standard library offers no way to start it without touching the
    mask; tests/system/test_signals.py pins it.)
    """
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def reason() -> str:
    """What a trial stopped by the signal records as its failure."""
    return "terminated" if _state["signum"] == getattr(signal, "SIGTERM", None) else "interrupted"


def exit_code() -> int:
    return 143 if reason() == "terminated" else 130


OVERRUN_EXIT = 70  # the exit code of a process whose block ran past its deadline's grace
HARD_GRACE_SECONDS = 10.0  # after a deadline, how long a function may ignore it
_exit = os._exit  # the real one (objective.py guards os._exit while a function runs)


@contextlib.contextmanager
def deadline(
    seconds: float | None,
    make_error: Callable[[float], BaseException],
    *,
    on_overrun: Callable[[], None],
) -> Iterator[None]:
    """Raise ``make_error(seconds)`` in the block when it runs longer than ``seconds``.

    Where there is SIGALRM (POSIX, main thread) the error is raised inside the running
    code, a sleep included. A block that still runs HARD_GRACE_SECONDS later (stuck in C
    code that never returns to Python, or without SIGALRM: at once) cannot be stopped
    from inside: ``on_overrun()`` records what it must, and the process exits (a worker
    process is replaced by its pool).
    """
    if not seconds:
        yield
        return
    done = threading.Event()
    soft = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()

    def watchdog() -> None:
        if not done.wait(seconds + (HARD_GRACE_SECONDS if soft else 0.0)):
            on_overrun()
            _exit(OVERRUN_EXIT)

    if soft:

        def alarm(signum: int, frame: object) -> None:
            if not done.is_set():
                raise make_error(seconds)

        old = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    threading.Thread(target=watchdog, daemon=True).start()
    try:
        yield
    finally:
        done.set()
        if soft:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
