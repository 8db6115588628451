"""A stop signal is never lost while worker processes start (sweep/system/signals.py
ignore_in_children): it is held back and raised once they have started."""

import os
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX masks")

# The signal is sent inside the block: it must come out of the block as the command's
# Stopped (143) or a script's KeyboardInterrupt, not be dropped by a thread that took it.
SCRIPT = """
import os, signal, threading, time
from sweep.system import signals

threading.Thread(target=time.sleep, args=(5,), daemon=True).start()  # blocks nothing
if {command}:
    signals.install()
from sweep.execution import pool, processes

try:
    with signals.ignore_in_children():
        {inside}
        os.kill(os.getpid(), signal.{signal})
        time.sleep(0.3)  # a thread that took it has run the handler by now
except KeyboardInterrupt:
    print("stopped", signals.exit_code() if {command} else "")
else:
    print("lost")
processes.stop()
"""


@pytest.mark.parametrize(
    ("command", "signame", "inside", "printed"),
    [
        # loky's first worker starts multiprocessing's resource tracker, which on Python
        # 3.11-3.13 unblocks the signals in this thread (signals._start_resource_tracker)
        (True, "SIGTERM", "pool.start(1, 1, rdb=False)", ["stopped", "143"]),
        # NumPy's BLAS threads (four here, whatever the cores) and a thread of the caller's
        (True, "SIGTERM", "pass", ["stopped", "143"]),
        (True, "SIGINT", "pass", ["stopped", "130"]),
        # a script of the Python API: Python's own Ctrl-C handler, after the block
        (False, "SIGINT", "pool.start(1, 1, rdb=False)", ["stopped"]),
    ],
)
def test_a_stop_signal_while_the_workers_start_is_raised_after_the_block(
    command, signame, inside, printed
):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "4"}
    code = SCRIPT.format(command=command, inside=inside, signal=signame)
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.stdout.split() == printed, run.stderr


def test_the_workers_start_inside_the_block_with_the_signals_blocked():
    """Workers inherit this thread's mask while they start. Python 3.11-3.13's resource
    tracker, which loky starts with its first worker, lifted it in this thread (hence
    signals._start_resource_tracker): the mask is checked after a worker started."""
    code = (
        "import os, signal, loky\nfrom sweep.system import signals\n"
        "with signals.ignore_in_children():\n"
        "    executor = loky.get_reusable_executor(max_workers=1)\n"
        "    executor.submit(os.getpid).result()\n"
        "    print(signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, []))\n"
        "executor.shutdown()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["True"], run.stderr
