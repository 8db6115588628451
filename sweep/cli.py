"""The `sweep` command: parse, call one library function, render its result."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from core.errors import ConfigError, DataError, DivergedError
from sweep.errors import SweepError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2, like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sweep",
        description="Coarse-to-fine lambda sweeps for a two-layer numpy network on CIFAR-10.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("train", help="one training run; prints train/val/test accuracy")
    p.add_argument("study_file", nargs="?", help="take [data] and [train] defaults from this file")
    p.add_argument(
        "--lambda",
        dest="lam",
        metavar="X|best:STUDY",
        help="L2 penalty, or best:STUDY for the best lambda of a stored study",
    )
    p.add_argument("--split", help="exercise | search | final (default: exercise)")
    p.add_argument("--n-s", type=_positive_int, help="half-cycle length in update steps")
    p.add_argument("--cycles", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--eta-min", type=_float)
    p.add_argument("--eta-max", type=_float)
    p.add_argument("--hidden", type=_positive_int)
    p.add_argument("--schedule", help="triangular | triangular2 | exp_range")
    p.add_argument("--seed", type=int)
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (downloaded if missing)")
    p.add_argument("--storage", help="study storage URL, for --lambda best:STUDY")
    p.add_argument("--save-model", metavar="NPZ", help="write weights, normalisation and curves")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_train)

    storage_help = "study storage URL (default $SWEEP_STORAGE or sqlite:///sweeps.db)"
    OVERSUBSCRIBE = "allow more than 4 worker processes per core"

    p = sub.add_parser("run", help="create or load a study and run trials until its target")
    p.add_argument("study_file", help="a study file, e.g. studies/coarse.toml")
    p.add_argument(
        "--jobs",
        type=_count,
        default=1,
        help="worker processes here (default 1); 0 = only create, queue and watch "
        "while `sweep worker` processes elsewhere run the trials",
    )
    p.add_argument("--trials", type=_positive_int, help="COMPLETE trials wanted (default: file)")
    p.add_argument(
        "--threads", type=_positive_int, help="BLAS threads per worker (default: cores // jobs)"
    )
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (downloaded if missing)")
    p.add_argument("--seed", type=int, help="override the file's study seed")
    p.add_argument("--out", default="reports", help="where tables go (default reports/)")
    p.add_argument("--oversubscribe", action="store_true", help=OVERSUBSCRIBE)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="recover dead trials and top a study up to its target")
    p.add_argument("study", help="study name")
    p.add_argument("--jobs", type=_positive_int, default=1)
    p.add_argument("--storage", help=storage_help)
    p.add_argument(
        "--data-dir", help="folder holding cifar-10-batches-py/ (default: where the study ran)"
    )
    p.add_argument("--out", default="reports", help="where tables go (default reports/)")
    p.add_argument("--oversubscribe", action="store_true", help=OVERSUBSCRIBE)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("worker", help="join a study from any machine and run its trials")
    p.add_argument("study", help="study name")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="BLAS threads per worker (default: cores // jobs; lower it when other "
        "workers share this machine)",
    )
    p.add_argument(
        "--data-dir", help="folder holding cifar-10-batches-py/ (default: where the study ran)"
    )
    p.add_argument("--oversubscribe", action="store_true", help=OVERSUBSCRIBE)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("status", help="every study: stage, target, counts, best, range")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("trials", help="one row per trial of a study")
    p.add_argument("study")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--sort", choices=("number", "value", "lambda"), default="number")
    p.set_defaults(func=cmd_trials)

    p = sub.add_parser("show", help="one trial: config, timings, curves")
    p.add_argument("study")
    p.add_argument("trial", type=int)
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="PNG", help="draw the trial's training curves")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("table", help="write a study's table as CSV, Markdown and LaTeX")
    p.add_argument("study")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--out", default="reports", help="tables go to OUT/STUDY/ (default reports/)")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("report", help="tables, figures and report.md for one or more studies")
    p.add_argument("studies", nargs="+", metavar="STUDY")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--out", default="reports", help="output folder (default reports/)")
    p.add_argument(
        "--format", choices=("png", "pdf", "svg"), default="png", help="figure format (default png)"
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("reproduce", help="the whole seed study end to end, resumable")
    p.add_argument("--out", default="report", help="output folder (default report/)")
    p.add_argument("--jobs", type=_positive_int, default=2, help="worker processes (default 2)")
    p.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (downloaded if missing)")
    p.add_argument("--storage", help="study storage URL (default sqlite:///OUT/sweeps.db)")
    p.add_argument("--studies", help="folder with coarse.toml and fine.toml (default studies/)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("dashboard", help="open optuna-dashboard on the study storage")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("gradcheck", help="analytic vs numerical gradients (exit 1 above 1e-6)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random reduced problem")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_gradcheck)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from sweep.train import resolve_config, run_training

    split, config = resolve_config(
        study_file=args.study_file,
        lam=args.lam,
        split=args.split,
        storage=args.storage,
        n_s=args.n_s,
        cycles=args.cycles,
        batch_size=args.batch_size,
        eta_min=args.eta_min,
        eta_max=args.eta_max,
        hidden=args.hidden,
        schedule=args.schedule,
        seed=args.seed,
    )
    summary, _ = run_training(
        config, split=split, data_dir=args.data_dir, save_model=args.save_model
    )
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print(summary.describe())
    return 0


def _print_progress(p) -> None:
    if sys.stderr.isatty():
        print("\r\033[K" + p.text(), end="", file=sys.stderr, flush=True)
    else:
        print(p.text(), file=sys.stderr, flush=True)


def _print_run(result, out: str, storage: str | None) -> None:
    from sweep.tables import write_study_tables

    if sys.stderr.isatty():
        print(file=sys.stderr)
    if not result.already_done:
        result.tables = write_study_tables(result.study, storage, out)
    print(result.text())


def cmd_run(args: argparse.Namespace) -> int:
    from sweep import studyfile
    from sweep.runner import run_study

    spec = studyfile.load(args.study_file, seed=args.seed)
    result = run_study(
        spec,
        storage_url=args.storage,
        jobs=args.jobs,
        data_dir=args.data_dir,
        trials=args.trials,
        threads=args.threads,
        on_progress=_print_progress,
        oversubscribe=args.oversubscribe,
    )
    _print_run(result, args.out, args.storage)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from sweep.resume import resume_study

    result = resume_study(
        args.study,
        storage_url=args.storage,
        jobs=args.jobs,
        data_dir=args.data_dir,
        on_progress=_print_progress,
        oversubscribe=args.oversubscribe,
    )
    _print_run(result, args.out, args.storage)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from sweep.runner import join_study

    ran = join_study(
        args.study,
        storage_url=args.storage,
        jobs=args.jobs,
        data_dir=args.data_dir,
        threads=args.threads,
        oversubscribe=args.oversubscribe,
    )
    print(f"worker done: ran {ran} trial(s) of {args.study!r}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sweep.inspection import status

    result = status(args.storage)
    print(result.json() if args.json else result.text())
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    from sweep.inspection import trials

    result = trials(args.study, args.storage, args.sort)
    text = {"json": result.json, "csv": result.csv, "table": result.text}[args.format]()
    print(text, end="" if args.format == "csv" else "\n")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from sweep.inspection import show

    info = show(args.study, args.trial, args.storage)
    if args.plot:
        from sweep.figures import plot_curves

        plot_curves(info.curves, args.plot, title=f"{args.study} trial {args.trial}")
    print(info.json() if args.json else info.text())
    if args.plot and not args.json:
        print(f"wrote {args.plot}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from sweep.tables import write_study_tables

    for path in write_study_tables(args.study, args.storage, args.out):
        print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sweep.report import write_report

    report = write_report(args.studies, storage_url=args.storage, out=args.out, fmt=args.format)
    print(f"wrote {report.path} ({len(report.files)} files)")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from sweep.reproduce import reproduce

    def say(text: str) -> None:
        if sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr)
        print(text, flush=True)

    summary = reproduce(
        out=args.out,
        jobs=args.jobs,
        data_dir=args.data_dir,
        storage_url=args.storage,
        studies_dir=args.studies,
        say=say,
        on_progress=_print_progress,
    )
    print(
        f"final model: test accuracy {summary['final']['test_accuracy']:.2%} "
        f"(lambda {summary['final']['lambda']:.4g}); report {summary['report']}; "
        f"{summary['seconds']:.0f} s"
    )
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import shutil
    import subprocess

    from sweep.storage import validate_url

    url = validate_url(args.storage, create=False)
    exe = shutil.which("optuna-dashboard")
    if exe is None:
        raise SweepError("optuna-dashboard is not installed: pip install 'lambda-sweep[dashboard]'")
    return subprocess.call([exe, url, "--port", str(args.port)])


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from core.gradcheck import TOLERANCE, check, passed

    errors = check(seed=args.seed)
    if args.json:
        print(
            json.dumps({k: {"max_abs": v.max_abs, "max_rel": v.max_rel} for k, v in errors.items()})
        )
    else:
        print("parameter   max abs error   max rel error")
        for name, e in errors.items():
            print(f"{name:<9} {e.max_abs:>15.2e} {e.max_rel:>15.2e}")
    if not passed(errors):
        worst = max(e.max_rel for e in errors.values())
        print(
            f"error: gradient check failed: max relative error {worst:.2e} > {TOLERANCE:g}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed in one line
        return int(exc.code or 0)
    try:
        from sweep.storage import quiet_optuna  # imports optuna: inside the Ctrl-C handler

        quiet_optuna()
        return args.func(args)
    except (SweepError, ConfigError, DataError, DivergedError) as exc:
        if args.debug:
            raise
        code = getattr(exc, "exit_code", 1 if isinstance(exc, DivergedError) else 2)
        print(f"error: {exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
