"""Packed trials in studies: each member its own trial, whatever happens to the others."""

import dataclasses

import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli.main import main
from sweep.execution.runner import run_study
from sweep.spec import studyfile
from sweep.store.queue import next_trials
from sweep.store.study import open_study, prepare
from tests.conftest import EXAMPLES, check, digest_of, study_text


def spec(tmp_path, name, pack, trials=4, sampler="random", low=1e-4, high=1e-1, n_s=40):
    path = tmp_path / f"{name}.toml"
    text = study_text(
        name,
        trials=trials,
        sampler=sampler,
        n_s=n_s,
        evals_per_cycle=4,
        search=f"low = {low}\nhigh = {high}",
    )
    path.write_text(text.replace(f'name = "{name}"', f'name = "{name}"\npack = {pack}'))
    return studyfile.load(path)


def completed(url, name):
    study = optuna.load_study(study_name=name, storage=url)
    return {t.params["lambda"]: t for t in study.trials if t.state == TrialState.COMPLETE}


def test_a_pack_of_4_gives_each_trial_the_result_it_has_alone(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/p.db"
    run_study(spec(tmp_path, "alone", pack=1), storage_url=url, jobs=1, data_dir=cifar_dir)
    run_study(spec(tmp_path, "packed", pack=4), storage_url=url, jobs=1, data_dir=cifar_dir)
    alone, packed = completed(url, "alone"), completed(url, "packed")
    assert sorted(alone) == sorted(packed) and len(packed) == 4  # the same planned lambdas
    numbers = sorted(t.number for t in packed.values())
    for lam, trial in packed.items():
        result, single = trial.user_attrs["result"], alone[lam].user_attrs["result"]
        assert result["pack"] == numbers  # trained together, told apart
        assert single["pack"] is None
        assert trial.value == pytest.approx(alone[lam].value, abs=0.003)
        assert result["curves"]["step"] == single["curves"]["step"]
        assert result["outcomes"]["n"] == single["outcomes"]["n"]


def test_a_diverging_member_fails_alone_and_the_others_complete(tmp_path, cifar_dir):
    # lambda >= ~10 makes the decay factor 1 - 2 eta lambda < -1: those members explode.
    url = f"sqlite:///{tmp_path}/d.db"
    grid = dict(trials=4, sampler="grid", low=1e-3, high=1e4)
    result = run_study(
        spec(tmp_path, "packed", pack=4, **grid), storage_url=url, jobs=1, data_dir=cifar_dir
    )
    # The grid has no other points: the run ends with what it could finish, and says so.
    assert any("every point of the grid has been tried: 2/4 finished" in n for n in result.notes)
    trials = optuna.load_study(study_name="packed", storage=url).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert failed and done and len(failed) + len(done) == 4
    assert all("diverged" in t.user_attrs["fail_reason"] for t in failed)
    assert all(t.params["lambda"] > 1 for t in failed)
    assert all(t.params["lambda"] < 1 for t in done)
    # the survivors finished with their own results, those of training alone
    url1 = f"sqlite:///{tmp_path}/d1.db"
    run_study(spec(tmp_path, "alone", pack=1, **grid), storage_url=url1, jobs=1, data_dir=cifar_dir)
    alone = completed(url1, "alone")
    for t in done:
        assert t.value == pytest.approx(alone[t.params["lambda"]].value, abs=0.003)


def list_study(tmp_path, source: str, study: str):
    """Study "u" of the function ``score`` (and its list form) in ``source``, over x in
    [0, 1], packs of 3; ``study``: more [study] lines."""
    (tmp_path / "f.py").write_text(source)
    path = tmp_path / "u.toml"
    path.write_text(
        f'[study]\nname = "u"\nseed = 1\npack = 3\n{study}\n'
        '[objective]\nfile = "f.py"\nfunction = "score"\nmetric = "value"\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    return path


LIST_FORM = """
def score(params, ctx):
    if params["x"] > 0.75:
        raise ValueError("too large")
    return params["x"]

def score_many(params_list, ctx):
    ctx.report(0, 0, 1.0)
    n = len(params_list)
    return [ValueError("too large") if p["x"] > 0.75 else {"value": p["x"], "pack": n}
            for p in params_list]
"""


def test_a_users_list_form_is_called_once_per_pack_and_each_result_is_its_own(tmp_path):
    path = list_study(tmp_path, LIST_FORM, 'trials = 6\nsampler = "grid"')
    url = f"sqlite:///{tmp_path}/u.db"
    assert main(["run", str(path), "--storage", url, "--jobs", "1"]) in (0, 1)
    trials = optuna.load_study(study_name="u", storage=url).trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert {t.user_attrs["result"]["metrics"]["pack"] for t in done} == {3.0}
    assert all(t.params["x"] <= 0.75 for t in done) and len(done) >= 3
    assert failed and all(t.user_attrs["fail_reason"] == "ValueError: too large" for t in failed)
    assert all(t.params["x"] > 0.75 for t in failed)


def test_pack_without_a_list_form_is_refused_before_anything_is_written(tmp_path, capsys):
    (tmp_path / "f.py").write_text("def single(params, ctx):\n    return params['x']\n")
    path = tmp_path / "n.toml"
    path.write_text(
        '[study]\nname = "n"\ntrials = 2\npack = 4\n'
        '[objective]\nfile = "f.py"\nfunction = "single"\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    url = f"sqlite:///{tmp_path}/n.db"
    check(capsys, ["run", str(path), "--storage", url], "define single_many(params_list, ctx)")
    assert not (tmp_path / "n.db").exists()
    text = path.read_text()
    path.write_text(text.replace("pack = 4", "pack = 0"))
    check(capsys, ["run", str(path), "--storage", url], "pack (0) must be between 1 and 64")
    # without a pack setting a function without a list form runs its trials one by one
    path.write_text(text.replace("pack = 4\n", ""))
    assert main(["run", str(path), "--storage", url]) == 0
    before = digest_of(tmp_path / "n.db")
    path.write_text(text)
    check(capsys, ["run", str(path), "--storage", url], "needs a list form")
    assert digest_of(tmp_path / "n.db") == before


def test_the_synthetic_examples_list_form_matches_its_single_form(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    values = {}
    s = studyfile.load(EXAMPLES / "synthetic" / "coarse.toml")
    for pack in (1, 4):
        study = dataclasses.replace(s.study, name=f"p{pack}", pack=pack)
        run_study(dataclasses.replace(s, study=study), storage_url=url, jobs=2)
        values[pack] = sorted(completed(url, f"p{pack}").items())
    assert [(k, t.value) for k, t in values[1]] == [(k, t.value) for k, t in values[4]]
    assert any(t.user_attrs["result"]["pack"] for _, t in values[4])


def split_spec(tmp_path, folder=None):
    """A 10-trial study of a function with a list form, packs of 8."""
    (tmp_path / "split.py").write_text(SPLIT)
    train = f'[train]\nfolder = "{folder}"\n' if folder else ""
    path = tmp_path / "split.toml"
    path.write_text(
        '[study]\nname = "split"\ntrials = 10\nseed = 1\npack = 8\n'
        '[objective]\nfile = "split.py"\nfunction = "value"\n'
        f"{train}[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    return studyfile.load(path)


SPLIT = """
import os
import time

def value(params, ctx):
    return params["x"]

def value_many(params_list, ctx):
    # Wait (up to 60 s) until the other worker's pack runs too: two workers that start
    # together on a study of long trials, whatever their start-up takes on this machine.
    folder = params_list[0]["folder"]
    open(os.path.join(folder, str(ctx.trials[0])), "w").close()
    end = time.monotonic() + 60
    while len(os.listdir(folder)) < 2 and time.monotonic() < end:
        time.sleep(0.05)
    return [p["x"] for p in params_list]
"""


def test_two_workers_popping_a_10_trial_study_get_5_trials_each(tmp_path):
    # README, "Packed trials": a pack takes at most its share of the unfinished trials.
    url = f"sqlite:///{tmp_path}/s.db"
    spec = split_spec(tmp_path)
    first, _ = prepare(spec, url, target=10)
    second = open_study("split", url)
    a, done_a = next_trials(first, spec, size=8, workers=2)
    b, done_b = next_trials(second, spec, size=8, workers=2)
    assert (len(a), len(b), done_a, done_b) == (5, 5, False, False)
    assert {p.number for p in a} | {p.number for p in b} == set(range(10))
    assert next_trials(first, spec, size=8, workers=2) == ([], False)  # all running


def test_two_workers_starting_a_10_trial_study_run_packs_of_5(tmp_path):
    (tmp_path / "started").mkdir()
    spec = split_spec(tmp_path, folder=tmp_path / "started")
    url = f"sqlite:///{tmp_path}/r.db"
    assert run_study(spec, storage_url=url, jobs=2).counts["COMPLETE"] == 10
    trials = optuna.load_study(study_name="split", storage=url).trials
    packs = {tuple(t.user_attrs["result"]["pack"]) for t in trials}
    assert sorted(len(p) for p in packs) == [5, 5]
    assert set().union(*packs) == set(range(10))


ENDS_EARLY = """
import os
import time
from pathlib import Path

FOLDER = Path(os.environ["EARLY_DIR"])


def score(params, ctx):
    return {"value": params["x"]}


def score_many(params_list, ctx):
    if (FOLDER / "ended").exists():  # later packs: every member completes
        return [{"value": p["x"]} for p in params_list]
    gave_up = RuntimeError("member 0 gave up")
    ctx.end(0, gave_up)  # recorded now; the others go on
    (FOLDER / "ended").write_text("")
    while not (FOLDER / "go").exists():
        time.sleep(0.02)
    return [gave_up] + [{"value": p["x"]} for p in params_list[1:]]
"""


def test_a_member_that_leaves_the_pack_is_ended_at_once_and_a_stop_meanwhile_keeps_it(tmp_path):
    # The pack trains on after member 0 left it: its FAIL is in the storage already, so a
    # Ctrl-C meanwhile requeues only the members still training, and its values never run
    # again (they did: a pruned member, rerun alone after a kill, ended COMPLETE).
    import os
    import signal
    import subprocess
    import time

    from tests.conftest import sweep, wait_for

    path = list_study(tmp_path, ENDS_EARLY, "trials = 3")
    url = f"sqlite:///{tmp_path}/u.db"
    env = {**os.environ, "EARLY_DIR": str(tmp_path)}
    command = sweep("run", str(path), "--storage", url, "--jobs", "1")
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "ended").exists(), timeout=60)
        trials = optuna.load_study(study_name="u", storage=url).trials
        states = [t.state for t in trials]
        assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]
        assert trials[0].user_attrs["fail_reason"] == "RuntimeError: member 0 gave up"
        gave_up = trials[0].params["x"]
        time.sleep(0.5)  # any late write of member 0's end would land by now
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    trials = optuna.load_study(study_name="u", storage=url).trials
    assert trials[0].user_attrs["fail_reason"] == "RuntimeError: member 0 gave up"
    (tmp_path / "go").write_text("")
    resumed = sweep("resume", "u", "--storage", url, "--jobs", "1")
    assert subprocess.run(resumed, env=env, capture_output=True, timeout=120).returncode == 0
    trials = optuna.load_study(study_name="u", storage=url).trials
    assert [t.state for t in trials if t.params["x"] == gave_up] == [TrialState.FAIL]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3


LOST_OR_ENDED = """
import sqlalchemy.exc


def score(params, ctx):
    with open("{folder}/alone.txt", "a") as f:
        print(params["x"], params["seed"], file=f)
    return {"value": params["x"]}


def score_many(params_list, ctx):
    first = params_list[0]["seed"] == 1 and len(params_list) == 3
    if first and "{case}" == "lost":  # the database went away as member 0 reported
        lost = sqlalchemy.exc.OperationalError("INSERT", None, Exception("server closed"))
        ctx.end(0, lost)
        return [lost] + [{"value": p["x"]} for p in params_list[1:]]
    if first:  # member 0 gave up, then the list form broke on another member's values
        ctx.end(0, RuntimeError("member 0 gave up"))
        raise ValueError("the pack broke")
    return [{"value": p["x"]} for p in params_list]
"""


@pytest.mark.parametrize("case", ["lost", "raised"])
def test_a_member_ended_early_is_neither_failed_for_a_lost_database_nor_run_again(tmp_path, case):
    # lost: a member whose end is a lost database connection is requeued, not failed for
    # good (its values run again). raised: a member ended through ctx.end is not run again
    # alone when the list form then raises, nor in the next seed.
    source = LOST_OR_ENDED.replace("{case}", case).replace("{folder}", str(tmp_path))
    path = list_study(tmp_path, source, "trials = 3\nrepeats = 2")
    url = f"sqlite:///{tmp_path}/u.db"
    main(["run", str(path), "--storage", url, "--jobs", "1", "--out", str(tmp_path / "o")])
    ran = tmp_path / "alone.txt"
    alone = (
        [float(line.split()[0]) for line in ran.read_text().splitlines()] if ran.exists() else []
    )
    trials = optuna.load_study(study_name="u", storage=url).trials
    first = trials[0]
    assert first.state == TrialState.FAIL
    again = [t for t in trials[1:] if t.params["x"] == first.params["x"]]
    if case == "lost":
        assert "lost the database" in first.user_attrs["fail_reason"]
        assert [t.state for t in again] == [TrialState.COMPLETE]  # its values ran again
    else:
        assert first.user_attrs["fail_reason"] == "seed 1: RuntimeError: member 0 gave up"
        # members 1 and 2 ran alone once (seed 1), then as a pack; member 0 never again
        assert again == [] and first.params["x"] not in alone
        assert sorted(alone[:2]) == sorted(t.params["x"] for t in trials[1:3])
