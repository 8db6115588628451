"""A one-layer softmax classifier on CIFAR-10 in plain numpy, as a lambda-sweep objective.

    s = W x + b,  p = softmax(s),  J = mean cross-entropy + lambda * ||W||^2

trained with mini-batch gradient descent (DD2424 assignment 1). The data comes from the
same loader as the built-in network (`sweep.objectives.builtin.cifar10`): normalised once, cached on
disk and memory-mapped once per worker process, never loaded per trial.
"""

import numpy as np

from sweep.objectives.builtin import cifar10

CLASSES = 10


def init(d, rng):
    """W (K, d) ~ N(0, 0.01^2), b (K,) = 0, as in the assignment."""
    return 0.01 * rng.standard_normal((CLASSES, d)), np.zeros(CLASSES)


def probabilities(W, b, X):
    """Softmax of W x + b for each row x of X (n, d): (n, K), max-subtracted for stability."""
    S = X @ W.T + b
    S -= S.max(axis=1, keepdims=True)
    P = np.exp(S)
    return P / P.sum(axis=1, keepdims=True)


def cost(W, b, X, y, lam):
    """(cost, mean cross-entropy loss) on images X (n, d) with integer labels y (n,)."""
    P = probabilities(W, b, X)
    loss = -np.mean(np.log(P[np.arange(len(y)), y]))
    return loss + lam * np.sum(W * W), loss


def gradients(W, b, X, y, lam):
    """dJ/dW (K, d) and dJ/db (K,): G = P - Y, dW = G^T X / n + 2 lambda W, db = mean G."""
    G = probabilities(W, b, X)
    G[np.arange(len(y)), y] -= 1
    G /= len(y)
    return G.T @ X + 2 * lam * W, G.sum(axis=0)


def accuracy(W, b, X, y):
    """In the images' dtype: a float64 W would copy a float32 X (1.1 GB for 45k images)."""
    return float(np.mean(np.argmax(X @ W.T.astype(X.dtype) + b, axis=1) == y))


def objective(params, ctx):
    d = cifar10(params.get("split", "search"), ctx.data_dir, "float32")
    X, y, X_val, y_val = d.X_train, d.y_train, d.X_val, d.y_val  # memory-mapped float32
    rng = np.random.default_rng(params["seed"])
    W, b = init(X.shape[1], rng)
    lam, eta, batch = params["lambda"], params["eta"], params["batch_size"]
    for epoch in range(1, params["epochs"] + 1):
        order = rng.permutation(len(y))
        for start in range(0, len(y) - batch + 1, batch):
            idx = order[start : start + batch]
            gW, gb = gradients(W, b, X[idx], y[idx], lam)
            W -= eta * gW
            b -= eta * gb
        ctx.report(epoch, accuracy(W, b, X_val, y_val))
    val_cost, val_loss = cost(W, b, np.asarray(X_val, dtype=np.float64), y_val, lam)
    return {
        "val_accuracy": accuracy(W, b, X_val, y_val),
        "train_accuracy": accuracy(W, b, X, y),
        "val_loss": float(val_loss),
        "val_cost": float(val_cost),
    }
