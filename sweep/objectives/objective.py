"""The Optuna objective: suggest, call the study's function once per seed, record, return.

The only module that turns a trial into a function call. Any function, the built-in
network included, is called as ``function(params, ctx) -> float | dict[str, float]``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

from sweep import __version__
from sweep.errors import message_of
from sweep.objectives import paired, pruning
from sweep.objectives.functions import exit_guard
from sweep.objectives.outcomes import (
    ObjectiveError,
    TrialTimeout,
    failure_of,
    metrics_of,
    on_seed,
    per_image,
)
from sweep.spec.space import Dimension
from sweep.spec.studyfile import StudyFile
from sweep.store.records import RESULT, STEP_STRIDE, TrialResult, pack_bits


class TrialContext:
    """What a function gets besides its params: ``report``, ``data_dir``, ``trial`` and
    ``device`` (the GPU this worker process sees as its only one, with --gpus; else None)."""

    def __init__(
        self,
        trial: optuna.Trial,
        repeat: int,
        seed: int,
        data_dir: str | None,
        device: str | None = None,
    ):
        self._trial = trial
        self._offset = repeat * STEP_STRIDE
        self._seed = seed
        self.trial = trial.number
        self.data_dir = data_dir
        self.device = device
        self.curves: dict[str, list[float]] = {}
        self.outcomes: np.ndarray | None = None
        self.timings: dict[str, float] = {}  # optional: where the call's time went
        # should_prune() reads the trial back from the storage: skip it when nothing prunes.
        self._prunes = not isinstance(trial.study.pruner, optuna.pruners.NopPruner)
        self._reported: set[int] = set()  # steps given to Optuna (by an earlier call too)
        self.pruned: optuna.TrialPruned | None = None  # what `report` raised, if it did

    def again(self) -> TrialContext:
        """A fresh context for the same trial and seed, to call the function again: its
        curves start over; steps Optuna already has are not reported to it twice."""
        fresh = TrialContext(self._trial, 0, self._seed, self.data_dir, self.device)
        fresh._offset, fresh._reported = self._offset, self._reported
        return fresh

    def keep_outcomes(self, correct: np.ndarray) -> None:
        """Which validation images the final model classifies correctly (bool, one per
        image): kept with the trial, one bit each, to test ties with the best."""
        self.outcomes = per_image(correct, "keep_outcomes")

    def keep_step_outcomes(self, step: int, correct: np.ndarray) -> None:
        """Which validation images the network classifies correctly at the recording about
        to be reported at ``step``: stored with the trial when the study's pruner compares
        trials there (the paired pruner's rungs), else dropped. Call it before ``report``."""
        pruner = self._trial.study.pruner
        recording = len(self.curves.get("step", ())) + 1
        correct = per_image(correct, "keep_step_outcomes")
        if isinstance(pruner, paired.PairedPruner) and pruner.wants(recording):
            self._trial.set_user_attr(paired.key(self._offset + int(step)), paired.stored(correct))

    def report(self, step: int, value: float, **more: float) -> None:
        """An intermediate value at ``step`` (for pruners and the learning curves); ``more``
        adds other curves. Raises optuna.TrialPruned when the trial should stop."""
        if not 0 <= int(step) < STEP_STRIDE:
            raise ValueError(f"report step {step} must lie in 0..{STEP_STRIDE - 1}")
        for key, v in {"step": step, "value": value, **more}.items():
            self.curves.setdefault(key, []).append(float(v))
        trial_step = self._offset + int(step)
        if trial_step not in self._reported:
            self._trial.report(float(value), trial_step)
            self._reported.add(trial_step)
        if self._prunes and self._trial.should_prune():
            where = f"at step {step} of seed {self._seed}"
            self.pruned = optuna.TrialPruned(
                pruning.reason(self._trial.study, self.trial, trial_step, float(value), where)
            )
            raise self.pruned


class PackContext:
    """What a function's list form gets: one TrialContext per member (``ctx.members[i]``), with
    ``report`` and ``keep_outcomes`` taking the member's index first."""

    def __init__(
        self,
        members: list[TrialContext],
        data_dir: str | None,
        device: str | None = None,
        on_end: Callable[[int, BaseException], None] | None = None,
        seed: int | None = None,
    ):
        self.members = members
        self.trials = [m.trial for m in members]
        self.data_dir = data_dir
        self.device = device
        self.timings: dict[str, float] = {}  # shared by the members (one pack, one clock)
        self._on_end = on_end
        self._seed = seed  # the seed a failure's reason names (`on_seed`), with repeats
        self.ended: dict[int, BaseException] = {}  # members whose end is recorded already

    def end(self, i: int, exc: BaseException) -> None:
        """Member i has left the pack with ``exc`` (pruned, diverged) while the others go
        on: its end is recorded now, not when the call returns, so that a sweep stopped
        meanwhile neither loses it nor runs its values again. Return ``exc`` for it too."""
        self.member(i)  # in range
        if i not in self.ended and self._on_end is not None:
            self.ended[i] = on_seed(failure_of(exc), self._seed)
            self._on_end(i, self.ended[i])

    def report(self, i: int, step: int, value: float, **more: float) -> None:
        self.member(i).report(step, value, **more)

    def keep_outcomes(self, i: int, correct: np.ndarray) -> None:
        self.member(i).keep_outcomes(correct)

    def keep_step_outcomes(self, i: int, step: int, correct: np.ndarray) -> None:
        self.member(i).keep_step_outcomes(step, correct)

    def member(self, i: int) -> TrialContext:
        """Member i's own context (a negative index would address another member)."""
        if not 0 <= i < len(self.members):
            raise IndexError(f"member {i} of a pack of {len(self.members)}")
        return self.members[i]


Outcome = float | BaseException  # a trial's value, or why it ended without one


class Objective:
    """The mean of the study's metric over ``repeats`` seeds for the suggested values.

    ``run`` takes one trial or a pack of them: with ``many`` (the function's list form)
    a pack is one call per seed; otherwise each trial is its own call. Each trial ends with
    its own outcome: one member's failure, pruning or divergence never ends the others.
    """

    def __init__(
        self,
        spec: StudyFile,
        space: dict[str, Dimension],
        function: Callable[..., Any],
        data_dir: str | None,
        fingerprint: str | None = None,
        many: Callable[..., Any] | None = None,
        device: str | None = None,
    ):
        self.spec = spec
        self.device = device  # ctx.device
        self.space = space
        self.function = function
        self.many = many
        self.data_dir = data_dir
        self.fingerprint = fingerprint

    def __call__(self, trial: optuna.Trial) -> float:
        (outcome,) = self.run([trial])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def run(
        self,
        trials: list[optuna.Trial],
        on_end: Callable[[int, BaseException], None] | None = None,
    ) -> list[Outcome]:
        """Each trial's outcome. ``on_end(i, exc)`` is called when trial i ends early, while
        the others go on (a list form's `PackContext.end`); its outcome is ``exc`` then."""
        values = [
            {name: dim.suggest(t, name) for name, dim in sorted(self.space.items())} for t in trials
        ]
        ended: dict[int, BaseException] = {}
        seeds = [_Seeds() for _ in trials]
        for r in range(self.spec.study.repeats):
            live = [i for i in range(len(trials)) if i not in ended]
            if not live:
                break
            seed = self.spec.study.seed + r
            named = seed if self.spec.study.repeats > 1 else None  # in a failure's reason
            ctx = PackContext(
                [TrialContext(trials[i], r, seed, self.data_dir, self.device) for i in live],
                self.data_dir,
                self.device,
                None if on_end is None else (lambda j, exc, live=live: on_end(live[j], exc)),
                named,
            )
            started = time.perf_counter()
            outs = self._call([{**self.spec.fixed, **values[i], "seed": seed} for i in live], ctx)
            seconds = time.perf_counter() - started
            for j, (i, member, out) in enumerate(zip(live, ctx.members, outs, strict=True)):
                if j in ctx.ended:  # told already (ctx.end): that is its outcome
                    ended[i] = ctx.ended[j]
                    continue
                if isinstance(out, BaseException):  # the trial's failure (_call), or one
                    ended[i] = on_seed(failure_of(out), named)  # returned in its place
                    continue
                try:
                    seeds[i].add(
                        metrics_of(out, self.spec.objective.metric),
                        member,
                        seconds,
                        ctx.timings,
                        self.spec.metric,
                    )
                except Exception as exc:
                    ended[i] = on_seed(exc, named)
        together = [t.number for t in trials] if len(trials) > 1 else None
        outcomes: list[Outcome] = []
        for i, trial in enumerate(trials):
            try:
                outcomes.append(ended[i] if i in ended else self._finish(trial, seeds[i], together))
            except (ObjectiveError, optuna.exceptions.UpdateFinishedTrialError) as exc:
                outcomes.append(exc)  # (the latter: ended elsewhere meanwhile, e.g. stale)
        return outcomes

    def _call(self, params_list: list[dict[str, Any]], ctx: PackContext) -> list[Any]:
        """One result (or exception) per params dict."""
        n = len(params_list)
        if self.many is not None and n > 1:
            try:
                with exit_guard():
                    outs = self.many(params_list, ctx)
            except BaseException as exc:
                failure = failure_of(exc)
                if isinstance(failure, TrialTimeout):  # the pack's time is up for every member
                    return [failure] * n
                # One member's values or the pack's? Each member alone says: the guilty one
                # fails with its own reason, the others are not failed for it. A member its
                # report pruned stays pruned.
                return self._one_by_one(params_list, ctx, failure)
            if not isinstance(outs, (list, tuple)) or len(outs) != n:
                what = f"{len(outs)} results" if isinstance(outs, (list, tuple)) else "no list"
                return [ObjectiveError(f"the list form returned {what} for {n} params")] * n
            return list(outs)
        return self._alone(params_list, ctx.members)

    def _one_by_one(
        self, params_list: list[dict[str, Any]], ctx: PackContext, failure: BaseException
    ) -> list[Any]:
        """After the list form raised ``failure``: each member not pruned, alone, with a
        fresh context (its curves start over)."""
        # (not one pruned by its report, nor one ended already through ctx.end)
        again = [i for i, m in enumerate(ctx.members) if m.pruned is None and i not in ctx.ended]
        raised = f"{type(failure).__name__}: {message_of(failure)}".splitlines()[0]
        print(f"the list form raised {raised}; its trials run one by one", file=sys.stderr)
        ctx.members[:] = [m.again() if i in again else m for i, m in enumerate(ctx.members)]
        ctx.timings.clear()
        outs: list[Any] = [ctx.ended.get(i, m.pruned) for i, m in enumerate(ctx.members)]
        alone = self._alone([params_list[i] for i in again], [ctx.members[i] for i in again])
        for i, out in zip(again, alone, strict=True):
            outs[i] = out
        return outs

    def _alone(self, params_list: list[dict[str, Any]], members: list[TrialContext]) -> list[Any]:
        """One call of the function per params dict, member by member."""
        n = len(params_list)
        outs = []
        for params, member in zip(params_list, members, strict=True):
            try:
                with exit_guard():
                    outs.append(self.function(params, member))
            except BaseException as exc:
                outs.append(failure_of(exc))
                if isinstance(exc, TrialTimeout):  # the pack's time is up for every member
                    outs += [exc] * (n - len(outs))
                    break
        return outs

    def _finish(self, trial: optuna.Trial, seeds: _Seeds, pack: list[int] | None) -> float:
        runs = seeds.runs
        keys = list(dict.fromkeys(k for run in runs for k in run))  # in the order returned
        # A key some seeds did not return: its mean is over the seeds that did ("n").
        have = {k: [run[k] for run in runs if k in run] for k in keys}
        means = {k: float(np.mean(v)) for k, v in have.items()}
        sds = {k: float(np.std(v, ddof=1)) for k, v in have.items() if len(v) > 1}
        partial = {k: len(v) for k, v in have.items() if len(v) < len(runs)}
        # One write for everything a report needs (each attribute is a transaction).
        kept = seeds.kept if len(seeds.kept) == len(runs) else None
        result = TrialResult(
            metrics=means,
            sd=sds,
            n=partial,
            per_seed=runs,
            seeds=[self.spec.study.seed + r for r in range(len(runs))],
            seconds=seeds.seconds,
            timings=seeds.timings,
            pack=pack,
            curves=seeds.curves,
            outcomes={"n": len(kept[0]), "bits": [pack_bits(k) for k in kept]} if kept else None,
            data_fingerprint=self.fingerprint,
            version=__version__,
        )
        trial.set_user_attr(RESULT, result.stored())
        value = means[self.spec.metric]
        if not math.isfinite(value):
            raise ObjectiveError(f"{self.spec.metric} is {value}")
        return value


class _Seeds:
    """One trial's results so far, seed by seed."""

    def __init__(self) -> None:
        self.runs: list[dict[str, float]] = []
        self.seconds: list[float] = []  # each call's wall time (a pack's: shared)
        self.timings: list[dict[str, float]] = []
        self.kept: list[np.ndarray] = []
        self.curves: dict[str, list[float]] | None = None  # the first seed's

    def add(
        self,
        metrics: dict[str, float],
        ctx: TrialContext,
        seconds: float,
        timings: dict[str, float],
        metric: str,
    ) -> None:
        self.runs.append(metrics)
        self.seconds.append(seconds)
        self.timings.append({**timings, **ctx.timings})
        if ctx.outcomes is not None:
            self.kept.append(ctx.outcomes)
        if self.curves is None and ctx.curves:  # with the value named
            self.curves = {metric if k == "value" else k: v for k, v in ctx.curves.items()}
