"""dp_accounting's PLD accountant as the tests' reference for the truth.

dp_accounting 0.6's ``PLDAccountant`` only builds the pessimistic
(connect-the-dots) PLD, so both bounds are built here with
``privacy_loss_distribution.from_gaussian_mechanism``:

* pessimistic (connect-the-dots): an upper bound on the true eps;
* optimistic (privacy buckets rounded down): a lower bound on the true eps.

Their gap grows like steps * interval / 2, so callers pick the interval
(``vdi``) per configuration.

Two defects of dp_accounting 0.6 are worked around here, so that the reference
is the truth's bracket everywhere:

* ``get_epsilon_for_delta`` sums ``exp(-loss)``, which underflows past a loss
  of about 709, and its eps is then too high (both estimates): ``pld_safe_eps``
  reads the same PMFs in log space there (edgeworth.comparison.pld_epsilon).
* ``MixtureGaussianPrivacyLoss.inverse_privacy_loss`` (the scalar one, which
  the privacy-buckets construction calls per loss) bisects from bounds that
  can miss the root, so the optimistic mixture PLD can come out too low;
  ``mixture_inverse_losses`` is a bracketed inversion (checked against mpmath
  in tests/test_reference_pld.py) that both mixture PLDs use here.
"""
import contextlib
import functools
import math

import dp_accounting
import numpy as np
from dp_accounting.pld import privacy_loss_distribution as pldlib
from dp_accounting.pld import privacy_loss_mechanism as plmlib
from scipy import optimize

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


def pld_safe_eps(pld, delta: float) -> float:
    """eps at delta of a dp_accounting PLD: its own below eps 700; above, where its own underflows (too high,
    the optimistic one included), the same PMFs read in log space (edgeworth.comparison.pld_epsilon, checked in
    tests/test_pld_epsilon.py)."""
    eps = float(pld.get_epsilon_for_delta(delta))
    return pld_epsilon(pld, delta) if eps > UNRELIABLE_ABOVE else eps


def pld_eps(segments, delta, pessimistic, vdi):
    """eps at delta of the PLD of ``segments`` (pessimistic: upper bound; else lower bound), by pld_safe_eps."""
    return pld_safe_eps(pld_of(tuple(segments), pessimistic, vdi), delta)


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


def mixture_losses(loss: "plmlib.MixtureGaussianPrivacyLoss", xs) -> np.ndarray:
    """The mixture's privacy loss at each of the points xs (vectorised; the same formula as its privacy_loss)."""
    xs = np.asarray(xs, dtype=float)
    consts = loss._precompute_privacy_loss_constants  # pylint: disable=protected-access
    x_loss = np.multiply.outer(xs, loss.sensitivities) / loss._variance  # pylint: disable=protected-access
    if loss.adjacency_type == plmlib.AdjacencyType.ADD:
        return -np.logaddexp.reduce(consts + x_loss, axis=-1)
    return np.logaddexp.reduce(consts - x_loss, axis=-1)


def mixture_inverse_losses(loss: "plmlib.MixtureGaussianPrivacyLoss", targets) -> np.ndarray:
    """For each target loss l, the largest x found with privacy_loss(x) >= l (the loss falls in x).

    A bracket per target is widened geometrically until it holds the root
    (loss(lo) >= l > loss(hi)); then 200 bisection steps of all targets at once,
    which end where the two ends are adjacent floats.  The lower end is
    returned: its loss is at least l.
    """
    targets = np.atleast_1d(np.asarray(targets, dtype=float))
    lo = np.full_like(targets, -1.0)
    hi = np.full_like(targets, 1.0)
    for _ in range(2100):  # widen: up to 2^2100 would overflow long before; the losses are finite
        bad_lo = mixture_losses(loss, lo) < targets
        bad_hi = mixture_losses(loss, hi) >= targets
        if not (bad_lo.any() or bad_hi.any()):
            break
        lo = np.where(bad_lo, 2.0 * lo, lo)
        hi = np.where(bad_hi, 2.0 * hi, hi)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError("a target loss is outside the mixture's range")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        ok = mixture_losses(loss, mid) >= targets
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return lo


