"""A stop signal is never lost while worker processes start (sweep/system/signals.py
ignore_in_children): the command holds it back and raises it once they have started."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(__import__("signal"), "pthread_sigmask"), reason="POSIX signal masks"
)

# The signal is sent inside the block, where this process ignores it: it must come out
# of the block as Stopped (exit code 143), not be dropped by a thread that took it.
SCRIPT = """
import os, signal, time
from sweep.system import signals

signals.install()
from sweep.execution import pool

try:
    with signals.ignore_in_children():
        {inside}
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)  # a thread that took it has dropped it by now
except KeyboardInterrupt:
    print("stopped", signals.exit_code())
else:
    print("lost")
pool.stop()
"""


@pytest.mark.parametrize(
    "inside",
    [
        # loky's first worker starts multiprocessing's resource tracker, which on Python
        # 3.11-3.13 unblocked the signals in this thread (signals._start_resource_tracker)
        "pool.start(1, 1, rdb=False)",
        # NumPy's BLAS threads (four here, whatever the machine's cores) block them too
        "pass",
    ],
)
def test_a_sigterm_while_the_workers_start_is_raised_after_the_block(inside):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "4"}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(inside=inside)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.stdout.split() == ["stopped", "143"], run.stderr
