"""Certified values are never below the truth, at the edges of the accepted range (issue 16).

The truth is bounded from below by an independent mpmath computation that shares nothing with the core: for any set
A, the hockey-stick divergence H_a(Q^n || P^n) >= Q^n(A) - a P^n(A).  With A = {max_i x_i > c} (remove ordering) or
{min_i x_i < c} (add ordering) this is a closed form in normal CDFs, exact for one step when c solves l(c) = eps
(resp. -eps), and a valid lower bound for every c and every number of steps.  For q = 1 the n-step curve is the
Gaussian mechanism's closed form with mu = sqrt(n) / sigma.  A certified eps e at delta is then wrong as soon as the
lower bound on delta(e) exceeds delta; a certified delta d at eps as soon as the lower bound on delta(eps) exceeds d.
"""
import math

import mpmath as mp
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import edgeworth as ew
from edgeworth import _core, userlevel

REL = 1e-9  # slack for the reference's own rounding to doubles


def _ncdf_lo(x):
    """A lower bound on Phi(x): mpmath's value, or Gordon's bounds on the tail where erfc's series overflows."""
    if abs(x) < 1e4:
        return mp.ncdf(x)
    pdf = mp.npdf(x)
    return pdf * abs(x) / (x * x + 1) if x < 0 else 1 - pdf / x


def _ncdf_hi(x):
    if abs(x) < 1e4:
        return mp.ncdf(x)
    pdf = mp.npdf(x)
    return pdf / abs(x) if x < 0 else 1 - pdf * x / (x * x + 1)


def delta_lower(weights, means, steps, eps):
    """A lower bound on the true delta(eps) of `steps` steps of P = N(0, 1) against Q = sum_j w_j N(m_j, 1), all
    m_j >= 0, the larger of both orderings (exact for one step).  The precision grows with the smallest weight: the
    add ordering's Q(A) - a P(A) cancels to about that weight (at 50 digits, a weight of 1e-43 came out 2.3e-9 relative
    too large, above the exact TV distance)."""
    tiny = min((x for x in weights if x > 0), default=1.0)
    with mp.workdps(50 + max(0, int(-math.log10(tiny)))):
        w = [mp.mpf(x) for x in weights]
        w = [x / mp.fsum(w) for x in w]  # (as the core does: weights of doubles sum to 1 only within rounding)
        m = [mp.mpf(x) for x in means]
        comps = [(wi, mi) for wi, mi in zip(w, m) if wi > 0]
        n = int(steps)
        a = mp.exp(mp.mpf(eps))

        def some(p):  # P(at least one of n draws), p the one-draw probability
            return 1 if p >= 1 else -mp.expm1(n * mp.log1p(-p))

        def remove(c):
            return some(mp.fsum(wi * _ncdf_lo(mi - c) for wi, mi in comps)) - a * some(_ncdf_hi(-c))

        def add(c):
            return some(_ncdf_lo(c)) - a * some(mp.fsum(wi * _ncdf_hi(c - mi) for wi, mi in comps))

        def loss(x):
            zs = [mp.log(wi) + mi * x - mi * mi / 2 for wi, mi in comps]
            top = max(zs)
            return top + mp.log(mp.fsum(mp.exp(z - top) for z in zs))

        def slope(x):
            zs = [mp.log(wi) + mi * x - mi * mi / 2 for wi, mi in comps]
            top = max(zs)
            e = [mp.exp(z - top) for z in zs]
            return mp.fsum(ei * mi for ei, (_, mi) in zip(e, comps)) / mp.fsum(e)

        def root(target):
            # the loss is convex, increasing and above each line log w_j + m_j x - m_j^2 / 2: Newton from the
            # smallest of the lines' roots stays at or right of the root
            x = min((target - mp.log(wi) + mi * mi / 2) / mi for wi, mi in comps if mi > 0)
            for _ in range(100):
                s = slope(x)
                if s <= 0:
                    return None
                nx = x - (loss(x) - target) / s
                if abs(nx - x) <= mp.mpf(10) ** -30 * (1 + abs(x)):
                    return nx
                x = nx
                if x < -1e4:
                    return None  # no root: the loss stays above the target
            return x

        best = mp.mpf(0)
        for f, target in ((remove, mp.mpf(eps)), (add, -mp.mpf(eps))):
            x = root(target)
            if x is None:
                continue
            best = max(best, f(x))
            if n > 1:  # the cut of the n-step maximum: golden-section search near the one-step one
                span = 10 + abs(x) * mp.mpf("1e-3")
                lo, hi = x - span, x + span
                g = (mp.sqrt(5) - 1) / 2
                c1, c2 = hi - g * (hi - lo), lo + g * (hi - lo)
                f1, f2 = f(c1), f(c2)
                for _ in range(60):
                    if f1 > f2:
                        hi, c2, f2 = c2, c1, f1
                        c1 = hi - g * (hi - lo)
                        f1 = f(c1)
                    else:
                        lo, c1, f1 = c1, c2, f2
                        c2 = lo + g * (hi - lo)
                        f2 = f(c2)
                best = max(best, f1, f2)
        return float(best)


