"""`sweep report`: tables, figures and a report.md that assembles them with the settings."""

from __future__ import annotations

import datetime
import hashlib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.schedules import Schedule
from sweep.errors import SweepError
from sweep.results import figures
from sweep.results.display import label, number, param_column
from sweep.results.inspection import load
from sweep.results.tables import display_table, markdown, study_folder, study_table, write_tables
from sweep.spec.studyfile import StudyFile
from sweep.store import records
from sweep.store.records import TrialResult
from sweep.store.study import Stored
from sweep.store.uncertainty import LEVEL, compare, outcomes, tied_span
from sweep.system.output import check_places, file_stem, markdown_cell, out_folder, save_text

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Report:
    path: Path
    files: list[Path] = field(default_factory=list)


def _rel(path: Path, out: Path) -> str:
    """The Markdown link to a file under ``out`` (encoded: a space or "#" would break it)."""
    return urllib.parse.quote(path.relative_to(out).as_posix())


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    keys = list(rows[0])
    lines = ["| " + " | ".join(markdown_cell(k) for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(markdown_cell(r[k]) for k in keys) + " |" for r in rows]
    return [*lines, ""]


FIGURE_FORMATS = ("png", "pdf", "svg")


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
    names = list(dict.fromkeys(names))  # a study named twice has one section
    return ReportParts(names, storage_url=storage_url, out=out, fmt=fmt).write(gradcheck, runs)


@dataclass
class Drawn:
    """Sections of a report already drawn: each one's Markdown lines and the files it wrote."""

    studies: tuple[list[str], list[Path]] | None = None
    runs: dict[str, tuple[list[str], list[Path]]] = field(default_factory=dict)


class ReportParts:
    """The report's sections, each drawn once, as soon as what it shows is final.

    `sweep reproduce` draws the studies' sections and each finished training run's while
    the last run still trains on the other core (sweep/execution/reproduce.py), so that
    only the last run's two figures are left for the end; `write` draws whatever is
    missing and assembles report.md in its fixed order.
    """

    def __init__(
        self, names: list[str], *, storage_url: str | None = None, out: str | Path, fmt: str = "png"
    ):
        if fmt not in FIGURE_FORMATS:
            raise SweepError(f"figure format {fmt!r} is not one of: {', '.join(FIGURE_FORMATS)}")
        self.studies = [load(name, storage_url) for name in names]  # fail before writing
        self.out = out_folder(Path(out))
        folders = [self.out / "figures", *(study_folder(self.out, name) for name in names)]
        check_places([self.out / "report.md"], folders)
        self.fmt = fmt
        # Each section's Markdown lines and the files it wrote.
        self._runs: dict[str, tuple[list[str], list[Path]]] = {}
        self._studies: tuple[list[str], list[Path]] | None = None

    def run(self, name: str, r: dict[str, Any]) -> tuple[list[str], list[Path]]:
        """Training run ``name``'s subsection: its learning-rate schedule and curves."""
        if name not in self._runs:
            out, fmt = self.out, self.fmt
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
            md = [
                f"### {name}",
                "",
                f"![{name} learning rate]({_rel(sched, out)})",
                "",
                f"![{name} curves]({_rel(curves, out)})",
                "",
            ]
            self._runs[name] = (md, [sched, curves])
        return self._runs[name]

    def drawn(self) -> Drawn:
        """The sections drawn so far (to hand to the ReportParts of another process)."""
        return Drawn(studies=self._studies, runs=dict(self._runs))

    def adopt(self, drawn: Drawn) -> None:
        """Take sections another process drew (`drawn`) instead of drawing them again."""
        if drawn.studies is not None:
            self._studies = drawn.studies
        self._runs.update(drawn.runs)

    def study_sections(self) -> tuple[list[str], list[Path]]:
        """The parameter figures, then each study's tables, figures and ties."""
        if self._studies is None:
            files: list[Path] = []
            md = _parameter_figures(self.studies, self.out, self.fmt, files)
            by_name = {s.name: s for s in self.studies}
            for study in self.studies:
                md += _study_section(study, self.out, self.fmt, files)
                md += _uncertainty(study, by_name.get(study.spec.parent or ""))
            self._studies = (md, files)
        return self._studies

    def write(
        self,
        gradcheck: dict[str, dict[str, float]] | None = None,
        runs: dict[str, dict[str, Any]] | None = None,
    ) -> Report:
        """Draw the sections not drawn yet and write report.md."""
        md = [
            "# lambda-sweep report",
            "",
            f"Generated {datetime.datetime.now():%Y-%m-%d %H:%M}. Accuracies are percentages "
            "of correctly classified images.",
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
        files: list[Path] = []
        if runs:
            md += ["## Training runs", ""]
            md += _md_table([_run_row(name, r) for name, r in runs.items()])
            for name, r in runs.items():
                lines, written = self.run(name, r)
                md += lines
                files += written
        lines, written = self.study_sections()
        report = self.out / "report.md"
        save_text(report, "\n".join(md + lines) + "\n")
        return Report(path=report, files=[report, *files, *written])


def _run_row(name: str, r: dict[str, Any]) -> dict[str, Any]:
    return {
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


# The other figures of a report are named "<study>_history", "<study>_best_curves",
# "<run>_eta" and "<run>_curves": a parameter's figure named like them (a parameter
# "coarse_history") overwrote one, and the report showed it twice.
OTHER_FIGURES = ("_history", "_best_curves", "_eta", "_curves")


def _figure_stem(name: str, key: tuple, used: set[str]) -> str:
    """A parameter figure's file name: ``name``'s, unless another figure has it or may have
    it; then a digest of what the figure shows (``key``) keeps it apart."""
    stem = file_stem(name)
    if stem.endswith(OTHER_FIGURES) or stem in used:
        stem += "-" + hashlib.blake2b(repr(key).encode("utf-8"), digest_size=4).hexdigest()
    used.add(stem)
    return stem


def _parameter_figures(studies: list[Stored], out: Path, fmt: str, files: list[Path]) -> list[str]:
    """One figure per searched parameter: the metric against it, stages overlaid. Numbers
    (ranges, and choices of numbers) share a number axis; choices of words or true/false
    get their choices along the axis, one figure per set of choices (figures.axes_of)."""
    md: list[str] = []
    by_metric: dict[str, list[Stored]] = {}  # studies of other metrics get figures of their own
    for s in studies:
        by_metric.setdefault(s.spec.metric, []).append(s)
    complete = {s.name: s.counts()["COMPLETE"] for s in studies}  # one query each
    params = sorted({p for s in studies for p in s.spec.search})
    used: set[str] = set()
    for param in params:
        for metric, group in by_metric.items():
            searching = [s for s in group if param in s.spec.search]
            axes = figures.axes_of([s.spec.search[param].choices for s in searching])
            for choices, members in axes:
                drawn = [searching[j] for j in members if complete[searching[j].name]]
                if not drawn:
                    continue  # no point to draw: no empty figure either
                data, ranges, log = param_axis(drawn, param, choices)
                name = param if len(by_metric) == 1 else f"{param}_{metric}"
                if choices is not None and len(axes) > 1:  # beside numbers or other choices:
                    name += f" ({', '.join(sorted(map(str, choices)))})"  # named by its own
                path = figures.plot_param(
                    data,
                    ranges,
                    out / "figures" / f"{_figure_stem(name, (param, metric, choices), used)}.{fmt}",
                    param=param,
                    metric=metric,
                    log=log,
                    choices=choices,
                )
                files.append(path)
                title = "λ search" if param == "lambda" else f"{param} search"
                if len(by_metric) > 1:
                    title += f": {label(metric)}"
                if len(axes) > 1:
                    title += f" ({', '.join(s.name for s in drawn)})"
                md += [f"## {title}", "", f"![{param} against {label(metric)}]({_rel(path, out)})"]
                md.append("")
    return md


def param_axis(
    drawn: list[Stored], param: str, choices: list[Any] | None
) -> tuple[pd.DataFrame, dict[str, tuple[float, float]], bool]:
    """What a figure of ``param`` draws for studies on one axis (figures.axes_of): their
    trials, the ranges they searched, and whether the axis is log."""
    data = figures.param_data([s.study for s in drawn], param)
    ranges = {s.name: s.ranges[param][:2] for s in drawn if param in s.ranges}
    logs = [s.ranges[param][2] for s in drawn if param in s.ranges]
    return data, ranges, choices is None and figures.log_axis(logs, data[param_column(param)])


def _settings(stored: Stored, spec: StudyFile) -> dict[str, object]:
    attrs = stored.attrs
    settings: dict[str, object] = {
        "objective": "two-layer network (built-in)"
        if spec.objective.builtin
        else spec.objective.source,
        "metric": f"{spec.metric} ({spec.objective.direction})",
        "trials (target)": attrs.get(records.TARGET),
        "sampler": spec.study.sampler,
        "pruner": spec.study.pruner,
        "repeats": spec.study.repeats,
        "seed": spec.study.seed,
        # Fixed settings only: a searched one has its range below (and its per-trial values).
        **{k: v for k, v in spec.fixed.items() if k not in ("lam", "seed", *spec.search)},
    }
    for name, (low, high, _) in stored.ranges.items():
        settings[f"{name} range"] = f"[{low:.3g}, {high:.3g}]"
    if attrs.get(records.PARENT):
        settings["narrowed from"] = f"{attrs['parent']} ({attrs.get('range_note', '')})"
        partial = attrs.get("partial_parent")
        if partial:  # --partial-parent: say so wherever the range is shown
            settings["narrowed from"] += (
                f"; a partial parent: {partial['finished']} of its {partial['target']} trials"
            )
    settings["trials by state"] = ", ".join(f"{k} {v}" for k, v in stored.counts().items() if v)
    return settings


def _uncertainty(stored: Stored, parent: Stored | None) -> list[str]:
    """One sentence on the trials tied with the best; for a fine stage, one on whether its
    best can be told apart from its coarse stage's best (the same validation images)."""
    spec = stored.spec
    param = "lambda" if "lambda" in spec.search else min(spec.search)
    symbol = "λ" if param == "lambda" else param
    tied = tied_span(stored.study, spec.metric, param)
    done = stored.counts()["COMPLETE"]
    if not done:
        return []
    if tied.count is None:
        md = [
            "Ties with the best are unknown: the function kept no per-image outcomes and "
            f"returned no `{spec.metric}_se`."
        ]
    elif tied.low is None:
        md = [f"{tied.count} of {done} trials cannot be told apart from the best."]
    # The two bests are compared only where they measure the same thing (a fine stage may
    # optimise another metric than the parent it narrowed from).
    same = parent is not None and (parent.spec.metric, parent.spec.objective.direction) == (
        spec.metric,
        spec.objective.direction,
    )
    best, parent_best = stored.best(), parent.best() if same else None
    if tied.count is not None and tied.low is not None:
        how = (
            "McNemar's exact test on the per-image outcomes"
            if best is not None and outcomes(best) is not None
            else f"their `{spec.metric}_se`: |difference| < 1.96·√(se_best² + se²)"
        )
        md = [
            f"{tied.count} of {done} trials cannot be told apart from the best: {symbol} in "
            f"[{tied.low:.3g}, {tied.high:.3g}] cannot be told apart on this validation set "
            f"({how}, 5% level)."
        ]
    if best is not None and parent_best is not None:
        verdict = compare(parent_best, best, spec.metric, same_study=False)
        if verdict.p_value is not None:
            md.append(
                f"The fine stage's best ({number(spec.metric, best.value)}) "
                + ("can" if verdict.p_value < LEVEL else "cannot")
                + f" be told apart from the coarse stage's best "
                f"({number(spec.metric, parent_best.value)}): McNemar p = {verdict.p_value:.2g}."
            )
    return [" ".join(md), ""]


def _study_section(stored: Stored, out: Path, fmt: str, files: list[Path]) -> list[str]:
    study, name, spec = stored.study, stored.name, stored.spec
    tables = write_tables(study, study_folder(out, name))
    files += tables
    history = None
    if stored.counts()["COMPLETE"]:  # else an empty figure: the text says why instead
        history = figures.plot_history(
            figures.history_data(study),
            out / "figures" / f"{name}_history.{fmt}",
            title=f"{name}: optimisation history",
            metric=spec.metric,
        )
        files.append(history)
    md = [f"## Study `{name}` ({spec.stage} stage)", ""]
    md += _md_table([{"setting": k, "value": v} for k, v in _settings(stored, spec).items()])
    best = stored.best()
    if best is not None:
        shown = ", ".join(
            f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
            for k, v in best.params.items()
        )
        value = number(spec.metric, best.value)
        md += [f"Best: trial {best.number}, {shown}, {label(spec.metric)} {value}.", ""]
        curves = TrialResult.of(best).curves
        if curves:
            path = figures.plot_curves(
                curves,
                out / "figures" / f"{name}_best_curves.{fmt}",
                title=f"{name}: best trial {best.number}",
            )
            files.append(path)
            md += [f"![{name} best trial curves]({_rel(path, out)})", ""]
    md += [
        markdown(display_table(study_table(study), spec.metric, sorted(spec.search))),
        "",
        "Files: " + ", ".join(f"[{p.name}]({_rel(p, out)})" for p in tables),
        "",
        f"![{name} history]({_rel(history, out)})" if history else "No complete trial yet.",
        "",
    ]
    return md
