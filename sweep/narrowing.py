"""The fine stage's range: the log-space hull of the best coarse values, widened by a margin."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Narrowed:
    low: float
    high: float
    note: str  # what was done, for the run's output and the study's attributes


def narrow(
    results: list[tuple[float, float]],
    *,
    top_k: int,
    margin: float,
) -> Narrowed:
    """Narrow around the ``top_k`` best of ``results`` = [(value searched, score)].

    The range is [min, max] of the top_k values in log10 space, widened by ``margin``
    decades each side. If the best value is the smallest (largest) value that was tried,
    the optimum may lie beyond it: the range then extends past it by at least the hull's
    width plus the margin (and half a decade), instead of shrinking onto the edge.
    """
    if not results:
        raise ValueError("nothing to narrow from")
    ranked = sorted(results, key=lambda r: r[1], reverse=True)
    top = [math.log10(v) for v, _ in ranked[: max(top_k, 1)]]
    lo, hi = min(top) - margin, max(top) + margin
    best = math.log10(ranked[0][0])
    tried = [math.log10(v) for v, _ in results]
    reach = max(hi - lo, 0.5)
    note = f"hull of the top {len(top)} widened by {margin:g} decades"
    if len(results) > 1 and best <= min(tried):
        lo = min(lo, best - reach)
        note = f"best value {10**best:.3g} is the smallest tried: range extended below it"
    elif len(results) > 1 and best >= max(tried):
        hi = max(hi, best + reach)
        note = f"best value {10**best:.3g} is the largest tried: range extended above it"
    return Narrowed(low=10**lo, high=10**hi, note=note)