def gaussian_delta(mu, eps):
    """The Gaussian mechanism's exact delta(eps), N(mu, 1) against N(0, 1)."""
    with mp.workdps(60):
        mu, e = mp.mpf(mu), mp.mpf(eps)
        return float(mp.ncdf(-e / mu + mu / 2) - mp.exp(e) * mp.ncdf(-e / mu - mu / 2))


def dpsgd_delta_lower(sigma, q, steps, eps):
    if q == 1.0:
        return gaussian_delta(math.sqrt(steps) / sigma, eps)
    with mp.workdps(50):
        return delta_lower([1 - mp.mpf(q), mp.mpf(q)], [0.0, 1.0 / sigma], steps, eps)


def one_step_eps_truth(weights, means, delta):
    """The exact one-step eps at delta (bisection on the exact curve)."""
    lo, hi = 0.0, 1.0
    while delta_lower(weights, means, 1, hi) > delta:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if delta_lower(weights, means, 1, mid) > delta else (lo, mid)
    return hi


def check_eps(eps, delta, lower):
    """eps certified at delta is not below the truth: the truth's delta at eps is at most delta."""
    if math.isinf(eps):
        return
    assert lower(eps) <= delta * (1 + REL), (eps, delta, lower(eps))


def check_delta(d, eps, lower):
    low = lower(eps)
    assert d >= low * (1 - REL), (d, eps, low)


# --- the edges of the documented range, explicitly -------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.01, 0.02, 0.025, 0.03, 0.05])
@pytest.mark.parametrize("q", [1e-12, 1e-6, 0.01, 0.5, 1.0])
@pytest.mark.parametrize("delta", [1e-300, 1e-5, 0.5])
def test_certified_not_below_truth_at_the_edges(sigma, q, delta):
    eps = ew.epsilon(sigma, delta, 1, q)
    lower = lambda e: dpsgd_delta_lower(sigma, q, 1, e)  # noqa: E731
    check_eps(eps, delta, lower)
    for e in (1.0, 720.0, 1000.0):
        check_delta(ew.delta(sigma, e, 1, q), e, lower)


# --- random draws over the whole range -------------------------------------------------------------------------------

_log = lambda lo, hi: st.floats(math.log10(lo), math.log10(hi)).map(lambda x: 10.0 ** x)  # noqa: E731


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sigma=_log(0.01, 0.1), q=st.one_of(st.just(1.0), _log(1e-12, 1.0)), steps=st.integers(1, 100),
       delta=_log(1e-300, 0.5), eps=st.floats(0.0, 1000.0))
def test_certified_dpsgd_not_below_truth(sigma, q, steps, delta, eps):
    sigma, q = min(max(sigma, 0.01), 0.1), min(q, 1.0)
    lower = lambda e: dpsgd_delta_lower(sigma, q, steps, e)  # noqa: E731
    check_eps(ew.epsilon(sigma, delta, steps, q), delta, lower)
    check_delta(ew.delta(sigma, eps, steps, q), eps, lower)


