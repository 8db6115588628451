"""The worker pool through loky directly (sweep/execution/pool.py) against joblib.Parallel.

    python bench/pool.py [--json] [--trials 20] [--seconds 0.05] [--rounds 3]

Runs the same study (a function that sleeps ``--seconds``, ``--trials`` trials, 2 workers)
through `sweep.run`, once with the project's pool and once with `pool.run` replaced by
`joblib.Parallel(n_jobs=2, backend="loky", return_as="generator_unordered")` over the same
`worker.work` calls, consumed in a thread while the caller polls the study as pool.run does.
Interleaved rounds in one process; reports the wall times (median) and their ratio, and
what each does when a worker process is killed (kill -9) mid-trial: whether the call
returns a crash the runner can recover from (the study then completes) or raises.

joblib is not a dependency of lambda-sweep (README, "Parallel workers"): install it to run
this (pip install joblib).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# bench/sweep.py is named like the package: drop bench/ from the import path so that
# `import sweep` finds the package, not that script.
sys.path[:] = [p for p in sys.path if Path(p).resolve() != Path(__file__).resolve().parent]

import joblib  # noqa: E402

import sweep  # noqa: E402
from sweep.execution import pool, processes, worker  # noqa: E402
from sweep.store.study import open_study  # noqa: E402


def joblib_run(job, jobs, stored, on_poll=None, poll=1.0):
    """pool.run through joblib's public API, with the same return contract."""
    parallel = joblib.Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    calls = (joblib.delayed(worker.work)(job, job.first_index + i) for i in range(jobs))
    done: dict = {}

    def consume() -> None:
        try:
            done["ran"] = sum(parallel(calls))
        except Exception as exc:  # a killed worker: joblib's TerminatedWorkerError
            done["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(poll)
        if on_poll:
            on_poll()
    return (done.get("ran", 0), done.get("error"))


def one(variant: str, folder: Path, n: int, trials: int, seconds: float, kill: bool) -> dict:
    url = f"sqlite:///{folder / f'{variant}-{n}.db'}"
    marker = folder / f"{variant}-{n}.killed"
    name = f"{variant}{n}"
    spec = {
        "study": {"name": name, "trials": trials, "seed": 3},
        "search": {"x": {"low": 0.0, "high": 1.0, "log": False}},
    }

    def fn(params, ctx):
        time.sleep(seconds)
        if kill and params["x"] > 0.5 and not marker.exists():  # one kill -9, mid-study
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return params["x"]

    original = pool.run
    if variant == "joblib":
        pool.run = joblib_run
    start = time.perf_counter()
    try:
        result = sweep.run(spec, objective=fn, storage=url, jobs=2, progress=False)
        outcome = "completed" if result.finished else "unfinished"
    except Exception as exc:
        outcome = f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    finally:
        pool.run = original
        processes.stop()
    wall = time.perf_counter() - start
    complete = len(open_study(name, url).trials())
    return {"wall_s": wall, "outcome": outcome, "trials_stored": complete}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=0.05)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    walls: dict[str, list[float]] = {"loky": [], "joblib": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in range(args.rounds):
            for variant in walls:
                r = one(variant, folder, n, args.trials, args.seconds, kill=False)
                assert r["outcome"] == "completed", r
                walls[variant].append(r["wall_s"])
        kills = {v: one(v, folder, 99, args.trials, args.seconds, kill=True) for v in walls}
    out = {
        "trials": args.trials,
        "trial_seconds": args.seconds,
        "loky_wall_s": statistics.median(walls["loky"]),
        "joblib_wall_s": statistics.median(walls["joblib"]),
        "joblib_over_loky": statistics.median(walls["joblib"]) / statistics.median(walls["loky"]),
        "kill_9": {v: r["outcome"] for v, r in kills.items()},
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
