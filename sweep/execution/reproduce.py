"""`sweep reproduce`: the whole seed study, resumable, ending in a report and summary.json.

gradient check -> coarse study -> fine study -> final model (best fine lambda, 3 cycles,
final split) beside the two exercise runs (lambda 0.01, exercise split: 1 cycle of n_s 500,
3 cycles of n_s 800) -> report.

Each finished stage is recorded in OUT/state.json (the studies in the storage), so a rerun
after a crash or Ctrl-C continues where it stopped and reuses every finished stage.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable
from importlib.resources import as_file
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.gradcheck import check, passed
from core.training import TrainConfig, TrainResult
from sweep.errors import RunFailed, StudyFileError, SweepError
from sweep.execution import pool, processes
from sweep.execution.runner import RunResult, run_study
from sweep.execution.train import RunSummary, run_training, warm_split
from sweep.objectives.data import ensure_data
from sweep.objectives.datacache import fingerprint
from sweep.spec import studyfile
from sweep.spec.starter import seed_studies
from sweep.store.storage import validate_url
from sweep.store.urls import sqlite_url

if TYPE_CHECKING:
    from sweep.results.report import Drawn

T = TypeVar("T")

EXERCISE = TrainConfig(lam=0.01, batch_size=100, eta_min=1e-5, eta_max=1e-1)
RUNS = {
    "cycle1": dataclasses.replace(EXERCISE, n_s=500, cycles=1),
    "cycle3": dataclasses.replace(EXERCISE, n_s=800, cycles=3),
}


def find_studies(
    studies_dir: str | Path | None, names: tuple[str, ...] = ("coarse", "fine")
) -> Traversable:
    """--studies DIR, else the seed's studies shipped with the package (sweep/spec/starter.py):
    the folder holding the stages' files ``names`` (.toml)."""
    folder = Path(studies_dir) if studies_dir else seed_studies()
    if not all(folder.joinpath(f"{name}.toml").is_file() for name in names):
        where = folder if studies_dir else "this installation of lambda-sweep"
        files = " and ".join(f"{name}.toml" for name in names)
        raise StudyFileError(f"no {files} in {where}; pass --studies DIR")
    return folder


def load_stages(
    studies_dir: str | Path | None, names: tuple[str, ...] = ("coarse", "fine")
) -> list[studyfile.StudyFile]:
    """The stages' study files, parsed (as_file: a zipped package works too)."""
    folder = find_studies(studies_dir, names)
    stages = []
    for name in names:
        with as_file(folder.joinpath(f"{name}.toml")) as path:
            stages.append(studyfile.load(path))
    return stages


# What a reproduce run is made of, recorded in its state.json: a rerun into the same OUT with
# other study files (--studies) or other data (--data-dir) took the finished stages' results
# for its own (README truth pass: real CIFAR-10's accuracies, "reproduced" on synthetic data).
INPUTS = "inputs"
INPUT_NAMES = {"studies": "other study files", "data": "other data"}


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class State:
    """OUT/state.json: the finished stages' results, written atomically after each."""

    def __init__(self, path: Path):
        self.path = path
        self.damaged: str | None = None  # why an existing file could not be read
        self.data: dict[str, Any] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:  # cut short by a power cut, or edited
                self.damaged = str(exc)
            else:
                if isinstance(data, dict):
                    self.data = data
                else:
                    self.damaged = f"it holds a {type(data).__name__}, not an object"

    @classmethod
    def of(cls, out: Path, stages: list[studyfile.StudyFile], data_dir: str | None) -> State:
        """OUT/state.json, refused when its stages ran from other study files or on other
        data: a later run would take their results for these (INPUTS)."""
        state = cls(out / "state.json")
        inputs = {
            "studies": _digest([{**s.to_dict(), "path": None} for s in stages]),
            "data": fingerprint(ensure_data(data_dir), "final", stages[-1].train.dtype),
        }
        recorded = state.get(INPUTS)
        changed = [INPUT_NAMES[k] for k in inputs if recorded and recorded.get(k) != inputs[k]]
        if changed:
            raise SweepError(
                f"{out} holds a reproduce run of {' and '.join(changed)}; pass another --out "
                f"(or delete {out} to start over)"
            )
        if recorded != inputs:  # new, or a state.json of a version that did not record them
            state.put(INPUTS, inputs)
        return state

    def get(self, name: str) -> dict[str, Any] | None:
        return self.data.get(name)

    def put(self, name: str, value: dict[str, Any]) -> None:
        self.data[name] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)


