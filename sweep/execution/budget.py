"""Time budgets: when a worker must stop taking trials (`--time-limit`, a job's end time).

A cluster job is killed at its end time; a trial it is running then is lost (it is queued
again, but its work is gone). So a worker with a deadline takes the next trial only when
the study's recent trials say it will finish before the deadline, lets its running trials
finish, and exits 0 saying why. The deadline is the earlier of `--time-limit` (counted from
the command's start) and the scheduler's end time for the job, where it exposes one
(SLURM: SLURM_JOB_END_TIME, epoch seconds).

Deadlines are wall-clock epoch seconds (time.time()): the job's end time is one, and a
deadline crosses processes (the command's, its worker processes).
"""

from __future__ import annotations

import logging
import math
import os
import re
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sweep.store.outage import retrying
from sweep.store.queries import recent_durations

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RECENT = 10  # COMPLETE trials the estimate of a trial's duration is taken from
# A trial starts only if the deadline leaves this many times the estimate: trial times vary
# (a busy machine, a longer value), and a trial cut off at the deadline is lost work.
MARGIN = 1.1
END_TIME_VARIABLE = "SLURM_JOB_END_TIME"
logger = logging.getLogger(__name__)


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "10m", "2h", "1.5h" or "1d"; ValueError otherwise."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*", text.lower())
    if not found:
        raise ValueError(
            f"{text!r} is not a duration: give seconds, or a number with s, m, h or d "
            "(e.g. 90, 90s, 10m, 2h)"
        )
    return float(found[1]) * UNITS[found[2] or "s"]


@dataclass(frozen=True)
class Budget:
    """A deadline (epoch seconds) and what set it, as the stop message names it."""

    deadline: float
    source: str = "the time limit"

    @classmethod
    def start(
        cls,
        limit: float | None,
        *,
        now: float | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> Budget | None:
        """The budget of a command started ``now`` with ``--time-limit`` ``limit`` seconds
        (None: none given): the earlier of that and the job's end time, or None."""
        now = time.time() if now is None else now
        found = []
        if limit is not None:
            found.append(cls(now + limit, "the time limit"))
        end = job_end_time(environ)
        if end is not None:
            found.append(cls(end, f"the job's end time ({END_TIME_VARIABLE})"))
        return min(found, key=lambda b: b.deadline) if found else None

    def left(self, now: float | None = None) -> float:
        return self.deadline - (time.time() if now is None else now)

    def stop_reason(self, durations: list[float], now: float | None = None) -> str | None:
        """Why no further trial should start, given recent trials' durations (seconds), or
        None. Without any finished trial the worker takes trials until the deadline."""
        left = self.left(now)
        if left <= 0:
            return f"{self.source} is reached"
        need = estimate(durations)
        if need is not None and left < MARGIN * need:
            return f"{self.source} leaves {_seconds(left)}, a trial takes ~{_seconds(need)}"
        return None


def _seconds(x: float) -> str:
    return f"{x:.1f} s" if x < 10 else f"{x:.0f} s"


def estimate(durations: list[float]) -> float | None:
    """A trial's duration: a high quantile (the 90th percentile) of the recent ones, so
    that one quick trial does not let a long one start. None without any."""
    if not durations:
        return None
    if len(durations) == 1:
        return durations[0]
    return statistics.quantiles(durations, n=10, method="inclusive")[-1]


def job_end_time(environ: Mapping[str, str] = os.environ) -> float | None:
    """The scheduler's end time for this job, epoch seconds, if it exposes one."""
    value = environ.get(END_TIME_VARIABLE, "").strip()
    try:
        end = float(value) if value else None
    except ValueError:
        end = math.nan
    if end is not None and not math.isfinite(end):
        # Not ours to refuse (the scheduler's variable, in some other form), but the run
        # cannot stop before the job ends, as the user may count on: say so, once.
        if value not in _warned:
            _warned.add(value)
            logger.warning(
                "%s (%r) is not a time in epoch seconds: the run does not know when the job "
                "ends (only --time-limit, if given, stops it in time)",
                END_TIME_VARIABLE,
                value,
            )
        return None
    return end


_warned: set[str] = set()  # the unusable end times already warned about


def out_of_time(job: Any, stored: Any) -> str | None:
    """Why a worker of ``job`` (worker.Job, with a deadline) should take no further trial
    of ``stored``'s study, from its last RECENT COMPLETE trials' durations, or None."""
    if job.deadline is None:
        return None
    recent = retrying(lambda: recent_durations(stored.storage, stored.study_id, RECENT))
    return Budget(job.deadline, job.deadline_by).stop_reason(recent)
