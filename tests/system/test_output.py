"""Files written for people, and what a full disk, a kill or a bad --out does to them."""

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from sweep.cli.main import main
from sweep.results.tables import latex, markdown
from sweep.system import output
from tests.conftest import check, study_text, sweep

NASTY = r"$5 {x} ~/a ^2 & 50% #1 _b \c | d"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "table.md"
    output.save_text(target, "old\n")

    def full(self, text, **kwargs):
        with open(self, "w", encoding="utf-8") as f:
            f.write(text[:3])  # half of it, then the disk is full
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError):
        output.save_text(target, "new content\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]


def test_a_full_disk_while_writing_tables_is_one_line(tmp_path, monkeypatch, capsys, setup_study):
    url, out = setup_study
    real = output.write_with

    def full(path, write):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(output, "write_with", full)
    check(
        capsys, ["table", "s", "--storage", url, "--out", str(out)], "no space left on the device"
    )
    monkeypatch.setattr(output, "write_with", real)
    assert not list(out.rglob("table.*"))


def test_latex_and_markdown_tables_escape_every_special_character():
    import pandas as pd

    df = pd.DataFrame({"reason": [NASTY], "best": ["★"], "acc ± se": ["1.0% ± 0.1%"]})
    tex = latex(df, caption="Study s: val_accuracy by trial")
    row = next(line for line in tex.splitlines() if "textasciitilde" in line)
    assert r"\$5 \{x\} \textasciitilde{}/a \^{}2 \& 50\% \#1 \_b \textbackslash{}c" in row
    assert r"$\star$" in tex and r"$\pm$" in tex and r"val\_accuracy" in tex
    md = markdown(df)
    assert r"\| d" in md and md.splitlines()[2].count(" | ") == 2  # three cells, not four


def test_out_naming_a_file_is_refused_before_anything_runs(tmp_path, capsys, cifar_dir):
    (tmp_path / "s.toml").write_text(study_text("s", trials=2))
    (tmp_path / "afile").write_text("x")
    url = f"sqlite:///{tmp_path}/s.db"
    argv = ["run", str(tmp_path / "s.toml"), "--storage", url, "--data-dir", str(cifar_dir)]
    check(capsys, [*argv, "--out", str(tmp_path / "afile")], "is a file, not a folder")
    check(capsys, [*argv, "--out", str(tmp_path / "afile" / "sub")], "not a writable folder")
    assert not (tmp_path / "s.db").exists()


@pytest.fixture
def setup_study(tmp_path, cifar_dir):
    (tmp_path / "s.toml").write_text(study_text("s", trials=2))
    url = f"sqlite:///{tmp_path}/s.db"
    argv = ["run", str(tmp_path / "s.toml"), "--storage", url, "--data-dir", str(cifar_dir)]
    assert main([*argv, "--out", str(tmp_path / "first")]) == 0
    return url, tmp_path / "out"


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)])


def test_a_study_database_on_a_full_disk_stops_at_once_with_one_line(tmp_path):
    funcs = tmp_path / "f.py"
    funcs.write_text(
        "def f(params, ctx):\n    ctx.report(0, params['x'])\n    return params['x']\n"
    )
    (tmp_path / "s.toml").write_text(
        '[study]\nname = "s"\ntrials = 2000\n[objective]\nfile = "f.py"\nfunction = "f"\n'
        "[search.x]\nlow = 0.0\nhigh = 1.0\nlog = false\n"
    )
    with small_disk(tmp_path / "disk", "1m") as disk:
        url = f"sqlite:///{disk}/s.db"
        started = time.monotonic()
        done = subprocess.run(
            sweep("run", str(tmp_path / "s.toml"), "--storage", url, "--jobs", "2"),
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "SWEEP_OUTAGE_SECONDS": "600"},
        )
        seconds = time.monotonic() - started
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, done.stderr
        assert lines[-1].startswith("error: no space left on the device"), done.stderr
        assert "Traceback" not in done.stderr
        # At once: not after the 600-s patience for a lost database.
        assert seconds < 300, seconds


