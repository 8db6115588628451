"""A study as stored: open it, count its trials, create it with its settings and ranges.

Everything a rerun needs lives in the storage (settings, derived ranges, target, the
planned point of every trial), so any command continues correctly after any crash. Only
public Optuna calls are used; the storage object is kept, never dug out of a study.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import NotWritable, StudyFileError, StudyNotFound
from sweep.spec import plan
from sweep.spec.builtin import limits
from sweep.spec.narrowing import narrow
from sweep.spec.space import Dimension
from sweep.spec.studyfile import StudyFile
from sweep.store import records
from sweep.store.enqueue import enqueue_again
from sweep.store.parent import parent_results, tied_values
from sweep.store.queries import count_states
from sweep.store.records import spec_of
from sweep.store.storage import StudyLock, open_storage
from sweep.system import signals


@dataclass
class Stored:
    """An opened study with the storage it was opened from."""

    url: str
    storage: BaseStorage  # RDBStorage, or a JournalStorage (sweep/store/journal.py)
    study: optuna.Study

    def __post_init__(self) -> None:
        self.study_id = self.storage.get_study_id_from_name(self.study.study_name)
        self._lock: StudyLock | None = None
        self._target: tuple[int, float] | None = None  # (target, when read)

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def attrs(self) -> dict[str, Any]:
        return self.storage.get_study_user_attrs(self.study_id)

    @property
    def spec(self) -> StudyFile:
        return spec_of(self.attrs)

    @property
    def target(self) -> int:
        return int(self.attrs[records.TARGET])

    def recent_target(self, max_age: float = 1.0) -> int:
        """The target as read at most ``max_age`` seconds ago: workers look at it before
        every pop (two round trips each time), and a rerun that changes it is seen within a
        second."""
        now = time.monotonic()
        if self._target is None or now - self._target[1] > max_age:
            self._target = (self.target, now)
        return self._target[0]

    @property
    def ranges(self) -> dict[str, tuple[float, float, bool]]:
        """The numeric ranges searched (fine stages: as narrowed): name -> (low, high, log)."""
        return {
            k: (float(v[0]), float(v[1]), bool(v[2])) for k, v in self.attrs[records.RANGES].items()
        }

    def space(self, spec: StudyFile) -> dict[str, Dimension]:
        """Every searched parameter's Dimension: stored ranges, kinds from the study file."""
        ranges = self.ranges
        space = {}
        for name, r in spec.search.items():
            if name in ranges:
                low, high, log = ranges[name]
                space[name] = Dimension(low, high, log, r.is_int)
            else:
                space[name] = r.fixed()
        return space

    def counts(self) -> dict[str, int]:
        return count_states(self.storage, self.study_id)

    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def best(self) -> FrozenTrial | None:
        """The best COMPLETE trial, or None before the first one."""
        if not self.counts()["COMPLETE"]:
            return None
        return self.study.best_trial

    @contextlib.contextmanager
    def locked(self, wait: bool = True) -> Iterator[bool]:
        """Hold the study lock (see StudyLock) for a check-then-change step. With
        ``wait=False`` only if no other process holds it; yields whether it is held."""
        if self._lock is None:
            self._lock = StudyLock(self.storage, self.url, self.name)
        held = self._lock.acquire(wait)
        try:
            yield held
        finally:
            if held:
                self._lock.release()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def open_study(
    name: str,
    url: str,
    *,
    read_only: bool = False,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> Stored:
    """Open a study that must already exist (readers, workers, resume)."""
    storage = open_storage(url, create=False, read_only=read_only, on_stale=enqueue_again)
    names = sorted(s.study_name for s in storage.get_all_studies())
    if name not in names:
        listed = ", ".join(names) if names else "none yet"
        raise StudyNotFound(f"no study named {name!r}; studies in this storage: {listed}")
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if records.SPEC not in study.user_attrs:
        raise StudyNotFound(
            f"study {name!r} was not made by lambda-sweep (it has no study settings); read it "
            "with Optuna, or pass the name of a lambda-sweep study"
        )
    return Stored(url, storage, study)


def open_to_write(name: str, url: str) -> tuple[Stored, bool]:
    """The study opened for a command that writes (resume, worker), and False; or, when
    its database file cannot be written, the study opened read-only and True if it is
    finished (its target reached, nothing running): such a command has nothing to write
    to it, so a read-only (archived) file does not stop it. Otherwise NotWritable."""
    try:
        return open_study(name, url), False
    except NotWritable:
        stored = open_study(name, url, read_only=True)
        counts = stored.counts()
        if finished(counts) >= stored.target and counts["RUNNING"] == 0:
            return stored, True
        stored.close()
        raise


def prepare(
    spec: StudyFile, url: str, *, target: int, partial_parent: bool = False
) -> tuple[Stored, list[str]]:
    """Create the study (or load it), store its settings and ranges once; set the target.

    Runs under the study lock, so any number of orchestrators may prepare the same study
    at once; every step checks what the storage already holds, so a run killed half-way
    through is completed by the next one. A fine stage's ranges are derived before the
    study is created: a parent that cannot give them leaves nothing behind. Returns the
    study and notes for the user.
    """
    storage = open_storage(url, create=not spec.parent, on_stale=enqueue_again)
    name = spec.study.name
    lock = StudyLock(storage, url, name)
    try:
        with lock, signals.deferred():  # a study is created with its settings, or not at all
            existing = {s.study_name for s in storage.get_all_studies()}
            derived = None
            if name not in existing:
                derived = _derive_ranges(spec, storage, existing, partial_parent)
                optuna.create_study(
                    study_name=name, storage=storage, direction=spec.objective.direction
                )
            stored = Stored(url, storage, optuna.load_study(study_name=name, storage=storage))
            notes = _store_settings(stored, spec, existing, target, derived, partial_parent)
    finally:
        lock.close()
    return stored, notes


@dataclass
class _Derived:
    """A study's searched ranges as first derived, with what the user is told about them."""

    ranges: dict[str, list]
    notes: list[str]
    attrs: dict[str, Any]  # stored with the study: range_note, partial_parent


def _derive_ranges(
    spec: StudyFile, storage: RDBStorage, existing: set[str], partial_parent: bool
) -> _Derived:
    derived = _Derived({}, [], {})
    for pname, r in spec.search.items():
        if r.narrow_from:
            parent = parent_results(spec, storage, existing, pname, partial=partial_parent)
            if r.log and any(v <= 0 for v, _ in parent.done):
                raise StudyFileError(
                    f"{spec.path}: search.{pname} narrows on a log scale (the default), but "
                    f"{r.narrow_from} tried values <= 0; add log = false to [search.{pname}]"
                )
            narrowed = narrow(
                parent.done,
                keep=tied_values(spec, storage, pname) if r.narrow == "tied" else None,
                top_k=r.top_k,
                margin=r.margin,
                log=r.log,
                minimize=parent.minimize,  # (this stage may optimise something else)
                is_int=r.is_int,
                bounds=limits(pname, spec.split) if spec.objective.builtin else (None, None),
                within=parent.searched,
            )
            derived.ranges[pname] = [narrowed.low, narrowed.high, r.log]
            derived.notes.append(
                f"{pname} range narrowed from {r.narrow_from}: "
                f"[{narrowed.low:.3g}, {narrowed.high:.3g}] ({narrowed.note})"
            )
            derived.attrs["range_note"] = narrowed.note
            if parent.finished < parent.target:
                partial = f"{parent.finished} of its {parent.target} trials"
                derived.notes.append(f"narrowed on a partial parent: {r.narrow_from} had {partial}")
                derived.attrs["partial_parent"] = {
                    "study": r.narrow_from,
                    "finished": parent.finished,
                    "target": parent.target,
                }
        elif r.choices is None:
            derived.ranges[pname] = [r.low, r.high, r.log]
    return derived


def _comparable(spec: StudyFile) -> dict:
    d = spec.to_dict()
    d.pop("path")
    d["study"].pop("trials")
    d["study"].pop("trial_timeout", None)  # may change between runs, as the target may
    d["objective"].pop("folder")  # the study file may move; the function is the same
    for part in (d["train"] or {}, d["fixed"]):
        part.pop("curves", None)  # how curves are recorded, not what the study is
    return d


def _differences(stored: dict, given: dict, shown: int = 3) -> str:
    """What differs between two settings dicts ("key: X stored, Y here"), the first few."""

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: d}
        return {k: v for key, sub in d.items() for k, v in flat(sub, f"{prefix}{key}.").items()}

    a, b = flat(stored), flat(given)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    lines = [f"{k.rstrip('.')}: {a.get(k)!r} stored, {b.get(k)!r} here" for k in keys[:shown]]
    return "; ".join(lines) + (f"; and {len(keys) - shown} more" if len(keys) > shown else "")


