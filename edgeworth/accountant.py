"""An accountant that composes heterogeneous DP-SGD segments.

The ledger is plain data, as in Opacus: a list of
``(noise_multiplier, sample_rate, num_steps)``.  Consecutive steps with the
same parameters are merged into one entry.  CGFs and cumulants add over
segments, so the cost of a query grows with the number of *distinct*
(noise_multiplier, sample_rate) pairs, never with the number of steps.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Tuple

from . import _core
from ._validate import check_delta, check_eps, check_method, check_q, check_sigma, check_steps, scalar
from .accounting import AccountingResult
from .mechanisms import PoissonSubsampledGaussian

Entry = Tuple[float, float, int]


class Accountant:
    """Privacy ledger of a DP-SGD run (Poisson sampling, add/remove neighbours).

    Example::

        acc = edgeworth.Accountant()
        acc.compose(noise_multiplier=1.0, sample_rate=0.01, steps=500)
        acc.compose(noise_multiplier=0.8, sample_rate=0.02, steps=200)
        acc.epsilon(delta=1e-5)                       # certified upper bound
        acc.epsilon(delta=1e-5, method="edgeworth")   # point estimate
    """

    def __init__(self) -> None:
        self.history: List[Entry] = []

    # -- building the ledger -------------------------------------------------
    def compose(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> "Accountant":
        """Records ``steps`` steps of the Poisson-subsampled Gaussian.

        Args:
            noise_multiplier: sigma (noise std / clipping norm), in [0.01, 1e6].
            sample_rate: Poisson sampling rate q, in [1e-12, 1].
            steps: number of steps, an integer >= 1.
        """
        sigma = scalar("noise_multiplier", check_sigma(noise_multiplier))
        q = scalar("sample_rate", check_q(sample_rate))
        n = int(scalar("steps", check_steps(steps)))
        if self.history and self.history[-1][:2] == (sigma, q):
            self.history[-1] = (sigma, q, self.history[-1][2] + n)
        else:
            self.history.append((sigma, q, n))
        return self

    def step(self, *, noise_multiplier: float, sample_rate: float) -> None:
        """Records one step (the Opacus ``IAccountant.step`` signature)."""
        self.compose(noise_multiplier, sample_rate, 1)

    def __len__(self) -> int:
        return sum(n for _, _, n in self.history)

    # -- queries ---------------------------------------------------------------
    def _composition(self) -> "_core.Composition":
        grouped: "OrderedDict[Tuple[float, float], int]" = OrderedDict()
        for sigma, q, n in self.history:
            grouped[(sigma, q)] = grouped.get((sigma, q), 0) + n
        comp = _core.Composition()
        for (sigma, q), n in grouped.items():
            comp.add(PoissonSubsampledGaussian(sigma, q).to_core(), float(n))
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
            except ValueError:  # the tilted estimate declines where it is unreliable
                return float("nan")
            return 0.0 if answer is None else float(answer.value)

        answer = self._query(quantity, arg, method, order, ordering)
        estimate, bound = number("tilted"), number("certified")
        return AccountingResult(
            quantity=quantity, value=0.0 if answer is None else float(answer.value),
            label="certified" if method == "certified" else "estimate", method=method,
            order=order if method == "edgeworth" else None, orderings=ordering,
            dominating=None if answer is None else answer.ordering,
            inputs={("delta" if quantity == "epsilon" else "eps"): arg, "history": list(self.history)},
            estimate=estimate, bound=bound, gap=bound - estimate)

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
        return {"history": [list(e) for e in self.history]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        history = state.get("history") if isinstance(state, dict) else None
        if history is None:
            raise ValueError("state must be a dict with a 'history' list of (noise_multiplier, sample_rate, steps)")
        fresh = Accountant()
        for entry in history:
            if len(entry) != 3:
                raise ValueError(f"history entries must be (noise_multiplier, sample_rate, steps), got {entry!r}")
            fresh.compose(*entry)
        self.history = fresh.history

    def __repr__(self) -> str:
        return f"Accountant(steps={len(self)}, segments={len(self.history)})"