_mean = st.one_of(st.just(0.0), _log(1e-3, 1e300))
_weight = _log(1e-300, 1.0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(means=st.lists(_mean, min_size=2, max_size=3, unique=True), raw=st.lists(_weight, min_size=3, max_size=3),
       steps=st.integers(1, 10), delta=_log(1e-300, 0.5), eps=st.floats(0.0, 1000.0))
# found in CI: a component of weight 1e-23 made the characteristic-function bound's saddle-point condition
# infinite, TOMS748 stepped to a NaN tilt, and the certified eps raised "tilt s must be finite" (it declines now)
@example(means=[0.0, 1.0], raw=[1.0, 1e-23, 1.0], steps=1, delta=1e-24, eps=0.0)
def test_certified_mixture_not_below_truth(means, raw, steps, delta, eps):
    if not any(m > 0 for m in means):
        means = means + [1.0]
    raw = (raw * 2)[:len(means)]
    total = math.fsum(raw)
    weights = [x / total for x in raw]
    weights[int(np.argmax(weights))] += 1.0 - math.fsum(weights)  # sum 1 to rounding
    if not any(w > 0 and m > 0 for w, m in zip(weights, means)):
        return
    acct = ew.Accountant().compose(mechanism=ew.MixtureOfGaussians(1.0, tuple(means), tuple(weights)), steps=steps)
    lower = lambda e: delta_lower(weights, means, steps, e)  # noqa: E731
    check_eps(acct.epsilon(delta), delta, lower)
    check_delta(acct.delta(eps), eps, lower)


# --- the repros of issue 16 (each failed before the fix) -------------------------------------------------------------

@pytest.mark.parametrize("sigma, delta, q", [(0.025, 1e-5, 0.5), (0.02, 1e-5, 0.01), (0.01, 1e-5, 0.5),
                                             (0.01, 1e-300, 1e-12)])
def test_one_step_eps_is_the_exact_curve_past_709(sigma, delta, q):
    # was 709.09, 705.18, 709.09 and 682.15 (e^eps overflowed); the truths are 962.65, 1398.9, 5409.1 and ~8600
    truth = one_step_eps_truth([1 - q, q], [0.0, 1.0 / sigma], delta)
    for method in ("certified", "tilted"):
        eps = ew.epsilon(sigma, delta, 1, q, method=method)
        assert truth <= eps <= truth * (1 + 1e-6), (method, eps, truth)


def test_ten_steps_eps_past_709():
    # was 709.78; one step alone needs 1454
    eps = ew.epsilon(0.02, 1e-5, 10, 0.5)
    check_eps(eps, 1e-5, lambda e: dpsgd_delta_lower(0.02, 0.5, 10, e))
    assert eps > one_step_eps_truth([0.5, 0.5], [0.0, 50.0], 1e-5)


@pytest.mark.parametrize("sigma, eps", [(0.02, 720.0), (0.025, 800.0)])
def test_one_step_delta_past_709(sigma, eps):
    # was 0.0; the truths are 0.5 and 0.2416
    truth = dpsgd_delta_lower(sigma, 0.5, 1, eps)
    assert truth > 0.2
    assert truth <= ew.delta(sigma, eps, 1, 0.5) <= truth * (1 + 1e-6)


def test_noise_multiplier_past_709():
    # claimed the target was met even at sigma = 0.01, where the true eps is 5409
    sigma = ew.noise_multiplier(720.0, 1e-5, 1, 0.5)
    assert sigma > 0.02
    check_eps(720.0, 1e-5, lambda e: dpsgd_delta_lower(sigma, 0.5, 1, e))


def test_userlevel_eps_past_709():
    # was 709.72: the ELS mixture at sigma 0.01, k = 4, means j / 0.01
    k, q, sigma = 4, 0.5, 0.01
    weights = [math.comb(k, j) * q ** j * (1 - q) ** (k - j) for j in range(k + 1)]
    eps = userlevel.epsilon(sigma=sigma, delta=1e-6, steps=1, q=q, contribution_bound=k)
    check_eps(eps, 1e-6, lambda e: delta_lower(weights, [j / sigma for j in range(k + 1)], 1, e))
    assert eps > 1e4


def test_mixture_with_infinite_loss_has_infinite_eps():
    # was 3.059: a quarter of Q's mass has no overlap with P
    acct = ew.Accountant().compose(mechanism=ew.MixtureOfGaussians(1.0, (0, 1, 1e300), (.5, .25, .25)), steps=1)
    assert acct.epsilon(1e-5) == math.inf
    assert acct.delta(5.0) >= 0.25
    c = _core.Composition()
    c.add(_core.GaussianMixture([.5, .5], [0., 1e300]), 1)  # was 0.6931
    assert c.epsilon(1e-5).value == math.inf
    assert c.delta(1000.0).value >= 0.5
    with pytest.raises(ValueError, match="mixture mean exceeds"):
        c.epsilon(1e-5, method="tilted")


def test_mixture_mean_40():
    # was 709.09, against 955.4
    acct = ew.Accountant().compose(mechanism=ew.MixtureOfGaussians(1.0, (0, 1, 40), (.5, .25, .25)), steps=1)
    eps = acct.epsilon(1e-5)
    check_eps(eps, 1e-5, lambda e: delta_lower([.5, .25, .25], [0, 1, 40], 1, e))
    assert eps > 955.0


def test_mixture_weight_1e_300():
    # weights as small as 1e-300, in the general mixture and as a subsampling rate below Q_MIN
    acct = ew.Accountant().compose(mechanism=ew.MixtureOfGaussians(1.0, (0, 1, 50), (.5, .5 - 1e-300, 1e-300)), steps=3)
    eps = acct.epsilon(1e-5)
    check_eps(eps, 1e-5, lambda e: delta_lower([.5, .5, 1e-300], [0, 1, 50], 3, e))
    assert math.isfinite(eps)  # (the 1e-300 component does not make it vacuous)
    tiny = ew.Accountant().compose(mechanism=ew.MixtureOfGaussians(1.0, (0, 1), (1.0, 1e-300)), steps=1)
    assert tiny.epsilon(1e-5) == 0.0  # its delta(0) is the total variation, ~1e-300


def test_mixture_error_names_what_was_passed():
    # a shift of 1000 noise units made a SubsampledGaussian with sigma = 0.001: the error named sigma
    acct = ew.Accountant().compose(mechanism=ew.MixtureOfGaussians(1.0, (0, 1000), (.5, .5)), steps=1)
    check_eps(acct.epsilon(1e-5), 1e-5, lambda e: delta_lower([.5, .5], [0, 1000], 1, e))
    with pytest.raises(ValueError, match="sensitivities / noise_multiplier"):
        ew.MixtureOfGaussians(1e6, (0, 1e-95), (.5, .5)).to_core()


def test_pllr_inverse_nan_is_an_error():
    with pytest.raises(ValueError, match="v .*NaN"):
        _core.SubsampledGaussian(1, .01).pllr_inverse(float("nan"))
    with pytest.raises(ValueError, match="v .*NaN"):
        _core.GaussianMixture([.5, .5], [0., 1.]).pllr_inverse(float("nan"))


@pytest.mark.parametrize("scale", [1e-300, 1e-3, 2e6, math.inf, math.nan])
def test_laplace_scale_range(scale):
    with pytest.raises(ValueError, match=r"scale .*\[0.01, 1e\+06\]"):
        ew.Laplace(scale)
    with pytest.raises(ValueError, match=r"scale .*\[0.01, 1e\+06\]"):
        _core.SubsampledLaplace(scale, 1.0)


def test_laplace_scale_ends():
    # pure eps = 1 / b: the certified eps at the ends of the range is within it
    for b in (0.01, 1e6):
        eps = ew.Accountant().compose(mechanism=ew.Laplace(b), steps=1).epsilon(1e-5)
        assert 0.0 <= eps <= 1.0 / b


# -- the Gaussian's tail, where Phi(-a) and e^eps Phi(-b) agree to many digits ---------------------------------


def _gaussian_hockey_stick(eps, mu):
    """delta(eps) of the Gaussian mechanism with mean shift mu, at 80 digits (the closed form)."""
    with mp.workdps(80):
        eps, mu = mp.mpf(eps), mp.mpf(mu)
        return mp.ncdf(-eps / mu + mu / 2) - mp.exp(eps) * mp.ncdf(-eps / mu - mu / 2)


@pytest.mark.parametrize("sigma", [1e6, 1e3, 1.0, 0.05])
@pytest.mark.parametrize("a", [29.5, 30.0, 33.0, 36.99, 37.0, 37.01, 37.5, 38.0])
def test_gaussian_tail_delta_is_a_tight_upper_bound(sigma, a):
    # eps where a = eps / mu - mu / 2 crosses 37: the one-step curve there used Gordon's bound Phi(-a) alone,
    # which at sigma 1e6 is 1e6 times the truth, so delta(eps) rose again with eps and the certified eps at
    # delta 1.03e-300 was 1.3 % above the one at 1e-300 (found by test_eps_monotone_whole_range).
    mu = 1.0 / sigma
    eps = mu * (a + mu / 2)
    truth = _gaussian_hockey_stick(eps, mu)
    got = ew.delta(sigma, eps, 1, 1.0)
    assert got >= truth
    if a >= 30 and truth > 1e-300:  # from a = 30 the curve is free of cancellation (csrc/sampled_count.hpp)
        assert got <= truth * (1 + 1e-8)


@pytest.mark.parametrize("delta", [1e-300, 1.03125e-300, 1e-305, 2e-308])
def test_gaussian_eps_at_tiny_delta_is_monotone_and_tight(delta):
    sigma = 1e6
    mu = 1.0 / sigma
    lo, hi = mp.mpf(0), mp.mpf("1e-3")
    with mp.workdps(80):
        for _ in range(120):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _gaussian_hockey_stick(mid, mu) > delta else (lo, mid)
    got = ew.epsilon(sigma, delta, 1, 1.0)
    assert float(hi) <= got <= float(hi) * (1 + 1e-9)
    assert ew.epsilon(sigma, delta * 1.03125, 1, 1.0) <= got


# --- issue 18: the inversion of ELS mixtures (a small alias order; the truncated bound of a mixture) ---------------

def _els(k, sigma, q):
    return [float(w) for w in userlevel.binomial_weights(k, q)], [j / sigma for j in range(k + 1)]


@pytest.mark.parametrize("k,sigma,q,steps,delta", [
    (16, 2.65837, 0.00121865, 188, 1e-6),  # the truncated bound of the mixture answers (was 1.9153 by Chernoff)
    (8, 0.943416, 0.00281571, 210, 1e-6),  # the truncated bound (was 10.507)
    (8, 1.0, 0.01, 1000, 1e-6),            # the plain inversion with the alias order 1/8 (was 25.22)
    (16, 1.0, 0.01, 1000, 1e-6),           # alias order 1/32
    (4, 0.8, 3e-3, 40, 1e-9),
])
def test_els_certified_not_below_truth(k, sigma, q, steps, delta):
    weights, means = _els(k, sigma, q)
    eps = userlevel.epsilon(sigma=sigma, delta=delta, steps=steps, q=q, contribution_bound=k)
    check_eps(eps, delta, lambda e: delta_lower(weights, means, steps, e))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(2, 16), sigma=_log(0.8, 4.0), q=_log(1e-4, 1e-2), steps=st.integers(1, 300),
       delta=_log(1e-10, 1e-4))
