"""The tilted (saddle-point) estimate, its reliability guard and the Edgeworth accuracy warning."""
import warnings

import numpy as np
import pytest

import edgeworth
from pld_reference import pld_eps

MNLI_Q, MNLI_T = 2000 / 392702, 3920

# Background, section 6: (q, T, delta, order-1 sigma, true eps there by PLD, sigma that truly gives eps = 8).
EWTUNE = [
    (2000 / 67349, 660, 1e-5, 0.7865, 8.289, 0.7982),
    (2000 / 104743, 1040, 1e-5, 0.711, 8.459, 0.7259),
    (2000 / 104743, 1040, 1e-6, 0.7395, 8.712, 0.7642),
    (2000 / 363846, 3620, 1e-6, 0.58, 9.540, 0.6112),
    (MNLI_Q, MNLI_T, 1e-5, 0.557, 9.140, 0.5786),
    (MNLI_Q, MNLI_T, 1e-6, 0.573, 9.600, 0.6045),
]


def pld_bounds(sigma, q, steps, delta, interval=1e-4):
    """(optimistic, pessimistic) eps from dp_accounting's PLD, add/remove neighbours."""
    return tuple(pld_eps(((sigma, q, steps),), delta, pessimistic, interval) for pessimistic in (False, True))


@pytest.mark.parametrize("q,steps,delta,sigma_ew,true_eps,true_sigma", EWTUNE)
def test_tilted_reproduces_the_true_eps_at_ewtune_points(q, steps, delta, sigma_ew, true_eps, true_sigma):
    assert edgeworth.epsilon(sigma_ew, delta, steps, q, method="tilted") == pytest.approx(true_eps, abs=0.01)
    assert edgeworth.noise_multiplier(8.0, delta, steps, q, method="tilted") == pytest.approx(true_sigma, abs=2e-4)


@pytest.mark.parametrize("sigma,q,steps,delta", [
    (0.7865, 2000 / 67349, 660, 1e-5),
    (1.1, 256 / 60000, 14062, 1e-5),
    (0.8, 0.01, 1000, 0.015),
    (2.0, 0.2, 100, 1e-8),
    (1.0, 0.05, 10_000, 1e-8),
])
def test_tilted_matches_pld(sigma, q, steps, delta):
    # The connect-the-dots (pessimistic) PLD at interval 1e-4 is within ~1e-4 of the
    # truth here, and is the background's reference; the optimistic one is loose at
    # many steps (its gap grows like steps * interval / 2) but still a floor.
    opt, pes = pld_bounds(sigma, q, steps, delta)
    est = edgeworth.epsilon(sigma, delta, steps, q, method="tilted")
    assert abs(est / pes - 1) < 0.005 and est >= opt, (est, opt, pes)
    # The certified bound sits above the truth: above PLD's floor, and within
    # the tilted estimate's own accuracy (~1e-4) of it or above.
    cert = edgeworth.epsilon(sigma, delta, steps, q)
    assert cert >= opt and cert >= est * (1 - 5e-4)


# Few sampled steps in all (q * steps ~ 0.1 .. 20): one saddle point cannot describe the tilted law of the
# remove ordering (it is bimodal or heavy-tailed: its skewness there is 1.5 to 20), and the estimate falls back
# to the Laplace inversion conditioned on a step outside the flat part of the loss (csrc/conditioned.hpp).
# (sigma, q, steps, delta, PLD interval): small eps needs a finer interval for the pessimistic PLD to pin the truth.
FEW_SAMPLED = [
    (0.8, 0.005, 1000, 1e-6, 1e-4),     # background table: 2.0041
    (1.0, 0.01, 1000, 1e-5, 1e-4),      # 1.8282
    (1.0, 5e-4, 20_000, 1e-5, 1e-4),    # 0.3228 (the pessimistic PLD is 0.2 % high at this interval)
    (2.0, 1e-3, 100, 1e-5, 1e-5),
    (2.0, 1e-3, 10_000, 1e-5, 1e-5),
    (0.5, 1e-3, 10, 1e-8, 1e-4),        # the add ordering's loss is at most 10 log(1 / (1 - q)) = 0.01 here
    (0.8, 1e-3, 1000, 1e-5, 1e-4),      # the single saddle point's delta dives through 0: it gave 0.167
    (1.0, 0.1, 1, 1e-8, 1e-4),          # a single step: a bimodal tilted law; the single saddle point is 0.7 % low
]


