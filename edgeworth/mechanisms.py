"""What a mechanism is, apart from how it is accounted for.

A mechanism is a small frozen value: its parameters and nothing else.  The
accounting (``edgeworth.accounting``, ``edgeworth.Accountant``,
``edgeworth.userlevel``) turns it into the C++ core's dominating pair through
:meth:`to_core`.

Every mechanism is one step with sensitivity 1 under add/remove-one
neighbours, stated as the pair (P, Q) of the "remove" ordering (P without the
individual, Q with it); the accountants cover the "add" ordering (P and Q
swapped) as well.  ``noise_multiplier`` is always the noise scale divided by
the sensitivity (the clipping norm in DP-SGD):

* :class:`Gaussian`: P = N(0, sigma^2), Q = N(1, sigma^2) (dp_accounting's
  ``GaussianDpEvent(sigma)``).
* :class:`Laplace`: P = Lap(0, b), Q = Lap(1, b), density exp(-|x - m| / b) / (2 b),
  b = ``noise_multiplier`` (dp_accounting's ``LaplaceDpEvent(b)``).
* :class:`MixtureOfGaussians`: P = N(0, sigma^2), Q = sum_j w_j N(c_j, sigma^2)
  (dp_accounting's ``MixtureOfGaussiansDpEvent(sigma, c, w)``; Choquette-Choo
  et al., arXiv 2310.15526).  Example-level sampling for user-level DP-SGD is
  its binomial case (:func:`edgeworth.userlevel.els_mechanism`).
* :class:`PoissonSubsampled`: any of these on a Poisson sample of rate q:
  Q' = (1 - q) P + q Q.  :class:`PoissonSubsampledGaussian` is the DP-SGD step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple, Union

import numpy as np

from . import _core
from ._validate import _as_float_array, check_q, check_range, check_sigma, scalar, show

#: Tolerance on the sum of a mixture's weights (the C++ core checks the same).
WEIGHT_SUM_TOL = 1e-12

#: The most components a mixture may have (with a Poisson-sampled mixture's added
#: zero shift).  The core's cost grows about as the cube of their number: with
#: uniform weights over shifts in [0, 1] at sigma 1, 100 steps, one certified eps
#: took 0.24 s at 100 components, 1.9 s at 300, 6.3 s at 512 and 70 s at 1000
#: (2-core machine); 512 keeps every query within seconds.
MAX_COMPONENTS = 512


@dataclass(frozen=True)
class PoissonSubsampledGaussian:
    """One step of DP-SGD: the Gaussian mechanism on a Poisson-sampled batch.

    Args:
        noise_multiplier: sigma, the noise standard deviation divided by the
            clipping norm (L2 sensitivity); must be > 0.
        sampling_rate: q, the probability that each example is in the batch
            (Poisson sampling); in [1e-12, 1].  q = 1 is the plain Gaussian
            mechanism.

    The neighbouring relation is add/remove one example.  In the "remove"
    ordering the dominating pair is P = N(0, 1) against
    Q = (1 - q) N(0, 1) + q N(1/sigma, 1); the "add" ordering swaps P and Q.
    """

    noise_multiplier: float
    sampling_rate: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_multiplier", scalar("noise_multiplier", check_sigma(self.noise_multiplier)))
        object.__setattr__(self, "sampling_rate", scalar("sampling_rate", check_q(self.sampling_rate)))

    def to_core(self) -> "_core.Mechanism":
        return _core.SubsampledGaussian(self.noise_multiplier, self.sampling_rate)

    def noise_segment(self) -> Tuple[str, List[float], List[float], float]:
        """How the core's ``calibrate_noise`` scales this step with a common noise multiplier."""
        return ("gaussian", [], [], self.sampling_rate)


@dataclass(frozen=True)
class Gaussian:
    """The Gaussian mechanism without sampling: P = N(0, sigma^2), Q = N(1, sigma^2).

    Args:
        noise_multiplier: sigma, noise standard deviation over the L2
            sensitivity; > 0.

    Its privacy loss is exactly N(1/(2 sigma^2), 1/sigma^2) under Q, so eps
    and delta have the closed form of Balle and Wang (arXiv 1805.06530, Thm. 8),
    which the tests use as a check.
    """

    noise_multiplier: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_multiplier", scalar("noise_multiplier", check_sigma(self.noise_multiplier)))

    def to_core(self) -> "_core.Mechanism":
        return _core.SubsampledGaussian(self.noise_multiplier, 1.0)

    def noise_segment(self):
        return ("gaussian", [], [], 1.0)