def test_els_few_sampled_steps_not_below_truth(k, sigma, q, steps, delta):
    # few sampled steps: there the lower bound {max x_i > c} is close to the truth, and the truncated bound answers
    weights, means = _els(k, sigma, q)
    eps = userlevel.epsilon(sigma=sigma, delta=delta, steps=steps, q=q, contribution_bound=k)
    check_eps(eps, delta, lambda e: delta_lower(weights, means, steps, e))


# -- a small CGF: K(s) accurate relative to itself, and its error bound honest ----------------------------------


def cgf_mp(sigma, q, s):
    """K(s) = log E_P[(q/p)^s] of one subsampled-Gaussian step, directly (log of the tilted integral) at 60 digits,
    split at 0, mu, s mu (the tilted q-part's mode) and 1/mu log((1 - q)/q) + mu/2 (where l turns linear), and 10 to
    either side of each (tanh-sinh clusters its nodes at the ends of each piece)."""
    with mp.workdps(60):
        mu, q, s = 1 / mp.mpf(sigma), mp.mpf(q), mp.mpf(s)

        def f(x):
            return mp.npdf(x) * mp.exp(s * mp.log(1 - q + q * mp.exp(mu * x - mu * mu / 2)))
        cuts = {0.0, float(mu), float(s * mu)}
        if q < 1:
            cuts.add(float(mp.log((1 - q) / q) / mu + mu / 2))
        pts = sorted({c + d for c in cuts for d in (-10.0, 0.0, 10.0)})
        return mp.log(mp.quad(f, [-mp.inf] + pts + [mp.inf]))


