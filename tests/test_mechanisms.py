"""The mechanisms beyond DP-SGD: the Gaussian mixture, the (subsampled) Laplace and the plain Gaussian.

References: the CGF and cumulants against mpmath quadrature (30 digits), a
closed form for the plain Gaussian (Balle and Wang, arXiv 1805.06530), and
dp_accounting's PLD (pessimistic: an upper bound on the truth; optimistic: a
lower bound) for eps.  A mixture with weights (1 - q, q) and means
(0, 1/sigma) is the subsampled Gaussian, and the core gives the same numbers
for both.
"""
import json
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import edgeworth
from edgeworth import Accountant, Gaussian, Laplace, MixtureOfGaussians, PoissonSubsampled, _core
from pld_reference import laplace_pld_eps, mixture_pld_eps


def composition(mech, count=1.0):
    c = _core.Composition()
    c.add(mech, float(count))
    return c


@mpmath.workdps(30)
def reference_cumulants(log_p, pllr, s, points):
    """K(s) and K'(s)..K^(4)(s) of the PLLR under P tilted by s, by mpmath quadrature."""
    s = mpmath.mpf(s)
    raw = [mpmath.quad(lambda x, k=k: mpmath.exp(log_p(x) + s * pllr(x)) * pllr(x) ** k, points) for k in range(5)]
    m = [r / raw[0] for r in raw]
    c = [mpmath.quad(lambda x, k=k: mpmath.exp(log_p(x) + s * pllr(x)) * (pllr(x) - m[1]) ** k, points) / raw[0]
         for k in range(5)]
    return float(mpmath.log(raw[0])), [float(m[1]), float(c[2]), float(c[3]), float(c[4] - 3 * c[2] ** 2)]


def mixture_reference(weights, means, s):
    w = [mpmath.mpf(x) for x in weights]
    mu = [mpmath.mpf(x) for x in means]

    def pllr(x):
        return mpmath.log(sum(wj * mpmath.exp(mj * x - mj * mj / 2) for wj, mj in zip(w, mu)))

    points = sorted({-mpmath.inf, mpmath.mpf(0), *mu, *[s * m for m in mu], mpmath.inf})
    return reference_cumulants(lambda x: -x * x / 2 - mpmath.log(2 * mpmath.pi) / 2, pllr, s, points)


def laplace_reference(b, q, s):
    b, q = mpmath.mpf(b), mpmath.mpf(q)

    def pllr(x):
        return mpmath.log(1 - q + q * mpmath.exp((abs(x) - abs(x - 1)) / b))

    return reference_cumulants(lambda x: -abs(x) / b - mpmath.log(2 * b), pllr, s,
                               [-mpmath.inf, 0, mpmath.mpf(1) / 2, 1, mpmath.inf])


def assert_cumulants(core, ref, rtol):
    assert core["cgf"] == pytest.approx(ref[0], rel=rtol, abs=1e-14)
    for got, want in zip(core["derivatives"][:4], ref[1]):
        assert got == pytest.approx(want, rel=rtol, abs=1e-14 * max(1.0, abs(ref[1][1])))


@pytest.mark.parametrize("weights, means", [
    ((0.9, 0.09, 0.01), (0.0, 0.5, 1.0)),        # ELS-like, k = 2
    ((0.5, 0.3, 0.2), (0.0, -1.0, 2.0)),         # means of both signs
    ((0.25, 0.75), (0.3, 1.7)),                  # no component at 0
])
@pytest.mark.parametrize("s", [-0.7, 0.35, 1.0, 2.5])
def test_mixture_cumulants_match_mpmath(weights, means, s):
    core = composition(_core.GaussianMixture(list(weights), list(means))).tilted(s, 4)
    assert_cumulants(core, mixture_reference(weights, means, s), 1e-9)


@pytest.mark.parametrize("b, q", [(1.0, 1.0), (0.5, 1.0), (3.0, 1.0), (0.2, 1.0), (1.0, 0.1), (0.4, 0.02)])
@pytest.mark.parametrize("s", [-0.7, 0.3, 1.0, 3.0])
def test_laplace_cumulants_match_mpmath(b, q, s):
    # q = 1 takes the closed form, q < 1 the quadrature
    core = composition(_core.SubsampledLaplace(b, q)).tilted(s, 4)
    assert_cumulants(core, laplace_reference(b, q, s), 1e-8)


