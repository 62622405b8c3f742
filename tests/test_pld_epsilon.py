"""eps from dp_accounting's PMFs in log space (edgeworth.comparison.pld_epsilon), the reference above eps 700.

dp_accounting 0.6.0's own get_epsilon_for_delta sums exp(-loss), which underflows above a loss of about 709, so
its eps is too high there, its optimistic ("lower bound") eps included.  The log-space reading must agree with it
where it is right and with closed forms everywhere.
"""
import math

import dp_accounting
import mpmath
import pytest
from dp_accounting.pld import common
from dp_accounting.pld import privacy_loss_distribution as pldlib

import edgeworth
from edgeworth.comparison import PeerSettings
from edgeworth.comparison.pld_epsilon import UNRELIABLE_ABOVE, pld_epsilon

NR = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE


def _gaussian_pld(sigma, q, steps, pessimistic, vdi):
    return pldlib.from_gaussian_mechanism(
        standard_deviation=sigma, sensitivity=1.0, pessimistic_estimate=pessimistic,
        value_discretization_interval=vdi, sampling_prob=q, use_connect_dots=pessimistic,
        neighboring_relation=NR).self_compose(steps)


def _gaussian_truth(sigma, delta):
    """eps of one unsampled Gaussian step (sensitivity 1): delta(eps) = Phi(1/(2s) - eps s) - e^eps Phi(-1/(2s) - eps s)."""
    with mpmath.workdps(60):
        s, target = mpmath.mpf(sigma), mpmath.mpf(delta)
        d = lambda e: mpmath.ncdf(1 / (2 * s) - e * s) - mpmath.exp(e) * mpmath.ncdf(-1 / (2 * s) - e * s)
        low, high = 1 / (2 * s * s), 1 / (2 * s * s) + 40 / s  # delta(low) > 0.4, delta(high) < 1e-300
        for _ in range(200):  # bisection: delta is decreasing in eps
            mid = (low + high) / 2
            low, high = (mid, high) if d(mid) > target else (low, mid)
        return float(high)


@pytest.mark.parametrize("sigma,q,steps,delta", [(1.0, 0.01, 1000, 1e-5), (0.8, 0.05, 300, 1e-6),
                                                   (2.0, 1.0, 10, 1e-8), (5.0, 0.3, 50, 1e-3),
                                                   (0.66, 1e-3, 1000, 4e-12)])  # thousands of negative FFT probs
@pytest.mark.parametrize("pessimistic", [True, False])
def test_agrees_with_dp_accounting_where_it_is_right(sigma, q, steps, delta, pessimistic):
    pld = _gaussian_pld(sigma, q, steps, pessimistic, 1e-3)
    ours, theirs = pld_epsilon(pld, delta), pld.get_epsilon_for_delta(delta)
    assert theirs < UNRELIABLE_ABOVE
    assert ours == pytest.approx(theirs, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("sigma", [0.025, 0.02])
def test_brackets_the_closed_form_above_eps_700(sigma):
    # one step of the Gaussian mechanism at sigma 0.025 has eps 969.6 at delta 1e-5 (1,250 at sigma 0.02)
    delta, vdi = 1e-5, 1e-2
    truth = _gaussian_truth(sigma, delta)
    assert truth > UNRELIABLE_ABOVE
    upper = pld_epsilon(_gaussian_pld(sigma, 1.0, 1, True, vdi), delta)
    lower = pld_epsilon(_gaussian_pld(sigma, 1.0, 1, False, vdi), delta)
    assert lower <= truth <= upper
    assert upper - lower <= 2 * vdi
    # dp_accounting's own optimistic eps lies above the truth there: it is no lower bound
    assert _gaussian_pld(sigma, 1.0, 1, False, vdi).get_epsilon_for_delta(delta) > truth + 0.5


def test_edge_cases():
    pld = _gaussian_pld(1.0, 0.01, 10, True, 1e-3)
    assert pld_epsilon(pld, 1.0) == 0.0
    assert pld_epsilon(pld, 0.5) == 0.0 == pld.get_epsilon_for_delta(0.5)
    # a mechanism with infinite-loss mass above delta has no finite eps
    approx = pldlib.from_privacy_parameters(common.DifferentialPrivacyParameters(1.0, 1e-3))
    assert pld_epsilon(approx, 1e-4) == math.inf == approx.get_epsilon_for_delta(1e-4)
    assert pld_epsilon(approx, 2e-3) == pytest.approx(approx.get_epsilon_for_delta(2e-3), rel=1e-9)
    with pytest.raises(ValueError, match="delta"):
        pld_epsilon(pld, -1e-3)


def test_comparison_notes_the_underflow_only_above_700():
    # one step at sigma 0.025, q 0.5: the truth is 962.65 (issue 16's numerical integration)
    coarse = PeerSettings(pld_value_discretization_interval=1e-2)
    high = edgeworth.compare(sigma=0.025, q=0.5, steps=1, delta=1e-5, settings=coarse, time_limit=600,
                             backends=["dp_accounting.pld_optimistic", "edgeworth.certified"])
    rows = {r.accountant: r for r in high}
    note = rows["dp_accounting PLD optimistic"].note
    assert "unreliable above eps 700" in note
    safe = float(note.rsplit("gives eps ", 1)[1])
    # the log-space optimistic eps is a lower bound again: below the certified value, and close to it
    assert safe <= rows["edgeworth certified"].value <= safe + 0.01
    assert rows["dp_accounting PLD optimistic"].value > rows["edgeworth certified"].value
    low = edgeworth.compare(sigma=1.0, q=0.01, steps=1000, delta=1e-5, settings=coarse, time_limit=600,
                            backends=["dp_accounting.pld_optimistic"])
    assert low.rows[0].ok
    assert "unreliable" not in low.rows[0].note
