"""sweep/system/portable.py: file locks, process liveness, the cache folder, shell quoting; and a
study run end to end on a Python without POSIX-only modules (as on Windows)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from sweep.objectives import data as sweep_data
from sweep.system.portable import FileLock, pid_alive, shell_join, user_cache_dir

ROOT = Path(__file__).resolve().parents[2]

HOLD = """
import sys, time
sys.path.insert(0, sys.argv[2])
from sweep.system.portable import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.readline()  # until the test says so
"""


def test_a_file_lock_excludes_other_locks_and_processes(tmp_path):
    path = tmp_path / "s.db.lock"
    a, b = FileLock(path), FileLock(path)
    assert a.acquire(wait=False)
    assert not b.acquire(wait=False)  # another lock object, as in another process
    a.release()
    assert b.acquire(wait=False)
    b.release()

    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "held\n"
        assert not a.acquire(wait=False)
        started = time.monotonic()
        threading.Timer(0.3, lambda: child.stdin.close()).start()  # the child exits
        assert a.acquire()  # waits for it
        assert time.monotonic() - started >= 0.25
        a.release()
    finally:
        child.kill()
        child.wait()


def test_a_lock_taken_in_one_thread_is_released_in_another(tmp_path):
    lock, other = FileLock(tmp_path / "l"), FileLock(tmp_path / "l")
    lock.acquire()
    thread = threading.Thread(target=lock.release)
    thread.start()
    thread.join()
    assert other.acquire(wait=False)
    other.release()


@pytest.mark.skipif(os.name == "nt", reason="POSIX flock")
def test_the_lock_excludes_a_plain_flock_of_version_0_2(tmp_path):
    import fcntl  # only here: the project itself never imports it

    path = tmp_path / "s.db.lock"
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        assert not FileLock(path).acquire(wait=False)
        fcntl.flock(f, fcntl.LOCK_UN)
    assert FileLock(path).acquire(wait=False)


def test_pid_alive_for_running_finished_and_zombie_processes():
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:  # exited, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)


def test_shell_join_quotes_for_posix_shells_and_windows():
    args = ["sweep", "resume", "s", "--storage", "sqlite:///my sweeps/a.db"]
    assert shell_join(args, windows=False) == "sweep resume s --storage 'sqlite:///my sweeps/a.db'"
    assert shell_join(args, windows=True) == 'sweep resume s --storage "sqlite:///my sweeps/a.db"'


def test_the_cache_folder_and_the_old_one(tmp_path, monkeypatch):
    monkeypatch.delenv("SWEEP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert user_cache_dir() == tmp_path / "xdg" / "lambda-sweep"
    new, old = tmp_path / "new", tmp_path / "xdg" / "lambda-sweep"
    monkeypatch.setattr(sweep_data, "user_cache_dir", lambda: new)
    assert sweep_data.default_root() == new  # nothing anywhere: download into the new one
    (old / "cifar-10-batches-py").mkdir(parents=True)
    assert sweep_data.default_root() == old  # data only in the old one: keep using it
    (new / "cifar-10-batches-py").mkdir(parents=True)
    assert sweep_data.default_root() == new
    monkeypatch.setenv("SWEEP_DATA_DIR", str(tmp_path / "env"))
    assert sweep_data.default_root() == tmp_path / "env"


def test_no_home_folder_is_one_line_that_says_what_to_set(monkeypatch):
    # A user id with no account and HOME unset (some containers): platformdirs raises.
    import platformdirs

    from sweep.errors import SweepError

    def unknown(*args, **kwargs):
        raise RuntimeError("could not determine the home directory for '~/.cache'")

    monkeypatch.setattr(platformdirs, "user_cache_dir", unknown)
    monkeypatch.delenv("SWEEP_DATA_DIR", raising=False)
    with pytest.raises(SweepError, match=r"^no per-user cache folder: .*set HOME.*--data-dir$"):
        sweep_data.default_root()


def test_no_module_imports_fcntl():
    """Not even guarded: the one POSIX file lock is filelock's business (sweep/system/)."""
    hits = []
    for path in [*(ROOT / "sweep").rglob("*.py"), *(ROOT / "core").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if "fcntl" in names:
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not hits, hits


# What a Windows Python lacks, taken away from every interpreter of the run (the workers
# too: they inherit PYTHONPATH and import sitecustomize at start-up).
NO_POSIX = textwrap.dedent(
    """
    import signal, sys

    class NoPosix:
        blocked = {"fcntl"}

        def find_spec(self, name, path=None, target=None):
            if name in self.blocked:
                raise ImportError(f"No module named {name!r} (not on this system)")
            return None

    sys.modules.pop("fcntl", None)
    sys.meta_path.insert(0, NoPosix())
    if hasattr(signal, "pthread_sigmask"):
        del signal.pthread_sigmask
    """
)


@pytest.mark.slow
def test_a_study_runs_without_posix_modules_and_with_a_cp1252_console(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_POSIX, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "PYTHONIOENCODING": "cp1252",
    }
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = ROOT / "examples" / "synthetic" / "coarse.toml"

    def sweep(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "sweep.cli", *args, "--storage", url],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=300,
        )
        out, err = proc.stdout.decode("cp1252"), proc.stderr.decode("cp1252")
        assert proc.returncode == 0, (args, out, err)
        assert "Traceback" not in err, err
        return out

    check = "import fcntl" if os.name != "nt" else "import msvcrt"
    probe = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    assert "not on this system" in probe.stderr  # the bootstrap works

    out = sweep("run", str(study), "--jobs", "2")
    assert "synthetic-coarse (coarse): 10/10 finished (10 COMPLETE" in out
    assert (tmp_path / "reports" / "synthetic-coarse" / "table.md").read_text(encoding="utf-8")
    assert "COMPLETE" in sweep("trials", "synthetic-coarse")
    assert "synthetic-coarse" in sweep("status")
    assert "wrote" in sweep("report", "synthetic-coarse", "--out", "rep")
    assert "λ" in (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")


def test_output_a_console_cannot_encode_becomes_question_marks():
    code = "from sweep.system.portable import tolerant_output; tolerant_output(); print('λ ★ ok')"
    env = {**os.environ, "PYTHONIOENCODING": "cp1252", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert (proc.returncode, proc.stdout.strip()) == (0, b"? ? ok")
