"""A study's result table: computed as a DataFrame, then written as CSV, Markdown and LaTeX."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import tabulate

from sweep.errors import SweepError
from sweep.results.display import label, metric_column, number, objective_column, param_column
from sweep.results.inspection import load, trial_reason
from sweep.store.records import TrialResult, spec_of, values_of
from sweep.store.uncertainty import study_ties
from sweep.system.output import latex_escape, markdown_cell, save_text


def trial_metrics(t: optuna.trial.FrozenTrial) -> tuple[dict[str, float], dict[str, float]]:
    """A trial's metrics (mean over seeds) and their sd over seeds, as the objective
    recorded them."""
    result = TrialResult.of(t)
    return result.metrics, result.sd


def study_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial with a value or a final state, sorted by the first parameter.

    Columns: trial, each searched parameter, the objective metric (mean over repeats; for
    a PRUNED trial its last intermediate value), se (its standard error), METRIC_sd (over
    seeds), tied (cannot be told apart from the best: True/False, None if unknown), every
    other metric the function returned, state, rank (1 = best COMPLETE), best (True on the
    best row), reason (why a trial failed or was pruned).
    """
    spec = spec_of(study.user_attrs)
    metric, params = spec.metric, sorted(spec.search)
    objective = objective_column(metric, params)
    ties = study_ties(study, metric)
    rows, others = [], {}
    for t in study.get_trials(deepcopy=False):
        if t.state.name in ("RUNNING", "WAITING"):
            continue
        metrics, sd = trial_metrics(t)
        extra = {
            metric_column(k, params): v
            for k, v in metrics.items()
            if k not in (metric, f"{metric}_se")
        }
        others.update(dict.fromkeys(extra))
        values = values_of(t)
        rows.append(
            {
                "trial": t.number,
                **{param_column(p): values.get(p) for p in params},
                objective: t.value,
                "se": ties[t.number].se,
                f"{objective}_sd": sd.get(metric),
                "tied": ties[t.number].tied,
                **extra,
                "state": t.state.name,
                "reason": trial_reason(t),
            }
        )
    columns = [
        "trial",
        *(param_column(p) for p in params),
        objective,
        "se",
        f"{objective}_sd",
        "tied",
        *others,
        "state",
        "rank",
        "best",
        "reason",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows, columns=[c for c in columns if c not in ("rank", "best")])
    done = df[objective].where(df["state"] == "COMPLETE").astype(float)
    minimize = spec.objective.direction == "minimize"
    df["rank"] = done.rank(ascending=minimize, method="min").astype("Int64")
    df["best"] = False
    if done.notna().any():
        df.loc[done.idxmin() if minimize else done.idxmax(), "best"] = True
    first = [param_column(p) for p in params[:1]]
    return df.sort_values([*first, "trial"]).reset_index(drop=True)[columns]


def markdown(shown: pd.DataFrame) -> str:
    """A display table as Markdown, its strings exactly as formatted (tabulate would
    re-parse "9.724e-04" as a number and print it as 0.0009724), "|" escaped."""
    cells = shown.apply(lambda column: column.map(markdown_cell)) if len(shown) else shown
    cells.columns = [markdown_cell(c) for c in shown.columns]
    return cells.to_markdown(index=False, disable_numparse=True)


def with_se(name: str, value: object, se: object) -> str:
    """ "42.00% ± 0.23%", or the value alone when it has no standard error."""
    text = number(name, value)
    return text if se is None or pd.isna(se) else f"{text} ± {number(name, se)}"


def display_table(df: pd.DataFrame, metric: str, params: list[str]) -> pd.DataFrame:
    """The table as shown in reports: formatted numbers with their standard error, the sd
    over seeds, whether a trial is tied with the best, the best row marked."""
    objective_col = objective_column(metric, params)

    def objective(row) -> str:
        text = number(metric, row[objective_col])
        if row["state"] == "PRUNED" and text != "–":  # its last intermediate value
            return f"({text} when pruned)"
        if pd.notna(row["se"]):
            text += f" ± {number(metric, row['se'])}"
        return text

    pcols = [param_column(p) for p in params]
    fixed = {"trial", *pcols, objective_col, "se", f"{objective_col}_sd", "tied"}
    fixed |= {"state", "rank", "best", "reason"}
    out = pd.DataFrame({"rank": df["rank"].map(lambda r: "" if pd.isna(r) else str(int(r)))})
    for p, col in zip(params, pcols, strict=True):
        out[col] = df[col].map(lambda v, p=p: f"{v:.3e}" if isinstance(v, float) else number(p, v))
    shown = label(metric) if objective_col == metric else objective_col
    out[f"{shown} ± se"] = df.apply(objective, axis=1) if len(df) else []
    if len(df) and df[f"{objective_col}_sd"].notna().any():
        out["sd over seeds"] = df[f"{objective_col}_sd"].map(lambda v: number(metric, v))
    out["tied"] = df["tied"].map({True: "yes", False: "no"}).fillna("–")
    # A "<name>_se" key is the standard error of metric <name>, shown beside it; one that
    # has no such metric is a column of its own.
    paired = {c for c in df.columns if c.endswith("_se") and c[: -len("_se")] in df.columns}
    paired -= {f"{c}_se" for c in fixed}  # lambda_se of a searched lambda is no error bar
    names = [c for c in df.columns if c not in fixed and c not in paired]
    headings = {name: name if name.startswith("metric.") else label(name) for name in names}
    taken = [*out.columns, *headings.values()]
    for name in names:
        se = df.get(f"{name}_se") if f"{name}_se" in paired else None
        # val_loss and "val loss" would share a heading: both keep their own names
        heading = headings[name] if taken.count(headings[name]) == 1 else name
        out[heading] = [
            with_se(name, v, None if se is None else se.iloc[i]) for i, v in enumerate(df[name])
        ]
    out["state"] = df["state"]
    out["best"] = df["best"].map(lambda b: "★" if b else "")
    if len(df) and df["reason"].astype(bool).any():
        out["reason"] = df["reason"]
    return out


def write_tables(study: optuna.Study, out: Path) -> list[Path]:
    """Write table.csv (raw values), table.md and table.tex (formatted) into ``out``."""
    spec = spec_of(study.user_attrs)
    df = study_table(study)
    shown = display_table(df, spec.metric, sorted(spec.search))
    caption = f"Study {study.study_name}: {label(spec.metric)} by trial"
    return [
        save_text(out / "table.csv", df.to_csv(index=False)),
        save_text(out / "table.md", markdown(shown) + "\n"),
        save_text(out / "table.tex", latex(shown, caption=caption)),
    ]


def latex(df: pd.DataFrame, caption: str) -> str:
    """A display table as a LaTeX table environment; every cell escaped."""
    body = tabulate.tabulate(
        [[latex_escape(v) for v in row] for row in df.itertuples(index=False)],
        headers=[latex_escape(c) for c in df.columns],
        tablefmt="latex_raw",
        disable_numparse=True,
    )
    lines = [r"\begin{table}[ht]", r"\centering", body, rf"\caption{{{latex_escape(caption)}}}"]
    return "\n".join([*lines, r"\end{table}", ""])


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
