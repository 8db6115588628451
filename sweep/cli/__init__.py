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
