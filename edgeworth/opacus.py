"""The ``"edgeworth"`` accountant inside Opacus 1.6.

Importing this module registers :class:`EdgeworthAccountant` with Opacus under
the name ``"edgeworth"`` (idempotently), routes Opacus's noise calibration
for that name to :func:`edgeworth.noise_multiplier`, and has
``PrivacyEngine.make_private`` / ``make_private_with_epsilon`` check, for this
accountant only, the noise multiplier and whether the batches will be
Poisson-sampled (see :class:`EdgeworthAccountant`, "Sampling").  Then::

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
neighbours; the batches must be Poisson-sampled (Opacus's default
``poisson_sampling=True``).  The ledger is Opacus's ``history``: a list of
``(noise_multiplier, sample_rate, num_steps)``.

References:
    Opacus (Yousefpour et al., arXiv 2109.12298), ``opacus/accountants``;
    the Edgeworth accountant (Wang et al., arXiv 2206.04236); the certified
    bound is documented in ``docs/certified.md``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import reprlib
import warnings
from collections.abc import Mapping
from typing import Any, List, Optional, Tuple

import numpy as np
import opacus.accountants.utils as _opacus_utils
import opacus.privacy_engine as _opacus_engine
import torch
from opacus.accountants import IAccountant, create_accountant, register_accountant
from opacus.utils.uniform_sampler import DistributedUniformWithReplacementSampler, UniformWithReplacementSampler

from . import _core
from ._validate import check_delta, check_method, check_q, scalar
from .accountant import Accountant
from .accounting import AccountingResult, epsilon, epsilon_details, noise_multiplier

MECHANISM = "edgeworth"

Entry = Tuple[float, float, int]

_POISSON_SAMPLERS = (UniformWithReplacementSampler, DistributedUniformWithReplacementSampler)


class NonPoissonSamplingWarning(UserWarning):
    """A ``PrivacyEngine(accountant="edgeworth")`` was made private with a data
    loader that is not Poisson-sampled (``poisson_sampling=False``): the eps of
    its steps is not certified."""


class NonPoissonSamplingError(ValueError):
    """A certified eps was asked of a ledger with steps whose batches were not
    Poisson-sampled, or ``make_private_with_epsilon`` was asked to meet an eps
    target without Poisson sampling.  Every eps this accountant computes assumes
    Poisson sampling at the recorded rate; a shuffled fixed-size loader is a
    different mechanism, which it does not analyse."""


# The scalar types a noise multiplier or sample rate usually arrives as, read without the slower checks below.
_PLAIN_REALS = frozenset({int, np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
                          np.uint16, np.uint32, np.uint64})


def _real(name: str, value) -> float:
    """A real scalar as Opacus may pass it: a Python int or float, a numpy
    scalar or 0-d array, or a 0-d torch tensor.  Returns ``float(value)``, the
    value Opacus multiplies by (``float(np.float32(1.1))`` is
    1.100000023841858, not 1.1)."""
    if type(value) in _PLAIN_REALS:
        number = value
    elif isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a real number, got {reprlib.repr(value)}")
    elif isinstance(value, numbers.Real):
        number = value
    elif isinstance(value, np.ndarray) and not isinstance(value, np.ma.MaskedArray) and value.ndim == 0 \
            and value.dtype.kind in "iuf":
        number = value.item()
    elif isinstance(value, torch.Tensor) and value.ndim == 0 and not value.dtype.is_complex \
            and value.dtype != torch.bool:
        number = value.item()
    else:
        raise ValueError(f"{name} must be a real number (a Python or numpy scalar, or a 0-d tensor), "
                         f"got {reprlib.repr(value)}")
    try:
        x = float(number)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {reprlib.repr(value)}")
    return x


def _check_step(sigma: float, q: float) -> None:
    """The ranges ``step()`` accepts: sigma 0 (no noise: eps is infinite) or in
    [SIGMA_MIN, SIGMA_MAX]; q 0 (nobody sampled: the step costs nothing) or in
    [Q_MIN, 1]."""
    if sigma != 0.0 and not _core.SIGMA_MIN <= sigma <= _core.SIGMA_MAX:
        raise ValueError(f"noise_multiplier must be 0 (no noise) or in [{_core.SIGMA_MIN:g}, {_core.SIGMA_MAX:g}], "
                         f"got {sigma!r}; outside that range the core cannot bound the privacy loss")
    if q != 0.0 and not _core.Q_MIN <= q <= 1.0:
        raise ValueError(f"sample_rate must be 0 (nobody sampled) or in [{_core.Q_MIN:g}, 1], got {q!r}; below "
                         f"{_core.Q_MIN:g} the privacy loss of a step underflows in the core's cumulants and "
                         "quadratures")


def _check_entry(entry) -> Entry:
    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        raise ValueError("history entries must be (noise_multiplier, sample_rate, num_steps), "
                         f"got {reprlib.repr(entry)}")
    sigma, q = _real("noise_multiplier", entry[0]), _real("sample_rate", entry[1])
    _check_step(sigma, q)
    n = entry[2]
    whole = isinstance(n, numbers.Integral) or (isinstance(n, numbers.Real) and float(n).is_integer())
    if isinstance(n, (bool, np.bool_)) or not whole or not 1 <= n <= _core.STEPS_MAX:
        raise ValueError(f"history: num_steps must be an integer in [1, 2^53], got {reprlib.repr(n)}")
    return sigma, q, int(n)


def _check_state(state_dict) -> Tuple[List[Entry], int]:
    """(history, non_poisson_steps) of a state, or a ValueError; touches nothing."""
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ValueError("state_dict must be a non-empty mapping with 'history' and 'mechanism', "
                         f"got {reprlib.repr(state_dict)}")
    for key in ("history", "mechanism"):
        if key not in state_dict:
            raise ValueError(f"state_dict has no key {key!r}; it cannot be loaded into the edgeworth accountant")
    mechanism = state_dict["mechanism"]
    if not (isinstance(mechanism, str) and mechanism == MECHANISM):
        raise ValueError(f"mechanism: a state of {reprlib.repr(mechanism)} cannot be loaded into the "
                         f"{MECHANISM!r} accountant")
    history = state_dict["history"]
    if not isinstance(history, (list, tuple)):
        raise ValueError("history must be a list of (noise_multiplier, sample_rate, num_steps), "
                         f"got {reprlib.repr(history)}")
    entries = [_check_entry(e) for e in history]
    total = sum(n for _, _, n in entries)
    if total > _core.STEPS_MAX:
        raise ValueError(f"history: {total} steps in all, more than 2^53; not every step count is a double beyond it")
    non_poisson = state_dict.get("non_poisson_steps", 0)
    if isinstance(non_poisson, (bool, np.bool_)) or not isinstance(non_poisson, numbers.Integral) \
            or not 0 <= non_poisson <= total:
        raise ValueError(f"non_poisson_steps must be an integer in [0, {total}] (the steps in the history), "
                         f"got {reprlib.repr(non_poisson)}")
    return entries, int(non_poisson)


def _is_poisson(data_loader, poisson_sampling) -> bool:
    """Whether ``make_private(data_loader=..., poisson_sampling=...)`` trains on Poisson-sampled batches: Opacus
    makes them when asked, and a loader already built on Opacus's Poisson samplers keeps them."""
    return bool(poisson_sampling) or isinstance(getattr(data_loader, "batch_sampler", None), _POISSON_SAMPLERS)


