"""The privacy budget of a fine-tuning run: calibrating sigma, the budget guard (one search for example-level and
user-level runs), and the eps a ledger has spent.

The guard stops a run before a step would take the spent eps past the target; it is the same bisection over the
number of further steps for every ledger, given the eps after k more steps.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Tuple

from .. import opacus as _edgeworth_opacus  # registers the "edgeworth" accountant with Opacus
from ..accountant import Accountant


def calibrate_noise_multiplier(target_eps: float, delta: float, steps: int, sample_rate: float,
                               accountant: str) -> float:
    """sigma for (target_eps, delta) after ``steps`` steps at rate q.

    "edgeworth": :func:`edgeworth.noise_multiplier` (certified) unchanged;
    "rdp" / "prv": Opacus's calibration with that accountant.
    """
    return float(_edgeworth_opacus.get_noise_multiplier(target_epsilon=target_eps, target_delta=delta,
                                                        sample_rate=sample_rate, steps=steps,
                                                        accountant=accountant))


def steps_within_budget(eps_after: Callable[[int], float], target_eps: float, max_steps: int) -> int:
    """The most further steps k (0 <= k <= ``max_steps``) with ``eps_after(k) <= target_eps``.

    ``eps_after(k)`` is the eps of the ledger after k more steps; eps grows with k, so this is a bisection with
    O(log max_steps) queries (k = 0 is never queried: no further step spends nothing more).
    """
    def fits(k: int) -> bool:
        return k == 0 or eps_after(k) <= target_eps

    if fits(max_steps):
        return max_steps
    lo, hi = 0, max_steps  # fits(lo), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def budget_stop(eps_after: Callable[[int], float], *, target_eps: float, sigma: float, q: float, start_step: int,
                planned_steps: int) -> int:
    """The step at which the budget guard ends the run (at most ``planned_steps``).

    Raises:
        ValueError: not even one more step fits, saying why: a single step costs more than the target (a fresh
            run), or the ledger already spends so much that one more step passes it (a resume).
    """
    remaining = planned_steps - start_step
    fits = steps_within_budget(eps_after, target_eps, remaining)
    if fits == 0 and remaining > 0:
        one = eps_after(1)
        if start_step == 0:
            raise ValueError(f"target_eps: one step at sigma {sigma:.4g} and q {q:.4g} already costs eps {one:.4g}, "
                             f"more than the target {target_eps:g}; raise the target or sigma")
        raise ValueError(f"target_eps: the ledger already spends eps {eps_after(0):.4g} in {start_step} steps; one "
                         f"more step at sigma {sigma:.4g} and q {q:.4g} would bring it to {one:.4g}, more than the "
                         f"target {target_eps:g}")
    return start_step + fits


def opacus_eps_after(accountant, noise_multiplier: float, sample_rate: float, delta: float) -> Callable[[int], float]:
    """eps after k more steps at (sigma, q), as the run's own Opacus accountant computes it (on a copy of its
    history)."""
    history = list(accountant.history)
    return lambda k: _epsilon_with(accountant, history + ([(noise_multiplier, sample_rate, k)] if k else []), delta)


def ledger_eps_after(ledger: Accountant, mechanism, delta: float) -> Callable[[int], float]:
    """Certified eps of an :class:`edgeworth.Accountant` after k more steps of ``mechanism`` (user-level runs)."""
    state = ledger.state_dict()

    def eps(k: int) -> float:
        probe = Accountant()
        probe.load_state_dict(state)
        if k:
            probe.compose(mechanism=mechanism, steps=k)
        return probe.epsilon(delta)
    return eps


def _epsilon_with(accountant, history, delta: float) -> float:
    probe = type(accountant)()
    probe.history = list(history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RDP's "optimal order is the largest alpha"
        return float(probe.get_epsilon(delta))


def _prv_estimate(history, delta: float) -> float:
    """The PRV accountant's point estimate of eps (Gopi et al., arXiv 2106.02848), as Opacus 1.6 computes it
    (eps_error 0.01, delta_error delta / 1000: the settings of its own ``get_epsilon``)."""
    from opacus.accountants import PRVAccountant

    prv = PRVAccountant()
    prv.history = list(history)
    dprv = prv._get_dprv(eps_error=0.01, delta_error=delta / 1000)
    return float(dprv.compute_epsilon(delta, delta / 1000, 0.01)[1])


def spent_epsilon(history, delta: float, *, estimate: bool = True
                  ) -> Tuple[float, Optional[float], Optional[str]]:
    """(certified eps, estimate of eps, the estimate's method) of a ledger.

    The certified eps is ``edgeworth``'s upper bound.  The estimate is the
    tilted (saddle-point) one; where it declines (few sampled steps in all,
    q * steps below about 10, as in short fine-tuning runs) it is the PRV
    estimate ("prv"), not the Edgeworth expansion, which is far off there
    (at q = 0.0038, 100 steps, sigma = 0.432: 0.39 against PLD's 6.33).
    ``estimate=False`` skips it: (certified, None, None).
    """
    ledger = _edgeworth_opacus.EdgeworthAccountant()
    ledger.history = list(history)
    certified = ledger.get_epsilon(delta)
    if not estimate:
        return certified, None, None
    if not ledger.history:
        return certified, 0.0, "tilted"
    try:
        return certified, ledger.get_epsilon(delta, method="tilted"), "tilted"
    except ValueError:  # the tilted estimate declines where a single saddle point cannot describe the law
        return certified, _prv_estimate(history, delta), "prv"
