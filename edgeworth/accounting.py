"""The public accounting functions for DP-SGD: epsilon, delta, noise_multiplier.

Semantics shared by every function here:

* Mechanism: ``steps`` steps of the Poisson-subsampled Gaussian mechanism with
  noise multiplier ``sigma`` (noise std / clipping norm) and sampling rate
  ``q`` (each example joins a batch independently with probability q).
* Neighbours: add or remove one example.  The "remove" ordering compares
  Q^n against P^n, the "add" ordering P^n against Q^n; a guarantee for
  add/remove neighbours needs both.
* ``method="certified"`` (default) is a rigorous *upper bound* on eps (or
  delta) covering both orderings: per ordering the smallest of the valid
  bounds that answer, then the larger ordering.  The bounds, their order and
  the rules that skip one are listed once, in the table ``kCertifiedBounds``
  of ``csrc/certified.hpp`` (``edgeworth._core.CERTIFIED_BOUNDS``);
  ``epsilon_details(...).trace`` shows how one value was assembled, and
  ``docs/certified.md`` gives the argument for each bound, in the same order.
* ``method="tilted"`` is an *estimate*, both orderings, from the first of
  these methods that answers (``edgeworth._core.ESTIMATE_METHODS``; the
  ``*_details`` results name the one used in ``estimate_method``):
  ``"exact_one_step"``, the exact curve for one step of the subsampled
  Gaussian; ``"saddle_point"``, the Edgeworth expansion of the exponentially
  tilted privacy-loss sum (Lugannani-Rice form with the second-order
  correction; Alghamdi et al., arXiv 2208.09595); ``"conditioned_inversion"``,
  where a single saddle point cannot describe the tilted law (a skewed or
  two-moded tilted loss), the remove ordering's exact Laplace inversion
  conditioned on a step leaving the flat part of the loss
  (``csrc/conditioned.hpp``), accepted where its own error estimate is below
  1e-5 relative; ``"characteristic_function"``, the characteristic-function
  inversion's central value, without the error allowance that makes it the
  certified bound (``csrc/cf_bound.hpp``).  With fewer than one sampled step
  expected in all, only the last is used (the single saddle point misses
  the rare jump there, even where its skewness looks harmless).  Where none
  answers (the Laplace mechanism with few sampled steps, or fewer than about
  0.01 sampled steps in all), the call raises ``UnreachableTargetError``
  naming the regime, instead of returning a poor number.
* ``method="edgeworth"`` is the *point estimate* of the Edgeworth accountant
  (Wang et al., arXiv 2206.04236; used by EW-Tune, Behnia et al.,
  arXiv 2210.15042) of ``order`` 1, 2 or 3.  It is not a bound: in DP-SGD
  regimes it can underestimate eps by up to ~20 %.  Like the paper it uses
  the remove ordering unless ``ordering="add"`` or ``"both"`` is asked for;
  the expansion is unreliable on the add ordering's lower tails (the PLLR is
  bounded below, with a heavy right tail).

All functions take numbers or numpy arrays and broadcast them; they return a
float when every input is a scalar and an array otherwise.  An array, and the
broadcast shape, may hold at most ``edgeworth._validate.MAX_ELEMENTS`` = 10**6
elements (a ``ValueError`` says so before any work).  Elements are computed
one after another; Ctrl-C stops an array call within ~20 ms of the element
that is running (``KeyboardInterrupt``), and an element whose method declines
(``UnreachableTargetError``) or fails raises for the whole call, its message
starting with ``element i (sigma = ..., ...)``: the element's index in the
broadcast shape and its inputs.  Every bad argument, of a wrong value or a
wrong type, raises ``ValueError`` naming it (see ``edgeworth._validate``).  The ``*_details``
variants return an :class:`AccountingResult` carrying the label.
"""
from __future__ import annotations

import dataclasses
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Union

import numpy as np

from . import _core
from ._validate import (broadcast, check_delta, check_eps, check_method, check_q, check_sigma,
                        check_steps, scalar)

ArrayLike = Union[float, np.ndarray]

_ORDERING_NAMES = np.array(["remove", "add"])

#: Relative eps disagreement between an Edgeworth and the tilted estimate above
#: which ``EdgeworthAccuracyWarning`` fires.
ACCURACY_TOLERANCE = 0.02


class EdgeworthAccuracyWarning(UserWarning):
    """An Edgeworth point estimate disagrees with the tilted (saddle-point) estimate."""


