"""`sweep resume`: recover a stored study's dead trials and top it up to its target.

Everything needed is in the storage: the study file's settings, the target, the derived
ranges and the folder and fingerprint of the data the study ran on (so no --data-dir is
needed on the machine that ran it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sweep.execution.options import check_jobs
from sweep.execution.progress import Progress
from sweep.execution.runner import RunResult, run_study
from sweep.objectives.functions import check_given
from sweep.store.recovery import recover
from sweep.store.study import finished, open_to_write
from sweep.store.urls import resolve_url


def resume_study(
    name: str,
    *,
    storage_url: str | None = None,
    jobs: int = 1,
    data_dir: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    oversubscribe: bool = False,
    objective_dir: str | None = None,
    function: Callable[..., Any] | None = None,
) -> RunResult:
    """Recover dead trials of a stored study and top it up to its stored target.
    ``function``: a study's function given in memory, passed again (runner.run_study)."""
    check_jobs(jobs, oversubscribe)
    url = resolve_url(storage_url)
    stored, done = open_to_write(name, url)
    if done:  # on a read-only file: nothing to write, its tables still are (the CLI's)
        try:
            return RunResult.of(stored, notes=[], seconds=0.0, already_done=True)
        finally:
            stored.close()
    try:
        spec, target = stored.spec, stored.target
        check_given(name, spec.objective, function)  # before recovering anything
        notes = recover(stored)
        if finished(stored.counts()) >= target and stored.counts()["RUNNING"] == 0:
            return RunResult.of(stored, notes=notes, seconds=0.0, already_done=True)
    finally:
        stored.close()
    result = run_study(
        spec,
        storage_url=url,
        jobs=jobs,
        data_dir=data_dir,
        trials=target,
        on_progress=on_progress,
        oversubscribe=oversubscribe,
        objective_dir=objective_dir,
        function=function,
    )
    result.notes[:0] = notes
    return result
