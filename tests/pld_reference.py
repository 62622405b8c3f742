"""dp_accounting's PLD accountant as the tests' reference for the truth.

dp_accounting 0.6's ``PLDAccountant`` only builds the pessimistic
(connect-the-dots) PLD, so both bounds are built here with
``privacy_loss_distribution.from_gaussian_mechanism``:

* pessimistic (connect-the-dots): an upper bound on the true eps;
* optimistic (privacy buckets rounded down): a lower bound on the true eps.

Their gap grows like steps * interval / 2, so callers pick the interval
(``vdi``) per configuration.
"""
import functools

import dp_accounting
from dp_accounting.pld import privacy_loss_distribution as pldlib

from edgeworth.comparison.pld_epsilon import UNRELIABLE_ABOVE, pld_epsilon

NR = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE


@functools.lru_cache(maxsize=None)
def pld_of(segments: tuple, pessimistic: bool, vdi: float):
    """PLD of the composition of segments ((sigma, q, steps), ...), add/remove neighbours."""
    out = None
    for sigma, q, steps in segments:
        one = pldlib.from_gaussian_mechanism(
            standard_deviation=sigma, sensitivity=1.0, pessimistic_estimate=pessimistic,
            value_discretization_interval=vdi, sampling_prob=q, use_connect_dots=pessimistic,
            neighboring_relation=NR).self_compose(int(steps))
        out = one if out is None else out.compose(one)
    return out


def pld_eps(segments, delta, pessimistic, vdi):
    """eps at delta of the PLD of ``segments`` (pessimistic: upper bound; else lower bound).

    Above eps 700 dp_accounting's own eps underflows (too high, the optimistic one included), so the same PMF
    is read in log space there (edgeworth.comparison.pld_epsilon, checked in tests/test_pld_epsilon.py)."""
    pld = pld_of(tuple(segments), pessimistic, vdi)
    eps = float(pld.get_epsilon_for_delta(delta))
    return pld_epsilon(pld, delta) if eps > UNRELIABLE_ABOVE else eps


def pld_eps_by_ordering(segments, delta, pessimistic, vdi):
    """{ordering: eps} from the two PMFs dp_accounting keeps (private attributes)."""
    p = pld_of(tuple(segments), pessimistic, vdi)
    return {"remove": float(p._pmf_remove.get_epsilon_for_delta(delta)),  # pylint: disable=protected-access
            "add": float(p._pmf_add.get_epsilon_for_delta(delta))}  # pylint: disable=protected-access


def dp_event(segments):
    """The same composition as a dp_accounting DpEvent."""
    events = [dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), int(steps))
        for sigma, q, steps in segments]
    return events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)


@functools.lru_cache(maxsize=None)
def mixture_pld_eps(sigma, sensitivities: tuple, probs: tuple, steps, delta, pessimistic, vdi):
    """eps at delta of `steps` steps of dp_accounting's mixture of Gaussians
    (P = N(0, sigma^2), Q = sum_j p_j N(c_j, sigma^2)), add/remove neighbours;
    pessimistic: upper bound, else lower bound."""
    pld = pldlib.from_mixture_gaussian_mechanism(
        standard_deviation=sigma, sensitivities=list(sensitivities), sampling_probs=list(probs),
        pessimistic_estimate=pessimistic, value_discretization_interval=vdi, use_connect_dots=pessimistic)
    return float(pld.self_compose(int(steps)).get_epsilon_for_delta(delta))


@functools.lru_cache(maxsize=None)
def laplace_pld_eps(b, q, steps, delta, pessimistic, vdi):
    """eps at delta of `steps` steps of the Poisson-subsampled Laplace mechanism (scale b, sensitivity 1)."""
    pld = pldlib.from_laplace_mechanism(parameter=b, sensitivity=1.0, pessimistic_estimate=pessimistic,
                                        value_discretization_interval=vdi, sampling_prob=q,
                                        use_connect_dots=pessimistic)
    return float(pld.self_compose(int(steps)).get_epsilon_for_delta(delta))