@dataclass(frozen=True)
class AccountingResult:
    """A value with what it means.

    Attributes:
        quantity: "epsilon", "delta" or "noise_multiplier".
        value: the number (float) or numbers (ndarray).
        label: "certified" (a rigorous upper bound on eps or delta; for a
            noise multiplier, one whose certified eps meets the target) or
            "estimate" (a point estimate, no guarantee).
        method: "certified", "tilted" or "edgeworth".
        order: the Edgeworth order (None for certified).
        orderings: which orderings were covered ("both", "remove", "add").
        dominating: the ordering that gave the value ("remove" or "add";
            an array of them for array input).
        inputs: the arguments the value was computed from.
        estimate: the tilted estimate of the same quantity (``method="tilted"``;
            nan where no estimate answers), filled in by the ``*_details``
            functions.
        estimate_method: which method gave ``estimate`` (for
            ``method="tilted"``, also ``value``): "exact_one_step",
            "saddle_point", "conditioned_inversion" or
            "characteristic_function" (``edgeworth._core.ESTIMATE_METHODS``,
            in the order they are tried); None where no estimate answered; an
            object array of them for array input.
        bound: the certified value of the same quantity.
        gap: ``bound - estimate``: what the guarantee costs over the best
            estimate (in eps, delta or sigma).
        trace: how the certified value ``bound`` was assembled, filled in by
            :func:`epsilon_details` and :func:`delta_details`: a list of
            dicts, one per bound tried or skipped, in the order of the table
            ``edgeworth._core.CERTIFIED_BOUNDS`` (``csrc/certified.hpp``), each
            with ``bound``, ``ordering``, ``status`` ("answered", "declined" or
            "skipped"), ``value`` (answered), ``reason`` (declined or skipped)
            and ``seconds`` (a skip that covers several bounds names them
            ``"(add ordering)"`` or ``"(all others)"``; the delta at eps = 0
            found through the eps inversion is ``"(epsilon inversion)"``,
            see ``docs/certified.md``; a skip's reason starts
            with the name of the rule in ``csrc/certified.hpp``); an object
            array of such lists for array input (None where the certified
            bound declined).  For a noise multiplier: the trace of the
            certified eps at the sigma ``bound``.
        calibration: for a noise multiplier, filled in by
            :func:`noise_multiplier_details`: how the certified sigma
            ``bound`` was found, a list of dicts, one per evaluation in the
            order made, each with ``sigma``, ``eps`` (the certified eps there;
            nan where it declined), ``meets`` (eps <= the target), ``bounds``
            ("all", or "cheap": the certified bounds without the
            characteristic-function bound, an upper bound on "all" that the
            search's first phase converges on), ``source`` (the bound that
            gave eps, or "declined"), ``reason`` and ``seconds``.  ``bound``
            is the least sigma whose eps met the target with all the bounds;
            every smaller sigma tried with all the bounds missed it.  None for
            eps and delta; an object array of lists for array input.
    """

    quantity: str
    value: ArrayLike
    label: str
    method: str
    order: Any
    orderings: str
    dominating: Any
    inputs: Dict[str, Any] = field(default_factory=dict)
    estimate: Optional[ArrayLike] = None
    bound: Optional[ArrayLike] = None
    gap: Optional[ArrayLike] = None
    trace: Any = None
    estimate_method: Any = None
    calibration: Any = None

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
            "estimate": plain(self.estimate),
            "bound": plain(self.bound),
            "gap": plain(self.gap),
            "trace": plain(self.trace),
            "estimate_method": plain(self.estimate_method),
            "calibration": plain(self.calibration),
        }


@dataclass(frozen=True)
class EdgeworthBounds:
    """The Edgeworth accountant's own certified bounds on eps (Wang et al., arXiv 2206.04236).

    The order-1 Edgeworth expansions of the privacy-loss CDFs plus the uniform
    error bound of Derumigny, Girard and Guyonvarch (arXiv 2101.05780) on them;
    both orderings (the larger eps of the two is reported).

    Attributes:
        lower, upper: certified lower and upper bounds on eps (floats or arrays).
            A vacuous bound says nothing: upper is inf, lower is 0.
        vacuous_lower, vacuous_upper: True where the error terms swamp delta, as
            they do in DP-SGD regimes (at the EW-Tune settings the error bound is
            0.15 to 0.84, against delta = 1e-5); informative only in regimes like
            delta = 0.1 with 1e5 or more steps.
        error_x, error_y: the DGG bounds on sup |F - F_hat| for the summed X and Y
            of the remove ordering.
        dominating: the ordering that gives the upper bound.
        inputs: the arguments.
    """

    lower: ArrayLike
    upper: ArrayLike
    vacuous_lower: Any
    vacuous_upper: Any
    error_x: ArrayLike
    error_y: ArrayLike
    dominating: Any
    inputs: Dict[str, Any] = field(default_factory=dict)
    label: str = "certified"


