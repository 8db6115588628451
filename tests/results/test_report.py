import contextlib
import json
import os
import re
import tomllib
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib.image import imread

from core.schedules import Schedule
from core.training import TrainConfig
from sweep.cli.main import main
from sweep.execution.reproduce import State, draw_ahead, reproduce, train_stages
from sweep.results import figures
from sweep.results.report import ReportParts, write_report
from sweep.spec import studyfile
from tests.conftest import study_text, write_cifar


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studies")
    (folder / "coarse.toml").write_text(study_text("coarse", trials=4, seed=5))
    fine = study_text(
        "fine", trials=3, seed=5, sampler="qmc", search='narrow_from = "coarse"\ntop_k = 2'
    )
    (folder / "fine.toml").write_text(fine)
    return folder


TINY = {
    "cycle1": TrainConfig(lam=0.01, n_s=5, cycles=1),
    "cycle3": TrainConfig(lam=0.01, n_s=4, cycles=3),
}


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, studies, cifar_dir):
    out = tmp_path_factory.mktemp("out")
    summary = reproduce(
        out=out,
        jobs=2,
        data_dir=str(cifar_dir),
        studies_dir=str(studies),
        runs=TINY,
        say=lambda text: None,
    )
    return out, summary


def test_schedule_data_values():
    df = figures.schedule_data(Schedule(eta_min=0.001, eta_max=0.1, n_s=10), cycles=2)
    assert len(df) == 41
    assert df["eta"].iloc[0] == pytest.approx(0.001) and df["eta"].iloc[10] == pytest.approx(0.1)
    assert df["eta"].iloc[40] == pytest.approx(0.001) and df["eta"].max() == pytest.approx(0.1)


def test_history_and_lambda_data(tmp_path):
    url = f"sqlite:///{tmp_path}/h.db"
    study = optuna.create_study(study_name="c", storage=url, direction="maximize")
    study.set_user_attr("spec", studyfile.parse(tomllib.loads(study_text("c"))).to_dict())
    for lam, value in ((1e-3, 0.40), (1e-2, 0.45), (1e-4, 0.42)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lambda": lam},
                value=value,
                distributions={"lambda": optuna.distributions.FloatDistribution(1e-5, 1, log=True)},
            )
        )
    hist = figures.history_data(study)
    assert list(hist["value"]) == [0.40, 0.45, 0.42]
    assert list(hist["best_so_far"]) == [0.40, 0.45, 0.45]
    lam = figures.param_data([study], "lambda")
    assert sorted(lam["lambda"]) == [1e-4, 1e-3, 1e-2]
    assert lam.loc[lam["best"], "lambda"].tolist() == [1e-2]
    path = figures.plot_param(lam, {"c": (1e-5, 1.0)}, tmp_path / "l.png")
    image = imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 500 and image.std() > 0


def test_curve_figure_is_a_real_image(tmp_path):
    curves = {
        "step": [1, 2, 3],
        "train_cost": [2, 1.5, 1.2],
        "val_cost": [2.1, 1.7, 1.5],
        "train_loss": [2, 1.4, 1.1],
        "val_loss": [2, 1.6, 1.4],
        "train_accuracy": [0.2, 0.4, 0.5],
        "val_accuracy": [0.2, 0.35, 0.4],
    }
    assert figures.curve_data(curves)["val_accuracy"].tolist() == [0.2, 0.35, 0.4]
    for suffix in ("png", "pdf", "svg"):
        path = figures.plot_curves(curves, tmp_path / f"c.{suffix}")
        assert path.stat().st_size > 1000
    image = imread(tmp_path / "c.png")
    assert image.shape[1] > 2 * image.shape[0]  # three panels side by side


def test_reproduce_writes_summary_report_and_model(reproduced):
    out, _summary = reproduced
    on_disk = json.loads((out / "summary.json").read_text())
    for key in ("gradcheck", "cycle1", "cycle3", "coarse", "fine", "final", "seconds"):
        assert key in on_disk
    assert on_disk["final"]["lambda"] == on_disk["fine"]["best_lambda"]
    assert on_disk["final"]["split"] == "final"
    for run in ("cycle1", "cycle3", "final"):
        assert 0 <= on_disk[run]["test_accuracy"] <= 1 and "lambda" in on_disk[run]
    assert on_disk["coarse"]["trials"]["COMPLETE"] == 4
    assert on_disk["fine"]["trials"]["COMPLETE"] == 3
    low, high = on_disk["fine"]["range"]["low"], on_disk["fine"]["range"]["high"]
    assert low < on_disk["fine"]["best_lambda"] < high
    model = np.load(out / "final_model.npz")
    assert model["W1"].shape == (3072, 50)


