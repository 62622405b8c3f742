"""Monotonicity and invariants of the certified accountant, by hypothesis.

The certified value is the smallest of several rigorous bounds: the Chernoff
(CGF) bound, the sampled-count bound and the characteristic-function bound.
The last is as tight as a fine PLD accountant but can decline where the
privacy-loss sum is far from any smooth law (about one sampled step in all or
fewer, more so at sigma ~0.5), and there the looser bounds answer.  Each is
monotone; across a switch between them the minimum can step the wrong way, so
the monotonicity properties are drawn where q * steps >= MIN_SAMPLED_MONOTONE
for every configuration compared, and the calibration and round-trip checks
where q * steps >= MIN_SAMPLED (the finiteness properties are drawn
everywhere).  docs/robustness.md counts what happens below.
"""
import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import edgeworth
from conftest import MONOTONICITY_EXAMPLES

# Every monotonicity property runs on MONOTONICITY_EXAMPLES drawn examples.
monotone = settings(max_examples=MONOTONICITY_EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])

sigmas = st.floats(0.5, 4.0)
qs = st.floats(1e-3, 0.2)
steps = st.integers(10, 100_000)
deltas = st.sampled_from([1e-3, 1e-5, 1e-8, 1e-12])
epss = st.floats(0.5, 10.0)
REL = 1e-9  # the Chernoff optimum over t is found to 1e-6 in t, ~1e-12 in the bound
# The certified calibration stops once eps is within 1e-5 of the target
# (kCalibrateEpsRtol), so its sigma is within ~1e-5 of the least (eps falls at
# least like 1 / sigma); two calibrations of nearly equal settings can land in
# either order within that (q = 1e-3 and q + 1 ulp at 3000 steps, eps 0.5,
# delta 1e-12: sigma 1.1512151626 and 1.1512151564).
REL_SIGMA = 2e-5
MIN_SAMPLED_MONOTONE = 3  # q * steps: where the monotonicity properties are drawn
MIN_SAMPLED = 10  # q * steps: where the calibration is continuous and the round trip tight


def _ordered(strategy):
    """Two distinct draws of ``strategy``, smaller first."""
    return st.tuples(strategy, strategy).filter(lambda p: p[0] != p[1]).map(sorted)


@st.composite
def sampled_runs(draw, count=1):
    """(q, [steps, ...]): ``count`` distinct step counts, ascending, each with
    q * steps >= MIN_SAMPLED_MONOTONE (drawn so, rather than filtered)."""
    q = draw(qs)
    low = max(10, math.ceil(MIN_SAMPLED_MONOTONE / q))
    ns = draw(st.lists(st.integers(low, 100_000), min_size=count, max_size=count, unique=True).map(sorted))
    return q, ns


@st.composite
def sampled_rate_pairs(draw):
    """(q1, q2, steps): q1 < q2 with q1 * steps >= MIN_SAMPLED_MONOTONE (drawn so)."""
    q1, q2 = draw(_ordered(qs))
    n = draw(st.integers(max(10, math.ceil(MIN_SAMPLED_MONOTONE / q1)), 100_000))
    return q1, q2, n


@monotone
@given(s=_ordered(sigmas), run=sampled_runs(), d=deltas)
def test_eps_decreases_in_sigma(s, run, d):
    (q, (n,)), (s1, s2) = run, s
    assert edgeworth.epsilon(s1, d, n, q) >= edgeworth.epsilon(s2, d, n, q) * (1 - REL)


@monotone
@given(s=sigmas, run=sampled_rate_pairs(), d=deltas)
def test_eps_increases_in_q(s, run, d):
    q1, q2, n = run
    assert edgeworth.epsilon(s, d, n, q1) <= edgeworth.epsilon(s, d, n, q2) * (1 + REL)


@monotone
@given(s=sigmas, run=sampled_runs(count=2), d=deltas)
def test_eps_increases_in_steps(s, run, d):
    q, (n1, n2) = run
    assert edgeworth.epsilon(s, d, n1, q) <= edgeworth.epsilon(s, d, n2, q) * (1 + REL)


@monotone
@given(s=sigmas, run=sampled_runs(), d=_ordered(deltas))
def test_eps_decreases_in_delta(s, run, d):
    (q, (n,)), (d1, d2) = run, d
    assert edgeworth.epsilon(s, d1, n, q) >= edgeworth.epsilon(s, d2, n, q) * (1 - REL)


@monotone
@given(e=epss, run=sampled_runs(count=2), d=deltas)
def test_sigma_increases_in_steps(e, run, d):
    q, (n1, n2) = run
    assert edgeworth.noise_multiplier(e, d, n1, q) <= edgeworth.noise_multiplier(e, d, n2, q) * (1 + REL_SIGMA)


@monotone
@given(e=_ordered(epss), run=sampled_runs(), d=deltas)
def test_sigma_decreases_in_eps(e, run, d):
    (q, (n,)), (e1, e2) = run, e
    assert edgeworth.noise_multiplier(e1, d, n, q) >= edgeworth.noise_multiplier(e2, d, n, q) * (1 - REL_SIGMA)


@monotone
@given(e=epss, run=sampled_rate_pairs(), d=deltas)
def test_sigma_increases_in_q(e, run, d):
    q1, q2, n = run
    assert edgeworth.noise_multiplier(e, d, n, q1) <= edgeworth.noise_multiplier(e, d, n, q2) * (1 + REL_SIGMA)


@given(e=epss, q=qs, n=steps, d=deltas)
def test_calibrated_sigma_meets_target(e, q, n, d):
    sigma = edgeworth.noise_multiplier(e, d, n, q)
    got = edgeworth.epsilon(sigma, d, n, q)
    assert got <= e  # everywhere: the calibration solves on epsilon itself
    if q * n >= MIN_SAMPLED:  # calibrated, not merely safe, where the bound is continuous
        assert got >= e * (1 - 1e-5)  # the certified calibration's tolerance on eps (kCalibrateEpsRtol)


@given(s=sigmas, q=qs, n=steps, d=deltas)
def test_delta_at_certified_eps_is_at_most_delta(s, q, n, d):
    e = edgeworth.epsilon(s, d, n, q)
    assume(0 < e <= edgeworth._core.EPS_MAX and q * n >= MIN_SAMPLED)
    # two separate bounds (eps at delta, delta at eps), each inverting the
    # characteristic function on its own tilt, so each with its own slack:
    # up to ~4e-6 relative on 387 random draws, 2.3e-5 at the domain's corner
    # (sigma 1.5, q = 1e-3, 10000 steps, delta 1e-12), which hypothesis finds
    assert edgeworth.delta(s, e, n, q) <= d * (1 + 1e-4)


@given(s=sigmas, q=qs, n=steps, d=deltas)
def test_certified_is_finite_and_nonnegative(s, q, n, d):
    e = edgeworth.epsilon(s, d, n, q)
    assert math.isfinite(e) and e >= 0
