"""Several orchestrators started at the same moment on one storage (two terminals, a
script that launches `sweep run` twice): the study still ends with exactly its target,
each planned value COMPLETE once, nothing left queued.

Before the schema lock and the top-up under the study lock, on a new SQLite file about
half of such repeats ended with one orchestrator failing ("UNIQUE constraint failed:
alembic_version.version_num", DuplicatedStudyError) and ~30% left 4-8 duplicate queued
trials. Races are caught by repetition: each test starts its processes once and runs
REPEATS rounds, each on a new storage, released together by a barrier.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from sweep.spec import plan
from tests.conftest import race_orchestrators, study_text

pytestmark = pytest.mark.slow

TRIALS = 3


def _orchestrator(index, rounds, folder, data_dir, barrier, results):
    from sweep.cli.main import main
    from sweep.execution import processes

    for r, (url, names) in enumerate(rounds):
        name = names[index % len(names)]
        barrier.wait(timeout=120)
        argv = ["run", f"{folder}/{name}.toml", "--storage", url, "--data-dir", data_dir]
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main([*argv, "--jobs", "1", "--out", f"{folder}/out{index}"])
        results.put((r, index, code, err.getvalue()[-300:]))
    processes.stop()


def race(rounds, processes, tmp_path, cifar_dir):
    """``rounds``: [(storage URL, study names)]; process i runs names[i % len(names)]."""
    for name in {n for _, names in rounds for n in names}:
        (tmp_path / f"{name}.toml").write_text(study_text(name, trials=TRIALS, seed=5))
    race_orchestrators(_orchestrator, processes, rounds, str(tmp_path), str(cifar_dir))
    planned = sorted(
        plan.values_at("random", 5, i, {"lambda": (1e-4, 1e-1, True)})["lambda"]
        for i in range(TRIALS)
    )
    for url, names in rounds:
        for name in names:
            trials = optuna.load_study(study_name=name, storage=url).get_trials()
            states = Counter(t.state for t in trials)
            assert states == {TrialState.COMPLETE: TRIALS}, (url, states)
            assert sorted(t.params["lambda"] for t in trials) == pytest.approx(planned)


@pytest.mark.parametrize(
    ("processes", "names"),
    [(2, ["s"]), (4, ["s"]), (2, ["a", "b"])],
    ids=["two-same-study", "four-same-study", "two-different-studies"],
)
def test_orchestrators_at_once_on_a_new_sqlite_file(tmp_path, cifar_dir, processes, names):
    rounds = [(f"sqlite:///{tmp_path}/race{r}.db", names) for r in range(20)]
    race(rounds, processes, tmp_path, cifar_dir)


@pytest.mark.postgres
def test_orchestrators_at_once_on_postgresql(tmp_path, cifar_dir, pg_url):
    # A new database: the schema race happens in the first round, a study race in each.
    race([(pg_url, [f"s{r}"]) for r in range(6)], 4, tmp_path, cifar_dir)
