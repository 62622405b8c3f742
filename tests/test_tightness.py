"""How tight the certified eps is, against dp_accounting's PLD computed in the test (issue 18, must-show 4).

The truth lies between dp_accounting's optimistic PLD (privacy buckets, a lower bound) and its pessimistic one
(connect-the-dots, an upper bound), both read out by ``pld_reference.pld_safe_eps`` (dp_accounting's own eps
underflows past a loss of about 709) and, for mixtures, built with a bracketed inversion of the privacy loss
(``pld_reference.mixture_inverse_losses``; dp_accounting's scalar one can miss the root).  Every certified value
must be at or above the optimistic PLD (else it is not a bound), and at most FACTOR times the pessimistic one
wherever that exceeds 1e-3 (else it is loose).

FACTOR is 1.02 everywhere except in two regimes where the certified engine does not reach it yet; there the test
holds the factor measured, and says so:

* few sampled steps in all (q * steps below 0.1) with delta not far below q * steps: the rare-jump bound answers; it
  averages the small steps' spread by exponential moments, and bounds the no-big-step term by Chernoff and two or
  more big steps by an even split (up to 1.036, e.g. sigma 0.4993, q 6.198e-4, 102 steps, delta 6.11e-4: 0.24341
  against 0.23515; it was 0.27993, 1.19 times, with the Stieltjes sum alone);
* the subsampled Laplace mechanism: its privacy loss has two atoms, the characteristic-function bound does not cover
  it, and the Chernoff bound answers (1.07 to 1.29 on the draws below).

The pessimistic PLD's own excess over the truth grows like steps * interval, so the interval is chosen per point from
the certified value (at most 2 eps / steps and eps / 1000, within [1e-4, 1e-2]).
"""
import logging
import math

import mpmath as mp
import numpy as np
import pytest

import edgeworth as ew
from edgeworth import userlevel
from pld_reference import (laplace_pld_eps, mixture_inverse_losses, mixture_losses, mixture_pld_eps, pld_eps,
                           plmlib)

logging.getLogger().setLevel(logging.ERROR)
logging.getLogger("absl").setLevel(logging.ERROR)

TIGHT = 1.02          # the goal
FEW_SAMPLED = 1.04    # measured: up to 1.036 where q * steps < 0.1 (see the module docstring)
LAPLACE = 1.30        # measured: 1.07 to 1.29 (see the module docstring)
FLOOR = 1e-3          # below this PLD eps the ratio is not checked (only the lower bound)


def interval(eps, steps):
    return min(1e-2, max(1e-4, min(eps / 1000.0, 2.0 * eps / steps)))


def check(certified, lower, upper, factor):
    assert certified >= lower * (1 - 1e-9), (certified, lower)
    if upper > FLOOR:
        assert certified <= factor * upper, (certified, upper, certified / upper)


# --- the seeded random grid of the issue: sigma 0.4-20, q 1e-5-0.5, steps 1-1e5, delta 1e-12-1e-3 -------------------

