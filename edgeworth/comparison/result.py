"""What a comparison returns: one labelled row per accountant, as text, markdown or plain dicts.

No computation happens here; :mod:`edgeworth.comparison.runner` fills the rows in.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: The three kinds a figure can be.  For a noise multiplier they describe it
#: against the least sigma that truly meets the target: an accountant that
#: over-states eps gives a sigma above it (an upper bound), one that
#: under-states eps gives a sigma below it (a lower bound).
UPPER = "upper bound"
LOWER = "lower bound"
ESTIMATE = "estimate"
KINDS = (UPPER, LOWER, ESTIMATE)


@dataclass(frozen=True)
class ComparisonRow:
    """One accountant's answer.

    Attributes:
        accountant: what computed it, e.g. "prv_accountant eps_up".
        value: eps (``compare``) or sigma (``compare_noise_multipliers``);
            None when ``error`` says why there is none.
        kind: "upper bound", "lower bound" or "estimate" (see :data:`KINDS`).
        library: the package and version that computed it, e.g.
            "prv-accountant 0.2.0" ("not installed" when absent).
        seconds: wall time of the library call that gave the value, in
            seconds (None when it did not run).  Rows that one call fills
            (prv_accountant's three, the paper's two bounds) share it.
        error: why there is no value: the library's exception, a time-out,
            a missing package (with the command that installs it), or a
            history the accountant cannot take.
        note: how to read the value (settings, vacuity, warnings it raised).
    """

    accountant: str
    value: Optional[float]
    kind: str
    library: str
    seconds: Optional[float] = None
    error: Optional[str] = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Comparison:
    """Every accountant's answer to one question, side by side.

    Attributes:
        quantity: "epsilon" (eps at ``inputs["delta"]``) or
            "noise_multiplier" (sigma for the target ``inputs["eps"]``).
        inputs: the question: ``delta`` and ``history`` (a list of
            ``(noise_multiplier, sample_rate, steps)``) for epsilon;
            ``eps``, ``delta``, ``steps`` and ``q`` for a noise multiplier.
        rows: one :class:`ComparisonRow` per accountant.
        seconds: wall time of the whole comparison, in seconds.
        settings: the peers' numerical settings and the worker limits used.
    """

    quantity: str
    inputs: Dict[str, Any]
    rows: Tuple[ComparisonRow, ...]
    seconds: float = 0.0
    settings: Dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, accountant: str) -> ComparisonRow:
        """The row named ``accountant`` (KeyError listing the names otherwise)."""
        for r in self.rows:
            if r.accountant == accountant:
                return r
        raise KeyError(f"no row {accountant!r}; rows are {[r.accountant for r in self.rows]}")

    def parameters(self) -> Dict[str, float]:
        """The question as flat numbers: sigma, q, steps, delta (one segment) or eps, delta, steps, q."""
        if self.quantity == "epsilon":
            hist = self.inputs["history"]
            flat = dict(zip(("sigma", "q", "steps"), hist[0])) if len(hist) == 1 else {}
            return dict(flat, delta=self.inputs["delta"])
        return dict(self.inputs)

    def to_dicts(self) -> List[Dict[str, Any]]:
        """The rows as plain dicts (JSON-ready; no pandas needed)."""
        return [asdict(r) for r in self.rows]

    # -- rendering -------------------------------------------------------------
    def _title(self) -> str:
        inp = self.inputs
        if self.quantity == "epsilon":
            hist = inp["history"]
            what = (f"sigma = {hist[0][0]:g}, q = {hist[0][1]:g}, steps = {hist[0][2]:g}" if len(hist) == 1 else
                    "history " + ", ".join(f"({s:g}, {q:g}, {n:g})" for s, q, n in hist))
            return f"eps at delta = {inp['delta']:g} for {what}"
        return (f"noise multiplier sigma for eps = {inp['eps']:g}, delta = {inp['delta']:g}, steps = {inp['steps']:g}, "
                f"q = {inp['q']:g}")

    def _cells(self) -> Tuple[List[str], List[List[str]]]:
        header = ["accountant", "eps" if self.quantity == "epsilon" else "sigma", "kind", "library", "time",
                  "note / error"]
        rows = [[r.accountant, _fmt_value(r.value) if r.ok else "-", r.kind, r.library, _fmt_seconds(r.seconds),
                 ("error: " + r.error) if r.error else r.note] for r in self.rows]
        return header, rows

    def _footer(self) -> str:
        return (f"Poisson sampling, add/remove-one neighbours; sigma is the noise multiplier. "
                f"Comparison took {_fmt_seconds(self.seconds)}.")

    def to_text(self) -> str:
        """A fixed-width text table."""
        header, rows = self._cells()
        widths = [max(len(c) for c in col) for col in zip(header, *rows)]
        widths[-1] = len(header[-1])  # the last column runs free
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out = [self._title(), line(header), line(["-" * w for w in widths])]
        out += [line(r) for r in rows]
        out.append(self._footer())
        return "\n".join(out)

    def to_markdown(self) -> str:
        """A markdown table with a title line."""
        header, rows = self._cells()
        esc = lambda c: c.replace("|", "\\|")  # noqa: E731
        out = [f"**{self._title()}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
        out += ["", self._footer()]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()


def _fmt_value(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.6g}"


def _fmt_seconds(t: Optional[float]) -> str:
    if t is None:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.0f} us"
    if t < 1:
        return f"{t * 1e3:.3g} ms"
    return f"{t:.3g} s"


def series(comparisons: Sequence[Comparison]) -> Dict[str, Tuple[str, List[int]]]:
    """{accountant: (kind, indices of the comparisons where it has a value)}, in row order."""
    out: Dict[str, Tuple[str, List[int]]] = {}
    for i, comp in enumerate(comparisons):
        for r in comp.rows:
            kind, idx = out.setdefault(r.accountant, (r.kind, []))
            if r.ok and r.value is not None and math.isfinite(r.value):
                idx.append(i)
    return out