class EdgeworthAccountant(IAccountant):
    """Opacus accountant backed by ``edgeworth`` (mechanism name ``"edgeworth"``).

    ``get_epsilon`` is the *certified* eps by default: a rigorous upper bound
    covering both the add and the remove ordering (see :func:`edgeworth.epsilon`:
    as tight as a fine PLD accountant where ten or more steps are sampled in all).
    ``get_epsilon(delta, method="tilted")`` asks for the saddle-point estimate
    instead, and ``method="edgeworth"`` for the Edgeworth point estimate;
    neither is a bound.

    **Sampling.** Every eps assumes that each step's batch was Poisson-sampled
    at the recorded ``sample_rate``, which is what ``make_private(...,
    poisson_sampling=True)`` (Opacus's default) does.  With
    ``poisson_sampling=False`` (a shuffled, fixed-size loader: a different
    mechanism) ``make_private`` warns (:class:`NonPoissonSamplingWarning`), the
    steps it drives are counted in ``non_poisson_steps``, and ``get_epsilon``
    raises :class:`NonPoissonSamplingError` rather than print an uncertified
    number as certified; ``get_epsilon(delta, assume_poisson=True)`` gives the
    figure as if the batches were Poisson (with a warning), and
    ``epsilon_details`` labels it ``"uncertified"``.
    ``make_private_with_epsilon(..., poisson_sampling=False)`` is refused: its
    target could not be certified.  A direct ``step()`` call asserts Poisson
    sampling; it cannot see the loader.

    Attributes:
        history: Opacus's ledger, a list of
            ``(noise_multiplier, sample_rate, num_steps)`` (floats, floats,
            int); consecutive steps with equal parameters are merged, as
            Opacus's accountants do.  Entries with ``sample_rate`` 0 are
            kept (``len()`` counts every optimizer step) and cost nothing.
        non_poisson_steps: how many of the steps came from a loader that was
            not Poisson-sampled (0 for a certified ledger).
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: List[Entry] = []
        self.non_poisson_steps = 0
        self._checked = (math.nan, math.nan)  # the last (sigma, q) step() validated
        self._next_hook_poisson = True  # set by make_private for the hook it asks for next

    @classmethod
    def mechanism(cls) -> str:
        return MECHANISM

    def step(self, *, noise_multiplier: float, sample_rate: float) -> None:
        """Records one DP-SGD step of the Poisson-subsampled Gaussian mechanism.

        Args:
            noise_multiplier: sigma, the noise std divided by the clipping norm:
                0 (no noise; eps is then infinite) or in [0.01, 1e6].  A Python,
                numpy or 0-d torch real; the ledger keeps ``float()`` of it,
                the factor Opacus multiplies the clipping norm by
                (``np.float32(1.1)`` is recorded as 1.100000023841858, its
                exact value, and is a different entry from 1.1).  Like every
                Opacus accountant it does not model that the noise is then
                drawn at the parameters' precision (in float32 each noise
                value is rounded by about 6e-8 relative, either way, whatever
                type sigma had).
            sample_rate: the Poisson sampling rate q: 0 (nobody sampled: the
                step is recorded and costs nothing) or in [1e-12, 1].

        Raises:
            ValueError: either argument outside its range or not a real
                scalar, naming it; the ledger is left unchanged.

        Costs about a microsecond: the ranges are checked only when
        (sigma, q) differs from the last step's.
        """
        sigma = noise_multiplier if type(noise_multiplier) is float else _real("noise_multiplier", noise_multiplier)
        q = sample_rate if type(sample_rate) is float else _real("sample_rate", sample_rate)
        checked = self._checked
        if sigma != checked[0] or q != checked[1]:  # NaN differs from everything: it is always checked
            _check_step(sigma, q)
            self._checked = (sigma, q)
        history = self.history
        if history:
            last = history[-1]
            if last[0] == sigma and last[1] == q:
                history[-1] = (last[0], last[1], last[2] + 1)
                return
        history.append((sigma, q, 1))

    def get_optimizer_hook_fn(self, sample_rate: float):
        """Opacus's hook, counting the steps of a loader that ``make_private`` found not Poisson-sampled."""
        hook = super().get_optimizer_hook_fn(sample_rate)
        poisson, self._next_hook_poisson = self._next_hook_poisson, True
        if poisson:
            return hook

        def non_poisson_hook(optim) -> None:
            hook(optim)
            self.non_poisson_steps += 1

        return non_poisson_hook

    def __len__(self) -> int:
        """Number of steps recorded (not the number of ledger entries), sample rate 0 included."""
        return sum(int(n) for _, _, n in self.history)

    def _ledger(self) -> Optional[Accountant]:
        """The history as an :class:`edgeworth.Accountant` (None with a noiseless step that samples someone)."""
        entries = [_check_entry(e) for e in self.history]
        entries = [e for e in entries if e[1] != 0.0]  # a step that samples nobody costs nothing
        if any(sigma == 0 for sigma, _, _ in entries):
            return None
        ledger = Accountant()
        for sigma, q, n in entries:
            ledger.compose(sigma, q, n)
        return ledger

    def _sampling_check(self, assume_poisson: bool) -> Optional[str]:
        """None for a Poisson ledger; else the reason the eps is not certified (or the error)."""
        if not self.non_poisson_steps:
            return None
        reason = (f"{self.non_poisson_steps} of the {len(self)} steps came from a data loader that was not "
                  "Poisson-sampled (make_private(..., poisson_sampling=False)); this accountant's eps assumes "
                  "Poisson sampling at the recorded sample rate")
        if not assume_poisson:
            raise NonPoissonSamplingError(f"{reason}, so no certified eps exists for this run. Train with "
                                          "poisson_sampling=True, or pass assume_poisson=True for the uncertified "
                                          "figure as if the batches had been Poisson-sampled")
        warnings.warn(NonPoissonSamplingWarning(f"{reason}: the figure is uncertified"), stacklevel=3)
        return reason

    def epsilon_details(self, delta: float, *, method: str = "certified", order: int = 2,
                        assume_poisson: bool = False) -> AccountingResult:
        """The eps spent so far with its label, the tilted estimate, the
        certified bound and their gap (see :class:`edgeworth.AccountingResult`).

        With ``assume_poisson=True`` on a ledger with non-Poisson steps the
        result is labelled ``"uncertified"`` and ``inputs["sampling"]`` says why.

        Raises:
            ValueError: bad delta or method, or a history with a noiseless step.
            NonPoissonSamplingError: steps that were not Poisson-sampled,
                without ``assume_poisson=True``.
        """
        reason = self._sampling_check(assume_poisson)
        ledger = self._ledger()
        if ledger is None:
            raise ValueError("noise_multiplier: the history has a step with noise_multiplier 0, so eps is unbounded")
        if len(ledger.history) == 1:
            sigma, q, n = ledger.history[0]
            result = epsilon_details(sigma, delta, n, q, method=method, order=order)
        else:
            result = ledger.epsilon_details(delta, method=method, order=order)
        if reason is not None:
            result = dataclasses.replace(result, label="uncertified", inputs={**result.inputs, "sampling": reason})
        return result

    def get_epsilon(self, delta: float, *, method: str = "certified", order: int = 2, assume_poisson: bool = False,
                    **kwargs: Any) -> float:
        """eps spent so far at ``delta``.

        Args:
            delta: target delta, in (0, 1).
            method: "certified" (default; a rigorous upper bound on eps over
                both orderings), "tilted" (the saddle-point estimate) or
                "edgeworth" (the Edgeworth point estimate of ``order``).
                The estimates carry no guarantee.
            order: Edgeworth order 1, 2 or 3 (method="edgeworth" only).
            assume_poisson: with steps from a loader that was not
                Poisson-sampled, compute the eps as if they had been (an
                uncertified figure, with a :class:`NonPoissonSamplingWarning`)
                instead of raising.
            **kwargs: ignored; Opacus passes its calibration options through
                to every accountant.

        Returns:
            eps >= 0 (0 for an empty history or one whose steps sampled
            nobody; ``inf`` if a step that sampled someone had no noise).
            A one-entry history gives exactly
            ``edgeworth.epsilon(sigma, delta, num_steps, q, method=method)``.

        Raises:
            ValueError: delta outside (0, 1), an unknown method, or an
                estimate that declines where it is unreliable
                (``edgeworth.UnreachableTargetError``).
            NonPoissonSamplingError: steps that were not Poisson-sampled,
                without ``assume_poisson=True``.
        """
        delta = scalar("delta", check_delta(delta))
        method, order, _ = check_method(method, order, None)
        self._sampling_check(assume_poisson)
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
        """Opacus's state, ``{"history": [...], "mechanism": "edgeworth"}``, plus ``"non_poisson_steps"``."""
        destination = super().state_dict(destination)
        destination["non_poisson_steps"] = self.non_poisson_steps
        return destination

    def load_state_dict(self, state_dict) -> None:
        """Restores a :meth:`state_dict`.  The whole state is checked first: another mechanism's
        state, a malformed or out-of-range history raise a ValueError and leave the ledger as it was.
        A state without ``"non_poisson_steps"`` (an older one) has none."""
        self.history, self.non_poisson_steps = _check_state(state_dict)


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
        epochs = _real("epochs", epochs)
        if epochs <= 0:
            raise ValueError(f"epochs must be a finite number > 0, got {epochs!r}")
        steps = epochs / scalar("sample_rate", check_q(sample_rate))
        if steps > _core.STEPS_MAX:
            raise ValueError(f"epochs: {epochs!r} epochs at sample_rate {sample_rate!r} are {steps:.3g} steps, "
                             "more than 2^53")
        steps = int(steps)
    return float(noise_multiplier(target_epsilon, target_delta, steps, sample_rate, method=method))


