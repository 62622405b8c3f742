"""The accountants a comparison puts side by side, each computed by its own library.

Every backend is a thin adapter: it turns a DP-SGD question into that
library's own call and returns the library's numbers untouched.  Nothing here
re-implements a peer; the one formula of our own is GDP-CLT, which is a closed
form.

* ``edgeworth``: this package's methods (certified, tilted, Edgeworth orders
  1-3, the paper's bounds).
* ``gdp_clt``: the central-limit Gaussian-DP approximation (Bu, Dong, Long,
  Su, arXiv 1911.11607; Dong, Roth, Su, arXiv 1905.02383).
* ``dp_accounting``: Google's RDP and PLD accountants (``pip install
  dp-accounting``).
* ``prv_accountant``: Microsoft's PRV accountant (Gopi, Lee, Wutschitz,
  arXiv 2106.02848), whose ``(eps_low, eps_est, eps_up)`` become three rows.
* ``opacus``: Meta's RDP, GDP and PRV accountants.

Semantics for all: Poisson sampling at rate q, add/remove-one neighbours,
sigma the noise multiplier (noise std / clipping norm).  A history is a list
of ``(noise_multiplier, sample_rate, steps)`` segments, as in Opacus.

The adapters are module-level functions of plain data so that a worker
process can run them (see :mod:`edgeworth.comparison.isolation`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import partial
from importlib import import_module, metadata
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .pld_epsilon import UNRELIABLE_ABOVE, pld_epsilon
from .result import ESTIMATE, LOWER, UPPER

History = Sequence[Tuple[float, float, int]]

#: How to install the peers.  edgeworth is installed from its repository (it is not on PyPI), so the hint names the
#: extra of the local checkout; the quotes keep zsh from globbing the brackets.
INSTALL_HINT = 'pip install ".[compare]"'


@dataclass(frozen=True)
class PeerSettings:
    """The peers' numerical settings (the same for every row of a comparison).

    Attributes:
        pld_value_discretization_interval: dp_accounting's PLD grid, in nats
            of privacy loss (its default, 1e-4).  The optimistic/pessimistic
            gap grows like steps * interval / 2.
        prv_eps_error: prv_accountant's and Opacus's PRV ``eps_error``
            (absolute, in eps; Opacus's default 0.01).
        prv_delta_error_ratio: ``delta_error = ratio * delta`` for the PRV
            accountants (1e-3: Opacus's default, and prv_accountant's advice).
        calibration_rtol: relative width in sigma at which the bisection on
            prv_accountant's ``eps_up`` stops (prv_accountant has no
            calibration of its own); the safe end is returned.
    """

    pld_value_discretization_interval: float = 1e-4
    prv_eps_error: float = 0.01
    prv_delta_error_ratio: float = 1e-3
    calibration_rtol: float = 1e-4

    def prv_delta_error(self, delta: float) -> float:
        return self.prv_delta_error_ratio * delta

    def describe(self, note: str) -> str:
        """A row's note template with these settings filled in."""
        return note.format(interval=self.pld_value_discretization_interval, eps_error=self.prv_eps_error,
                           delta_error_ratio=self.prv_delta_error_ratio, rtol=self.calibration_rtol)


@dataclass(frozen=True)
class Output:
    """A row that a backend's call fills: its name, its kind and how to read it."""

    accountant: str
    kind: str
    note: str = ""


