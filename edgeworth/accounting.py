"""The public accounting functions for DP-SGD: epsilon, delta, noise_multiplier.

Semantics shared by every function here:

* Mechanism: ``steps`` steps of the Poisson-subsampled Gaussian mechanism with
  noise multiplier ``sigma`` (noise std / clipping norm) and sampling rate
  ``q`` (each example joins a batch independently with probability q).
* Neighbours: add or remove one example.  The "remove" ordering compares
  Q^n against P^n, the "add" ordering P^n against Q^n; a guarantee for
  add/remove neighbours needs both.
* ``method="certified"`` (default) is a rigorous *upper bound* on eps (or
  delta) covering both orderings: the optimal Chernoff/Renyi bound from the
  exact CGF of the privacy loss, optimised over a continuous order, with the
  conversion of Canonne, Kamath and Steinke (arXiv 2004.00010).  It is at
  least as tight as an RDP accountant on any grid of orders.
* ``method="edgeworth"`` is the *point estimate* of the Edgeworth accountant
  (Wang et al., arXiv 2206.04236; used by EW-Tune, Behnia et al.,
  arXiv 2210.15042) of ``order`` 1, 2 or 3.  It is not a bound: in DP-SGD
  regimes it can underestimate eps by up to ~20 %.  Like the paper it uses
  the remove ordering unless ``ordering="add"`` or ``"both"`` is asked for;
  the expansion is unreliable on the add ordering's lower tails (the PLLR is
  bounded below, with a heavy right tail).

All functions take numbers or numpy arrays and broadcast them; they return a
float when every input is a scalar and an array otherwise.  The ``*_details``
variants return an :class:`AccountingResult` carrying the label.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Union

import numpy as np

from . import _core
from ._validate import (broadcast, check_delta, check_eps, check_method, check_q, check_sigma,
                        check_steps)

ArrayLike = Union[float, np.ndarray]

_ORDERING_NAMES = np.array(["remove", "add"])


@dataclass(frozen=True)
class AccountingResult:
    """A value with what it means.

    Attributes:
        quantity: "epsilon", "delta" or "noise_multiplier".
        value: the number (float) or numbers (ndarray).
        label: "certified" (a rigorous upper bound on eps or delta; for a
            noise multiplier, one whose certified eps meets the target) or
            "estimate" (a point estimate, no guarantee).
        method: "certified" or "edgeworth".
        order: the Edgeworth order (None for certified).
        orderings: which orderings were covered ("both", "remove", "add").
        dominating: the ordering that gave the value ("remove" or "add";
            an array of them for array input).
        inputs: the arguments the value was computed from.
    """

    quantity: str
    value: ArrayLike
    label: str
    method: str
    order: Any
    orderings: str
    dominating: Any
    inputs: Dict[str, Any] = field(default_factory=dict)

    @property
    def certified(self) -> bool:
        return self.label == "certified"

    def __float__(self) -> float:
        return float(self.value)

    def as_dict(self) -> Dict[str, Any]:
        def plain(v):
            return v.tolist() if isinstance(v, np.ndarray) else v
        return {
            "quantity": self.quantity,
            "value": plain(self.value),
            "label": self.label,
            "method": self.method,
            "order": self.order,
            "orderings": self.orderings,
            "dominating_ordering": plain(self.dominating),
            "inputs": {k: plain(v) for k, v in self.inputs.items()},
        }


def _run(core_fn, quantity: str, names, arrays, method, order, ordering) -> AccountingResult:
    method, order, ordering = check_method(method, order, ordering)
    b = broadcast(**dict(zip(names, arrays)))
    shape = next(iter(b.values())).shape
    flat = [np.ascontiguousarray(v, dtype=float).ravel() for v in b.values()]
    values, codes, _ = core_fn(*flat, method, order, ordering)
    scalar = len(shape) == 0
    values = values.reshape(shape)
    dominating = _ORDERING_NAMES[codes.astype(np.intp)].reshape(shape)
    return AccountingResult(
        quantity=quantity,
        value=float(values) if scalar else values,
        label="certified" if method == "certified" else "estimate",
        method=method,
        order=None if method == "certified" else order,
        orderings=ordering,
        dominating=str(dominating) if scalar else dominating,
        inputs={k: (float(v) if scalar else v) for k, v in b.items()},
    )


def epsilon_details(sigma, delta, steps, q, *, method: str = "certified", order: int = 2,
                    ordering: str = None) -> AccountingResult:
    """Like :func:`epsilon`, returning an :class:`AccountingResult`."""
    arrays = (check_sigma(sigma), check_delta(delta), check_steps(steps), check_q(q))
    return _run(_core.dpsgd_epsilon, "epsilon", ("sigma", "delta", "steps", "q"), arrays, method, order, ordering)


def epsilon(sigma, delta, steps, q, *, method: str = "certified", order: int = 2, ordering: str = None) -> ArrayLike:
    """eps of DP-SGD at a given delta.

    Args:
        sigma: noise multiplier (noise std / clipping norm), > 0.
        delta: target delta, in (0, 1).
        steps: number of DP-SGD steps (an integer >= 1); steps = epochs / q.
        q: Poisson sampling rate, in (0, 1].
        method: "certified" (rigorous upper bound, both orderings; default) or
            "edgeworth" (point estimate of the given order, not a bound).
        order: Edgeworth order, 1, 2 or 3 (used by method="edgeworth").
        ordering: "remove", "add" or "both" for method="edgeworth"
            (default "remove", as in the paper); the certified method always
            covers both.

    Returns:
        eps (float, or an array of the broadcast shape).

    Raises:
        ValueError: a parameter outside its range, names that do not
            broadcast, or an Edgeworth estimate that never reaches delta.
    """
    return epsilon_details(sigma, delta, steps, q, method=method, order=order, ordering=ordering).value


def delta_details(sigma, eps, steps, q, *, method: str = "certified", order: int = 2,
                  ordering: str = None) -> AccountingResult:
    """Like :func:`delta`, returning an :class:`AccountingResult`."""
    arrays = (check_sigma(sigma), check_eps(eps, allow_zero=True), check_steps(steps), check_q(q))
    return _run(_core.dpsgd_delta, "delta", ("sigma", "eps", "steps", "q"), arrays, method, order, ordering)


def delta(sigma, eps, steps, q, *, method: str = "certified", order: int = 2, ordering: str = None) -> ArrayLike:
    """delta of DP-SGD at a given eps.

    Args:
        sigma: noise multiplier (noise std / clipping norm), > 0.
        eps: epsilon, in [0, 1000].
        steps: number of DP-SGD steps (an integer >= 1).
        q: Poisson sampling rate, in (0, 1].
        method, order, ordering: as in :func:`epsilon`.

    Returns:
        delta (float or array).  The certified value is an upper bound
        (capped at 1); the Edgeworth value is an estimate and can even be
        negative where the expansion breaks down.
    """
    return delta_details(sigma, eps, steps, q, method=method, order=order, ordering=ordering).value


def noise_multiplier_details(eps, delta, steps, q, *, method: str = "certified", order: int = 2,
                             ordering: str = None) -> AccountingResult:
    """Like :func:`noise_multiplier`, returning an :class:`AccountingResult`."""
    arrays = (check_eps(eps), check_delta(delta), check_steps(steps), check_q(q))
    return _run(_core.dpsgd_noise_multiplier, "noise_multiplier", ("eps", "delta", "steps", "q"), arrays,
                method, order, ordering)


def noise_multiplier(eps, delta, steps, q, *, method: str = "certified", order: int = 2,
                     ordering: str = None) -> ArrayLike:
    """The smallest noise multiplier sigma for which DP-SGD meets (eps, delta).

    With the default ``method="certified"`` the returned sigma is safe: the
    certified eps at that sigma (an upper bound on the true eps, both
    orderings) is at most ``eps``.  With ``method="edgeworth"`` it is the
    sigma at which the Edgeworth *estimate* reaches eps, which may truly give
    a larger eps (EW-Tune's published sigmas give up to 9.6 for a target of 8).

    The root is found by TOMS748 on a bracket [sigma_lo, sigma_hi] that has
    been evaluated and seen to straddle the target; the upper (safe) end is
    returned once the bracket is narrower than 1e-10 relative.  sigma is
    searched in [0.01, 1e6].

    Args:
        eps: target epsilon, in (0, 1000].
        delta: target delta, in (0, 1).
        steps: number of DP-SGD steps (an integer >= 1).
        q: Poisson sampling rate, in (0, 1].
        method, order, ordering: as in :func:`epsilon`.

    Returns:
        sigma (float or array).

    Raises:
        ValueError: bad input, or a target that no sigma in [0.01, 1e6]
            meets (``edgeworth._core.UnreachableTargetError``, a ValueError).
    """
    return noise_multiplier_details(eps, delta, steps, q, method=method, order=order, ordering=ordering).value


def privacy_loss_cumulants(sigma: float, q: float, steps: int = 1) -> dict:
    """Cumulants kappa_1..kappa_5 of the summed privacy-loss variables.

    For ``steps`` steps of the Poisson-subsampled Gaussian, returns
    ``{"remove": {"x": [...], "y": [...]}, "add": {...}}`` where X is the PLLR
    log(q/p) under P and Y the same under Q, in each ordering (the add
    ordering swaps P and Q, so X_add = -Y_remove and Y_add = -X_remove).
    Computed by adaptive Gauss-Kronrod quadrature to ~1e-13 relative.
    """
    sigma = float(check_sigma(sigma))
    q = float(check_q(q))
    steps = float(check_steps(steps))
    comp = _core.Composition()
    comp.add(_core.SubsampledGaussian(sigma, q), steps)
    return comp.cumulants()