def _store_settings(
    stored: Stored,
    spec: StudyFile,
    existing: set[str],
    target: int,
    derived: _Derived | None,
    partial_parent: bool,
) -> list[str]:
    notes: list[str] = []
    study, attrs = stored.study, stored.attrs
    foreign = records.SPEC not in attrs and (
        len(study.directions) != 1 or sum(stored.counts().values())
    )
    if foreign:  # made by Optuna itself or another tool: its trials are not this study's
        raise StudyFileError(
            f"{spec.path}: study {spec.study.name!r} is in the storage but was not made by "
            "lambda-sweep; give the study a new name (or use another --storage)"
        )
    if records.SPEC not in attrs:
        study.set_metric_names([spec.metric])  # optuna-dashboard names the axis after it
        study.set_user_attr(records.SCHEMA_KEY, records.SCHEMA)
        study.set_user_attr(records.SPEC, spec.to_dict())
        study.set_user_attr(records.STAGE, spec.stage)
        study.set_user_attr(records.PARENT, spec.parent)
    elif changed := _differences(_comparable(spec_of(attrs)), _comparable(spec)):
        raise StudyFileError(
            f"{spec.path}: study {spec.study.name!r} already exists in the storage with other "
            f"settings ({changed}); give the study a new name (or use another --storage)"
        )
    if records.RANGES not in attrs:  # derived once; a resumed fine stage never recomputes it
        derived = derived or _derive_ranges(spec, stored.storage, existing, partial_parent)
        notes += derived.notes
        for key, value in derived.attrs.items():
            study.set_user_attr(key, value)
        study.set_user_attr(records.RANGES, derived.ranges)
    old = attrs.get(records.TARGET)
    if old != target and spec.study.sampler == "grid" and old is not None:
        taken = _grid_points(stored)
        _check_grid_change(spec, old, target, taken)
        if target < old and not taken <= set(plan.grid_units(target)):
            # Set back to fewer points, the grid would end on whichever of the finer one's
            # were queued first (some of its points run, others never): it stays refined.
            notes.append(
                f"study {spec.study.name!r} is a grid refined to {old} points, "
                f"{len(taken)} of them given to trials: it stays a grid of {old} points "
                f"(a grid of {target} would leave those out of place)"
            )
            target = old
    if old != target:
        study.set_user_attr(records.TARGET, target)
        done = finished(stored.counts()) if old is not None and target < old else 0
        if done > target:  # (it said nothing: "finished=8/3")
            notes.append(
                f"study {spec.study.name!r} has {done} finished trials, more than its new "
                f"target of {target}: none runs, and its tables keep all {done}"
            )
    return notes


