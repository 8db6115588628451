"""What a user would write instead of lambda-sweep: the seed's coarse stage as a plain
Optuna + numpy script (bench/peers.py times it against `sweep run`; bench/epoch.py times
its training loop against a single run's).

    python bench/plain_optuna.py DATA_DIR LAMBDA [LAMBDA ...]

Two threads (study.optimize(n_jobs=2)), one BLAS thread each, the same lambdas, steps and
schedule as studies/coarse.toml (45k/5k, batch 100, n_s 900, 2 cycles), the final
validation accuracy only: no curves, no stored results beyond Optuna's.
"""

import sys

import numpy as np

N_S, CYCLES, BATCH, ETA_MIN, ETA_MAX, M = 900, 2, 100, 1e-5, 1e-1, 50


def train_plain(X, y, lam, n_s=N_S, cycles=CYCLES, seed=2424):
    """The plain numpy loop: mini-batch gradient descent with a cyclical learning rate."""
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    W1 = (rng.standard_normal((d, M)) / np.sqrt(d)).astype(np.float32)
    W2 = (rng.standard_normal((M, 10)) / np.sqrt(M)).astype(np.float32)
    b1, b2 = np.zeros(M, np.float32), np.zeros(10, np.float32)
    steps = 2 * n_s * cycles
    t = 0
    while t < steps:
        order = rng.permutation(len(X))
        for j in range(len(X) // BATCH):
            if t == steps:
                break
            idx = order[j * BATCH : (j + 1) * BATCH]
            xb, yb = X[idx], y[idx]
            h = np.maximum(xb @ W1 + b1, 0)
            s = h @ W2 + b2
            p = np.exp(s - s.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(BATCH), yb] -= 1
            g = p / BATCH
            gW2, gb2 = h.T @ g + 2 * lam * W2, g.sum(0)
            gh = (g @ W2.T) * (h > 0)
            gW1, gb1 = xb.T @ gh + 2 * lam * W1, gh.sum(0)
            phase = (t % (2 * n_s)) / n_s
            eta = ETA_MIN + (ETA_MAX - ETA_MIN) * (phase if phase <= 1 else 2 - phase)
            W1 -= eta * gW1
            b1 -= eta * gb1
            W2 -= eta * gW2
            b2 -= eta * gb2
            t += 1
    return W1, b1, W2, b2


def main() -> None:
    import optuna
    from threadpoolctl import threadpool_limits

    from core.data import load_split

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    split = load_split("search", sys.argv[1])
    X, y, Xv, yv = split.X_train, split.y_train, split.X_val, split.y_val
    lambdas = [float(v) for v in sys.argv[2:]]

    def objective(trial: optuna.Trial) -> float:
        lam = trial.suggest_float("lambda", 1e-5, 1e-1, log=True)
        W1, b1, W2, b2 = train_plain(X, y, lam)
        pred = (np.maximum(Xv @ W1 + b1, 0) @ W2 + b2).argmax(1)
        return float((pred == yv).mean())

    study = optuna.create_study(direction="maximize")
    for lam in lambdas:
        study.enqueue_trial({"lambda": lam})
    with threadpool_limits(limits=1):  # one BLAS thread per optimize() thread
        study.optimize(objective, n_trials=len(lambdas), n_jobs=2)
    print(f"best lambda {study.best_params['lambda']:.4g}: {study.best_value:.4f}")


if __name__ == "__main__":
    main()