@pytest.mark.parametrize("sigma, q", [(1.0, 0.01), (0.6, 0.2), (3.0, 0.5)])
def test_mixture_of_two_is_the_subsampled_gaussian(sigma, q):
    """Weights (1 - q, q), means (0, 1/sigma): the same pair, the same numbers."""
    sg = composition(_core.SubsampledGaussian(sigma, q), 500)
    gm = composition(_core.GaussianMixture([1 - q, q], [0.0, 1.0 / sigma]), 500)
    for s in (-0.5, 0.0, 0.5, 1.0, 4.0):
        a, b = sg.tilted(s, 5), gm.tilted(s, 5)
        assert b["cgf"] == pytest.approx(a["cgf"], rel=1e-10, abs=1e-15)
        assert b["derivatives"] == pytest.approx(a["derivatives"], rel=1e-8, abs=1e-15)
    assert gm.epsilon(1e-5, "edgeworth").value == pytest.approx(sg.epsilon(1e-5, "edgeworth").value, rel=1e-8)
    try:
        tilted = gm.epsilon(1e-5, "tilted").value
    except ValueError as exc:
        # where one saddle point is not enough, only the subsampled Gaussian has the exact fallback yet
        assert "exact fallback supports only the subsampled Gaussian" in str(exc)
    else:
        assert tilted == pytest.approx(sg.epsilon(1e-5, "tilted").value, rel=1e-8)
    m = _core.GaussianMixture([1 - q, q], [0.0, 1.0 / sigma])
    g = _core.SubsampledGaussian(sigma, q)
    for x in (-3.0, 0.0, 0.4, 2.0, 9.0):
        assert m.pllr(x) == pytest.approx(g.pllr(x), rel=1e-13, abs=1e-16)
        assert m.pllr_slope(x) == pytest.approx(g.pllr_slope(x), rel=1e-12, abs=1e-300)
    assert m.pllr_infimum() == pytest.approx(g.pllr_infimum(), rel=1e-15)
    # the Python value reduces such a mixture to the core's subsampled Gaussian (which has the CF bound)
    mog = MixtureOfGaussians(sigma, (0.0, 1.0), (1 - q, q))
    assert isinstance(mog.to_core(), _core.SubsampledGaussian)
    assert Accountant().compose(mechanism=mog, steps=500).epsilon(1e-5) == edgeworth.epsilon(sigma, 1e-5, 500, q)


def _mean(lo, hi):
    """A mixture mean: 0, or of magnitude >= 1e-100 (the core refuses smaller non-zero means)."""
    return st.floats(lo, hi).map(lambda m: m if abs(m) >= 1e-100 else 0.0)


@given(weights=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6),
       means=st.lists(_mean(0.0, 3.0), min_size=6, max_size=6),
       v=st.floats(-5.0, 20.0))
def test_mixture_pllr_inverse_round_trip(weights, means, v):
    w = np.array(weights) / np.sum(weights)
    mu = means[:len(w)]
    mu[-1] += 0.1  # at least one mean > 0
    m = _core.GaussianMixture(list(w), list(mu))
    x = m.pllr_inverse(v)
    if v <= m.pllr_infimum():
        assert x == -math.inf
    else:
        assert m.pllr(x) == pytest.approx(v, abs=1e-10 * (1 + abs(v)))
        assert m.pllr_slope(x) >= 0.0


@given(means=st.lists(_mean(-3.0, 3.0), min_size=2, max_size=5), x1=st.floats(-10, 10), x2=st.floats(-10, 10))
def test_mixture_pllr_is_convex_with_the_slope_between_the_means(means, x1, x2):
    if all(m == 0 for m in means):
        means[0] = 1.0
    w = [1.0 / len(means)] * len(means)
    m = _core.GaussianMixture(w, means)
    lo, hi = min(x1, x2), max(x1, x2)
    assert min(means) - 1e-12 <= m.pllr_slope(x1) <= max(means) + 1e-12
    assert m.pllr_slope(lo) <= m.pllr_slope(hi) + 1e-12
    mid = 0.5 * (lo + hi)
    assert m.pllr(mid) <= 0.5 * (m.pllr(lo) + m.pllr(hi)) + 1e-9 * (1 + abs(m.pllr(mid)))
    assert m.pllr(x1) >= m.pllr_infimum() - 1e-12


def test_mixture_with_a_negative_mean_has_no_inverse():
    with pytest.raises(ValueError, match="every mean >= 0"):
        _core.GaussianMixture([0.5, 0.5], [-1.0, 1.0]).pllr_inverse(0.3)


