"""The characteristic-function bound behind method="certified" (csrc/cf_bound.hpp).

Checked against independent references computed here:

* a certified [lower, upper] bracket on delta must contain the truth, so it
  must straddle dp_accounting's PLD, whose optimistic and pessimistic forms
  bracket the truth in turn;
* certified eps is never below the optimistic PLD (a rigorous lower bound at
  any discretisation, so a coarse and cheap one serves) on 300 random
  configurations;
* it is as tight as a fine PLD where at least ~10 steps are sampled in all.
"""
import math
import random

import pytest

import edgeworth
from edgeworth import _core
from pld_reference import pld_eps

pytestmark = pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")

POINTS = [  # sigma, q, steps, delta, vdi for the PLD reference
    (1.0, 0.01, 1000, 1e-5, 1e-4),
    (0.8, 0.005, 1000, 1e-6, 1e-4),
    (2.0, 0.1, 100, 1e-5, 1e-5),
    (0.573, 2000 / 392702, 3920, 1e-6, 1e-4),   # EW-Tune MNLI
    (4.0, 1e-3, 100_000, 1e-8, 1e-6),
]


@pytest.mark.parametrize("sigma,q,steps,delta,vdi", POINTS)
def test_delta_bracket_straddles_pld(sigma, q, steps, delta, vdi):
    eps = edgeworth.epsilon(sigma, delta, steps, q, method="tilted")
    lo, hi = _core.cf_delta(sigma, q, steps, eps, "remove")
    assert 0 < lo <= hi
    assert (hi - lo) / hi < 1e-4  # tight: the bracket is about 1e-6 wide relative
    # eps from the two sides of the bracket against PLD's two sides
    e_hi = _core.cf_epsilon(sigma, q, steps, delta, "remove")
    assert e_hi >= pld_eps([(sigma, q, steps)], delta, False, vdi)
    pess = pld_eps([(sigma, q, steps)], delta, True, vdi)
    # connect-the-dots at these intervals is within ~1e-4 of the truth
    assert abs(e_hi / pess - 1) < 5e-4, (e_hi, pess)


def test_delta_bracket_matches_plain_gaussian_closed_form():
    # q = 1: T steps of the Gaussian mechanism are one Gaussian with mu = sqrt(T) / sigma,
    # delta(eps) = Phi(mu/2 - eps/mu) - e^eps Phi(-mu/2 - eps/mu) (Balle and Wang 2018).
    sigma, steps, eps = 5.0, 100, 1.5
    mu = math.sqrt(steps) / sigma
    phi = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))
    exact = phi(mu / 2 - eps / mu) - math.exp(eps) * phi(-mu / 2 - eps / mu)
    lo, hi = _core.cf_delta(sigma, 1.0, steps, eps, "remove")
    assert lo <= exact <= hi and (hi - lo) < 1e-5 * exact


def test_certified_never_below_optimistic_pld_on_random_configurations():
    rng = random.Random(20261124)
    for _ in range(300):
        sigma = math.exp(rng.uniform(math.log(0.5), math.log(4.0)))
        q = math.exp(rng.uniform(math.log(1e-3), math.log(0.2)))
        steps = int(math.exp(rng.uniform(math.log(10), math.log(1e5))))
        delta = rng.choice([1e-5, 1e-8])
        cert = edgeworth.epsilon(sigma, delta, steps, q)
        # optimistic PLD is a lower bound on the truth at any interval: a coarse
        # one keeps 300 of them cheap (its gap below the truth, ~ steps * vdi / 2,
        # is at most 5: a gross error would still show, a subtle one only where
        # steps are few; the grid in test_reference_pld.py is the fine check)
        vdi = min(1e-2, 10.0 / steps)
        floor = pld_eps([(sigma, q, steps)], delta, False, vdi)
        assert cert >= floor, (sigma, q, steps, delta, cert, floor)


@pytest.mark.parametrize("eps,delta,steps,q", [(8.0, 1e-5, 1000, 0.01), (2.0, 1e-6, 20_000, 5e-4)])
def test_certified_sigma_is_at_most_one_percent_above_pld(eps, delta, steps, q):
    sigma = edgeworth.noise_multiplier(eps, delta, steps, q)
    # dp_accounting's PLD (connect-the-dots, as its calibration uses) exceeds
    # the target at 1 % less noise: the certified sigma is within 1 % of the
    # PLD-calibrated sigma; and it is at least the optimistic-PLD sigma.
    assert pld_eps([(sigma / 1.01, q, steps)], delta, True, 1e-4) > eps
    assert pld_eps([(sigma, q, steps)], delta, False, 1e-4) <= eps
