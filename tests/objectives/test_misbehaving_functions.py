"""User functions that exit, crash, hang or return what is not a number (README "What a
function may do"): each is that trial's FAIL with its reason, and the study goes on."""

import contextlib
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli.main import main
from sweep.errors import RunFailed, StudyFileError
from sweep.execution.runner import run_study
from sweep.spec.studyfile import load, parse
from tests.conftest import start, sweep, wait_for

FUNCTIONS = """
import ctypes, math, os, signal, sys, time

def exits(params, ctx):
    if params["x"] > 0.5:
        sys.exit(3)
    return params["x"]

def interrupts(params, ctx):
    if params["x"] > 0.5:
        raise KeyboardInterrupt
    return params["x"]

def leaves(params, ctx):
    if params["x"] > 0.5:
        os._exit(0)
    return params["x"]

def segfaults(params, ctx):
    if params["x"] > 0.75:
        ctypes.string_at(0)
    return params["x"]

def always_killed(params, ctx):
    os.kill(os.getpid(), signal.SIGKILL)

def crashes_pack(params, ctx):
    return crashes_pack_many([params], ctx)[0]

def crashes_pack_many(params_list, ctx):
    if any(p["x"] > 0.8 for p in params_list):
        os.kill(os.getpid(), signal.SIGKILL)
    return [p["x"] for p in params_list]

def raises_pack(params, ctx):
    ctx.report(0, params["x"])
    if params["x"] > 0.8:
        raise ValueError(f"x = {params['x']:.3f} is too large")
    if params["x"] > 0.6:
        sys.exit(4)
    return params["x"]

def raises_pack_many(params_list, ctx):
    for i, p in enumerate(params_list):
        ctx.report(i, 0, p["x"])
    for p in params_list:
        if p["x"] > 0.6:
            raise ValueError("one of the pack's values is bad")
    return [p["x"] for p in params_list]

def hangs(params, ctx):
    if params["x"] > 0.5:
        time.sleep(10**6)
    return params["x"]

def stubborn(params, ctx):
    if ctx.trial == 0:  # ignores its timeout: only ending its process stops it
        end = time.time() + 60
        while time.time() < end:
            try:
                time.sleep(0.5)
            except BaseException:
                pass
    return params["x"]

def not_numbers(params, ctx):
    return {"score": True} if params["x"] > 0.5 else {"score": "0.5"}

def bare_bool(params, ctx):
    return True

def returns_interrupt(params, ctx):
    return returns_interrupt_many([params], ctx)[0]

def returns_interrupt_many(params_list, ctx):
    return [KeyboardInterrupt() if p["x"] > 0.5 else p["x"] for p in params_list]

def nan_extra(params, ctx):
    if params["x"] > 0.5:
        return {"score": float("nan")}
    return {"score": params["x"], "extra": math.inf}

def bad_outcomes(params, ctx):
    ctx.keep_outcomes(1 if params["x"] > 0.5 else "abc")
    return params["x"]

def bad_outcomes_many(params_list, ctx):
    for i in range(len(params_list)):
        ctx.keep_outcomes(i, [[True, False]])
    return [p["x"] for p in params_list]

class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("str broke")

def unprintable(params, ctx):
    raise Unprintable()

STORED = ValueError("bad input")

def reraises(params, ctx):
    raise STORED

def fails_on_seed_6(params, ctx):
    if params["seed"] == 6:
        raise ValueError("not this seed")
    return params["x"]

def inf_on_seed_6(params, ctx):
    return math.inf if params["seed"] == 6 else params["x"]

def ends_on_seed_7(params, ctx):
    return ends_on_seed_7_many([params], ctx)[0]

def ends_on_seed_7_many(params_list, ctx):
    if params_list[0]["seed"] == 7:
        for i in range(len(params_list)):
            ctx.end(i, ValueError("ended"))
    return [p["x"] for p in params_list]

def some_seeds(params, ctx):
    out = {"v": params["x"] + params["seed"]}
    if params["seed"] % 2 == 0:
        out["extra"] = float(params["seed"])
    return out
"""