@dataclass(frozen=True)
class Laplace:
    """The Laplace mechanism: P = Lap(0, b), Q = Lap(1, b) (L1 sensitivity 1).

    Args:
        noise_multiplier: b, the Laplace scale over the L1 sensitivity
            (density exp(-|x| / b) / (2 b)); in [0.01, 1e6] (``SIGMA_MIN``,
            ``SIGMA_MAX``, as sigma).  This is the
            ``noise_multiplier`` of dp_accounting's ``LaplaceDpEvent``.

    Alone it is pure (1/b, 0)-DP; its privacy loss takes the values -1/b and
    1/b with positive probability (atoms) and is linear in between, and its
    CGF has a closed form (``csrc/mechanisms.hpp``).
    """

    noise_multiplier: float

    def __post_init__(self) -> None:
        # The noise multiplier's range, as in the core (csrc/mechanisms.hpp).
        name = "noise_multiplier (Laplace scale b)"
        object.__setattr__(self, "noise_multiplier", scalar(name, check_range(
            name, self.noise_multiplier, low=_core.SIGMA_MIN, high=_core.SIGMA_MAX,
            low_open=False, high_open=False,
            why="; the range of the noise multiplier, outside which the core's root searches are not tested")))

    def to_core(self) -> "_core.Mechanism":
        return _core.SubsampledLaplace(self.noise_multiplier, 1.0)

    def noise_segment(self):
        return ("laplace", [], [], 1.0)


def _components(name: str, value) -> Tuple[float, ...]:
    """A 1-d sequence of real numbers (a single number is one component), at most MAX_COMPONENTS long."""
    arr = _as_float_array(name, value)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a 1-d sequence of numbers, got an array of shape {arr.shape}")
    if arr.size > MAX_COMPONENTS:
        raise ValueError(f"{name}: a mixture may have at most {MAX_COMPONENTS} components "
                         f"(edgeworth.mechanisms.MAX_COMPONENTS; the core's cost grows about as their cube), "
                         f"got {arr.size}")
    return tuple(float(x) for x in np.atleast_1d(arr))