@dataclass(frozen=True)
class Backend:
    """One accountant of one library.

    Attributes:
        key: "group.name", e.g. "prv_accountant.prv"; ``compare(backends=...)``
            takes keys or groups.
        distribution: the pip distribution (for the version and the install hint).
        modules: what must import for the backend to run.
        epsilon: ``(history, delta, settings) -> tuple`` of values, one per
            ``epsilon_rows``; None if the backend cannot give eps.
        noise_multiplier: ``(eps, delta, steps, q, settings) -> tuple``, one
            per ``sigma_rows``; None if it cannot calibrate.
        heavy: runs in a worker process under the caller's time limit.
        heterogeneous: takes histories of more than one segment.
    """

    key: str
    distribution: str
    modules: Tuple[str, ...]
    epsilon_rows: Tuple[Output, ...]
    epsilon: Optional[Callable]
    sigma_rows: Tuple[Output, ...]
    noise_multiplier: Optional[Callable]
    heavy: bool = False
    heterogeneous: bool = True

    @property
    def group(self) -> str:
        return self.key.split(".", 1)[0]

    def missing(self) -> Optional[str]:
        """Why the backend cannot run here (its install hint), or None."""
        for module in self.modules:
            try:
                import_module(module)
            except Exception as exc:  # noqa: BLE001 - ImportError, or a broken dependency (e.g. torch)
                return (f"not installed: {self.distribution} is needed ({type(exc).__name__}: {exc}); "
                        f"install the comparison backends with `{INSTALL_HINT}` from the edgeworth repository root")
        return None

    def library(self) -> str:
        if self.distribution == "edgeworth":  # this very package, installed or run from a checkout
            from .. import __version__
            return f"edgeworth {__version__}"
        try:
            return f"{self.distribution} {metadata.version(self.distribution)}"
        except metadata.PackageNotFoundError:
            return f"{self.distribution} (not installed)"


# ---------------------------------------------------------------------------
# edgeworth itself
# ---------------------------------------------------------------------------

def edgeworth_epsilon(history, delta, settings, *, method: str, order: int = 2):
    """edgeworth.epsilon for one segment, edgeworth.Accountant for a history."""
    import edgeworth
    if len(history) == 1:
        sigma, q, steps = history[0]
        return (float(edgeworth.epsilon(sigma, delta, steps, q, method=method, order=order)),)
    acc = edgeworth.Accountant()
    for sigma, q, steps in history:
        acc.compose(sigma, q, steps)
    return (acc.epsilon(delta, method=method, order=order),)


def edgeworth_paper_bounds(history, delta, settings):
    import edgeworth
    (sigma, q, steps), = history
    b = edgeworth.edgeworth_bounds(sigma, delta, steps, q)
    return (float(b.lower), float(b.upper))


def edgeworth_sigma(eps, delta, steps, q, settings, *, method: str, order: int = 2):
    import edgeworth
    return (float(edgeworth.noise_multiplier(eps, delta, steps, q, method=method, order=order)),)


# ---------------------------------------------------------------------------
# GDP-CLT, in closed form
# ---------------------------------------------------------------------------

def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def gdp_delta(eps: float, mu: float) -> float:
    """delta(eps) of mu-GDP: Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (Dong, Roth, Su, Cor. 2.13)."""
    tail = _normal_cdf(-eps / mu - mu / 2)
    scaled = math.exp(eps + math.log(tail)) if tail > 0 else 0.0
    return _normal_cdf(-eps / mu + mu / 2) - scaled


def gdp_clt_mu(history: History) -> float:
    """mu of the CLT limit: sqrt(sum_i q_i^2 T_i (e^(1/sigma_i^2) - 1)) (Bu et al., Thm. 6; mu^2 adds over segments)."""
    return math.sqrt(sum(q * q * steps * math.expm1(1.0 / (sigma * sigma)) for sigma, q, steps in history))


def _threshold(ok: Callable[[float], bool], rtol: float, limit: float, what: str) -> float:
    """The least x > 0 with ok(x), to relative width rtol, for ok monotone (False below, True above).

    The bracket starts at [0, 1] and doubles; the end where ok holds is returned.
    """
    lo, hi = 0.0, 1.0
    while not ok(hi):
        lo, hi = hi, 2.0 * hi
        if hi > limit:
            raise ValueError(f"{what}: no value up to {limit:g} meets the target")
    for _ in range(200):
        if hi - lo <= rtol * hi:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def gdp_epsilon(mu: float, delta: float) -> float:
    """eps at which mu-GDP has the given delta (0 when delta(0) is already below it)."""
    if gdp_delta(0.0, mu) <= delta:
        return 0.0
    return _threshold(lambda eps: gdp_delta(eps, mu) <= delta, 1e-13, 1e4, "eps")