def make(folder: Path, name: str, function: str, *, trials: int = 6, extra: str = "") -> Path:
    (folder / "funcs.py").write_text(FUNCTIONS)
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\ntrials = {trials}\nseed = 5\n{extra}\n'
        f'[objective]\nfile = "funcs.py"\nfunction = "{function}"\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    return path


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).trials


def settled(trials) -> None:
    """Nothing left RUNNING or WAITING: the study ended cleanly."""
    states = Counter(t.state for t in trials)
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0, states


@pytest.mark.parametrize(
    ("function", "reason"),
    [
        ("exits", "the function exited (SystemExit: 3)"),
        ("interrupts", "the function raised KeyboardInterrupt"),
        ("leaves", "the function called os._exit(0)"),
    ],
)
def test_exits_and_interrupts_raised_by_the_function_fail_their_trial(tmp_path, function, reason):
    url = f"sqlite:///{tmp_path}/s.db"
    result = run_study(load(make(tmp_path, "s", function)), storage_url=url, jobs=2)
    assert result.counts["COMPLETE"] == 6
    trials = trials_of(url, "s")
    settled(trials)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["fail_reason"] == reason for t in failed)
    assert all(t.params["x"] > 0.5 for t in failed)
    assert all(t.value <= 0.5 for t in trials if t.state == TrialState.COMPLETE)