def edgeworth_bounds(sigma, delta, steps, q) -> EdgeworthBounds:
    """The Edgeworth accountant's own certified bounds on eps of DP-SGD (Wang et
    al., arXiv 2206.04236): the order-1 Edgeworth expansion plus the
    Derumigny-Girard-Guyonvarch uniform error bound (arXiv 2101.05780), both
    orderings (add/remove neighbours, Poisson sampling).

    Args:
        sigma: noise multiplier (noise std / clipping norm), in [0.01, 1e6].
        delta: target delta, in (0, 1).
        steps: number of DP-SGD steps (an integer >= 1).
        q: Poisson sampling rate, in [1e-12, 1].

    Returns:
        :class:`EdgeworthBounds`: lower and upper eps with vacuity flags (a
        vacuous upper bound is inf).  They are vacuous wherever the error
        bound exceeds delta, which is every usual DP-SGD regime; this
        library's ``epsilon(..., method="certified")`` takes this bound into
        account where it can help (``csrc/certified.hpp``).

    Raises:
        ValueError: a parameter outside its range, or names that do not broadcast.
    """
    b = broadcast(sigma=check_sigma(sigma), delta=check_delta(delta), steps=check_steps(steps), q=check_q(q))
    shape = b["sigma"].shape
    keys = ("eps_lower", "eps_upper", "vacuous_lower", "vacuous_upper", "delta_x", "delta_y", "ordering")
    cols = {k: np.empty(shape, dtype=object) for k in keys}
    for idx in np.ndindex(*shape):
        args = {k: float(b[k][idx]) for k in ("sigma", "q", "steps", "delta")}
        try:
            r = _core.edgeworth_bound(*args.values())
        except ValueError as exc:
            if not shape:
                raise
            inputs = ", ".join(f"{k} = {v!r}" for k, v in args.items())
            raise type(exc)(f"element {idx if len(idx) > 1 else idx[0]} ({inputs}): {exc}") from None
        for k in keys:
            cols[k][idx] = r[k]
    scalar = len(shape) == 0

    def out(k, dtype):
        return dtype(cols[k][()]) if scalar else cols[k].astype(dtype)
    return EdgeworthBounds(
        lower=out("eps_lower", float), upper=out("eps_upper", float), vacuous_lower=out("vacuous_lower", bool),
        vacuous_upper=out("vacuous_upper", bool), error_x=out("delta_x", float), error_y=out("delta_y", float),
        dominating=out("ordering", str), inputs={k: (float(v) if scalar else v) for k, v in b.items()})


def _run(core_fn, quantity: str, names, arrays, method, order, ordering) -> AccountingResult:
    method, order, ordering = check_method(method, order, ordering)
    b = broadcast(**dict(zip(names, arrays)))
    shape = next(iter(b.values())).shape
    flat = [np.ascontiguousarray(v, dtype=float).ravel() for v in b.values()]
    try:
        values, codes, _, how = core_fn(*flat, method, order, ordering)
    except ValueError as exc:  # the core names the flat index; the caller's arrays may have more dimensions
        m = re.match(r"element (\d+) ", str(exc))
        if m is None or len(shape) < 2:
            raise
        where = tuple(int(i) for i in np.unravel_index(int(m.group(1)), shape))
        raise type(exc)(f"element {where} " + str(exc)[m.end():]) from None
    scalar = len(shape) == 0
    values = values.reshape(shape)
    dominating = _ORDERING_NAMES[codes.astype(np.intp)].reshape(shape)
    how = _estimate_method_names(how).reshape(shape)
    return AccountingResult(
        quantity=quantity,
        value=float(values) if scalar else values,
        label="certified" if method == "certified" else "estimate",
        method=method,
        order=order if method == "edgeworth" else None,
        orderings=ordering,
        dominating=str(dominating) if scalar else dominating,
        inputs={k: (float(v) if scalar else v) for k, v in b.items()},
        estimate_method=(how[()] if scalar else how) if method == "tilted" else None,
    )


