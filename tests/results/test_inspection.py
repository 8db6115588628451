"""What the inspection commands print (sweep/results/inspection.py)."""

import optuna

import sweep
from sweep.cli.main import main


def _pipes(params, ctx):
    if params["a|b"] == "c|d":
        raise ValueError("boom | with a pipe")
    return {"score": 1.0}


def test_the_trials_table_keeps_its_columns_and_leaves_missing_values_blank(tmp_path, capsys):
    # A "|" in a parameter's name, a choice or a reason split the printed table's rows,
    # and a waiting trial's seconds read "nan" where the CSV and JSON have nothing
    # (hostile pass).
    url = f"sqlite:///{tmp_path}/p.db"
    study = {"study": {"name": "p", "trials": 2, "sampler": "grid"}}
    study["objective"] = {"metric": "score"}
    study["search"] = {"a|b": {"choices": ["c|d", "e"]}}
    sweep.run(study, objective=_pipes, storage=url, jobs=1)
    optuna.load_study(study_name="p", storage=url).enqueue_trial({"a|b": "e"})  # WAITING
    capsys.readouterr()
    assert main(["trials", "p", "--storage", url]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    cells = [line.replace(r"\|", "").split("|") for line in lines]
    assert len(lines) == 5 and len({len(row) for row in cells}) == 1, lines
    assert r"a\|b" in lines[0] and r"c\|d" in lines[2] and r"boom \| with a pipe" in lines[2]
    waiting = dict(zip(cells[0], cells[4], strict=True))
    assert "WAITING" in lines[4] and "nan" not in lines[4]
    assert waiting[next(h for h in waiting if "seconds" in h)].strip() == ""


def test_the_trials_table_prints_a_string_choice_as_it_is(tmp_path, capsys):
    # tabulate read the choice "007" as a number and printed it as 7 (review).
    url = f"sqlite:///{tmp_path}/c.db"
    study = {"study": {"name": "c", "trials": 2, "sampler": "grid"}}
    study["objective"] = {"metric": "score"}
    study["search"] = {"code": {"choices": ["007", "1e3"]}}
    sweep.run(study, objective=lambda params, ctx: {"score": 0.5}, storage=url, jobs=1)
    capsys.readouterr()
    assert main(["trials", "c", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "| 007 " in out and "| 1e3 " in out and "1000" not in out, out
    assert "|     0.5 |" in out  # numbers stay numbers (right-aligned)
