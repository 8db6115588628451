"""The built-in objective: the two-layer network on CIFAR-10, as `objective(params, ctx)`.

It goes through the same interface as any user function: ``params`` holds the study file's
[train] values (under their study-file names), the [data] split, the searched values and
``seed``; it reports validation accuracy at each recording and returns the final metrics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.data import FOLDER, DataError, Split
from core.training import EvalPoint, TrainConfig, packable, train_pack
from sweep.objectives import datacache
from sweep.spec.builtin import TRAIN_KEYS
from sweep.spec.studyfile import StudyFile
from sweep.store.uncertainty import standard_error


@functools.cache
def cifar10(split: str, data_dir: str | None, dtype: str = "float32") -> Split:
    """The normalised split, memory-mapped once per process (shared between processes
    through the page cache); the pattern any objective should use for its data."""
    return datacache.load(split, data_dir, dtype)


def config(params: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a call: study-file names ("lambda") to its fields ("lam")."""
    values = {field: params[key] for key, (field, _) in TRAIN_KEYS.items() if key in params}
    return TrainConfig(**values, seed=params["seed"])


def objective(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    """One training run: reports validation accuracy at each recording, returns the final
    metrics (over the full sets)."""
    (out,) = _train(
        [config(params)],
        params["split"],
        ctx,
        report=lambda _k, *point, **more: ctx.report(*point, **more),
        keep=lambda _k, correct: ctx.keep_outcomes(correct),
        keep_at=lambda _k, step, correct: ctx.keep_step_outcomes(step, correct),
        end=lambda _k, exc: None,  # a single run ends as the call returns
    )
    if isinstance(out, Exception):
        raise out
    return out


RunOutcome = dict[str, float] | Exception


def objective_many(params_list: list[dict[str, Any]], ctx: Any) -> list[RunOutcome]:
    """The list form: runs that differ only in lambda, learning-rate schedule, hidden width
    and dropout are trained as one pack (core.training.train_pack); each gets its own
    result, or the exception that ended it (pruned, diverged)."""
    out: list[RunOutcome | None] = [None] * len(params_list)
    configs = [config(p) for p in params_list]
    groups: list[list[int]] = []  # runs that can share a pack (any can, in a lambda or width sweep)
    for i, c in enumerate(configs):
        group = next((g for g in groups if packable(configs[g[0]], c)), None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    for g in groups:
        results = _train(
            [configs[i] for i in g],
            params_list[g[0]]["split"],
            ctx,
            report=lambda k, *point, g=g, **more: ctx.report(g[k], *point, **more),
            keep=lambda k, correct, g=g: ctx.keep_outcomes(g[k], correct),
            keep_at=lambda k, step, correct, g=g: ctx.keep_step_outcomes(g[k], step, correct),
            end=lambda k, exc, g=g: ctx.end(g[k], exc),
        )
        for i, result in zip(g, results, strict=True):
            out[i] = result
    return out  # type: ignore[return-value]


def _train(
    configs: list[TrainConfig],
    split: str,
    ctx: Any,
    report: Callable[..., None],
    keep: Callable[[int, Any], None],
    keep_at: Callable[[int, int, Any], None],
    end: Callable[[int, Exception], None],
) -> list[RunOutcome]:
    """Train the runs as one pack; ``report(k, step, value, **more)``, ``keep(k, correct)``,
    ``keep_at(k, step, correct)`` and ``end(k, exc)`` (member k left the pack: pruned or
    diverged) address member k wherever the caller keeps it."""
    d = cifar10(split, ctx.data_dir, configs[0].dtype)

    def on_eval(k: int, p: EvalPoint) -> None:
        report(
            k,
            p.step,
            p.val_accuracy,
            eta=p.eta,
            train_cost=p.train_cost,
            train_loss=p.train_loss,
            train_accuracy=p.train_accuracy,
            val_cost=p.val_cost,
            val_loss=p.val_loss,
        )

    def on_record(rows: list[tuple[int, EvalPoint, Any]]) -> None:
        # Every member's outcomes at this recording, before any is judged (paired pruner).
        for k, p, correct in rows:
            keep_at(k, p.step, correct)

    results = train_pack(
        configs,
        d.X_train,
        d.y_train,
        d.X_val,
        d.y_val,
        on_eval=on_eval,
        on_record=on_record,
        on_leave=end,
    )
    out: list[RunOutcome] = []
    for k, result in enumerate(results):
        if isinstance(result, Exception):
            out.append(result)
            continue
        # Where the time went (bench/sweep.py): the intermediate recordings (the curves),
        # and the last one, which gives the exact final values.
        ctx.timings["recording"] = result.eval_seconds - result.final_eval_seconds
        ctx.timings["final_evaluation"] = result.final_eval_seconds
        # Which validation images it gets right (from the last recording): ties with the
        # best are tested on these.
        keep(k, result.val_correct)
        final = result.final
        out.append(
            {
                "val_accuracy": final["val_accuracy"],
                "train_accuracy": final["train_accuracy"],
                "train_accuracy_se": standard_error(final["train_accuracy"], len(d.y_train)),
                "val_loss": final["val_loss"],
                "val_cost": final["val_cost"],
                "train_loss": final["train_loss"],
                "train_cost": final["train_cost"],
            }
        )
    return out


def prepare_data(
    spec: StudyFile, data_dir: str | None, recorded: dict[str, str] | None
) -> datacache.Cached | None:
    """The built-in objective's cached split: from --data-dir, else the folder the study ran
    on, else the default lookup; refused when it is not the data the study's trials trained
    on. A user function's data is its own business: None (nothing loaded or downloaded)."""
    if not spec.objective.builtin:
        return None
    if data_dir is None and recorded and (Path(recorded["dir"]) / FOLDER).is_dir():
        data_dir = recorded["dir"]
    cached = datacache.prepare(spec.split, data_dir, spec.train.dtype)
    if recorded and cached.fingerprint != recorded["fingerprint"]:
        raise DataError(
            f"the data in {cached.root} is not the data study {spec.study.name!r} ran on "
            f"(fingerprint {cached.fingerprint}, the study's {recorded['fingerprint']} in "
            f"{recorded['dir']}); pass --data-dir with that copy of CIFAR-10"
        )
    return cached
