"""The public Python API (`import sweep`): studies run from dicts with functions given in
memory, read back as DataFrames and figures, quiet while they run."""

import itertools
import logging
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from matplotlib.figure import Figure

import sweep
from sweep.cli.main import main
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent


def coarse_study(name: str = "api-coarse", trials: int = 6) -> dict:
    return {
        "study": {"name": name, "trials": trials, "seed": 11},
        "objective": {"metric": "loss", "direction": "minimize"},
        "train": {"epochs": 2},
        "search": {"lambda": {"low": 1e-5, "high": 1e-1, "log": True}},
    }


def make_objective(centre: float):
    """A closure over a local variable: not importable by name, so it must travel to the
    workers by value."""

    def objective(params, ctx):
        x = math.log10(params["lambda"])
        for epoch in range(params["epochs"]):
            ctx.report(epoch, (x - centre) ** 2 + 1 / (epoch + 1))
        return {
            "loss": (x - centre) ** 2,
            "is_context": float(isinstance(ctx, sweep.Context)),
        }

    return objective


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{folder}/api.db"
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sweep.run(
            coarse_study(),
            objective=make_objective(-3.0),
            storage=url,
            jobs=2,
            progress=seen.append,
        )
    return {"url": url, "result": result, "progress": seen, "warnings": caught, "folder": folder}