# Opacus's own function, kept once however often this module is (re)loaded.
_OPACUS_GET_NOISE_MULTIPLIER = getattr(_opacus_utils.get_noise_multiplier, "__wrapped__",
                                       _opacus_utils.get_noise_multiplier)
get_noise_multiplier = functools.wraps(_OPACUS_GET_NOISE_MULTIPLIER, assigned=())(get_noise_multiplier)


def _edgeworth_accountant(engine) -> Optional[EdgeworthAccountant]:
    """The engine's accountant if it is this one (of this or an earlier load of the module), else None."""
    accountant = getattr(engine, "accountant", None)
    if isinstance(accountant, IAccountant) and accountant.mechanism() == MECHANISM \
            and hasattr(accountant, "_next_hook_poisson"):
        return accountant
    return None


# Opacus's own methods, kept once however often this module is (re)loaded.
_OPACUS_MAKE_PRIVATE = getattr(_opacus_engine.PrivacyEngine.make_private, "__wrapped__",
                               _opacus_engine.PrivacyEngine.make_private)
_OPACUS_MAKE_PRIVATE_WITH_EPSILON = getattr(_opacus_engine.PrivacyEngine.make_private_with_epsilon, "__wrapped__",
                                            _opacus_engine.PrivacyEngine.make_private_with_epsilon)