@pytest.mark.skipif(os.name != "posix", reason="modes beyond read-only are POSIX's")
def test_files_written_for_people_get_the_mode_of_any_new_file(tmp_path):
    old = os.umask(0o027)
    try:
        table = output.save_text(tmp_path / "table.md", "x\n")
        assert table.stat().st_mode & 0o777 == 0o640  # not tempfile's private 0600
        table.chmod(0o600)
        output.save_text(table, "y\n")  # a rewrite too
        assert table.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


@pytest.fixture
def shown(tmp_path):
    """A study of one trial with curves, and the `sweep show` arguments for it."""
    import sweep as api

    def f(params, ctx):
        ctx.report(1, params["x"])
        return params["x"]

    url = f"sqlite:///{tmp_path}/s.db"
    study = {
        "study": {"name": "s", "trials": 1},
        "search": {"x": {"low": 0.0, "high": 1.0, "log": False}},
    }
    api.run(study, objective=f, storage=url)
    return ["show", "s", "0", "--storage", url]


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="POSIX devices")
def test_a_plot_is_never_written_over_a_folder_or_a_device(shown, tmp_path, capsys):
    check(capsys, [*shown, "--plot", "/dev/null"], "/dev/null is not a regular file")
    assert Path("/dev/null").is_char_device()
    check(capsys, [*shown, "--plot", str(tmp_path)], "is not a regular file")
    check(capsys, [*shown, "--plot", str(tmp_path / "curves.txt")], "cannot save a figure as .txt")
    (tmp_path / "file").write_text("x")
    check(capsys, [*shown, "--plot", str(tmp_path / "file" / "c.png")], "is not a writable folder")


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_a_plot_through_a_link_replaces_the_file_it_points_to(shown, tmp_path, capsys):
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    assert main([*shown, "--plot", str(tmp_path / "link.png")]) == 0
    assert (tmp_path / "link.png").is_symlink()
    assert (tmp_path / "real.png").stat().st_size > 1000
    assert "No artists" not in capsys.readouterr().err


def test_json_for_other_programs_has_null_where_python_would_write_nan():
    text = output.json_text({"a": float("nan"), "b": [float("inf"), 1.5], "c": "x"})
    assert text == '{"a": null, "b": [null, 1.5], "c": "x"}'


def test_characters_the_font_lacks_are_said_once_in_one_line(tmp_path, caplog, monkeypatch):
    # A metric named "val 精度": matplotlib warned twice per character in two lines each,
    # at every figure (12 lines of UserWarning for one report; hostile pass).
    import warnings

    from matplotlib.figure import Figure

    monkeypatch.setattr(output, "_said_missing", set())
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        for i in range(3):
            fig = Figure()
            fig.add_subplot().set_title("val 精度")
            output.save_figure(fig, tmp_path / f"f{i}.png")
    assert [str(w.message) for w in shown] == []
    said = [r.getMessage() for r in caplog.records if r.name == "sweep"]
    assert len(said) == 1 and "'精度'" in said[0], said
    assert all((tmp_path / f"f{i}.png").stat().st_size for i in range(3))


def _warner():
    import warnings

    from matplotlib.artist import Artist

    class Warner(Artist):
        def draw(self, renderer):
            warnings.warn("drawn with a warning", UserWarning, stacklevel=1)

    return Warner()


@pytest.mark.parametrize("filtered", [False, True])
def test_other_warnings_of_a_figure_pass_once_and_keep_their_module_filters(
    tmp_path, monkeypatch, filtered
):
    # Passed on with warn_explicit, an artist's warning showed at every figure, and a
    # filter on its module no longer matched (review of c6cbcb1).
    import warnings

    from matplotlib.figure import Figure

    monkeypatch.setattr(output, "_warned", set())
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        if filtered:
            warnings.filterwarnings("ignore", module=__name__)
        for i in range(3):
            fig = Figure()
            fig.add_subplot().add_artist(_warner())
            output.save_figure(fig, tmp_path / f"f{i}.png")
    said = [str(w.message) for w in shown]
    assert said == ([] if filtered else ["drawn with a warning"]), said
