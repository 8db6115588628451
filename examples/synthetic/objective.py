"""A synthetic objective with a known optimum: try lambda-sweep in seconds, test it exactly.

`score` peaks at lambda = OPTIMUM (a Gaussian bump in log10 lambda, one decade wide) with a
little seeded noise; `loss` is its minimising twin. Each call "trains" for STEPS steps and
reports its progress, so curves and pruners have something to show.
"""

import math
import random

OPTIMUM = 3e-3
WIDTH = 1.0  # decades
NOISE = 0.002
STEPS = 5


def _noisy(params):
    distance = (math.log10(params["lambda"]) - math.log10(OPTIMUM)) / WIDTH
    noise = random.Random(f"{params['seed']}:{params['lambda']!r}").gauss(0.0, NOISE)
    return distance, noise


def objective(params, ctx):
    """Maximise `score` (in [0, 1]); also returns `distance` in decades."""
    distance, noise = _noisy(params)
    score = math.exp(-(distance**2)) + noise
    for step in range(1, STEPS + 1):
        ctx.report(step, score * step / STEPS)
    return {"score": score, "distance": abs(distance) * WIDTH}


def loss(params, ctx):
    """Minimise `loss` (the squared distance in decades, plus noise)."""
    distance, noise = _noisy(params)
    value = distance**2 + noise
    for step in range(1, STEPS + 1):
        ctx.report(step, value + (STEPS - step) / STEPS)
    return {"loss": value}
