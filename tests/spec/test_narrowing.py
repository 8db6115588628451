import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sweep.spec.narrowing import narrow

lambdas = st.lists(st.floats(-5, -1).map(lambda e: 10**e), min_size=3, max_size=20, unique=True)


@given(values=lambdas, data=st.data(), top_k=st.integers(1, 5), margin=st.floats(0, 1))
def test_range_holds_the_top_k_and_stays_in_their_widened_hull(values, data, top_k, margin):
    scores = data.draw(
        st.lists(st.floats(0, 1), min_size=len(values), max_size=len(values), unique=True)
    )
    results = list(zip(values, scores, strict=True))
    best = max(results, key=lambda r: r[1])[0]
    assume(min(values) < best < max(values))  # not at an edge: see the next test
    r = narrow(results, top_k=top_k, margin=margin)
    top = [v for v, _ in sorted(results, key=lambda x: x[1], reverse=True)[:top_k]]
    assert all(r.low <= v * (1 + 1e-9) and v <= r.high * (1 + 1e-9) for v in top)
    lo, hi = math.log10(min(top)) - margin, math.log10(max(top)) + margin
    assert math.log10(r.low) >= lo - 1e-9 and math.log10(r.high) <= hi + 1e-9


def decades(r):
    return math.log10(r.low), math.log10(r.high)


# Hand-computed: the scores rank the lambdas; the range is in decades (log10 of lambda).
LADDER = [(1e-5, 0.30), (1e-4, 0.40), (1e-3, 0.50), (1e-2, 0.45), (1e-1, 0.20)]


@pytest.mark.parametrize(
    ("kwargs", "low", "high", "note"),
    [
        # The best two, 1e-3 and 1e-2, widened by 0.25 decades on each side.
        ({"top_k": 2, "margin": 0.25}, -3.25, -1.75, "hull of the top 2 widened by 0.25 decades"),
        # The best three: 1e-4 joins; a margin of 0 is the hull itself.
        ({"top_k": 3, "margin": 0.0}, -4.0, -2.0, "hull of the top 3 widened by 0 decades"),
        # top_k 1: the best alone, 1e-3, +- 0.1.
        ({"top_k": 1, "margin": 0.1}, -3.1, -2.9, "hull of the top 1 widened by 0.1 decades"),
        # Minimising the same scores: the best are 1e-1 (0.20, the largest tried) and 1e-5;
        # hull [-5.25, -0.75], extended above 1e-1 by its width 4.5: up to 3.5.
        (
            {"top_k": 2, "margin": 0.25, "minimize": True},
            -5.25,
            3.5,
            "best value 0.1 is the largest tried: range extended above it",
        ),
        # The values given (e.g. the trials tied with the best) instead of the top_k.
        (
            {"top_k": 3, "margin": 0.5, "keep": [1e-4, 1e-3]},
            -4.5,
            -2.5,
            "hull of the 2 tied with the best widened by 0.5 decades",
        ),
    ],
)
def test_hand_computed_ranges_in_decades(kwargs, low, high, note):
    r = narrow(LADDER, **kwargs)
    assert decades(r) == pytest.approx((low, high), abs=1e-12)
    assert r.note == note


def test_best_at_the_lower_edge_extends_below_by_the_hulls_width():
    # top 3 = 1e-5 (best, the smallest tried), 1e-4, 1e-3: hull [-5.25, -2.75] (width 2.5);
    # below the best by that width: -5 - 2.5 = -7.5.
    results = [(1e-5, 0.50), (1e-4, 0.45), (1e-3, 0.44), (1e-2, 0.40), (1e-1, 0.30)]
    r = narrow(results, top_k=3, margin=0.25)
    assert decades(r) == pytest.approx((-7.5, -2.75), abs=1e-12)
    assert r.note == "best value 1e-05 is the smallest tried: range extended below it"


def test_best_at_the_upper_edge_extends_above_by_at_least_half_a_decade():
    # top 1 = 1e-1 (the largest tried): hull [-1.1, -0.9] is 0.2 wide, less than half a
    # decade, so the range reaches -1 + 0.5 = -0.5.
    r = narrow([(1e-5, 0.30), (1e-3, 0.40), (1e-1, 0.52)], top_k=1, margin=0.1)
    assert decades(r) == pytest.approx((-1.1, -0.5), abs=1e-12)


def test_a_single_result_is_widened_by_the_margin_only():
    r = narrow([(1e-3, 0.5)], top_k=3, margin=0.25)
    assert decades(r) == pytest.approx((-3.25, -2.75), abs=1e-12)


@pytest.mark.parametrize(
    ("results", "top_k", "expected", "note"),
    [
        # span tried 10: a margin of 0.1 is 1.0 each side of the top 2 (2 and 4).
        (
            [(0.0, 0.1), (2.0, 0.5), (4.0, 0.6), (6.0, 0.4), (10.0, 0.2)],
            2,
            (1.0, 5.0),
            "hull of the top 2 widened by 0.1 of the span tried",
        ),
        # best 0 is the smallest tried: hull [-1, 1], extended below by half the span (5).
        (
            [(0.0, 0.9), (5.0, 0.5), (10.0, 0.1)],
            1,
            (-5.0, 1.0),
            "best value 0 is the smallest tried: range extended below it",
        ),
        # best 10 is the largest tried: hull of 10 and 5 is [4, 11], 7 wide: up to 17.
        (
            [(0.0, 0.1), (5.0, 0.5), (10.0, 0.9)],
            2,
            (4.0, 17.0),
            "best value 10 is the largest tried: range extended above it",
        ),
    ],
)
def test_linear_ranges_widen_by_a_fraction_of_the_span_tried(results, top_k, expected, note):
    r = narrow(results, top_k=top_k, margin=0.1, log=False)
    assert (r.low, r.high) == pytest.approx(expected, abs=1e-12)
    assert r.note == note


