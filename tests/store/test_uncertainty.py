"""Standard errors, McNemar's exact test, and which trials are tied with the best."""

import json
import math
import socket
import subprocess
import urllib.request
from fractions import Fraction

import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli.main import main
from sweep.errors import StudyFileError
from sweep.execution.runner import run_study
from sweep.spec import studyfile
from sweep.store import uncertainty
from sweep.store.study import prepare
from tests.conftest import study_text, sweep, wait_for


def exact_p(b: int, c: int) -> float:
    """An independent oracle in exact rational arithmetic: 2 P(X <= min(b, c)), capped."""
    n = b + c
    tail = sum(Fraction(math.comb(n, k), 2**n) for k in range(min(b, c) + 1))
    return float(min(Fraction(1), 2 * tail))


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (0, 0, 1.0),  # no discordant image: nothing tells them apart
        (1, 0, 1.0),  # 2 * P(X <= 0 | n = 1) = 2 * 1/2
        (5, 0, 0.0625),  # 2 / 32: not significant at 5%
        (6, 0, 0.03125),  # 2 / 64: significant
        (0, 6, 0.03125),  # symmetric
        (3, 3, 1.0),
    ],
)
def test_mcnemar_exact_against_hand_computed_values(b, c, expected):
    assert uncertainty.mcnemar_exact(b, c) == pytest.approx(expected)


@pytest.mark.parametrize(("b", "c"), [(10, 20), (40, 60), (150, 120), (7, 31)])
def test_mcnemar_exact_against_exact_fractions(b, c):
    assert uncertainty.mcnemar_exact(b, c) == pytest.approx(exact_p(b, c), rel=1e-9)


def test_mcnemar_exact_with_large_counts_matches_the_normal_approximation():
    # b + c = 4150: the continuity-corrected normal approximation is accurate here.
    b, c = 2000, 2150
    z = (abs(b - c) - 1) / math.sqrt(b + c)
    normal = math.erfc(z / math.sqrt(2))
    assert uncertainty.mcnemar_exact(b, c) == pytest.approx(normal, rel=0.02)
    assert uncertainty.mcnemar_exact(20000, 20000) == 1.0


def test_standard_error():
    assert uncertainty.standard_error(0.5, 10000) == pytest.approx(0.005)
    assert uncertainty.standard_error(0.51, 5000) == pytest.approx(math.sqrt(0.51 * 0.49 / 5000))


@pytest.fixture(scope="module")
def tied_study(tmp_path_factory, cifar_dir):
    folder = tmp_path_factory.mktemp("ties")
    (folder / "t.toml").write_text(
        study_text("t", trials=6, repeats=2, n_s=10, search="low = 1e-4\nhigh = 3.0")
    )
    url = f"sqlite:///{folder}/t.db"
    run_study(studyfile.load(folder / "t.toml"), storage_url=url, jobs=2, data_dir=cifar_dir)
    return url


def test_each_trial_keeps_its_outcomes_and_ties_follow_the_paired_test(tied_study):
    study = optuna.load_study(study_name="t", storage=tied_study)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    best = max(done, key=lambda t: t.value)
    ties = uncertainty.study_ties(study, "val_accuracy")
    for t in done:
        kept = uncertainty.outcomes(t)
        assert len(kept) == 2  # one per seed
        per_seed = [run["val_accuracy"] for run in t.user_attrs["result"]["per_seed"]]
        assert [k.mean() for k in kept] == pytest.approx(per_seed)  # the same images
        n = len(kept[0])
        assert ties[t.number].se == pytest.approx(math.sqrt(t.value * (1 - t.value) / n))
        # Seeds paired by seed, counts pooled: recomputed here from the bits.
        b = sum(int((x & ~y).sum()) for x, y in zip(uncertainty.outcomes(best), kept, strict=True))
        c = sum(int((~x & y).sum()) for x, y in zip(uncertainty.outcomes(best), kept, strict=True))
        assert ties[t.number].p_value == pytest.approx(exact_p(b, c), rel=1e-9)
        assert ties[t.number].tied == (exact_p(b, c) >= 0.05)
    assert ties[best.number].tied is True
    assert not all(ties[t.number].tied for t in done)  # lambda up to 3 is clearly worse


