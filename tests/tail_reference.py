"""An independent reference for delta(eps) of DP-SGD's remove ordering deep in the tail (delta 1e-12 to 1e-60).

dp_accounting's PLD cannot resolve these deltas (its FFT's noise is larger), so the tests of
test_monotonicity.py compare with this: an estimate accurate to about 1e-5 relative, built by a
route the library does not take.

delta(eps) = E_Q[(1 - e^(eps - S))_+], S the sum of T losses l(x), x ~ Q = (1 - q) N(0, 1) + q N(mu, 1),
l(x) = log(1 - q + q e^(mu x - mu^2 / 2)).  Each step is cut at x_tau (l(x_tau) = ell_tau) into a small
part and a large one; with K the number of large steps (binomial),

    delta = sum_k P(K = k) E[(1 - e^(eps - S_small(T - k) - L_1 - ... - L_k))_+].

- k = 0: the density of S_small at s >= eps by exponential tilting (tilt theta with tilted mean eps) and
  a direct Fourier inversion of the tilted sum's characteristic function (one step's by 24-point
  Gauss-Legendre on panels 0.02 wide);
- k = 1, 2: S_small's density (untilted inversion) against H_k(z) = E[(1 - e^(z - L_1 - .. - L_k))_+], by
  scipy's adaptive quadrature over x (k = 1) and a spline of log H_1 (k = 2); k >= 3 is left out (its
  weight, P(K = 3), is printed by the tests' callers where it could matter).
"""
import math

import numpy as np
from scipy import integrate, optimize, special, stats
from scipy.interpolate import CubicSpline


def _gl_nodes(lo, hi, width, order=24):
    gx, gw = np.polynomial.legendre.leggauss(order)
    edges = np.append(np.arange(lo, hi, width), hi)
    a, b = edges[:-1], edges[1:]
    x = ((b - a)[:, None] / 2 * gx[None, :] + (a + b)[:, None] / 2).ravel()
    w = ((b - a)[:, None] / 2 * gw[None, :]).ravel()
    return x, w


def _density(w, d, n, x, sd):
    """Density at x of the sum of n copies of the law (w, d) (sum w = 1, centred), by direct inversion."""
    u = np.linspace(0.0, 40.0 / sd, 4001)
    du = u[1] - u[0]
    logphi = np.array([np.log(np.sum(w * np.exp(1j * uu * d))) for uu in u])
    psi = np.exp(n * logphi)
    wts = np.full(len(u), du)
    wts[0] = wts[-1] = du / 2
    out = np.empty(len(x))
    for j in range(0, len(x), 512):
        xx = x[j:j + 512]
        out[j:j + 512] = (np.cos(xx[:, None] * u) * psi.real + np.sin(xx[:, None] * u) * psi.imag) @ wts / math.pi
    return out


def reference_delta(sigma, q, steps, eps, ell_tau=0.02):
    """delta(eps) of the remove ordering, T = steps Poisson-subsampled Gaussian steps (an estimate)."""
    mu, n_all = 1.0 / sigma, int(steps)
    l1q, lq = math.log1p(-q), math.log(q)

    def loss(x):
        return np.logaddexp(l1q, lq + mu * np.asarray(x) - mu * mu / 2)

    def qdens(x):
        x = np.asarray(x)
        return ((1 - q) * np.exp(-x * x / 2) + q * np.exp(-(x - mu) ** 2 / 2)) / math.sqrt(2 * math.pi)

    def loss_inv(z):
        return (math.log((math.exp(z) - (1 - q)) / q) + mu * mu / 2) / mu

    x_tau = loss_inv(ell_tau)
    p_large = (1 - q) * special.ndtr(-x_tau) + q * special.ndtr(mu - x_tau)
    xs, ws = _gl_nodes(-14.0, x_tau, 0.02)
    w_small = ws * qdens(xs) / (1 - p_large)  # one small step (normalised)
    l_small = loss(xs)

    # k = 0, tilted: f(s) = Z^n e^(-theta s) f_theta(s)
    def tilted(theta):
        e = np.exp(theta * (l_small - l_small.max()))
        z = np.sum(w_small * e)
        w = w_small * e / z
        return w, float(np.sum(w * l_small)), math.log(z) + theta * l_small.max()

    total = 0.0
    pk = stats.binom(n_all, p_large)
    for k in (0, 1, 2):
        n = n_all - k
        if k == 0:
            theta = optimize.brentq(lambda t: n * tilted(t)[1] - eps, 1e-6, 1e6)
            w, m, logz = tilted(theta)
            d = l_small - m
            sd = math.sqrt(n * np.sum(w * d * d))
            s = eps + np.linspace(0.0, min(12 * sd, 40.0 / theta), 12001)
            f = np.exp(n * logz - theta * s) * _density(w, d, n, s - n * m, sd)
            total += pk.pmf(0) * np.trapezoid(f * -np.expm1(eps - s), s)
            continue
        m = float(np.sum(w_small * l_small))
        d = l_small - m
        sd = math.sqrt(n * np.sum(w_small * d * d))
        s = np.linspace(n * m - 14 * sd, n * m + 40 * sd, 4001)
        s = s[s <= eps - k * ell_tau] if eps - k * ell_tau > s[0] else s[:1]
        f = _density(w_small, d, n, s - n * m, sd)

        def h1(z):
            lo = max(x_tau, loss_inv(z)) if math.exp(z) > 1 - q else x_tau
            r, _ = integrate.quad(lambda x: qdens(x) * -np.expm1(z - loss(x)), lo, lo + 45.0, epsabs=0,
                                  epsrel=1e-13, limit=400)
            return r / p_large
        if k == 1:
            h = np.array([h1(eps - si) for si in s])
        else:
            x2, w2 = _gl_nodes(x_tau, x_tau + 30.0, 0.05)
            w2 = w2 * qdens(x2) / p_large
            l2 = loss(x2)
            zs = eps - s
            zt = np.linspace(zs.min() - l2.max() - 0.01, zs.max() + 0.01, 2001)
            spl = CubicSpline(zt, np.log(np.maximum([h1(z) for z in zt], 1e-320)))
            h = np.array([np.sum(w2 * np.exp(spl(z - l2))) for z in zs])
        total += pk.pmf(k) * np.trapezoid(f * h, s)
    return total
