"""Monotonicity and invariants of the certified accountant, by hypothesis.

The certified value is the smallest of several rigorous bounds (the table
kCertifiedBounds in csrc/certified.hpp).  The characteristic-function bound
is as tight as a fine PLD accountant but can decline where the
privacy-loss sum is far from any smooth law (about one sampled step in all or
fewer, more so at sigma ~0.5), and there the looser bounds answer.  Each is
monotone; across a switch between them the minimum can step the wrong way, so
the monotonicity properties are drawn where q * steps >= MIN_SAMPLED_MONOTONE
for every configuration compared, and the calibration and round-trip checks
where q * steps >= MIN_SAMPLED (the finiteness properties are drawn
everywhere).  docs/robustness.md counts what happens below.

The whole-range properties at the end (test_*_whole_range) draw over every
input the API accepts (steps up to 2^53), q * steps < 3 included,
and hold each certified value to the README's tolerance (MONOTONE_RTOL,
MONOTONE_RTOL_SIGMA, and MONOTONE_RTOL_FEW where q * steps < 1) against a
neighbour one step up in steps or a relative move in q, sigma, delta or eps;
benchmarks/monotonicity_search.py runs the same check on 2000 seeded
configurations over the whole range.
"""
import math

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import edgeworth
from edgeworth import _core
from conftest import (MONOTONE_RTOL, MONOTONE_RTOL_FEW, MONOTONE_RTOL_SIGMA, MONOTONICITY_EXAMPLES,
                      WHOLE_RANGE_EXAMPLES)

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


# Where the certified eps is 0 the delta at eps = 0 goes through the eps inversion (csrc/certified.hpp,
# delta_at_zero_eps), so that delta(epsilon(d)) <= d to its bisection's tolerance (kZeroEpsRtol = 1e-5).  The
# examples are three of 8 random configurations with a certified eps of 0 (PLD agrees), where delta(0) was up to
# 3.1 times d (rare-jump, characteristic-function and Chernoff bounds reaching eps 0 with settings for d).
@settings(max_examples=min(20, MONOTONICITY_EXAMPLES), deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@example(s=11.3021, q=3.00332e-05, n=55, d=2.20523e-05)
@example(s=7.13652, q=0.000152385, n=134, d=0.000137504)
@example(s=4.21106, q=0.0021463, n=3, d=0.000524972)
@given(s=st.floats(3.0, 20.0), q=st.floats(1e-5, 3e-3), n=st.integers(1, 200), d=st.floats(1e-5, 1e-3))
def test_delta_at_zero_eps_is_at_most_delta_where_certified_eps_is_zero(s, q, n, d):
    assume(edgeworth.epsilon(s, d, n, q) == 0.0)
    assert edgeworth.delta(s, 0.0, n, q) <= d * (1 + 1e-5)


@given(s=sigmas, q=qs, n=steps, d=deltas)
def test_certified_is_finite_and_nonnegative(s, q, n, d):
    e = edgeworth.epsilon(s, d, n, q)
    assert math.isfinite(e) and e >= 0


# --------------------------------------------------------------------------
# The whole documented range, few sampled steps included
# --------------------------------------------------------------------------

STEPS_MAX = _core.STEPS_MAX  # 2^53, the most steps the API accepts

whole_range = settings(max_examples=WHOLE_RANGE_EXAMPLES, deadline=None,
                       suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])


def _log_uniform(lo, hi):
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda x: min(hi, max(lo, 10.0 ** x)))


# weighted toward practical values, with the whole range (and its edges) drawn too
w_sigmas = st.one_of(_log_uniform(0.3, 10.0), _log_uniform(0.01, 1e6), st.sampled_from([0.01, 1e6]))
w_qs = st.one_of(_log_uniform(1e-4, 1.0), _log_uniform(1e-12, 1.0), st.sampled_from([1e-12, 1.0]))
# (the neighbour is one step up, so the draws end one below the API's 2^53)
w_steps = st.one_of(_log_uniform(1.0, 1e5), _log_uniform(1.0, STEPS_MAX), st.sampled_from([1.0, STEPS_MAX])).map(
    lambda x: float(min(STEPS_MAX - 1, max(1, round(x)))))
