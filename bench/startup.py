"""The fixed cost of a study: 10 trials of a function that returns at once, 2 workers.

    python bench/startup.py [--rounds 3] [--json]

cli_s:  `sweep run STUDY --jobs 2` on a fresh SQLite file, the whole command as a user
        times it (interpreter start, imports, storage, workers, tables, exit).
api_s:  `sweep.run(..., jobs=2)` in a process whose imports are paid (a notebook's second
        cell), on a fresh SQLite file.
journal_api_s: the same on a fresh journal file.
Medians of interleaved rounds in one process run. The trials themselves take
microseconds: everything measured is start-up, storage and hand-over.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/sweep.py is named like the package: keep bench/ off the import path.
sys.path[:] = [p for p in sys.path if Path(p).resolve() != Path(__file__).resolve().parent]

ROOT = Path(__file__).resolve().parent.parent
STUDY = {
    "study": {"name": "instant", "trials": 10, "seed": 11, "sampler": "random"},
    "objective": {"metric": "score"},
    "search": {"lambda": {"low": 1e-5, "high": 1e-1, "log": True}},
}
FUNCTION = "def objective(params, ctx):\n    return {'score': -abs(params['lambda'] - 3e-3)}\n"
STUDY_FILE = """[study]
name = "instant"
trials = 10
seed = 11
sampler = "random"

[objective]
file = "instant.py"
function = "objective"
metric = "score"

[search.lambda]
low = 1e-5
high = 1e-1
log = true
"""


def run_cli(tmp: Path, i: int) -> float:
    cmd = [sys.executable, "-m", "sweep.cli", "run", str(tmp / "instant.toml"), "--jobs", "2"]
    cmd += ["--storage", f"sqlite:///{tmp}/cli{i}.db", "--out", str(tmp / f"out{i}")]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t


def run_api(storage: str) -> float:
    import sweep

    def objective(params: dict, ctx: sweep.Context) -> dict:
        return {"score": -abs(params["lambda"] - 3e-3)}

    t = time.perf_counter()
    result = sweep.run(STUDY, objective=objective, storage=storage, jobs=2)
    seconds = time.perf_counter() - t
    assert result.finished == 10, result
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "instant.py").write_text(FUNCTION)
        (tmp / "instant.toml").write_text(STUDY_FILE)
        run_api(f"sqlite:///{tmp}/warm.db")  # pays the imports, as a notebook's first cell
        cli, api, journal = [], [], []
        for i in range(args.rounds):
            cli.append(run_cli(tmp, i))
            api.append(run_api(f"sqlite:///{tmp}/api{i}.db"))
            journal.append(run_api(f"journal:///{tmp}/api{i}.journal"))
    med = statistics.median
    out = {
        "cli_s": round(med(cli), 2),
        "api_s": round(med(api), 2),
        "journal_api_s": round(med(journal), 2),
        "rounds": {
            "cli": [round(x, 2) for x in cli],
            "api": [round(x, 2) for x in api],
            "journal_api": [round(x, 2) for x in journal],
        },
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"10 instant trials, 2 workers: sweep run {out['cli_s']} s, sweep.run "
            f"{out['api_s']} s (SQLite), {out['journal_api_s']} s (journal)"
        )


if __name__ == "__main__":
    main()