@pytest.mark.parametrize("sigma, q", [(0.58, 1.3e-6), (1.0, 1e-12), (0.05, 1e-6), (1e3, 0.5)])
@pytest.mark.parametrize("s", [1 + 2.0 ** -20, 2.0, -1e-6, -0.5])
def test_small_cgf_is_accurate_relative_to_itself(sigma, q, s):
    # One step's K(s) at the Chernoff bound's tilts (s = 1 + t, s = -t) is as small as 1e-30 here.  As the log of an
    # integral near 1 it was accurate to ~1e-16 absolute only (1e-5 relative at q = 1e-6), and 2^53 steps multiply
    # that: the bound's margin then moved certified values by tens of percent (docs/robustness.md).  Now the error
    # is relative to K, and the margin's share of one step, 10 * cgf_error + 64 ulp |K| (csrc/bounds.hpp), covers it.
    c = _core.Composition()
    c.add(_core.SubsampledGaussian(sigma, q), 1)
    got = c.tilted(s, 0)
    truth = cgf_mp(sigma, q, s)
    err = abs(mp.mpf(got["cgf"]) - truth)
    assert err <= 1e-12 * abs(truth)
    assert err <= 10 * got["cgf_error"] + 64 * np.finfo(float).eps * abs(got["cgf"])


