"""A Ctrl-C before the command has begun: one line and exit code 130, at any moment."""

import subprocess
import sys

from sweep.cli import main as cli

# The SIGINT arrives while the command's modules load (sent by an import hook, so at that
# moment every time; in CI it once arrived in build_parser on a slow machine).
DURING_IMPORT = """
import os, signal, sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "sweep.cli.main":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv = ["sweep", "status"]
from sweep.cli import entry
entry()
"""


def test_a_ctrl_c_while_the_commands_modules_load(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", DURING_IMPORT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (done.returncode, done.stderr) == (130, "error: interrupted\n")
    assert not list(tmp_path.iterdir())  # nothing created


def test_a_ctrl_c_while_the_command_line_is_read(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["status"]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
