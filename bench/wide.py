"""Wide and mixed-width packs, and what dropout and augmentation cost per step.

    python bench/wide.py [--json] [--data-dir DIR] [--members 4] [--seconds 0.6]

Everything runs with one BLAS thread (threadpoolctl), as a sweep worker on one core does.
A step is what core.training.train_pack does per update: gather the batch (augmented or
not), draw the dropout mask (if any) and core.pack.step; batch 100, float32.

sgemm_gflops:  the measured one-thread sgemm rate (1024 x 1024 x 1024, best of 5): the
               reference for the efficiencies below.
packs:         for packs of ``--members`` members of width 50, 200, 500, 1000 and 2000,
               and one mixed pack of those five widths: ms per step, member-steps per
               second, GFLOP/s of the step's matrix products (4 B d m + 6 B m C flops per
               member and step; elementwise work is not counted) and efficiency =
               GFLOP/s / sgemm_gflops.
width_500:     one network of width 500: ms per plain step, and the extra time of
               augmentation (flip, translate 4), dropout (0.5) and both, as a fraction of
               the plain step (goal: both <= 0.15).
Each figure is a median over single steps (at least ``--seconds`` of them per figure); the
width-500 variants run in turn within every round, and each fraction is the median of the
rounds' ratios, so that the machine's other work hits them alike. With --data-dir the
exercise split of a real copy is used; otherwise random normalised data of the same shape
(the timings do not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from core import pack
from core.augment import Augmenter
from core.network import dropout_mask, init_params
from core.training import CLASSES

N, D, B = 5_000, 3072, 100
WIDTHS = (50, 200, 500, 1000, 2000)
GOAL = 0.15  # augmentation + dropout as a fraction of a width-500 step
ETA = 1e-3  # small enough that thousands of steps stay finite on random data


def data(data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    if data_dir:
        from core.data import load_split

        s = load_split("exercise", data_dir)
        return s.X_train, s.y_train
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, D), dtype=np.float32), rng.integers(0, CLASSES, N)


def sgemm_gflops(size: int = 1024, repeats: int = 5) -> float:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def flops_per_step(widths: list[int]) -> float:
    """Of the products: X @ W1 and X.T @ dH (2 B d m each), H @ W2, H.T @ G, G @ W2.T."""
    return sum(4 * B * D * m + 6 * B * m * CLASSES for m in widths)


class Stepper:
    """One pack trained step by step as train_pack does, with optional augmentation and
    dropout; ``step()`` returns its wall time."""

    def __init__(
        self, widths: list[int], X: np.ndarray, y: np.ndarray, *, augment=False, dropout=0.0
    ):
        self.net = pack.Pack.stack(
            [init_params(D, m, CLASSES, np.random.default_rng(2)) for m in widths]
        )
        self.X, self.X_flat, self.y = X, X.reshape(-1), y
        self.rng = np.random.default_rng(3)
        self.augment = Augmenter(True, 4, np.random.default_rng(4)) if augment else None
        self.dropout = dropout
        self.lams = np.full(len(widths), 1e-3)
        self.etas = np.full(len(widths), ETA)
        self.xb = np.empty((B, D), dtype=np.float32)

    def step(self) -> float:
        t = time.perf_counter()
        idx = self.rng.integers(0, len(self.X), B)
        if self.augment is None:
            np.take(self.X, idx, axis=0, out=self.xb, mode="clip")
        else:
            self.augment.batch(self.X_flat, idx, out=self.xb)
        mask = None
        if self.dropout:
            mask = dropout_mask(self.rng, (B, self.net.W1.shape[1]), self.dropout, np.float32)
        pack.step(self.net, self.xb, self.y[idx], self.lams, self.etas, mask)
        return time.perf_counter() - t


def rounds(steppers: list[Stepper], seconds: float, least: int = 10) -> list[list[float]]:
    """Per-step times of every stepper, taken in turn, until ``seconds`` have passed (at
    least ``least`` rounds); the first round (cold caches) is dropped."""
    times: list[list[float]] = [[] for _ in steppers]
    started = time.perf_counter()
    n = 0
    while n <= least or time.perf_counter() - started < seconds:
        for s, out in zip(steppers, times, strict=True):
            out.append(s.step())
        n += 1
    return [t[1:] for t in times]


def packs(X, y, members: int, seconds: float, rate: float) -> list[dict]:
    rows = []
    for widths in [[m] * members for m in WIDTHS] + [list(WIDTHS)]:
        (times,) = rounds([Stepper(widths, X, y)], seconds)
        s = statistics.median(times)
        gflops = flops_per_step(widths) / s / 1e9
        rows.append(
            {
                "widths": widths,
                "mixed": len(set(widths)) > 1,
                "steps": len(times),
                "step_ms": s * 1e3,
                "member_steps_per_s": len(widths) / s,
                "gflops": gflops,
                "efficiency": gflops / rate,
            }
        )
    return rows


def width_500(X, y, seconds: float) -> dict:
    variants = {
        "plain": Stepper([500], X, y),
        "augment": Stepper([500], X, y, augment=True),
        "dropout": Stepper([500], X, y, dropout=0.5),
        "both": Stepper([500], X, y, augment=True, dropout=0.5),
    }
    times = dict(zip(variants, rounds(list(variants.values()), seconds), strict=True))
    plain = np.array(times["plain"])
    result: dict = {"steps": len(plain), "plain_step_ms": statistics.median(plain) * 1e3}
    for name in ("augment", "dropout", "both"):
        result[f"{name}_fraction"] = float(np.median(np.array(times[name]) / plain) - 1)
    result["goal"] = GOAL
    result["met"] = result["both_fraction"] <= GOAL
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--data-dir")
    ap.add_argument("--members", type=int, default=4, help="members of each equal-width pack")
    ap.add_argument("--seconds", type=float, default=0.6, help="time per figure (at least)")
    args = ap.parse_args()

    started = time.perf_counter()
    X, y = data(args.data_dir)
    X = np.ascontiguousarray(X, dtype=np.float32)
    with threadpool_limits(limits=1):
        rate = sgemm_gflops()
        result = {
            "threads": 1,
            "batch_size": B,
            "data": args.data_dir or "synthetic",
            "sgemm_gflops": rate,
            "packs": packs(X, y, args.members, args.seconds, rate),
            "width_500": width_500(X, y, 4 * args.seconds),
        }
    result["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(result))
        return
    print(f"one-thread sgemm: {rate:.1f} GFLOP/s")
    print("widths                      ms/step  member-steps/s  GFLOP/s  efficiency")
    for r in result["packs"]:
        w = r["widths"]
        name = "mixed " + "+".join(map(str, w)) if r["mixed"] else f"{len(w)} x {w[0]}"
        print(
            f"{name:<27} {r['step_ms']:>7.1f} {r['member_steps_per_s']:>15.1f} "
            f"{r['gflops']:>8.1f} {r['efficiency']:>10.0%}"
        )
    w = result["width_500"]
    print(
        f"width 500: step {w['plain_step_ms']:.2f} ms; augmentation +{w['augment_fraction']:.1%},"
        f" dropout +{w['dropout_fraction']:.1%}, both +{w['both_fraction']:.1%} "
        f"(goal <= {GOAL:.0%}: {'met' if w['met'] else 'NOT met'})"
    )
    print(f"{result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
