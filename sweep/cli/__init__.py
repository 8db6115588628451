"""The `sweep` command: its grammar (arguments), dispatch and rendering (main), the lines it
prints while work goes on (console), and `sweep dashboard`. Each command is one call into
sweep/api.py or sweep/execution/ plus printing."""


def entry() -> None:
    """The console script (pyproject.toml); `python -m sweep.cli` runs the same."""
    from sweep.cli.main import entry as run

    run()