def log_uniform_draws(n, seed, *ranges):
    """n draws, each a tuple with one log-uniform value per (lo, hi) range; a range of ints draws an int."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        row = []
        for lo, hi in ranges:
            v = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            row.append(int(round(v)) if isinstance(lo, int) else v)
        out.append(tuple(row))
    return out


GRID = log_uniform_draws(40, 18, (0.4, 20.0), (1e-5, 0.5), (1, 100000), (1e-12, 1e-3))


@pytest.mark.parametrize("sigma,q,steps,delta", GRID, ids=[f"{i}" for i in range(len(GRID))])
def test_dpsgd_within_factor_of_pld(sigma, q, steps, delta):
    certified = ew.epsilon(sigma, delta, steps, q)
    vdi = interval(certified, steps)
    segments = ((sigma, q, steps),)
    lower, upper = pld_eps(segments, delta, False, vdi), pld_eps(segments, delta, True, vdi)
    check(certified, lower, upper, TIGHT if q * steps >= 0.1 else FEW_SAMPLED)


# few sampled steps, where the grid above draws only a handful: the example and the loosest seen
@pytest.mark.parametrize("sigma,q,steps,delta", [
    (0.4993, 6.198e-4, 102, 6.11e-4),   # the issue's: 0.24341 against 0.23515 (1.035; 1.190 before)
    (0.4043, 8.261e-5, 51, 2.25e-4),    # 1.036 (1.131 before)
    (0.6540, 1.202e-5, 9, 3.57e-9),     # 1.002 (1.027 before)
    (1.263, 1.213e-3, 20, 2.63e-12),    # 1.000
    (0.6517, 4.583e-4, 42, 1.19e-8),    # 1.001
])
def test_few_sampled_steps(sigma, q, steps, delta):
    certified = ew.epsilon(sigma, delta, steps, q)
    vdi = interval(certified, steps)
    segments = ((sigma, q, steps),)
    check(certified, pld_eps(segments, delta, False, vdi), pld_eps(segments, delta, True, vdi), FEW_SAMPLED)


def test_past_eps_700_against_the_safe_pld():
    # dp_accounting's own get_epsilon_for_delta says 893.33 / 893.13 here (exp(-loss) underflows)
    sigma, q, steps, delta = 0.5, 0.2, 4000, 1e-5
    certified = ew.epsilon(sigma, delta, steps, q)
    segments = ((sigma, q, steps),)
    lower, upper = pld_eps(segments, delta, False, 1e-3), pld_eps(segments, delta, True, 1e-3)
    assert 890.0 < lower <= certified <= upper < 892.5  # (the optimistic PLD's gap: steps * interval / 2)
    assert 892.0 < certified
    check(certified, lower, upper, TIGHT)


# --- ELS (user-level): mixtures of Gaussians ------------------------------------------------------------------------

def els_pld(k, sigma, q, steps, delta, vdi):
    weights = tuple(float(w) for w in userlevel.binomial_weights(k, q))
    means = tuple(float(j) for j in range(k + 1))
    return (mixture_pld_eps(sigma, means, weights, steps, delta, False, vdi),
            mixture_pld_eps(sigma, means, weights, steps, delta, True, vdi))


@pytest.mark.parametrize("k,sigma,q,steps,vdi", [
    (2, 1.0, 0.01, 1000, 2e-3),
    (4, 1.0, 0.01, 1000, 4e-3),
    (8, 1.0, 0.01, 1000, 1e-2),    # was 25.22 (Chernoff) against PLD's 23.08
    (16, 1.0, 0.01, 1000, 1e-2),   # was 61.19 against 57.08
    (16, 2.65837, 0.00121865, 188, 2e-4),   # the issue's: was 1.9153 against [0.4405, 0.4420]
    (8, 0.943416, 0.00281571, 210, 1e-3),   # the issue's: was 10.507 against [3.516, 3.542]
])
def test_els_within_2_percent_of_pld(k, sigma, q, steps, vdi):
    delta = 1e-6
    certified = userlevel.epsilon(sigma=sigma, delta=delta, steps=steps, q=q, contribution_bound=k)
    lower, upper = els_pld(k, sigma, q, steps, delta, vdi)
    check(certified, lower, upper, TIGHT)


@pytest.mark.parametrize("adjacency", [plmlib.AdjacencyType.REMOVE, plmlib.AdjacencyType.ADD])
def test_mixture_inversion_matches_mpmath(adjacency):
    # the reference's inversion of the mixture's privacy loss, on dp_accounting's own loss grid, against mpmath
    k, sigma, q = 8, 0.943416, 0.00281571
    weights = [float(w) for w in userlevel.binomial_weights(k, q)]
    means = [float(j) for j in range(k + 1)]
    loss = plmlib.MixtureGaussianPrivacyLoss(sigma, means, weights, adjacency_type=adjacency)
    lo, hi = sorted(float(v) for v in mixture_losses(loss, [-4.0 * sigma, 4.0 * sigma + k]))
    targets = np.linspace(lo, hi, 1999)[1:-1]
    xs = mixture_inverse_losses(loss, targets)
    with mp.workdps(40):
        var = mp.mpf(sigma) ** 2
        sign = 1 if adjacency == plmlib.AdjacencyType.ADD else -1

        def exact(x):  # dp_accounting's privacy loss at 40 digits: add -log, remove log of sum w e^((+-m x - m^2/2) / var)
            s = mp.fsum(mp.mpf(w) * mp.exp((sign * m * mp.mpf(x) - mp.mpf(m) ** 2 / 2) / var)
                        for w, m in zip(weights, means) if w > 0)
            return -mp.log(s) if sign > 0 else mp.log(s)

        for target, x in zip(targets[::50], xs[::50]):
            root = mp.findroot(lambda y: exact(y) - target, x)
            assert abs(float(root) - x) <= 1e-9 * max(1.0, abs(x)), (target, x, root)
            assert exact(x) >= target - mp.mpf(10) ** -12  # the side whose loss is at least the target


# --- the subsampled Laplace mechanism -------------------------------------------------------------------------------

LAPLACE_DRAWS = [(17.8215, 0.0108308, 526, 9.44e-5)] + log_uniform_draws(19, 7, (1.0, 30.0), (1e-3, 0.1), (10, 2000),
                                                                     (1e-8, 1e-3))


@pytest.mark.parametrize("b,q,steps,delta", LAPLACE_DRAWS, ids=[f"{i}" for i in range(len(LAPLACE_DRAWS))])
def test_laplace_within_factor_of_pld(b, q, steps, delta):
    acct = ew.Accountant().compose(mechanism=ew.PoissonSubsampled(ew.Laplace(b), q), steps=steps)
    certified = acct.epsilon(delta)
    vdi = interval(certified, steps)
    check(certified, laplace_pld_eps(b, q, steps, delta, False, vdi), laplace_pld_eps(b, q, steps, delta, True, vdi),
          LAPLACE)
