import math

from hypothesis import assume, given
from hypothesis import strategies as st

from sweep.narrowing import narrow

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


def test_best_at_the_lower_edge_extends_below_instead_of_shrinking():
    results = [(1e-5, 0.50), (1e-4, 0.45), (1e-3, 0.44), (1e-2, 0.40), (1e-1, 0.30)]
    r = narrow(results, top_k=3, margin=0.25)
    assert r.low < 1e-5 * 10**-0.25  # beyond the plain widened hull
    assert r.high >= 1e-3
    assert "smallest" in r.note


def test_best_at_the_upper_edge_extends_above():
    results = [(1e-5, 0.30), (1e-3, 0.40), (1e-1, 0.52)]
    r = narrow(results, top_k=1, margin=0.1)
    assert r.high > 1e-1 * 10**0.1 and r.low <= 1e-1
    assert "largest" in r.note