@functools.wraps(_OPACUS_MAKE_PRIVATE, assigned=("__name__", "__qualname__"))
def make_private(self, *args, **kwargs):
    """Opacus's ``PrivacyEngine.make_private`` (same arguments); with ``accountant="edgeworth"`` it first
    checks the noise multiplier (ValueError before anything is wrapped) and
    the sampling: a loader that will not be Poisson-sampled gets a
    :class:`NonPoissonSamplingWarning` and its steps are counted as such."""
    accountant = _edgeworth_accountant(self)
    if accountant is None:
        return _OPACUS_MAKE_PRIVATE(self, *args, **kwargs)
    if "noise_multiplier" in kwargs:
        _check_step(_real("noise_multiplier", kwargs["noise_multiplier"]), 0.0)
    poisson = _is_poisson(kwargs.get("data_loader"), kwargs.get("poisson_sampling", True))
    if not poisson:
        warnings.warn(NonPoissonSamplingWarning(
            "poisson_sampling=False: the batches will be shuffled fixed-size ones, not Poisson-sampled, and the "
            "'edgeworth' accountant certifies only Poisson sampling; engine.get_epsilon() will raise "
            "NonPoissonSamplingError for these steps (get_epsilon(delta, assume_poisson=True) gives an "
            "uncertified figure)"), stacklevel=2)
    accountant._next_hook_poisson = poisson  # read by the get_optimizer_hook_fn call inside make_private
    try:
        return _OPACUS_MAKE_PRIVATE(self, *args, **kwargs)
    finally:
        accountant._next_hook_poisson = True


