"""The fine stage's range: the hull of the best coarse values, widened by a margin.

In log space the margin is in decades; in linear space it is a fraction of the span of the
values tried. "Best" follows the study's direction (the highest accuracy, or the lowest
loss).
"""

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
    log: bool = True,
    minimize: bool = False,
    is_int: bool = False,
    keep: list[float] | None = None,
    bounds: tuple[float | None, float | None] = (None, None),
    within: tuple[float, float] | None = None,
) -> Narrowed:
    """Narrow around the ``top_k`` best of ``results`` = [(value searched, score)].

    The range is [min, max] of the top_k values, widened by ``margin`` each side. If the
    best value is the smallest (largest) value that was tried, the optimum may lie beyond
    it: the range then extends past it by at least the hull's width plus the margin (and
    half a decade, or half the span tried), instead of shrinking onto the edge. ``within``
    (the range the values were searched in) holds the other sides: widening a hull by its
    margin does not reach past the searched range (a count of layers below the 1 searched).
    ``bounds`` keeps the range inside the values the parameter may take (a dropout rate
    below 0).
    """
    if not results:
        raise ValueError("nothing to narrow from")
    to = (lambda v: math.log10(v)) if log else float
    back = (lambda x: 10**x) if log else float
    ranked = sorted(results, key=lambda r: r[1], reverse=not minimize)
    # The hull of the best top_k, or of the values given (e.g. the trials tied with the best).
    top = [to(v) for v in keep] if keep else [to(v) for v, _ in ranked[: max(top_k, 1)]]
    tried = [to(v) for v, _ in results]
    span = 1.0 if log else (max(tried) - min(tried)) or 1.0
    lo, hi = min(top) - margin * span, max(top) + margin * span
    best = to(ranked[0][0])
    reach = max(hi - lo, 0.5 * span)
    unit = "decades" if log else "of the span tried"
    what = f"the {len(top)} tied with the best" if keep else f"the top {len(top)}"
    note = f"hull of {what} widened by {margin:g} {unit}"
    below = len(results) > 1 and best <= min(tried)
    above = len(results) > 1 and best >= max(tried) and not below
    if below:
        lo = min(lo, best - reach)
        note = f"best value {back(best):.3g} is the smallest tried: range extended below it"
    elif above:
        hi = max(hi, best + reach)
        note = f"best value {back(best):.3g} is the largest tried: range extended above it"
    held_low = held_high = None  # the searched range's ends that hold this one
    if within is not None:
        if not below and (not log or within[0] > 0) and lo < to(within[0]):
            held_low, note = within[0], f"{note}; low end kept at the range searched"
        if not above and (not log or within[1] > 0) and hi > to(within[1]):
            held_high, note = within[1], f"{note}; high end kept at the range searched"
    # A held end is the searched one exactly (10**log10(v) is not always v)
    low = back(lo) if held_low is None else held_low
    high = back(hi) if held_high is None else held_high
    if is_int:
        low, high = math.floor(low), math.ceil(high)
        high = max(high, low + 1)
    floor, ceiling = bounds
    if floor is not None and low < floor:
        low, note = floor, f"{note}; cut at {floor:g}"
    if ceiling is not None and high > ceiling:
        high, note = ceiling, f"{note}; cut at {ceiling:g}"
    return Narrowed(low=low, high=high, note=note)
