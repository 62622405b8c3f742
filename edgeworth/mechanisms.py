"""What a mechanism is, apart from how it is accounted for.

A mechanism is a small frozen value: its parameters and nothing else.  The
accounting (``edgeworth.accounting``, ``edgeworth.Accountant``) turns it into
the C++ core's dominating pair through :meth:`to_core`.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import _core
from ._validate import check_q, check_sigma, scalar


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
