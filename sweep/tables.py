"""A study's result table: computed as a DataFrame, then written as CSV, Markdown and LaTeX."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from sweep.errors import SweepError
from sweep.inspection import load, reason_of


def study_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial with a value or a final state, sorted by lambda.

    Columns: trial, lambda, val_accuracy (mean over repeats; for a PRUNED trial the last
    intermediate value), val_sd, train_accuracy, state, rank (1 = best COMPLETE), best
    (True on the best row), reason (why a trial failed or was pruned).
    """
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name in ("RUNNING", "WAITING"):
            continue
        result = t.user_attrs.get("result", {})  # written by the objective on success
        rows.append(
            {
                "trial": t.number,
                "lambda": t.params.get("lambda"),
                "val_accuracy": t.value,
                "val_sd": result.get("val_sd"),
                "train_accuracy": result.get("train_accuracy"),
                "state": t.state.name,
                "reason": reason_of(t),
            }
        )
    columns = [
        "trial",
        "lambda",
        "val_accuracy",
        "val_sd",
        "train_accuracy",
        "state",
        "rank",
        "best",
        "reason",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows)
    done = df["state"] == "COMPLETE"
    df["rank"] = df["val_accuracy"].where(done).rank(ascending=False, method="min").astype("Int64")
    df["best"] = False
    if done.any():
        df.loc[df["val_accuracy"].where(done).idxmax(), "best"] = True
    return df.sort_values(["lambda", "trial"]).reset_index(drop=True)[columns]


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """The table as shown in reports: percentages, mean ± sd, the best row marked."""

    def acc(row) -> str:
        if pd.isna(row["val_accuracy"]):
            return "–"
        if row["state"] == "PRUNED":  # its last intermediate value, not a final accuracy
            return f"({row['val_accuracy']:.2%} when pruned)"
        text = f"{row['val_accuracy']:.2%}"
        if pd.notna(row["val_sd"]):
            text += f" ± {row['val_sd']:.2%}"
        return text

    out = pd.DataFrame(
        {
            "rank": df["rank"].map(lambda r: "" if pd.isna(r) else str(int(r))),
            "lambda": df["lambda"].map(lambda v: f"{v:.3e}" if pd.notna(v) else "–"),
            "val. accuracy": df.apply(acc, axis=1) if len(df) else [],
            "train accuracy": df["train_accuracy"].map(
                lambda v: f"{v:.2%}" if pd.notna(v) else "–"
            ),
            "state": df["state"],
            "best": df["best"].map(lambda b: "★" if b else ""),
        }
    )
    if len(df) and df["reason"].astype(bool).any():
        out["reason"] = df["reason"]
    return out


def write_tables(study: optuna.Study, out: Path) -> list[Path]:
    """Write table.csv (raw values), table.md and table.tex (formatted) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    df = study_table(study)
    shown = display_table(df)
    paths = [out / "table.csv", out / "table.md", out / "table.tex"]
    df.to_csv(paths[0], index=False)
    paths[1].write_text(shown.to_markdown(index=False) + "\n")
    paths[2].write_text(
        _latex(shown, caption=f"Study {study.study_name}: lambda against validation accuracy")
    )
    return paths


def _latex(df: pd.DataFrame, caption: str) -> str:
    def esc(text: str) -> str:
        return (
            str(text)
            .replace("\\", r"\textbackslash{}")
            .replace("%", r"\%")
            .replace("_", r"\_")
            .replace("&", r"\&")
            .replace("#", r"\#")
            .replace("★", r"$\star$")
            .replace("±", r"$\pm$")
            .replace("–", "--")
        )

    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        r"\begin{tabular}{" + "l" * len(df.columns) + "}",
        r"\hline",
        " & ".join(esc(c) for c in df.columns) + r" \\",
        r"\hline",
    ]
    for _, row in df.iterrows():
        lines.append(" & ".join(esc(v) for v in row) + r" \\")
    lines += [r"\hline", r"\end{tabular}", rf"\caption{{{esc(caption)}}}", r"\end{table}", ""]
    return "\n".join(lines)


def study_folder(out: str | Path, name: str) -> Path:
    """OUT/<study>/, refusing a name that would leave OUT (study files forbid such names;
    a database from elsewhere may still hold one)."""
    folder = Path(out) / name
    if name in ("", ".", "..") or folder.resolve().parent != Path(out).resolve():
        raise SweepError(f"study name {name!r} is not usable as a folder name; rename the study")
    return folder


def write_study_tables(name: str, storage_url: str | None, out: str | Path) -> list[Path]:
    """`sweep table`: the study's tables into OUT/<study>/."""
    return write_tables(load(name, storage_url).study, study_folder(out, name))
