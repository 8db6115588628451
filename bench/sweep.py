"""Sweep throughput, orchestration overhead and memory, all in one run on one small study.

    python bench/sweep.py --data-dir DIR [--trials 24] [--json]

Runs the same study three times into fresh SQLite files:
  A  --jobs 1 with one BLAS thread,
  B  --jobs 1 with both cores' BLAS threads,
  C  --jobs 2 with one BLAS thread per worker,
and reports trials per hour of C over A (workers scale) and over B (parallel trials beat
threaded BLAS for these thin matrices), the orchestration overhead of C (the share of the
workers' wall time not spent inside training: process start-up, storage, queue checks,
idle tails) and the peak memory of C's whole process tree (the sum of proportional set
sizes, so pages that workers share through the memory-mapped data count once), against
the budget 1.5 x the normalised dataset + 150 MB per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

# This file is named like the package it measures: drop bench/ from the import path so that
# `import sweep` finds the package, not this script.
sys.path[:] = [p for p in sys.path if Path(p).resolve() != Path(__file__).resolve().parent]

import optuna  # noqa: E402

from sweep import datacache, studyfile  # noqa: E402
from sweep.runner import run_study  # noqa: E402

STUDY = """
[study]
name = "bench"
trials = {trials}
seed = 1
[data]
split = "{split}"
[train]
n_s = {n_s}
cycles = 1
evals_per_cycle = 10
[search.lambda]
low = 1e-4
high = 1e-2
"""


def tree_pss_mb(root_pid: int) -> float:
    """Sum of Pss over the process and all its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total / 1024


class PeakMemory:
    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_pss_mb(os.getpid()))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def sweep_once(spec, folder: Path, data_dir: str, jobs: int, threads: int, label: str) -> dict:
    url = f"sqlite:///{folder}/{label}.db"
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        result = run_study(spec, storage_url=url, jobs=jobs, data_dir=data_dir, threads=threads)
        wall = time.perf_counter() - t0
    study = optuna.load_study(study_name="bench", storage=url)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    # Seconds inside the objective, per trial (each seed's call).
    training = sum(sum(t.user_attrs["result"]["seconds"]) for t in done)
    return {
        "label": label,
        "trials": len(done),
        "wall_s": wall,
        "run_s": result.seconds,
        "trials_per_hour": len(done) / wall * 3600,
        "overhead_fraction": 1 - training / (jobs * wall),
        "peak_pss_mb": mem.peak,
        "train_s_per_trial": training / len(done),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--split", default="search")
    ap.add_argument("--n-s", type=int, default=450)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    spec = studyfile.parse(
        tomllib.loads(STUDY.format(trials=args.trials, split=args.split, n_s=args.n_s)), "bench"
    )
    cached = datacache.prepare(spec.split, args.data_dir, spec.train.dtype)  # warm, not timed
    dataset_mb = sum(p.stat().st_size for p in cached.folder.glob("*.npy")) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        a = sweep_once(spec, folder, args.data_dir, jobs=1, threads=1, label="jobs1_1thread")
        b = sweep_once(spec, folder, args.data_dir, jobs=1, threads=2, label="jobs1_2threads")
        c = sweep_once(spec, folder, args.data_dir, jobs=2, threads=1, label="jobs2")
    result = {
        "speedup_vs_1_thread": c["trials_per_hour"] / a["trials_per_hour"],
        "speedup_vs_threaded": c["trials_per_hour"] / b["trials_per_hour"],
        "overhead_fraction": c["overhead_fraction"],
        "peak_rss_mb": c["peak_pss_mb"],
        "rss_budget_mb": 1.5 * dataset_mb + 150 * 2,
        "dataset_mb": dataset_mb,
        "runs": [a, b, c],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for r in (a, b, c):
            print(
                f"{r['label']:>15}: {r['trials']} trials in {r['wall_s']:.1f} s "
                f"({r['trials_per_hour']:.0f}/h), overhead {r['overhead_fraction']:.1%}, "
                f"peak {r['peak_pss_mb']:.0f} MB, {r['train_s_per_trial']:.2f} s training per trial"
            )
        print(f"jobs 2 vs jobs 1 (1 thread): {result['speedup_vs_1_thread']:.2f}x (target >= 1.8)")
        print(f"jobs 2 vs jobs 1 (2 threads): {result['speedup_vs_threaded']:.2f}x (target >= 1.3)")
        print(
            f"overhead {result['overhead_fraction']:.1%} (target <= 2%); peak "
            f"{result['peak_rss_mb']:.0f} MB of a {result['rss_budget_mb']:.0f} MB budget"
        )


if __name__ == "__main__":
    main()
