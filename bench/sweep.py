"""Sweep throughput, packing, curve cost, orchestration overhead and memory, in one run.

    python bench/sweep.py --data-dir DIR [--trials 16] [--packs 1,2,4,8] [--json]

Runs the same study (the same planned lambdas) into fresh SQLite files:
  A  --jobs 1, pack 1, one BLAS thread          B  --jobs 1, pack 1, both cores' BLAS threads
  C  --jobs 2, pack 1, one BLAS thread each     U  C with full-set curves (v0.1's trials)
  P  --jobs 2, the default pack, cheap curves (what a study does now)
and reports:
  speedup_vs_1_thread, speedup_vs_threaded  trials per hour of C over A and over B;
  speedup_vs_unpacked   trials per hour of P over U (target >= 2.5);
  flop_efficiency       the FLOPs of P's 3072-wide products (4 B d m per member-step for
                        training, 2 n d m per evaluated image) over (the workers' busy seconds
                        x the one-thread sgemm rate of a 2048 x 2048 product, measured here);
  curve_fraction        the share of P's training time spent recording the curves (<= 0.10):
                        the intermediate recordings. The last recording, which evaluates both
                        full sets for the trial's exact final values (needed with or without
                        curves), is final_evaluation_fraction;
  overhead_fraction     the share of P's workers' wall time not spent training;
  peak_rss_mb           the peak memory of P's process tree (sum of proportional set sizes,
                        so pages shared through the memory-mapped data count once), against
                        1.5 x the normalised dataset + 150 MB per worker;
  pack_sizes            trials per hour of --jobs 2 for each size in --packs (how the
                        default pack was chosen).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from sweep.execution.runner import run_study  # noqa: E402
from sweep.objectives import datacache  # noqa: E402
from sweep.objectives.functions import pack_size  # noqa: E402
from sweep.spec import studyfile  # noqa: E402
from sweep.store.storage import quiet_optuna  # noqa: E402

STUDY = """
[study]
name = "bench"
trials = {trials}
seed = 1
[data]
split = "{split}"
[train]
n_s = {n_s}
cycles = {cycles}
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
    # A pack's members share one call: count each call's seconds once.
    calls = {tuple(t.user_attrs["result"]["pack"] or [t.number]): t for t in done}
    training = sum(sum(t.user_attrs["result"]["seconds"]) for t in calls.values())

    def spent(key: str) -> float:
        return sum(
            sum(x.get(key, 0.0) for x in t.user_attrs["result"]["timings"]) for t in calls.values()
        )

    return {
        "label": label,
        "trials": len(done),
        "calls": len(calls),
        "wall_s": wall,
        "run_s": result.seconds,
        "trials_per_hour": len(done) / wall * 3600,
        "busy_s": training,
        "recording_s": spent("recording"),
        "final_evaluation_s": spent("final_evaluation"),
        "overhead_fraction": 1 - training / (jobs * wall),
        "peak_pss_mb": mem.peak,
        "train_s_per_trial": training / len(done),
    }


def sgemm_rate() -> float:
    """FLOP/s of a 2048 x 2048 float32 product on one thread (best of 5)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    with threadpool_limits(limits=1):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(5))
    return 2 * 2048**3 / best


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def needed_flops(spec, trials: int, n_train: int, n_val: int) -> float:
    """The 3072-wide products the study must do, whatever the packing: every member-step's
    two (forward X W1, backward X^T dH) and every evaluated image's one."""
    t = spec.train
    d, m = 3072, t.hidden
    steps = 2 * t.step_size(n_train) * t.cycles
    recordings = t.cycles * t.evals_per_cycle
    full_train = recordings if t.curves == "full" else 1
    images = recordings * n_val + full_train * n_train
    return trials * (4 * t.batch_size * d * m * steps + 2 * images * d * m)


