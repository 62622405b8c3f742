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

from typing import Any

from .accountant import Accountant
from .mechanisms import Gaussian, Laplace, MixtureOfGaussians, PoissonSubsampled, PoissonSubsampledGaussian

SUPPORTED = ("GaussianDpEvent", "LaplaceDpEvent", "MixtureOfGaussiansDpEvent", "PoissonSampledDpEvent",
             "SelfComposedDpEvent", "ComposedDpEvent", "NoOpDpEvent")


def _unsupported(event: Any, why: str = "") -> ValueError:
    return ValueError(f"unsupported dp_accounting event: {type(event).__name__}{why}; edgeworth.from_dp_event "
                      f"supports {', '.join(SUPPORTED)}")


def _base_mechanism(event: Any):
    """The mechanism value of a leaf event (no sampling), or ValueError."""
    name = type(event).__name__
    if name == "GaussianDpEvent":
        if event.noise_multiplier == 0:
            raise ValueError("GaussianDpEvent: noise_multiplier 0 is not private (eps is infinite)")
        return Gaussian(event.noise_multiplier)
    if name == "LaplaceDpEvent":
        if event.noise_multiplier == 0:
            raise ValueError("LaplaceDpEvent: noise_multiplier 0 is not private (eps is infinite)")
        return Laplace(event.noise_multiplier)
    if name == "MixtureOfGaussiansDpEvent":
        if event.standard_deviation == 0:
            raise ValueError("MixtureOfGaussiansDpEvent: standard_deviation 0 is not private (eps is infinite)")
        return MixtureOfGaussians(event.standard_deviation, tuple(event.sensitivities), tuple(event.sampling_probs))
    raise _unsupported(event)


def _mechanism(event: Any):
    """The mechanism value of a one-step event: a leaf, or Poisson sampling of one."""
    if type(event).__name__ != "PoissonSampledDpEvent":
        return _base_mechanism(event)
    q, inner = float(event.sampling_probability), event.event
    while type(inner).__name__ == "PoissonSampledDpEvent":  # sampling a sample: the rates multiply
        q *= float(inner.sampling_probability)
        inner = inner.event
    if type(inner).__name__ not in ("GaussianDpEvent", "LaplaceDpEvent", "MixtureOfGaussiansDpEvent"):
        raise _unsupported(inner, " inside PoissonSampledDpEvent")
    base = _base_mechanism(inner)
    if isinstance(base, Gaussian):
        return PoissonSubsampledGaussian(base.noise_multiplier, q)
    return PoissonSubsampled(base, q)


def _record(event: Any, times: int, acc: Accountant) -> None:
    name = type(event).__name__
    if name == "NoOpDpEvent":
        return
    if name == "SelfComposedDpEvent":
        if int(event.count) != event.count or event.count < 0:
            raise ValueError(f"SelfComposedDpEvent: count must be an integer >= 0, got {event.count!r}")
        if event.count:
            _record(event.event, times * int(event.count), acc)
        return
    if name == "ComposedDpEvent":
        for sub in event.events:
            _record(sub, times, acc)
        return
    acc.compose(mechanism=_mechanism(event), steps=times)


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
            zero noise parameter, or bad parameters.
    """
    acc = Accountant()
    _record(event, 1, acc)
    return acc
