"""`sweep reproduce --bonus` end to end on the synthetic CIFAR copy, with tiny stages."""

import json
from pathlib import Path

import pytest

from sweep.cli.main import main
from sweep.execution import bonus
from sweep.spec import studyfile

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def tiny(name: str, text: str) -> str:
    """A shipped bonus stage cut down: the exercise split, a few short trials, narrow widths."""
    changes = {
        'split = "search"': 'split = "exercise"',
        'n_s = "auto"': "n_s = 10",
        "n_s = 900": "n_s = 10",
        "cycles = 3": "cycles = 2",  # two cycles: a rung at the end of the first
        "trials = 24": "trials = 6",
        "trials = 16": "trials = 4",
        "low = 200": "low = 20",
        "high = 1500": "high = 60",
    }
    for old, new in changes.items():
        text = text.replace(old, new)
    assert 'split = "exercise"' in text and "n_s = 10" in text, name
    return text


def test_the_shipped_bonus_stages():
    coarse = studyfile.load(STUDIES / "bonus_coarse.toml")
    fine = studyfile.load(STUDIES / "bonus_fine.toml")
    searched = {"lambda", "hidden", "dropout", "eta_max"}
    assert set(coarse.search) == set(fine.search) == searched
    assert coarse.search["hidden"].is_int and (
        coarse.search["hidden"].low,
        coarse.search["hidden"].high,
    ) == (200, 1500)
    assert not coarse.search["dropout"].log and not fine.search["dropout"].log
    assert all(r.narrow_from == "bonus_coarse" for r in fine.search.values())
    for spec in (coarse, fine):
        assert spec.study.sampler == "qmc" and spec.study.pruner == "paired"
        assert spec.train.flip and spec.train.translate == 2


@pytest.fixture(scope="module")
def bonus_out(tmp_path_factory, cifar_dir):
    folder = tmp_path_factory.mktemp("studies")
    for name in ("bonus_coarse", "bonus_fine"):
        (folder / f"{name}.toml").write_text(tiny(name, (STUDIES / f"{name}.toml").read_text()))
    out = tmp_path_factory.mktemp("out") / "bonus"
    argv = ["reproduce", "--bonus", "--out", str(out), "--jobs", "1"]
    argv += ["--data-dir", str(cifar_dir), "--studies", str(folder)]
    assert main(argv) == 0
    return out, argv


def test_reproduce_bonus_writes_its_stages_summary_and_report(bonus_out):
    out, _ = bonus_out
    summary = json.loads((out / "summary.json").read_text())
    assert {"coarse", "fine", "final", "report", "seconds"} <= set(summary)
    assert summary["coarse"]["study"] == "bonus_coarse" and summary["fine"]["study"] == "bonus_fine"
    assert set(summary["fine"]["best_params"]) == {"lambda", "hidden", "dropout", "eta_max"}
    assert 0 <= summary["coarse"]["pruning"]["saved_share"] < 1
    final = summary["final"]
    assert final["split"] == "final" and 0 < final["test_accuracy"] <= 1
    best = summary["fine"]["best_params"]
    assert (final["hidden"], final["dropout"]) == (best["hidden"], best["dropout"])
    assert final["flip"] and final["translate"] == 2
    assert final["cycles"] == 2 * bonus.FINAL_LENGTH  # the tiny fine stage's 2, five times
    assert (out / "final_model.npz").is_file()
    ensemble = summary["ensemble"]
    assert ensemble["members"] == bonus.ENSEMBLE == len(ensemble["members_test_accuracy"]) == 2
    # the first member is the final model itself, evaluated again on the same test set
    assert ensemble["members_test_accuracy"][0] == final["test_accuracy"]
    import numpy as np

    with np.load(out / "final_model.npz") as a, np.load(out / "ensemble_1.npz") as b:
        assert not np.array_equal(a["W1"], b["W1"])  # another seed, another network
    assert 0 < ensemble["test_accuracy"] <= 1 and not (out / "ensemble_2.npz").exists()
    assert "The final model and 1 more seed of its settings" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    for section in (
        "## Study `bonus_coarse`",
        "## Study `bonus_fine`",
        "## hidden search",
        "## dropout search",
        "## eta_max search",
        "## Settings tied with the best",
        "### `bonus_fine`:",
    ):
        assert section in report, section
    assert "McNemar p" in report


def test_a_rerun_reuses_every_finished_stage(bonus_out, capsys):
    out, argv = bonus_out
    first = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(argv) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["final"] == first["final"] and again["fine"] == first["fine"]
    assert "study:" not in capsys.readouterr().out  # no study was run again
