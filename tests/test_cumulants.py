"""The CGF primitive against an independent mpmath reference (34 digits).

The reference integrates p(x) e^(s l(x)) l(x)^k over the real line with
tanh-sinh quadrature at 34 significant digits and converts raw moments to
cumulants in that precision, so it shares no code and no precision limits
with the C++ Gauss-Kronrod driver.
"""
import math

import mpmath
import numpy as np
import pytest

import edgeworth
from edgeworth import _core


@mpmath.workdps(34)  # local precision: other test modules use mpmath too
def reference_tilted(sigma, q, s):
    """K(s) and K'(s)..K^(5)(s) of the PLLR of the subsampled Gaussian, in mpmath."""
    mu, q, s = mpmath.mpf(1) / mpmath.mpf(sigma), mpmath.mpf(q), mpmath.mpf(s)

    def pllr(x):
        return mpmath.log(1 - q + q * mpmath.exp(mu * x - mu * mu / 2))

    points = sorted({-mpmath.inf, mpmath.mpf(0), mu, s * mu, mpmath.inf})
    raw = [mpmath.quad(lambda x, k=k: mpmath.npdf(x) * mpmath.exp(s * pllr(x)) * pllr(x) ** k, points)
           for k in range(6)]
    m = [r / raw[0] for r in raw]
    k1 = m[1]
    k2 = m[2] - m[1] ** 2
    k3 = m[3] - 3 * m[2] * m[1] + 2 * m[1] ** 3
    k4 = m[4] - 4 * m[3] * m[1] - 3 * m[2] ** 2 + 12 * m[2] * m[1] ** 2 - 6 * m[1] ** 4
    k5 = (m[5] - 5 * m[4] * m[1] - 10 * m[3] * m[2] + 20 * m[3] * m[1] ** 2 + 30 * m[2] ** 2 * m[1]
          - 60 * m[2] * m[1] ** 3 + 24 * m[1] ** 5)
    return float(mpmath.log(raw[0])), [float(k) for k in (k1, k2, k3, k4, k5)]


def core_tilted(sigma, q, s, order=5):
    comp = _core.Composition()
    comp.add(_core.SubsampledGaussian(sigma, q), 1.0)
    return comp.tilted(s, order)


# 24 (sigma, q) pairs spanning tiny and full sampling, heavy and light noise.
PAIRS = [(0.1, 1e-3), (0.15, 0.01),  # tiny sigma: the mean carries Q's mass near x = 1/sigma
         (0.3, 5e-4), (0.3, 0.01), (0.3, 0.2), (0.3, 1.0),
         (0.5, 5e-4), (0.5, 0.05), (0.5, 0.6),
         (0.8, 5e-4), (0.8, 0.01), (0.8, 0.3),
         (1.0, 1e-3), (1.0, 0.1), (1.0, 1.0),
         (2.0, 5e-4), (2.0, 0.02), (2.0, 0.9),
         (5.0, 1e-3), (5.0, 0.5),
         (20.0, 5e-4), (20.0, 0.01), (20.0, 0.6), (20.0, 1.0)]


def assert_cumulants_close(got, want, rtol=1e-9, floor=1e-20):
    # Relative to the reference; the absolute floor (in units of kappa_2^(r/2),
    # i.e. on the standardised cumulant) only matters where the true cumulant
    # is (nearly) zero.
    scale = want[1]
    for r, (g, w) in enumerate(zip(got, want), start=1):
        assert abs(g - w) <= rtol * abs(w) + floor * scale ** (r / 2), (r, g, w)


@pytest.mark.parametrize("sigma,q", PAIRS)
@pytest.mark.parametrize("s", [0, 1], ids=["X(s=0)", "Y(s=1)"])
def test_cumulants_match_mpmath(sigma, q, s):
    _, want = reference_tilted(sigma, q, s)
    got = core_tilted(sigma, q, s)
    assert got["cgf"] == 0.0  # K(0) = K(1) = 0 exactly: E_P[1] = E_P[q/p] = 1
    assert_cumulants_close(got["derivatives"], want)


@pytest.mark.parametrize("sigma,q,s", [(0.8, 0.01, -3.0), (0.8, 0.01, 0.5), (0.8, 0.01, 20.0),
                                       (0.5, 0.2, -12.0), (1.5, 1e-3, 60.0), (3.0, 0.05, 7.5)])
def test_cgf_at_any_tilt_matches_mpmath(sigma, q, s):
    want_k, want = reference_tilted(sigma, q, s)
    got = core_tilted(sigma, q, s)
    assert abs(got["cgf"] - want_k) <= 1e-12 * max(1.0, abs(want_k))
    assert got["cgf_error"] < 1e-11
    # away from s = 0, 1 a tilted cumulant can be ~0 (e.g. kappa_3 between two modes)
    assert_cumulants_close(got["derivatives"], want, floor=1e-12)


# Background, section 2: kappa_1..kappa_4 of X and Y, to the 7 digits printed.
BACKGROUND = [
    (0.01, 0.8, [-1.671653e-4, 3.171047e-4, 4.707668e-5, 1.619817e-5],
     [1.766525e-4, 3.742798e-4, 6.981175e-5, 3.172822e-5]),
    (2000 / 67349, 0.7865, [-1.340540e-3, 2.389767e-3, 7.392145e-4, 4.409551e-4],
     [1.513746e-3, 3.441768e-3, 1.494420e-3, 1.247610e-3]),
    (2000 / 392702, 0.573, [-1.756536e-4, 3.062732e-4, 1.073737e-4, 8.342005e-5],
     [2.043668e-4, 4.828973e-4, 2.907324e-4, 3.729307e-4]),
    (0.005, 0.8, [-4.402432e-5, 8.534651e-5, 7.615033e-6, 1.787553e-6],
     [4.546566e-5, 9.401362e-5, 9.910741e-6, 2.952055e-6]),
]


