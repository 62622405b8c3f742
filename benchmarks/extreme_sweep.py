"""Extreme-parameter sweep of the public API (issue 7).

Calls ``edgeworth.epsilon``, ``edgeworth.delta`` and ``edgeworth.noise_multiplier``
(default ``method="certified"``, and the tilted estimate for ``epsilon``) on a grid
that reaches the corners of the supported ranges:

    steps 1 .. 1e9,  delta 1e-15 .. 0.1,  q 1e-7 .. 1,  sigma 0.1 .. 1000,  eps 0.1 .. 100.

Every cell must hold either a finite value or a named error (a ``ValueError``
subclass whose message says what is out of reach); anything else (nan, inf, a
value out of range, another exception) is counted as a failure.  Each cell is
one call, timed with ``time.perf_counter``; cells over 100 ms are flagged.  The
answers are then checked for monotonicity along every axis of the grid where
the quantity is monotone in truth (eps falls with sigma and delta and grows with
steps and q; delta falls with sigma and eps; sigma grows with steps and q and
falls with eps and delta), to a relative slack of 1e-9.

Usage::

    python benchmarks/extreme_sweep.py            # prints the tables
    python benchmarks/extreme_sweep.py --write    # and replaces the sweep section of docs/robustness.md

Exit status 1 if any cell fails (non-finite, out of range, or an unnamed error).
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import edgeworth

SLOW_S = 0.100
SIGMAS = [0.1, 0.5, 1.0, 10.0, 1000.0]
DELTAS = [1e-15, 1e-5, 0.1]
EPSS = [0.1, 1.0, 10.0, 100.0]
STEPS = [1, 1_000, 1_000_000, 1_000_000_000]
QS = [1e-7, 1e-3, 0.1, 1.0]
REL_SLACK = 1e-9

DOC = Path(__file__).resolve().parent.parent / "docs" / "robustness.md"
BEGIN, END = "<!-- extreme-sweep:begin -->", "<!-- extreme-sweep:end -->"


class Cell:
    """One call: its value or its error, and its time."""

    def __init__(self, fn, kwargs, valid_range):
        t0 = time.perf_counter()
        self.value = None
        self.error = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.value = float(fn(**kwargs))
        except ValueError as exc:  # includes edgeworth.UnreachableTargetError
            self.error = exc
        except Exception as exc:  # noqa: BLE001 -- anything else is a failure, recorded as such
            self.error = exc
        self.seconds = time.perf_counter() - t0
        lo, hi = valid_range
        self.failed = (self.error is not None and not isinstance(self.error, ValueError)) or (
            self.value is not None and not (math.isfinite(self.value) and lo <= self.value <= hi))

    @property
    def error_name(self):
        return type(self.error).__name__ if self.error is not None else None

    def text(self, notes):
        if self.value is not None:
            body = f"{self.value:.4g}"
        else:
            # One note per kind of message: the numbers in it (the eps, u or
            # skewness where the estimate gave up) are masked for the grouping.
            msg = f"{self.error_name}: {self.error}"
            kind = re.sub(r"-?\d[\d.e+-]*", "#", msg)
            if kind not in notes:
                notes[kind] = (len(notes) + 1, msg)
            body = f"{self.error_name} [{notes[kind][0]}]"
        flag = " **SLOW**" if self.seconds > SLOW_S else ""
        bad = " **FAIL**" if self.failed else ""
        return f"{body} ({1e3 * self.seconds:.0f} ms){flag}{bad}"


# name, function, the swept keyword arguments with their grids (the last one makes
# the columns), the range a value must lie in, and the direction of monotonicity
# in each argument (+1 increasing, -1 decreasing).
SWEEPS = [
    ("epsilon (certified)", edgeworth.epsilon, {"delta": DELTAS, "q": QS, "steps": STEPS, "sigma": SIGMAS}, {},
     (0.0, math.inf), {"sigma": -1, "delta": -1, "steps": +1, "q": +1}),
    ("epsilon (tilted estimate)", edgeworth.epsilon, {"delta": DELTAS, "q": QS, "steps": STEPS, "sigma": SIGMAS},
     {"method": "tilted"}, (0.0, math.inf), {"sigma": -1, "delta": -1, "steps": +1, "q": +1}),
    ("delta (certified)", edgeworth.delta, {"eps": EPSS, "q": QS, "steps": STEPS, "sigma": SIGMAS}, {},
     (0.0, 1.0), {"sigma": -1, "eps": -1, "steps": +1, "q": +1}),
    ("noise_multiplier (certified)", edgeworth.noise_multiplier,
     {"delta": DELTAS[:2], "q": QS, "steps": STEPS, "eps": EPSS}, {},
     (0.0, math.inf), {"eps": -1, "delta": -1, "steps": +1, "q": +1}),
]


def run_sweep(fn, grid, fixed, valid_range):
    names = list(grid)
    cells = {}
    for combo in itertools.product(*(grid[n] for n in names)):
        kwargs = dict(zip(names, combo))
        cells[combo] = Cell(fn, {**kwargs, **fixed}, valid_range)
    return names, cells


def monotonicity_violations(names, grid, cells, directions):
    """Pairs of neighbouring cells, both with values, that step the wrong way."""
    out = []
    for axis, name in enumerate(names):
        sign = directions[name]
        for combo, cell in cells.items():
            i = grid[name].index(combo[axis])
            if i + 1 == len(grid[name]):
                continue
            nxt = combo[:axis] + (grid[name][i + 1],) + combo[axis + 1:]
            a, b = cell.value, cells[nxt].value
            if a is None or b is None:
                continue
            if sign * (b - a) < -REL_SLACK * max(abs(a), abs(b)):
                out.append((name, dict(zip(names, combo)), grid[name][i + 1], a, b))
    return out


def table(title, names, grid, cells, notes):
    rows_names, col = names[:-1], names[-1]
    lines = [f"### {title}", "", "| " + " | ".join(rows_names) + " | " +
             " | ".join(f"{col} = {v:g}" for v in grid[col]) + " |",
             "|" + "---|" * (len(rows_names) + len(grid[col]))]
    for row in itertools.product(*(grid[n] for n in rows_names)):
        cells_txt = [cells[row + (v,)].text(notes) for v in grid[col]]
        lines.append("| " + " | ".join(f"{v:g}" for v in row) + " | " + " | ".join(cells_txt) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="replace the sweep section of docs/robustness.md")
    args = ap.parse_args(argv)

    edgeworth.epsilon(1.0, 1e-5, 100, 0.01)  # load the extension before timing anything
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out = [BEGIN, "",
           f"Generated by `python benchmarks/extreme_sweep.py --write` on {platform.machine()} "
           f"({os.cpu_count()} cores, load average {load:.1f} at the start: other jobs share the machine, so "
           f"times are upper bounds), Python {platform.python_version()}; one call per cell, time in parentheses, "
           f"**SLOW** over {SLOW_S * 1e3:.0f} ms, **FAIL** for a non-finite or out-of-range value or an "
           "error that is not a named `ValueError`.", ""]
    notes = {}
    summary = []
    total_fail = 0
    all_slow = []
    for title, fn, grid, fixed, valid_range, directions in SWEEPS:
        t0 = time.perf_counter()
        names, cells = run_sweep(fn, grid, fixed, valid_range)
        elapsed = time.perf_counter() - t0
        viol = monotonicity_violations(names, grid, cells, directions)
        n_val = sum(c.value is not None for c in cells.values())
        n_err = sum(c.error is not None and not c.failed for c in cells.values())
        n_fail = sum(c.failed for c in cells.values())
        slow = sorted(((c.seconds, combo) for combo, c in cells.items() if c.seconds > SLOW_S), reverse=True)
        worst = max(c.seconds for c in cells.values())
        total_fail += n_fail
        all_slow += [(title, s, dict(zip(names, combo))) for s, combo in slow]
        summary.append(f"| {title} | {len(cells)} | {n_val} | {n_err} | {n_fail} | {len(slow)} | "
                       f"{1e3 * worst:.0f} | {len(viol)} | {elapsed:.1f} |")
        out += table(title, names, grid, cells, notes) + [""]
        if viol:
            out += [f"Monotonicity violations in {title} (relative slack {REL_SLACK:g}):", ""]
            out += [f"- along {n} at {c}: {a:.10g} -> {b:.10g} at {n} = {v:g}" for n, c, v, a, b in viol] + [""]
        print(f"{title}: {len(cells)} cells, {n_val} values, {n_err} named errors, {n_fail} failures, "
              f"{len(slow)} over {SLOW_S * 1e3:.0f} ms (worst {1e3 * worst:.0f} ms), "
              f"{len(viol)} monotonicity violations, {elapsed:.1f} s", flush=True)
    head = ["| sweep | cells | values | named errors | failures | over 100 ms | worst ms | monotonicity violations "
            "| total s |", "|---|---|---|---|---|---|---|---|---|"] + summary + [""]
    if all_slow:
        head += ["Cells over 100 ms:", ""] + [
            f"- {t}: {1e3 * s:.0f} ms at {', '.join(f'{k}={v:g}' for k, v in c.items())}" for t, s, c in all_slow] + [""]
    errs = ["Errors, one example of each kind of message:", ""] + [f"{i}. `{m}`" for i, m in notes.values()] + [""]
    out = out[:4] + head + out[4:] + errs + [END]
    text = "\n".join(out)
    print(text)
    if args.write:
        doc = DOC.read_text()
        if BEGIN not in doc or END not in doc:
            raise SystemExit(f"{DOC} has no {BEGIN} ... {END} section to replace")
        pre, rest = doc.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        DOC.write_text(pre + text + post)
        print(f"wrote {DOC}", file=sys.stderr)
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