def study_summary(r: RunResult) -> dict[str, Any]:
    low, high, _ = r.ranges["lambda"]
    return {
        "study": r.study,
        "best_lambda": r.best_params.get("lambda"),
        "best_value": r.best_value,
        "range": {"low": low, "high": high},
        "trials": {k: v for k, v in r.counts.items() if v},
        "seconds": round(r.seconds, 2),
        "notes": r.notes,
    }


def make_out(out: str | Path, storage_url: str | None, data_dir: str | None) -> tuple[Path, str]:
    """OUT, made once the storage URL and the data are known to be usable (bad input, a
    mistyped --data-dir, leaves no folder behind; a download comes first), and the URL:
    --storage, else $SWEEP_STORAGE, else OUT/sweeps.db."""
    given = storage_url or os.environ.get("SWEEP_STORAGE")
    if given:
        validate_url(given)
    ensure_data(data_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out, given or sqlite_url(out / "sweeps.db")


def reproduce(
    *,
    out: str | Path = "report",
    jobs: int = 2,
    data_dir: str | None = None,
    storage_url: str | None = None,
    studies_dir: str | None = None,
    say: Callable[[str], None] = print,
    on_progress: Callable | None = None,
    runs: dict[str, TrainConfig] | None = None,
) -> dict[str, Any]:
    """Run (or continue) every stage; return what OUT/summary.json holds.

    ``runs`` replaces the two exercise runs' configs (tests use tiny ones).
    """
    runs_config = runs or RUNS
    started = time.perf_counter()
    coarse, fine = load_stages(studies_dir)  # bad input fails before OUT is created
    out, url = make_out(out, storage_url, data_dir)
    state = State.of(out, [coarse, fine], data_dir)
    if state.damaged:
        say(
            f"{state.path} could not be read ({state.damaged}); its stages are checked "
            "again (finished studies are kept in the storage)"
        )

    if not state.get("gradcheck"):
        t0 = time.perf_counter()
        result = check()
        errors = {k: dataclasses.asdict(v) for k, v in result.items()}
        if not passed(result):
            raise RunFailed(f"gradient check failed: {errors}")
        state.put("gradcheck", {**errors, "seconds": round(time.perf_counter() - t0, 2)})
    say(
        "gradient check: max relative error "
        f"{max(v['max_rel'] for k, v in state.get('gradcheck').items() if k != 'seconds'):.1e}"
    )

    for spec in (coarse, fine):
        done = state.get(spec.study.name)
        if not done:
            say(f"{spec.study.name} study: {spec.study.trials} trials, --jobs {jobs}")
            # While the fine stage's workers train, this process caches the final split
            # (run_training would load it from its batches, ~3 s before the final model
            # starts; a later reproduce opens the cached copy at once).
            warm = functools.partial(warm_split, "final", data_dir, fine.train.dtype)
            result = run_study(
                spec,
                storage_url=url,
                jobs=jobs,
                data_dir=data_dir,
                on_progress=on_progress,
                meanwhile=warm if spec is fine else None,
                resume_hint=f"the same reproduce command (it goes on from {out / 'state.json'})",
            )
            done = study_summary(result)
            state.put(spec.study.name, done)
        say(
            f"{spec.study.name}: best lambda {done['best_lambda']:.4g} -> "
            f"{done['best_value']:.2%} validation, range [{done['range']['low']:.3g}, "
            f"{done['range']['high']:.3g}]"
        )

    best = state.get(fine.study.name)["best_lambda"]
    final = dataclasses.replace(
        fine.train, lam=best, n_s="auto", cycles=3, seed=fine.study.seed, curves="full"
    )
    stages = [("final", final, "final", out / "final_model.npz")]
    stages += [(name, config, "exercise", None) for name, config in runs_config.items()]
    names = [coarse.study.name, fine.study.name]
    # The report took ~5 s after the last run. Now the worker that the runs leave idle draws
    # the studies' sections and the finished runs' while the last run trains, and this
    # process imports matplotlib and pandas meanwhile: the last run's figures are left.
    drawn = train_stages(
        state,
        stages,
        jobs,
        data_dir,
        say,
        when_idle=functools.partial(draw_ahead, names, url, out, state.path),
        meanwhile=functools.partial(importlib.import_module, "sweep.results.report"),
    )

    runs = {name: state.get(name) for name in (*runs_config, "final")}
    gradcheck = {k: v for k, v in state.get("gradcheck").items() if k != "seconds"}
    from sweep.results.report import ReportParts

    parts = ReportParts(names, storage_url=url, out=out)
    if drawn is not None:
        parts.adopt(drawn)
    report = parts.write(gradcheck=gradcheck, runs=runs)
    stage_seconds = {
        name: (state.get(name) or {}).get("seconds", 0.0)
        for name in ("gradcheck", *runs_config, "coarse", "fine", "final")
    }
    summary = {
        "gradcheck": gradcheck,
        **{name: {k: v for k, v in runs[name].items() if k != "curves"} for name in runs},
        "coarse": state.get(coarse.study.name),
        "fine": state.get(fine.study.name),
        "storage": url,
        "report": str(report.path),
        "stage_seconds": stage_seconds,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def train_stages(
    state: State,
    stages: list[tuple[str, TrainConfig, str, Path | None]],
    jobs: int,
    data_dir: str | None,
    say: Callable[[str], None],
    when_idle: Callable[[], T] | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> T | None:
    """The single training runs (name, config, split, model file) not yet in ``state``.

    With ``jobs`` >= 2 they run side by side, one BLAS thread each (pool.run_each): the
    final model on one core while the two exercise runs follow each other on the other,
    which ends about when the final model does. Each is recorded as it finishes.
    ``when_idle`` is queued after the runs, so a worker runs it once they leave it idle;
    its result is returned (None if the runs did not go side by side). ``meanwhile`` is
    called here once, when the first run is recorded and others still train.
    """
    todo = [stage for stage in stages if not state.get(stage[0])]
    side_by_side = jobs >= 2 and len(todo) > 1
    extra: list[T] = []
    waiting = meanwhile if side_by_side else None  # called once, then dropped

    def record(i: int, outcome: tuple[RunSummary, TrainResult] | T) -> None:
        if i == len(todo):  # when_idle's
            extra.append(outcome)  # type: ignore[arg-type]
            return
        summary, result = outcome  # type: ignore[misc]
        state.put(todo[i][0], {**summary.to_json(), "curves": result.curves})
        nonlocal waiting
        if waiting is not None:
            waiting, call = None, waiting
            call()

    calls = [
        functools.partial(
            run_training,
            config,
            split=split,
            data_dir=data_dir,
            save_model=save,
            progress=not side_by_side,  # one progress bar per run would garble the line
        )
        for _, config, split, save in todo
    ]
    if side_by_side:
        say(f"{', '.join(name for name, *_ in todo)}: training side by side, --jobs {jobs}")
        pool.run_each([*calls, *([when_idle] if when_idle else [])], min(jobs, len(todo)), record)
        # Nothing is left for the workers, and the command ends soon after: see processes.stop.
        processes.stop(kill=False)
    else:
        for i, call in enumerate(calls):
            record(i, call())
    for name, *_ in stages:
        r = state.get(name)
        say(
            f"{name}: lambda {r['lambda']:.4g}, {r['split']} split, n_s {r['n_s']}, "
            f"{r['cycles']} cycle(s): test accuracy {r['test_accuracy']:.2%}"
        )
    return extra[0] if extra else None


def draw_ahead(names: list[str], url: str, out: Path, state_path: Path) -> Drawn | None:
    """The report's sections that are final already (sweep/results/report.py), drawn in
    a worker: the studies', and those of the runs recorded in ``state_path`` by the time
    they are drawn. None if that failed: a head start only, the report draws them again
    and says why."""
    from sweep.results.report import ReportParts

    try:
        parts = ReportParts(names, storage_url=url, out=out)
        parts.study_sections()
        for name, r in State(state_path).data.items():
            if isinstance(r, dict) and "curves" in r:  # a training run's
                parts.run(name, r)
        return parts.drawn()
    except Exception:
        return None