def test_trials_status_and_tables_show_se_and_ties(tied_study, capsys, tmp_path):
    capsys.readouterr()
    assert main(["trials", "t", "--storage", tied_study, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    n = 1100  # the exercise split validates on data_batch_2 (1,100 synthetic images)
    assert all(r["se"] == pytest.approx(math.sqrt(r["value"] * (1 - r["value"]) / n)) for r in done)
    assert all(isinstance(r["tied"], bool) for r in done)
    assert main(["status", "--storage", tied_study, "--json"]) == 0
    (status,) = json.loads(capsys.readouterr().out)
    tied = [r for r in done if r["tied"]]
    assert status["tied"] == {
        "count": len(tied),
        "low": min(r["lambda"] for r in tied),
        "high": max(r["lambda"] for r in tied),
    }
    assert main(["table", "t", "--storage", tied_study, "--out", str(tmp_path)]) == 0
    header = (tmp_path / "t" / "table.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["trial", "lambda", "val_accuracy", "se", "val_accuracy_sd", "tied"]
    shown = (tmp_path / "t" / "table.md").read_text()
    assert "val accuracy ± se" in shown and "| yes" in shown


def test_report_says_which_lambdas_cannot_be_told_apart(tied_study, tmp_path):
    assert main(["report", "t", "--storage", tied_study, "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "trials cannot be told apart from the best: λ in [" in text
    assert "McNemar's exact test" in text


def test_a_user_function_with_se_or_without(tmp_path):
    (tmp_path / "f.py").write_text(
        "def with_se(params, ctx):\n"
        "    return {'score': params['x'], 'score_se': 0.05}\n"
        "def bare(params, ctx):\n"
        "    return params['x']\n"
    )
    for function, metric in (("with_se", 'metric = "score"'), ("bare", "")):
        (tmp_path / f"{function}.toml").write_text(
            f'[study]\nname = "{function}"\ntrials = 6\nseed = 1\n'
            f'[objective]\nfile = "f.py"\nfunction = "{function}"\n{metric}\n'
            "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
        )
        url = f"sqlite:///{tmp_path}/{function}.db"
        run_study(studyfile.load(tmp_path / f"{function}.toml"), storage_url=url)
        study = optuna.load_study(study_name=function, storage=url)
        ties = uncertainty.study_ties(study, "score" if metric else "value")
        best = max(study.trials, key=lambda t: t.value)
        for t in study.trials:
            if function == "bare":  # README: "with neither, `tied` is null", the best's too
                assert ties[t.number].tied is None
            else:  # |best - x| < 1.96 * sqrt(2) * 0.05
                close = abs(best.value - t.value) < 1.96 * math.hypot(0.05, 0.05)
                assert ties[t.number].tied == close and ties[t.number].se == 0.05
        tied = uncertainty.tied_span(study, "score" if metric else "value", "x")
        assert (tied.count is None) == (function == "bare")
        out = tmp_path / f"report-{function}"
        assert main(["report", function, "--storage", url, "--out", str(out)]) == 0
        text = (out / "report.md").read_text()
        if function == "bare":
            assert "Ties with the best are unknown" in text
        else:  # told by the function's se, not by a test on outcomes it never kept
            assert "`score_se`" in text and "McNemar" not in text


SCORED = """
import math

SCORES = {-4: 0.10, -3: 0.50, -2: 0.55, -1: 0.52, 0: 0.20}  # by decade of lambda

def scored(params, ctx):
    return {"score": SCORES[round(math.log10(params["lambda"]))], "score_se": 0.02}
"""


def test_a_fine_stage_can_narrow_to_the_trials_tied_with_the_best(tmp_path):
    # A grid of 5 lambdas, 1e-4 .. 1, whose scores are known: with se 0.02 each, a trial is
    # tied with the best (0.55 at 1e-2) when within 1.96 * sqrt(2) * 0.02 = 0.0554 of it,
    # so 1e-3 (0.50), 1e-2 and 1e-1 (0.52) are tied; 1e-4 and 1 are not.
    (tmp_path / "scored.py").write_text(SCORED)
    objective = '[objective]\nfile = "scored.py"\nfunction = "scored"\nmetric = "score"\n'
    (tmp_path / "c.toml").write_text(
        f'[study]\nname = "c"\ntrials = 5\nsampler = "grid"\n{objective}'
        "[search.lambda]\nlow = 1e-4\nhigh = 1.0\n"
    )
    url = f"sqlite:///{tmp_path}/c.db"
    run_study(studyfile.load(tmp_path / "c.toml"), storage_url=url)
    for name, how, decades, note in [
        # the hull of the tied ones, [-3, -1], widened by 0.1 decades on each side
        ("f", 'narrow = "tied"', (-3.1, -0.9), "hull of the 3 tied with the best widened by 0.1"),
        # top_k = 2: the two best, 1e-2 and 1e-1, instead
        ("g", "top_k = 2", (-2.1, -0.9), "hull of the top 2 widened by 0.1"),
    ]:
        (tmp_path / f"{name}.toml").write_text(
            f'[study]\nname = "{name}"\ntrials = 2\n{objective}'
            f'[search.lambda]\nnarrow_from = "c"\n{how}\nmargin = 0.1\n'
        )
        fine, notes = prepare(studyfile.load(tmp_path / f"{name}.toml"), url, target=2)
        low, high, log = fine.ranges["lambda"]
        assert log
        assert (math.log10(low), math.log10(high)) == pytest.approx(decades, abs=1e-9)
        assert notes == [f"lambda range narrowed from c: [{low:.3g}, {high:.3g}] ({note} decades)"]


def test_narrowing_to_the_tied_trials_of_a_parent_that_cannot_tell_ties_is_refused(tmp_path):
    # Its function returned no score_se: the best was "tied" with itself, and the fine
    # stage narrowed on the best alone without a word.
    (tmp_path / "f.py").write_text("def f(params, ctx):\n    return {'score': 0.5}\n")
    objective = '[objective]\nfile = "f.py"\nfunction = "f"\nmetric = "score"\n'
    (tmp_path / "c.toml").write_text(
        f'[study]\nname = "c"\ntrials = 3\n{objective}[search.lambda]\nlow = 1e-4\nhigh = 1.0\n'
    )
    url = f"sqlite:///{tmp_path}/c.db"
    run_study(studyfile.load(tmp_path / "c.toml"), storage_url=url)
    (tmp_path / "t.toml").write_text(
        f'[study]\nname = "t"\ntrials = 2\n{objective}'
        '[search.lambda]\nnarrow_from = "c"\nnarrow = "tied"\n'
    )
    with pytest.raises(StudyFileError, match=r"cannot tell .*use top_k instead"):
        prepare(studyfile.load(tmp_path / "t.toml"), url, target=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_dashboard_lists_the_studies_with_their_metric(tied_study):
    port = free_port()
    proc = subprocess.Popen(
        sweep("dashboard", "--storage", tied_study, "--port", str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def get(path: str):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        studies = wait_for(lambda: get("/api/studies"), timeout=60)
        (summary,) = studies["study_summaries"]
        assert summary["study_name"] == "t"
        detail = get(f"/api/studies/{summary['study_id']}")
        assert detail["objective_names"] == ["val_accuracy"]
        assert detail["has_intermediate_values"]  # learning curves from each recording
    finally:
        proc.terminate()
        proc.wait(10)
    # `sweep dashboard` became the dashboard: stopping it leaves no server behind.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2)


def _right_on(share: float):
    def objective(params, ctx):  # 1000 images: right on the first 1000 * share of them
        ctx.keep_outcomes([i < 1000 * share for i in range(1000)])
        return {"accuracy": share}

    return objective


def test_a_fine_best_that_is_its_stages_trial_0_like_the_coarse_best_is_compared(tmp_path):
    # The report compared the two stages' bests by trial number: both trial 0 of their own
    # study read as one trial "tied with itself", p = 1, "cannot be told apart", where
    # McNemar's test gave p = 1e-121 (README truth pass, a scaled bonus reproduce).
    import sweep

    url = f"sqlite:///{tmp_path}/s.db"
    coarse = {"study": {"name": "c", "trials": 2}, "objective": {"metric": "accuracy"}}
    coarse["search"] = {"x": {"low": 0.3, "high": 0.4, "log": False}}
    sweep.run(coarse, objective=_right_on(0.3), storage=url, jobs=1)
    fine = {"study": {"name": "f", "trials": 1}, "objective": {"metric": "accuracy"}}
    fine["search"] = {"x": {"narrow_from": "c"}}
    sweep.run(fine, objective=_right_on(0.9), storage=url, jobs=1)
    out = tmp_path / "r"
    assert main(["report", "c", "f", "--storage", url, "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "best (90.00%) can be told apart from the coarse stage's best (30.00%)" in text