@pytest.mark.parametrize("q,sigma,x,y", BACKGROUND)
def test_background_cumulant_table(q, sigma, x, y):
    c = edgeworth.privacy_loss_cumulants(sigma, q)["remove"]
    for got, want in zip(c["x"][:4] + c["y"][:4], x + y):
        assert abs(got - want) <= 5.1e-7 * abs(want)  # half a unit in the 7th digit


@pytest.mark.parametrize("sigma,q", [(0.7, 0.02), (1.3, 0.5), (4.0, 1e-3)])
def test_exact_relations(sigma, q):
    c = edgeworth.privacy_loss_cumulants(sigma, q)
    rm, add = c["remove"], c["add"]
    # E[X] = -KL(P||Q) < 0 < E[Y] = KL(Q||P)
    assert rm["x"][0] < 0 < rm["y"][0]
    # swapping P and Q: X_add = -Y, Y_add = -X
    for j in range(5):
        sign = -1 if j % 2 == 0 else 1
        assert add["x"][j] == sign * rm["y"][j]
        assert add["y"][j] == sign * rm["x"][j]
    comp = _core.Composition()
    comp.add(_core.SubsampledGaussian(sigma, q), 1.0)
    for t in (0.3, 2.0, 9.0):
        # K_Y(t) = K_X(t + 1) in the remove ordering, K_X'(t) = K_X(1 - t) in the add ordering
        ky = comp.loss_cgf("remove", "y", t, 1)
        kx = comp.loss_cgf("remove", "x", t + 1, 1)
        assert ky["cgf"] == kx["cgf"] and ky["derivatives"] == kx["derivatives"]
        kadd = comp.loss_cgf("add", "x", t, 1)
        k1mt = comp.tilted(1 - t, 1)
        assert kadd["cgf"] == k1mt["cgf"] and kadd["derivatives"][0] == -k1mt["derivatives"][0]


@pytest.mark.parametrize("sigma", [0.3, 1.0, 20.0])
def test_plain_gaussian_closed_form(sigma):
    # q = 1: X ~ N(-mu^2/2, mu^2), Y ~ N(mu^2/2, mu^2) with mu = 1/sigma.
    mu2 = 1.0 / sigma ** 2
    c = edgeworth.privacy_loss_cumulants(sigma, 1.0)["remove"]
    assert c["x"] == pytest.approx([-mu2 / 2, mu2, 0, 0, 0], rel=1e-15, abs=0)
    assert c["y"] == pytest.approx([mu2 / 2, mu2, 0, 0, 0], rel=1e-15, abs=0)


def test_cumulants_and_cgf_add_over_steps_and_segments():
    one = edgeworth.privacy_loss_cumulants(0.9, 0.03, steps=1)["remove"]
    many = edgeworth.privacy_loss_cumulants(0.9, 0.03, steps=777)["remove"]
    np.testing.assert_allclose(many["x"], 777 * np.array(one["x"]), rtol=1e-14)
    comp = _core.Composition()
    comp.add(_core.SubsampledGaussian(0.9, 0.03), 5.0)
    comp.add(_core.SubsampledGaussian(2.0, 0.5), 3.0)
    a, b = core_tilted(0.9, 0.03, 2.5), core_tilted(2.0, 0.5, 2.5)
    got = comp.tilted(2.5, 5)
    assert got["cgf"] == pytest.approx(5 * a["cgf"] + 3 * b["cgf"], rel=1e-14)
    np.testing.assert_allclose(got["derivatives"], 5 * np.array(a["derivatives"]) + 3 * np.array(b["derivatives"]),
                               rtol=1e-14)


def test_tiny_sampling_rate_keeps_relative_accuracy():
    # kappa_1 ~ -q^2 (e^(mu^2) - 1) / 2: an absolute tolerance would lose it entirely.
    sigma, q = 1.0, 1e-6
    _, want = reference_tilted(sigma, q, 0)
    got = core_tilted(sigma, q, 0)["derivatives"]
    assert_cumulants_close(got, want)
    assert got[0] == pytest.approx(-q * q * math.expm1(1.0) / 2, rel=1e-5)


# Large sigma with tiny q puts the point where l turns linear far from the mass
# (x ~ 9200 for sigma = 1000, q = 1e-4).  A panel reaching out to it once made the
# quadrature miss ~1 % of the mass and report K < 0 (and certified eps = 0).
EXTREME_TILTS = [(1000.0, 1e-4, 2300.0), (1000.0, 1e-4, -300.0), (100.0, 1e-6, 500.0), (20.0, 1e-7, 50.0),
                 (4.0, 1e-3, 40.0), (0.5, 0.2, -20.0)]


@pytest.mark.parametrize("sigma,q,s", EXTREME_TILTS)
def test_cgf_at_extreme_tilts_matches_mpmath(sigma, q, s):
    want_k, want = reference_tilted(sigma, q, s)
    got = core_tilted(sigma, q, s, order=1)
    assert abs(got["cgf"] - want_k) <= 1e-7 * abs(want_k) + 1e-15, (got["cgf"], want_k)
    assert abs(got["derivatives"][0] - want[0]) <= 1e-7 * abs(want[0]) + 1e-12 * math.sqrt(abs(want[1]))
