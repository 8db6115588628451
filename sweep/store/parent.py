"""The parent (coarse) study a fine stage narrows from: its results, read from the storage."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from sweep.errors import StudyFileError, StudyNotFound, SweepError
from sweep.spec.studyfile import StudyFile
from sweep.store.records import RANGES, TARGET, requeued, spec_of
from sweep.store.uncertainty import study_ties


@dataclass(frozen=True)
class Parent:
    """What a fine stage narrows on: (value, objective) of its parent's COMPLETE trials,
    and how far the parent is."""

    done: list[tuple[float, float]]
    finished: int  # COMPLETE + PRUNED
    target: int
    searched: tuple[float, float] | None = None  # the parent's own range (None: unknown)
    minimize: bool = False  # the parent's direction: its best is by its own measure


def parent_results(
    spec: StudyFile, storage: RDBStorage, existing: set[str], pname: str, *, partial: bool = False
) -> Parent:
    """The parent study's results for ``pname``; refused when the parent does not search
    it, has none, or has not reached its target (unless ``partial``)."""
    parent_name = spec.parent
    check_parent_stored(spec, existing)
    parent = optuna.load_study(study_name=parent_name, storage=storage)
    made = spec_of(parent.user_attrs)
    searched = sorted(made.search) if made else []
    if made and pname not in searched:  # (a study made by Optuna alone: unknown)
        raise StudyFileError(
            f"{spec.path}: search.{pname}.narrow_from: study {parent_name!r} does not search "
            f"{pname!r} (it searches {', '.join(searched) or 'nothing'}); narrow from a study "
            f"that does, or give [search.{pname}] low and high"
        )
    if made and made.search[pname].choices is not None:
        raise StudyFileError(
            f"{spec.path}: search.{pname}.narrow_from: study {parent_name!r} chose {pname!r} "
            f"among choices, which are never narrowed; give [search.{pname}] the same "
            "choices (the fine stage tries them all), or a low and high of your own"
        )
    trials = parent.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    done = [(t.params[pname], t.value) for t in trials if t.state == TrialState.COMPLETE]
    target = int(parent.user_attrs.get(TARGET) or len(trials))
    if not done:
        raise StudyNotFound(
            f"study {parent_name!r} has no COMPLETE trials to narrow from; run or resume it first"
        )
    # A grid every point of which has been tried cannot finish more (its failed points
    # have no others to run in their place): narrowing on what it has is all there is.
    if len(trials) < target and not (partial or _spent_grid(parent, made, len(trials), target)):
        raise SweepError(
            f"the fine stage narrows from study {parent_name!r}, which has {len(trials)} of its "
            f"{target} trials; finish it first (sweep resume {parent_name}), or pass "
            "--partial-parent to narrow on what it has"
        )
    searched = parent.user_attrs.get(RANGES, {}).get(pname)
    minimize = parent.direction == optuna.study.StudyDirection.MINIMIZE
    return Parent(
        done, len(trials), target, None if searched is None else tuple(searched[:2]), minimize
    )


def _spent_grid(parent: optuna.Study, made: StudyFile | None, finished: int, target: int) -> bool:
    """Whether ``parent`` is a grid every point of which has been tried for good: finished,
    or failed with its values not queued again."""
    if made is None or made.study.sampler != "grid":
        return False
    failed = parent.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return finished + sum(not requeued(t) for t in failed) >= target


def check_parent_stored(spec: StudyFile, names: set[str]) -> None:
    """Refuse a new fine stage whose parent is not among the storage's studies ``names``."""
    if spec.parent and spec.parent not in names and spec.study.name not in names:
        raise StudyNotFound(
            f"the fine stage narrows from study {spec.parent!r}, which is not in the storage; "
            + run_parent_first(spec)
        )


def run_parent_first(spec: StudyFile) -> str:
    """What to do when the parent study is missing: the study file beside this one that
    defines it, if there is one (as in studies/ and examples/), else a general hint."""
    folder = Path(spec.path).parent
    for path in sorted(folder.glob("*.toml")):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # not a study file we can read: not the one
            continue
        if isinstance(raw.get("study"), dict) and raw["study"].get("name") == spec.parent:
            return f"run it first: sweep run {path}"
    return f"run the study file whose [study] name is {spec.parent!r} first (sweep run FILE)"


def tied_values(spec: StudyFile, storage: RDBStorage, pname: str) -> list[float]:
    """The parent's values of ``pname`` in trials tied with its best."""
    parent = optuna.load_study(study_name=spec.parent, storage=storage)
    metric = spec_of(parent.user_attrs).metric
    ties = study_ties(parent, metric)
    tied = [
        t.params[pname]
        for t in parent.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if ties[t.number].tied and pname in t.params
    ]
    if not tied:
        raise StudyFileError(
            f'{spec.path}: search.{pname}.narrow = "tied" needs to know which trials of '
            f"{spec.parent!r} are tied with its best, and it cannot tell (its function kept no "
            f"per-image outcomes and returned no {metric}_se); use top_k instead"
        )
    return tied
