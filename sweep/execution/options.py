"""The options of a run, a resume or a worker, checked alike for the CLI and the Python API.

The CLI's flags arrive parsed (sweep/cli/arguments.py); the API's keyword arguments arrive
as the caller wrote them, and went through unchecked: ``gpus="0,1"`` became the devices
"0", "," and "1", and ``sweep.worker(jobs=0)`` ended in a ZeroDivisionError.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from sweep.errors import SweepError
from sweep.execution import devices, pool

MAX_JOBS_PER_CORE = 4  # more worker processes than this only thrash (memory, BLAS threads)


def check_jobs(jobs: int, oversubscribe: bool, *, least: int = 1) -> None:
    """Worker processes: a whole number, at least ``least`` (`sweep run` takes 0: workers
    elsewhere run the trials), at most MAX_JOBS_PER_CORE per core unless ``oversubscribe``."""
    if _whole(jobs) is None or jobs < least:
        also = "or 0 to leave the trials to `sweep worker` processes" if least == 0 else "1 or more"
        raise SweepError(f"jobs ({jobs!r}) must be a whole number of worker processes, {also}")
    limit = MAX_JOBS_PER_CORE * pool.cpu_count()
    if jobs > limit and not oversubscribe:
        raise SweepError(
            f"--jobs {jobs} is more than {MAX_JOBS_PER_CORE} worker processes per core "
            f"({limit} here); lower it, or pass --oversubscribe if you really want that many"
        )


def check_run(
    jobs: int,
    *,
    oversubscribe: bool,
    least: int = 1,
    threads: int | None = None,
    time_limit: float | None = None,
    gpus: str | Iterable[str] = (),
    workers_per_gpu: int = 1,
) -> tuple[str, ...]:
    """Every option of a run or a worker; returns the devices as a tuple ("0,1" or "auto"
    as `--gpus` takes them, or a list of ids)."""
    check_jobs(jobs, oversubscribe, least=least)
    if threads is not None and (_whole(threads) is None or threads < 1):
        raise SweepError(f"threads ({threads!r}) must be a whole number of BLAS threads, 1 or more")
    if time_limit is not None and not (
        isinstance(time_limit, int | float)
        and not isinstance(time_limit, bool)
        and math.isfinite(time_limit)
        and time_limit >= 0
    ):
        raise SweepError(f"time_limit ({time_limit!r}) must be a number of seconds, 0 or more")
    if _whole(workers_per_gpu) is None or workers_per_gpu < 1:
        raise SweepError(f"workers_per_gpu ({workers_per_gpu!r}) must be a whole number, 1 or more")
    listed = gpus if isinstance(gpus, str) else ",".join(str(g) for g in gpus)
    try:
        given = devices.parse_gpus(listed) if listed else ()
    except ValueError as exc:
        raise SweepError(f"gpus: {exc}") from None
    devices.check(given, workers_per_gpu, jobs)
    return given


def _whole(value: object) -> int | None:
    """``value`` if it is a whole number (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
