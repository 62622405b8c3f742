"""The sampled-count bound behind method="certified" (csrc/sampled_count.hpp).

Checked against independent references computed here:

* one step: the hockey-stick divergence of the subsampled Gaussian in closed
  form, evaluated with mpmath at 50 digits (the region where the mixture's
  density exceeds e^eps times N(0, 1) is a half-line); the bound is exact
  there, so it must agree to rounding and never fall below;
* several steps: it must never fall below the optimistic PLD of
  dp_accounting, a rigorous lower bound on the truth;
* the plain Gaussian mechanism (q = 1): exact, Balle and Wang's closed form.
"""
import math
import random

import mpmath
import pytest

import edgeworth
from edgeworth import _core
from pld_reference import pld_eps, pld_of

mpmath.mp.dps = 50


def one_step_delta(sigma, q, eps, ordering):
    """delta(eps) of one step of the Poisson-subsampled Gaussian, in closed form (mpmath).

    P = N(0, 1), Q = (1 - q) N(0, 1) + q N(mu, 1), mu = 1 / sigma; remove is
    H_{e^eps}(Q || P), add is H_{e^eps}(P || Q).  dQ/dP = 1 - q + q e^(mu x - mu^2 / 2)
    is increasing in x, so each divergence integrates over a half-line.
    """
    mu, q, a = mpmath.mpf(1) / sigma, mpmath.mpf(q), mpmath.e ** mpmath.mpf(eps)
    sf = lambda x: mpmath.ncdf(-x)  # noqa: E731
    if ordering == "remove":  # (1 - q) phi(x) + q phi(x - mu) > a phi(x)  <=>  x > x0
        x0 = (mpmath.log((a - 1 + q) / q) + mu ** 2 / 2) / mu
        return (1 - q - a) * sf(x0) + q * sf(x0 - mu)
    if 1 / a <= 1 - q:  # phi(x) > a Q(x) nowhere
        return mpmath.mpf(0)
    x0 = (mpmath.log((1 / a - 1 + q) / q) + mu ** 2 / 2) / mu  # phi(x) > a Q(x)  <=>  x < x0
    return (1 - a * (1 - q)) * mpmath.ncdf(x0) - a * q * mpmath.ncdf(x0 - mu)


CASES = [(1.0, 1e-3, 0.01), (1.0, 1e-3, 0.5), (0.5, 0.01, 2.0), (2.0, 0.1, 0.05), (0.3, 1e-7, 1.0),
         (10.0, 0.5, 0.02), (0.8, 1.0, 3.0), (5.0, 1e-12, 1e-9), (0.1, 0.3, 40.0)]


@pytest.mark.parametrize("sigma,q,eps", CASES)
@pytest.mark.parametrize("ordering", ["remove", "add"])
def test_one_step_is_the_exact_hockey_stick_divergence(sigma, q, eps, ordering):
    exact = one_step_delta(sigma, q, eps, ordering)
    got = _core.count_delta(sigma, q, 1, eps, ordering)
    assert got >= exact  # an upper bound, with its rounding
    assert got <= exact * (1 + 3e-9) + 1e-300, (got, float(exact))


@pytest.mark.parametrize("sigma,q,delta", [(1.0, 1e-3, 1e-5), (0.7, 0.02, 1e-8), (2.0, 0.2, 1e-3), (0.4, 1e-5, 1e-6)])
def test_one_step_epsilon_is_exact_and_is_what_the_api_returns(sigma, q, delta):
    cert = edgeworth.epsilon(sigma, delta, 1, q)
    both = [_core.count_epsilon(sigma, q, 1, delta, o) for o in ("remove", "add")]
    assert cert == max(both)
    # the exact eps: where the larger ordering's exact delta falls to delta (mpmath root)
    f = lambda e: max(one_step_delta(sigma, q, e, o) for o in ("remove", "add")) - delta  # noqa: E731
    lo, hi = mpmath.mpf(0), mpmath.mpf(cert) * 2 + 1  # f(lo) > 0 >= f(hi); bisection to 1e-40
    assert f(lo) > 0 >= f(hi)
    for _ in range(140):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    exact = hi
    assert exact <= cert <= exact * (1 + 1e-8)  # the bound is widened by 1e-9 in delta