def gdp_clt_epsilon(history, delta, settings):
    return (gdp_epsilon(gdp_clt_mu(history), delta),)


def gdp_clt_sigma(eps, delta, steps, q, settings):
    # the largest mu whose delta(eps) stays at most delta, then sigma from mu^2 = q^2 T (e^(1/sigma^2) - 1)
    mu = _threshold(lambda m: gdp_delta(eps, m) > delta, 1e-13, 1e6, "mu")
    return (1.0 / math.sqrt(math.log1p(mu * mu / (q * q * steps))),)


# ---------------------------------------------------------------------------
# dp_accounting (Google)
# ---------------------------------------------------------------------------

def _dp_event(history: History):
    import dp_accounting
    events = [dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), int(steps))
        for sigma, q, steps in history]
    return events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)


def dp_accounting_rdp(history, delta, settings):
    from dp_accounting import rdp
    return (float(rdp.RdpAccountant().compose(_dp_event(history)).get_epsilon(delta)),)


def _pld_underflow_note(pld, delta: float, eps: float) -> None:
    """Warn (the row's note) where dp_accounting's own eps is unreliable: above eps 700 it underflows."""
    if eps > UNRELIABLE_ABOVE:
        warnings.warn(f"unreliable above eps {UNRELIABLE_ABOVE:g}: dp_accounting 0.6.0 sums exp(-loss), which "
                      f"underflows there; the same PMF summed in log space gives eps {pld_epsilon(pld, delta):.6g}")


def dp_accounting_pld_pessimistic(history, delta, settings):
    from dp_accounting import pld
    acc = pld.PLDAccountant(value_discretization_interval=settings.pld_value_discretization_interval)
    eps = float(acc.compose(_dp_event(history)).get_epsilon(delta))
    _pld_underflow_note(acc._pld, delta, eps)  # pylint: disable=protected-access
    return (eps,)


def dp_accounting_pld_optimistic(history, delta, settings):
    import dp_accounting
    from dp_accounting.pld import privacy_loss_distribution as pldlib
    composed = None
    for sigma, q, steps in history:
        one = pldlib.from_gaussian_mechanism(
            standard_deviation=sigma, sensitivity=1.0, pessimistic_estimate=False,
            value_discretization_interval=settings.pld_value_discretization_interval, sampling_prob=q,
            use_connect_dots=False, neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
        ).self_compose(int(steps))
        composed = one if composed is None else composed.compose(one)
    eps = float(composed.get_epsilon_for_delta(delta))
    _pld_underflow_note(composed, delta, eps)
    return (eps,)


def _calibrate(make_accountant, eps, delta, steps, q):
    from dp_accounting import mechanism_calibration
    return (float(mechanism_calibration.calibrate_dp_mechanism(
        make_accountant, lambda sigma: _dp_event([(sigma, q, steps)]), eps, delta)),)


def dp_accounting_rdp_sigma(eps, delta, steps, q, settings):
    from dp_accounting import rdp
    return _calibrate(rdp.RdpAccountant, eps, delta, steps, q)


def dp_accounting_pld_sigma(eps, delta, steps, q, settings):
    from dp_accounting import pld
    vdi = settings.pld_value_discretization_interval
    return _calibrate(lambda: pld.PLDAccountant(value_discretization_interval=vdi), eps, delta, steps, q)


# ---------------------------------------------------------------------------
# prv_accountant (Microsoft)
# ---------------------------------------------------------------------------