@pytest.mark.parametrize(
    ("results", "kwargs", "low", "high"),
    [
        # log: 32 and 64 widened by 0.25 decades are 17.99 and 113.8: floor and ceil.
        ([(16, 0.3), (32, 0.5), (64, 0.45), (128, 0.2)], {"top_k": 2, "margin": 0.25}, 17, 114),
        # linear: 2 +- 0.1 * 2 = [1.8, 2.2] -> [1, 3].
        ([(1, 0.1), (2, 0.5), (3, 0.2)], {"top_k": 1, "margin": 0.1, "log": False}, 1, 3),
        # a range of one integer becomes two: [4, 4] -> [4, 5].
        ([(2, 0.1), (4, 0.5), (6, 0.2)], {"top_k": 1, "margin": 0.0, "log": False}, 4, 5),
    ],
)
def test_integer_ranges_round_outwards(results, kwargs, low, high):
    r = narrow(results, is_int=True, **kwargs)
    assert (r.low, r.high) == (low, high)


def test_a_narrowed_range_stays_inside_the_parameters_bounds():
    # the best dropout is the smallest tried: the range would extend below 0
    results = [(0.0, 0.5), (0.2, 0.45), (0.4, 0.4)]
    r = narrow(results, top_k=2, margin=0.25, log=False, bounds=(0.0, 0.9))
    assert r.low == 0.0 and 0.2 < r.high < 0.9 and "cut at 0" in r.note


def test_a_margin_does_not_widen_past_the_range_searched_but_an_edge_extension_does():
    # layers 1..9: the best (5) is inside, its top two 5 and 9 widened by the whole span
    # would be [-3, 17]; a count of layers below the 1 searched never runs now.
    results = [(1, 0.1), (3, 0.2), (5, 0.9), (7, 0.3), (9, 0.5)]
    r = narrow(results, top_k=2, margin=1.0, log=False, is_int=True, within=(1, 9))
    assert (r.low, r.high) == (1, 9)
    assert r.note.endswith(
        "low end kept at the range searched; high end kept at the range searched"
    )
    # best at the upper edge: that side still extends past it; the other side is held
    edge = [(1, 0.1), (3, 0.2), (5, 0.3), (7, 0.4), (9, 0.9)]
    r = narrow(edge, top_k=2, margin=1.0, log=False, within=(1, 9))
    assert r.low == 1 and r.high > 9 and "extended above" in r.note
    assert "high end kept" not in r.note  # the note says what was done, not more
    # a log narrowing of a parent's linear range from 0: the side above 0 is still held
    rates = [(0.05, 0.1), (0.3, 0.5), (0.5, 0.8), (0.61, 0.9), (0.72, 0.85), (0.9, 0.2)]
    r = narrow(rates, top_k=3, margin=0.25, within=(0.0, 0.9))
    assert r.high == pytest.approx(0.9) and "high end kept" in r.note  # was 1.27
    # in decades: the seed's kind of range, well inside, is unchanged
    lams = [(1e-5, 0.3), (1e-4, 0.4), (1e-3, 0.5), (1e-2, 0.45), (1e-1, 0.2)]
    assert narrow(lams, top_k=3, margin=0.25, within=(1e-5, 1e-1)) == narrow(
        lams, top_k=3, margin=0.25
    )


def test_a_narrowed_batch_size_stays_within_the_splits_training_images():
    # best 10,000 of the exercise split's 10,000: the edge extension reached 17,500, and
    # every trial above 10,000 failed
    from sweep.spec.builtin import limits

    assert limits("batch_size", "exercise") == (1, 10_000)
    assert limits("batch_size", "search") == (1, 45_000) and limits("hidden", "search") == (1, 2000)
    results = [(5000, 0.2), (10_000, 0.3)]
    r = narrow(
        results,
        top_k=2,
        margin=0.25,
        log=False,
        is_int=True,
        bounds=limits("batch_size", "exercise"),
    )
    assert r.high == 10_000 and "cut at 10000" in r.note


def test_a_held_end_of_a_whole_number_range_is_the_searched_end_exactly():
    # 10**log10(300) rounded up was 301, 10**log10(8) rounded down 7: a step outside the
    # range the note said was kept
    r = narrow([(10, 0.1), (50, 0.9), (100, 0.5), (300, 0.2)], top_k=3, margin=1.0,
               is_int=True, within=(10, 300))  # fmt: skip
    assert (r.low, r.high) == (10, 300)
    r = narrow([(8, 0.1), (16, 0.9), (32, 0.2)], top_k=3, margin=1.0, is_int=True, within=(8, 32))
    assert (r.low, r.high) == (8, 32)