@pytest.mark.parametrize("sigma, steps", [(1.0, 1), (2.0, 10), (5.0, 100)])
def test_plain_gaussian_against_the_closed_form(sigma, steps):
    """steps Gaussian mechanisms are one with sigma / sqrt(steps): delta(eps) = Phi(-eps s + 1/(2s)) - e^eps
    Phi(-eps s - 1/(2s)), s = sigma / sqrt(steps) (Balle and Wang 2018, Thm. 8)."""
    s = sigma / math.sqrt(steps)

    def exact_delta(e):
        return 0.5 * math.erfc((e * s - 0.5 / s) / math.sqrt(2)) - math.exp(e) * 0.5 * math.erfc(
            (e * s + 0.5 / s) / math.sqrt(2))

    delta = 1e-6
    lo, hi = 0.0, 100.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        (lo, hi) = (mid, hi) if exact_delta(mid) > delta else (lo, mid)
    truth = hi
    acc = Accountant().compose(mechanism=Gaussian(sigma), steps=steps)
    assert acc.epsilon(delta) >= truth * (1 - 1e-9)                    # certified: never below the truth
    assert acc.epsilon(delta) <= truth * 1.25                          # and not far above it
    assert acc.epsilon(delta, method="tilted") == pytest.approx(truth, rel=1e-3)
    assert acc.delta(truth) >= delta * (1 - 1e-9)


@pytest.mark.parametrize("b, q, steps, delta", [(1.0, 1.0, 10, 1e-5), (2.0, 0.1, 200, 1e-6),
                                                (5.0, 0.05, 1000, 1e-6), (0.5, 0.02, 500, 1e-5)])
def test_laplace_against_pld(b, q, steps, delta):
    mech = Laplace(b) if q == 1.0 else PoissonSubsampled(Laplace(b), q)
    acc = Accountant().compose(mechanism=mech, steps=steps)
    upper = laplace_pld_eps(b, q, steps, delta, True, 1e-4)
    lower = laplace_pld_eps(b, q, steps, delta, False, 1e-4)
    certified = acc.epsilon(delta)
    assert certified >= lower
    assert certified <= 1.1 * upper  # the Chernoff bound: no characteristic-function bound for Laplace yet
    try:
        tilted = acc.epsilon(delta, method="tilted")
    except ValueError:
        assert q == 1.0  # ten pure Laplace steps: the estimate declines, as it should for a lattice-like loss
        return
    assert lower * (1 - 1e-3) <= tilted <= upper * (1 + 1e-3)


def test_laplace_alone_is_pure_dp():
    """One Laplace step is (1/b, 0)-DP: the certified eps stays at or below 1/b however small delta is."""
    acc = Accountant().compose(mechanism=Laplace(2.0), steps=1)
    assert acc.epsilon(1e-9) <= 0.5 * (1 + 1e-9)
    assert acc.epsilon(1e-9) >= 0.49


@pytest.mark.parametrize("sens, probs, steps", [((0.0, 1.0, 2.0), (0.9, 0.09, 0.01), 300),
                                                ((0.5, 1.5), (0.6, 0.4), 50)])
def test_general_mixture_against_pld(sens, probs, steps):
    sigma, delta = 4.0, 1e-6
    acc = Accountant().compose(mechanism=MixtureOfGaussians(sigma, sens, probs), steps=steps)
    upper = mixture_pld_eps(sigma, sens, probs, steps, delta, True, 1e-3)
    lower = mixture_pld_eps(sigma, sens, probs, steps, delta, False, 1e-3)
    assert acc.epsilon(delta) >= lower               # certified: never below a lower bound on the truth
    assert acc.epsilon(delta) <= 1.15 * upper        # the Chernoff bound (no CF bound for mixtures yet)
    tilted = acc.epsilon(delta, method="tilted")
    assert lower <= tilted <= upper * (1 + 1e-3)
    assert tilted == pytest.approx(upper, rel=2e-3)


