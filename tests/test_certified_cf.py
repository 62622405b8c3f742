"""The characteristic-function bound behind method="certified" (csrc/cf_bound.hpp).

Checked against independent references computed here:

* a certified [lower, upper] bracket on delta must contain the truth, so it
  must straddle dp_accounting's PLD, whose optimistic and pessimistic forms
  bracket the truth in turn;
* certified eps is never below the optimistic PLD (a rigorous lower bound at
  any discretisation, so a coarse and cheap one serves) on 300 random
  configurations;
* it is as tight as a fine PLD where at least ~10 steps are sampled in all;
* with few sampled steps (the split and truncated retries), never below the
  optimistic PLD and within 1 % of a fine pessimistic PLD on the examples
  where it used to decline.
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


# --- Few sampled steps: the split and truncated retries (docs/certified.md) ---
# Where the plain inversion declines (q * steps below ~1 to 10), the split bound
# (remove ordering) and the truncated bound (both orderings) answer.

FEW = [  # sigma, q, steps, delta, vdi of the PLD reference
    (1.0683179364346693, 0.0066035888906329325, 18, 1e-12, 1e-4),  # PLD remove [1.64551, 1.64668]
    (0.42909295343133524, 1.4865045848575898e-05, 26950, 1e-05, 1e-4),  # pessimistic 0.962089
    (2.7474716021817267, 0.00031537826790993046, 75, 1e-12, 1e-6),  # [0.0066975, 0.00673501]
    (10.0, 1e-4, 30_000, 1e-5, 1e-6),  # pessimistic 0.00372645
    (2.0, 1e-4, 20_000, 1e-5, 1e-6),  # pessimistic 0.0199724
]


@pytest.mark.parametrize("sigma,q,steps,delta,vdi", FEW)
def test_few_sampled_steps_answer_within_one_percent_of_pld(sigma, q, steps, delta, vdi):
    from pld_reference import pld_eps_by_ordering
    pess = pld_eps_by_ordering(((sigma, q, steps),), delta, True, vdi)["remove"]
    opt = pld_eps_by_ordering(((sigma, q, steps),), delta, False, vdi)["remove"]
    e = _core.cf_epsilon(sigma, q, steps, delta, "remove")
    assert e is not None
    assert e >= opt * (1 - 1e-9)
    assert e <= pess * 1.01 + 1e-4
    # and the public answer (both orderings, all bounds) is that tight too
    assert edgeworth.epsilon(sigma, delta, steps, q) <= pess * 1.01 + 1e-4


def test_few_sampled_steps_never_below_optimistic_pld():
    # q * steps in 0.01..10, steps <= 100 (so that a PLD interval of 0.5 % of
    # eps / steps stays affordable: the check is sharp to about 0.3 %)
    from pld_reference import pld_of
    rng = random.Random(2024)
    answered = checked = 0
    for _ in range(40):
        sigma = math.exp(rng.uniform(math.log(0.4), math.log(10)))
        steps = int(math.exp(rng.uniform(0, math.log(100))))
        q = min(0.05, max(1e-6, math.exp(rng.uniform(math.log(0.01), math.log(10))) / steps))
        delta = rng.choice([1e-3, 1e-6, 1e-10, 1e-12])
        new = {o: _core.cf_epsilon(sigma, q, steps, delta, o) for o in ("remove", "add")}
        top = max([v for v in new.values() if v is not None] or [1.0])
        vdi = min(1e-3, max(1e-6, 0.005 * top / steps))
        pld = pld_of(((sigma, q, steps),), False, vdi)
        opt = {"remove": pld._pmf_remove.get_epsilon_for_delta(delta),  # pylint: disable=protected-access
               "add": pld._pmf_add.get_epsilon_for_delta(delta)}  # pylint: disable=protected-access
        for o, v in new.items():
            checked += 1
            if v is None:
                continue
            answered += 1
            assert v >= opt[o] * (1 - 1e-9), (sigma, q, steps, delta, o, v, opt[o])
    assert answered >= 0.8 * checked


def test_few_sampled_steps_monotone_across_the_switch():
    # the certified value used to step the wrong way where the CF bound began to answer
    assert edgeworth.epsilon(1.0683179364346693, 1e-12, 18, 0.0066035888906329325) <= \
        edgeworth.epsilon(1.0683179364346693, 1e-12, 64, 0.0066035888906329325)
    assert edgeworth.epsilon(0.42909295343133524, 1e-5, 26950, 1.4865045848575898e-05) <= \
        edgeworth.epsilon(0.42909295343133524, 1e-5, 46371, 1.4865045848575898e-05)
    # delta at eps = 0.1, q = 1e-7 was 0.025 at 1e6 steps (Chernoff) and 0.014 at 1e9 (CF)
    assert edgeworth.delta(0.5, 0.1, 10**6, 1e-7) < 1e-6


def test_few_sampled_steps_delta_bracket():
    # the retries' [lower, upper] on delta straddles the PLD's delta bracket
    import dp_accounting  # noqa: F401  (pld_reference needs it)
    from pld_reference import pld_of
    sigma, q, steps, eps = 1.0683179364346693, 0.0066035888906329325, 18, 1.6
    lo, hi = _core.cf_delta(sigma, q, steps, eps, "remove")
    d_hi = pld_of(((sigma, q, steps),), True, 1e-4)._pmf_remove.get_delta_for_epsilon(eps)  # pylint: disable=protected-access
    d_lo = pld_of(((sigma, q, steps),), False, 1e-4)._pmf_remove.get_delta_for_epsilon(eps)  # pylint: disable=protected-access
    assert lo <= d_hi * (1 + 1e-9) and hi >= d_lo * (1 - 1e-9)
    assert (hi - lo) / hi < 1e-2
