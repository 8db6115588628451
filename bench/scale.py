"""How many workers one study can feed: N `sweep worker` processes on a study whose
objective sleeps T seconds, on PostgreSQL, a SQLite file or a journal file.

    python bench/scale.py --storage postgresql+psycopg://... --workers 16 --trial-seconds 0.5 \
        --trials 400 [--commands C] [--json]
    python bench/scale.py --storage sqlite:////tmp/scale.db --workers 4 ...
    python bench/scale.py --storage journal:////tmp/scale.journal --workers 4 ...

The N workers run as C `sweep worker --jobs N/C` commands: by default one per worker (as on
N machines), `--commands 1` as one command (as on one machine with N cores).

Reports complete trials, duplicates (planned values COMPLETE more than once), trials per
second, efficiency = trials_per_s / (N / T) (the share of worker time spent inside trials),
the wait from a worker finishing a trial to starting its next one (p50, p99), and the
database's transactions per second (pg_stat_database; PostgreSQL only). A SQLite or
journal file serves the workers of one machine (a journal: of any machine that mounts it),
so there C is best left at 1. Never part of the test run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

# bench/sweep.py is named like the package: drop bench/ from the import path so that
# `import sweep` finds the package, not that script.
sys.path[:] = [p for p in sys.path if Path(p).resolve() != Path(__file__).resolve().parent]

import optuna  # noqa: E402
import sqlalchemy  # noqa: E402

from sweep.errors import SweepError  # noqa: E402
from sweep.store.storage import open_storage  # noqa: E402

OBJECTIVE = """
import time

def objective(params, ctx):
    time.sleep(params["seconds"])
    return params["x"]
"""


def sweep(*args: str) -> list[str]:
    exe = shutil.which("sweep")
    return [exe, *args] if exe else [sys.executable, "-m", "sweep.cli", *args]


def transactions(url: str) -> int | None:
    """The server's transaction count (PostgreSQL), None for a file storage."""
    if not url.startswith("postgresql"):
        return None
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                    "WHERE datname = current_database()"
                ).scalar()
            )
    finally:
        engine.dispose()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def run(url: str, workers: int, seconds: float, trials: int, commands: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="scale-"))
    name = f"scale-{workers}-{seconds:g}-{int(time.time() * 1000) % 10**8}".replace(".", "_")
    (folder / "sleep.py").write_text(OBJECTIVE)
    (folder / "s.toml").write_text(
        f'[study]\nname = "{name}"\ntrials = {trials}\nseed = 1\n'
        f'[objective]\nfile = "sleep.py"\n[train]\nseconds = {seconds}\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    # The orchestrator creates the study, queues every value and watches (--jobs 0).
    watcher = subprocess.Popen(
        sweep("run", str(folder / "s.toml"), "--storage", url, "--jobs", "0", "--out", str(folder)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            storage = open_storage(url, read_only=True)  # any storage URL sweep takes
            study = optuna.load_study(study_name=name, storage=storage)
            if study.get_trials(deepcopy=False):
                break  # created and queued (the first values: workers queue the rest)
        except (KeyError, SweepError):  # not created yet
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the orchestrator did not queue the study in 120 s")
        time.sleep(0.2)
    before = transactions(url)
    started = time.monotonic()
    # The N workers as C `sweep worker --jobs N/C` commands (C machines of N/C workers each).
    shares = [workers // commands + (i < workers % commands) for i in range(commands)]
    procs = [
        subprocess.Popen(
            sweep(
                "worker",
                name,
                "--storage",
                url,
                "--threads",
                "1",
                "--jobs",
                str(jobs),
                "--oversubscribe",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for jobs in shares
        if jobs
    ]
    for p in procs:
        p.wait()
    watcher.wait(timeout=120)
    wall = time.monotonic() - started
    after = transactions(url)

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    counts = Counter(round(t.params["x"], 12) for t in done)
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    busy_wall = (last - first).total_seconds()
    by_worker = defaultdict(list)
    for t in done:
        by_worker[t.user_attrs["worker"]["pid"]].append(t)
    waits, inside, spans = [], 0.0, 0.0
    for ts in by_worker.values():
        ts.sort(key=lambda t: t.datetime_start)
        for a, b in itertools.pairwise(ts):
            waits.append((b.datetime_start - a.datetime_complete).total_seconds())
        inside += sum((t.datetime_complete - t.datetime_start).total_seconds() for t in ts)
        spans += (ts[-1].datetime_complete - ts[0].datetime_start).total_seconds()
    rate = len(done) / busy_wall
    starts = sorted((ts[0].datetime_start - first).total_seconds() for ts in by_worker.values())
    ends = sorted((last - ts[-1].datetime_complete).total_seconds() for ts in by_worker.values())
    # Where the workers' time went, as shares of N x the run (they add up to 1 - efficiency;
    # a worker that ran no trial counts as lost to start-up).
    total = workers * busy_wall
    lost = {
        "start_up": (sum(starts) + (workers - len(by_worker)) * busy_wall) / total,
        "between_trials": sum(waits) / total,
        "inside_trials": (inside - len(done) * seconds) / total,  # storage calls in a trial
        "at_the_end": sum(ends) / total,
    }
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "workers": workers,
        "commands": len(procs),
        "trial_seconds": seconds,
        "trials": trials,
        "complete": len(done),
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "trials_per_s": round(rate, 2),
        # The definition over the whole run, start-up of every process included:
        "efficiency": round(rate / (workers / seconds), 3),
        # The share of each worker's time inside trials from its first trial to its last
        # (on one small machine, N interpreters starting at once skew the figure above).
        "efficiency_working": round(inside / spans, 3) if spans else None,
        "p50_wait_s": percentile(waits, 0.5),
        "p99_wait_s": percentile(waits, 0.99),
        # When each worker ran its first trial, after the first one of all (start-up), and
        # how long before the last trial ended each worker ran out of work (the tail).
        "lost": {k: round(v, 3) for k, v in lost.items()},
        "first_trial_s": {"p50": percentile(starts, 0.5), "max": starts[-1]},
        "idle_at_end_s": {"p50": percentile(ends, 0.5), "max": ends[-1]},
        "db_transactions_per_s": None if before is None else round((after - before) / wall, 1),
        "wall_s": round(wall, 2),
        "worker_exit_codes": sorted(Counter(p.returncode for p in procs).items()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--storage",
        required=True,
        help="postgresql+psycopg://..., sqlite:///PATH.db or journal:///PATH.journal",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[16])
    parser.add_argument("--trial-seconds", type=float, nargs="+", default=[0.5])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument(
        "--commands",
        type=int,
        default=0,
        help="how many `sweep worker` commands share the N workers (default: N, one each, "
        "as on N machines; 1: one `sweep worker --jobs N`, as on one big machine)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [
        run(args.storage, n, t, args.trials, min(args.commands or n, n))
        for t in args.trial_seconds
        for n in args.workers
    ]
    if args.json:
        print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2))
        return
    for r in rows:
        print(
            f"N={r['workers']:3} T={r['trial_seconds']:4}s ({r['commands']} commands): "
            f"{r['complete']}/{r['trials']} complete,"
            f" {r['duplicates']} duplicates, {r['trials_per_s']} trials/s, efficiency "
            f"{r['efficiency']:.2f} ({r['efficiency_working']:.2f} once working), "
            f"wait p50 {r['p50_wait_s']:.3f}s p99 {r['p99_wait_s']:.3f}s"
            + (
                ""
                if r["db_transactions_per_s"] is None
                else f", {r['db_transactions_per_s']} db transactions/s"
            )
        )


if __name__ == "__main__":
    main()
