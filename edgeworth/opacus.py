"""The ``"edgeworth"`` accountant inside Opacus 1.6.

Importing this module registers :class:`EdgeworthAccountant` with Opacus under
the name ``"edgeworth"`` (idempotently), and routes Opacus's noise calibration
for that name to :func:`edgeworth.noise_multiplier`.  Then::

    import edgeworth.opacus  # noqa: F401  (registers "edgeworth")
    from opacus import PrivacyEngine

    engine = PrivacyEngine(accountant="edgeworth")
    model, optimizer, loader = engine.make_private_with_epsilon(
        module=model, optimizer=optimizer, data_loader=loader,
        target_epsilon=8.0, target_delta=1e-5, epochs=3, max_grad_norm=1.0)
    engine.get_epsilon(1e-5)        # certified upper bound on the eps spent so far

Semantics are Opacus's and the library's: each optimizer step is one step of
the Poisson-subsampled Gaussian mechanism with noise multiplier sigma (noise
std / clipping norm) and sampling rate q, between add/remove-one-example
neighbours.  The ledger is Opacus's ``history``: a list of
``(noise_multiplier, sample_rate, num_steps)``.

References:
    Opacus (Yousefpour et al., arXiv 2109.12298), ``opacus/accountants``;
    the Edgeworth accountant (Wang et al., arXiv 2206.04236); the certified
    bound is documented in ``docs/certified.md``.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Dict, List, Optional, Tuple

import opacus.accountants.utils as _opacus_utils
import opacus.privacy_engine as _opacus_engine
from opacus.accountants import IAccountant, create_accountant, register_accountant

from . import _core
from ._validate import check_delta, check_method, check_q, check_range, check_steps, scalar
from .accountant import Accountant
from .accounting import AccountingResult, epsilon, epsilon_details, noise_multiplier

MECHANISM = "edgeworth"

Entry = Tuple[float, float, int]


def _check_noise_multiplier(value) -> float:
    """sigma as Opacus allows it: >= 0 (0 means no noise, so unbounded eps)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_entry(entry) -> Entry:
    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        raise ValueError(f"history entries must be (noise_multiplier, sample_rate, num_steps), got {entry!r}")
    sigma, q, n = entry
    return _check_noise_multiplier(sigma), scalar("sample_rate", check_q(q)), int(scalar("num_steps", check_steps(n)))


class EdgeworthAccountant(IAccountant):
    """Opacus accountant backed by ``edgeworth`` (mechanism name ``"edgeworth"``).

    ``get_epsilon`` is the *certified* eps by default: a rigorous upper bound
    covering both the add and the remove ordering (see :func:`edgeworth.epsilon`:
    as tight as a fine PLD accountant where ten or more steps are sampled in all).
    ``get_epsilon(delta, method="tilted")`` asks for the saddle-point estimate
    instead, and ``method="edgeworth"`` for the Edgeworth point estimate;
    neither is a bound.

    Attributes:
        history: Opacus's ledger, a list of
            ``(noise_multiplier, sample_rate, num_steps)``; consecutive steps
            with equal parameters are merged, as Opacus's accountants do.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: List[Entry] = []

    @classmethod
    def mechanism(cls) -> str:
        return MECHANISM

    def step(self, *, noise_multiplier: float, sample_rate: float) -> None:
        """Records one DP-SGD step.

        Args:
            noise_multiplier: sigma, the noise std divided by the clipping norm, >= 0.
            sample_rate: Poisson sampling rate q, in [1e-12, 1].
        """
        sigma, q = _check_noise_multiplier(noise_multiplier), scalar("sample_rate", check_q(sample_rate))
        if self.history and tuple(self.history[-1][:2]) == (sigma, q):
            self.history[-1] = (sigma, q, self.history[-1][2] + 1)
        else:
            self.history.append((sigma, q, 1))

    def __len__(self) -> int:
        """Number of steps recorded (not the number of ledger entries)."""
        return sum(int(n) for _, _, n in self.history)

    def _ledger(self) -> Optional[Accountant]:
        """The history as an :class:`edgeworth.Accountant` (None with a noiseless step)."""
        entries = [_check_entry(e) for e in self.history]
        if any(sigma == 0 for sigma, _, _ in entries):
            return None
        ledger = Accountant()
        for sigma, q, n in entries:
            ledger.compose(sigma, q, n)
        return ledger

    def epsilon_details(self, delta: float, *, method: str = "certified", order: int = 2) -> AccountingResult:
        """The eps spent so far with its label, the tilted estimate, the
        certified bound and their gap (see :class:`edgeworth.AccountingResult`).

        Raises:
            ValueError: bad delta or method, or a history with a noiseless step.
        """
        ledger = self._ledger()
        if ledger is None:
            raise ValueError("noise_multiplier: the history has a step with noise_multiplier 0, so eps is unbounded")
        if len(ledger.history) == 1:
            sigma, q, n = ledger.history[0]
            return epsilon_details(sigma, delta, n, q, method=method, order=order)
        return ledger.epsilon_details(delta, method=method, order=order)

    def get_epsilon(self, delta: float, *, method: str = "certified", order: int = 2, **kwargs: Any) -> float:
        """eps spent so far at ``delta``.

        Args:
            delta: target delta, in (0, 1).
            method: "certified" (default; a rigorous upper bound on eps over
                both orderings), "tilted" (the saddle-point estimate) or
                "edgeworth" (the Edgeworth point estimate of ``order``).
                The estimates carry no guarantee.
            order: Edgeworth order 1, 2 or 3 (method="edgeworth" only).
            **kwargs: ignored; Opacus passes its calibration options through
                to every accountant.

        Returns:
            eps >= 0 (0 for an empty history; ``inf`` if a step had no noise).
            A one-entry history gives exactly
            ``edgeworth.epsilon(sigma, delta, num_steps, q, method=method)``.

        Raises:
            ValueError: delta outside (0, 1), an unknown method, or an
                estimate that declines where it is unreliable
                (``edgeworth.UnreachableTargetError``).
        """
        delta = scalar("delta", check_delta(delta))
        method, order, _ = check_method(method, order, None)
        ledger = self._ledger()
        if ledger is None:
            return math.inf
        if not ledger.history:
            return 0.0
        if len(ledger.history) == 1:
            sigma, q, n = ledger.history[0]
            value = epsilon(sigma, delta, n, q, method=method, order=order)
        else:
            value = ledger.epsilon(delta, method=method, order=order)
        return max(0.0, float(value))

    def state_dict(self, destination=None):
        """Opacus's state: ``{"history": [...], "mechanism": "edgeworth"}``."""
        return super().state_dict(destination)

    def load_state_dict(self, state_dict) -> None:
        """Restores a :meth:`state_dict`; rejects another mechanism's state or a
        malformed history with a ValueError."""
        previous = self.history
        super().load_state_dict(state_dict)
        try:
            self.history = [_check_entry(e) for e in self.history]
        except ValueError:
            self.history = previous  # a rejected state leaves the ledger as it was
            raise


