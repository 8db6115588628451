"""Figures: each has a function computing exactly the data shown, and one drawing it.

The format follows the file's suffix (.png by default; .pdf and .svg work too).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.study import StudyDirection

from core.schedules import Schedule, eta
from sweep.errors import SweepError
from sweep.results.display import objective_column, param_column
from sweep.results.tables import study_table
from sweep.store.records import STAGE, spec_of
from sweep.system.output import save_figure

DPI = 120


def plain(text: object) -> str:
    """A user's name as text in a figure: with two "$" in it matplotlib parsed it as TeX
    math and failed ("a$^$b") or drew "cost $ per $" as math. (Not parse_math=False for
    the whole figure: a log axis's own labels are math, "$10^{-3}$".)"""
    return str(text).replace("$", r"\$")


class InlineFigure(Figure):
    """A Figure that Jupyter shows inline as a PNG whatever matplotlib's backend (no pyplot
    state is needed for it)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        return buffer.getvalue()


def _save(fig, path: str | Path) -> Path:
    # A bare Figure: no pyplot state, no GUI; written whole or not at all.
    return save_figure(fig, path, dpi=DPI, bbox_inches="tight")


# --- cyclical learning rate ------------------------------------------------------------


def schedule_data(schedule: Schedule, cycles: int) -> pd.DataFrame:
    """eta at every update step of ``cycles`` cycles (inclusive of the final step)."""
    steps = np.arange(2 * schedule.n_s * cycles + 1)
    return pd.DataFrame({"step": steps, "eta": [eta(int(t), schedule) for t in steps]})


def plot_schedule(df: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    ax.plot(df["step"], df["eta"], color="tab:blue")
    ax.set_xlabel("update step")
    ax.set_ylabel("learning rate η")
    ax.set_title(title or "Cyclical learning rate")
    ax.grid(alpha=0.3)
    return _save(fig, path)


# --- training curves -------------------------------------------------------------------


def curve_data(curves: dict[str, list[float]]) -> pd.DataFrame:
    """The recorded curves as a table: one row per evaluation."""
    return pd.DataFrame(curves)


def curve_panels(columns: list[str]) -> list[tuple[str, list[str]]]:
    """Which curves share a panel: train_X with val_X, every other curve alone."""
    panels, used = [], {"step", "eta"}
    for key in ("cost", "loss", "accuracy"):
        pair = [f"train_{key}", f"val_{key}"]
        if all(c in columns for c in pair):
            panels.append((key, pair))
            used |= set(pair)
    panels += [(c.replace("_", " "), [c]) for c in columns if c not in used]
    return panels


def _legend(ax, **options) -> None:
    """A legend when something is labelled (a trial with no curves, a study with no finished
    trial): matplotlib warns on stderr otherwise."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def plot_trial(info: Any, path: str | Path) -> Path:
    """A trial's curves (`sweep show --plot`; ``info``: inspection.TrialInfo); one that
    recorded and reported nothing is refused rather than drawn empty."""
    if not any(info.curves.values()):
        raise SweepError(
            f"trial {info.number} of study {info.study!r} recorded no curves ({info.state}); "
            "there is nothing to plot"
        )
    return plot_curves(info.curves, path, title=f"{info.study} trial {info.number}")


def plot_curves(curves: dict[str, list[float]], path: str | Path, title: str = "") -> Path:
    """The curves a trial reported (ctx.report), one panel per quantity."""
    df = curve_data(curves)
    panels = curve_panels(list(df.columns)) or [("value", [])]
    fig = Figure(figsize=(4.4 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = {"train": "tab:green", "val": "tab:red"}
    for ax, (name, columns) in zip(axes, panels, strict=True):
        for column in columns:
            prefix = column.split("_", 1)[0]
            label = {"train": "training", "val": "validation"}.get(prefix, plain(column))
            ax.plot(df["step"], df[column], label=label, color=colours.get(prefix, "tab:blue"))
        ax.set_xlabel("step")
        ax.set_ylabel(plain(name))
        ax.grid(alpha=0.3)
        _legend(ax)
    fig.suptitle(plain(title) if title else "Training curves")
    return _save(fig, path)


# --- lambda against validation accuracy ------------------------------------------------


def param_data(studies: list[optuna.Study], param: str) -> pd.DataFrame:
    """COMPLETE trials of the studies: study, stage, the parameter's value (a number, or a
    choices parameter's choice), the objective metric, its standard error, its sd over
    seeds, whether it is tied with its study's best, best (one per study and one
    overall)."""
    frames = []
    minimize = False
    for study in studies:
        spec = spec_of(study.user_attrs)
        if param not in spec.search:
            continue
        minimize = spec.objective.direction == "minimize"
        df = study_table(study)
        df = df[df["state"] == "COMPLETE"]
        objective = objective_column(spec.metric, sorted(spec.search))
        values = df[param_column(param)]
        frames.append(
            pd.DataFrame(
                {
                    "study": study.study_name,
                    "stage": study.user_attrs.get(STAGE, "coarse"),
                    # choices of words or true/false stay as they are
                    param_column(param): values.astype(float)
                    if numeric(spec.search[param].choices)
                    else values.astype(object),
                    "value": df[objective].astype(float),
                    "se": df["se"].astype(float),
                    "sd": df[f"{objective}_sd"].astype(float),
                    "tied": df["tied"].astype(object),
                    "best_in_study": df["best"].astype(bool),
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            columns=[
                *("study", "stage", param_column(param), "value", "se", "sd"),
                *("tied", "best_in_study", "best"),
            ]
        )
    out = pd.concat(frames, ignore_index=True)
    out["best"] = False
    if len(out):
        out.loc[out["value"].idxmin() if minimize else out["value"].idxmax(), "best"] = True
    return out


def _scale(metric: str) -> tuple[float, str]:
    """Accuracies are drawn in percent."""
    shown = plain(metric)
    return (100.0, f"{shown.replace('_', ' ')} (%)") if "accuracy" in metric else (1.0, shown)


def plot_param(
    df: pd.DataFrame,
    ranges: dict[str, tuple[float, float]],
    path: str | Path,
    *,
    param: str = "lambda",
    metric: str = "val_accuracy",
    log: bool = True,
    choices: list[Any] | None = None,
) -> Path:
    """``ranges``: study name -> the parameter's searched range; fine stages' are shaded.
    ``choices``: a choices parameter's, in order along the axis (then no range)."""
    figure = param_figure(df, ranges, param=param, metric=metric, log=log, choices=choices)
    return _save(figure, path)


def param_figure(
    df: pd.DataFrame,
    ranges: dict[str, tuple[float, float]],
    *,
    param: str = "lambda",
    metric: str = "val_accuracy",
    log: bool = True,
    choices: list[Any] | None = None,
) -> Figure:
    """The figure of `plot_param`, not saved (Jupyter shows a returned Figure inline)."""
    column = param_column(param)
    df = df.assign(x=df[column].astype(float) if choices is None else _spread(df, column, choices))
    df = df[df["x"].notna()]
    x = "x"
    fig = InlineFigure(figsize=(7, 4))
    ax = fig.subplots()
    scale, ylabel = _scale(metric)
    colours = {"coarse": "tab:blue", "fine": "tab:orange"}
    stage_of = dict(zip(df["study"], df["stage"], strict=False))
    for name, (low, high) in ranges.items():
        if stage_of.get(name) == "fine":
            ax.axvspan(low, high, color="tab:orange", alpha=0.12, label=f"{name} range")
    for name, part in df.groupby("study", sort=False):
        stage = part["stage"].iloc[0]
        ax.errorbar(
            part[x],
            part["value"] * scale,
            # (a negative se returned by an older version's function: unknown)
            yerr=None if part["se"].isna().all() else part["se"].where(part["se"] >= 0, 0) * scale,
            fmt="o",
            capsize=3,
            color=colours.get(stage, "tab:gray"),
            label=f"{name} ({stage})",
        )
    tied = df[df["tied"].eq(True) & ~df["best_in_study"].astype(bool)]
    if len(tied):
        ax.scatter(
            tied[x],
            tied["value"] * scale,
            s=160,
            facecolors="none",
            edgecolors="tab:green",
            linewidths=1.5,
            zorder=4,
            label="tied with its study's best (5% level)",
        )
    best = df[df["best"]]
    symbol = "λ" if param == "lambda" else plain(param)
    if len(best):
        b = best.iloc[0]
        ax.scatter(
            [b[x]],
            [b["value"] * scale],
            marker="*",
            s=250,
            color="gold",
            edgecolor="black",
            zorder=5,
            label=f"best {symbol} = "
            + (f"{b[column]:.3g}" if choices is None else plain(_choice_label(b[column]))),
        )
    if choices is not None:
        labels = [plain(_choice_label(c)) for c in choices]
        slanted = sum(map(len, labels)) > 40  # long labels would run into each other
        ax.set_xticks(range(len(choices)), labels, rotation=25 if slanted else 0)
        if slanted:
            for text in ax.get_xticklabels():
                text.set_horizontalalignment("right")
        ax.set_xlim(-0.5, len(choices) - 0.5)
    elif log:
        ax.set_xscale("log")
    ax.set_xlabel("λ (L2 penalty)" if param == "lambda" else plain(param))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    _legend(ax, fontsize=8)
    ax.set_title(f"{symbol} against {plain(metric).replace('_', ' ')} (bars: ±1 standard error)")
    return fig


def _choice_index(value: Any, choices: list[Any]) -> int | None:
    """Which of ``choices`` a stored value is (true is not 1 here, nor 1.0 "1.0")."""
    for i, choice in enumerate(choices):
        if isinstance(choice, bool) == isinstance(value, bool | np.bool_) and choice == value:
            return i
    return None


def axes_of(searches: list[tuple | list | None]) -> list[tuple[list[Any] | None, list[int]]]:
    """How studies' searches of one parameter (None: a range; else its choices) are drawn:
    the numeric ones (ranges, choices of numbers) on one number axis, first; each set of
    other choices (words, true/false; in any order) on an axis of its own. Returns
    (the axis's choices, or None for numbers; the indices of the searches drawn on it)."""
    axes: list[tuple[list[Any] | None, list[int]]] = []
    for i, choices in enumerate(searches):
        number = numeric(choices)
        for kind, members in axes:
            if (kind is None and number) or (kind is not None and _same(kind, choices)):
                members.append(i)
                break
        else:
            axes.append((None if number else list(choices), [i]))  # type: ignore[arg-type]
    return sorted(axes, key=lambda axis: axis[0] is not None)


def log_axis(range_logs: list[bool], values: pd.Series) -> bool:
    """A number axis's scale: log where every range drawn on it searched in log (choices of
    numbers alone: where they span two decades or more), never with a value <= 0 to draw."""
    values = values.dropna().astype(float)
    if not len(values) or values.min() <= 0:
        return False
    if range_logs:
        return all(range_logs)
    return values.max() / values.min() >= 100


def same_choices(a: list[Any] | tuple | None, b: list[Any] | tuple | None) -> bool:
    """Whether two searches are drawn on one axis (see axes_of)."""
    return len(axes_of([a, b])) == 1


def _same(a: list[Any], b: tuple | list | None) -> bool:
    """The same choices, in any order."""
    return (
        b is not None and len(a) == len(b) and all(_choice_index(c, list(b)) is not None for c in a)
    )


def numeric(choices: tuple | list | None) -> bool:
    """Whether a search (None: a range; else its choices) is drawn on a number axis."""
    return choices is None or all(
        isinstance(c, int | float) and not isinstance(c, bool) for c in choices
    )


def _spread(df: pd.DataFrame, column: str, choices: list[Any]) -> pd.Series:
    """Where each trial of a choices parameter is drawn: its choice's place (0, 1, ...),
    each study a little to one side and its trials of one choice spread out, so that none
    hides another. NaN for a value that is not one of ``choices``."""
    place = df[column].map(lambda v: _choice_index(v, choices)).astype(float)
    studies = list(dict.fromkeys(df["study"]))
    width = 0.6 / len(studies) if studies else 0.6  # of the room between two choices
    x = pd.Series(np.nan, index=df.index)
    for (study, _), part in df.groupby(["study", place], sort=False):
        centre = (studies.index(study) - (len(studies) - 1) / 2) * width
        offsets = np.linspace(-0.3, 0.3, len(part)) * width if len(part) > 1 else [0.0]
        x[part.sort_values("value").index] = place[part.index].iloc[0] + centre + offsets
    return x


def _choice_label(choice: Any) -> str:
    """A choice as the study file writes it (true, not True)."""
    return str(choice).lower() if isinstance(choice, bool | np.bool_) else str(choice)


# --- optimisation history --------------------------------------------------------------


def history_data(study: optuna.Study) -> pd.DataFrame:
    """COMPLETE trials in the order they finished, with the best value so far."""
    best_so_far = (
        np.minimum.accumulate
        if study.direction == StudyDirection.MINIMIZE
        else np.maximum.accumulate
    )
    done = [
        t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
    ]
    done.sort(key=lambda t: t.datetime_complete)
    values = [t.value for t in done]
    return pd.DataFrame(
        {
            "order": range(1, len(done) + 1),
            "trial": [t.number for t in done],
            "value": values,
            "best_so_far": best_so_far(values) if values else [],
        }
    )


def plot_history(
    df: pd.DataFrame, path: str | Path, title: str = "", metric: str = "val_accuracy"
) -> Path:
    return _save(history_figure(df, title, metric), path)


def history_figure(df: pd.DataFrame, title: str = "", metric: str = "val_accuracy") -> Figure:
    """The figure of `plot_history`, not saved."""
    fig = InlineFigure(figsize=(6, 3.5))
    ax = fig.subplots()
    scale, ylabel = _scale(metric)
    ax.plot(df["order"], df["value"] * scale, "o", label="trial", color="tab:blue")
    ax.step(
        df["order"], df["best_so_far"] * scale, where="post", label="best so far", color="tab:red"
    )
    ax.set_xlabel("completed trials")
    ax.set_ylabel(ylabel)
    ax.set_title(plain(title) if title else "Optimisation history")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
