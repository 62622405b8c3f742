"""The public API: broadcasting, labels, the accountant and its state."""
import json
import math

import numpy as np
import pytest

import edgeworth


def test_scalars_give_floats_and_arrays_broadcast():
    e = edgeworth.epsilon(1.0, 1e-5, 1000, 0.01)
    assert type(e) is float
    sig = np.array([0.8, 1.0, 2.0])
    steps = np.array([[100], [1000]])
    grid = edgeworth.epsilon(sig, 1e-5, steps, 0.01)
    assert grid.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert grid[i, j] == edgeworth.epsilon(sig[j], 1e-5, int(steps[i, 0]), 0.01)
    sig2 = edgeworth.noise_multiplier([2.0, 8.0], 1e-5, 1000, 0.01)
    assert sig2.shape == (2,) and sig2[0] > sig2[1]
    d = edgeworth.delta(1.0, [1.0, 2.0], 1000, 0.01)
    assert d.shape == (2,) and d[0] > d[1]


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")  # the plain estimate is off here (+3 to +5 %)
def test_details_carry_the_label():
    cert = edgeworth.epsilon_details(1.0, 1e-5, 1000, 0.01)
    assert cert.label == "certified" and cert.certified and cert.method == "certified"
    assert cert.orderings == "both" and cert.dominating in ("remove", "add") and cert.order is None
    est = edgeworth.epsilon_details(1.0, 1e-5, 1000, 0.01, method="edgeworth", order=1)
    assert est.label == "estimate" and not est.certified and est.order == 1 and est.orderings == "remove"
    sig = edgeworth.noise_multiplier_details(8.0, 1e-5, 1000, 0.01)
    assert sig.quantity == "noise_multiplier" and sig.label == "certified"
    arr = edgeworth.epsilon_details([1.0, 2.0], 1e-5, 1000, 0.01)
    assert list(arr.dominating) == ["remove", "remove"]
    json.dumps(arr.as_dict())  # plain data


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")  # the estimate is off here, by design
def test_remove_ordering_dominates_for_dpsgd_but_both_are_computed():
    # Background, section 2: q = 0.0297, sigma = 0.7865, T = 660, delta = 1e-5 gives
    # eps 8.289 (remove) vs 5.091 (add) by PLD; the estimates must order the same way.
    q, s, t = 2000 / 67349, 0.7865, 660
    rm = edgeworth.epsilon(s, 1e-5, t, q, method="edgeworth", ordering="remove")
    add = edgeworth.epsilon(s, 1e-5, t, q, method="edgeworth", ordering="add")
    both = edgeworth.epsilon_details(s, 1e-5, t, q, method="edgeworth", ordering="both")
    assert add < rm and both.value == rm and both.dominating == "remove"
    assert edgeworth.epsilon_details(s, 1e-5, t, q).dominating == "remove"


def test_certified_calibration_is_on_the_safe_side():
    for eps, delta, steps, q in [(8.0, 1e-5, 1000, 0.01), (1.0, 1e-8, 10 ** 5, 1e-3), (3.0, 1e-6, 50, 0.2)]:
        sigma = edgeworth.noise_multiplier(eps, delta, steps, q)
        assert edgeworth.epsilon(sigma, delta, steps, q) <= eps
        # and tight: 1e-4 relative less noise would overshoot the target
        assert edgeworth.epsilon(sigma * (1 - 1e-4), delta, steps, q) > eps


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")  # the estimate is off here, by design
def test_edgeworth_calibration_meets_its_own_estimate():
    sigma = edgeworth.noise_multiplier(8.0, 1e-6, 3920, 2000 / 392702, method="edgeworth", order=1)
    eps = edgeworth.epsilon(sigma, 1e-6, 3920, 2000 / 392702, method="edgeworth", order=1)
    assert eps <= 8.0 and eps == pytest.approx(8.0, abs=1e-6)


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")  # the estimate is off here, by design
def test_delta_and_epsilon_are_inverse():
    for method in ("certified", "edgeworth"):
        e = edgeworth.epsilon(0.9, 1e-6, 2000, 0.02, method=method)
        d = edgeworth.delta(0.9, e, 2000, 0.02, method=method)
        assert d == pytest.approx(1e-6, rel=1e-6)


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")  # the plain estimate is off here (+3 to +5 %)
def test_accountant_matches_the_functions_and_counts_steps():
    acc = edgeworth.Accountant()
    assert len(acc) == 0 and acc.epsilon(1e-5) == 0.0 and acc.delta(1.0) == 0.0
    for _ in range(10):
        acc.step(noise_multiplier=1.1, sample_rate=0.02)
    acc.compose(1.1, 0.02, steps=90)
    assert len(acc) == 100 and acc.history == [(1.1, 0.02, 100)]
    for method in ("certified", "edgeworth"):
        assert acc.epsilon(1e-5, method=method) == edgeworth.epsilon(1.1, 1e-5, 100, 0.02, method=method)
        assert acc.delta(2.0, method=method) == edgeworth.delta(1.1, 2.0, 100, 0.02, method=method)
    details = acc.epsilon_details(1e-5)
    assert details.label == "certified" and details.inputs["history"] == [(1.1, 0.02, 100)]