def _grid_points(stored: Stored) -> set[Fraction]:
    """The grid points already given to trials, as fractions of the range."""
    points = (records.point_of(t) for t in stored.trials())
    return {Fraction(*p) for p in points if isinstance(p, list)}


def _check_grid_change(spec: StudyFile, old: int, new: int, taken: set[Fraction]) -> None:
    """A grid's points are evenly spaced: a new target must keep every old point and every
    point already run (a grid refined, then set back to fewer points, holds the finer
    one's), or (a smaller one, back to the file's after --trials refined it) be among them."""
    small, big = sorted((old, new))
    kept = set(plan.grid_units(small)) | (taken if new > old else set())
    if not kept <= set(plan.grid_units(big)):
        # The smallest grid holding every kept point, and the next refinement of it.
        intervals = math.lcm(*(u.denominator for u in kept))
        finer = ", ".join(str(k * intervals + 1) for k in (1, 2)) if intervals > 1 else "3, 5"
        held = f"{old} points" if kept == set(plan.grid_units(small)) else "points of a finer one"
        raise StudyFileError(
            f"{spec.path}: study {spec.study.name!r} is a grid of {held}; {new} points "
            f"would not contain them, so values would run twice. Use a refinement ({finer}) "
            "or give the study a new name"
        )


# --- counts -----------------------------------------------------------------------------


def finished(counts: dict[str, int]) -> int:
    """Trials that count towards the target: COMPLETE and PRUNED, as Optuna's n_trials
    counts them (a pruned trial was judged, so it is not replaced); FAILed trials are."""
    return counts["COMPLETE"] + counts["PRUNED"]
