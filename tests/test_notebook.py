"""examples/notebook/sweep.ipynb runs in a real Jupyter kernel: its objective is defined in
a cell, a coarse and a narrowed fine stage run with two workers, and the table and the
figure are shown."""

import os
import re
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook" / "sweep.ipynb"
ROOT = NOTEBOOK.parent.parent.parent


def outputs(nb, tag: str) -> list:
    (cell,) = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    return cell.outputs


def text_of(output) -> str:
    if output.output_type == "stream":
        return output.text
    return output.get("data", {}).get("text/plain", "")


@pytest.mark.slow
def test_the_notebook_runs_both_stages_and_shows_the_table_and_figure(tmp_path, monkeypatch):
    shutil.copy(NOTEBOOK, tmp_path / "sweep.ipynb")
    nb = nbformat.read(tmp_path / "sweep.ipynb", as_version=4)
    # The kernel imports this checkout's sweep, whatever is installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    assert (tmp_path / "sweeps.db").is_file()  # in the notebook's working folder
    for cell in nb.cells:
        assert not [o for o in cell.get("outputs", []) if o.output_type == "error"]
        for o in cell.get("outputs", []):  # no Optuna lines, no warnings
            assert "A new study created" not in text_of(o)
            assert "Warning" not in text_of(o)

    coarse = text_of(outputs(nb, "coarse")[0])
    assert "study='coarse'" in coarse and "finished=12/12" in coarse

    ranges = "".join(text_of(o) for o in outputs(nb, "ranges"))
    found = dict(re.findall(r"(coarse|fine) range \(([^)]*)\)", ranges))
    (c_low, c_high), (f_low, f_high) = (
        [float(v) for v in found[k].split(",")] for k in ("coarse", "fine")
    )
    assert c_low <= f_low < f_high <= c_high
    assert f_high / f_low < c_high / c_low / 10  # narrowed by more than a decade

    summary = outputs(nb, "summary")[0]["data"]["text/html"]
    assert "fine" in summary and "COMPLETE 8" in summary

    table = outputs(nb, "table")[0]["data"]
    assert "text/html" in table
    body = table["text/html"].split("<tbody>")[1]
    trials = re.findall(r"<tr>\s*<th>\d+</th>\s*<td>(\d+)</td>", body)
    assert sorted(int(t) for t in trials) == list(range(8))  # the fine stage's 8 trials
    assert "val_accuracy" in table["text/html"] and "COMPLETE" in table["text/html"]

    figure = outputs(nb, "figure")[0]["data"]
    assert "image/png" in figure and len(figure["image/png"]) > 1000
