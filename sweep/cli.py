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


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from core.gradcheck import check

    errors = check(seed=args.seed)
    if args.json:
        print(
            json.dumps({k: {"max_abs": v.max_abs, "max_rel": v.max_rel} for k, v in errors.items()})
        )
    else:
        print("parameter   max abs error   max rel error")
        for name, e in errors.items():
            print(f"{name:<9} {e.max_abs:>15.2e} {e.max_rel:>15.2e}")
    worst = max(e.max_rel for e in errors.values())
    if worst > 1e-6:
        print(
            f"error: gradient check failed: max relative error {worst:.2e} > 1e-6", file=sys.stderr
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
