"""eps from a dp_accounting privacy-loss distribution, evaluated in log space.

dp_accounting 0.6.0 finds eps for a delta by summing ``exp(-loss) * prob`` over
the losses above eps.  Above a loss of about 709 that product underflows
(subnormal from 709, zero from 745), so its eps is too high from eps of about
700 on, for the pessimistic and the optimistic PMF alike: at sigma 0.5, q 0.2,
4000 steps, delta 1e-5 it gives 893.30 / 893.10 where the same PMFs give
892.334 / 892.134.  :func:`pld_epsilon` reads the same PMFs and keeps every
such sum as a logarithm, so it is exact to rounding at any eps.

For a PMF with losses ``l_i``, probabilities ``p_i`` and infinite-loss mass
``m``, the hockey-stick divergence is
``delta(eps) = m + sum_{l_i > eps} p_i (1 - exp(eps - l_i))``, non-increasing in
eps.  Between two neighbouring losses ``l_j <= eps < l_{j+1}`` it equals
``m + U_j - exp(eps + log L_j)`` with ``U_j = sum_{i > j} p_i`` and
``log L_j = logsumexp_{i > j}(log p_i - l_i)``, so the least eps with
``delta(eps) <= target`` is ``log(m + U_j - target) - log L_j`` on the segment
where the crossing lies.
"""
from __future__ import annotations

import math

import numpy as np

#: Above this eps, dp_accounting 0.6.0's own ``get_epsilon_for_delta`` is not
#: to be trusted (see the module docstring); the comparison notes it.
UNRELIABLE_ABOVE = 700.0


def _pmf_epsilon(pmf, delta: float) -> float:
    dense = pmf.to_dense_pmf()
    # pylint: disable=protected-access
    infinity_mass = float(dense._infinity_mass)
    probs = np.asarray(dense._probs, dtype=float)
    losses = (np.arange(probs.size) + dense._lower_loss) * dense._discretization
    # pylint: enable=protected-access
    if infinity_mass > delta:
        return math.inf
    keep = probs != 0
    probs, losses = probs[keep], losses[keep]
    if probs.size == 0:
        return 0.0
    # Suffix sums over the losses from index k on (k = 0 .. n): U and log L.  dp_accounting's FFT leaves tiny
    # negative probabilities; like its own sums, these count, as a separate log-space sum subtracted at the end.
    above = np.concatenate((np.cumsum(probs[::-1])[::-1], [0.0]))

    def log_suffix(weights):
        with np.errstate(divide="ignore"):
            terms = np.log(weights) - losses
        return np.concatenate((np.logaddexp.accumulate(terms[::-1])[::-1], [-np.inf]))

    log_pos, log_neg = log_suffix(np.maximum(probs, 0.0)), log_suffix(np.maximum(-probs, 0.0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_lower = log_pos + np.log1p(-np.minimum(np.exp(log_neg - log_pos), 1.0))
    log_lower[np.isnan(log_lower)] = -np.inf  # both sums empty
    # delta at each loss l_j (the losses above it count): m + U_{j+1} - exp(l_j + log L_{j+1}).
    with np.errstate(under="ignore", over="ignore"):
        at_loss = infinity_mass + above[1:] - np.exp(np.minimum(losses + log_lower[1:], 0.0))
    over = np.nonzero(at_loss > delta)[0]
    if over.size == 0:
        # the crossing lies below the smallest loss: every loss counts
        j_above = 0
    else:
        j_above = int(over[-1]) + 1  # delta(l_j) > target for this j: the crossing is above l_j
    mass = infinity_mass + above[j_above] - delta
    if mass <= 0.0:
        return 0.0
    # negative: delta(0) already meets the target
    return max(0.0, math.log(mass) - float(log_lower[j_above]))


def pld_epsilon(pld, delta: float) -> float:
    """The least eps with delta(eps) <= ``delta`` for a dp_accounting ``PrivacyLossDistribution``.

    Both orderings count (the larger eps of the remove and the add PMF), as in
    ``PrivacyLossDistribution.get_epsilon_for_delta``; the sums run in log space
    (module docstring), so the value stays right above eps 700, where
    dp_accounting 0.6.0's own method underflows.

    Args:
        pld: a ``dp_accounting.pld.privacy_loss_distribution.PrivacyLossDistribution``.
        delta: the target, in [0, 1].

    Returns:
        eps (natural log units); ``inf`` where the infinite-loss mass exceeds ``delta``.
    """
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta must be in [0, 1], got {delta!r}")
    # pylint: disable=protected-access
    pmfs = [pld._pmf_remove] + ([] if pld._symmetric else [pld._pmf_add])
    # pylint: enable=protected-access
    return max(_pmf_epsilon(pmf, delta) for pmf in pmfs)