def variant(spec, **study_or_train):
    """The spec with [study] / [train] fields replaced."""
    study = {k: v for k, v in study_or_train.items() if hasattr(spec.study, k)}
    train = {k: v for k, v in study_or_train.items() if k not in study}
    return dataclasses.replace(
        spec,
        study=dataclasses.replace(spec.study, **study),
        train=dataclasses.replace(spec.train, **train),
        fixed={**spec.fixed, **train},  # what the built-in is called with
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--split", default="search")
    ap.add_argument("--n-s", type=int, default=900, help="default: the coarse stage's")
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--packs", default="", help="pack sizes to compare, e.g. 1,2,4,8")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    quiet_optuna()

    spec = studyfile.parse(
        tomllib.loads(
            STUDY.format(trials=args.trials, split=args.split, n_s=args.n_s, cycles=args.cycles)
        ),
        "bench",
    )
    cached = datacache.prepare(spec.split, args.data_dir, spec.train.dtype)  # warm, not timed
    dataset_mb = sum(p.stat().st_size for p in cached.folder.glob("*.npy")) / 2**20
    split = datacache.open_split(cached.folder)
    n_train, n_val = len(split.y_train), len(split.y_val)
    rate = sgemm_rate()
    single = variant(spec, pack=1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = functools.partial(sweep_once, folder=folder, data_dir=args.data_dir)
        a = run(single, jobs=1, threads=1, label="A_jobs1_1thread")
        b = run(single, jobs=1, threads=2, label="B_jobs1_2threads")
        c = run(single, jobs=2, threads=1, label="C_jobs2")
        u = run(variant(spec, pack=1, curves="full"), jobs=2, threads=1, label="U_unpacked_full")
        p = run(spec, jobs=2, threads=1, label="P_packed")
        sizes = [int(k) for k in args.packs.split(",") if k]
        packs = {k: run(variant(spec, pack=k), jobs=2, threads=1, label=f"pack{k}") for k in sizes}
    result = {
        "speedup_vs_unpacked": p["trials_per_hour"] / u["trials_per_hour"],
        "flop_efficiency": needed_flops(spec, p["trials"], n_train, n_val) / (p["busy_s"] * rate),
        "curve_fraction": p["recording_s"] / p["busy_s"],
        "final_evaluation_fraction": p["final_evaluation_s"] / p["busy_s"],
        "unpacked_curve_fraction": (u["recording_s"] + u["final_evaluation_s"]) / u["busy_s"],
        "pack": pack_size(spec.objective, spec.study.pack),
        "sgemm_gflops": rate / 1e9,
        "speedup_vs_1_thread": c["trials_per_hour"] / a["trials_per_hour"],
        "speedup_vs_threaded": c["trials_per_hour"] / b["trials_per_hour"],
        "overhead_fraction": p["overhead_fraction"],
        "peak_rss_mb": p["peak_pss_mb"],
        "rss_budget_mb": 1.5 * dataset_mb + 150 * 2,
        "dataset_mb": dataset_mb,
        "pack_sizes": {k: r["trials_per_hour"] for k, r in packs.items()},
        "runs": [a, b, c, u, p, *packs.values()],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for r in result["runs"]:
            print(
                f"{r['label']:>17}: {r['trials']} trials in {r['wall_s']:.1f} s "
                f"({r['trials_per_hour']:.0f}/h), overhead {r['overhead_fraction']:.1%}, "
                f"peak {r['peak_pss_mb']:.0f} MB, {r['train_s_per_trial']:.2f} s training per trial"
            )
        print(f"packed vs unpacked: {result['speedup_vs_unpacked']:.2f}x (target >= 2.5)")
        print(
            f"flop efficiency {result['flop_efficiency']:.2f} (target >= 0.7; sgemm "
            f"{result['sgemm_gflops']:.0f} GFLOP/s), curve fraction "
            f"{result['curve_fraction']:.1%} (target <= 10%), final evaluation "
            f"{result['final_evaluation_fraction']:.1%}; unpacked full-set curves "
            f"{result['unpacked_curve_fraction']:.1%}"
        )
        print(f"jobs 2 vs jobs 1 (1 thread): {result['speedup_vs_1_thread']:.2f}x")
        print(f"jobs 2 vs jobs 1 (2 threads): {result['speedup_vs_threaded']:.2f}x")
        print(
            f"overhead {result['overhead_fraction']:.1%}; peak "
            f"{result['peak_rss_mb']:.0f} MB of a {result['rss_budget_mb']:.0f} MB budget"
        )
        for k, tph in result["pack_sizes"].items():
            print(f"pack {k}: {tph:.0f} trials/h")


if __name__ == "__main__":
    main()
