"""`pruner = "paired"`: stop a trial only when it is significantly worse than the best.

At a few rungs (fractions of a seed's recordings: [study] rungs, by default the end of
every cycle but the last, where the learning rate is at its minimum) each
trial keeps which validation images it classifies correctly at that recording, as a
trial user attribute ``outcomes@STEP`` (one bit per image, sweep/store/uncertainty.py's
packing; STEP is the Optuna step, so seed r is only ever compared with seed r). The
built-in objective stores every pack member's bits before any member is judged
(core.training.train_pack ``on_record``), so a member is compared with its packmates as
well as with every other trial of the study that reached that step (RUNNING, COMPLETE
or PRUNED; read with one listing of the study's trials per decision, one decision per
rung, trial and seed).

The trial is pruned when McNemar's exact test on the images exactly one of the two gets
right rejects equality with the best at that step at ``level`` (default 0.01, stricter
than the 5% of the ties: the best is picked as the maximum, which flatters it). Two
trials within noise of each other are never pruned, however many trials have run; a
trial that is the best at its step is never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.store.records import outcomes_key, pack_bits, unpack_bits
from sweep.store.uncertainty import discordant, mcnemar_exact

LEVEL = 0.01
RUNGS = (0.5,)  # when not given; a study's default is the end of each cycle (StudyFile.rungs)
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


key = outcomes_key


def stored(correct: np.ndarray) -> dict:
    """A rung's outcomes as the trial attribute holds them."""
    correct = np.asarray(correct, dtype=bool)
    return {"n": len(correct), "bits": pack_bits(correct)}


def rung_recordings(rungs: tuple[float, ...], reports: int) -> set[int]:
    """The 1-based recordings of a seed at which trials are compared. The last recording is
    never one: stopping there saves nothing."""
    return {max(1, round(f * reports)) for f in rungs} - {reports}


@dataclass(frozen=True)
class Verdict:
    step: int
    accuracy: float  # the judged trial's, from its bits at the step
    best: float  # the best trial's at the same step
    best_number: int
    p_value: float
    trials: int  # trials compared at the step, the judged one included
    prune: bool


class PairedPruner(optuna.pruners.BasePruner):
    """Prune at a rung when McNemar's exact test says the trial is worse than the best
    trial at the same step (see the module's docstring).

    ``reports``: recordings per seed (the built-in objective's cycles * evals_per_cycle),
    which places the rungs.
    """

    def __init__(self, *, reports: int, level: float = LEVEL, rungs: tuple[float, ...] = RUNGS):
        self.level = level
        self.rungs = tuple(rungs)
        self.recordings = rung_recordings(self.rungs, reports)
        self._verdicts: dict[tuple[int, int], Verdict] = {}  # for the reason, same process

    def wants(self, recording: int) -> bool:
        """Whether the outcomes at a seed's ``recording`` (1-based) are to be kept."""
        return recording in self.recordings

    def verdict(self, study: optuna.Study, number: int, step: int) -> Verdict | None:
        """How trial ``number`` stands at ``step`` against the best there, or None if it
        kept no outcomes at that step (not a rung)."""
        name = key(step)
        kept: dict[int, np.ndarray] = {}
        for t in study.get_trials(deepcopy=False, states=COUNTED):
            entry = t.user_attrs.get(name)
            if entry:
                kept[t.number] = unpack_bits(entry["bits"], entry["n"])
        mine = kept.get(number)
        if mine is None:
            return None
        # Only outcomes on the same images can be paired.
        kept = {k: v for k, v in kept.items() if len(v) == len(mine)}
        counts = {k: int(np.count_nonzero(v)) for k, v in kept.items()}
        # The best: the most images right; on a tie the judged trial itself (never pruned).
        best = max(kept, key=lambda k: (counts[k], k == number))
        p = 1.0 if best == number else mcnemar_exact(*discordant([kept[best]], [mine]))
        n = len(mine)
        return Verdict(
            step=step,
            accuracy=counts[number] / n,
            best=counts[best] / n,
            best_number=best,
            p_value=p,
            trials=len(kept),
            prune=best != number and p < self.level,
        )

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or key(step) not in trial.user_attrs:
            return False
        v = self.verdict(study, trial.number, step)
        if v is None:
            return False
        self._verdicts[(trial.number, step)] = v
        return v.prune

    def reason(self, study: optuna.Study, number: int, step: int, where: str) -> str:
        v = self._verdicts.get((number, step)) or self.verdict(study, number, step)
        if v is None:
            return f"pruned {where} by the paired pruner"
        return (
            f"pruned {where}: {v.accuracy:.4f} against the best {v.best:.4f} (trial "
            f"{v.best_number}) at this step, McNemar p = {v.p_value:.2g} < {self.level:g} "
            f"({v.trials} trials compared)"
        )
