"""`sweep report`: tables, figures and a report.md that assembles them with the settings."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.schedules import Schedule
from sweep import figures
from sweep.inspection import load
from sweep.study import Stored
from sweep.tables import display_table, study_folder, study_table, write_tables


@dataclass
class Report:
    path: Path
    files: list[Path] = field(default_factory=list)


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return [*lines, ""]


def write_report(
    names: list[str],
    *,
    storage_url: str | None = None,
    out: str | Path = "reports",
    fmt: str = "png",
    gradcheck: dict[str, dict[str, float]] | None = None,
    runs: dict[str, dict[str, Any]] | None = None,
) -> Report:
    """Write every study's tables and figures into OUT and a report.md linking them.

    ``gradcheck`` and ``runs`` (name -> `sweep train --json` plus "curves") add the
    sections that `sweep reproduce` produces.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    studies = [load(name, storage_url) for name in names]  # fail before writing anything
    files: list[Path] = []
    md = [
        "# lambda-sweep report",
        "",
        f"Generated {datetime.datetime.now():%Y-%m-%d %H:%M}. Accuracies are percentages of "
        "correctly classified images.",
        "",
    ]

    if gradcheck:
        md += [
            "## Gradient check",
            "",
            "Analytic against centred-difference gradients (float64, reduced problem).",
            "",
        ]
        md += _md_table(
            [
                {
                    "parameter": k,
                    "max abs error": f"{v['max_abs']:.2e}",
                    "max rel error": f"{v['max_rel']:.2e}",
                }
                for k, v in gradcheck.items()
            ]
        )

    if runs:
        md += ["## Training runs", ""]
        md += _md_table(
            [
                {
                    "run": name,
                    "split": r["split"],
                    "lambda": f"{r['lambda']:.4g}",
                    "n_s": r["n_s"],
                    "cycles": r["cycles"],
                    "train": f"{r['train_accuracy']:.2%}",
                    "validation": f"{r['val_accuracy']:.2%}",
                    "test": f"{r['test_accuracy']:.2%}",
                    "seconds": f"{r['seconds']:.1f}",
                }
                for name, r in runs.items()
            ]
        )
        for name, r in runs.items():
            schedule = Schedule(r["schedule"], r["eta_min"], r["eta_max"], r["n_s"])
            sched = figures.plot_schedule(
                figures.schedule_data(schedule, r["cycles"]),
                out / "figures" / f"{name}_eta.{fmt}",
                title=f"{name}: cyclical learning rate",
            )
            curves = figures.plot_curves(
                r["curves"],
                out / "figures" / f"{name}_curves.{fmt}",
                title=f"{name}: λ = {r['lambda']:.4g}, {r['split']} split",
            )
            files += [sched, curves]
            md += [
                f"### {name}",
                "",
                f"![{name} learning rate]({_rel(sched, out)})",
                "",
                f"![{name} curves]({_rel(curves, out)})",
                "",
            ]

    if studies:
        ranges = {s.name: s.ranges["lambda"][:2] for s in studies if "lambda" in s.ranges}
        lam = figures.plot_lambda(
            figures.lambda_data([s.study for s in studies]),
            ranges,
            out / "figures" / f"lambda.{fmt}",
        )
        files.append(lam)
        md += ["## λ search", "", f"![lambda against validation accuracy]({_rel(lam, out)})", ""]
    for study in studies:
        md += _study_section(study, out, fmt, files)

    report = out / "report.md"
    report.write_text("\n".join(md) + "\n")
    return Report(path=report, files=[report, *files])


def _study_section(stored: Stored, out: Path, fmt: str, files: list[Path]) -> list[str]:
    study, name = stored.study, stored.name
    attrs = stored.attrs
    spec = attrs.get("spec", {})
    train = spec.get("train", {})
    c = stored.counts()
    tables = write_tables(study, study_folder(out, name))
    history = figures.plot_history(
        figures.history_data(study),
        out / "figures" / f"{name}_history.{fmt}",
        title=f"{name}: optimisation history",
    )
    files += [*tables, history]
    lam = stored.ranges.get("lambda")
    md = [f"## Study `{name}` ({attrs.get('stage', 'coarse')} stage)", ""]
    settings = {
        "split": spec.get("split"),
        "trials (target)": attrs.get("target"),
        "sampler": spec.get("study", {}).get("sampler"),
        "repeats": spec.get("study", {}).get("repeats"),
        "seed": spec.get("study", {}).get("seed"),
        "batch size": train.get("batch_size"),
        "η range": f"{train.get('eta_min')}..{train.get('eta_max')}",
        "n_s": train.get("n_s"),
        "cycles": train.get("cycles"),
        "hidden": train.get("hidden"),
    }
    if lam:
        settings["λ range"] = f"[{lam[0]:.3g}, {lam[1]:.3g}]"
    if attrs.get("parent"):
        settings["narrowed from"] = f"{attrs['parent']} ({attrs.get('range_note', '')})"
    settings["trials by state"] = ", ".join(f"{k} {v}" for k, v in c.items() if v)
    md += _md_table([{"setting": k, "value": v} for k, v in settings.items()])
    best = stored.best()
    if best is not None:
        md += [
            f"Best: trial {best.number}, λ = {best.params.get('lambda', float('nan')):.4g}, "
            f"validation accuracy {best.value:.2%}.",
            "",
        ]
        curves = best.user_attrs.get("result", {}).get("curves")
        if curves:
            path = figures.plot_curves(
                curves,
                out / "figures" / f"{name}_best_curves.{fmt}",
                title=f"{name}: best trial {best.number}",
            )
            files.append(path)
            md += [f"![{name} best trial curves]({_rel(path, out)})", ""]
    md += [
        display_table(study_table(study)).to_markdown(index=False),
        "",
        "Files: " + ", ".join(f"[{p.name}]({_rel(p, out)})" for p in tables),
        "",
        f"![{name} history]({_rel(history, out)})",
        "",
    ]
    return md