def test_importing_sweep_is_cheap_and_exports_the_api():
    code = (
        "import sys, sweep; heavy = ('optuna', 'pandas', 'matplotlib', 'sqlalchemy', 'numpy',"
        " 'loky', 'cloudpickle'); print(','.join(m for m in heavy if m in sys.modules));"
        "print(','.join(sorted(sweep.__all__)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded, names = out.stdout.splitlines()
    assert loaded == ""
    assert set(names.split(",")) >= {
        *("run", "resume", "worker", "open", "status", "reproduce"),
        *("Context", "SweepError", "__version__"),
    }


def test_api_functions_are_not_hidden_by_their_namesake_modules():
    import sweep.execution.reproduce
    import sweep.execution.resume
    import sweep.execution.worker

    assert callable(sweep.worker) and sweep.worker.__module__ == "sweep.api"
    assert sweep.resume.__module__ == "sweep.api" and sweep.reproduce.__module__ == "sweep.api"
    from sweep.execution.worker import Job  # the modules themselves are still there

    assert Job.__module__ == "sweep.execution.worker"


def test_a_dict_study_with_a_closure_runs_in_two_workers(ran):
    result = ran["result"]
    assert result.counts["COMPLETE"] == 6 and result.counts["FAIL"] == 0
    assert result.finished == 6 and result.target == 6
    assert result.best is not None and result.best.value == min(
        (math.log10(lam) + 3.0) ** 2
        for lam in sweep.open("api-coarse", storage=ran["url"]).trials()["lambda"]
    )
    assert "api-coarse" in repr(result) and "finished=6/6" in repr(result)
    assert ran["progress"][-1].counts["COMPLETE"] == 6


def test_trials_are_the_csv_columns_with_the_closure_s_values(ran, capsys):
    study = sweep.open("api-coarse", storage=ran["url"])
    df = study.trials()
    assert main(["trials", "api-coarse", "--storage", ran["url"], "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert list(df.columns) == header.split(",")
    assert list(df.columns)[:3] == ["number", "state", "lambda"]
    assert len(df) == 6 and set(df["state"]) == {"COMPLETE"}
    for lam, loss in zip(df["lambda"], df["loss"], strict=True):  # centre -3 came along
        assert loss == pytest.approx((math.log10(lam) + 3.0) ** 2)
    assert list(df["value"]) == list(df["loss"])
    assert set(df["is_context"]) == {1.0}  # the real Context satisfies sweep.Context


def test_best_table_figure_html_and_report(ran, tmp_path):
    study = sweep.open("api-coarse", storage=ran["url"])
    df = study.trials()
    best = study.best
    assert best.value == df["value"].min()
    assert best.number == int(df.loc[df["value"].idxmin(), "number"])
    assert best.params == {"lambda": df.loc[df["value"].idxmin(), "lambda"]}
    assert best == ran["result"].best

    table = study.table()
    assert sorted(table["trial"]) == list(range(6))
    assert table["best"].sum() == 1 and table.loc[table["best"], "trial"].item() == best.number
    assert list(table["lambda"]) == sorted(table["lambda"])

    assert isinstance(study.figure(), Figure)
    assert isinstance(study.figure(kind="history"), Figure)
    assert study.figure()._repr_png_().startswith(b"\x89PNG")
    with pytest.raises(sweep.SweepError, match="choose one of: lambda"):
        study.figure(param="x")

    shown = study._repr_html_()
    assert "api-coarse" in shown and "COMPLETE 6" in shown and "<table" in shown
    assert "None" not in shown  # cells with no value (se of a loss, no repeats) are blank

    path = study.report(out=tmp_path / "report")
    assert path == tmp_path / "report" / "report.md" and path.is_file()
    assert "api-coarse" in path.read_text() and "(given in memory)" in path.read_text()


def test_a_study_of_a_function_in_memory_needs_it_again_to_resume(ran, capsys):
    with pytest.raises(sweep.SweepError) as info:
        sweep.resume("api-coarse", storage=ran["url"])
    message = str(info.value)
    assert "\n" not in message
    assert "given in memory" in message and "sweep.resume('api-coarse', objective=" in message
    with pytest.raises(sweep.SweepError, match="objective="):
        sweep.worker("api-coarse", storage=ran["url"])
    for command in ("resume", "worker"):
        assert main([command, "api-coarse", "--storage", ran["url"]]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: study 'api-coarse' optimises objective, a function given")
        assert len(err.strip().splitlines()) == 1
    again = sweep.resume("api-coarse", objective=make_objective(-3.0), storage=ran["url"])
    assert again.already_done


def test_a_rerun_with_the_function_tops_the_study_up(tmp_path):
    url = f"sqlite:///{tmp_path}/top.db"
    f = make_objective(-2.0)
    first = sweep.run(coarse_study("top", trials=2), objective=f, storage=url, jobs=1)
    assert first.counts["COMPLETE"] == 2
    more = sweep.run(coarse_study("top", trials=2), objective=f, storage=url, trials=4)
    assert more.counts["COMPLETE"] == 4
    assert len(sweep.open("top", storage=url).trials()) == 4
    assert [s.study for s in sweep.status(url).studies] == ["top"]


def test_objective_conflicts_are_one_line_errors(tmp_path):
    url = f"sqlite:///{tmp_path}/bad.db"
    named = {**coarse_study("bad"), "objective": {"file": "f.py", "metric": "loss"}}
    with pytest.raises(sweep.SweepError, match=r"objective\.file names a function"):
        sweep.run(named, objective=make_objective(0.0), storage=url)
    with pytest.raises(sweep.SweepError, match="must be a function"):
        sweep.run(coarse_study("bad"), objective="not a function", storage=url)
    with pytest.raises(sweep.SweepError, match="no study database"):
        sweep.open("nothing", storage=url)


def test_library_calls_leave_no_optuna_lines_or_warnings(ran, caplog):
    assert not [w for w in ran["warnings"] if "Experimental" in type(w.message).__name__]
    import optuna

    filters, verbosity = list(warnings.filters), optuna.logging.get_verbosity()
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sweep.run(coarse_study("quiet", 2), objective=make_objective(0.0), storage=ran["url"])
        sweep.open("quiet", storage=ran["url"]).trials()
    assert not [w for w in caught if "Experimental" in type(w.message).__name__]
    assert "A new study created" not in caplog.text
    assert warnings.filters == filters and optuna.logging.get_verbosity() == verbosity


def test_a_script_s_own_function_runs_quietly_by_value(tmp_path):
    """As in a notebook: the function lives in __main__, which workers cannot import."""
    script = textwrap.dedent(
        """
        import sweep

        def objective(params, ctx):
            return (params["x"] - 0.5) ** 2

        study = {
            "study": {"name": "main", "trials": 4},
            "objective": {"direction": "minimize"},
            "search": {"x": {"low": 0.0, "high": 1.0, "log": False}},
        }
        result = sweep.run(study, objective=objective, storage="sqlite:///main.db", jobs=2)
        print(result.counts["COMPLETE"], round(result.best.value, 6))
        """
    )
    (tmp_path / "script.py").write_text(script)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "4"
    assert "A new study created" not in out.stderr + out.stdout
    assert "Warning" not in out.stderr, out.stderr


def test_a_trial_run_alone_after_a_crash_gets_the_function_too(tmp_path):
    """After a crash a trial runs in a process of its own (worker.run_isolated), which
    receives the function in memory through its Job as well."""
    marker = tmp_path / "crashed-once"

    def crashes_once(params, ctx):
        if not marker.exists():
            marker.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)
        return params["x"]

    study = {
        "study": {"name": "crash", "trials": 3, "seed": 1},
        "search": {"x": {"low": 0.0, "high": 1.0, "log": False}},
    }
    url = f"sqlite:///{tmp_path}/crash.db"
    result = sweep.run(study, objective=crashes_once, storage=url, jobs=2)
    assert marker.exists() and result.counts["COMPLETE"] == 3
    df = sweep.open("crash", storage=url).trials()
    assert (df["state"] == "FAIL").sum() >= 1  # the crashed attempt, queued again
    assert df[df["state"] == "COMPLETE"]["value"].nunique() == 3


def test_bad_arguments_are_sweep_errors_that_write_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/args.db"
    f = make_objective(0.0)
    cases = [
        ({"study": "x"}, {}, "must be a table"),
        (coarse_study("args"), {"jobs": -1}, r"jobs \(-1\) must be a whole number"),
        (coarse_study("args"), {"jobs": "2"}, r"jobs \('2'\) must be a whole number"),
        (coarse_study("args"), {"trials": 0}, r"--trials \(0\) must be between 1"),
        (coarse_study("args"), {"jobs": 0}, "cannot load a function given in memory"),
        (coarse_study("args"), {"seed": "x"}, r"seed \('x'\) must be a whole number"),
    ]
    for study, options, message in cases:
        with pytest.raises(sweep.SweepError, match=message):
            sweep.run(study, objective=f, storage=url, **options)
    assert not (tmp_path / "args.db").exists() or not sweep.status(url).studies
    wrong_types = [
        (5, None, r"storage \(5\) must be a URL string"),
        (url, 3, r"data_dir \(3\) must be a folder's path"),
    ]
    for storage, data_dir, message in wrong_types:  # (a TypeError from os.fspath, deep inside)
        with pytest.raises(sweep.SweepError, match=message):
            sweep.run(coarse_study("args"), objective=f, storage=storage, data_dir=data_dir)
    assert not (tmp_path / "args.db").exists() or not sweep.status(url).studies
    numpy_made = coarse_study("args", trials=np.int64(2))  # (refused: "not int64")
    sweep.run(numpy_made, objective=f, storage=url, trials=np.int64(2), seed=np.int64(7))
    study = sweep.open("args", storage=url)
    with pytest.raises(sweep.SweepError, match="sort 'bogus' is not one of: number, value, lambda"):
        study.trials(sort="bogus")
    with pytest.raises(sweep.SweepError, match="figure format 'jpg2' is not one of"):
        study.report(out=tmp_path / "r", fmt="jpg2")
    assert not (tmp_path / "r").exists()


def test_missing_data_is_a_sweep_error_and_the_download_notice_goes_to_the_logger(
    tmp_path, monkeypatch, caplog, capfd
):
    monkeypatch.setenv("SWEEP_CIFAR_URL", "http://127.0.0.1:9/none.tar.gz")
    (tmp_path / "empty").mkdir()
    builtin = {
        "study": {"name": "builtin", "trials": 2},
        "search": {"lambda": {"low": 1e-5, "high": 1e-1}},
    }
    with caplog.at_level(logging.WARNING, logger="sweep"), pytest.raises(sweep.SweepError) as e:
        sweep.run(builtin, storage=f"sqlite:///{tmp_path}/d.db", data_dir=tmp_path / "empty")
    assert "cannot download CIFAR-10" in str(e.value) and e.value.exit_code == 2
    assert type(e.value.__cause__).__name__ == "DataError"  # the core's, kept as the cause
    assert "CIFAR-10 not found" in caplog.text
    assert capfd.readouterr().err == ""  # library use is quiet


def test_a_top_up_samples_new_values_not_the_first_run_s_again(tmp_path):
    # TPE is the sampler Optuna samples for (the others' values are planned).
    url = f"sqlite:///{tmp_path}/top.db"
    study = coarse_study("sampled", trials=4)
    study["study"]["sampler"] = "tpe"
    f = make_objective(-2.0)
    sweep.run(study, objective=f, storage=url, jobs=2)
    sweep.run(study, objective=f, storage=url, jobs=2, trials=8)  # the workers' indices again
    values = list(sweep.open("sampled", storage=url).trials()["lambda"])
    assert len(values) == 8 and len(set(values)) == 8, values


def test_ctrl_c_in_a_script_is_a_keyboard_interrupt_that_except_exception_does_not_swallow(
    tmp_path,
):
    """A script loops over studies inside ``try/except Exception``: Ctrl-C still ends it
    (sweep.errors.Interrupted is a KeyboardInterrupt), with the running trials failed and
    queued again."""
    import optuna

    script = tmp_path / "loop.py"
    script.write_text(
        "import pathlib, sys, time\n"
        "import sweep\n\n"
        "def slow(params, ctx):\n"
        "    pathlib.Path('started').touch()\n"
        "    time.sleep(60)\n"
        "    return params['x']\n\n"
        "for name in ('a', 'b'):\n"
        "    try:\n"
        "        sweep.run({'study': {'name': name, 'trials': 2},\n"
        "                   'search': {'x': {'low': 0.1, 'high': 1.0}}},\n"
        "                  objective=slow, storage='sqlite:///s.db', jobs=2)\n"
        "    except Exception as exc:\n"
        "        print('swallowed', type(exc).__name__, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for(lambda: (tmp_path / "started").exists())
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    out, err = proc.communicate(timeout=60)
    assert "swallowed" not in out
    assert proc.returncode == 1, err  # ended by the uncaught interrupt, not by the loop
    assert re.search(r"sweep.errors.Interrupted: interrupted; [12] running trial\(s\) marked", err)
    states = {
        t.state
        for t in optuna.load_study(study_name="a", storage=f"sqlite:///{tmp_path}/s.db").trials
    }
    assert optuna.trial.TrialState.RUNNING not in states


@pytest.mark.parametrize("signals", [["SIGTERM"], ["SIGINT", "SIGINT"]], ids=["term", "twice"])
def test_sigterm_or_a_second_ctrl_c_during_a_call_stops_it_cleanly(tmp_path, signals):
    """From a script, as from the command: SIGTERM (SLURM's preemption) killed the process
    on the spot, and a second Ctrl-C a few ms after the first broke the clean-up, leaving
    trials RUNNING. Both now fail the running trials with the reason and raise the
    KeyboardInterrupt that says how to resume; the script's handlers are put back."""
    import optuna

    script = tmp_path / "stop.py"
    script.write_text(
        "import os, pathlib, signal, sys, threading, time\n"
        "import sweep\n\n"
        "def slow(params, ctx):\n"
        "    pathlib.Path(f'started-{os.getpid()}').touch()\n"
        "    time.sleep(60)\n"
        "    return params['x']\n\n"
        "def fire():\n"
        "    while len(list(pathlib.Path('.').glob('started-*'))) < 2:\n"
        "        time.sleep(0.02)\n"
        f"    for name in {signals!r}:\n"
        "        os.kill(os.getpid(), getattr(signal, name))\n"
        "        time.sleep(0.002)\n\n"
        "threading.Thread(target=fire, daemon=True).start()\n"
        "try:\n"
        "    sweep.run({'study': {'name': 'a', 'trials': 2},\n"
        "               'search': {'x': {'low': 0.1, 'high': 1.0}}},\n"
        "              objective=slow, storage='sqlite:///s.db', jobs=2)\n"
        "except KeyboardInterrupt as exc:\n"
        "    print('stopped:', exc)\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler,\n"
        "      signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    reason = "terminated" if signals == ["SIGTERM"] else "interrupted"
    assert f"stopped: {reason}; 2 running trial(s) marked FAIL" in proc.stdout, proc.stdout
    assert proc.stdout.splitlines()[-1] == "True True"
    trials = optuna.load_study(study_name="a", storage=f"sqlite:///{tmp_path}/s.db").trials
    ran = [t for t in trials if t.state != optuna.trial.TrialState.WAITING]
    assert [t.user_attrs.get("fail_reason") for t in ran] == [reason, reason]


def test_worker_returns_the_trials_it_ran_and_why_it_stopped(tmp_path):
    (tmp_path / "f.py").write_text("def objective(params, ctx):\n    return params['x']\n")
    study = tmp_path / "w.toml"
    study.write_text(
        '[study]\nname = "w"\ntrials = 3\n[objective]\nfile = "f.py"\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    url = f"sqlite:///{tmp_path}/w.db"
    made = sweep.run(study, storage=url, jobs=0, time_limit=0)  # create it and leave
    assert made.counts.get("COMPLETE", 0) == 0
    result = sweep.worker("w", storage=url, idle=0)
    assert result == (3, None) and (result.ran, result.stopped) == (3, None)


def _fails_above(params, ctx):
    if params["lambda"] > 1e-3:
        raise ValueError("too large")
    return {"loss": params["lambda"]}


def test_the_jupyter_view_leaves_what_a_failed_trial_lacks_blank(tmp_path):
    url = f"sqlite:///{tmp_path}/f.db"
    sweep.run(coarse_study("half-failed", trials=6), objective=_fails_above, storage=url)
    study = sweep.open("half-failed", storage=url)
    assert "FAIL" in set(study.trials()["state"])  # ranked trials and failed ones
    shown = study._repr_html_()
    assert "&lt;NA&gt;" not in shown and "None" not in shown and "nan" not in shown


def test_reproduce_takes_bonus_as_the_command_does(monkeypatch):
    # `sweep reproduce --bonus` had no Python form (README truth pass).
    from sweep.execution import bonus

    seen = {}
    monkeypatch.setattr(bonus, "reproduce_bonus", lambda **kwargs: seen.update(kwargs) or {})
    assert sweep.reproduce(bonus=True, jobs=1) == {}
    assert seen["out"] == "report_bonus" and seen["jobs"] == 1


@pytest.mark.parametrize("module", ["sqlalchemy.sql.base", "optuna.storages"])
def test_a_ctrl_c_during_the_first_call_s_imports_leaves_later_calls_working(tmp_path, module):
    # In a fresh notebook kernel, a Ctrl-C in the first ~0.2 s of sweep.run broke an import
    # of SQLAlchemy half-way, and every later call failed ("... not a usable study database
    # (module 'sqlalchemy.sql' has no attribute 'base')") until the kernel restarted; the
    # call itself raised a bare KeyboardInterrupt (hostile pass). The hook below sends the
    # SIGINT exactly then.
    script = textwrap.dedent(
        """
        import os, signal, sys
        import sweep

        class Kick:
            fired = False
            def find_spec(self, name, path=None, target=None):
                if name == MODULE and not Kick.fired:
                    Kick.fired = True
                    os.kill(os.getpid(), signal.SIGINT)
                return None

        sys.meta_path.insert(0, Kick())
        f = lambda p, c: p["x"]
        x = {"x": {"low": 1.0, "high": 2.0}}
        S = lambda n: {"study": {"name": n, "trials": 2}, "search": x}
        try:
            sweep.run(S("a"), objective=f, storage="sqlite:///a.db")
        except KeyboardInterrupt as e:
            print("first:", Kick.fired, type(e).__name__, e)
        print("second:", sweep.run(S("b"), objective=f, storage="sqlite:///b.db").finished)
        """
    )
    (tmp_path / "script.py").write_text(script.replace("MODULE", repr(module)))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "first: True Interrupted interrupted; no trial of this call was running"
    assert lines[1] == "second: 2", out.stdout


def _sleeps(params, ctx):
    import time

    time.sleep(0.3)
    return params["x"]


def test_a_progress_callback_that_raises_stops_the_workers_with_its_own_error(tmp_path):
    # It was "RunFailed: a worker of study 'cb' failed: RuntimeError: ...", and the workers
    # trained on after the call had raised, to the study's target (hostile pass).
    def broken(progress):
        if progress.counts["COMPLETE"] >= 2:
            raise RuntimeError("my callback broke")

    url = f"sqlite:///{tmp_path}/cb.db"
    study = {"study": {"name": "cb", "trials": 20}, "search": {"x": {"low": 1.0, "high": 2.0}}}
    with pytest.raises(RuntimeError, match="my callback broke"):
        sweep.run(study, objective=_sleeps, storage=url, jobs=2, progress=broken)
    df = sweep.open("cb", storage=url).trials()
    assert "RUNNING" not in set(df["state"])
    complete = (df["state"] == "COMPLETE").sum()
    time.sleep(1.5)  # nothing goes on in the background
    assert (sweep.open("cb", storage=url).trials()["state"] == "COMPLETE").sum() == complete
    assert complete < 20
    with pytest.raises(sweep.SweepError, match=r"progress \('yes'\) must be True, False, None"):
        sweep.run(study, objective=_sleeps, storage=url, jobs=2, progress="yes")
    assert sweep.resume("cb", objective=_sleeps, storage=url, jobs=2).finished == 20


def test_the_resume_hint_for_a_function_in_memory_names_the_storage(tmp_path):
    # "sweep.resume('rs', objective=...) with the same function": followed as printed, it
    # opened sweeps.db and found no study (hostile pass).
    url = f"sqlite:///{tmp_path}/rs.db"
    study = {"study": {"name": "rs", "trials": 4}, "search": {"x": {"low": 1.0, "high": 2.0}}}
    result = sweep.run(study, objective=_sleeps, storage=url, time_limit=0.5)
    assert result.finished < 4
    note = next(n for n in result.notes if "sweep.resume(" in n)
    call = re.search(r"sweep\.resume\((.*)\) with the same function", note)
    assert call, note
    resumed = eval(f"sweep.resume({call.group(1).replace('...', '_sleeps')})")
    assert resumed.finished == 4


def _other(params, ctx):
    return -5.0


def test_resume_and_worker_refuse_another_function_than_the_study_s(tmp_path):
    # sweep.run refused another function for a stored study; resume and worker ran its
    # values into the study silently, and objective=1 passed on a finished one (hostile
    # pass).
    url = f"sqlite:///{tmp_path}/rs.db"
    study = {"study": {"name": "rs", "trials": 2}, "search": {"x": {"low": 1.0, "high": 2.0}}}
    sweep.run(study, objective=_sleeps, storage=url, trials=1)
    optuna.load_study(study_name="rs", storage=url).set_user_attr("target", 2)  # unfinished
    another = r"study 'rs' optimises _sleeps, given in memory; _other is another function"
    with pytest.raises(sweep.SweepError, match=another):
        sweep.resume("rs", objective=_other, storage=url)
    with pytest.raises(sweep.SweepError, match=another):
        sweep.worker("rs", objective=_other, storage=url)
    with pytest.raises(sweep.SweepError, match=r"objective \(1\) must be a function"):
        sweep.run(study, objective=1, storage=url)
    assert sweep.resume("rs", objective=_sleeps, storage=url).finished == 2
    with pytest.raises(sweep.SweepError, match=r"objective \(1\) must be a function"):
        sweep.resume("rs", objective=1, storage=url)  # (a finished study: checked all the same)
    assert (sweep.open("rs", storage=url).trials()["value"] > 0).all()


def test_a_progress_callback_hears_the_end_once(tmp_path):
    # The last Progress came twice: from the last look, and again after it (hostile pass).
    seen = []
    study = {"study": {"name": "p", "trials": 3}, "search": {"x": {"low": 1.0, "high": 2.0}}}
    sweep.run(study, objective=_sleeps, storage=f"sqlite:///{tmp_path}/p.db", progress=seen.append)
    texts = [p.text() for p in seen]
    assert texts and "3/3 finished" in texts[-1], texts
    assert all(a != b for a, b in itertools.pairwise(texts)), texts


def test_a_target_lowered_below_the_finished_trials_says_so(tmp_path):
    url = f"sqlite:///{tmp_path}/lo.db"
    study = {"study": {"name": "lo", "trials": 4}, "search": {"x": {"low": 1.0, "high": 2.0}}}
    sweep.run(study, objective=_other, storage=url)
    result = sweep.run(study, objective=_other, storage=url, trials=2)
    assert result.finished == 4 and result.notes == [
        "study 'lo' has 4 finished trials, more than its new target of 2: none runs, and its "
        "tables keep all 4"
    ]