def mixture_inverse_loss(loss: "plmlib.MixtureGaussianPrivacyLoss", target: float, start: float = 0.0) -> float:
    """mixture_inverse_losses for one target, in scalar floats (the privacy-buckets construction
    calls it once per loss): the bracket is widened from `start`, Brent's method takes it to a few ulps,
    and the answer is moved down to where the loss is at least the target."""
    consts = [float(c) for c in loss._precompute_privacy_loss_constants]  # pylint: disable=protected-access
    slopes = [float(c) / loss._variance for c in loss.sensitivities]  # pylint: disable=protected-access
    add = loss.adjacency_type == plmlib.AdjacencyType.ADD

    def at(x):
        terms = [c + s * x if add else c - s * x for c, s in zip(consts, slopes)]
        m = max(terms)
        v = m + math.log(math.fsum(math.exp(t - m) for t in terms)) if math.isfinite(m) else m
        return -v if add else v

    lo, hi, step = start - 1e-3, start + 1e-3, 1e-3
    while at(lo) < target:
        step *= 2.0
        lo = start - step
        if not math.isfinite(lo):
            raise ValueError("the target loss is outside the mixture's range")
    step = 1e-3
    while at(hi) >= target:
        step *= 2.0
        hi = start + step
        if not math.isfinite(hi):
            raise ValueError("the target loss is outside the mixture's range")
    # Brent's method to a few ulps, then the side whose loss is at least the target
    x = optimize.brentq(lambda y: at(y) - target, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    while at(x) < target:
        x = math.nextafter(x, -math.inf)
    return x


@contextlib.contextmanager
def _mixture_inversion_fixed():
    """dp_accounting's mixture inversions replaced by mixture_inverse_loss(es) while the PLD is built."""
    cls = plmlib.MixtureGaussianPrivacyLoss
    scalar, vector = cls.inverse_privacy_loss, cls.inverse_privacy_losses

    def one(self, privacy_loss, precision=1e-6):  # pylint: disable=unused-argument
        # (called on a descending sequence of losses: the last root is a good start)
        x = mixture_inverse_loss(self, float(privacy_loss), getattr(self, "_reference_last_root", 0.0))
        self._reference_last_root = x  # pylint: disable=protected-access
        return x

    def many(self, privacy_losses, precision=1e-6):  # pylint: disable=unused-argument
        # as dp_accounting's: the losses at the asymptote (a mean-0 component) map to x = -+inf
        privacy_losses = np.asarray(privacy_losses, dtype=float)
        if self.adjacency_type == plmlib.AdjacencyType.ADD:
            edge = -math.log1p(-self._sampling_prob) if self._sampling_prob < 1 else math.inf  # pylint: disable=protected-access
            out = self.privacy_loss_for_single_gaussian(np.full_like(privacy_losses, np.inf))
        else:
            edge = math.log1p(-self._sampling_prob) if self._sampling_prob < 1 else -math.inf  # pylint: disable=protected-access
            out = self.privacy_loss_for_single_gaussian(np.full_like(privacy_losses, -np.inf))
        finite = np.logical_not(np.isclose(privacy_losses, edge))
        out[finite] = mixture_inverse_losses(self, privacy_losses[finite])
        return out

    cls.inverse_privacy_loss, cls.inverse_privacy_losses = one, many
    try:
        yield
    finally:
        cls.inverse_privacy_loss, cls.inverse_privacy_losses = scalar, vector


@functools.lru_cache(maxsize=None)
def mixture_pld(sigma, sensitivities: tuple, probs: tuple, steps, pessimistic, vdi):
    """The PLD of `steps` steps of dp_accounting's mixture of Gaussians (P = N(0, sigma^2),
    Q = sum_j p_j N(c_j, sigma^2)), add/remove neighbours, with the inversion fixed."""
    with _mixture_inversion_fixed():
        pld = pldlib.from_mixture_gaussian_mechanism(
            standard_deviation=sigma, sensitivities=list(sensitivities), sampling_probs=list(probs),
            pessimistic_estimate=pessimistic, value_discretization_interval=vdi, use_connect_dots=pessimistic)
    return pld.self_compose(int(steps))


def mixture_pld_eps(sigma, sensitivities: tuple, probs: tuple, steps, delta, pessimistic, vdi):
    """eps at delta of mixture_pld (pessimistic: upper bound, else lower bound), computed safely."""
    return pld_safe_eps(mixture_pld(sigma, tuple(sensitivities), tuple(probs), steps, pessimistic, vdi), delta)


@functools.lru_cache(maxsize=None)
def laplace_pld(b, q, steps, pessimistic, vdi):
    """The PLD of `steps` steps of the Poisson-subsampled Laplace mechanism (scale b, sensitivity 1)."""
    pld = pldlib.from_laplace_mechanism(parameter=b, sensitivity=1.0, pessimistic_estimate=pessimistic,
                                        value_discretization_interval=vdi, sampling_prob=q,
                                        use_connect_dots=pessimistic)
    return pld.self_compose(int(steps))


def laplace_pld_eps(b, q, steps, delta, pessimistic, vdi):
    """eps at delta of laplace_pld (pessimistic: upper bound, else lower bound), computed safely."""
    return pld_safe_eps(laplace_pld(b, q, steps, pessimistic, vdi), delta)