def test_cgf_sees_mass_at_the_end_of_a_wide_panel():
    # At this tilt the q-part of the tilted integrand peaks at s mu = 17761 (e^-48 of P's peak), so the panel from
    # mu to there held P's mass within a node spacing of its left end: no node saw it, the panel "converged" on ~0,
    # K came out as log(1/2) < 0 and the remove ordering's certified eps at 2^53 - 1 steps as 0 (found by
    # test_sigma_monotone_whole_range: the add ordering answered 1.0e-6, against the remove ordering's 1.38e-6).
    sigma, q, s = 321.3970874748554, 1e-12, 1 + 5708351.0173082575
    c = _core.Composition()
    c.add(_core.SubsampledGaussian(sigma, q), 1)
    got = c.tilted(s, 0)["cgf"]
    assert got == pytest.approx(float(cgf_mp(sigma, q, s)), rel=1e-9, abs=0.0)
    big = _core.Composition()
    big.add(_core.SubsampledGaussian(sigma, q), 2.0 ** 53 - 1)
    a = big.epsilon(1e-10)
    # Since the characteristic-function bound's rounding charge scales with the phases, it answers here (it
    # declined, and the Chernoff bound's 1.382e-6 stood), for both orderings, at the central-limit value: with ~9000
    # sampled steps of a loss this small the composition is mu-GDP, mu = q sqrt(n (e^(1 / sigma^2) - 1)), whose eps at
    # 1e-10 is 8.9594e-7 (mpmath, bisection); certified 8.9603e-7.
    with mp.workdps(40):
        steps = mp.mpf(2) ** 53 - 1
        mu = mp.mpf(q) * mp.sqrt(steps * mp.expm1(1 / mp.mpf(sigma) ** 2))

        def gdp_delta(e):
            return mp.ncdf(-e / mu + mu / 2) - mp.exp(e) * mp.ncdf(-e / mu - mu / 2)
        lo, hi = mp.mpf(1e-8), mp.mpf(1e-5)
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if gdp_delta(mid) > 1e-10 else (lo, mid)
        gdp = float(hi)
    assert gdp * (1 - 1e-3) <= a.value <= gdp * (1 + 1e-3)


@pytest.mark.parametrize("weight", [1e-165, 1e-250, 1e-300])
@pytest.mark.parametrize("mean", [1.0, 30.0])
def test_delta_at_zero_eps_with_a_tiny_mixture_weight(weight, mean):
    # delta(0) searched for the smallest delta whose certified eps is 0 by a geometric bisection, whose midpoint
    # sqrt(lo * hi) underflowed to 0 below delta ~1e-154: it raised "delta must be in (0, 1), got 0" (found by
    # test_certified_mixture_not_below_truth under random draws).  At eps = 0 delta is the total variation distance,
    # weight * (2 Phi(mean / 2) - 1) in closed form.
    acct = ew.Accountant().compose(mechanism=ew.MixtureOfGaussians(1.0, (0.0, mean), (1.0 - weight, weight)), steps=1)
    with mp.workdps(40):
        truth = float(mp.mpf(weight) * mp.erf(mp.mpf(mean) / 2 / mp.sqrt(2)))
    d = acct.delta(0.0)
    assert truth <= d <= truth * (1 + 1e-6)
    assert acct.epsilon(d) == 0.0
