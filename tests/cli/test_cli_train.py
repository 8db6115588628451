import functools
import json

import pytest

from sweep.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_json_has_the_documented_keys(capsys, cifar_dir, tmp_path):
    model = tmp_path / "m.npz"
    code, out, _ = run(
        capsys,
        "train",
        "--data-dir",
        str(cifar_dir),
        "--n-s",
        "10",
        "--lambda",
        "0.01",
        "--json",
        "--save-model",
        str(model),
    )
    assert code == 0
    result = json.loads(out)
    for key in ("lambda", "train_accuracy", "val_accuracy", "test_accuracy", "steps", "seconds"):
        assert key in result
    assert result["lambda"] == 0.01 and result["steps"] == 20
    assert 0.5 < result["test_accuracy"] <= 1.0
    import numpy as np

    saved = np.load(model)
    assert saved["W1"].shape == (3072, 50) and saved["mean"].shape == (3072,)


def test_a_model_is_saved_under_the_name_given_and_the_summary_names_that_file(
    capsys, cifar_dir, tmp_path
):
    import numpy as np

    model = tmp_path / "sub" / "model-without-suffix"
    code, out, _ = run(
        capsys, "train", "--data-dir", str(cifar_dir), "--n-s", "5", "--json",
        "--save-model", str(model),
    )  # fmt: skip
    assert code == 0 and json.loads(out)["model"] == str(model)
    assert sorted(p.name for p in model.parent.iterdir()) == [model.name]  # no temp, no .npz
    assert np.load(model)["W1"].shape == (3072, 50)


def test_train_prints_a_readable_summary(capsys, cifar_dir):
    code, out, _ = run(capsys, "train", "--data-dir", str(cifar_dir), "--n-s", "5")
    assert code == 0
    assert "test" in out and "%" in out and "lambda 0.01" in out


def test_gradcheck_passes_and_prints_every_parameter(capsys):
    code, out, _ = run(capsys, "gradcheck", "--json")
    assert code == 0
    errors = json.loads(out)
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    assert all(v["max_rel"] <= 1e-7 and "max_abs" in v for v in errors.values())


def test_gradcheck_of_a_wrong_gradient_exits_1_and_names_the_error(capsys, monkeypatch):
    from core import gradcheck
    from core.network import Params, backward

    def wrong(params, X, y, lam):  # the L2 term of dJ/dW2 forgotten
        cost, g = backward(params, X, y, lam)
        return cost, Params(W1=g.W1, b1=g.b1, W2=g.W2 - 2 * lam * params.W2, b2=g.b2)

    monkeypatch.setattr(gradcheck, "check", functools.partial(gradcheck.check, analytic=wrong))
    code, out, err = run(capsys, "gradcheck", "--json")
    errors = json.loads(out)
    assert code == 1
    assert errors["W2"]["max_rel"] > 1e-3 and errors["W1"]["max_rel"] <= 1e-7
    worst = max(v["max_rel"] for v in errors.values())
    assert err == f"error: gradient check failed: max relative error {worst:.2e} > 1e-06\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lambda", "-0.5"], "lambda (-0.5) must be a finite number >= 0"),
        (["--lambda", "abc"], "neither a number nor best:STUDY"),
        (["--eta-min", "0.2", "--eta-max", "0.1"], "eta_min (0.2) must be below eta_max (0.1)"),
        (["--n-s", "0"], "argument --n-s: 0 must be at least 1"),
        (["--batch-size", "5000"], "batch_size (5000) is larger than the training set"),
        (["--split", "nope"], "unknown split 'nope'"),
    ],
)
def test_bad_train_input_is_one_line_and_exit_2(capsys, cifar_dir, argv, message):
    code, _, err = run(capsys, "train", "--data-dir", str(cifar_dir), *argv)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_and_corrupt_data_are_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_CIFAR_URL", "http://127.0.0.1:9/none.tar.gz")
    (tmp_path / "empty").mkdir()  # an existing folder: the download is tried there
    code, _, err = run(capsys, "train", "--data-dir", str(tmp_path / "empty"))
    assert code == 2 and "cannot download CIFAR-10" in err and "by hand" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cifar-10-python.tar.gz").write_bytes(b"not an archive")
    code, _, err = run(capsys, "train", "--data-dir", str(bad))
    assert code == 2 and "wrong md5 checksum" in err


def test_best_of_a_study_that_does_not_search_lambda_is_one_line(capsys, tmp_path, cifar_dir):
    import sweep

    url = f"sqlite:///{tmp_path}/x.db"
    study = {
        "study": {"name": "xs", "trials": 1},
        "search": {"x": {"low": 0.0, "high": 1.0, "log": False}},
    }
    sweep.run(study, objective=lambda params, ctx: params["x"], storage=url)
    argv = ["train", "--data-dir", str(cifar_dir), "--lambda", "best:xs", "--storage", url]
    code, _, err = run(capsys, *argv)
    assert (code, err) == (2, "error: study 'xs' does not search lambda (it searches x)\n")


def test_best_study_trains_with_everything_its_best_trial_searched(capsys, cifar_dir, tmp_path):
    # A study searching lambda and hidden: the best trial's hidden width was dropped (the
    # run trained 50 units, not the width that made the trial best).
    import optuna

    from tests.conftest import study_text

    text = study_text("wide", trials=3) + "[search.hidden]\nlow = 20\nhigh = 80\n"
    (tmp_path / "wide.toml").write_text(text)
    url = f"sqlite:///{tmp_path}/w.db"
    data = ["--data-dir", str(cifar_dir)]
    assert main(["run", str(tmp_path / "wide.toml"), "--storage", url, *data]) == 0
    capsys.readouterr()
    best = optuna.load_study(study_name="wide", storage=url).best_trial.params
    train = ["train", "--lambda", "best:wide", "--storage", url, "--n-s", "5", *data, "--json"]
    code, out, err = run(capsys, *train)
    assert code == 0 and json.loads(out)["lambda"] == best["lambda"]
    assert json.loads(out)["hidden"] == best["hidden"]
    assert (
        f"trains with its best trial's lambda {best['lambda']:.4g}, hidden {best['hidden']}" in err
    )
    code, out, err = run(capsys, *train, "--hidden", "33")  # an option given wins
    assert code == 0 and json.loads(out)["hidden"] == 33 and "(hidden as given" in err


def test_best_of_a_user_functions_study_takes_its_lambda_alone(capsys, cifar_dir, tmp_path):
    # Its "hidden" is the function's own (a float here): not a width for the network.
    (tmp_path / "f.py").write_text("def f(params, ctx):\n    return params['hidden']\n")
    (tmp_path / "u.toml").write_text(
        '[study]\nname = "u"\ntrials = 2\n[objective]\nfile = "f.py"\nfunction = "f"\n'
        "[search.lambda]\nlow = 1e-4\nhigh = 1e-1\n[search.hidden]\nlow = 20.0\nhigh = 80.0\n"
    )
    url = f"sqlite:///{tmp_path}/u.db"
    assert main(["run", str(tmp_path / "u.toml"), "--storage", url, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    argv = ["train", "--lambda", "best:u", "--storage", url, "--n-s", "5", "--json"]
    code, out, err = run(capsys, *argv, "--data-dir", str(cifar_dir))
    assert code == 0 and json.loads(out)["hidden"] == 50 and "best trial's" not in err
