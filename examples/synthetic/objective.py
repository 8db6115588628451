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


def objective_many(params_list, ctx):
    """The list form of `objective` (a pack: README "Packed trials"): one call for
    several trials, one result each, in order. A real function trains the members together;
    a member that must stop (ctx.report raises when it is pruned) leaves with its exception
    as its result, and the others go on."""
    scores = [math.exp(-(_noisy(p)[0] ** 2)) + _noisy(p)[1] for p in params_list]
    out = [None] * len(params_list)
    for step in range(1, STEPS + 1):
        for i, score in enumerate(scores):
            if out[i] is None:
                try:
                    ctx.report(i, step, score * step / STEPS)
                except Exception as exc:  # this member leaves the pack
                    out[i] = exc
    for i, params in enumerate(params_list):
        if out[i] is None:
            out[i] = {"score": scores[i], "distance": abs(_noisy(params)[0]) * WIDTH}
    return out


def loss(params, ctx):
    """Minimise `loss` (the squared distance in decades, plus noise)."""
    distance, noise = _noisy(params)
    value = distance**2 + noise
    for step in range(1, STEPS + 1):
        ctx.report(step, value + (STEPS - step) / STEPS)
    return {"loss": value}