def _prv_triple(history: History, delta: float, settings: PeerSettings) -> Tuple[float, float, float]:
    from prv_accountant import PoissonSubsampledGaussianMechanism, PRVAccountant
    counts = [int(steps) for _, _, steps in history]
    acc = PRVAccountant(
        prvs=[PoissonSubsampledGaussianMechanism(sampling_probability=q, noise_multiplier=sigma)
              for sigma, q, _ in history],
        eps_error=settings.prv_eps_error, delta_error=settings.prv_delta_error(delta), max_self_compositions=counts)
    low, est, up = acc.compute_epsilon(delta=delta, num_self_compositions=counts)
    return float(low), float(est), float(up)


def prv_accountant_prv(history, delta, settings):
    return _prv_triple(history, delta, settings)


def prv_accountant_sigma(eps, delta, steps, q, settings):
    return (_threshold(lambda sigma: _prv_triple([(sigma, q, steps)], delta, settings)[2] <= eps,
                       settings.calibration_rtol, 1e6, "sigma"),)


# ---------------------------------------------------------------------------
# Opacus (Meta)
# ---------------------------------------------------------------------------

def _prv_kwargs(delta: float, settings: PeerSettings) -> Dict[str, float]:
    return {"eps_error": settings.prv_eps_error, "delta_error": settings.prv_delta_error(delta)}


def opacus_epsilon(history, delta, settings, *, mechanism: str):
    """Opacus's accountant ("rdp", "gdp" or "prv") on the history, with the PRV settings for "prv"."""
    from opacus.accountants import create_accountant
    acc = create_accountant(mechanism=mechanism)
    acc.history = [(float(s), float(q), int(n)) for s, q, n in history]
    kwargs = _prv_kwargs(delta, settings) if mechanism == "prv" else {}
    return (float(acc.get_epsilon(delta=delta, **kwargs)),)


def opacus_sigma(eps, delta, steps, q, settings, *, mechanism: str):
    """Opacus's get_noise_multiplier with that accountant (its defaults; the PRV settings for "prv")."""
    from opacus.accountants.utils import get_noise_multiplier
    kwargs = _prv_kwargs(delta, settings) if mechanism == "prv" else {}
    return (float(get_noise_multiplier(target_epsilon=eps, target_delta=delta, sample_rate=q, steps=int(steps),
                                       accountant=mechanism, **kwargs)),)


# ---------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------

_EW_EST = "point estimate of the Edgeworth accountant (Wang et al.), remove ordering; not a bound"
_GDP = "central-limit approximation; tends to understate eps"
_PRV = "remove ordering only; eps_error {eps_error:g}, delta_error {delta_error_ratio:g} x delta"
_OPACUS_CAL = "get_noise_multiplier defaults (its bisection stops within 0.01 below the target eps)"


def _edgeworth(name: str, method: str, order: int, kind: str, note: str, sigma_note: str) -> Backend:
    return Backend(f"edgeworth.{name}", "edgeworth", ("edgeworth",),
                   (Output(f"edgeworth {name.replace('order', 'order ')}", kind, note),),
                   partial(edgeworth_epsilon, method=method, order=order),
                   (Output(f"edgeworth {name.replace('order', 'order ')}", kind, sigma_note),),
                   partial(edgeworth_sigma, method=method, order=order))


def _opacus(mechanism: str, kind: str, note: str, **flags) -> Backend:
    label = f"Opacus {mechanism.upper()}"
    return Backend(f"opacus.{mechanism}", "opacus", ("opacus.accountants",), (Output(label, kind, note),),
                   partial(opacus_epsilon, mechanism=mechanism),
                   (Output(label, kind, _OPACUS_CAL + ("; " + _PRV if mechanism == "prv" else "")),),
                   partial(opacus_sigma, mechanism=mechanism), **flags)


