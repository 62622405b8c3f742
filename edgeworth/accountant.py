"""An accountant that composes heterogeneous segments of any mechanisms.

The ledger is plain data, as in Opacus: a list of
``(noise_multiplier, sample_rate, num_steps)`` for DP-SGD steps (the
Poisson-subsampled Gaussian), and ``(mechanism, num_steps)`` for any other
mechanism of :mod:`edgeworth.mechanisms` (a Laplace or a mixture of
Gaussians, sampled or not), so composition mixes mechanisms freely.
Consecutive steps of the same mechanism are merged into one entry.  CGFs and
cumulants add over segments, so the cost of a query grows with the number of
*distinct* mechanisms, never with the number of steps.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Tuple, Union

from . import _core
from ._validate import check_delta, check_eps, check_method, check_q, check_sigma, check_steps, scalar, show
from .accounting import AccountingResult
from .mechanisms import MECHANISMS, Mechanism, PoissonSubsampledGaussian, from_dict, to_dict

#: (noise_multiplier, sample_rate, steps) for DP-SGD, (mechanism, steps) for any other mechanism.
Entry = Union[Tuple[float, float, int], Tuple[Mechanism, int]]


class Accountant:
    """Privacy ledger of a run (Poisson sampling, add/remove neighbours), DP-SGD steps and any other mechanisms.

    Example::

        acc = edgeworth.Accountant()
        acc.compose(noise_multiplier=1.0, sample_rate=0.01, steps=500)
        acc.compose(noise_multiplier=0.8, sample_rate=0.02, steps=200)
        acc.compose(mechanism=edgeworth.PoissonSubsampled(edgeworth.Laplace(3.0), 0.05), steps=100)
        acc.epsilon(delta=1e-5)                       # certified upper bound
        acc.epsilon(delta=1e-5, method="edgeworth")   # point estimate
    """

    def __init__(self) -> None:
        self.history: List[Entry] = []
        self._total: Tuple[Any, int] = (None, 0)  # (what the ledger looked like, its steps): see _steps_so_far

    # -- building the ledger -------------------------------------------------
    def compose(self, noise_multiplier: float = None, sample_rate: float = None, steps: int = 1, *,
                mechanism: Mechanism = None) -> "Accountant":
        """Records ``steps`` steps of the Poisson-subsampled Gaussian, or of ``mechanism``.

        Args:
            noise_multiplier: sigma (noise std / clipping norm), in [0.01, 1e6].
            sample_rate: Poisson sampling rate q, in [1e-12, 1].
            steps: number of steps, an integer >= 1; the whole ledger may hold
                at most 2^53 steps (beyond, not every count is a double), and
                a compose that would pass that is refused with the ledger
                unchanged.
            mechanism: instead of (noise_multiplier, sample_rate), any value of
                :mod:`edgeworth.mechanisms` (e.g. ``Laplace(b)``,
                ``PoissonSubsampled(MixtureOfGaussians(...), q)``).  A
                ``PoissonSubsampledGaussian`` is recorded as its
                (noise_multiplier, sample_rate) entry.
        """
        if mechanism is not None:
            if noise_multiplier is not None or sample_rate is not None:
                raise ValueError("mechanism: pass either mechanism or (noise_multiplier, sample_rate), not both")
            if not isinstance(mechanism, MECHANISMS):
                raise ValueError(f"mechanism must be one of {[c.__name__ for c in MECHANISMS]}, "
                                 f"got {show(mechanism)}")
            if isinstance(mechanism, PoissonSubsampledGaussian):
                return self.compose(mechanism.noise_multiplier, mechanism.sampling_rate, steps)
            n, total = self._new_steps(steps)
            if self.history and len(self.history[-1]) == 2 and self.history[-1][0] == mechanism:
                self.history[-1] = (mechanism, self.history[-1][1] + n)
            else:
                self.history.append((mechanism, n))
            self._total = (self._ledger_key(), total)
            return self
        if noise_multiplier is None or sample_rate is None:
            raise ValueError("noise_multiplier and sample_rate are required (or pass mechanism=)")
        sigma = scalar("noise_multiplier", check_sigma(noise_multiplier))
        q = scalar("sample_rate", check_q(sample_rate))
        n, total = self._new_steps(steps)
        if self.history and len(self.history[-1]) == 3 and self.history[-1][:2] == (sigma, q):
            self.history[-1] = (sigma, q, self.history[-1][2] + n)
        else:
            self.history.append((sigma, q, n))
        self._total = (self._ledger_key(), total)
        return self

    def _ledger_key(self):
        return id(self.history), len(self.history), (self.history[-1] if self.history else None)

    def _steps_so_far(self) -> int:
        """len(self), remembered between composes (summing the ledger at every step would make a
        ledger of many distinct segments cost quadratic time); recomputed whenever the ledger was
        changed other than by compose."""
        key, total = self._total
        if key != self._ledger_key():
            total = len(self)
        return total

    def _new_steps(self, steps) -> Tuple[int, int]:
        """The count of a new entry and the ledger's total with it; refused (ledger unchanged)
        where the ledger would pass 2^53 steps."""
        n = int(scalar("steps", check_steps(steps)))
        before = self._steps_so_far()
        if before + n > _core.STEPS_MAX:
            raise ValueError(f"steps: the ledger holds {before} steps, and {n} more would make {before + n}, more "
                             f"than 2^53 = {_core.STEPS_MAX:.0f} in all (beyond it not every count is a double)")
        return n, before + n

    def step(self, *, noise_multiplier: float, sample_rate: float) -> None:
        """Records one step (the Opacus ``IAccountant.step`` signature)."""
        self.compose(noise_multiplier, sample_rate, 1)

    def __len__(self) -> int:
        return sum(e[-1] for e in self.history)

    def mechanisms(self) -> List[Tuple[Mechanism, int]]:
        """The ledger as (mechanism value, total steps), one per distinct mechanism."""
        grouped: "OrderedDict[Any, int]" = OrderedDict()
        for entry in self.history:
            mech = PoissonSubsampledGaussian(entry[0], entry[1]) if len(entry) == 3 else entry[0]
            grouped[mech] = grouped.get(mech, 0) + entry[-1]
        return list(grouped.items())

    # -- queries ---------------------------------------------------------------
    def _composition(self) -> "_core.Composition":
        comp = _core.Composition()
        for mech, n in self.mechanisms():
            comp.add(mech.to_core(), float(n))
        return comp

    def _query(self, quantity: str, arg: float, method: str, order: int = 2, ordering: str = "both"):
        """The core's answer for eps (quantity "epsilon") or delta, or None for an empty ledger."""
        if not self.history:
            return None
        return getattr(self._composition(), quantity)(arg, method, order, ordering)

    def _details(self, quantity: str, arg: float, method: str, order: int, ordering: str) -> AccountingResult:
        """One query, with the tilted estimate, the certified bound and their gap alongside."""
        def number(m):
            try:
                answer = self._query(quantity, arg, m)
            except ValueError:  # no estimate answers there (a named decline)
                return float("nan"), None
            return (0.0, None) if answer is None else (float(answer.value), answer.estimate_method)

        answer = self._query(quantity, arg, method, order, ordering)
        (estimate, how), (bound, _) = number("tilted"), number("certified")
        return AccountingResult(
            quantity=quantity, value=0.0 if answer is None else float(answer.value),
            label="certified" if method == "certified" else "estimate", method=method,
            order=order if method == "edgeworth" else None, orderings=ordering,
            dominating=None if answer is None else answer.ordering,
            inputs={("delta" if quantity == "epsilon" else "eps"): arg,
                    "history": [e if len(e) == 3 else {"mechanism": to_dict(e[0]), "steps": e[1]}
                                for e in self.history]},
            estimate=estimate, bound=bound, gap=bound - estimate, estimate_method=how)

    def epsilon_details(self, delta: float, *, method: str = "certified", order: int = 2,
                        ordering: str = None) -> AccountingResult:
        """Like :meth:`epsilon`, with the label, the dominating ordering, the tilted
        estimate, the certified bound and their gap."""
        method, order, ordering = check_method(method, order, ordering)
        return self._details("epsilon", scalar("delta", check_delta(delta)), method, order, ordering)

    def epsilon(self, delta: float, *, method: str = "certified", order: int = 2, ordering: str = None) -> float:
        """eps of everything recorded so far at ``delta`` (0 for an empty ledger).

        ``method``, ``order`` and ``ordering`` are as in :func:`edgeworth.epsilon`:
        "certified" is an upper bound over both orderings; "tilted" and
        "edgeworth" are estimates.
        """
        method, order, ordering = check_method(method, order, ordering)
        answer = self._query("epsilon", scalar("delta", check_delta(delta)), method, order, ordering)
        return 0.0 if answer is None else float(answer.value)

    def delta_details(self, eps: float, *, method: str = "certified", order: int = 2,
                      ordering: str = None) -> AccountingResult:
        """Like :meth:`delta`, with the label and the diagnostics of :meth:`epsilon_details`."""
        method, order, ordering = check_method(method, order, ordering)
        return self._details("delta", scalar("eps", check_eps(eps, allow_zero=True)), method, order, ordering)

    def delta(self, eps: float, *, method: str = "certified", order: int = 2, ordering: str = None) -> float:
        """delta of everything recorded so far at ``eps`` (0 for an empty ledger)."""
        method, order, ordering = check_method(method, order, ordering)
        answer = self._query("delta", scalar("eps", check_eps(eps, allow_zero=True)), method, order, ordering)
        return 0.0 if answer is None else float(answer.value)

    # -- persistence -------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """``{"history": [...]}``: DP-SGD entries as ``[noise_multiplier, sample_rate, steps]`` (as
        before other mechanisms existed), others as ``{"mechanism": {...}, "steps": n}``."""
        return {"history": [list(e) if len(e) == 3 else {"mechanism": to_dict(e[0]), "steps": e[1]}
                            for e in self.history]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Replaces the ledger by a :meth:`state_dict`'s; on any error (a ``ValueError`` naming the
        entry) the ledger is left as it was."""
        history = state.get("history") if isinstance(state, dict) else None
        if not isinstance(history, (list, tuple)):
            raise ValueError("state must be a dict with a 'history' list of (noise_multiplier, sample_rate, steps), "
                             f"got {show(state)}")
        fresh = Accountant()
        for i, entry in enumerate(history):
            if isinstance(entry, dict):
                if set(entry) != {"mechanism", "steps"}:
                    raise ValueError(f"history entries of other mechanisms must be {{'mechanism': ..., 'steps': n}}, "
                                     f"got {show(entry)} at history[{i}]")
                fresh.compose(mechanism=from_dict(entry["mechanism"]), steps=entry["steps"])
                continue
            if not isinstance(entry, (list, tuple)) or len(entry) != 3:
                raise ValueError(f"history entries must be (noise_multiplier, sample_rate, steps), got {show(entry)} "
                                 f"at history[{i}]")
            if entry[0] is None or entry[1] is None:
                raise ValueError(f"history entries must be (noise_multiplier, sample_rate, steps), got {show(entry)} "
                                 f"at history[{i}]: noise_multiplier and sample_rate are numbers")
            fresh.compose(*entry)
        self.history = fresh.history

    def __repr__(self) -> str:
        return f"Accountant(steps={len(self)}, segments={len(self.history)})"