@functools.wraps(_OPACUS_MAKE_PRIVATE_WITH_EPSILON, assigned=("__name__", "__qualname__"))
def make_private_with_epsilon(self, *args, **kwargs):
    """Opacus's ``PrivacyEngine.make_private_with_epsilon`` (same arguments); with ``accountant="edgeworth"``
    a loader that will not be Poisson-sampled is refused
    (:class:`NonPoissonSamplingError`) before anything is calibrated or wrapped:
    the target eps could not be certified."""
    if _edgeworth_accountant(self) is not None and \
            not _is_poisson(kwargs.get("data_loader"), kwargs.get("poisson_sampling", True)):
        raise NonPoissonSamplingError(
            "poisson_sampling: make_private_with_epsilon with the 'edgeworth' accountant needs Poisson sampling "
            "(poisson_sampling=True, Opacus's default): the noise it calibrates and the eps it certifies assume "
            "it, and a shuffled fixed-size loader is a different mechanism. To train without it, choose the "
            "noise yourself with make_private(..., poisson_sampling=False), whose eps is then uncertified")
    return _OPACUS_MAKE_PRIVATE_WITH_EPSILON(self, *args, **kwargs)


def register() -> None:
    """Registers the accountant, the calibration and the sampling checks of
    ``PrivacyEngine.make_private*`` with Opacus (the checks act only for this
    accountant); safe to call again."""
    try:
        register_accountant(MECHANISM, EdgeworthAccountant)
    except ValueError:  # already registered: by an earlier import, or by a reload of this module
        if type(create_accountant(MECHANISM)) is not EdgeworthAccountant:
            register_accountant(MECHANISM, EdgeworthAccountant, force=True)
    # PrivacyEngine.make_private_with_epsilon calls the name it imported, so both are routed.
    _opacus_utils.get_noise_multiplier = get_noise_multiplier
    _opacus_engine.get_noise_multiplier = get_noise_multiplier
    _opacus_engine.PrivacyEngine.make_private = make_private
    _opacus_engine.PrivacyEngine.make_private_with_epsilon = make_private_with_epsilon


register()

__all__ = ["EdgeworthAccountant", "MECHANISM", "NonPoissonSamplingError", "NonPoissonSamplingWarning",
           "get_noise_multiplier", "register"]
