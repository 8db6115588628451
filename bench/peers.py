"""The seed's coarse stage through lambda-sweep against what a user would write instead,
and against the physical limit of its matrix products.

    python bench/peers.py --data-dir DIR [--rounds 2] [--json]

ours:   `sweep run studies/coarse.toml --jobs 2` on a fresh SQLite file (the whole command:
        start-up, data, storage, packed trials, curves and exact final values, tables).
plain:  bench/plain_optuna.py, the same lambdas and steps with study.optimize(n_jobs=2)
        threads, one BLAS thread each, final validation accuracy only.
limit:  the stage's GEMM FLOPs (training steps, and the recordings the study makes) at the
        measured one-thread sgemm rate (a 1024-square product) times 2 workers (the rate
        is sampled before each round and after the last, and the median taken: on a
        shared machine one sample can be far off). limit_thin_s and of_limit_thin use the
        thin training product's rate instead (100 x 3072 x 50, slower: what earlier
        versions of this bench reported as the limit).
vs_plain = plain / ours and of_limit = limit / ours (medians; runs interleaved in one
process run, so that machine noise hits both alike).
blas:   the BLAS library and the kernel it runs (threadpoolctl). On this project's machines
        OPENBLAS_CORETYPE=Haswell is set for old OpenBLAS builds; on their AVX-512 CPUs it
        makes a current numpy ~1.7x slower at sgemm than the kernel it picks by itself
        (SkylakeX), which is what a user of such a CPU runs. Measure that with
        `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/peers.py ...`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/sweep.py is named like the package: keep bench/ off the import path.
sys.path[:] = [p for p in sys.path if Path(p).resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
N_TRAIN, N_VAL, D, M, K, B = 45_000, 5_000, 3072, 50, 10, 100
STEPS = 2 * 900 * 2  # n_s 900, 2 cycles
RECORDINGS = 10 * 2  # evals_per_cycle 10, 2 cycles
TRIALS, WORKERS = 10, 2


def sgemm_rate(m: int, k: int, n: int, flop: float = 3e9) -> float:
    """One-thread GFLOP/s of an (m x k) @ (k x n) float32 product, ~``flop`` FLOPs timed."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((k, n), dtype=np.float32)
    reps = max(3, round(flop / (2 * m * k * n)))
    with threadpool_limits(limits=1):
        for _ in range(max(1, reps // 10)):
            a @ w
        t = time.perf_counter()
        for _ in range(reps):
            a @ w
        seconds = time.perf_counter() - t
    return 2 * m * k * n * reps / seconds / 1e9


def rates() -> tuple[float, float]:
    """The one-thread sgemm rate (a 1024-square product: the CPU's sgemm speed, which the
    issue's limit is defined by) and the thin training product's (100 x 3072 x 50)."""
    return sgemm_rate(1024, 1024, 1024), sgemm_rate(B, D, M)


def blas() -> str:
    """The BLAS library numpy calls and its kernel, e.g. "openblas SkylakeX"."""
    info = next((i for i in threadpool_info() if i["user_api"] == "blas"), {})
    return f"{info.get('internal_api', '?')} {info.get('architecture', '?')}"


def stage_flops() -> float:
    """GEMM FLOPs of the coarse stage: per step the two 3072-wide products (X @ W1 and
    X.T @ G) and the three small ones; per recording a forward pass of the validation set
    (the study's cheap curves); at the end a forward pass of the training set (exact final
    values)."""
    step = 2 * (2 * B * D * M) + 3 * (2 * B * M * K)
    forward = 2 * D * M + 2 * M * K  # per image
    trial = STEPS * step + RECORDINGS * N_VAL * forward + N_TRAIN * forward
    return TRIALS * trial


def planned_lambdas() -> list[float]:
    from sweep.spec import plan, studyfile
    from sweep.spec.space import SearchRange

    spec = studyfile.load(ROOT / "studies" / "coarse.toml")
    space = {n: SearchRange.fixed(r) for n, r in spec.search.items()}
    return [
        plan.values_at(spec.study.sampler, spec.study.seed, i, space)["lambda"]
        for i in range(spec.study.trials)
    ]


def run_ours(data_dir: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "sweep.cli", "run", str(ROOT / "studies" / "coarse.toml")]
        cmd += ["--jobs", "2", "--storage", f"sqlite:///{tmp}/b.db", "--data-dir", data_dir]
        cmd += ["--out", f"{tmp}/out"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t


def run_plain(data_dir: str, lambdas: list[float]) -> float:
    cmd = [sys.executable, str(ROOT / "bench" / "plain_optuna.py"), data_dir]
    t = time.perf_counter()
    subprocess.run([*cmd, *map(str, lambdas)], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    lambdas = planned_lambdas()
    run_ours(args.data_dir)  # once untimed: the split's memory-mapped cache is written
    ours, plain, sampled = [], [], []
    for _ in range(args.rounds):
        sampled.append(rates())
        ours.append(run_ours(args.data_dir))
        plain.append(run_plain(args.data_dir, lambdas))
    sampled.append(rates())
    med = statistics.median
    rate, thin = med(r[0] for r in sampled), med(r[1] for r in sampled)
    limit = stage_flops() / (rate * 1e9 * WORKERS)
    limit_thin = stage_flops() / (thin * 1e9 * WORKERS)
    out = {
        "ours_s": [round(x, 2) for x in ours],
        "plain_s": [round(x, 2) for x in plain],
        "blas": blas(),
        "sgemm_gflops_1thread": round(rate, 1),
        "thin_gflops_1thread": round(thin, 1),
        "sgemm_samples": [round(r[0], 1) for r in sampled],
        "stage_tflop": round(stage_flops() / 1e12, 2),
        "limit_s": round(limit, 2),
        "limit_thin_s": round(limit_thin, 2),
        "vs_plain": round(med(plain) / med(ours), 3),
        "of_limit": round(limit / med(ours), 3),
        "of_limit_thin": round(limit_thin / med(ours), 3),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"ours {med(ours):.1f} s, plain Optuna + numpy {med(plain):.1f} s "
            f"(vs_plain {out['vs_plain']}), limit {limit:.1f} s (of_limit {out['of_limit']}); "
            f"{out['blas']} at {rate:.0f} GFLOP/s on one thread"
        )


if __name__ == "__main__":
    main()