w_deltas = st.one_of(_log_uniform(1e-15, 0.5), st.just(1e-300))
w_epss = st.one_of(_log_uniform(1e-3, 100.0), st.sampled_from([1e-6, 1000.0]))
moves = st.floats(1e-6, 0.05)  # the relative move of the neighbour


def _up(x, move, hi):
    """(a, b), a < b, b / a = 1 + move, inside (0, hi]."""
    return (x, x * (1 + move)) if x * (1 + move) <= hi else (x / (1 + move), x)


def _not_wrong_way(a, b, direction, rtol, floor=0.0):
    """b does not step the wrong way from a (direction +1: must not fall) by more than rtol relative."""
    a, b = max(a, floor), max(b, floor)
    drop = (a - b) if direction > 0 else (b - a)
    return drop <= rtol * max(a, b)


def _pairs(x_steps, x_q, x_sigma, x_last, move, last_hi):
    n1, n2 = x_steps, x_steps + 1
    return {"steps": (n1, n2, +1), "q": (*_up(x_q, move, 1.0), +1),
            "sigma": (*_up(x_sigma, move, 1e6), -1), "last": (*_up(x_last, move, last_hi), -1)}


AXES = st.sampled_from(["steps", "q", "sigma", "last"])


def _check(fn, args, axis, pair, rtol, floor=0.0):
    """fn at args with argument `axis` (an index) set to each end of pair; None where either declines.
    (args end with steps, q; fewer than one sampled step in all takes MONOTONE_RTOL_FEW.)"""
    lo, hi, direction = pair
    a_args, b_args = list(args), list(args)
    a_args[axis], b_args[axis] = lo, hi
    if min(a_args[2] * a_args[3], b_args[2] * b_args[3]) < 1:
        rtol = max(rtol, MONOTONE_RTOL_FEW)
    try:
        a, b = fn(*a_args), fn(*b_args)
    except ValueError:  # a named decline or an unreachable target: nothing to compare
        return
    assert _not_wrong_way(a, b, direction, rtol, floor), (a_args, a, b_args, b)


def _check_value(fn, s, q, n, last, last_hi, move, axis, floor):
    """epsilon(s, last=delta, n, q) or delta(s, last=eps, n, q) against its neighbour along `axis`."""
    pair = _pairs(n, q, s, last, move, last_hi)[axis]
    index = {"sigma": 0, "last": 1, "steps": 2, "q": 3}[axis]
    _check(fn, (s, last, n, q), index, pair, MONOTONE_RTOL, floor)


@whole_range
@given(s=w_sigmas, q=w_qs, n=w_steps, d=w_deltas, move=moves, axis=AXES)
def test_eps_monotone_whole_range(s, q, n, d, move, axis):
    _check_value(edgeworth.epsilon, s, q, n, d, 0.999, move, axis, floor=1e-12)


@whole_range
@given(s=w_sigmas, q=w_qs, n=w_steps, e=w_epss, move=moves, axis=AXES)
def test_delta_monotone_whole_range(s, q, n, e, move, axis):
    _check_value(edgeworth.delta, s, q, n, e, 1000.0, move, axis, floor=1e-300)


@whole_range
@given(e=w_epss, q=w_qs, n=w_steps, d=w_deltas, move=moves, axis=st.sampled_from(["steps", "q", "eps", "delta"]))
def test_sigma_monotone_whole_range(e, q, n, d, move, axis):
    n1, n2 = n, n + 1
    pair = {"steps": (n1, n2, +1), "q": (*_up(q, move, 1.0), +1),
            "eps": (*_up(e, move, 1000.0), -1), "delta": (*_up(d, move, 0.999), -1)}[axis]
    index = {"eps": 0, "delta": 1, "steps": 2, "q": 3}[axis]
    _check(edgeworth.noise_multiplier, (e, d, n, q), index, pair, MONOTONE_RTOL_SIGMA)
