"""Time one training epoch against the floor no implementation can avoid, and the curves' cost.

    python bench/epoch.py [--json] [--repeats 7] [--data-dir DIR]

epoch_s: one epoch of core.training.train (10,000 images, batch 100, float32, m = 50,
         no evaluation).
floor_s: for every batch of a freshly shuffled epoch, gather the batch's rows and run only
         the two large matrix products (X_batch @ W1 and X_batch.T @ G).
ratio:   epoch_s / floor_s (medians of interleaved repeats, one process).
plain_epoch_s: the same epoch through bench/plain_optuna.py's plain numpy loop (what a user
         would write: fancy-indexed batches, weight decay as a gradient term).
vs_plain_loop: plain_epoch_s / epoch_s (above 1: the single run is the faster).
eval_overhead: extra time of recording the curves 10 times per cycle on the full training
         and validation sets, as a fraction of training alone (exercise split sizes,
         n_s = 500, one cycle).
blas:    the BLAS library and kernel (see bench/peers.py: OPENBLAS_CORETYPE).
With --data-dir the exercise split of a real copy is used; otherwise random normalised
data of the same shape (the timings do not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from plain_optuna import train_plain  # bench/ is this script's folder
from threadpoolctl import threadpool_info

from core.training import TrainConfig, train

N, D, M, B = 10_000, 3072, 50, 100


def blas() -> str:
    """The BLAS library numpy calls and its kernel, e.g. "openblas SkylakeX"."""
    info = next((i for i in threadpool_info() if i["user_api"] == "blas"), {})
    return f"{info.get('internal_api', '?')} {info.get('architecture', '?')}"


def data(data_dir: str | None):
    if data_dir:
        from core.data import load_split

        s = load_split("exercise", data_dir)
        return s.X_train, s.y_train, s.X_val, s.y_val
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    X_val = rng.standard_normal((N, D), dtype=np.float32)
    return X, rng.integers(0, 10, N), X_val, rng.integers(0, 10, N)


def floor(X: np.ndarray, rng: np.random.Generator, W1: np.ndarray, G: np.ndarray) -> float:
    t = time.perf_counter()
    order = rng.permutation(len(X))
    xb = np.empty((B, X.shape[1]), dtype=X.dtype)
    for j in range(len(X) // B):
        np.take(X, order[j * B : (j + 1) * B], axis=0, out=xb, mode="clip")
        xb @ W1
        xb.T @ G
    return time.perf_counter() - t


def timed_train(config: TrainConfig, X, y, X_val, y_val, record: bool) -> float:
    t = time.perf_counter()
    train(config, X, y, X_val, y_val, record=record)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--data-dir")
    args = ap.parse_args()

    X, y, X_val, y_val = data(args.data_dir)
    rng = np.random.default_rng(1)
    W1 = (rng.standard_normal((D, M)) / np.sqrt(D)).astype(np.float32)
    G = rng.standard_normal((B, M), dtype=np.float32)
    epoch = TrainConfig(n_s=N // B // 2, cycles=1)  # one cycle = 2 n_s steps = one epoch
    cycle = TrainConfig(n_s=500, cycles=1, evals_per_cycle=10)

    floors, epochs, loops, plain, recorded = [], [], [], [], []
    for _ in range(args.repeats):  # interleaved so that machine noise hits all alike
        floors.append(floor(X, rng, W1, G))
        epochs.append(timed_train(epoch, X, y, X_val, y_val, record=False))
        t = time.perf_counter()
        train_plain(X, y, 1e-3, n_s=epoch.n_s, cycles=1)
        loops.append(time.perf_counter() - t)
        plain.append(timed_train(cycle, X, y, X_val, y_val, record=False))
        recorded.append(timed_train(cycle, X, y, X_val, y_val, record=True))
    med = statistics.median
    result = {
        "epoch_s": med(epochs),
        "floor_s": med(floors),
        "ratio": med(epochs) / med(floors),
        "plain_epoch_s": med(loops),
        "vs_plain_loop": med(loops) / med(epochs),
        "eval_overhead": med(recorded) / med(plain) - 1.0,
        "repeats": args.repeats,
        "blas": blas(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"epoch {result['epoch_s'] * 1e3:.1f} ms, floor {result['floor_s'] * 1e3:.1f} ms, "
            f"ratio {result['ratio']:.3f} (target <= 1.15); plain loop "
            f"{result['plain_epoch_s'] * 1e3:.1f} ms ({result['vs_plain_loop']:.2f}x ours); "
            f"{result['blas']}"
        )
        print(f"recording curves 10x per cycle: +{result['eval_overhead']:.1%} (target <= 25%)")


if __name__ == "__main__":
    main()
