"""The wheel works anywhere: built, installed into a fresh venv, run from an empty folder.

The venv borrows this environment's dependencies (numpy, optuna, ...) instead of
downloading them, through a folder of links to them that leaves out lambda-sweep itself, so
the project can only come from the wheel (asserted: sweep.__file__ lies in the venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import sweep as checkout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
OURS = ("lambda_sweep", "__editable__", "core", "sweep")  # this project, however installed


# A clean environment: PYTHONPATH (a checkout on it, as when testing a work tree) would
# put the project back in front of the wheel.
CLEAN = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run(*args: str | Path, cwd: Path, timeout: float = 600) -> str:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=CLEAN, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", ROOT, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("lambda_sweep-*.whl")
    assert wheel.name.startswith(f"lambda_sweep-{checkout.__version__}-")

    deps = tmp / "deps"  # links to this environment's packages, without this project
    deps.mkdir()
    for site in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(site).iterdir():
            if not entry.name.startswith(OURS) and not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    env = tmp / "venv"
    run(sys.executable, "-m", "venv", env, cwd=tmp)
    python = env / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp)
    # A plain path line: its folder's own .pth files (an editable install's) are not run.
    (Path(site.strip()) / "borrowed-deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, cwd=tmp)
    return env


def test_the_installed_wheel_runs_from_any_folder(venv, tmp_path):
    bin_dir = venv / "bin"
    where = json.loads(
        run(
            bin_dir / "python",
            "-c",
            "import json, core, sweep; print(json.dumps([sweep.__file__, core.__file__]))",
            cwd=tmp_path,
        )
    )
    for path in where:  # the project comes from the wheel, not from the checkout
        assert Path(path).resolve().is_relative_to(venv.resolve()), where

    assert run(bin_dir / "sweep", "--version", cwd=tmp_path).strip() == (
        f"sweep {checkout.__version__}"
    )
    assert "usage: sweep reproduce" in run(bin_dir / "sweep", "reproduce", "--help", cwd=tmp_path)

    out = run(bin_dir / "sweep", "init", "mine", cwd=tmp_path)
    for name in ("studies/coarse.toml", "studies/fine.toml", "examples/synthetic/objective.py"):
        copy = tmp_path / "mine" / name
        assert f"wrote {Path('mine') / name}" in out
        assert copy.read_bytes() == (ROOT / name).read_bytes()

    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = Path("mine") / "examples" / "synthetic" / "coarse.toml"
    out = run(bin_dir / "sweep", "run", study, "--jobs", "2", "--storage", url, cwd=tmp_path)
    assert "synthetic-coarse (coarse): 10/10 finished (10 COMPLETE" in out
    assert (tmp_path / "reports" / "synthetic-coarse" / "table.md").is_file()


def test_the_installed_wheel_reproduces_with_its_own_seed_studies(venv, tmp_path):
    """`sweep reproduce` finds the seed's studies inside the package from any folder: here
    it goes on to look for the data and stops there, before any work (no CIFAR-10, no
    network), where version 0.2 stopped at once ("no coarse.toml and fine.toml in
    .../site-packages")."""
    python = venv / "bin" / "python"
    code = "from sweep.execution.reproduce import find_studies, load_stages; "
    code += "print(find_studies(None)); "
    code += "print(*[s.study.name for s in load_stages(None)])"
    folder, names = run(python, "-c", code, cwd=tmp_path).splitlines()
    assert Path(folder).resolve().is_relative_to(venv.resolve()) and names == "coarse fine"

    (tmp_path / "nodata").mkdir()  # an existing folder: the download is tried there
    proc = subprocess.run(
        [venv / "bin" / "sweep", "reproduce", "--out", "rep", "--data-dir", "nodata"],
        cwd=tmp_path,
        env={**CLEAN, "SWEEP_CIFAR_URL": "http://127.0.0.1:9/cifar-10-python.tar.gz"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot download CIFAR-10")
    assert not (tmp_path / "rep").exists()  # the data is looked for before OUT is made
