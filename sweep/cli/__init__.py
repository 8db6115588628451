"""The `sweep` command: its grammar (arguments), dispatch and rendering (main), the lines it
prints while work goes on (console), and `sweep dashboard`. Each command is one call into
sweep/api.py or sweep/execution/ plus printing."""


def entry() -> None:
    """The console script (pyproject.toml); `python -m sweep.cli` runs the same.

    Ctrl-C and SIGTERM are handled (sweep/system/signals.py) before the command's modules
    load, so that one arriving while they do ends the command in one line too."""
    import sys
    import time

    started = time.time()  # before the command's imports: --time-limit counts from here
    _open_closed_streams()
    try:
        from sweep.system import signals

        signals.install()
        from sweep.cli.main import entry as run

        run(started)  # main() handles its own; this catches one in the imports around it
    except KeyboardInterrupt:
        handled = sys.modules.get("sweep.system.signals")  # None: before it was imported
        reason, code = (handled.reason(), handled.exit_code()) if handled else ("interrupted", 130)
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(code)


def _open_closed_streams() -> None:
    """A command started with stdin, stdout or stderr closed (`sweep run ... >&-`): Python
    leaves sys.stdout None, and the next file opened (the study database) would take
    descriptor 1, where a worker's or a C library's output would then land. The null
    device takes the closed descriptor first; what the command prints there is dropped."""
    import os
    import sys

    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: fd itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)  # for the workers too, as a standard stream is
            stream = open(fd, "r" if fd == 0 else "w", closefd=False)  # noqa: SIM115
            setattr(sys, name, stream)
            setattr(sys, f"__{name}__", stream)
