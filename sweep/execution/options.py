"""The options of a run, a resume or a worker, checked alike for the CLI and the Python API.

The CLI's flags arrive parsed (sweep/cli/arguments.py); the API's keyword arguments arrive
as the caller wrote them, and went through unchecked: ``gpus="0,1"`` became the devices
"0", "," and "1", and ``sweep.worker(jobs=0)`` ended in a ZeroDivisionError.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from sweep.errors import SweepError
from sweep.execution import devices, processes

MAX_JOBS_PER_CORE = 4  # more worker processes than this only thrash (memory, BLAS threads)


def check_jobs(jobs: int, oversubscribe: bool, *, least: int = 1) -> None:
    """Worker processes: a whole number, at least ``least`` (`sweep run` takes 0: workers
    elsewhere run the trials), at most MAX_JOBS_PER_CORE per core unless ``oversubscribe``."""
    if _whole(jobs) is None or jobs < least:
        also = "or 0 to leave the trials to `sweep worker` processes" if least == 0 else "1 or more"
        raise SweepError(f"jobs ({jobs!r}) must be a whole number of worker processes, {also}")
    limit = MAX_JOBS_PER_CORE * processes.cpu_count()
    if jobs > limit and not oversubscribe:
        raise SweepError(
            f"--jobs {jobs} is more than {MAX_JOBS_PER_CORE} worker processes per core "
            f"({limit} here); lower it, or pass --oversubscribe if you really want that many"
        )


class Checked(NamedTuple):
    """The options as plain Python values (numpy's integers become ints: a Job is JSON)."""

    jobs: int
    threads: int | None
    time_limit: float | None
    gpus: tuple[str, ...]
    workers_per_gpu: int


def check_run(
    jobs: int,
    *,
    oversubscribe: bool,
    least: int = 1,
    threads: int | None = None,
    time_limit: float | None = None,
    gpus: str | int | Iterable[str] | None = (),
    workers_per_gpu: int = 1,
) -> Checked:
    """Every option of a run or a worker. ``gpus``: "0,1" or "auto" as `--gpus` takes
    them, one index, or a list of ids."""
    check_jobs(jobs, oversubscribe, least=least)
    if threads is not None and (_whole(threads) is None or threads < 1):
        raise SweepError(f"threads ({threads!r}) must be a whole number of BLAS threads, 1 or more")
    seconds = None if time_limit is None else _seconds(time_limit)
    if time_limit is not None and not 0 <= seconds < math.inf:  # type: ignore[operator]
        shown = repr(time_limit) if len(repr(time_limit)) <= 40 else f"{repr(time_limit)[:37]}..."
        raise SweepError(f"time_limit ({shown}) must be a number of seconds, 0 or more")
    if _whole(workers_per_gpu) is None or workers_per_gpu < 1:
        raise SweepError(f"workers_per_gpu ({workers_per_gpu!r}) must be a whole number, 1 or more")
    if gpus is None:
        gpus = ()
    elif _whole(gpus) is not None:  # one device's index
        gpus = str(gpus)
    elif not isinstance(gpus, str | Iterable) or isinstance(gpus, bytes | bytearray | memoryview):
        raise SweepError(f'gpus ({gpus!r}) must be devices: "0,1", "auto" or a list of ids')
    listed = gpus if isinstance(gpus, str) else ",".join(str(g) for g in gpus)
    try:
        given = devices.parse_gpus(listed) if listed else ()
    except ValueError as exc:
        raise SweepError(f"gpus: {exc}") from None
    devices.check(given, workers_per_gpu, jobs)
    return Checked(
        int(jobs), None if threads is None else int(threads), seconds, given, int(workers_per_gpu)
    )


def _seconds(value: object) -> float:
    """A number of seconds as a float; NaN for anything else (inf for too large an int)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _whole(value: object) -> int | None:
    """``value`` as an int if it is a whole number (numpy's too; not a bool), else None."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        return int(value)
    return None
