"""Studies of the user's own functions: the [objective] section, any parameters, failures."""

import json
import math
import os
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli.main import main
from sweep.execution.runner import run_study
from sweep.spec.studyfile import load
from tests.conftest import EXAMPLES, check, digest_of, sweep


def study(folder: Path, name: str, objective: str, search: str, extra: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\ntrials = 6\nseed = 5\n{extra}\n'
        f"[objective]\n{objective}\n{search}\n"
    )
    return path


FUNCTIONS = '''
import math, os

def quadratic(params, ctx):
    ctx.report(0, params["x"])
    return {"loss": (params["x"] - 2) ** 2, "twice": 2 * params["x"], "n": params["n"]}

def picky(params, ctx):
    if params["x"] > 5:
        raise ValueError(f"x is too large: {params['x']:.3f}")
    if params["x"] < 1:
        return float("nan")
    return params["x"]

def kinds(params, ctx):
    assert isinstance(params["layers"], int) and params["act"] in ("relu", "tanh")
    return {"score": params["layers"] + (params["act"] == "relu"), "epochs": params["epochs"]}

def no_metric(params, ctx):
    return {"something_else": 1.0}

def loads(params, ctx):
    return load_data(ctx.data_dir).sum() * 0 + params["x"]

_DATA = None

def load_data(folder):
    """The per-process cache a function should use for its data (README)."""
    global _DATA
    if _DATA is None:
        import numpy as np
        with open(os.path.join(folder, "loads.log"), "a") as f:
            f.write(f"{os.getpid()}\\n")
        _DATA = np.load(os.path.join(folder, "big.npy"), mmap_mode=None)
    return _DATA
'''


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "funcs.py").write_text(FUNCTIONS)
    return tmp_path


