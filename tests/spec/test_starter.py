"""The shipped files (sweep/spec/starter.py): `sweep init`, reproduce's seed studies, the
version, and our `core` against other packages of that name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import sweep
from sweep.cli.main import main
from sweep.errors import StudyFileError, SweepError
from sweep.execution.reproduce import find_studies, reproduce
from sweep.spec import starter

ROOT = Path(__file__).resolve().parents[2]
COPIED = {
    *(f"studies/{f.name}" for f in (ROOT / "studies").glob("*.toml")),
    *(f"examples/synthetic/{f.name}" for f in (ROOT / "examples" / "synthetic").iterdir()),
} - {"examples/synthetic/__pycache__"}


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_init_copies_the_seed_studies_and_the_synthetic_example(tmp_path, capsys):
    assert main(["init", str(tmp_path / "mine")]) == 0
    copied = tree(tmp_path / "mine")
    assert set(copied) == COPIED
    assert all(content == (ROOT / name).read_bytes() for name, content in copied.items())
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'mine' / 'studies' / 'coarse.toml'}" in out
    assert "next: sweep run " in out


def test_init_never_overwrites_and_then_writes_nothing(tmp_path, capsys):
    (tmp_path / "examples" / "synthetic").mkdir(parents=True)
    (tmp_path / "examples" / "synthetic" / "objective.py").write_text("mine", encoding="utf-8")
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "objective.py already exists; sweep init never overwrites" in err
    assert tree(tmp_path) == {"examples/synthetic/objective.py": b"mine"}  # nothing added
    with pytest.raises(SweepError, match="never overwrites"):
        starter.init(tmp_path)


def test_init_defaults_to_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert set(tree(tmp_path)) == COPIED
    assert "wrote studies/coarse.toml" in capsys.readouterr().out.replace(os.sep, "/")


def test_an_initialised_folder_runs_as_the_readme_says(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["init"])
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["run", "examples/synthetic/coarse.toml", "--storage", url, "--trials", "3"]) == 0
    assert "synthetic-coarse (coarse): 3/3 finished" in capsys.readouterr().out


def test_reproduce_reads_the_seed_studies_from_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever folder it runs in
    folder = find_studies(None)
    assert tomllib.loads(folder.joinpath("coarse.toml").read_text(encoding="utf-8")) == (
        tomllib.loads((ROOT / "studies" / "coarse.toml").read_text(encoding="utf-8"))
    )


def test_reproduce_checks_its_studies_before_creating_anything(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyFileError, match=r"no coarse\.toml and fine\.toml in"):
        reproduce(out=tmp_path / "out", studies_dir=str(tmp_path / "empty"))
    assert not (tmp_path / "out").exists()
    argv = ["reproduce", "--out", str(tmp_path / "o2"), "--studies", str(tmp_path / "empty")]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: no coarse.toml and fine.toml in")
    assert not (tmp_path / "o2").exists()


def test_run_errors_point_at_files_the_user_has(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "sweep init DIR" in err and "studies/" not in err
    starter.init(tmp_path)  # a fine stage whose coarse stage has not run
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["run", str(tmp_path / "examples/synthetic/fine.toml"), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert f"run it first: sweep run {tmp_path / 'examples/synthetic/coarse.toml'}" in err


def test_version_is_one_source(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"sweep {sweep.__version__}\n"
    assert sweep.__version__ == "0.3.0"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "sweep.__version__"


@pytest.mark.parametrize("shape", ["core.py", "core/__init__.py"])
def test_another_core_cannot_stand_in_for_ours(tmp_path, shape):
    (tmp_path / shape).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / shape).write_text("print('their core ran')\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-c", "import sweep"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"ImportError: lambda-sweep needs its own package 'core' ({ROOT / 'core'}), but "
        f"Python imports another one ({tmp_path / shape}): rename or move that core (or take "
        "it off PYTHONPATH), or reinstall lambda-sweep if another distribution's core was "
        "installed over it"
    )
    assert "their core ran" not in proc.stdout  # refused without running it


def test_a_foreign_core_installed_over_ours_is_refused(tmp_path):
    """Our place, another distribution's content (pip merges two `core` packages)."""
    shutil.copytree(ROOT / "sweep", tmp_path / "site" / "sweep")
    shutil.copytree(ROOT / "core", tmp_path / "site" / "core")
    (tmp_path / "site" / "core" / "__init__.py").write_text("", encoding="utf-8")  # theirs
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    proc = subprocess.run(
        [sys.executable, "-c", "import sweep"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "needs its own package 'core'" in proc.stderr


def test_the_next_command_init_prints_can_be_pasted_for_a_folder_with_spaces(tmp_path, capsys):
    import shlex

    folder = tmp_path / "my studies λ"
    assert main(["init", str(folder)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("next: "))
    command = line.removeprefix("next: ").split(" (seconds", 1)[0]
    assert shlex.split(command) == [
        "sweep", "run", str(folder / "examples" / "synthetic" / "coarse.toml")
    ]  # fmt: skip
