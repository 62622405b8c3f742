"""dp_accounting interop: eps of the ``DpEvent`` trees that Google's library builds.

:func:`from_dp_event` turns a tree of dp_accounting events into an
:class:`edgeworth.Accountant` ledger, so ``edgeworth.from_dp_event(event).epsilon(delta)``
answers with edgeworth's methods (certified by default) for the events a
dp_accounting user already has.  The events are read by their class names and
public fields, so dp_accounting need not be installed to call it.

Supported, with dp_accounting's semantics (add/remove neighbours, sensitivity 1):

* ``GaussianDpEvent(noise_multiplier)``
* ``LaplaceDpEvent(noise_multiplier)`` (the Laplace scale b over the L1 sensitivity)
* ``MixtureOfGaussiansDpEvent(standard_deviation, sensitivities, sampling_probs)``
* ``PoissonSampledDpEvent(sampling_probability, event)`` of any of the three
  above (or of another ``PoissonSampledDpEvent``: the rates multiply)
* ``SelfComposedDpEvent(event, count)`` and ``ComposedDpEvent(events)``, nested freely
* ``NoOpDpEvent`` (nothing is recorded)

Anything else raises ``ValueError`` naming the event's type.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _core
from ._validate import check_range, scalar, show
from .accountant import Accountant
from .mechanisms import Gaussian, Laplace, MixtureOfGaussians, PoissonSubsampled, PoissonSubsampledGaussian

SUPPORTED = ("GaussianDpEvent", "LaplaceDpEvent", "MixtureOfGaussiansDpEvent", "PoissonSampledDpEvent",
             "SelfComposedDpEvent", "ComposedDpEvent", "NoOpDpEvent")


#: The most events :func:`from_dp_event` visits (a tree that repeats a subtree is visited once per
#: repetition, so a 100-level ComposedDpEvent([e, e]) would otherwise be 2^100 visits).
MAX_EVENTS = 10 ** 6

_MISSING = object()


def _unsupported(event: Any, why: str = "") -> ValueError:
    return ValueError(f"unsupported dp_accounting event: {type(event).__name__}{why}; edgeworth.from_dp_event "
                      f"supports {', '.join(SUPPORTED)}")


def _field(event: Any, name: str) -> Any:
    """A field of an event, or a ValueError naming the event type and the field (a look-alike
    class that lacks it raised AttributeError)."""
    try:
        value = getattr(event, name, _MISSING)
    except Exception as exc:  # noqa: BLE001 - a property of a hostile look-alike that raises
        raise ValueError(f"{type(event).__name__}.{name} could not be read: {type(exc).__name__}: {exc}") from None
    if value is _MISSING:
        raise ValueError(f"{type(event).__name__}.{name}: the event has no field {name!r}; "
                         f"is it a dp_accounting {type(event).__name__}?")
    return value


def _build(event: Any, make):
    """make(), with a ValueError of the mechanism's checks prefixed by the event's type."""
    try:
        return make()
    except ValueError as exc:
        raise ValueError(f"{type(event).__name__}: {exc}") from None


def _base_mechanism(event: Any):
    """The mechanism value of a leaf event (no sampling), or ValueError."""
    name = type(event).__name__
    if name == "GaussianDpEvent":
        sigma = _field(event, "noise_multiplier")
        if isinstance(sigma, numbers.Real) and sigma == 0:
            raise ValueError("GaussianDpEvent: noise_multiplier 0 is not private (eps is infinite)")
        return _build(event, lambda: Gaussian(sigma))
    if name == "LaplaceDpEvent":
        b = _field(event, "noise_multiplier")
        if isinstance(b, numbers.Real) and b == 0:
            raise ValueError("LaplaceDpEvent: noise_multiplier 0 is not private (eps is infinite)")
        return _build(event, lambda: Laplace(b))
    if name == "MixtureOfGaussiansDpEvent":
        sd = _field(event, "standard_deviation")
        if isinstance(sd, numbers.Real) and sd == 0:
            raise ValueError("MixtureOfGaussiansDpEvent: standard_deviation 0 is not private (eps is infinite)")
        sens, probs = _field(event, "sensitivities"), _field(event, "sampling_probs")
        return _build(event, lambda: MixtureOfGaussians(sd, sens, probs))
    raise _unsupported(event)


def _sampling_probability(event: Any) -> float:
    return scalar("PoissonSampledDpEvent.sampling_probability",
                  check_range("PoissonSampledDpEvent.sampling_probability", _field(event, "sampling_probability"),
                              low=0.0, high=1.0, low_open=False, high_open=False))


def _mechanism(event: Any):
    """The mechanism value of a one-step event: a leaf, or Poisson sampling of one."""
    if type(event).__name__ != "PoissonSampledDpEvent":
        return _base_mechanism(event)
    q, inner = _sampling_probability(event), _field(event, "event")
    while type(inner).__name__ == "PoissonSampledDpEvent":  # sampling a sample: the rates multiply
        q *= _sampling_probability(inner)
        inner = _field(inner, "event")
    if type(inner).__name__ not in ("GaussianDpEvent", "LaplaceDpEvent", "MixtureOfGaussiansDpEvent"):
        raise _unsupported(inner, " inside PoissonSampledDpEvent")
    base = _base_mechanism(inner)
    if isinstance(base, Gaussian):
        return _build(event, lambda: PoissonSubsampledGaussian(base.noise_multiplier, q))
    return _build(event, lambda: PoissonSubsampled(base, q))


def _count(event: Any) -> int:
    count = _field(event, "count")
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, numbers.Real) or \
            not (isinstance(count, numbers.Integral) or (math.isfinite(count) and count == int(count))) or count < 0:
        raise ValueError(f"SelfComposedDpEvent: count must be an integer >= 0, got {show(count)}")
    return int(count)


def _record(root: Any, acc: Accountant) -> None:
    """Records the tree in order, without recursion (trees nested 5,000 deep raised RecursionError)."""
    stack = [(root, 1)]
    visited = 0
    leaves: dict = {}  # id(event) -> (event, its mechanism): a repeated subtree is converted once
    pending: list = []  # [mechanism, steps] in order, consecutive equal mechanisms merged
    while stack:
        event, times = stack.pop()
        visited += 1
        if visited > MAX_EVENTS:
            raise ValueError(f"event: the tree holds more than {MAX_EVENTS} events counting repetitions "
                             "(edgeworth.dp_event.MAX_EVENTS); compose repeated parts with SelfComposedDpEvent")
        name = type(event).__name__
        if name == "NoOpDpEvent":
            continue
        if name == "SelfComposedDpEvent":
            count = _count(event)
            if count:
                if times * count > _core.STEPS_MAX:
                    raise ValueError(f"SelfComposedDpEvent: count {show(count)} makes {show(times * count)} steps, more than "
                                     f"2^53 = {_core.STEPS_MAX:.0f} (beyond it not every count is a double)")
                stack.append((_field(event, "event"), times * count))
            continue
        if name == "ComposedDpEvent":
            events = _field(event, "events")
            if not isinstance(events, (list, tuple)):
                raise ValueError(f"ComposedDpEvent: events must be a list of events, got {show(events)}")
            stack.extend((sub, times) for sub in reversed(events))
            continue
        if id(event) not in leaves:
            leaves[id(event)] = (event, _mechanism(event))  # the event is kept, so its id stays its own
        mech = leaves[id(event)][1]
        if pending and pending[-1][0] == mech:
            pending[-1][1] += times
        else:
            pending.append([mech, times])
    for mech, times in pending:
        acc.compose(mechanism=mech, steps=times)


def from_dp_event(event: Any) -> Accountant:
    """An :class:`edgeworth.Accountant` holding the composition that a dp_accounting ``DpEvent`` describes.

    Args:
        event: a dp_accounting ``DpEvent`` tree (see the module docstring for
            the supported types).  Its neighbouring relation is add/remove
            one (dp_accounting's ``ADD_OR_REMOVE_ONE``).

    Returns:
        An Accountant; ``.epsilon(delta)`` is the certified upper bound over
        both orderings, ``.epsilon(delta, method="tilted")`` the saddle-point
        estimate.  A tree of only ``NoOpDpEvent`` gives an empty ledger (eps 0).

    Raises:
        ValueError: an unsupported event (the message names its type), a
            zero noise parameter, bad or missing fields (named as
            ``Type.field``), more than 2^53 steps, or a tree of more than
            :data:`MAX_EVENTS` events counting repetitions.
    """
    acc = Accountant()
    _record(event, acc)
    return acc