def test_os_exit_in_a_worker_of_one_job_fails_the_trial_and_the_worker_goes_on(tmp_path):
    path = make(tmp_path, "w", "leaves", trials=5)
    url = f"sqlite:///{tmp_path}/w.db"
    orchestrator = start("run", str(path), "--storage", url, "--jobs", "0")

    def created() -> bool:
        if orchestrator.poll() is not None:  # it ended: say why rather than wait 120 s
            raise AssertionError(orchestrator.communicate()[1])
        return Path(f"{tmp_path}/w.db").exists() and "w" in studies(url)

    wait_for(created)
    done = subprocess.run(
        sweep("worker", "w", "--storage", url), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    _, err = orchestrator.communicate(timeout=120)
    assert orchestrator.returncode == 0, err
    trials = trials_of(url, "w")
    assert Counter(t.state for t in trials)[TrialState.COMPLETE] == 5
    assert any(t.user_attrs.get("fail_reason") == "the function called os._exit(0)" for t in trials)


def test_a_crash_in_a_worker_of_one_job_says_where_on_stderr(tmp_path):
    # `sweep worker --jobs 1` runs trials in its own process, so a crash ends it (README);
    # it ended with nothing said at all, only the shell's "Segmentation fault".
    path = make(tmp_path, "w", "segfaults", trials=8)
    url = f"sqlite:///{tmp_path}/w.db"
    orchestrator = start("run", str(path), "--storage", url, "--jobs", "0")
    try:
        wait_for(lambda: Path(f"{tmp_path}/w.db").exists() and "w" in studies(url))
        done = subprocess.run(
            sweep("worker", "w", "--storage", url), capture_output=True, text=True, timeout=300
        )
    finally:
        orchestrator.kill()
        orchestrator.communicate()
    assert done.returncode != 0
    assert "Fatal Python error: Segmentation fault" in done.stderr, done.stderr
    assert re.search(r'funcs.py", line \d+ in segfaults', done.stderr), done.stderr


def studies(url: str) -> set[str]:
    """The storage's studies, once it is created. Read as sweep's readers read it: a plain
    `optuna.get_all_study_names` on a file being created would create the tables too and
    race the orchestrator, which then fails ("table already exists")."""
    from sweep.store.storage import open_storage

    try:
        return {s.study_name for s in open_storage(url, read_only=True).get_all_studies()}
    except Exception:
        return set()


def test_sys_exit_at_import_is_a_study_file_error(tmp_path, capsys):
    (tmp_path / "boom.py").write_text("import sys\nsys.exit(4)\n")
    path = tmp_path / "b.toml"
    path.write_text(
        '[study]\nname = "b"\n[objective]\nfile = "boom.py"\n[search.x]\nlow = 1.0\nhigh = 2.0\n'
    )
    assert main(["run", str(path), "--storage", f"sqlite:///{tmp_path}/b.db"]) == 2
    err = capsys.readouterr().err
    assert "raised SystemExit at import" in err and "Traceback" not in err


def test_a_value_that_kills_its_worker_twice_is_not_run_again(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    study = str(make(tmp_path, "c", "segfaults"))
    done = subprocess.run(
        sweep("run", study, "--jobs", "2", "--storage", url, "--out", str(tmp_path / "out")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # No fault-handler dump (~50 lines a crash, which loky's workers used to print): the
    # trials' reasons say where instead.
    assert "Fatal Python error" not in done.stderr and "Traceback" not in done.stderr
    trials = trials_of(url, "c")
    assert Counter(t.state for t in trials)[TrialState.COMPLETE] == 6
    settled(trials)
    attempts = Counter(t.params["x"] for t in trials if t.state == TrialState.FAIL)
    crashed = {x for x in attempts if x > 0.75}
    assert crashed  # some planned values crash
    # Each crashing value failed for good once it crashed a process of its own; the healthy
    # ones never did. (A value runs alone after a crash, in a child of a pool worker, which
    # the other worker's crash may also take down: two or three attempts.)
    final = [t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("requeued")]
    assert {t.params["x"] for t in final} == crashed
    assert all(attempts[x] in (2, 3) for x in crashed), attempts
    where = "its process died running it alone (SIGSEGV in segfaults at funcs.py:"
    assert all(where in t.user_attrs["fail_reason"] for t in final)
    assert all("not run again" in t.user_attrs["fail_reason"] for t in final)
    healthy = [t.params["x"] for t in trials if t.state == TrialState.COMPLETE]
    assert all(x <= 0.75 for x in healthy) and len(set(healthy)) == 6


def test_a_study_whose_values_all_kill_their_worker_stops_with_the_reasons(tmp_path):
    url = f"sqlite:///{tmp_path}/k.db"
    with pytest.raises(RunFailed, match="made no progress") as info:
        run_study(load(make(tmp_path, "k", "always_killed", trials=2)), storage_url=url, jobs=2)
    assert "not run again" in str(info.value)
    settled(trials_of(url, "k"))


def test_a_pack_member_that_kills_the_process_does_not_take_its_mates_down(tmp_path):
    url = f"sqlite:///{tmp_path}/p.db"
    path = make(tmp_path, "p", "crashes_pack", trials=8, extra="pack = 4")
    result = run_study(load(path), storage_url=url, jobs=2)
    assert result.counts["COMPLETE"] == 8
    trials = trials_of(url, "p")
    settled(trials)
    final = [t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("requeued")]
    assert final and all(t.params["x"] > 0.8 for t in final)
    complete = {t.params["x"] for t in trials if t.state == TrialState.COMPLETE}
    mates = {t.params["x"] for t in trials if t.params["x"] <= 0.8}
    assert mates <= complete  # every healthy value that shared a pack with a crash completed


def test_a_list_form_that_raises_fails_only_the_member_that_raises_alone(tmp_path):
    """The list form raises for the whole pack: each member is called alone, and only the
    values that raise (or exit) alone fail, each with its own reason; the others complete,
    with the step the list form reported kept once."""
    url = f"sqlite:///{tmp_path}/r.db"
    path = make(tmp_path, "r", "raises_pack", trials=8, extra="pack = 4")
    with contextlib.suppress(RunFailed):
        run_study(load(path), storage_url=url, jobs=2)
    trials = trials_of(url, "r")
    settled(trials)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 8 and all(t.params["x"] <= 0.6 for t in complete)
    assert failed and all(t.params["x"] > 0.6 for t in failed)
    for t in failed:
        x = t.params["x"]
        reason = t.user_attrs["fail_reason"]
        assert reason == (
            f"ValueError: x = {x:.3f} is too large"
            if x > 0.8
            else "the function exited (SystemExit: 4)"
        )
    assert all(t.intermediate_values == {0: t.params["x"]} for t in complete)


def test_a_trial_past_its_timeout_fails_and_is_not_queued_again(tmp_path):
    url = f"sqlite:///{tmp_path}/h.db"
    path = make(tmp_path, "h", "hangs", trials=4, extra="trial_timeout = 1.5")
    result = run_study(load(path), storage_url=url, jobs=2)
    assert result.counts["COMPLETE"] == 4
    trials = trials_of(url, "h")
    settled(trials)
    hung = [t for t in trials if t.state == TrialState.FAIL]
    assert hung and all(t.params["x"] > 0.5 for t in hung)
    assert all(t.user_attrs["fail_reason"].startswith("timed out after 1.5 s") for t in hung)
    assert not any(t.user_attrs.get("requeued") for t in hung)
    assert len({t.params["x"] for t in hung}) == len(hung)  # each hung value ran once
    assert all((t.datetime_complete - t.datetime_start).total_seconds() < 10 for t in hung)


@pytest.mark.slow
def test_a_one_job_worker_outlives_a_trial_that_ignores_its_timeout(tmp_path):
    # `sweep worker --jobs 1` ran trials in its own process: the stuck trial's end was the
    # command's, exit 70 without a word, and the study's other trials were left WAITING.
    # Here as on a cluster: an orchestrator (--jobs 0) tops up the failed trial's place.
    url = f"sqlite:///{tmp_path}/s.db"
    path = make(tmp_path, "s", "stubborn", trials=3, extra="trial_timeout = 1")
    orchestrator = start("run", str(path), "--jobs", "0", "--storage", url, "--out", str(tmp_path))

    def created() -> bool:
        with contextlib.suppress(Exception):  # no file, or no study in it, yet
            return len(trials_of(url, "s")) == 3
        return False

    wait_for(created)
    work = subprocess.run(
        sweep("worker", "s", "--storage", url), capture_output=True, text=True, timeout=120
    )
    assert work.returncode == 0, work.stderr
    assert orchestrator.wait(timeout=60) == 0, orchestrator.stderr.read()
    trials = trials_of(url, "s")
    settled(trials)
    assert [t.state for t in trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert trials[0].user_attrs["fail_reason"].startswith("timed out after 1 s")


@pytest.mark.slow
def test_a_process_ended_for_a_timeout_is_said_as_such(tmp_path):
    # It was "a worker died (... a segmentation fault or excessive memory usage ...)".
    url = f"sqlite:///{tmp_path}/s.db"
    path = make(tmp_path, "s", "stubborn", trials=3, extra="trial_timeout = 1")
    result = run_study(load(path), storage_url=url, jobs=2)
    assert result.counts["COMPLETE"] == 3
    ended = "a worker died (a trial ignored its trial_timeout, so its process was ended)"
    assert any(note.startswith(ended) for note in result.notes), result.notes


def test_booleans_and_strings_are_not_metrics(tmp_path):
    url = f"sqlite:///{tmp_path}/n.db"
    path = make(tmp_path, "n", "not_numbers", extra="")
    text = path.read_text().replace(
        'function = "not_numbers"', 'function = "not_numbers"\nmetric = "score"'
    )
    path.write_text(text)
    with pytest.raises(RunFailed):
        run_study(load(path), storage_url=url, jobs=1)
    reasons = {t.user_attrs["fail_reason"] for t in trials_of(url, "n")}
    assert "the function returned score = True (bool), not a number" in reasons
    assert "the function returned score = '0.5' (str), not a number" in reasons
    url2 = f"sqlite:///{tmp_path}/b.db"
    with pytest.raises(RunFailed):
        run_study(load(make(tmp_path, "bb", "bare_bool")), storage_url=url2, jobs=1)
    reasons = {t.user_attrs["fail_reason"] for t in trials_of(url2, "bb")}
    assert reasons == {"the function returned bool, not a number or a dict"}


def test_keys_some_seeds_return_are_averaged_over_those_seeds(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/r.db"
    path = make(tmp_path, "r", "some_seeds", trials=2, extra="repeats = 3")
    path.write_text(path.read_text().replace('"some_seeds"', '"some_seeds"\nmetric = "v"'))
    run_study(load(path), storage_url=url, jobs=1)
    for t in trials_of(url, "r"):
        result = t.user_attrs["result"]
        seeds = result["seeds"]  # 5, 6, 7: only 6 returns "extra"
        assert result["metrics"]["extra"] == 6.0 and result["n"] == {"extra": 1}
        assert result["metrics"]["v"] == pytest.approx(t.params["x"] + sum(seeds) / 3)
    capsys.readouterr()
    assert main(["trials", "r", "--storage", url, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["metrics"]["extra"] == 6.0 for r in rows)


@pytest.mark.parametrize(
    ("function", "jobs", "reason"),
    [
        ("bad_outcomes", 1, "ctx.keep_outcomes takes one True/False (or 1/0) per validation"),
        ("unprintable", 1, "Unprintable: (its message could not be read: RuntimeError)"),
        ("unprintable", 2, "Unprintable: (its message could not be read: RuntimeError)"),
    ],
)
def test_a_bad_keep_outcomes_or_an_unprintable_exception_fails_its_trial(
    tmp_path, function, jobs, reason
):
    # Both crashed the worker when the trial ended, leaving it RUNNING for every resume.
    url = f"sqlite:///{tmp_path}/s.db"
    with pytest.raises(RunFailed, match="made no progress: 4 trial"):
        run_study(load(make(tmp_path, "s", function, trials=4)), storage_url=url, jobs=jobs)
    trials = trials_of(url, "s")
    settled(trials)
    assert all(reason in t.user_attrs["fail_reason"] for t in trials), trials


def test_an_exception_raised_again_carries_no_seed_into_a_study_without_repeats(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    for name, extra in (("with", "repeats = 2"), ("without", "")):
        with pytest.raises(RunFailed):
            run_study(
                load(make(tmp_path, name, "reraises", trials=2, extra=extra)),
                storage_url=url,
                jobs=1,
            )
    assert {t.user_attrs["fail_reason"] for t in trials_of(url, "with")} == {
        "seed 5: ValueError: bad input"
    }
    assert {t.user_attrs["fail_reason"] for t in trials_of(url, "without")} == {
        "ValueError: bad input"
    }


@pytest.mark.parametrize(
    ("function", "reason"),
    [
        ("fails_on_seed_6", "seed 6: ValueError: not this seed"),
        ("ends_on_seed_7", "seed 7: ValueError: ended"),  # ended early through ctx.end
        # averaged with the others before: "value is inf", and numpy's RuntimeWarning
        ("inf_on_seed_6", "seed 6: the function returned inf, not a finite number"),
    ],
)
def test_with_repeats_a_failure_names_the_seed_it_happened_on(tmp_path, capfd, function, reason):
    url = f"sqlite:///{tmp_path}/s.db"
    path = make(tmp_path, "s", function, trials=4, extra="repeats = 3")
    with pytest.raises(RunFailed):
        run_study(load(path), storage_url=url, jobs=1)
    assert "Warning" not in capfd.readouterr().err
    trials = trials_of(url, "s")
    settled(trials)
    assert {t.user_attrs["fail_reason"] for t in trials} == {reason}


BASE = {"study": {"name": "x", "trials": 10}, "objective": {"file": "f.py"}}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"search": {"seed": {"choices": [1, 2, 3]}}}, "search.seed cannot be searched"),
        (
            {"search": {"c": {"choices": [1, "a", 2.5, True]}}},
            "search.c.choices holds 1 and true, which are equal in Python",
        ),
        (
            {"train": {"x": 0.5}, "search": {"x": {"low": 1.0, "high": 2.0}}},
            "train.x is fixed here and searched in [search.x]",
        ),
        (
            {
                "study": {"name": "x", "trials": 10, "sampler": "grid"},
                "search": {"n": {"low": 1, "high": 3, "int": True, "log": False}},
            },
            "a grid of 10 points over search.n would run its 3 values more than once",
        ),
    ],
)
def test_values_that_would_be_silently_replaced_are_refused(extra, message):
    with pytest.raises(StudyFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse({**BASE, **extra})


def test_the_builtin_refuses_a_fixed_lambda_beside_a_searched_one():
    raw = {
        "study": {"name": "x"},
        "train": {"lambda": 0.5},
        "search": {"lambda": {"low": 1e-4, "high": 1e-1}},
    }
    with pytest.raises(StudyFileError, match=r"train.lambda is fixed here and searched"):
        parse(raw)


def test_a_non_finite_dict_value_fails_the_trial_and_json_stays_strict(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/e.db"
    path = make(tmp_path, "e", "nan_extra", trials=4)
    path.write_text(path.read_text().replace('"nan_extra"', '"nan_extra"\nmetric = "score"'))
    with pytest.raises(RunFailed):
        run_study(load(path), storage_url=url, jobs=1)
    reasons = {t.user_attrs["fail_reason"] for t in trials_of(url, "e")}
    assert reasons <= {
        "the function returned score = nan, not a finite number",
        "the function returned extra = inf, not a finite number",
    }
    assert reasons

    def refuse(constant):
        raise ValueError(f"bare {constant} in JSON")

    for argv in (["trials", "e", "--format", "json"], ["show", "e", "0", "--json"]):
        assert main([*argv, "--storage", url]) == 0
        json.loads(capsys.readouterr().out, parse_constant=refuse)


def test_a_pack_member_given_back_as_an_interrupt_fails_with_the_usual_reason(tmp_path):
    url = f"sqlite:///{tmp_path}/k.db"
    path = make(tmp_path, "k", "returns_interrupt", trials=4, extra="pack = 4")
    with contextlib.suppress(RunFailed):  # values above 0.5 fail every time they run
        run_study(load(path), storage_url=url, jobs=1)
    failed = [t for t in trials_of(url, "k") if t.state == TrialState.FAIL]
    assert failed and {t.user_attrs["fail_reason"] for t in failed} == {
        "the function raised KeyboardInterrupt"
    }


def test_a_reason_is_one_clipped_line_and_an_empty_message_leaves_no_colon():
    from sweep.execution.settle import REASON_CHARS, failure_text

    long = failure_text(ValueError("y" * 20_000))
    assert len(long) == REASON_CHARS and long.startswith("ValueError: yyy") and long.endswith("...")
    assert failure_text(ValueError()) == "ValueError"
    assert failure_text(RuntimeError("first line\nsecond")) == "RuntimeError: first line"


def test_os_exit_at_import_is_a_study_file_error_not_the_command_s_exit(tmp_path):
    """os._exit at import used to end `sweep run` at once with exit code 0 (a success to a
    script), and a notebook's kernel with it."""
    (tmp_path / "leaves.py").write_text("import os\nos._exit(0)\n")
    path = tmp_path / "l.toml"
    path.write_text(
        '[study]\nname = "l"\n[objective]\nfile = "leaves.py"\n[search.x]\nlow = 1.0\nhigh = 2.0\n'
    )
    run = subprocess.run(
        sweep("run", str(path), "--storage", f"sqlite:///{tmp_path}/l.db"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().endswith("leaves.py called os._exit(0) at import (line 2)")
    assert not (tmp_path / "l.db").exists()


def test_processes_a_function_forks_still_end_with_os_exit():
    """multiprocessing's fork children end with os._exit: under the guard they must really
    end, not raise into a copy of the worker (which then failed the parent's trial)."""
    import multiprocessing

    from sweep.objectives.functions import exit_guard

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    with exit_guard():
        child = multiprocessing.get_context("fork").Process(target=int)
        child.start()
        child.join(timeout=30)
    assert child.exitcode == 0