def test_accountant_heterogeneous_and_state_round_trip():
    acc = edgeworth.Accountant()
    acc.compose(1.0, 0.01, 500).compose(0.7, 0.05, 20).compose(1.0, 0.01, 300)
    assert len(acc) == 820 and len(acc.history) == 3
    eps = acc.epsilon(1e-6)
    # more steps, more privacy loss; each segment alone, less
    assert eps > edgeworth.epsilon(1.0, 1e-6, 800, 0.01)
    assert eps > edgeworth.epsilon(0.7, 1e-6, 20, 0.05)
    state = json.loads(json.dumps(acc.state_dict()))
    restored = edgeworth.Accountant()
    restored.load_state_dict(state)
    assert restored.history == acc.history and len(restored) == 820
    assert restored.epsilon(1e-6) == eps


@pytest.mark.parametrize("state", [{}, {"history": [(1.0, 0.1)]}, {"history": [(1.0, 2.0, 10)]}, [1, 2]])
def test_accountant_rejects_bad_state(state):
    with pytest.raises(ValueError):
        edgeworth.Accountant().load_state_dict(state)


def test_accountant_rejects_bad_segments():
    acc = edgeworth.Accountant()
    with pytest.raises(ValueError, match="^sigma"):
        acc.compose(0.0, 0.1, 10)
    with pytest.raises(ValueError, match="^q"):
        acc.compose(1.0, 1.5, 10)
    with pytest.raises(ValueError, match="^steps"):
        acc.compose(1.0, 0.1, 0)
    assert acc.history == []


def test_mechanism_description_is_separate_from_accounting():
    m = edgeworth.PoissonSubsampledGaussian(noise_multiplier=0.8, sampling_rate=0.01)
    core = m.to_core()
    assert core.sigma == 0.8 and core.q == 0.01
    # l(x) = log(1 - q + q exp(x/sigma - 1/(2 sigma^2)))
    x = 1.7
    assert core.pllr(x) == pytest.approx(math.log(0.99 + 0.01 * math.exp(x / 0.8 - 0.5 / 0.64)), rel=1e-15)
    with pytest.raises(ValueError, match="^q"):
        edgeworth.PoissonSubsampledGaussian(1.0, 0.0)


def test_pllr_does_not_overflow():
    core = edgeworth.PoissonSubsampledGaussian(0.1, 1e-3).to_core()
    x = 1e3  # mu x = 1e4: exp would overflow
    assert core.pllr(x) == pytest.approx(10.0 * x - 50.0 + math.log(1e-3), rel=1e-14)
    assert core.pllr(-1e3) == pytest.approx(math.log1p(-1e-3), rel=1e-14)


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")  # the plain estimate is off here (+3 to +5 %)
def test_edgeworth_order_3_is_available_and_differs():
    e1, e2, e3 = (edgeworth.epsilon(1.0, 1e-5, 1000, 0.01, method="edgeworth", order=k) for k in (1, 2, 3))
    assert len({e1, e2, e3}) == 3 and all(1.5 < e < 2.2 for e in (e1, e2, e3))


def test_accountant_details_carry_estimate_bound_and_gap():
    acc = edgeworth.Accountant()
    assert acc.epsilon_details(1e-5).dominating is None  # nothing recorded yet
    acc.compose(0.7865, 2000 / 67349, 660)
    r = acc.epsilon_details(1e-5)
    assert r.value == r.bound == edgeworth.epsilon(0.7865, 1e-5, 660, 2000 / 67349)
    assert r.estimate == edgeworth.epsilon(0.7865, 1e-5, 660, 2000 / 67349, method="tilted")
    assert r.gap == r.bound - r.estimate > 0 and r.dominating == "remove"
    d = acc.delta_details(8.0, method="tilted")
    assert d.label == "estimate" and d.value == d.estimate <= d.bound


@pytest.mark.parametrize("sigma,q,steps,delta", [(1000.0, 1e-4, 10 ** 9, 1e-15), (1000.0, 1e-4, 10 ** 9, 1e-5),
                                                 (100.0, 1e-4, 10 ** 9, 1e-5), (1000.0, 1e-7, 10 ** 9, 1e-15)])
def test_certified_in_the_clt_regime(sigma, q, steps, delta):
    # 1e2..1e5 sampled steps of a tiny per-step loss: the GDP central limit is accurate here
    # (to ~1e-6 relative), so it pins the truth; certified must sit above it, tilted on it.
    from scipy.optimize import brentq
    from scipy.stats import norm
    mu = q * math.sqrt(steps * math.expm1(1 / sigma ** 2))
    gdp = brentq(lambda e: norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - delta, 0, 50)
    assert edgeworth.epsilon(sigma, delta, steps, q) >= gdp
    assert edgeworth.epsilon(sigma, delta, steps, q, method="tilted") == pytest.approx(gdp, rel=1e-4)
