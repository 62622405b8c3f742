"""edgeworth.from_dp_event: dp_accounting's DpEvent trees give the same eps as the direct API.

"The same" is exact equality: the event tree and the direct call build the
same composition.  dp_accounting's own PLD accountant on the same events is
the independent reference for the value.
"""
import dp_accounting
import pytest
from dp_accounting import dp_event as de

import edgeworth
from edgeworth import Accountant, Laplace, MixtureOfGaussians, PoissonSubsampled, userlevel

DELTA = 1e-6


def test_dpsgd_event_equals_the_direct_api():
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.0)), 1000)
    acc = edgeworth.from_dp_event(event)
    for method in ("certified", "tilted"):
        assert acc.epsilon(DELTA, method=method) == edgeworth.epsilon(1.0, DELTA, 1000, 0.01, method=method)


def test_composed_heterogeneous_tree_equals_the_direct_ledger_and_pld():
    gauss = dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(1.0))
    lap = dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.LaplaceDpEvent(3.0))
    mog = de.MixtureOfGaussiansDpEvent(4.0, [0.0, 1.0, 2.0], [0.9, 0.09, 0.01])
    event = dp_accounting.ComposedDpEvent([
        dp_accounting.SelfComposedDpEvent(gauss, 600),
        dp_accounting.SelfComposedDpEvent(dp_accounting.ComposedDpEvent([lap, mog]), 100),
        dp_accounting.SelfComposedDpEvent(gauss, 400),
        de.NoOpDpEvent(),
    ])
    direct = Accountant().compose(1.0, 0.02, 600)
    for _ in range(100):
        direct.compose(mechanism=PoissonSubsampled(Laplace(3.0), 0.05))
        direct.compose(mechanism=MixtureOfGaussians(4.0, (0.0, 1.0, 2.0), (0.9, 0.09, 0.01)))
    direct.compose(1.0, 0.02, 400)
    acc = edgeworth.from_dp_event(event)
    assert len(acc) == len(direct) == 1200
    assert acc.mechanisms() == direct.mechanisms()
    for method in ("certified", "tilted"):
        assert acc.epsilon(DELTA, method=method) == direct.epsilon(DELTA, method=method)
    pld = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    pld.compose(event)
    assert acc.epsilon(DELTA, method="tilted") == pytest.approx(pld.get_epsilon(DELTA), rel=3e-3)
    assert acc.epsilon(DELTA) >= acc.epsilon(DELTA, method="tilted")


def test_els_as_mixture_events_equals_userlevel():
    k, sigma, q, steps = 4, 2.0, 0.02, 500
    event = dp_accounting.SelfComposedDpEvent(
        de.MixtureOfGaussiansDpEvent(sigma, list(range(k + 1)), list(userlevel.binomial_weights(k, q))), steps)
    for method in ("certified", "tilted"):
        assert edgeworth.from_dp_event(event).epsilon(DELTA, method=method) == userlevel.epsilon(
            sigma=sigma, delta=DELTA, steps=steps, q=q, contribution_bound=k, method=method)


def test_nested_poisson_sampling_multiplies_the_rates():
    inner = dp_accounting.PoissonSampledDpEvent(0.5, dp_accounting.GaussianDpEvent(1.0))
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(0.04, inner), 500)
    assert edgeworth.from_dp_event(event).epsilon(DELTA) == edgeworth.epsilon(1.0, DELTA, 500, 0.02)


def test_plain_gaussian_and_laplace_events():
    g = edgeworth.from_dp_event(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(5.0), 10))
    assert g.epsilon(DELTA) == edgeworth.epsilon(5.0, DELTA, 10, 1.0)
    lap = edgeworth.from_dp_event(dp_accounting.LaplaceDpEvent(2.0))
    assert lap.epsilon(DELTA) <= 0.5 * (1 + 1e-9)   # one Laplace step is (1/b, 0)-DP
    assert edgeworth.from_dp_event(de.NoOpDpEvent()).epsilon(DELTA) == 0.0


@pytest.mark.parametrize("event, name", [
    (dp_accounting.RandomizedResponseDpEvent(0.5, 3), "RandomizedResponseDpEvent"),
    (dp_accounting.SampledWithReplacementDpEvent(1000, 10, dp_accounting.GaussianDpEvent(1.0)),
     "SampledWithReplacementDpEvent"),
    (dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.0), 3)),
     "SelfComposedDpEvent inside PoissonSampledDpEvent"),
    (dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(1.0), de.ZCDpEvent(0.1)]), "ZCDpEvent"),
    (dp_accounting.NonPrivateDpEvent(), "NonPrivateDpEvent"),
])
def test_unsupported_events_raise_naming_the_type(event, name):
    with pytest.raises(ValueError, match=f"unsupported dp_accounting event: {name}"):
        edgeworth.from_dp_event(event)


def test_zero_noise_raises():
    with pytest.raises(ValueError, match="GaussianDpEvent: noise_multiplier 0"):
        edgeworth.from_dp_event(dp_accounting.GaussianDpEvent(0.0))
