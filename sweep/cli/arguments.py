"""The command-line grammar of `sweep`: every command, its arguments and their help.

Only argparse here; what each command does is in sweep/cli/main.py (and the library behind it).
"""

from __future__ import annotations

import argparse
import time

from sweep import __version__

# Where `run`, `resume`, `table` and `report` write unless --out says otherwise.
TABLES = "reports"

DATA_DIR = (
    "folder holding cifar-10-batches-py/, downloaded into it if missing (the folder must "
    "exist; default: the user cache folder)"
)


def _at_least(minimum: int, words: str):
    """An argparse type: a whole number >= minimum ("must be " + words otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be {words}")
        return value

    return parse


_positive_int = _at_least(1, "at least 1")


def _port(text: str) -> int:
    value = _at_least(1, "a port between 1 and 65535")(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} must be a port between 1 and 65535")
    return value


_count = _at_least(0, "0 or more")


def _seed(text: str) -> int:
    words = "a seed between 0 and 2**32 - 1"
    value = _at_least(0, words)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"{value} must be {words}")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _duration(text: str) -> float:
    from sweep.execution.budget import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _gpus(text: str) -> tuple[str, ...]:
    from sweep.execution.devices import parse_gpus

    try:
        return parse_gpus(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cluster_options(p: argparse.ArgumentParser) -> None:
    """--time-limit, --gpus and --workers-per-gpu (`run` and `worker`)."""
    p.add_argument(
        "--time-limit",
        type=_duration,
        metavar="DURATION",
        help="start no trial that would end after this (seconds, or 90s, 10m, 2h; also "
        "the job's end time, SLURM_JOB_END_TIME); running trials finish, exit 0",
    )
    p.add_argument(
        "--gpus",
        type=_gpus,
        default=(),
        metavar="LIST",
        help="devices for the local workers, e.g. 0,1, or auto (CUDA_VISIBLE_DEVICES): "
        "each worker process sees one through CUDA_VISIBLE_DEVICES (ctx.device)",
    )
    p.add_argument(
        "--workers-per-gpu",
        type=_positive_int,
        default=1,
        metavar="N",
        help="workers sharing one device (default 1); --jobs <= devices x N",
    )


def cluster_options(args: argparse.Namespace) -> dict:
    """The parsed --time-limit, --gpus and --workers-per-gpu, as run_study and join_study
    take them."""
    limit = args.time_limit
    if limit is not None:  # counted from the command's start, not after its imports
        limit = max(0.0, limit - (time.time() - args.started))
    return {"time_limit": limit, "gpus": args.gpus, "workers_per_gpu": args.workers_per_gpu}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2, like every other bad input.

    ``commands`` maps each command name to its parser (filled by build_parser).
    """

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def parse(
    parser: argparse.ArgumentParser, argv, started: float | None = None
) -> argparse.Namespace:
    """Parse ``argv``, noting when the command started (a --time-limit counts from then:
    ``started``, the console script's first step, else now)."""
    started = time.time() if started is None else started
    args, extra = parser.parse_known_args(argv, namespace=argparse.Namespace(started=started))
    if extra:  # said by the command's parser: "sweep run: ...", not "sweep: ..."
        command = getattr(parser, "commands", {}).get(getattr(args, "command", None), parser)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def build_parser() -> _Parser:
    parser = _Parser(
        prog="sweep",
        description="Coarse-to-fine lambda sweeps for a two-layer numpy network on CIFAR-10.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"sweep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    parser.commands = {}

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser.commands[name] = sub.add_parser(name, help=help)
        return parser.commands[name]

    p = command("train", "one training run; prints train/val/test accuracy")
    p.add_argument("study_file", nargs="?", help="take [data] and [train] defaults from this file")
    p.add_argument(
        "--lambda",
        dest="lam",
        metavar="X|best:STUDY",
        help="L2 penalty, or best:STUDY: the best trial of a stored study (its lambda and "
        "any other [train] value it searched; options given here win)",
    )
    p.add_argument("--split", help="exercise | search | final (default: exercise)")
    p.add_argument("--n-s", type=_positive_int, help="half-cycle length in update steps")
    p.add_argument("--cycles", type=_positive_int, help="cycles of the learning rate")
    p.add_argument("--batch-size", type=_positive_int, help="images per update step")
    p.add_argument("--eta-min", type=_float, help="lowest learning rate of a cycle")
    p.add_argument("--eta-max", type=_float, help="highest learning rate of a cycle")
    p.add_argument("--hidden", type=_positive_int, help="hidden units")
    p.add_argument("--schedule", help="triangular | triangular2 | exp_range")
    p.add_argument(
        "--curves",
        choices=("full", "cheap"),
        help="full: both sets evaluated at every recording (default); cheap: the training "
        "curve is the running mean of the batches, the final values stay exact",
    )
    p.add_argument("--seed", type=_seed, help="initialisation and data order")
    p.add_argument("--data-dir", help=DATA_DIR)
    p.add_argument("--storage", help="study storage URL, for --lambda best:STUDY")
    p.add_argument("--save-model", metavar="NPZ", help="write weights, normalisation and curves")
    p.add_argument("--json", action="store_true", help="print a JSON object")

    storage_help = "study storage URL (default $SWEEP_STORAGE or sqlite:///sweeps.db)"
    OVERSUBSCRIBE = "allow more than 4 worker processes per core"
    OBJECTIVE_DIR = "folder holding the study's objective file (default: beside the study file)"

    p = command("run", "create or load a study and run trials until its target")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("study_file", help="a study file (`sweep init` writes some to start from)")
    p.add_argument(
        "--jobs",
        type=_count,
        default=1,
        help="worker processes here (default 1); 0 = only create, queue and watch "
        "while `sweep worker` processes elsewhere run the trials",
    )
    p.add_argument(
        "--trials", type=_positive_int, help="finished trials wanted (default: the file's)"
    )
    p.add_argument(
        "--threads", type=_positive_int, help="BLAS threads per worker (default: cores // jobs)"
    )
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--data-dir", help=DATA_DIR)
    p.add_argument("--seed", type=_seed, help="override the file's study seed")
    p.add_argument("--out", default=TABLES, help="where tables go (default reports/)")
    p.add_argument("--oversubscribe", action="store_true", help=OVERSUBSCRIBE)
    p.add_argument("--objective-dir", metavar="DIR", help=OBJECTIVE_DIR)
    p.add_argument(
        "--partial-parent",
        action="store_true",
        help="let a fine stage narrow on a parent study that has not reached its target",
    )
    _cluster_options(p)

    p = command("resume", "recover dead trials and top a study up to its target")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("study", help="study name")
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes (default 1)")
    p.add_argument("--storage", help=storage_help)
    p.add_argument(
        "--data-dir", help="folder holding cifar-10-batches-py/ (default: where the study ran)"
    )
    p.add_argument("--out", default=TABLES, help="where tables go (default reports/)")
    p.add_argument("--oversubscribe", action="store_true", help=OVERSUBSCRIBE)
    p.add_argument("--objective-dir", metavar="DIR", help=OBJECTIVE_DIR)

    p = command("worker", "join a study from any machine and run its trials")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("study", help="study name")
    p.add_argument("--storage", help=storage_help)
    p.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        help="worker processes (default 1: trials run in this process, or in one of its "
        "own if the study has a trial_timeout; with more, each worker is a process of its "
        "own and a crashed one is replaced)",
    )
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
    p.add_argument("--objective-dir", metavar="DIR", help=OBJECTIVE_DIR)
    _cluster_options(p)

    p = command("status", "every study: stage, target, counts, best, range")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = command("trials", "one row per trial of a study")
    p.add_argument("study", help="study name")
    p.add_argument("--storage", help=storage_help)
    p.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="(default table)"
    )
    p.add_argument(
        "--sort",
        metavar="number|value|PARAM",
        default="number",
        help="row order: trial number (default), value (the best first) or a searched parameter "
        "(by its column: param.NAME for one named like a column of the table)",
    )

    p = command("show", "one trial: config, timings, curves")
    p.add_argument("study", help="study name")
    p.add_argument("trial", type=int, help="trial number")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--plot", metavar="PNG", help="draw the trial's training curves")

    p = command("table", "write a study's table as CSV, Markdown and LaTeX")
    p.add_argument("study", help="study name")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--out", default=TABLES, help="tables go to OUT/STUDY/ (default reports/)")

    p = command("report", "tables, figures and report.md for one or more studies")
    p.add_argument("studies", nargs="+", metavar="STUDY")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--out", default=TABLES, help="output folder (default reports/)")
    p.add_argument(
        "--format", choices=("png", "pdf", "svg"), default="png", help="figure format (default png)"
    )

    p = command("reproduce", "the whole seed study end to end, resumable")
    p.add_argument("--bonus", action="store_true", help="the bonus search and its final model")
    p.add_argument("--out", help="output folder (default report/, with --bonus report_bonus/)")
    p.add_argument("--jobs", type=_positive_int, default=2, help="worker processes (default 2)")
    p.add_argument("--data-dir", help=DATA_DIR)
    p.add_argument("--storage", help="study storage URL (default sqlite:///OUT/sweeps.db)")
    p.add_argument(
        "--studies",
        help="folder with coarse.toml and fine.toml, with --bonus bonus_coarse.toml and "
        "bonus_fine.toml (default: the seed's, shipped with the package)",
    )

    p = command("init", "copy the seed's study files and an example into a folder to edit")
    p.add_argument(
        "dir",
        nargs="?",
        default=".",
        help="where studies/ and examples/synthetic/ go (default: here); never overwrites",
    )

    p = command("dashboard", "open optuna-dashboard on the study storage")
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--port", type=_port, default=8080, help="port on 127.0.0.1 (default 8080)")

    p = command("gradcheck", "analytic vs numerical gradients (exit 1 above 1e-6)")
    p.add_argument("--seed", type=_seed, default=1, help="seed of the random reduced problem")
    p.add_argument(
        "--dropout",
        type=_float,
        default=0.0,
        metavar="P",
        help="check with one fixed inverted-dropout mask of rate P on the hidden layer",
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    return parser
