import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError
from core.schedules import SCHEDULES, Schedule, eta


def test_triangular_hits_min_at_cycle_starts_and_max_at_half_cycles():
    s = Schedule("triangular", eta_min=1e-5, eta_max=1e-1, n_s=500)
    assert eta(0, s) == pytest.approx(1e-5)
    assert eta(500, s) == pytest.approx(1e-1)
    assert eta(1000, s) == pytest.approx(1e-5)
    assert eta(1500, s) == pytest.approx(1e-1)
    assert eta(250, s) == pytest.approx((1e-5 + 1e-1) / 2)


def test_triangular2_halves_the_amplitude_each_cycle():
    s = Schedule("triangular2", eta_min=0.0 + 1e-6, eta_max=1.0, n_s=10)
    assert eta(10, s) - 1e-6 == pytest.approx(2 * (eta(30, s) - 1e-6))


def test_exp_range_decays():
    s = Schedule("exp_range", eta_min=1e-5, eta_max=1e-1, n_s=100, gamma=0.99)
    assert eta(300, s) < eta(100, s)


@given(
    kind=st.sampled_from(sorted(SCHEDULES)),
    eta_min=st.floats(1e-8, 1e-2),
    span=st.floats(1.01, 1e4),
    n_s=st.integers(1, 5000),
    step=st.integers(0, 100_000),
)
def test_every_schedule_stays_within_its_bounds(kind, eta_min, span, n_s, step):
    s = Schedule(kind, eta_min=eta_min, eta_max=eta_min * span, n_s=n_s)
    assert s.eta_min * (1 - 1e-12) <= eta(step, s) <= s.eta_max * (1 + 1e-12)


def test_bad_schedules_are_rejected_with_the_rule_and_value():
    with pytest.raises(ConfigError, match=r"eta_min \(0.2\) must be below eta_max \(0.1\)"):
        Schedule(eta_min=0.2, eta_max=0.1)
    with pytest.raises(ConfigError, match="n_s"):
        Schedule(n_s=0)
    with pytest.raises(ConfigError, match="triangular, triangular2, exp_range"):
        Schedule(kind="cosine")