def test_zero_where_the_sampling_probability_is_below_delta():
    # one step at q = 1e-7 cannot move any event by more than 1e-7 < delta:
    # eps = 0 exactly (the Chernoff bound alone gave 0.22 here)
    assert edgeworth.epsilon(1.0, 1e-5, 1, 1e-7) == 0.0
    assert edgeworth.delta(1.0, 0.0, 1, 1e-7) <= 1e-7 * (1 + 1e-9)


def test_plain_gaussian_is_exact():
    sigma, steps, eps = 3.0, 40, 0.7
    mu = math.sqrt(steps) / sigma
    phi = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))  # noqa: E731
    exact = phi(mu / 2 - eps / mu) - math.exp(eps) * phi(-mu / 2 - eps / mu)
    for o in ("remove", "add"):
        got = _core.count_delta(sigma, 1.0, steps, eps, o)
        assert exact <= got <= exact * (1 + 3e-9)


def test_never_below_optimistic_pld_with_few_sampled_steps():
    rng = random.Random(20261124)
    for _ in range(60):
        sigma = math.exp(rng.uniform(math.log(0.4), math.log(4.0)))
        q = math.exp(rng.uniform(math.log(1e-4), math.log(0.3)))
        steps = max(1, int(math.exp(rng.uniform(0, math.log(3.0 / q)))))
        steps = min(steps, 2000)
        delta = rng.choice([1e-3, 1e-6, 1e-10])
        vdi = min(1e-3, 1.0 / steps)
        for o in ("remove", "add"):
            e = _core.count_epsilon(sigma, q, steps, delta, o)
            floor = _pld_ordering_floor(sigma, q, steps, delta, vdi, o)
            assert e is not None and e >= floor, (sigma, q, steps, delta, o, e, floor)
        # and so is what the API returns (the larger ordering)
        assert edgeworth.epsilon(sigma, delta, steps, q) >= pld_eps([(sigma, q, steps)], delta, False, vdi)


def _pld_ordering_floor(sigma, q, steps, delta, vdi, ordering):
    p = pld_of(((sigma, q, steps),), False, vdi)
    pmf = p._pmf_remove if ordering == "remove" else p._pmf_add  # pylint: disable=protected-access
    return float(pmf.get_epsilon_for_delta(delta))


def test_not_tried_with_many_sampled_steps():
    # E[K] = q * steps > 64: the bound is loose there and is not computed
    assert _core.count_epsilon(1.0, 0.01, 10_000, 1e-5, "remove") is None
    assert _core.count_delta(1.0, 0.01, 6400, 1.0, "add") is not None


@pytest.mark.parametrize("kwargs,match", [
    (dict(sigma=1.0, q=0.1, steps=10, eps=-1.0, ordering="remove"), "eps must be"),
    (dict(sigma=1.0, q=0.1, steps=10, eps=1.0, ordering="both"), "ordering must be"),
    (dict(sigma=1.0, q=2.0, steps=10, eps=1.0, ordering="add"), "q"),
])
def test_bad_input_is_a_named_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _core.count_delta(**kwargs)


def test_answers_say_which_bound_gave_them():
    def answer(sigma, q, steps, delta, method="certified"):
        comp = _core.Composition()
        comp.add(_core.SubsampledGaussian(sigma, q), steps)
        return comp.epsilon(delta, method)
    one = answer(1.0, 1e-3, 1, 1e-5)
    assert one.source == "sampled_count" and one.certified
    assert one.value == max(_core.count_epsilon(1.0, 1e-3, 1, 1e-5, o) for o in ("remove", "add"))
    many = answer(1.0, 0.01, 1000, 1e-5)
    assert many.source == "characteristic_function" and many.certified
    assert many.value == edgeworth.epsilon(1.0, 1e-5, 1000, 0.01)
    est = answer(1.0, 0.01, 1000, 1e-5, "tilted")
    assert est.source == "estimate" and not est.certified