def _estimate_method_names(codes: np.ndarray) -> np.ndarray:
    """The names of the core's estimate-method codes (-1: None), as an object array."""
    names = np.array(list(_core.ESTIMATE_METHODS) + [None], dtype=object)
    return names[np.where(codes < 0, len(names) - 1, codes).astype(np.intp)]


def _elementwise(fn: Callable[..., float], shape, arrays) -> np.ndarray:
    """fn applied per element; nan where the method has no answer (a named ValueError)."""
    out = np.full(shape, np.nan)
    for idx in np.ndindex(*shape):
        try:
            out[idx] = fn(*(float(a[idx]) for a in arrays))
        except ValueError:
            pass
    return out


def _scalar(core_fn, method: str) -> Callable[..., float]:
    """One element of a vectorised core call, with the given method (order 2, both orderings)."""
    return lambda *args: float(core_fn(*(np.array([a]) for a in args), method, 2, "both")[0][0])


_tilted_eps_at = _scalar(_core.dpsgd_epsilon, "tilted")


def _check_edgeworth(result: AccountingResult) -> None:
    """Warns when an Edgeworth estimate disagrees with the tilted one by more than 2 % in eps."""
    if result.method != "edgeworth":
        return
    inp = result.inputs
    shape = np.shape(result.value)
    value = np.asarray(result.value, dtype=float)
    if result.quantity == "epsilon":
        arrays = [np.broadcast_to(inp[k], shape) for k in ("sigma", "delta", "steps", "q")]
        ours, tilted = value, _elementwise(_tilted_eps_at, shape, arrays)
    elif result.quantity == "noise_multiplier":  # eps that the tilted estimate gives at the returned sigma
        arrays = [value] + [np.broadcast_to(inp[k], shape) for k in ("delta", "steps", "q")]
        ours, tilted = np.broadcast_to(inp["eps"], shape), _elementwise(_tilted_eps_at, shape, arrays)
    else:  # delta: the tilted eps at the estimated delta, against the given eps
        ok = (value > 0) & (value < 1)
        d = np.where(ok, value, 0.5)
        arrays = [np.broadcast_to(inp[k], shape) for k in ("sigma",)] + [d] + \
                 [np.broadcast_to(inp[k], shape) for k in ("steps", "q")]
        ours, tilted = np.broadcast_to(inp["eps"], shape), np.where(ok, _elementwise(_tilted_eps_at, shape, arrays),
                                                                   np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(np.isfinite(tilted) & (tilted > 0), ours / tilted - 1.0, np.nan)
    if not np.any(np.abs(np.nan_to_num(rel)) > ACCURACY_TOLERANCE):
        return
    i = np.unravel_index(np.nanargmax(np.abs(rel)), shape) if shape else ()
    where = ", ".join(f"{k}={np.broadcast_to(v, shape)[i]:g}" for k, v in inp.items())
    warnings.warn(
        f"the Edgeworth order-{result.order} estimate implies eps = {np.broadcast_to(ours, shape)[i]:.4g} where the "
        f"tilted (saddle-point) estimate gives {tilted[i]:.4g}: {100 * rel[i]:+.1f} % ({where}). "
        "Use method='tilted' for an accurate estimate, or method='certified' for a guaranteed bound.",
        EdgeworthAccuracyWarning, stacklevel=4)


def _certified_answer(quantity: str, sigma: float, target: float, steps: float, q: float):
    """The core's certified answer for one DP-SGD element, with its trace (for "noise_multiplier", ``sigma`` is
    the target eps and ``target`` the delta, and the answer also carries the calibration's evaluations)."""
    if quantity == "noise_multiplier":
        return _core.dpsgd_calibrate(sigma, target, steps, q)
    comp = _core.Composition()
    comp.add(_core.SubsampledGaussian(sigma, q), steps)
    return comp.epsilon(target) if quantity == "epsilon" else comp.delta(target)


def _with_diagnostics(result: AccountingResult, core_fn, arrays, names) -> AccountingResult:
    """Adds the tilted estimate, the certified bound and their gap, the certified
    bound's trace (and for a noise multiplier, its calibration) to a result."""
    b = broadcast(**dict(zip(names, arrays)))
    shape = next(iter(b.values())).shape

    estimate = np.full(shape, np.nan)
    how = np.full(shape, None, dtype=object)
    for idx in np.ndindex(*shape):
        try:  # the tilted estimate and the method that gave it
            values, _, _, codes = core_fn(*(np.array([float(v[idx])]) for v in b.values()), "tilted", 2, "both")
        except ValueError:  # no estimate answers there (a named decline): nan
            continue
        estimate[idx], how[idx] = values[0], _estimate_method_names(codes)[0]
    bound = np.full(shape, np.nan)
    traces = np.full(shape, None, dtype=object)
    calibrations = np.full(shape, None, dtype=object)
    for idx in np.ndindex(*shape):
        try:
            a = _certified_answer(result.quantity, *(float(v[idx]) for v in b.values()))
        except ValueError:  # a named decline: nan, as for the estimate (any other error propagates)
            continue
        bound[idx], traces[idx], calibrations[idx] = a.value, a.trace, a.calibration
    scalar = len(shape) == 0
    out = float if scalar else (lambda a: a)
    calibration = None
    if result.quantity == "noise_multiplier":
        calibration = calibrations[()] if scalar else calibrations
    return dataclasses.replace(result, estimate=out(estimate), bound=out(bound), gap=out(bound - estimate),
                               trace=traces[()] if scalar else traces, calibration=calibration,
                               estimate_method=how[()] if scalar else how)


def _epsilon(sigma, delta, steps, q, method, order, ordering):
    arrays = (check_sigma(sigma), check_delta(delta), check_steps(steps), check_q(q))
    result = _run(_core.dpsgd_epsilon, "epsilon", ("sigma", "delta", "steps", "q"), arrays, method, order, ordering)
    _check_edgeworth(result)
    return result, arrays


def epsilon_details(sigma, delta, steps, q, *, method: str = "certified", order: int = 2,
                    ordering: str = None) -> AccountingResult:
    """Like :func:`epsilon`, returning an :class:`AccountingResult` that also
    carries the tilted estimate, the certified bound and the gap between them."""
    result, arrays = _epsilon(sigma, delta, steps, q, method, order, ordering)
    return _with_diagnostics(result, _core.dpsgd_epsilon, arrays, ("sigma", "delta", "steps", "q"))


def epsilon(sigma, delta, steps, q, *, method: str = "certified", order: int = None, ordering: str = None,
            bound: bool = False) -> ArrayLike:
    """eps of DP-SGD at a given delta.

    Args:
        sigma: noise multiplier (noise std / clipping norm), in [0.01, 1e6].
        delta: target delta, in (0, 1).
        steps: number of DP-SGD steps (an integer >= 1); steps = epochs / q.
        q: Poisson sampling rate, in [1e-12, 1].
        method: "certified" (rigorous upper bound, both orderings; default),
            "tilted" (estimate, both orderings; see the module docstring for
            the methods behind it) or "edgeworth"
            (point estimate of the given order, not a bound).
        order: Edgeworth order, 1, 2 or 3 (used by method="edgeworth";
            default 2).
        ordering: "remove", "add" or "both" for method="edgeworth"
            (default "remove", as in the paper); the other methods always
            cover both.
        bound: no longer supported (a ``ValueError`` says so): the paper's own
            certified bounds are :func:`edgeworth_bounds`.

    Returns:
        eps (float, or an array of the broadcast shape).

    Raises:
        ValueError: a parameter outside its range, names that do not
            broadcast, or an estimate that is undefined or unreliable there
            (``UnreachableTargetError``).

    Warns:
        EdgeworthAccuracyWarning: method="edgeworth" and the estimate differs
            from the tilted one by more than 2 %.
    """
    if bound:
        # (a flag never changes the return type: the paper's bounds have their own function)
        raise ValueError("bound: epsilon() returns eps only; the Edgeworth paper's own bounds are "
                         "edgeworth.edgeworth_bounds(sigma, delta, steps, q)")
    return _epsilon(sigma, delta, steps, q, method, 2 if order is None else order, ordering)[0].value


def _delta(sigma, eps, steps, q, method, order, ordering):
    arrays = (check_sigma(sigma), check_eps(eps, allow_zero=True), check_steps(steps), check_q(q))
    result = _run(_core.dpsgd_delta, "delta", ("sigma", "eps", "steps", "q"), arrays, method, order, ordering)
    _check_edgeworth(result)
    return result, arrays


def delta_details(sigma, eps, steps, q, *, method: str = "certified", order: int = 2,
                  ordering: str = None) -> AccountingResult:
    """Like :func:`delta`, returning an :class:`AccountingResult` with the
    tilted estimate, the certified bound and their gap."""
    result, arrays = _delta(sigma, eps, steps, q, method, order, ordering)
    return _with_diagnostics(result, _core.dpsgd_delta, arrays, ("sigma", "eps", "steps", "q"))


def delta(sigma, eps, steps, q, *, method: str = "certified", order: int = 2, ordering: str = None) -> ArrayLike:
    """delta of DP-SGD at a given eps.

    Args:
        sigma: noise multiplier (noise std / clipping norm), in [0.01, 1e6].
        eps: epsilon, in [0, 1000].
        steps: number of DP-SGD steps (an integer >= 1).
        q: Poisson sampling rate, in [1e-12, 1].
        method, order, ordering: as in :func:`epsilon`.

    Returns:
        delta (float or array).  The certified value is an upper bound
        (capped at 1); the estimates carry no guarantee, and the Edgeworth one
        can even be negative where the expansion breaks down.
    """
    return _delta(sigma, eps, steps, q, method, order, ordering)[0].value


def _noise_multiplier(eps, delta, steps, q, method, order, ordering):
    arrays = (check_eps(eps), check_delta(delta), check_steps(steps), check_q(q))
    result = _run(_core.dpsgd_noise_multiplier, "noise_multiplier", ("eps", "delta", "steps", "q"), arrays,
                  method, order, ordering)
    _check_edgeworth(result)
    return result, arrays


def noise_multiplier_details(eps, delta, steps, q, *, method: str = "certified", order: int = 2,
                             ordering: str = None) -> AccountingResult:
    """Like :func:`noise_multiplier`, returning an :class:`AccountingResult`
    with the tilted sigma (estimate), the certified sigma (bound), their gap,
    the calibration's evaluations (``calibration``) and the trace of the
    certified eps at the certified sigma (``trace``)."""
    result, arrays = _noise_multiplier(eps, delta, steps, q, method, order, ordering)
    return _with_diagnostics(result, _core.dpsgd_noise_multiplier, arrays, ("eps", "delta", "steps", "q"))


def noise_multiplier(eps, delta, steps, q, *, method: str = "certified", order: int = 2,
                     ordering: str = None) -> ArrayLike:
    """The smallest noise multiplier sigma for which DP-SGD meets (eps, delta).

    With the default ``method="certified"`` the returned sigma is safe: the
    certified eps at that sigma (an upper bound on the true eps, both
    orderings) is at most ``eps``, exactly as :func:`epsilon` computes it.
    With ``method="tilted"`` or ``"edgeworth"`` it is the sigma at which that
    *estimate* reaches eps; the Edgeworth one may truly give a larger eps
    (EW-Tune's published sigmas give up to 9.6 for a target of 8).

    The root is found by secant steps on log eps against log sigma, then
    TOMS748 on a bracket [sigma_lo, sigma_hi] that has been evaluated and seen
    to straddle the target; the smallest sigma seen whose eps met the target
    is returned once the bracket is narrower than 1e-9 relative (1e-10 for the
    estimates) or, for "certified", once a sigma meets the target with eps
    within 1e-5 of it: the certified eps jitters by up to ~3e-5 relative
    between nearby sigmas (the tight bound's discrete choices), so sigma is
    then within ~1e-5 of the least.  sigma is searched in [0.01, 1e6].

    Args:
        eps: target epsilon, in (0, 1000].
        delta: target delta, in (0, 1).
        steps: number of DP-SGD steps (an integer >= 1).
        q: Poisson sampling rate, in [1e-12, 1].
        method, order, ordering: as in :func:`epsilon`.

    Returns:
        sigma (float or array).

    Raises:
        ValueError: bad input, or a target that no sigma in [0.01, 1e6]
            meets (``edgeworth.UnreachableTargetError``, a ValueError).
    """
    return _noise_multiplier(eps, delta, steps, q, method, order, ordering)[0].value


def privacy_loss_cumulants(sigma: float, q: float, steps: int = 1) -> dict:
    """Cumulants kappa_1..kappa_5 of the summed privacy-loss variables.

    For ``steps`` steps of the Poisson-subsampled Gaussian, returns
    ``{"remove": {"x": [...], "y": [...]}, "add": {...}}`` where X is the PLLR
    log(q/p) under P and Y the same under Q, in each ordering (the add
    ordering swaps P and Q, so X_add = -Y_remove and Y_add = -X_remove).
    Computed by adaptive Gauss-Kronrod quadrature to ~1e-13 relative.
    """
    sigma = scalar("sigma", check_sigma(sigma))
    q = scalar("q", check_q(q))
    steps = scalar("steps", check_steps(steps))
    comp = _core.Composition()
    comp.add(_core.SubsampledGaussian(sigma, q), steps)
    return comp.cumulants()