def _merged_support(sensitivities, weights) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Sorted distinct sensitivities with positive weight, and their summed weights."""
    acc: Dict[float, float] = {}
    for c, w in zip(sensitivities, weights):
        if w > 0.0:
            acc[c] = acc.get(c, 0.0) + w
    keys = sorted(acc)
    return tuple(keys), tuple(acc[c] for c in keys)


@dataclass(frozen=True)
class MixtureOfGaussians:
    """A mixture of Gaussians against a Gaussian: P = N(0, sigma^2), Q = sum_j w_j N(c_j, sigma^2).

    Args:
        noise_multiplier: sigma, the noise standard deviation over the
            sensitivity unit in which the ``sensitivities`` are given; > 0.
        sensitivities: c_j, the possible shifts of the output (finite; any
            sign; at least one non-zero with positive weight).
        weights: w_j >= 0, the probability of each shift; they must sum to 1
            within 1e-12.

    This is dp_accounting's ``MixtureOfGaussiansDpEvent(sigma, c, w)``.  With
    sensitivities (0, 1) and weights (1 - q, q) it is the Poisson-subsampled
    Gaussian, and :meth:`to_core` returns exactly that core mechanism (the
    same pair, so the same numbers, including the characteristic-function
    bound that the core has for it); any other mixture becomes the core's
    ``GaussianMixture`` with means c_j / sigma.
    """

    noise_multiplier: float
    sensitivities: Tuple[float, ...]
    weights: Tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_multiplier", scalar("noise_multiplier", check_sigma(self.noise_multiplier)))
        sens, w = _components("sensitivities", self.sensitivities), _components("weights", self.weights)
        if not sens or len(sens) != len(w):
            raise ValueError(f"sensitivities and weights must be non-empty and of the same length, got "
                             f"{len(sens)} and {len(w)}")
        for c in sens:
            if not math.isfinite(c):
                raise ValueError(f"sensitivities must be finite, got {c!r}")
        for x in w:
            if not (math.isfinite(x) and 0.0 <= x <= 1.0):
                raise ValueError(f"weights must be in [0, 1], got {x!r}")
        if abs(math.fsum(w) - 1.0) > WEIGHT_SUM_TOL:
            raise ValueError(f"weights must sum to 1 (within {WEIGHT_SUM_TOL:g}), got {math.fsum(w)!r}")
        if not any(c != 0.0 and x > 0.0 for c, x in zip(sens, w)):
            raise ValueError("sensitivities: at least one with a positive weight must be non-zero (else Q = P)")
        object.__setattr__(self, "sensitivities", sens)
        object.__setattr__(self, "weights", w)

    def to_core(self) -> "_core.Mechanism":
        sens, w = _merged_support(self.sensitivities, self.weights)
        means = [c / self.noise_multiplier for c in sens]
        for c, m in zip(sens, means):
            # (the core's floor on a mixture mean, stated in what the caller passed)
            if m != 0.0 and abs(m) < 1e-100:
                raise ValueError(f"sensitivities / noise_multiplier must be 0 or at least 1e-100 in magnitude, got "
                                 f"{c!r} / {self.noise_multiplier!r}; a smaller shift moves nothing and its loss "
                                 "underflows in the core")
        # The subsampled Gaussian where the pair is one, with its sigma and q in
        # the core's ranges; any other pair (a weight below Q_MIN, a shift past
        # 1 / SIGMA_MIN noise units) is the general mixture, so that no error
        # names a sigma or q the caller never passed.
        shifted = len(sens) == 2 and sens[0] == 0.0 and sens[1] > 0.0
        single = len(sens) == 1 and sens[0] > 0.0
        if shifted or single:
            sigma, q = self.noise_multiplier / sens[-1], (w[1] if shifted else 1.0)
            if _core.SIGMA_MIN <= sigma <= _core.SIGMA_MAX and q >= _core.Q_MIN:
                return _core.SubsampledGaussian(sigma, q)
        return _core.GaussianMixture(list(w), means)

    def noise_segment(self):
        sens, w = _merged_support(self.sensitivities, self.weights)
        return ("mixture", list(w), list(sens), 1.0)


Base = Union[Gaussian, Laplace, MixtureOfGaussians]


@dataclass(frozen=True)
class PoissonSubsampled:
    """A mechanism run on a Poisson sample: each individual is in it with probability q.

    Args:
        mechanism: a :class:`Gaussian`, :class:`Laplace` or
            :class:`MixtureOfGaussians`.
        sampling_rate: q in (0, 1].

    The remove ordering's pair becomes P against (1 - q) P + q Q.  For the
    mixture this is again a mixture (weight 1 - q moves to sensitivity 0).
    """

    mechanism: Base
    sampling_rate: float

    def __post_init__(self) -> None:
        if not isinstance(self.mechanism, (Gaussian, Laplace, MixtureOfGaussians)):
            raise ValueError(f"mechanism must be a Gaussian, Laplace or MixtureOfGaussians, "
                             f"got {show(self.mechanism)}")
        object.__setattr__(self, "sampling_rate", scalar("sampling_rate", check_q(self.sampling_rate)))
        if isinstance(self.mechanism, MixtureOfGaussians) and 0.0 not in self.mechanism.sensitivities \
                and len(self.mechanism.sensitivities) >= MAX_COMPONENTS:
            raise ValueError(f"mechanism: sampling adds a component of shift 0, and a mixture may have at most "
                             f"{MAX_COMPONENTS} components (edgeworth.mechanisms.MAX_COMPONENTS), got "
                             f"{len(self.mechanism.sensitivities)} without it")

    def _as_mixture(self) -> MixtureOfGaussians:
        m, q = self.mechanism, self.sampling_rate
        return MixtureOfGaussians(m.noise_multiplier, (0.0,) + m.sensitivities,
                                  (1.0 - q,) + tuple(q * w for w in m.weights))

    def to_core(self) -> "_core.Mechanism":
        m, q = self.mechanism, self.sampling_rate
        if isinstance(m, Gaussian):
            return _core.SubsampledGaussian(m.noise_multiplier, q)
        if isinstance(m, Laplace):
            return _core.SubsampledLaplace(m.noise_multiplier, q)
        return self._as_mixture().to_core()

    def noise_segment(self):
        m, q = self.mechanism, self.sampling_rate
        if isinstance(m, Gaussian):
            return ("gaussian", [], [], q)
        if isinstance(m, Laplace):
            return ("laplace", [], [], q)
        return self._as_mixture().noise_segment()


Mechanism = Union[PoissonSubsampledGaussian, Gaussian, Laplace, MixtureOfGaussians, PoissonSubsampled]
MECHANISMS = (PoissonSubsampledGaussian, Gaussian, Laplace, MixtureOfGaussians, PoissonSubsampled)


def to_dict(mechanism: Mechanism) -> Dict[str, Any]:
    """Plain data for a ledger's state: the class name and the fields."""
    if isinstance(mechanism, PoissonSubsampled):
        return {"type": "PoissonSubsampled", "mechanism": to_dict(mechanism.mechanism),
                "sampling_rate": mechanism.sampling_rate}
    out: Dict[str, Any] = {"type": type(mechanism).__name__}
    for name, value in vars(mechanism).items():
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def from_dict(data: Dict[str, Any]) -> Mechanism:
    """The inverse of :func:`to_dict`; ValueError for anything else."""
    if not isinstance(data, dict) or "type" not in data:
        raise ValueError(f"a mechanism must be a dict with a 'type', got {show(data)}")
    fields = {k: v for k, v in data.items() if k != "type"}
    kinds = {cls.__name__: cls for cls in MECHANISMS}
    if not isinstance(data["type"], str) or data["type"] not in kinds:
        raise ValueError(f"mechanism type must be one of {sorted(kinds)}, got {show(data['type'])}")
    if data["type"] == "PoissonSubsampled":  # one level only: its mechanism is never itself sampled
        inner = fields.get("mechanism")
        if isinstance(inner, dict) and inner.get("type") == "PoissonSubsampled":
            raise ValueError("mechanism of a PoissonSubsampled must be a Gaussian, Laplace or MixtureOfGaussians, "
                             "got a PoissonSubsampled")
        fields["mechanism"] = from_dict(inner)
    try:
        return kinds[data["type"]](**fields)
    except TypeError as exc:
        raise ValueError(f"bad fields for {data['type']}: {exc}") from None
