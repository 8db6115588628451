"""A Ctrl-C or SIGTERM outside the workers (before the command has begun, with the main
thread stuck, after the last trial): one line, its exit code, and how to go on."""

import shlex
import subprocess
import sys

import pytest

from sweep.cli import main as cli

# The SIGINT arrives while the command's modules load (sent by an import hook, so at that
# moment every time; in CI it once arrived in build_parser on a slow machine).
DURING_IMPORT = """
import os, signal, sys

MODULE, SIGNAL = sys.argv[1], getattr(signal, sys.argv[2])

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            os.kill(os.getpid(), SIGNAL)
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv = ["sweep", "status"]
from sweep.cli import entry
entry()
"""


@pytest.mark.parametrize(
    ("module", "signal", "code", "line"),
    [
        ("sweep.cli.main", "SIGINT", 130, "error: interrupted\n"),
        # imported by main.entry before main() (the CLI's own handler): it was a traceback
        ("sweep.system.portable", "SIGINT", 130, "error: interrupted\n"),
        ("psutil", "SIGTERM", 143, "error: terminated\n"),
    ],
)
def test_a_ctrl_c_while_the_commands_modules_load(tmp_path, module, signal, code, line):
    done = subprocess.run(
        [sys.executable, "-c", DURING_IMPORT, module, signal],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (done.returncode, done.stderr) == (code, line)
    assert not list(tmp_path.iterdir())  # nothing created


def test_a_ctrl_c_while_the_command_line_is_read(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["status"]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"


# A clean-up that never ends, after the signal (as a command stuck at its exit would be).
STUCK = """
import os, signal, sys, time
from sweep.system import signals

signals.STOP_GRACE_SECONDS = float(sys.argv[1])
signals.install()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
except KeyboardInterrupt:
    time.sleep(120)
"""


def test_a_command_whose_clean_up_hangs_still_ends_after_the_grace_period(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", STUCK, "1.5"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 143
    assert done.stderr == (
        "error: terminated; the clean-up took over 1.5 s, so the command ends without it "
        "(`sweep resume` recovers its trials)\n"
    )


# The main thread stuck in C code when the signal comes: a SQLite call waiting for a lock
# that another connection holds (as a DB browser's open transaction would).
BLOCKED = """
import os, signal, sqlite3, sys, threading
from sweep.system import signals

signals.STOP_GRACE_SECONDS = float(sys.argv[1])
signals.install()
holder = sqlite3.connect(sys.argv[2], isolation_level=None)
holder.execute("CREATE TABLE t (x)")
holder.execute("BEGIN EXCLUSIVE")
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
sqlite3.connect(sys.argv[2], timeout=40).execute("SELECT * FROM t").fetchall()
"""


def test_the_grace_period_begins_while_the_main_thread_waits_in_c_code(tmp_path):
    # Python runs the handler only between bytecodes: the SIGTERM went unanswered until
    # the lock was released (73 s in a hostile pass), and the grace period never began.
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, "1.5", str(tmp_path / "l.db")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 143
    assert "the clean-up took over 1.5 s, so the command ends without it" in done.stderr


STUDY = """[study]
name = "t"
trials = 2
[objective]
file = "f.py"
[search.x]
low = 1.0
high = 2.0
"""


@pytest.mark.parametrize("out", ["mine", None])
@pytest.mark.parametrize("where", ["tables", "result"])
def test_a_stop_after_the_last_trial_says_how_to_get_the_tables(
    tmp_path, capsys, monkeypatch, where, out
):
    # It said "error: interrupted" and nothing more: no tables, no command (hostile pass:
    # 6 of 7 signals sent as the last trial ended).
    from sweep.execution import result
    from sweep.results import tables
    from sweep.system import signals

    (tmp_path / "f.py").write_text("def objective(params, ctx):\n    return params['x']\n")
    (tmp_path / "t.toml").write_text(STUDY)
    url = f"sqlite:///{tmp_path}/t.db"
    monkeypatch.chdir(tmp_path)

    def stop(*args, **kwargs):
        raise signals.Stopped

    if where == "tables":
        monkeypatch.setattr(tables, "write_study_tables", stop)
    else:  # the run's end, before the command has its result
        monkeypatch.setattr(result.RunResult, "of", stop)
    capsys.readouterr()
    argv = ["run", str(tmp_path / "t.toml"), "--storage", url] + (["--out", out] if out else [])
    assert cli.main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    said = "Write them with: " if where == "tables" else "no trial of this command was running. "
    said += "Resume with: " if where == "result" else ""
    assert err.startswith("error: interrupted; ") and said + "sweep resume t" in err, err
    command = shlex.split(err.split("with: ")[-1])
    # With the run's --out: the resumed run's tables land beside the first ones (the resume
    # hint left it out, and its tables went to reports/). The default goes unsaid (it was
    # printed as "--out reports": right, but noise).
    assert command[:2] == ["sweep", "resume"]
    assert command[-2:] == ["--out", out] if out else "--out" not in command, command
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert cli.main(command[1:]) == 0
    assert (tmp_path / (out or "reports") / "t" / "table.csv").is_file()


# A process forked by the user's function (as a multiprocessing Pool's workers are, which
# get SIGTERM as the pool closes) takes a signal; the command takes none.
FORKED = """
import os, signal, sys, time
from sweep.system import signals

signals.STOP_GRACE_SECONDS = float(sys.argv[1])
signals.install()
child = os.fork()
if child == 0:
    try:
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        os._exit(0)
os.waitpid(child, 0)
time.sleep(3 * signals.STOP_GRACE_SECONDS)
print("went on")
"""


def test_a_signal_to_a_forked_child_does_not_end_the_command(tmp_path):
    # The child wrote its signal to the command's wakeup fd (inherited), which started the
    # command's 30-s exit: `sweep worker` ended mid-trial, 143, with no signal sent to it.
    done = subprocess.run(
        [sys.executable, "-c", FORKED, "1.0"], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout) == (0, "went on\n"), done.stderr
