"""edgeworth: differential-privacy accounting for DP-SGD.

* ``noise_multiplier(eps, delta, steps, q)``: the least noise that meets a
  target, certified by default.
* ``epsilon(sigma, delta, steps, q)`` and ``delta(sigma, eps, steps, q)``.
* ``Accountant``: a ledger of heterogeneous segments of any mechanisms
  (``edgeworth.mechanisms``: Gaussian, Laplace, mixtures of Gaussians, and
  their Poisson-subsampled versions).
* ``edgeworth.userlevel``: user-level eps and sigma for ELS and ULS DP-SGD.
* ``from_dp_event(event)``: the ledger of a dp_accounting ``DpEvent`` tree.
* ``compare(sigma, q, steps, delta)`` and ``compare_noise_multipliers(eps,
  delta, steps, q)``: every accountant (edgeworth's, GDP-CLT, dp_accounting,
  prv_accountant, Opacus) side by side; see :mod:`edgeworth.comparison`.

Every figure is either a certified upper bound (``method="certified"``) or an
estimate (``method="tilted"``, the saddle-point expansion, or
``method="edgeworth"``, the Edgeworth accountant of Wang et al.,
arXiv 2206.04236); the ``*_details`` functions say which.
"""
try:
    from . import _core
except ImportError as exc:  # pragma: no cover - only without a built extension
    raise ImportError("edgeworth's C++ extension (edgeworth._core) is not built; install the package with "
                      "`pip install .` and run it from outside the source tree") from exc
from ._core import UnreachableTargetError
from .accountant import Accountant
from .accounting import (AccountingResult, EdgeworthAccuracyWarning, EdgeworthBounds, delta, delta_details,
                         edgeworth_bounds, epsilon, epsilon_details, noise_multiplier, noise_multiplier_details,
                         privacy_loss_cumulants)
from .comparison import compare, compare_noise_multipliers
from .dp_event import from_dp_event
from .mechanisms import Gaussian, Laplace, MixtureOfGaussians, PoissonSubsampled, PoissonSubsampledGaussian
from . import userlevel

__version__ = "0.1.0"

__all__ = [
    "Accountant",
    "AccountingResult",
    "EdgeworthAccuracyWarning",
    "EdgeworthBounds",
    "Gaussian",
    "Laplace",
    "MixtureOfGaussians",
    "PoissonSubsampled",
    "PoissonSubsampledGaussian",
    "UnreachableTargetError",
    "compare",
    "compare_noise_multipliers",
    "delta",
    "delta_details",
    "edgeworth_bounds",
    "epsilon",
    "epsilon_details",
    "from_dp_event",
    "noise_multiplier",
    "noise_multiplier_details",
    "privacy_loss_cumulants",
    "userlevel",
]
