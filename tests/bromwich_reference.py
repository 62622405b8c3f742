"""delta of the remove ordering by plain numerical Laplace inversion (numpy and scipy only, fixed grids): an
independent reference for the tilted estimate, fine for many steps (the integrand then decays fast in u)."""
import numpy as np
from scipy.optimize import brentq


def bromwich_delta_remove_mixture(weights, means, steps, eps, umax=40.0, nu=801, nx=20001):
    """delta(eps) of the remove ordering of ``steps`` steps of P = N(0, 1) against Q = sum_j w_j N(mu_j, 1), by
    plain numerical Laplace inversion: (1/pi) int_0^inf Re[E_P[e^((lambda + 1) l)]^n e^(-lambda eps) / (lambda (lambda + 1))] du on the
    line lambda = c + iu through the saddle point."""
    w, mu = np.asarray(weights), np.asarray(means)

    def grid(s):
        x = np.linspace(-40.0, 50.0 + 1.5 * s * mu.max(), nx)
        loss = np.logaddexp.reduce(np.log(w)[:, None] + mu[:, None] * x - mu[:, None] ** 2 / 2, axis=0)
        logw = -0.5 * x * x - 0.5 * np.log(2 * np.pi) + s * loss
        return loss, np.exp(logw - logw.max()) * (x[1] - x[0]), logw.max()

    def mean(c):
        loss, wt, _ = grid(c + 1.0)
        return steps * (wt @ loss) / wt.sum()

    c = brentq(lambda c: mean(c) - eps, 1e-3, 200.0)
    loss, wt, shift = grid(c + 1.0)
    u = np.linspace(0.0, umax, nu)
    phi = np.concatenate([np.exp(1j * np.outer(part, loss)) @ wt for part in np.array_split(u, 16)])
    lam = c + 1j * u
    f = np.exp(steps * (np.log(phi) + shift) - lam * eps) / (lam * (lam + 1))
    assert abs(f[-1]) < 1e-30 * abs(f[0])  # the u-range covers the integrand
    return np.trapezoid(f.real, u) / np.pi


def bromwich_delta_remove(sigma, q, steps, eps, **grid):
    """delta(eps) of the remove ordering of ``steps`` steps of the Poisson-subsampled Gaussian: the mixture
    (1 - q) N(0, 1) + q N(1 / sigma, 1) against N(0, 1)."""
    return bromwich_delta_remove_mixture([1.0 - q, q], [0.0, 1.0 / sigma], steps, eps, **grid)
