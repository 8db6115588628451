"""`sweep reproduce --bonus`: the bonus search and its final model, resumable.

bonus_coarse study -> bonus_fine study (every range narrowed) -> final model (the best fine
settings, twice the fine stage's training length, 49k/1k split) -> an ensemble of it and
ENSEMBLE - 1 more seeds of the same settings -> OUT/report.md with the
studies' tables and parameter figures and the settings tied with the best, and
OUT/summary.json with the same stage keys as `sweep reproduce` (coarse, fine, final).
Finished stages are kept in OUT/state.json as `sweep reproduce` keeps them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from core.training import TrainConfig
from sweep.execution.reproduce import State, load_stages, make_out, study_summary, train_stages
from sweep.execution.runner import run_study
from sweep.execution.train import ensemble_accuracy
from sweep.spec import builtin, studyfile
from sweep.store.uncertainty import study_ties

STAGES = ("bonus_coarse", "bonus_fine")
# The final model and ENSEMBLE - 1 more of the same settings from other seeds (their own
# initial weights, batches, flips and dropout masks); their probabilities are averaged.
# Two, trained side by side (one core each), take as long as the final model alone on
# both cores would take for 1.5x its length; a third would cost as much again.
ENSEMBLE = 2
# The final models train this many times as long as the fine stage's trials: with dropout
# and augmentation a longer schedule keeps paying. The best fine settings on 49k/1k, test
# accuracy at the end of each cycle of one 16-cycle run (a cycle ends where a run of that
# many cycles would): 57.2% after 3, 58.6% after 6, 60.1% after 9, 60.3% after 12, 60.7%
# after 15, 61.0% after 16. Their curves are cheap (running means of the batches, exact at
# the end): full-set recordings of a 1,000-wide network on 49k images would cost about as
# much as its training.
FINAL_LENGTH = 5


def reproduce_bonus(
    *,
    out: str | Path = "report_bonus",
    jobs: int = 2,
    data_dir: str | None = None,
    storage_url: str | None = None,
    studies_dir: str | None = None,
    say: Callable[[str], None] = print,
    on_progress: Callable | None = None,
) -> dict[str, Any]:
    """Run (or continue) the bonus stages; return what OUT/summary.json holds."""
    started = time.perf_counter()
    coarse, fine = load_stages(studies_dir, STAGES)  # bad input fails before OUT is created
    out, url = make_out(out, storage_url, data_dir)
    state = State.of(out, [coarse, fine], data_dir)

    for spec in (coarse, fine):
        done = state.get(spec.study.name)
        if not done:
            say(f"{spec.study.name} study: {spec.study.trials} trials, --jobs {jobs}")
            result = run_study(
                spec, storage_url=url, jobs=jobs, data_dir=data_dir, on_progress=on_progress
            )
            done = {
                **study_summary(result),
                "best_params": result.best_params,
                "pruning": pruning_savings(spec, url),
            }
            state.put(spec.study.name, done)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in done["best_params"].items())
        saved = done["pruning"]["saved_share"]
        say(
            f"{spec.study.name}: best {shown} -> {done['best_value']:.2%} validation; "
            f"pruning saved {saved:.0%} of the recordings"
        )

    # The best fine settings, trained FINAL_LENGTH times as long as the fine stage's
    # trials, on 49k/1k.
    best = state.get(fine.study.name)["best_params"]
    fields = {builtin.TRAIN_KEYS[k][0]: v for k, v in best.items()}
    final = dataclasses.replace(
        fine.train,
        **fields,
        n_s="auto",
        cycles=fine.train.cycles * FINAL_LENGTH,
        seed=fine.study.seed,
        curves="cheap",
    )
    ensemble = ensemble_stage(state, final, jobs, data_dir, out, say)

    from sweep.results.report import write_report

    runs = {"final": state.get("bonus_final")}
    report = write_report([coarse.study.name, fine.study.name], storage_url=url, out=out, runs=runs)
    with report.path.open("a", encoding="utf-8") as f:
        f.write("\n".join(tied_settings(url, [coarse, fine])) + "\n")
        f.write(
            f"\n## Ensemble\n\nThe final model and {ensemble['members'] - 1} more "
            f"seed{'s' if ensemble['members'] > 2 else ''} of its "
            f"settings, their class probabilities averaged: test accuracy "
            f"{ensemble['test_accuracy']:.2%} (each alone: "
            + ", ".join(f"{a:.2%}" for a in ensemble["members_test_accuracy"])
            + ").\n"
        )
    summary = {
        "coarse": state.get(coarse.study.name),
        "fine": state.get(fine.study.name),
        "final": {k: v for k, v in runs["final"].items() if k != "curves"},
        "ensemble": ensemble,
        "storage": url,
        "report": str(report.path),
        "stage_seconds": {
            name: (state.get(name) or {}).get("seconds", 0.0)
            for name in (*STAGES, "bonus_final", "bonus_ensemble")
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def ensemble_stage(
    state: State, final: TrainConfig, jobs: int, data_dir, out: Path, say
) -> dict[str, Any]:
    """The final model (bonus_final) and its settings trained from ENSEMBLE - 1 more seeds
    on 49k/1k, side by side (reproduce.train_stages), each kept as a stage of its own
    (resumable); the test accuracy of their averaged probabilities."""
    models = [out / "final_model.npz", *(out / f"ensemble_{k}.npz" for k in range(1, ENSEMBLE))]
    stages = [("bonus_final", final, "final", models[0])]
    for k in range(1, ENSEMBLE):
        member = dataclasses.replace(final, seed=final.seed + k)
        stages.append((f"bonus_ensemble_{k}", member, "final", models[k]))
    train_stages(state, stages, jobs, data_dir, say)
    if not state.get("bonus_ensemble"):
        started = time.perf_counter()
        result = ensemble_accuracy(models, "final", data_dir)
        seconds = sum(state.get(f"bonus_ensemble_{k}")["seconds"] for k in range(1, ENSEMBLE))
        state.put(
            "bonus_ensemble",
            {**result, "members": ENSEMBLE, "seconds": seconds + time.perf_counter() - started},
        )
    done = state.get("bonus_ensemble")
    say(
        f"ensemble of {done['members']} (averaged probabilities): test accuracy "
        f"{done['test_accuracy']:.2%}; members "
        + ", ".join(f"{a:.2%}" for a in done["members_test_accuracy"])
    )
    return done


def pruning_savings(spec: studyfile.StudyFile, url: str) -> dict[str, Any]:
    """How much training the pruner saved: the share of the finished trials' recordings
    (evenly spaced, so of their update steps) that pruned trials did not train."""
    study = optuna.load_study(study_name=spec.study.name, storage=url)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    full = (spec.per_seed_reports or 1) * spec.study.repeats
    done = sum(min(len(t.intermediate_values), full) for t in finished)
    planned = full * len(finished)
    return {
        "pruned": sum(t.state == TrialState.PRUNED for t in finished),
        "finished": len(finished),
        "recordings_done": done,
        "recordings_planned": planned,
        "saved_share": round(1 - done / planned, 4) if planned else 0.0,
    }


def tied_settings(url: str, specs: list[studyfile.StudyFile]) -> list[str]:
    """A report section: per study, the COMPLETE trials that McNemar's test cannot tell
    apart from the best (5% level), with their settings."""
    md = ["## Settings tied with the best", ""]
    for spec in specs:
        study = optuna.load_study(study_name=spec.study.name, storage=url)
        ties = study_ties(study, spec.metric)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        tied = sorted(
            (t for t in done if ties[t.number].tied), key=lambda t: t.value or 0, reverse=True
        )
        md += [
            f"### `{spec.study.name}`: {len(tied)} of {len(done)} trials tied with the best",
            "",
        ]
        if not tied:
            continue
        params = sorted(spec.search)
        md += ["| trial | " + " | ".join(params) + " | validation | McNemar p |"]
        md += ["|" + "---|" * (len(params) + 3)]
        for t in tied:
            shown = [f"{t.params[p]:.4g}" if p in t.params else "" for p in params]
            p = ties[t.number].p_value
            md += [
                f"| {t.number} | "
                + " | ".join(shown)
                + f" | {t.value:.2%} | "
                + (f"{p:.2g}" if p is not None else "")
                + " |"
            ]
        md += [""]
    return md
