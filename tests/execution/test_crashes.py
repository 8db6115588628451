"""How a process that crashed running a trial alone is described (sweep/execution/crashes.py).
The whole path, a real segfault included, is in tests/objectives/test_misbehaving_functions.py."""

import io
import signal
import sysconfig
from pathlib import Path
from typing import IO

import pytest

from sweep.execution import crashes

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def dump_of(*frames: tuple[str, int, str]) -> IO[bytes]:
    """A fault-handler dump as Python writes it, innermost frame first."""
    lines = ["Fatal Python error: Segmentation fault", "", "Stack (most recent call first):"]
    lines += [f'  File "{file}", line {line} in {function}' for file, line, function in frames]
    return io.BytesIO("\n".join(lines).encode())


def test_the_reason_names_the_signal_and_the_users_innermost_frame(tmp_path):
    dump = dump_of(
        (str(STDLIB / "ctypes" / "__init__.py"), 519, "string_at"),
        (str(tmp_path / "model.py"), 4, "forward"),
        (str(tmp_path / "model.py"), 9, "objective"),
        (crashes.__file__, 80, "_alone"),
        ("<frozen runpy>", 88, "_run_code"),
    )
    assert crashes.how(-signal.SIGSEGV, dump) == "SIGSEGV in forward at model.py:4"


def test_a_crash_in_installed_code_alone_names_its_innermost_frame():
    dump = dump_of((str(STDLIB / "ctypes" / "__init__.py"), 519, "string_at"), ("<string>", 1, "x"))
    assert crashes.how(-signal.SIGSEGV, dump) == "SIGSEGV in string_at at __init__.py:519"


def test_without_a_dump_the_reason_names_the_signal_or_the_exit_code():
    assert crashes.how(-signal.SIGKILL, None) == "SIGKILL"
    assert crashes.how(-signal.SIGABRT, io.BytesIO()) == "SIGABRT"
    assert crashes.how(-99, None) == "signal 99"
    assert crashes.how(3, None) == "exit code 3"


def test_workers_print_no_dump_unless_the_user_asks(monkeypatch):
    monkeypatch.delenv("PYTHONFAULTHANDLER", raising=False)
    assert crashes.quiet_env() == {"PYTHONFAULTHANDLER": ""}  # loky's workers: off
    monkeypatch.setenv("PYTHONFAULTHANDLER", "1")
    assert crashes.quiet_env() == {}  # inherited: Python's full dumps on stderr


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads Linux's /proc")
def test_the_dump_file_has_no_name_to_leave_behind():
    with crashes.log() as dump:
        assert dump is not None
        assert not Path(f"/proc/self/fd/{dump.fileno()}").resolve().exists()


def test_a_function_installed_as_a_package_is_named_not_the_library_under_it():
    # `module = "mypkg.train"` in site-packages: every frame was "installed", and the
    # reason named ctypes' string_at instead of the user's objective
    site = Path(sysconfig.get_paths()["purelib"])
    dump = dump_of(
        (str(STDLIB / "ctypes" / "__init__.py"), 519, "string_at"),
        (str(site / "mypkg" / "train.py"), 7, "objective"),
        (str(Path(crashes.__file__).parent.parent / "objectives" / "objective.py"), 282, "_alone"),
        ("<string>", 1, "<module>"),
    )
    assert crashes.how(-signal.SIGSEGV, dump) == "SIGSEGV in objective at train.py:7"
