from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sweep.errors import StudyFileError
from sweep.spec import studyfile
from tests.conftest import study_text

GOOD = study_text("s", trials=4, n_s=10)
STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.toml"))


def write(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_every_shipped_study_parses(path):
    spec = studyfile.load(path)
    assert spec.study.name == path.stem
    assert "lambda" in spec.search


def test_shipped_studies_are_the_seed_stages():
    coarse = studyfile.load(Path("studies/coarse.toml"))
    fine = studyfile.load(Path("studies/fine.toml"))
    assert (coarse.search["lambda"].low, coarse.search["lambda"].high) == (1e-5, 1e-1)
    assert coarse.split == "search" and coarse.study.trials == 10 and coarse.train.n_s == "auto"
    assert fine.parent == "coarse" and fine.stage == "fine" and fine.train.cycles == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("trials = 4", "trials = 4\ncolour = 1"), "study.colour is not a known key"),
        (("trials = 4", 'trials = "4"'), "study.trials must be a whole number, not str"),
        (("n_s = 10", "n_s = true"), "train.n_s must be"),
        (("n_s = 10", 'n_s = "often"'), 'train.n_s must be a positive integer or "auto"'),
        (("low = 1e-4", "low = 1"), "search.lambda.low (1.0) must be below high (0.1)"),
        (("low = 1e-4", "low = 0"), "search.lambda.low (0.0) must be positive for a log range"),
        (('sampler = "random"', 'sampler = "bayes"'), "choose one of random, qmc, tpe, grid"),
        (('pruner = "none"', 'pruner = "x"'), "choose one of none, median, hyperband"),
        (('split = "exercise"', 'split = "x"'), "data.split is 'x'; choose one of exercise"),
        (("cycles = 1", "cycles = 1\neta_min = 0.5"), "eta_min (0.5) must be below eta_max"),
        (("[search.lambda]", "[search.momentum]"), "search.momentum cannot be searched"),
        (("trials = 4", "trials = 4 ="), "TOML syntax error"),
    ],
)
def test_bad_study_files_name_the_file_and_key(tmp_path, change, message):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(StudyFileError) as info:
        studyfile.load(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(StudyFileError, match="does not exist"):
        studyfile.load(tmp_path / "nope.toml")


@given(
    trials=st.integers(1, 1000),
    seed=st.integers(0, 2**31),
    repeats=st.integers(1, 5),
    low=st.floats(1e-8, 1e-3),
    span=st.floats(1.5, 1e4),
    sampler=st.sampled_from(studyfile.SAMPLERS),
)
def test_study_files_round_trip_through_the_stored_form(trials, seed, repeats, low, span, sampler):
    raw = {
        "study": {
            "name": "x",
            "trials": trials,
            "seed": seed,
            "repeats": repeats,
            "sampler": sampler,
        },
        "train": {"n_s": 100, "eta_max": 0.05},
        "search": {"lambda": {"low": low, "high": low * span}},
    }
    spec = studyfile.parse(raw)
    assert studyfile.StudyFile.from_dict(spec.to_dict()) == spec


def test_a_study_file_saved_with_a_byte_order_mark_parses(tmp_path):
    # Windows Notepad saved UTF-8 with a BOM until 2019 (and still offers it): TOML's own
    # parser refuses one ("Invalid statement" at line 1).
    p = write(tmp_path, GOOD)
    plain = studyfile.load(p)
    p.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert studyfile.load(p) == plain


def test_a_grid_over_two_parameters_is_refused_not_run_on_its_diagonal(tmp_path):
    # One fraction per point went to every parameter alike: lambda and hidden rose together
    # (1e-4 with 20 units, ..., 1e-1 with 80), never a combination of a low and a high one.
    text = GOOD.replace('sampler = "random"', 'sampler = "grid"')
    text += "\n[search.hidden]\nlow = 20\nhigh = 80\nint = true\nlog = false\n"
    with pytest.raises(StudyFileError, match=r'a grid searches one parameter.*sampler = "qmc"'):
        studyfile.load(write(tmp_path, text))
    one = text.split("[search.hidden]")[0]  # lambda alone: still a grid
    assert studyfile.load(write(tmp_path, one)).study.sampler == "grid"


@pytest.mark.parametrize(
    ("train", "search", "message"),
    [
        # each ran: the study was made, every trial failed, and the file fixed was then
        # "already in the storage with other settings"
        (
            "batch_size = 20000",
            "",
            "train.batch_size (20000) is more than the exercise split's 10,000",
        ),
        (
            "",
            "[search.batch_size]\nlow = 50\nhigh = 50000",
            "search.batch_size reaches 50000, more",
        ),
        (
            "",
            "[search.hidden]\nchoices = [50, 100.5]",
            "search.hidden holds 100.5; hidden is a whole",
        ),
        ("", '[search.hidden]\nchoices = [50, "x"]', "search.hidden holds 'x'"),
        ("", "[search.hidden]\nlow = 0\nhigh = 80", "search.hidden reaches 0, which the network"),
        ("", "[search.dropout]\nlow = 0.0\nhigh = 1.0\nlog = false", "dropout (1.0) must be in"),
        ("", "[search.dropout]\nchoices = [0.0, 1.0]", "search.dropout holds 1.0"),
        ("", "[search.dropout]\nlow = -0.5\nhigh = 0.5\nlog = false", "reaches -0.5"),
    ],
)
def test_searched_values_the_network_refuses_are_refused_before_a_trial_runs(
    tmp_path, train, search, message
):
    # GOOD with a line added to [train], and [search.lambda] replaced by ``search``
    text = GOOD.replace("[train]\n", f"[train]\n{train}\n")
    if search:
        text = text.split("[search.lambda]")[0] + search
    with pytest.raises(StudyFileError) as info:
        studyfile.load(write(tmp_path, text))
    assert message in str(info.value)


def test_eta_min_and_eta_max_searched_together_are_checked_against_each_other(tmp_path):
    # each end of eta_min was checked against the default eta_max of 0.1, which no trial
    # uses: this search, where every pair is valid, was refused
    both = "[search.eta_min]\nlow = 1e-4\nhigh = 0.2\n[search.eta_max]\nlow = 0.3\nhigh = 1.0\n"
    text = GOOD.split("[search.lambda]")[0] + both
    assert set(studyfile.load(write(tmp_path, text)).search) == {"eta_min", "eta_max"}
    never = both.replace("low = 0.3", "low = 1e-5").replace("high = 1.0", "high = 1e-4")
    with pytest.raises(StudyFileError, match=r"eta_min .* must be below eta_max"):
        studyfile.load(write(tmp_path, GOOD.split("[search.lambda]")[0] + never))


@pytest.mark.parametrize(
    ("search", "accepted"),
    [
        ("[search.eta_min]\nlow = 1e-4\nhigh = 0.2\n[search.eta_max]\nchoices = [0.5, 1.0]", True),
        (
            "[search.eta_min]\nchoices = [1e-8, 1e-7]\n[search.eta_max]\nlow = 1e-6\nhigh = 1e-2",
            True,
        ),
        ('[search.eta_min]\nlow = 1e-4\nhigh = 0.2\n[search.eta_max]\nnarrow_from = "c"', True),
        (
            "[search.eta_min]\nchoices = [0.05, 0.06]\n[search.eta_max]\nchoices = [0.02, 0.03]",
            False,
        ),
    ],
)
def test_eta_choices_and_fine_stages_are_checked_against_the_others_values(
    tmp_path, search, accepted
):
    text = GOOD.replace('name = "s"', 'name = "f"').split("[search.lambda]")[0] + search + "\n"
    if accepted:
        studyfile.load(write(tmp_path, text))
    else:
        with pytest.raises(StudyFileError, match=r"eta_min \(0\.05\) must be below eta_max"):
            studyfile.load(write(tmp_path, text))