def test_composition_mixes_mechanisms():
    """eps of a mixed ledger lies between its parts' and their sum's, and matches PLD's composition."""
    from dp_accounting.pld import privacy_loss_distribution as pldlib
    delta = 1e-6
    acc = Accountant().compose(1.0, 0.01, 1000)
    acc.compose(mechanism=PoissonSubsampled(Laplace(3.0), 0.05), steps=100)
    acc.compose(mechanism=MixtureOfGaussians(4.0, (0.0, 1.0, 2.0), (0.9, 0.09, 0.01)), steps=200)
    plds = [pldlib.from_gaussian_mechanism(1.0, sampling_prob=0.01, value_discretization_interval=1e-4).self_compose(1000),
            pldlib.from_laplace_mechanism(3.0, sampling_prob=0.05, value_discretization_interval=1e-4).self_compose(100),
            pldlib.from_mixture_gaussian_mechanism(4.0, [0.0, 1.0, 2.0], [0.9, 0.09, 0.01],
                                                   value_discretization_interval=1e-4).self_compose(200)]
    upper = plds[0].compose(plds[1]).compose(plds[2]).get_epsilon_for_delta(delta)
    tilted = acc.epsilon(delta, method="tilted")
    assert tilted == pytest.approx(upper, rel=2e-3)
    assert acc.epsilon(delta) >= tilted
    assert tilted > Accountant().compose(1.0, 0.01, 1000).epsilon(delta, method="tilted")
    # the Edgeworth point estimate answers on the mixed ledger too (not a bound: within 25 % here)
    assert acc.epsilon(delta, method="edgeworth") == pytest.approx(tilted, rel=0.25)
    state = acc.state_dict()
    again = Accountant()
    again.load_state_dict(state)
    assert again.history == acc.history and again.epsilon(delta) == acc.epsilon(delta)
    assert len(acc) == 1300
    details = acc.epsilon_details(delta)   # plain data, as for a DP-SGD ledger
    assert details.label == "certified" and details.value == acc.epsilon(delta)
    assert json.loads(json.dumps(details.as_dict()))["inputs"]["history"] == state["history"]


@pytest.mark.parametrize("make, match", [
    (lambda: _core.GaussianMixture([0.5, 0.6], [0.0, 1.0]), "sum to 1"),
    (lambda: _core.GaussianMixture([-0.1, 1.1], [0.0, 1.0]), "weights must be finite and >= 0"),
    (lambda: _core.GaussianMixture([0.5, 0.5], [0.0, math.inf]), "means must be finite"),
    (lambda: _core.GaussianMixture([1.0], [0.0]), "non-zero"),
    (lambda: _core.GaussianMixture([0.5], [0.0, 1.0]), "same length"),
    (lambda: _core.SubsampledLaplace(0.0, 0.5), r"scale \(Laplace noise scale b\) must be in \[0.01, 1e\+06\]"),
    (lambda: _core.SubsampledLaplace(1.0, 1.5), r"q \(sampling rate\) must be in \(0, 1\]"),
    (lambda: MixtureOfGaussians(1.0, (0.0, 1.0), (0.5, 0.5 + 1e-9)), "weights must sum to 1"),
    (lambda: MixtureOfGaussians(1.0, (0.0, 1.0), (-0.5, 1.5)), r"weights must be in \[0, 1\]"),
    (lambda: MixtureOfGaussians(1.0, (0.0, math.nan), (0.5, 0.5)), "sensitivities must be finite"),
    (lambda: MixtureOfGaussians(0.0, (0.0, 1.0), (0.5, 0.5)), r"sigma must be in \[0.01, 1e\+06\]"),
    (lambda: Laplace(-1.0), r"noise_multiplier \(Laplace scale b\) must be in \[0.01, 1e\+06\]"),
    (lambda: PoissonSubsampled(Laplace(1.0), 0.0), r"q must be in \[1e-12, 1\]"),
    (lambda: PoissonSubsampled("gaussian", 0.5), "mechanism must be"),
    (lambda: Accountant().compose(mechanism=Laplace(1.0), steps=0), "steps must be an integer >= 1"),
    (lambda: Accountant().compose(1.0, 0.1, mechanism=Laplace(1.0)), "not both"),
])
def test_bad_mechanism_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_weights_within_tolerance_are_accepted_and_renormalised():
    m = _core.GaussianMixture([0.5, 0.5 + 5e-13], [0.0, 1.0])
    assert math.fsum(m.weights) == pytest.approx(1.0, abs=1e-15)
    assert m.weights == [0.5, 0.5 + 5e-13] or m.weights[1] > m.weights[0]


@pytest.mark.parametrize("means", [[0.0, 2.2e-309], [1e-101, 1.0], [-5e-324, 1.0]])
def test_mixture_refuses_a_subnormal_or_negligible_mean(means):
    # such means made the loss's infimum and inverse NaN; now a named range error
    with pytest.raises(ValueError, match="means must be 0 or at least 1e-100 in magnitude"):
        _core.GaussianMixture([0.5, 0.5], means)
