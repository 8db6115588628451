"""The `sweep` command: parse, call one library function, render its result."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import sweep
from sweep.cli import console
from sweep.cli.arguments import build_parser, cluster_options, parse
from sweep.cli.console import (
    Warnings,
    emit,
    end_progress,
    print_progress,
    print_run,
    silence_closed,
)
from sweep.errors import explain
from sweep.system import signals
from sweep.system.output import check_file, check_out, json_text


def cmd_train(args: argparse.Namespace) -> int:
    from sweep.execution.train import resolve_config, run_training

    split, config, data_dir = resolve_config(
        study_file=args.study_file,
        lam=args.lam,
        split=args.split,
        storage=args.storage,
        data_dir=args.data_dir,
        n_s=args.n_s,
        cycles=args.cycles,
        batch_size=args.batch_size,
        eta_min=args.eta_min,
        eta_max=args.eta_max,
        hidden=args.hidden,
        schedule=args.schedule,
        curves=args.curves,
        seed=args.seed,
    )
    check_file(args.save_model, "--save-model")
    summary, _ = run_training(config, split=split, data_dir=data_dir, save_model=args.save_model)
    print(json_text(summary.to_json(), indent=2) if args.json else summary.describe())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    check_out(args.out)
    with console.tables_in(args.out):
        result = sweep.run(
            args.study_file,
            storage=args.storage,
            jobs=args.jobs,
            data_dir=args.data_dir,
            trials=args.trials,
            seed=args.seed,
            threads=args.threads,
            progress=print_progress,
            oversubscribe=args.oversubscribe,
            objective_dir=args.objective_dir,
            partial_parent=args.partial_parent,
            **cluster_options(args),
        )
    print_run(result, args.out, args.storage, args.json)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    check_out(args.out)
    with console.tables_in(args.out):
        result = sweep.resume(
            args.study,
            storage=args.storage,
            jobs=args.jobs,
            data_dir=args.data_dir,
            progress=print_progress,
            oversubscribe=args.oversubscribe,
            objective_dir=args.objective_dir,
        )
    print_run(result, args.out, args.storage, args.json)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    with console.trials_print_to_stderr():  # with --jobs 1 the trials run in this process
        ran, why = sweep.worker(
            args.study,
            storage=args.storage,
            jobs=args.jobs,
            data_dir=args.data_dir,
            threads=args.threads,
            oversubscribe=args.oversubscribe,
            objective_dir=args.objective_dir,
            **cluster_options(args),
        )
    if args.json:
        print(json.dumps({"study": args.study, "ran": ran, "stopped": why}))
        return 0
    if why:  # (the time left, or a grid with no point left to run)
        print(f"worker stops: {why}", flush=True)
    print(f"worker done: ran {ran} trial(s) of {args.study!r}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    result = sweep.status(args.storage)
    print(result.json() if args.json else result.text())
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    from sweep.results.inspection import trials

    result = trials(args.study, args.storage, args.sort)
    text = {"json": result.json, "csv": result.csv, "table": result.text}[args.format]()
    print(text, end="" if args.format == "csv" else "\n")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from sweep.results.inspection import show

    check_file(args.plot, "--plot")
    info = show(args.study, args.trial, args.storage)
    if args.plot:
        from sweep.results.figures import plot_trial

        plot_trial(info, args.plot)
    print(info.json() if args.json else info.text())
    if args.plot and not args.json:
        print(f"wrote {args.plot}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    check_out(args.out)
    from sweep.results.tables import write_study_tables

    for path in write_study_tables(args.study, args.storage, args.out):
        print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    check_out(args.out)
    from sweep.results.report import write_report

    report = write_report(args.studies, storage_url=args.storage, out=args.out, fmt=args.format)
    print(f"wrote {report.path} ({len(report.files)} files)")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    args.out = args.out or ("report_bonus" if args.bonus else "report")
    check_out(args.out)
    from sweep.execution.bonus import reproduce_bonus
    from sweep.execution.reproduce import reproduce

    def say(text: str) -> None:
        end_progress()
        emit(text)

    summary = (reproduce_bonus if args.bonus else reproduce)(
        out=args.out,
        jobs=args.jobs,
        data_dir=args.data_dir,
        storage_url=args.storage,
        studies_dir=args.studies,
        say=say,
        on_progress=print_progress,
    )
    print(
        f"final model: test accuracy {summary['final']['test_accuracy']:.2%} "
        f"(lambda {summary['final']['lambda']:.4g}); report {summary['report']}; "
        f"{summary['seconds']:.0f} s"
    )
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from sweep.spec.starter import init

    print(init(args.dir).text())
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from sweep.cli.dashboard import launch

    launch(args.storage, args.port)  # becomes optuna-dashboard: returns only on an error
    return 0


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from core.gradcheck import TOLERANCE, check, passed

    errors = check(seed=args.seed, dropout=args.dropout)
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


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train,
    "run": cmd_run,
    "resume": cmd_resume,
    "worker": cmd_worker,
    "status": cmd_status,
    "trials": cmd_trials,
    "show": cmd_show,
    "table": cmd_table,
    "report": cmd_report,
    "reproduce": cmd_reproduce,
    "init": cmd_init,
    "dashboard": cmd_dashboard,
    "gradcheck": cmd_gradcheck,
}


def main(argv: Sequence[str] | None = None, started: float | None = None) -> int:
    try:
        args = parse(build_parser(), argv, started)
    except SystemExit as exc:  # --help, or a usage error already printed in one line
        return int(exc.code or 0)
    except KeyboardInterrupt:  # before the command began: nothing to clean up
        print(f"error: {signals.reason()}", file=sys.stderr)
        return signals.exit_code()
    try:
        from sweep.store.storage import quiet_optuna  # imports optuna: inside the Ctrl-C handler

        quiet_optuna()
        with Warnings.shown():
            return COMMANDS[args.command](args)
    except BrokenPipeError:
        if silence_closed():  # `sweep trials X | head -1`: the work is done; say no more
            return 0
        raise  # not the output's pipe: the work failed (console.silence_closed)
    except BaseException as exc:
        explained = explain(exc)
        if explained is None:
            raise
        if args.debug:  # the traceback too; the exit code stays the error's
            traceback.print_exc()
        message, code = explained
        print(f"error: {message}", file=sys.stderr)
        return code


def entry(started: float | None = None) -> None:
    """main() with Ctrl-C and SIGTERM handled (sweep/system/signals.py), then exit with them
    ignored: an interrupt in the interpreter's shutdown (loky's exit handlers) would only
    print a traceback; one that a garbage collection swallows prints nothing."""
    from sweep.system.portable import tolerant_output

    signals.install()
    sys.unraisablehook = _unraisable
    tolerant_output()
    code = main(started=started)
    signals.ignore_all()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_closed()
    if code == 0 and "sweep.execution.processes" in sys.modules:
        # Idle by now: ended at once rather than one by one at exit (~0.5 s). Not after a
        # failure, when a worker may still be finishing a trial that the exit waits for.
        sys.modules["sweep.execution.processes"].stop()
    # The interpreter's last collections walk every object of NumPy, Optuna, SQLAlchemy and
    # pandas (~0.7 s of wall: README, "What to expect"); the process's end releases them.
    gc.freeze()
    sys.exit(code)


def _unraisable(info: Any) -> None:
    if not issubclass(info.exc_type, KeyboardInterrupt):
        sys.__unraisablehook__(info)


if __name__ == "__main__":
    entry()