def _registry() -> Dict[str, Backend]:
    pld = "dp-accounting", ("dp_accounting",)
    backends = [
        _edgeworth("certified", "certified", 2, UPPER,
                   "certified: the tightest answer of the ordered bound table (docs/certified.md), both orderings",
                   "certified: its eps at this sigma is at most the target"),
        _edgeworth("tilted", "tilted", 2, ESTIMATE, "saddle-point estimate, both orderings",
                   "saddle-point estimate, both orderings"),
        *[_edgeworth(f"order{k}", "edgeworth", k, ESTIMATE, _EW_EST, _EW_EST) for k in (1, 2, 3)],
        Backend("edgeworth.paper_bounds", "edgeworth", ("edgeworth",),
                (Output("edgeworth paper bound (lower)", LOWER, "order-1 expansion minus the DGG error; 0: vacuous"),
                 Output("edgeworth paper bound (upper)", UPPER, "order-1 expansion plus the DGG error; inf: vacuous")),
                edgeworth_paper_bounds, (), None, heterogeneous=False),
        Backend("gdp_clt.gdp", "edgeworth", ("edgeworth",), (Output("GDP-CLT (closed form)", ESTIMATE, _GDP),),
                gdp_clt_epsilon, (Output("GDP-CLT (closed form)", ESTIMATE, _GDP),), gdp_clt_sigma),
        Backend("dp_accounting.rdp", *pld, (Output("dp_accounting RDP", UPPER, "RdpAccountant, default orders"),),
                dp_accounting_rdp,
                (Output("dp_accounting RDP", UPPER, "calibrate_dp_mechanism(RdpAccountant), its defaults"),),
                dp_accounting_rdp_sigma),
        Backend("dp_accounting.pld_pessimistic", *pld,
                (Output("dp_accounting PLD pessimistic", UPPER, "PLDAccountant (connect-the-dots), interval "
                        "{interval:g}"),), dp_accounting_pld_pessimistic,
                (Output("dp_accounting PLD pessimistic", UPPER, "calibrate_dp_mechanism(PLDAccountant), interval "
                        "{interval:g}"),), dp_accounting_pld_sigma, heavy=True),
        Backend("dp_accounting.pld_optimistic", *pld,
                (Output("dp_accounting PLD optimistic", LOWER, "privacy buckets rounded down, interval "
                        "{interval:g}"),), dp_accounting_pld_optimistic, (), None, heavy=True),
        Backend("prv_accountant.prv", "prv-accountant", ("prv_accountant",),
                (Output("prv_accountant eps_low", LOWER, _PRV), Output("prv_accountant eps_est", ESTIMATE, _PRV),
                 Output("prv_accountant eps_up", UPPER, _PRV)), prv_accountant_prv,
                (Output("prv_accountant eps_up", UPPER, "bisection on eps_up to rtol {rtol:g} in sigma, safe end; "
                        + _PRV),), prv_accountant_sigma, heavy=True),
        _opacus("rdp", UPPER, "RDPAccountant, default orders"),
        _opacus("gdp", ESTIMATE, "GaussianAccountant (CLT approximation)", heterogeneous=False),
        _opacus("prv", UPPER, "PRVAccountant eps_upper; " + _PRV, heavy=True),
    ]
    return {b.key: b for b in backends}


BACKENDS: Dict[str, Backend] = _registry()
GROUPS: Tuple[str, ...] = tuple(dict.fromkeys(b.group for b in BACKENDS.values()))


def select(names: Optional[Sequence[str]]) -> List[Backend]:
    """The backends named by keys ("opacus.prv") or groups ("opacus"); all of them for None."""
    if names is None:
        return list(BACKENDS.values())
    if isinstance(names, str):
        names = [names]
    chosen: Dict[str, Backend] = {}
    for name in names:
        hits = [b for b in BACKENDS.values() if name in (b.key, b.group)]
        if not hits:
            raise ValueError(f"backends: unknown name {name!r}; choose from the groups {list(GROUPS)} "
                             f"or the keys {list(BACKENDS)}")
        chosen.update((b.key, b) for b in hits)
    return [b for b in BACKENDS.values() if b.key in chosen]