@pytest.mark.parametrize("sigma,q,steps,delta,interval", FEW_SAMPLED)
def test_tilted_matches_pld_with_few_sampled_steps(sigma, q, steps, delta, interval):
    opt, pes = pld_bounds(sigma, q, steps, delta, interval)
    r = edgeworth.epsilon_details(sigma, delta, steps, q, method="tilted")
    assert abs(r.value / pes - 1) < 0.005 and r.value >= opt, (r.value, opt, pes)
    assert r.dominating == "remove"
    assert edgeworth.delta(sigma, r.value, steps, q, method="tilted") == pytest.approx(delta, rel=1e-3)
    assert edgeworth.epsilon(sigma, delta, steps, q) >= r.value  # the certified bound sits above


def bromwich_delta_remove(sigma, q, steps, eps, umax=40.0, nu=801, nx=20001):
    """delta of the remove ordering by plain numerical Laplace inversion (numpy, fixed grids): for n steps,
    delta(eps) = (1/pi) int_0^inf Re[E_P[e^((lambda + 1) l)]^n e^(-lambda eps) / (lambda (lambda + 1))] du on
    lambda = c + iu, c the saddle point. Fine for many steps (the integrand then decays fast in u)."""
    from scipy.optimize import brentq
    mu = 1.0 / sigma

    def grid(s):
        x = np.linspace(-40.0, 50.0 + 1.5 * s * mu, nx)
        loss = np.logaddexp(np.log1p(-q), np.log(q) + mu * x - mu * mu / 2)
        logw = -0.5 * x * x - 0.5 * np.log(2 * np.pi) + s * loss
        return loss, np.exp(logw - logw.max()) * (x[1] - x[0]), logw.max()

    def mean(c):
        loss, w, _ = grid(c + 1.0)
        return steps * (w @ loss) / w.sum()

    c = brentq(lambda c: mean(c) - eps, 1e-3, 200.0)
    loss, w, shift = grid(c + 1.0)
    u = np.linspace(0.0, umax, nu)
    k = np.concatenate([np.exp(1j * np.outer(part, loss)) @ w for part in np.array_split(u, 16)])
    lam = c + 1j * u
    f = np.exp(steps * (np.log(k) + shift) - lam * eps) / (lam * (lam + 1))
    assert abs(f[-1]) < 1e-30 * abs(f[0])  # the u-range covers the integrand
    return np.trapezoid(f.real, u) / np.pi


def test_tilted_is_exact_far_in_the_tail_with_few_sampled_steps():
    # At delta = 1e-12 the PLD's own discretisation dominates; an independent Fourier inversion pins it.
    eps = edgeworth.epsilon(1.0, 1e-12, 1000, 0.01, method="tilted")
    assert bromwich_delta_remove(1.0, 0.01, 1000, eps) == pytest.approx(1e-12, rel=1e-6)
    assert bromwich_delta_remove(1.0, 0.01, 1000, 1.8282367) == pytest.approx(1e-5, rel=1e-6)


def test_tilted_declines_where_it_cannot_answer():
    # q * steps = 0.01: the loss that matters (eps ~ 0.02) is tiny next to what the tilt weights, and the
    # inversion would need the characteristic function at very large u: it declines instead of guessing.
    with pytest.raises(edgeworth.UnreachableTargetError, match="unreliable here"):
        edgeworth.epsilon(1.0, 1e-5, 10, 1e-3, method="tilted")


