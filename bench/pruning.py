"""What a pruning decision costs as a trial reports more steps: one trial reporting N steps
through the sweep's own path (`Context.report`: Optuna's `Trial.report`, then
`should_prune`), with and without the median pruner.

    python bench/pruning.py [--steps 250,1000,5000] [--others 5] [--storage URL] [--json]

Each step count gets a fresh study that already holds ``--others`` trials (all COMPLETE
but one, which is RUNNING) with a value at every step, so that every decision from the
second half of the recordings on computes a median (README, "Pruning"); there one trial
reports without the pruner, then another with it, above the median (never pruned). Prints
the wall and CPU seconds of each (CPU: this process's own, which a busy machine hardly
changes); with the pruner the time per report should not grow with N. The default
storage is a SQLite file in a temporary folder, opened with the sweep's storage rules.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

# bench/sweep.py is named like the package: drop bench/ from the import path so that
# `import sweep` finds the package.
sys.path[:] = [p for p in sys.path if Path(p).resolve() != Path(__file__).resolve().parent]

import optuna  # noqa: E402
from optuna.distributions import FloatDistribution  # noqa: E402
from optuna.trial import TrialState, create_trial  # noqa: E402

from sweep.objectives import pruning  # noqa: E402
from sweep.objectives.objective import TrialContext  # noqa: E402
from sweep.store.storage import open_storage, quiet_optuna  # noqa: E402


def study_with_others(storage, steps: int, others: int) -> optuna.Study:
    """A new study holding ``others`` trials with a value at every step (one RUNNING)."""
    name = f"bench-pruning-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for k in range(others):
        study.add_trial(
            create_trial(
                state=TrialState.RUNNING if k == 0 else TrialState.COMPLETE,
                value=None if k == 0 else 0.5,
                params={"x": 0.5},
                distributions={"x": FloatDistribution(0, 1)},
                intermediate_values={s: 0.5 + 0.001 * k for s in range(steps)},
            )
        )
    return study


def reporting(study: optuna.Study, storage, steps: int, pruner: str) -> tuple[float, float]:
    """Wall and CPU seconds for one new trial to report ``steps`` values; the trial then
    FAILs, so that it is no other trial's comparison."""
    study.pruner = pruning.pruner_for(pruner, storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats belong to optimize(): not measured here
        trial = study.ask()
    ctx = TrialContext(trial, repeat=0, seed=0, data_dir=None)
    started, cpu = time.perf_counter(), time.process_time()
    for s in range(steps):
        ctx.report(s, 0.6)
    seconds = (time.perf_counter() - started, time.process_time() - cpu)
    study.tell(trial, state=TrialState.FAIL)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="250,1000,5000", help="comma-separated step counts")
    ap.add_argument("--others", type=int, default=5, help="trials already in each study")
    ap.add_argument("--storage", help="a storage URL (default: SQLite in a temporary folder)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    quiet_optuna()
    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as folder:
        storage = open_storage(args.storage or f"sqlite:///{folder}/bench.db")
        seconds: dict[str, dict[str, float]] = {}
        cpu: dict[str, dict[str, float]] = {}
        for steps in (int(s) for s in args.steps.split(",")):
            study = study_with_others(storage, steps, args.others)
            for p in ("none", "median"):
                wall, used = reporting(study, storage, steps, p)
                seconds.setdefault(str(steps), {})[p] = wall
                cpu.setdefault(str(steps), {})[p] = used
    # CPU seconds: this process's own, which other load on the machine hardly changes.
    result = {"others": args.others, "seconds": seconds, "cpu_seconds": cpu}
    if args.json:
        print(json.dumps(result))
        return
    for steps, s in seconds.items():
        per = {p: 1e3 * v / int(steps) for p, v in cpu[steps].items()}
        print(
            f"{steps:>6} steps: no pruner {s['none']:7.2f} s ({per['none']:.2f} ms CPU/report), "
            f"median {s['median']:7.2f} s ({per['median']:.2f} ms CPU/report)"
        )


if __name__ == "__main__":
    main()