def test_report_links_every_file_it_names(reproduced):
    out, _ = reproduced
    text = (out / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert len(links) >= 15
    for link in links:
        assert (out / link).is_file(), link
        assert (out / link).stat().st_size > 0
    for name in ("cycle1_curves.png", "lambda.png", "fine_history.png", "final_eta.png"):
        assert f"figures/{name}" in links
    assert "Gradient check" in text and "## Study `fine` (fine stage)" in text


def _again(out, studies, cifar_dir, said: list[str]) -> dict:
    """`sweep reproduce` once more into ``out``, its lines into ``said``."""
    return reproduce(
        out=out,
        jobs=1,
        data_dir=str(cifar_dir),
        studies_dir=str(studies),
        runs=TINY,
        say=said.append,
    )


def test_rerun_reuses_finished_stages(reproduced, studies, cifar_dir):
    out, first = reproduced
    url = first["storage"]
    before = len(optuna.load_study(study_name="coarse", storage=url).trials)
    state = json.loads((out / "state.json").read_text())
    for stage in ("fine", "final"):  # as if killed after the coarse stage
        state.pop(stage)
    (out / "state.json").write_text(json.dumps(state))
    said = []
    again = _again(out, studies, cifar_dir, said)
    assert len(optuna.load_study(study_name="coarse", storage=url).trials) == before
    assert again["cycle1"] == first["cycle1"] and again["coarse"] == first["coarse"]
    assert again["fine"]["best_lambda"] == first["fine"]["best_lambda"]  # stored study reused
    assert any(line.startswith("final:") for line in said)


def test_a_damaged_state_file_is_said_and_its_stages_are_checked_again(
    reproduced, studies, cifar_dir
):
    out, first = reproduced
    url = first["storage"]
    counts = {
        s: len(optuna.load_study(study_name=s, storage=url).trials) for s in ("coarse", "fine")
    }
    (out / "state.json").write_text('{"gradcheck": {"W1": ')  # cut short by a power cut
    said = []
    again = _again(out, studies, cifar_dir, said)
    assert "state.json could not be read (" in said[0] and "are checked again" in said[0]
    for stage, n in counts.items():  # the finished studies were not run again
        assert len(optuna.load_study(study_name=stage, storage=url).trials) == n
        assert again[stage]["best_lambda"] == first[stage]["best_lambda"]
    assert json.loads((out / "state.json").read_text())["fine"] == again["fine"]


@pytest.mark.parametrize("other", ["studies", "data"])
def test_a_rerun_into_the_same_out_with_other_studies_or_data_is_refused(
    reproduced, studies, cifar_dir, tmp_path, other
):
    # It took the finished stages' results for its own: real CIFAR-10's accuracies,
    # "reproduced" on synthetic data (README truth pass).
    from sweep.errors import SweepError

    out, _ = reproduced
    before = (out / "state.json").read_text()
    if other == "studies":
        changed = tmp_path / "studies"
        changed.mkdir()
        (changed / "coarse.toml").write_text(study_text("coarse", trials=5, seed=5))
        (changed / "fine.toml").write_text((studies / "fine.toml").read_text())
        studies = changed
    else:
        cifar_dir = write_cifar(tmp_path / "other", per_batch=300, seed=1)
    said = {"studies": "study files", "data": "data"}[other]
    with pytest.raises(SweepError, match=rf"^{out} holds a reproduce run of other {said};"):
        _again(out, studies, cifar_dir, [])
    assert (out / "state.json").read_text() == before


def test_best_study_resolution(reproduced, cifar_dir, capsys):
    _out, summary = reproduced
    url = summary["storage"]
    code = main(
        [
            "train",
            "--lambda",
            "best:fine",
            "--storage",
            url,
            "--split",
            "exercise",
            "--n-s",
            "5",
            "--data-dir",
            str(cifar_dir),
            "--json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["lambda"] == summary["fine"]["best_lambda"]
    assert main(["train", "--lambda", "best:nope", "--storage", url]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def test_best_of_a_study_trains_on_the_data_folder_it_ran_on(reproduced, tmp_path, monkeypatch):
    # The README's session with --data-dir DIR, then `sweep train --lambda best:fine`
    # without it: the default lookup (an empty per-user cache here) used to download a
    # second copy of CIFAR-10, or fail offline.
    _out, summary = reproduced
    monkeypatch.delenv("SWEEP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("SWEEP_CIFAR_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    args = ["train", "--lambda", "best:fine", "--storage", summary["storage"], "--n-s", "5"]
    assert main([*args, "--split", "exercise"]) == 0
    assert not (tmp_path / "empty-cache").exists()


def test_report_command(reproduced, tmp_path, capsys):
    _out, summary = reproduced
    assert (
        main(
            [
                "report",
                "coarse",
                "fine",
                "--storage",
                summary["storage"],
                "--out",
                str(tmp_path / "r"),
                "--format",
                "svg",
            ]
        )
        == 0
    )
    assert (tmp_path / "r" / "figures" / "lambda.svg").is_file()
    assert (tmp_path / "r" / "coarse" / "table.tex").is_file()
    assert Path(tmp_path / "r" / "report.md").read_text().count("![") >= 5


def test_sections_drawn_ahead_make_the_same_report(reproduced, tmp_path):
    # `sweep reproduce` has a worker draw the studies' sections and the finished runs'
    # while the last run trains (draw_ahead); the report must come out as if all was drawn
    # at the end.
    out, summary = reproduced
    state = json.loads((out / "state.json").read_text())
    runs = {name: state[name] for name in ("cycle1", "cycle3", "final")}
    names, url = ["coarse", "fine"], summary["storage"]
    at_end = write_report(names, storage_url=url, out=tmp_path / "end", runs=runs)
    unfinished = {k: v for k, v in state.items() if k != "final"}  # the final still trains
    (tmp_path / "state.json").write_text(json.dumps(unfinished))
    drawn = draw_ahead(names, url, tmp_path / "ahead", tmp_path / "state.json")
    assert drawn is not None and drawn.studies is not None
    assert sorted(drawn.runs) == ["cycle1", "cycle3"]
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ahead" / "figures").iterdir()}
    parts = ReportParts(names, storage_url=url, out=tmp_path / "ahead")
    parts.adopt(drawn)
    ahead = parts.write(runs=runs)

    def body(report):  # without the "Generated <time>" line
        return [line for line in report.path.read_text().splitlines() if "Generated" not in line]

    assert body(ahead) == body(at_end)
    assert [p.relative_to(tmp_path / "ahead") for p in ahead.files] == [
        p.relative_to(tmp_path / "end") for p in at_end.files
    ]
    # What was drawn ahead is not drawn again; only the final run's figures are new.
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "ahead" / "figures").iterdir()}
    assert {p.name for p in after.keys() - before.keys()} == {"final_eta.png", "final_curves.png"}
    assert all(after[p] == t for p, t in before.items())


def test_side_by_side_runs_leave_a_worker_to_what_they_queue_after_them(tmp_path, cifar_dir):
    stages = [(name, config, "exercise", None) for name, config in TINY.items()]
    stages.append(("third", TrainConfig(lam=0.1, n_s=4, cycles=1), "exercise", None))
    say = lambda text: None  # noqa: E731
    state = State(tmp_path / "state.json")
    # Three runs on two workers, then the extra call in whichever worker is free first.
    pid = train_stages(state, stages, 2, str(cifar_dir), say, when_idle=os.getpid)
    assert pid is not None and pid != os.getpid()
    assert sorted(state.data) == ["cycle1", "cycle3", "third"]
    # One after the other in this process: nothing is left idle, the call is not made.
    state = State(tmp_path / "again.json")
    assert train_stages(state, stages[:2], 1, str(cifar_dir), say, when_idle=os.getpid) is None
    assert sorted(state.data) == ["cycle1", "cycle3"]


def test_a_stopped_reproduce_says_to_run_the_same_command_again(
    tmp_path, studies, cifar_dir, monkeypatch
):
    """Its studies' Ctrl-C line named `sweep resume coarse`, which continues one study,
    not the report."""
    from sweep.execution import reproduce as module

    given = {}

    def stopped(spec, **options):
        given.update(options)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run_study", stopped)
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        reproduce(out=out, data_dir=str(cifar_dir), studies_dir=str(studies), runs=TINY, say=print)
    assert (
        given["resume_hint"] == f"the same reproduce command (it goes on from {out / 'state.json'})"
    )


def _score(params, ctx):
    return {"score": -abs(params["lambda"] - 3e-3), "other": params["lambda"]}


def test_figures_of_any_parameter_name_stay_in_out_and_studies_of_two_metrics_get_one_each(
    tmp_path,
):
    # Parameter names are the user's: "../" in one must not write outside --out, a space
    # or "#" must not break report.md's links, a long one must not exceed a file name's
    # limit; and a study of another metric is not drawn on the same axis.
    import sweep

    odd = ["../../escaped", "a b#c%d", "x" * 300]
    url = f"sqlite:///{tmp_path}/odd.db"
    search = {"lambda": {"low": 1e-5, "high": 1e-1, "log": True}}
    search |= {name: {"low": 1.0, "high": 2.0} for name in odd}
    for name, metric in (("first", "score"), ("second", "other")):
        sweep.run(
            {
                "study": {"name": name, "trials": 2},
                "objective": {"metric": metric},
                "search": search,
            },
            objective=_score,
            storage=url,
            jobs=1,
        )
    out = tmp_path / "deep" / "out"
    write_report(["first", "second"], storage_url=url, out=out)
    written = {p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("odd.db")}
    outside = [p for p in written if out not in p.parents]
    assert written and not outside, outside
    text = (out / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    from urllib.parse import unquote

    for link in links:
        assert (out / unquote(link)).is_file(), link
    lam = [link for link in links if link.startswith("figures/lambda")]
    assert sorted(lam) == ["figures/lambda_other.png", "figures/lambda_score.png"]
    assert "## λ search: val" not in text and text.count("## λ search") == 2


def test_a_study_named_twice_has_one_section(reproduced, tmp_path, capsys):
    _out, summary = reproduced
    argv = ["report", "coarse", "coarse", "--storage", summary["storage"]]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    files = int(re.search(r"\((\d+) files\)", capsys.readouterr().out).group(1))
    assert (tmp_path / "r" / "report.md").read_text().count("## Study `coarse`") == 1
    assert files == sum(1 for p in (tmp_path / "r").rglob("*") if p.is_file())


def _fails(params, ctx):
    raise RuntimeError("no luck")


def test_a_study_without_complete_trials_gets_no_empty_figures(tmp_path, capsys):
    import sweep
    from tests.conftest import check

    url = f"sqlite:///{tmp_path}/failed.db"
    study = {"study": {"name": "failed", "trials": 2}, "objective": {"metric": "score"}}
    study["search"] = {"lambda": {"low": 1e-5, "high": 1e-1, "log": True}}
    with pytest.raises(sweep.SweepError):
        sweep.run(study, objective=_fails, storage=url, jobs=1)
    out = tmp_path / "r"
    write_report(["failed"], storage_url=url, out=out)
    assert not (out / "figures").exists() or not any((out / "figures").iterdir())
    assert "No complete trial yet." in (out / "report.md").read_text()
    plot = tmp_path / "curves.png"
    check(capsys, ["show", "failed", "0", "--storage", url, "--plot", str(plot)], "no curves")
    assert not plot.exists()


def test_a_trial_that_kept_no_curves_plots_what_it_reported_before_it_stopped(tmp_path):
    # A pruned trial keeps no result, but Optuna has its reports: those are its curve
    # (the first seed's; the second seed's steps start at STEP_STRIDE).
    from sweep.results.inspection import TrialInfo
    from sweep.store.records import STEP_STRIDE

    info = TrialInfo(
        study="s", number=3, state="PRUNED", params={}, value=None, started=None,
        completed=None, seconds=None, user_attrs={}, metric="score",
        reported={20: 0.3, 10: 0.2, STEP_STRIDE + 10: 0.9},
    )  # fmt: skip
    assert info.curves == {"step": [10, 20], "score": [0.2, 0.3]}
    path = figures.plot_trial(info, tmp_path / "pruned.png")
    assert imread(path).std() > 0


def _by_choice(params, ctx):
    base = {"relu": 0.5, "tanh": 0.4, "sigmoid": 0.3}[params["act"]]
    return {"score": base + (0.01 if params["wide"] else 0.0) + 0.001 * params["k"]}


def test_a_choices_parameter_is_drawn_with_its_choices_along_the_axis(tmp_path):
    import sweep

    url = f"sqlite:///{tmp_path}/choices.db"
    search = {
        "act": {"choices": ["relu", "tanh", "sigmoid"]},
        "wide": {"choices": [True, False]},
        "k": {"choices": [1, 2.5, 4]},  # 1 is not true, and the stored 1.0 is 1
    }
    study = {"study": {"name": "ch", "trials": 12, "seed": 3}, "objective": {"metric": "score"}}
    sweep.run({**study, "search": search}, objective=_by_choice, storage=url, jobs=1)
    stored = sweep.open("ch", storage=url)
    trials = stored.trials()
    for param, labels in (("act", ["relu", "tanh", "sigmoid"]), ("wide", ["true", "false"])):
        ax = stored.figure(param=param).axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == labels
        points = [line.get_xydata() for line in ax.lines if line.get_marker() == "o"]
        drawn = np.concatenate(points)
        # every trial, beside its own choice
        for place, choice in enumerate(search[param]["choices"]):
            mine = sorted(trials.loc[trials[param] == choice, "value"])
            near = drawn[np.abs(drawn[:, 0] - place) < 0.5]
            assert sorted(set(near[:, 1])) == sorted(set(mine)), param
        assert ax.get_legend().get_texts()[0].get_text().startswith("best ")
    # choices of numbers are drawn on a number axis, where ranges of the same go
    k_ax = stored.figure(param="k").axes[0]
    drawn = {x for line in k_ax.lines for x in line.get_xdata()}
    assert drawn <= {1.0, 2.5, 4.0} and k_ax.get_xscale() == "linear"
    out = tmp_path / "r"
    write_report(["ch"], storage_url=url, out=out)
    text = (out / "report.md").read_text()
    for param in ("act", "k", "wide"):
        assert (out / "figures" / f"{param}.png").is_file()
        assert f"](figures/{param}.png)" in text


def _dollars(params, ctx):
    return {"a$^$b": params["cost $ per $"], "a$^$b_se": 0.01}


def test_names_with_dollar_signs_are_drawn_as_text_not_parsed_as_math(tmp_path):
    # Two "$" in a name: matplotlib parsed it as TeX and `sweep report` ended in a
    # ParseSyntaxException traceback; "cost $ per $" was drawn as math.
    import sweep

    url = f"sqlite:///{tmp_path}/d.db"
    study = {"study": {"name": "dollars", "trials": 3}, "objective": {"metric": "a$^$b"}}
    study["search"] = {"cost $ per $": {"low": 1.0, "high": 2.0, "log": False}}
    sweep.run(study, objective=_dollars, storage=url, jobs=1)
    fig = sweep.open("dollars", storage=url).figure()
    assert fig._repr_png_().startswith(b"\x89PNG")
    ax = fig.axes[0]  # "\$" is how matplotlib writes a dollar sign that is text
    assert ax.get_xlabel() == r"cost \$ per \$" and r"a\$^\$b" in ax.get_title()
    out = tmp_path / "r"
    write_report(["dollars"], storage_url=url, out=out)
    assert imread(next((out / "figures").glob("cost*.png"))).size


def test_a_negative_standard_error_stored_earlier_draws_no_bar():
    df = pd.DataFrame(
        {
            "study": ["s", "s"], "stage": ["coarse"] * 2, "x": [1.0, 2.0],
            "value": [0.5, 0.6], "se": [-1.0, 0.1], "sd": [None, None],
            "tied": [None, None], "best_in_study": [False, True], "best": [False, True],
        }
    )  # fmt: skip
    fig = figures.param_figure(df, {}, param="x", metric="m", log=False)
    assert fig._repr_png_().startswith(b"\x89PNG")  # was: 'yerr' must not contain negatives


def _alike(params, ctx):
    x = params["a|b"]
    return {"val_loss": x, "val loss": 2 * x, "noise_se": 0.5, "fit": x, "fit_se": 0.01} | {
        "a|b_se": 0.3,  # named like the searched parameter's error: a metric of its own
        "θ_err": 1.0,
    }


def test_every_returned_key_has_its_own_column_in_every_table(tmp_path):
    # "val_loss" and "val loss" shared one heading (the first's values lost), "noise_se"
    # without a "noise" was in table.csv only, and a "|" in LaTeX was printed as a dash.
    import sweep
    from sweep.results.tables import write_tables

    url = f"sqlite:///{tmp_path}/k.db"
    study = {"study": {"name": "keys", "trials": 2}, "objective": {"metric": "fit"}}
    study["search"] = {"a|b": {"low": 1.0, "high": 2.0, "log": False}}
    sweep.run(study, objective=_alike, storage=url)
    _, md_path, tex_path = write_tables(
        optuna.load_study(study_name="keys", storage=url), tmp_path / "t"
    )
    md, tex = md_path.read_text(), tex_path.read_text()
    header = md.splitlines()[0]
    for heading in ("val_loss", "val loss", "noise se", "fit ± se", r"a\|b se", "θ err"):
        assert f" {heading} " in header, header
    assert "fit se" not in header  # fit_se is fit's standard error, beside it
    assert r"val\_loss" in tex and "val loss" in tex and "noise se" in tex
    assert r"a\textbar{}b" in tex and "a|b" not in tex
    assert r"$\theta$ err" in tex and "θ" not in tex
    from sweep.system.output import latex_escape

    assert latex_escape("ά_rate") == r"ά\_rate"  # an accented letter has no macro: kept


def _opt(params, ctx):
    if params.get("fail"):
        raise ValueError("no luck")
    return {"score": {"a": 1.0, "b": 2.0}[params["opt"]]}


def test_stages_choosing_among_the_same_choices_in_another_order_share_the_figure(
    tmp_path, monkeypatch
):
    # ["b", "a"] was another set of choices than ["a", "b"]: that study was left out of the
    # figure without a word; and a first study with no complete trial left an empty axis.
    import sweep

    url = f"sqlite:///{tmp_path}/o.db"
    for name, choices, fixed in (
        ("af", ["a", "b"], {"fail": 1}),
        ("o1", ["a", "b"], {}),
        ("o2", ["b", "a"], {}),
    ):
        study = {"study": {"name": name, "trials": 2, "sampler": "grid"}, "train": fixed}
        study |= {"objective": {"metric": "score"}, "search": {"opt": {"choices": choices}}}
        with contextlib.suppress(sweep.SweepError):  # af: every trial fails
            sweep.run(study, objective=_opt, storage=url)
    drawn = []
    real = figures.plot_param
    monkeypatch.setattr(
        figures, "plot_param", lambda df, *a, **k: drawn.append(df) or real(df, *a, **k)
    )
    write_report(["af", "o1", "o2"], storage_url=url, out=tmp_path / "r")
    (opt,) = drawn
    assert sorted(set(opt["study"])) == ["o1", "o2"] and len(opt) == 4


def test_each_kind_of_search_of_a_parameter_gets_its_figure(tmp_path, monkeypatch):
    # Choices of numbers and a range share a number axis (coarse [1, 2, 4], fine 1..4);
    # two different sets of words get a figure each: none is left out without a word.
    import sweep

    url = f"sqlite:///{tmp_path}/m.db"
    searches = {
        "coarse": {"k": {"choices": [1, 2, 4]}},
        "fine": {"k": {"low": 1.0, "high": 4.0, "log": False}},
        "w1": {"k": {"choices": ["x", "y"]}},
        "w2": {"k": {"choices": ["y", "z"]}},
    }
    for name, search in searches.items():
        study = {"study": {"name": name, "trials": 2}, "objective": {"metric": "score"}}
        sweep.run(study | {"search": search}, objective=_k_score, storage=url)
    drawn = []
    real = figures.plot_param
    monkeypatch.setattr(
        figures,
        "plot_param",
        lambda df, *a, **k: drawn.append(sorted(set(df["study"]))) or real(df, *a, **k),
    )
    write_report(list(searches), storage_url=url, out=tmp_path / "r")
    assert drawn == [["coarse", "fine"], ["w1"], ["w2"]]
    # numbers keep the plain name; each set of choices is named by its choices, so a
    # parameter named k_2 cannot take its file, and the names stay as trials finish
    names = sorted(p.name for p in (tmp_path / "r" / "figures").glob("k*.png"))
    assert len(names) == 3 and "k.png" in names
    assert any(n.startswith("k__x__y_") for n in names) and not any("k_2" in n for n in names)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## k search (coarse, fine)" in md and "## k search (w2)" in md
    for link in re.findall(r"\]\((figures/k[^)]*)\)", md):
        assert (tmp_path / "r" / link).is_file()
    assert len(set(re.findall(r"\]\((figures/k[^)]*)\)", md))) == 3


def test_choices_of_numbers_spanning_decades_are_drawn_on_a_log_axis(tmp_path):
    import sweep

    url = f"sqlite:///{tmp_path}/l.db"
    study = {
        "study": {"name": "lc", "trials": 4, "sampler": "grid"},
        "objective": {"metric": "score"},
    }
    study["search"] = {"k": {"choices": [1e-5, 1e-4, 1e-3, 1e-2]}}
    sweep.run(study, objective=_k_score, storage=url)
    assert sweep.open("lc", storage=url).figure(param="k").axes[0].get_xscale() == "log"
    study["study"] |= {"name": "zero", "trials": 3}  # a choice of 0 has no place on a log axis
    study["search"] = {"k": {"choices": [0, 1e-3, 1e-2]}}
    sweep.run(study, objective=_k_score, storage=url)
    assert sweep.open("zero", storage=url).figure(param="k").axes[0].get_xscale() == "linear"


def _k_score(params, ctx):
    k = params["k"]
    return {"score": float(k) if not isinstance(k, str) else float(len(k))}


def test_a_log_axis_keeps_its_tick_labels_math():
    # Turning math off for the whole figure (the first fix for "$" in names) printed the
    # λ axis's labels as "$\\mathdefault{10^{-4}}$"
    df = pd.DataFrame(
        {
            "study": ["s"] * 3, "stage": ["coarse"] * 3, "lambda": [1e-5, 1e-3, 1e-1],
            "value": [0.4, 0.5, 0.45], "se": [None] * 3, "sd": [None] * 3,
            "tied": [None] * 3, "best_in_study": [False, True, False], "best": [False, True, False],
        }
    )  # fmt: skip
    fig = figures.param_figure(df, {}, param="lambda", metric="val_accuracy")
    fig._repr_png_()  # draws the ticks
    labels = fig.axes[0].get_xticklabels()
    assert labels and all(t.get_parse_math() for t in labels)
    assert any("10^" in t.get_text() for t in labels)


def test_a_parameter_named_like_a_study_figure_keeps_its_own_figure(tmp_path):
    # A parameter "s_history" was drawn into figures/s_history.png, the file of study s's
    # history drawn after it: report.md showed the history twice, the parameter never.
    import sweep

    def objective(params, ctx):
        ctx.report(0, 0.1)
        ctx.report(1, 0.2)
        return 0.5 + params["s_history"]

    url = f"sqlite:///{tmp_path}/f.db"
    search = {"s_history": {"low": 1e-5, "high": 1e-1}}
    sweep.run(
        {"study": {"name": "s", "trials": 3}, "search": search}, objective=objective, storage=url
    )
    write_report(["s"], storage_url=url, out=tmp_path / "r")
    links = re.findall(r"\]\((figures/[^)]*)\)", (tmp_path / "r" / "report.md").read_text())
    assert len(links) == len(set(links)) >= 2, links
    assert "figures/s_history.png" in links  # the study's history keeps its usual name
    for link in links:
        assert (tmp_path / "r" / link).is_file()


def _loss_and_accuracy(params, ctx):
    x = params["x"]
    right = [i < int(300 * x) for i in range(400)]  # more images right as x grows
    ctx.keep_outcomes(right)
    return {"loss": 2.0 - x, "acc": sum(right) / len(right)}


def test_a_fine_stage_of_another_metric_is_not_compared_with_its_parents_best(tmp_path):
    # It printed the parent's loss formatted as the fine stage's accuracy ("149.60%") and
    # McNemar on the two: the bests of two different measures.
    import sweep

    url = f"sqlite:///{tmp_path}/m.db"
    coarse = {
        "study": {"name": "c", "trials": 4},
        "objective": {"metric": "loss", "direction": "minimize"},
        "search": {"x": {"low": 0.1, "high": 1.0}},
    }
    fine = {
        "study": {"name": "f", "trials": 3},
        "objective": {"metric": "acc"},
        "search": {"x": {"narrow_from": "c"}},
    }
    for study in (coarse, fine):
        sweep.run(study, objective=_loss_and_accuracy, storage=url)
    write_report(["c", "f"], storage_url=url, out=tmp_path / "r")
    assert "coarse stage's best" not in (tmp_path / "r" / "report.md").read_text()
    # the same measure is still compared
    same = {**fine, "study": {"name": "g", "trials": 3}, "objective": coarse["objective"]}
    sweep.run(same, objective=_loss_and_accuracy, storage=url)
    write_report(["c", "g"], storage_url=url, out=tmp_path / "s")
    assert "coarse stage's best" in (tmp_path / "s" / "report.md").read_text()


def _x(params, ctx):
    return {"score": params["x"]}


@pytest.mark.parametrize("taken", ["report.md", "figures", "q"])
def test_a_place_of_the_report_taken_by_the_other_kind_is_refused_before_writing(
    tmp_path, capsys, taken
):
    # A report.md folder was found after the tables and two figures were written; a
    # "figures" file gave "cannot write .../lambda.png: File exists" (hostile pass).
    import sweep
    from tests.conftest import check

    url = f"sqlite:///{tmp_path}/q.db"
    study = {"study": {"name": "q", "trials": 2}, "objective": {"metric": "score"}}
    study["search"] = {"x": {"low": 1.0, "high": 2.0, "log": False}}
    sweep.run(study, objective=_x, storage=url, jobs=1)
    out = tmp_path / "r"
    out.mkdir()
    if taken == "report.md":
        (out / taken).mkdir()
    else:
        (out / taken).write_text("mine")
    kind = "folder, where a file" if taken == "report.md" else "file, where a folder"
    check(capsys, ["report", "q", "--storage", url, "--out", str(out)], f"is a {kind} goes")
    assert [p.name for p in out.iterdir()] == [taken]  # nothing written beside it


def test_studies_whose_names_differ_only_in_case_are_refused_in_one_report(tmp_path, capsys):
    # `sweep report quick Quick` wrote OUT/quick/ and OUT/Quick/, quick_history.png and
    # Quick_history.png: one folder and one file each on macOS and Windows (hostile pass).
    import sweep
    from tests.conftest import check

    url = f"sqlite:///{tmp_path}/q.db"
    for name in ("quick", "Quick"):
        study = {"study": {"name": name, "trials": 1}, "objective": {"metric": "score"}}
        study["search"] = {"x": {"low": 1.0, "high": 2.0, "log": False}}
        sweep.run(study, objective=_x, storage=url, jobs=1)
    out = tmp_path / "r"
    check(capsys, ["report", "quick", "Quick", "--storage", url, "--out", str(out)],
          "'quick' and 'Quick' differ only in case")  # fmt: skip
    assert not out.exists() or not list(out.iterdir())
    assert main(["report", "Quick", "--storage", url, "--out", str(out)]) == 0


def test_reproduce_on_a_data_folder_missing_a_batch_is_one_line(tmp_path, capsys):
    # Its state.json's record of the data read the batches directly: a FileNotFoundError
    # traceback where `sweep run` says which file is missing (review of e9e2aff).
    from tests.conftest import check

    root = write_cifar(tmp_path / "d", per_batch=20)
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    argv = ["reproduce", "--data-dir", str(root), "--out", str(tmp_path / "o")]
    check(capsys, argv, "missing data file")


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("report.md", "would be both a file and a folder of the report"),  # half written
        ("Figures", "'figures' and 'Figures' differ only in case"),
    ],
)
def test_a_study_named_like_a_place_of_the_report_is_refused_before_writing(
    tmp_path, capsys, name, said
):
    import sweep
    from tests.conftest import check

    url = f"sqlite:///{tmp_path}/q.db"
    study = {"study": {"name": name, "trials": 1}, "objective": {"metric": "score"}}
    study["search"] = {"x": {"low": 1.0, "high": 2.0, "log": False}}
    sweep.run(study, objective=_x, storage=url, jobs=1)
    out = tmp_path / "r"
    check(capsys, ["report", name, "--storage", url, "--out", str(out)], said)
    assert not out.exists() or not list(out.iterdir())