def test_tilted_covers_both_orderings():
    with pytest.raises(ValueError, match="^ordering"):
        edgeworth.epsilon(1.0, 1e-5, 1000, 0.01, method="tilted", ordering="remove")
    r = edgeworth.epsilon_details(0.7865, 1e-5, 660, 2000 / 67349, method="tilted")
    assert r.label == "estimate" and r.orderings == "both" and r.dominating == "remove"


def test_warning_fires_for_order_1_at_mnli():
    with pytest.warns(edgeworth.EdgeworthAccuracyWarning, match=r"order-1 .* tilted .* -1[67]\.\d %"):
        sigma = edgeworth.noise_multiplier(8.0, 1e-6, MNLI_T, MNLI_Q, method="edgeworth", order=1)
    assert 0.5725 <= sigma <= 0.5735
    with pytest.warns(edgeworth.EdgeworthAccuracyWarning):
        edgeworth.epsilon(0.573, 1e-6, MNLI_T, MNLI_Q, method="edgeworth", order=1)
    with pytest.warns(edgeworth.EdgeworthAccuracyWarning):
        edgeworth.delta(0.573, 8.0, MNLI_T, MNLI_Q, method="edgeworth", order=1)


def test_warning_stays_silent_where_edgeworth_is_accurate():
    with warnings.catch_warnings():
        warnings.simplefilter("error", edgeworth.EdgeworthAccuracyWarning)
        edgeworth.epsilon(1.0, 1e-5, 20_000, 5e-4, method="edgeworth")          # the quiet point
        edgeworth.epsilon(1.1, 1e-5, 14_062, 256 / 60000, method="edgeworth")   # order 2 within 0.5 %
        edgeworth.epsilon(np.array([0.8, 1.0]), 1e-5, 10 ** 5, 0.01, method="edgeworth")


def test_details_carry_estimate_bound_and_gap():
    with pytest.warns(edgeworth.EdgeworthAccuracyWarning):
        r = edgeworth.epsilon_details(0.573, 1e-6, MNLI_T, MNLI_Q, method="edgeworth", order=1)
    assert r.value == pytest.approx(8.0, abs=0.02) and r.estimate == pytest.approx(9.6, abs=0.01)
    # The certified bound is at the truth (within 1e-6), so the gap to the
    # estimate is the estimate's own error (~1e-4): tiny, of either sign.
    assert r.bound == edgeworth.epsilon(0.573, 1e-6, MNLI_T, MNLI_Q) and r.gap == r.bound - r.estimate
    assert abs(r.gap) < 1e-4 * r.bound
    s = edgeworth.noise_multiplier_details(8.0, 1e-6, MNLI_T, MNLI_Q)
    assert s.value == s.bound and s.estimate == pytest.approx(0.6045, abs=2e-4) and s.gap > 0
    arr = edgeworth.epsilon_details([0.7865, 1.0], 1e-5, 20_000, 5e-4)
    assert np.isnan(arr.estimate[0]) or arr.estimate[0] > 0  # nan where tilted declines
    assert np.all(arr.bound == arr.value)


@pytest.mark.parametrize("sigma,q,delta", [(1.0, 0.1, 1e-8), (10.0, 1e-3, 1e-15), (0.5, 0.01, 1e-5)])
def test_one_step_is_the_exact_curve(sigma, q, delta):
    # For one step of the subsampled Gaussian the tilted estimate is the exact hockey-stick curve (the sampled-count
    # bound is exact there, tests/test_sampled_count.py), where the single saddle point was 0.7 % low (sigma 1,
    # q 0.1) or declined after 100 ms (sigma 10, q 1e-3, delta 1e-15).
    from edgeworth import _core
    est = edgeworth.epsilon(sigma, delta, 1, q, method="tilted")
    assert est == max(_core.count_epsilon(sigma, q, 1, delta, o) for o in ("remove", "add"))
    assert est == edgeworth.epsilon(sigma, delta, 1, q)  # the certified value is that curve too
    assert edgeworth.delta(sigma, est, 1, q, method="tilted") == pytest.approx(delta, rel=1e-9)