def test_a_minimised_dict_metric_with_every_key_recorded(folder, capsys):
    path = study(
        folder,
        "q",
        'file = "funcs.py"\nfunction = "quadratic"\nmetric = "loss"\ndirection = "minimize"',
        "[train]\nn = 3\n[search.x]\nlow = -5.0\nhigh = 5.0\nlog = false",
    )
    url = f"sqlite:///{folder}/q.db"
    assert (
        main(["run", str(path), "--storage", url, "--jobs", "2", "--out", str(folder / "o")]) == 0
    )
    capsys.readouterr()
    assert main(["trials", "q", "--storage", url, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6 and all(r["lambda"] is None for r in rows)
    for r in rows:
        x = r["params"]["x"]
        assert r["metrics"] == pytest.approx({"loss": (x - 2) ** 2, "twice": 2 * x, "n": 3})
        assert r["value"] == pytest.approx((x - 2) ** 2)
    best = min(rows, key=lambda r: r["value"])
    table = (folder / "o" / "q" / "table.csv").read_text().splitlines()
    assert table[0].startswith("trial,x,loss,se,loss_sd,tied,twice,n,state,rank,best")
    assert main(["status", "--storage", url, "--json"]) == 0
    (status,) = json.loads(capsys.readouterr().out)
    assert status["best"]["trial"] == best["number"] and status["metric"] == "loss"


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_trials_sorted_by_value_list_the_best_first(folder, capsys, direction):
    # picky: x > 5 raises and x < 1 is NaN (both FAIL, no value), else the value is x.
    path = study(
        folder,
        direction,
        f'file = "funcs.py"\nfunction = "picky"\ndirection = "{direction}"',
        "[search.x]\nlow = 0.0\nhigh = 8.0\nlog = false",
        extra='sampler = "grid"',  # x = 0, 1.6, 3.2, 4.8, 6.4, 8: 1.6, 3.2 and 4.8 complete
    )
    url = f"sqlite:///{folder}/{direction}.db"
    assert main(["run", str(path), "--storage", url, "--out", str(folder / "o")]) in (0, 1)
    capsys.readouterr()
    assert main(["trials", direction, "--storage", url, "--sort", "value", "--format", "json"]) == 0
    values = [r["value"] for r in json.loads(capsys.readouterr().out)]
    done = [1.6, 3.2, 4.8] if direction == "minimize" else [4.8, 3.2, 1.6]
    assert values[:3] == pytest.approx(done) and values[3:] == [None] * (len(values) - 3)


def test_failures_are_reasons_and_the_study_goes_on(folder, capsys):
    path = study(
        folder,
        "p",
        'file = "funcs.py"\nfunction = "picky"',
        "[search.x]\nlow = 0.0\nhigh = 10.0\nlog = false",
    )
    url = f"sqlite:///{folder}/p.db"
    result = run_study(load(path), storage_url=url, jobs=2)
    assert result.counts["COMPLETE"] == 6
    trials = optuna.load_study(study_name="p", storage=url).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    reasons = {t.user_attrs["fail_reason"] for t in failed}
    assert any(r.startswith("ValueError: x is too large: ") for r in reasons)
    assert any(r == "the function returned nan, not a finite number" for r in reasons)
    assert all(1 <= t.params["x"] <= 5 for t in trials if t.state == TrialState.COMPLETE)
    capsys.readouterr()
    number = next(t.number for t in failed if "too large" in t.user_attrs["fail_reason"])
    main(["show", "p", str(number), "--storage", url])
    assert "reason: ValueError: x is too large" in capsys.readouterr().out
    assert main(["trials", "p", "--storage", url, "--format", "json"]) == 0
    rows = {r["number"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[number]["reason"].startswith("ValueError: x is too large")


def test_a_metric_the_function_does_not_return_fails_every_trial_with_that_reason(folder, capsys):
    path = study(
        folder,
        "m",
        'file = "funcs.py"\nfunction = "no_metric"\nmetric = "accuracy"',
        "[search.x]\nlow = 1.0\nhigh = 2.0",
    )
    url = f"sqlite:///{folder}/m.db"
    capsys.readouterr()
    assert main(["run", str(path), "--storage", url, "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert "made no progress: 6 trial(s) failed" in err
    assert "the function returned no 'accuracy' (it returned something_else)" in err


def test_int_and_categorical_parameters(folder):
    path = study(
        folder,
        "k",
        'file = "funcs.py"\nfunction = "kinds"\nmetric = "score"',
        "[train]\nepochs = 4\n[search.layers]\nlow = 1\nhigh = 4\nint = true\n"
        '[search.act]\nchoices = ["relu", "tanh"]',
    )
    url = f"sqlite:///{folder}/k.db"
    run_study(load(path), storage_url=url, jobs=1)
    trials = optuna.load_study(study_name="k", storage=url).trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.params["act"] for t in trials} <= {"relu", "tanh"}
    assert all(isinstance(t.params["layers"], int) for t in trials)
    assert {t.user_attrs["result"]["metrics"]["epochs"] for t in trials} == {4.0}
    # sweep trials --sort takes any searched parameter: numbers, then choices by name
    import sweep as api

    study_ = api.open("k", storage=url)
    assert study_.trials(sort="layers")["layers"].tolist() == sorted(
        t.params["layers"] for t in trials
    )
    assert study_.trials(sort="act")["act"].tolist() == sorted(t.params["act"] for t in trials)
    with pytest.raises(api.SweepError, match="not one of: number, value, act, layers"):
        study_.trials(sort="lambda")  # not searched here: once sorted by number without a word


def test_data_is_loaded_once_per_worker_process_not_per_trial(folder):
    import numpy as np

    np.save(folder / "big.npy", np.zeros(100 * 2**20 // 8))  # 100 MB
    path = study(
        folder,
        "d",
        'file = "funcs.py"\nfunction = "loads"',
        "[search.x]\nlow = 1.0\nhigh = 2.0",
    )
    path.write_text(path.read_text().replace("trials = 6", "trials = 10"))
    run_study(load(path), storage_url=f"sqlite:///{folder}/d.db", jobs=2, data_dir=str(folder))
    loads = (folder / "loads.log").read_text().split()
    assert len(loads) == len(set(loads)) <= 2  # one load per worker process, 10 trials


@pytest.mark.parametrize(
    ("objective", "search", "message"),
    [
        ('file = "funcs.py"\nmodule = "x"', "", "needs exactly one of file"),
        ('function = "quadratic"', "", "needs exactly one of file"),
        ('file = "missing.py"', "", "objective file "),
        ('file = "."', "", "is a folder; [objective] file names the .py file"),
        ('file = "funcs.py"', '[search.""]\nlow = 1.0\nhigh = 2.0', "named ''; give it a name"),
        ('module = "no_such_module_here"', "", "objective module 'no_such_module_here' cannot"),
        ('file = "funcs.py"\nfunction = "nope"', "", "has no function 'nope'"),
        ('file = "raises.py"', "", "raises.py raised ZeroDivisionError at import (line 3)"),
        (
            'file = "funcs.py"',
            '[search.y]\nchoices = [1, 2]\nnarrow_from = "c"',
            "cannot be narrowed",
        ),
        ('file = "funcs.py"\ndirection = "up"', "", "objective.direction is 'up'"),
        ('file = "funcs.py"\nmetric = " "', "", "objective.metric is empty"),
        (
            'file = "funcs.py"',
            "[train]\nwhen = 1979-05-27T07:32:00Z\n[search.x]\nlow = 1.0\nhigh = 2.0",
            "train.when is a TOML datetime, which a study cannot store; quote it",
        ),
        (
            'file = "funcs.py"',
            "[train]\nsizes = {a = [1, 1979-05-27]}\n[search.x]\nlow = 1.0\nhigh = 2.0",
            "train.sizes.a[1] is a TOML date",
        ),
    ],
)
def test_bad_objectives_are_one_line_errors_before_anything_is_written(
    folder, capsys, objective, search, message
):
    (folder / "raises.py").write_text("import math\n\nx = 1 / 0\n")
    path = study(folder, "bad", objective, search or "[search.x]\nlow = 1.0\nhigh = 2.0")
    url = f"sqlite:///{folder}/bad.db"
    check(capsys, ["run", str(path), "--storage", url], message)
    assert not (folder / "bad.db").exists()


def test_a_worker_elsewhere_says_what_to_copy(folder, capsys, tmp_path_factory):
    path = study(
        folder,
        "w",
        'file = "funcs.py"\nfunction = "picky"',
        "[search.x]\nlow = 1.0\nhigh = 2.0",
        extra='sampler = "tpe"',  # workers sample: nothing needs queueing by an orchestrator
    )
    url = f"sqlite:///{folder}/w.db"
    assert main(["run", str(path), "--storage", url, "--trials", "1"]) == 0
    optuna.load_study(study_name="w", storage=url).set_user_attr("target", 3)
    before = digest_of(folder / "w.db")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (folder / "funcs.py").rename(elsewhere / "funcs.py")  # as on another machine
    check(capsys, ["worker", "w", "--storage", url], "pass --objective-dir DIR")
    assert digest_of(folder / "w.db") == before
    missing = str(elsewhere / "nope")
    check(capsys, ["worker", "w", "--storage", url, "--objective-dir", missing], "is not a folder")
    assert main(["worker", "w", "--storage", url, "--objective-dir", str(elsewhere)]) == 0
    trials = optuna.load_study(study_name="w", storage=url).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3


def synthetic_optimum() -> float:
    namespace: dict = {}
    exec((EXAMPLES / "synthetic" / "objective.py").read_text(), namespace)
    return namespace["OPTIMUM"]


@pytest.mark.parametrize("suffix", ["", "_min"], ids=["maximise", "minimise"])
def test_coarse_then_fine_lands_within_a_tenth_of_a_decade_of_the_optimum(tmp_path, suffix):
    url = f"sqlite:///{tmp_path}/s.db"
    for stage in ("coarse", "fine"):
        path = EXAMPLES / "synthetic" / f"{stage}{suffix}.toml"
        result = run_study(load(path), storage_url=url, jobs=2)
    best = result.best_params["lambda"]
    assert abs(math.log10(best) - math.log10(synthetic_optimum())) < 0.1
    low, high, _ = result.ranges["lambda"]
    assert low < synthetic_optimum() < high and math.log10(high / low) < 2


def test_the_softmax_example_runs_as_shipped(tmp_path, cifar_dir):
    url = f"sqlite:///{tmp_path}/sm.db"
    for stage, trials in (("coarse", 3), ("fine", 2)):
        path = EXAMPLES / "softmax" / f"{stage}.toml"
        text = path.read_text().replace('split = "search"', 'split = "exercise"')
        text = text.replace("epochs = 10", "epochs = 1")
        (tmp_path / "objective.py").write_text((EXAMPLES / "softmax" / "objective.py").read_text())
        (tmp_path / f"{stage}.toml").write_text(text)
        spec = load(tmp_path / f"{stage}.toml")
        result = run_study(spec, storage_url=url, jobs=2, data_dir=str(cifar_dir), trials=trials)
        assert result.counts["COMPLETE"] == trials and result.best_value > 0.3
    assert load(EXAMPLES / "softmax" / "fine.toml").parent == "softmax-coarse"


def test_the_softmax_gradients_match_numerical_ones():
    import numpy as np

    namespace: dict = {"__name__": "softmax"}
    source = (EXAMPLES / "softmax" / "objective.py").read_text()
    exec(
        compile(source.replace("from sweep.objectives.builtin import cifar10\n", ""), "o", "exec"),
        namespace,
    )
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 30)), rng.integers(0, 10, 20)
    W, b = rng.standard_normal((10, 30)) * 0.1, rng.standard_normal(10) * 0.1
    gW, gb = namespace["gradients"](W, b, X, y, 0.1)
    h = 1e-5  # centred differences in float64: truncation ~h^2, rounding ~1e-16 / h
    for grad, param in ((gW, W), (gb, b)):
        numeric = np.zeros_like(param)
        for i in np.ndindex(param.shape):
            old = param[i]
            param[i] = old + h
            plus = namespace["cost"](W, b, X, y, 0.1)[0]
            param[i] = old - h
            minus = namespace["cost"](W, b, X, y, 0.1)[0]
            param[i] = old
            numeric[i] = (plus - minus) / (2 * h)
        rel = np.abs(grad - numeric) / np.maximum(1e-12, np.abs(grad) + np.abs(numeric))
        assert rel.max() < 1e-6


def test_sweep_train_refuses_a_study_of_another_function(folder, capsys):
    path = study(folder, "t", 'file = "funcs.py"', "[search.x]\nlow = 1.0\nhigh = 2.0")
    check(capsys, ["train", str(path)], "`sweep train` runs the built-in network")


def test_the_example_functions_are_documented():
    readme = (EXAMPLES.parent / "README.md").read_text()
    for name in ("examples/softmax", "examples/synthetic", "once per worker process"):
        assert name in readme


COLLIDING = """
def colliding(params, ctx):
    for step in range(3):
        ctx.report(step, params["value"] * step)
    return {"score": params["value"], "state": 5.0, "lambda": 7.0, "tied": 1.0, "se": 2.0,
            "reason": 3.0, "rank": 4.0, "number": 6.0, "value": 8.0, "metric.value": 9.0}

def bare(params, ctx):
    ctx.report(0, params["value"])
    return params["value"]
"""


def test_metrics_and_parameters_named_like_columns_keep_their_own_columns(tmp_path, capsys):
    (tmp_path / "c.py").write_text(COLLIDING)
    path = study(
        tmp_path,
        "c",
        'file = "c.py"\nfunction = "colliding"\nmetric = "score"',
        "[search.value]\nlow = 1.0\nhigh = 2.0\n[search.state]\nchoices = ['a', 'b']\n"
        "[search.lambda]\nlow = 1e-3\nhigh = 1e-1",
    )
    url = f"sqlite:///{tmp_path}/c.db"
    out = tmp_path / "o"
    assert main(["run", str(path), "--storage", url, "--jobs", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["trials", "c", "--storage", url, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["state"] == "COMPLETE" and r["metrics"]["state"] == 5.0 for r in rows)
    assert all(
        r["params"]["state"] in ("a", "b") and r["value"] == r["params"]["value"] for r in rows
    )
    assert main(["trials", "c", "--storage", url, "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert len(header) == len(set(header))
    for column in ("state", "param.state", "param.value", "value", "metric.state", "metric.lambda"):
        assert column in header, header
    table = (out / "c" / "table.csv").read_text().splitlines()
    head = table[0].split(",")
    assert len(head) == len(set(head)) and "metric.state" in head and "param.state" in head
    first = dict(zip(head, table[1].split(","), strict=True))
    assert first["state"] == "COMPLETE" and float(first["metric.state"]) == 5.0
    assert "metric.tied" in head and "metric.rank" in head and "metric.number" in head
    assert "lambda" in head and "metric.lambda" in head and float(first["metric.lambda"]) == 7.0
    # a metric named like a renamed column is renamed too, not written over it
    assert float(first["metric.value"]) == 8.0 and float(first["metric.metric.value"]) == 9.0
    assert main(["report", "c", "--storage", url, "--out", str(tmp_path / "r")]) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert "metric.state" in report and "param.value" in report
    capsys.readouterr()
    assert main(["show", "c", "0", "--storage", url]) == 0
    shown = capsys.readouterr().out
    assert "curves: 3 points" in shown and "outcomes" not in shown and "point:" not in shown
    # named as in the tables: the metric "value" is not the trial's value
    assert "\n  metric.value: 8\n" in shown and "\n  metric.state: 5\n" in shown


def test_a_bare_float_is_one_value_column(tmp_path, capsys):
    (tmp_path / "c.py").write_text(COLLIDING)
    path = study(
        tmp_path, "b", 'file = "c.py"\nfunction = "bare"', "[search.value]\nlow = 1.0\nhigh = 2.0"
    )
    url = f"sqlite:///{tmp_path}/b.db"
    assert main(["run", str(path), "--storage", url, "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    assert main(["trials", "b", "--storage", url, "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    # the function's number is the trial's value: not a second column "metric.value" (a
    # name the user never chose), in `sweep trials`, the tables or `sweep show`
    assert header.count("value") == 1 and "metric.value" not in header and "param.value" in header
    table = (tmp_path / "o" / "b" / "table.csv").read_text().splitlines()[0].split(",")
    assert "value" in table and not any(c.startswith("metric.") for c in table), table
    assert "value ± se" in (tmp_path / "o" / "b" / "table.md").read_text()
    assert main(["show", "b", "1", "--storage", url]) == 0
    shown = capsys.readouterr().out
    assert "curves: 1 points of value" in shown and "metric.value" not in shown
    assert main(["report", "b", "--storage", url, "--out", str(tmp_path / "r")]) == 0


def test_run_resume_and_worker_print_their_result_as_json(folder, capsys):
    path = study(
        folder,
        "j",
        'file = "funcs.py"\nfunction = "picky"',
        "[search.x]\nlow = 1.0\nhigh = 5.0\nlog = false",
    )
    url = f"sqlite:///{folder}/j.db"
    out = str(folder / "o")
    assert main(["run", str(path), "--storage", url, "--json", "--out", out]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["study"] == "j" and result["finished"] == 6 == result["target"]
    assert result["states"]["COMPLETE"] == 6 and set(result["best"]) == {
        "number",
        "params",
        "value",
    }
    assert result["ranges"]["x"] == {"low": 1.0, "high": 5.0}
    assert main(["resume", "j", "--storage", url, "--json", "--out", out]) == 0
    assert json.loads(capsys.readouterr().out)["finished"] == 6
    assert main(["worker", "j", "--storage", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"study": "j", "ran": 0, "stopped": None}


def test_a_fine_stage_on_a_log_scale_over_values_below_zero_says_to_add_log_false(folder, capsys):
    objective = 'file = "funcs.py"\nfunction = "quadratic"\nmetric = "loss"\n[train]\nn = 1'
    parent = study(folder, "lin", objective, "[search.x]\nlow = -2.0\nhigh = 2.0\nlog = false")
    url = f"sqlite:///{folder}/lin.db"
    assert main(["run", str(parent), "--storage", url]) == 0
    fine = study(folder, "lin-fine", objective, '[search.x]\nnarrow_from = "lin"')
    check(capsys, ["run", str(fine), "--storage", url], "add log = false to [search.x]")
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["lin"]
    fine.write_text(fine.read_text() + "log = false\n")
    assert main(["run", str(fine), "--storage", url]) == 0
    assert "lin-fine" in {s.study_name for s in optuna.get_all_study_summaries(url)}


def test_what_a_function_prints_goes_to_stderr_not_into_the_json(folder):
    (folder / "talks.py").write_text(
        "import os\nprint('hello at import')\n\n"
        "def objective(params, ctx):\n    print('hello from the function')\n"
        "    os.write(1, b'and from C\\n')\n    return params['x']\n"
    )
    path = study(
        folder, "talk", 'file = "talks.py"', "[search.x]\nlow = 1.0\nhigh = 5.0\nlog = false"
    )
    run = subprocess.run(
        sweep("run", str(path), "--jobs", "2", "--json", "--storage", f"sqlite:///{folder}/t.db"),
        capture_output=True,
        text=True,
        cwd=folder,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["finished"] == 6
    assert run.stderr.count("hello from the function") == 6
    assert run.stderr.count("and from C") == 6
    assert "hello at import" in run.stderr
    # `sweep worker --jobs 1` runs the trials in its own process: the same holds there.
    url = f"sqlite:///{folder}/w.db"
    made = subprocess.run(
        sweep("run", str(path), "--jobs", "0", "--time-limit", "0", "--storage", url),
        capture_output=True,
        cwd=folder,
    )
    assert made.returncode == 0, made.stderr
    work = subprocess.run(
        sweep("worker", "talk", "--json", "--storage", url), capture_output=True, text=True
    )
    assert work.returncode == 0, work.stderr
    assert json.loads(work.stdout) == {"study": "talk", "ran": 6, "stopped": None}
    assert work.stderr.count("hello from the function") == 6
    assert work.stderr.count("and from C") == 6


def test_a_file_edited_between_two_runs_of_one_session_is_loaded_again(folder):
    """A notebook runs a study, edits its function's file and runs again: the new code
    runs, in this process and in the worker processes (which outlive a run), even for an
    edit of the same length within the same second."""
    import sweep as api

    code = folder / "edited.py"
    for version, value in enumerate(("1.0", "2.0")):
        code.write_text(f"def objective(params, ctx):\n    return {value}\n")
        path = study(
            folder, f"v{version}", 'file = "edited.py"', "[search.x]\nlow = 1.0\nhigh = 5.0"
        )
        api.run(path, storage=f"sqlite:///{folder}/e.db", jobs=2, trials=4)
        values = {
            t.value
            for t in optuna.load_study(
                study_name=f"v{version}", storage=f"sqlite:///{folder}/e.db"
            ).trials
        }
        assert values == {float(value)}
    code.write_text("def renamed(params, ctx):\n    return 3.0\n")
    with pytest.raises(api.SweepError, match="has no function 'objective'"):
        api.run(path, storage=f"sqlite:///{folder}/e.db", jobs=2, trials=8)


def test_a_log_gets_each_progress_state_once(folder):
    """Without a terminal (a log, CI) the progress line is a plain line: printed when the
    state changes, not again at every poll while a trial runs."""
    (folder / "slow.py").write_text(
        "import time\n\ndef objective(params, ctx):\n    time.sleep(2.5)\n    return params['x']\n"
    )
    path = study(folder, "slow", 'file = "slow.py"', "[search.x]\nlow = 1.0\nhigh = 5.0")
    path.write_text(path.read_text().replace("trials = 6", "trials = 2"))
    run = subprocess.run(
        sweep("run", str(path), "--jobs", "2", "--storage", f"sqlite:///{folder}/p.db"),
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    progress = [line for line in run.stderr.splitlines() if line.startswith("slow: ")]
    assert progress and progress[-1].startswith("slow: 2/2 finished"), run.stderr
    assert len(progress) == len(set(progress)), run.stderr


def test_a_file_in_a_folder_whose_name_is_not_utf8_loads(tmp_path):
    # An old archive's or a Latin-1 system's folder name: loading the file was a traceback.
    folder = tmp_path / os.fsdecode(b"not-utf8-\xe9")
    folder.mkdir()
    (folder / "f.py").write_text("def objective(params, ctx):\n    return params['x']\n")
    path = study(folder, "h", 'file = "f.py"', "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false")
    result = run_study(load(path), storage_url=f"sqlite:///{tmp_path}/h.db", jobs=1)
    assert result.counts["COMPLETE"] == 6


def test_a_module_beside_the_file_is_not_on_the_path_and_the_error_says_what_to_do(
    tmp_path, capsys
):
    # Put on the path, a second study's helpers.py in another folder would silently be the
    # first one's (imported once per session): the tool leaves the path to the user.
    (tmp_path / "helpers.py").write_text("VALUE = 1.0\n")
    (tmp_path / "f.py").write_text(
        "from helpers import VALUE\n\ndef objective(p, ctx):\n    return VALUE\n"
    )
    path = study(tmp_path, "h", 'file = "f.py"', "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false")
    url = f"sqlite:///{tmp_path}/h.db"
    check(
        capsys,
        ["run", str(path), "--storage", url],
        f"helpers beside it is imported from PYTHONPATH: add {tmp_path} to it",
    )
    assert not (tmp_path / "h.db").exists()


def test_a_fine_stage_cannot_narrow_a_parameter_its_parent_chose_among_choices(folder, capsys):
    # Numbers became a continuous range (k = 3.27 of choices 1 and 2), words a TypeError
    # traceback; choices are never narrowed: the fine stage is to try them all.
    objective = 'file = "funcs.py"\nfunction = "kinds"\nmetric = "score"\n[train]\nepochs = 1'
    layers = "[search.layers]\nlow = 1\nhigh = 9\nint = true\nlog = false\n"
    act = '[search.act]\nchoices = ["relu", "tanh"]\n'
    url = f"sqlite:///{folder}/ch.db"
    assert main(["run", str(study(folder, "ch", objective, layers + act)), "--storage", url]) == 0
    narrowed = '[search.layers]\nnarrow_from = "ch"\nmargin = 1.0\nlog = false\nint = true\n'
    fine = study(folder, "ch-fine", objective, narrowed + '[search.act]\nnarrow_from = "ch"\n')
    check(capsys, ["run", str(fine), "--storage", url], "chose 'act' among choices")
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["ch"]
    fine = study(folder, "ch-fine", objective, narrowed + act)
    assert main(["run", str(fine), "--storage", url, "--json"]) == 0
    ranges = json.loads(capsys.readouterr().out)["ranges"]["layers"]
    # The best is the most layers tried: above, the range extends past it, as documented;
    # below, a margin of the whole span no longer reaches under the 1 layer searched.
    assert ranges["low"] >= 1 and ranges["high"] > 9


def test_a_parameter_named_like_a_column_is_sorted_by_its_column_name(tmp_path):
    # Its column is param.value; sorting by param.value was refused, and by value sorted
    # by the objective, so no name reached it (hostile pass).
    import sweep as api

    url = f"sqlite:///{tmp_path}/c.db"
    search = {"value": {"low": 1, "high": 50, "int": True}, "x": {"low": 0.1, "high": 1.0}}
    api.run(
        {"study": {"name": "c", "trials": 6, "seed": 3}, "search": search},
        objective=lambda p, ctx: -p["x"],
        storage=url,
        jobs=1,
    )
    study_ = api.open("c", storage=url)
    by_param = study_.trials(sort="param.value")["param.value"].tolist()
    assert by_param == sorted(by_param) and len(set(by_param)) > 1
    by_objective = study_.trials(sort="value")["value"].tolist()
    assert by_objective == sorted(by_objective, reverse=True)
    with pytest.raises(api.SweepError, match=r"not one of: number, value, param\.value, x$"):
        study_.trials(sort="y")