def get_noise_multiplier(*, target_epsilon: float, target_delta: float, sample_rate: float,
                         epochs: Optional[float] = None, steps: Optional[int] = None, accountant: str = "rdp",
                         epsilon_tolerance: float = 0.01, method: str = "certified", **kwargs: Any) -> float:
    """Opacus's ``get_noise_multiplier``, with the library's calibration for ``accountant="edgeworth"``.

    For ``"edgeworth"`` it returns ``edgeworth.noise_multiplier(target_epsilon,
    target_delta, steps, sample_rate, method=method)`` unchanged: with the
    default ``method="certified"``, the smallest sigma whose certified eps is
    at most the target (found to 1e-10 relative, so ``epsilon_tolerance`` is
    not used).  Any other accountant goes to Opacus's own bisection.
    As in Opacus, ``steps = int(epochs / sample_rate)`` when epochs are given.

    Raises:
        ValueError: both or neither of epochs and steps, or a bad target
            (``edgeworth.UnreachableTargetError`` when no sigma meets it).
    """
    if accountant != MECHANISM:
        return _OPACUS_GET_NOISE_MULTIPLIER(target_epsilon=target_epsilon, target_delta=target_delta,
                                            sample_rate=sample_rate, epochs=epochs, steps=steps,
                                            accountant=accountant, epsilon_tolerance=epsilon_tolerance, **kwargs)
    if (steps is None) == (epochs is None):
        raise ValueError("steps: get_noise_multiplier takes EITHER a number of steps or a number of epochs")
    if steps is None:
        epochs = scalar("epochs", check_range("epochs", epochs, low=0.0, high=math.inf, low_open=True,
                                              high_open=True))
        ratio = epochs / scalar("sample_rate", check_q(sample_rate))
        if not 1.0 <= ratio <= _core.STEPS_MAX:
            raise ValueError(f"epochs: epochs / sample_rate = {ratio:g} steps, outside [1, 2^53]")
        steps = int(ratio)
    return float(noise_multiplier(target_epsilon, target_delta, steps, sample_rate, method=method))


# Opacus's own function, kept once however often this module is (re)loaded.
_OPACUS_GET_NOISE_MULTIPLIER = getattr(_opacus_utils.get_noise_multiplier, "__wrapped__",
                                       _opacus_utils.get_noise_multiplier)
get_noise_multiplier = functools.wraps(_OPACUS_GET_NOISE_MULTIPLIER, assigned=())(get_noise_multiplier)


def register() -> None:
    """Registers the accountant and the calibration with Opacus; safe to call again."""
    try:
        register_accountant(MECHANISM, EdgeworthAccountant)
    except ValueError:  # already registered: by an earlier import, or by a reload of this module
        if type(create_accountant(MECHANISM)) is not EdgeworthAccountant:
            register_accountant(MECHANISM, EdgeworthAccountant, force=True)
    # PrivacyEngine.make_private_with_epsilon calls the name it imported, so both are routed.
    _opacus_utils.get_noise_multiplier = get_noise_multiplier
    _opacus_engine.get_noise_multiplier = get_noise_multiplier


register()

__all__ = ["EdgeworthAccountant", "MECHANISM", "get_noise_multiplier", "register"]
