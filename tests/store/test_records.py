"""What is stored: one owner of the keys, and stores written by earlier versions still read.

tests/data/v0.2.db was written by lambda-sweep 0.2 (commit 8fcc429): a built-in coarse
stage (3 trials, synthetic data, study file tests/data/v0.2-coarse.toml), its fine stage
(2 trials) and a user-function study "user" (3 trials, metrics "score" and "other"), each
with `sweep run --jobs 1`.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli.main import main
from sweep.store import records
from sweep.store.records import SCHEMA, TrialResult, spec_of
from sweep.store.study import open_study
from tests.conftest import write_cifar

OLD = Path(__file__).resolve().parents[1] / "data" / "v0.2.db"


@pytest.fixture
def old_store(tmp_path):
    path = tmp_path / "v0.2.db"
    shutil.copy(OLD, path)
    return f"sqlite:///{path}"


def studies_of(url: str) -> dict[str, optuna.Study]:
    storage = optuna.storages.RDBStorage(url)
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=storage)
        for s in optuna.get_all_study_summaries(storage)
    }


def test_a_store_written_by_0_2_has_no_schema_and_reads_as_schema_1(old_store):
    found = studies_of(old_store)
    assert set(found) == {"coarse", "fine", "user"}
    for study in found.values():
        assert records.SCHEMA_KEY not in study.user_attrs
        assert records.schema_of(study.user_attrs) == 1
    # 0.2 named the built-in objective's module sweep.builtin; it is read under its new name.
    raw = found["coarse"].user_attrs[records.SPEC]["objective"]["module"]
    assert raw == "sweep.builtin"
    assert spec_of(found["coarse"].user_attrs).objective.module == "sweep.objectives.builtin"
    __import__(spec_of(found["coarse"].user_attrs).objective.module)  # and it imports


def test_its_trial_records_read_as_typed_results(old_store):
    for study in studies_of(old_store).values():
        for t in study.get_trials(states=[TrialState.COMPLETE]):
            result = TrialResult.of(t)
            metric = spec_of(study.user_attrs).metric
            # The stored mean is the trial's value, as 0.2 wrote both.
            assert result.metrics[metric] == pytest.approx(t.value)
            if "data" in study.user_attrs:  # the built-in stages: the data they ran on
                assert result.data_fingerprint == study.user_attrs["data"]["fingerprint"]
            assert (result.seeds and result.outcomes is None) or result.outcome_arrays()
    user = studies_of(old_store)["user"].get_trials(states=[TrialState.COMPLETE])
    assert all(set(TrialResult.of(t).metrics) == {"score", "other"} for t in user)


def test_status_trials_show_and_report_read_it(old_store, tmp_path, capsys):
    found = studies_of(old_store)
    assert main(["status", "--storage", old_store, "--json"]) == 0
    status = {s["study"]: s for s in json.loads(capsys.readouterr().out)}
    assert {k: s["states"]["COMPLETE"] for k, s in status.items()} == {
        "coarse": 3,
        "fine": 2,
        "user": 3,
    }
    best = found["coarse"].best_trial
    assert status["coarse"]["best"]["value"] == pytest.approx(best.value)

    assert main(["trials", "user", "--storage", old_store, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    stored = {t.number: t.params["x"] for t in found["user"].trials}
    assert {r["number"]: r["params"]["x"] for r in rows} == stored

    assert main(["show", "coarse", str(best.number), "--storage", old_store]) == 0
    assert f"trial {best.number}: COMPLETE" in capsys.readouterr().out

    out = tmp_path / "r"
    assert main(["report", "coarse", "fine", "--storage", old_store, "--out", str(out)]) == 0
    assert (out / "coarse" / "table.csv").is_file() and (out / "report.md").is_file()


def test_it_grows_by_new_trials_under_the_new_schema(old_store, tmp_path, capsys):
    """The 0.2 coarse stage, run again from its study file (tests/data/v0.2-coarse.toml)
    with two more trials: its three trials are untouched and the new ones complete."""
    found = studies_of(old_store)
    before = {t.number: (t.params, t.value) for t in found["coarse"].trials}
    write_cifar(tmp_path / "data", per_batch=300)  # the synthetic images 0.2 ran on
    study = OLD.parent / "v0.2-coarse.toml"
    argv = ["run", str(study), "--storage", old_store, "--trials", "5", "--jobs", "1"]
    code = main([*argv, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "r")])
    assert code == 0, capsys.readouterr().err
    stored = open_study("coarse", old_store)
    after = {t.number: (t.params, t.value) for t in stored.trials()}
    assert {k: after[k] for k in before} == before
    assert len(stored.trials(TrialState.COMPLETE)) == 5


def test_a_new_study_records_the_schema_and_typed_results(tmp_path):
    import sweep

    search = {"x": {"low": 0.1, "high": 1.0}}
    study = {
        "study": {"name": "new", "trials": 2},
        "objective": {"metric": "score"},
        "search": search,
    }
    url = f"sqlite:///{tmp_path / 'new.db'}"
    sweep.run(study, objective=lambda p, ctx: {"score": p["x"]}, storage=url, jobs=1)
    stored = open_study("new", url)
    assert records.schema_of(stored.attrs) == SCHEMA
    for t in stored.trials(TrialState.COMPLETE):
        assert TrialResult.of(t).metrics == {"score": t.value}


def test_outcomes_pack_to_one_bit_per_image():
    correct = np.random.default_rng(0).random(5000) < 0.5
    text = records.pack_bits(correct)
    assert len(text) <= 5000 / 8 * 4 / 3 + 4  # base64 of 625 bytes
    assert (records.unpack_bits(text, 5000) == correct).all()
