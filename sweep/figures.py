"""Figures: each has a function computing exactly the data shown, and one drawing it.

The format follows the file's suffix (.png by default; .pdf and .svg work too).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd

from core.schedules import Schedule, eta
from sweep.tables import study_table

DPI = 120


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


# --- cyclical learning rate ------------------------------------------------------------


def schedule_data(schedule: Schedule, cycles: int) -> pd.DataFrame:
    """eta at every update step of ``cycles`` cycles (inclusive of the final step)."""
    steps = np.arange(2 * schedule.n_s * cycles + 1)
    return pd.DataFrame({"step": steps, "eta": [eta(int(t), schedule) for t in steps]})


def plot_schedule(df: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(6, 3))
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


def plot_curves(curves: dict[str, list[float]], path: str | Path, title: str = "") -> Path:
    df = curve_data(curves)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (key, label) in zip(
        axes, (("cost", "cost"), ("loss", "loss"), ("accuracy", "accuracy")), strict=True
    ):
        if len(df):
            ax.plot(df["step"], df[f"train_{key}"], label="training", color="tab:green")
            ax.plot(df["step"], df[f"val_{key}"], label="validation", color="tab:red")
        ax.set_xlabel("update step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "Training curves")
    return _save(fig, path)


# --- lambda against validation accuracy ------------------------------------------------


def lambda_data(studies: list[optuna.Study]) -> pd.DataFrame:
    """COMPLETE trials of the studies: study, stage, lambda, value, sd, best (one per study
    and one overall)."""
    frames = []
    for study in studies:
        df = study_table(study)
        df = df[df["state"] == "COMPLETE"]
        frames.append(
            pd.DataFrame(
                {
                    "study": study.study_name,
                    "stage": study.user_attrs.get("stage", "coarse"),
                    "lambda": df["lambda"].astype(float),
                    "value": df["val_accuracy"].astype(float),
                    "sd": df["val_sd"].astype(float),
                    "best_in_study": df["best"].astype(bool),
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            columns=["study", "stage", "lambda", "value", "sd", "best_in_study", "best"]
        )
    out = pd.concat(frames, ignore_index=True)
    out["best"] = False
    if len(out):
        out.loc[out["value"].idxmax(), "best"] = True
    return out


def plot_lambda(df: pd.DataFrame, ranges: dict[str, tuple[float, float]], path: str | Path) -> Path:
    """``ranges``: study name -> searched lambda range; fine stages' ranges are shaded."""
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {"coarse": "tab:blue", "fine": "tab:orange"}
    stage_of = dict(zip(df["study"], df["stage"], strict=False))
    for name, (low, high) in ranges.items():
        if stage_of.get(name) == "fine":
            ax.axvspan(low, high, color="tab:orange", alpha=0.12, label=f"{name} range")
    for name, part in df.groupby("study", sort=False):
        stage = part["stage"].iloc[0]
        ax.errorbar(
            part["lambda"],
            part["value"] * 100,
            yerr=None if part["sd"].isna().all() else part["sd"].fillna(0) * 100,
            fmt="o",
            capsize=3,
            color=colours.get(stage, "tab:gray"),
            label=f"{name} ({stage})",
        )
    best = df[df["best"]]
    if len(best):
        b = best.iloc[0]
        ax.scatter(
            [b["lambda"]],
            [b["value"] * 100],
            marker="*",
            s=250,
            color="gold",
            edgecolor="black",
            zorder=5,
            label=f"best λ = {b['lambda']:.3g}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("λ (L2 penalty)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("λ against validation accuracy")
    return _save(fig, path)


# --- optimisation history --------------------------------------------------------------


def history_data(study: optuna.Study) -> pd.DataFrame:
    """COMPLETE trials in the order they finished, with the best value so far."""
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
            "best_so_far": np.maximum.accumulate(values) if values else [],
        }
    )


def plot_history(df: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(df["order"], df["value"] * 100, "o", label="trial", color="tab:blue")
    ax.step(
        df["order"], df["best_so_far"] * 100, where="post", label="best so far", color="tab:red"
    )
    ax.set_xlabel("completed trials")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title or "Optimisation history")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)
