#!/usr/bin/env python
"""Regenerates benchmarks/RESULTS.md and its plots: every accountant against the PLD truth, and timed.

Usage::

    PYTHONPATH=. python benchmarks/report.py             # the full report (about 15 minutes on 2 cores)
    PYTHONPATH=. python benchmarks/report.py --quick     # a tiny grid, as the test suite runs it

Everything comes from ``edgeworth.compare`` / ``edgeworth.compare_noise_multipliers``
(each peer computed by its own library) in this one run:

1. Accuracy: eps of every accountant on the grid of the tight-accounting
   issue (``tests/test_reference_pld.py``: sigma in [0.5, 4], q in
   [1e-3, 0.2], steps in [10, 1e5], delta in {1e-5, 1e-8}) against the PLD
   truth, the midpoint of dp_accounting's optimistic and pessimistic PLD at a
   fine discretisation chosen per point (``tests/pld_reference.py``).
2. Calibration time: the noise multiplier for one target by each library's
   own calibration, at several step counts.
3. eps evaluation time against steps, 10 to 1e6.

Timing: every call is timed by itself (heavy peers inside their worker
process, so the fork is not counted).  A configuration is run ``--repeats``
times and each row's time is the median; a backend whose single call takes
longer than ``--repeat-cap`` seconds is not repeated (its n is 1).  Ratios are
to edgeworth's certified call at the same configuration, from the same run.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from edgeworth.comparison import (BACKENDS, PeerSettings, compare, compare_noise_multipliers, plots, sweep)
from edgeworth.comparison.runner import DEFAULT_MEMORY_LIMIT

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from bench_table import machine_lines  # noqa: E402  (benchmarks/: the machine description)
from pld_reference import pld_eps  # noqa: E402  (tests/: the PLD truth of the tight-accounting issue)
from test_reference_pld import DELTAS, GRID_MECH  # noqa: E402  (tests/: that issue's grid)

# Finer PLD grids than the tests use, where the optimistic/pessimistic gap (about steps * interval / 2) would
# otherwise be more than 1 % of eps and the finer grid costs under a minute.  Not finer than 1e-6: at 1e-7 and
# 1e5 steps dp_accounting's pessimistic PLD came out *above* its value at 1e-6 (0.314 vs 0.269 at sigma 4,
# q 1e-3), so it is no longer trustworthy there.
REFINED_INTERVAL = {(0.5, 1e-3, 100_000): 1e-5, (4.0, 0.2, 100_000): 1e-5}

SIGMA, Q, DELTA, TARGET = 1.0, 0.01, 1e-5, 8.0


@dataclasses.dataclass
class Plan:
    grid: List[Tuple[float, float, int, float]]  # (sigma, q, steps, PLD truth interval)
    deltas: Sequence[float]
    eps_steps: List[int]
    calibration_steps: List[int]
    sigma_targets: List[float]
    sigma_targets_steps: int
    target: float  # the calibration section's target eps
    settings: PeerSettings
    repeats: int
    repeat_cap: float
    time_limit: float
    calibration_time_limit: float


def full_plan(args) -> Plan:
    grid = [(s, q, n, REFINED_INTERVAL.get((s, q, n), vdi)) for s, q, n, vdi in GRID_MECH]
    return Plan(grid=grid, deltas=DELTAS, eps_steps=[10, 100, 1_000, 10_000, 100_000, 1_000_000],
                calibration_steps=[100, 1_000, 10_000], sigma_targets=[2.0, 4.0, 8.0], sigma_targets_steps=1_000,
                target=TARGET, settings=PeerSettings(), repeats=args.repeats, repeat_cap=args.repeat_cap,
                time_limit=args.time_limit, calibration_time_limit=args.calibration_time_limit)


def quick_plan(args) -> Plan:
    return Plan(grid=[(1.0, 0.01, 100, 1e-3)], deltas=[1e-5], eps_steps=[10, 100], calibration_steps=[100],
                sigma_targets=[1.0, 2.0], sigma_targets_steps=100, target=1.0,
                settings=PeerSettings(pld_value_discretization_interval=1e-3, calibration_rtol=5e-2),
                repeats=2, repeat_cap=0.5, time_limit=args.time_limit, calibration_time_limit=args.time_limit)


# ---------------------------------------------------------------------------
# running and timing
# ---------------------------------------------------------------------------

def _backend_of() -> Dict[str, str]:
    """{row name: backend key}."""
    return {out.accountant: key for key, b in BACKENDS.items() for out in b.epsilon_rows + b.sigma_rows}


def timed(first, fn, repeats: int, cap: float, **kwargs):
    """``first`` (a Comparison from ``fn(**kwargs)``) and up to ``repeats - 1`` more runs of the backends whose
    call took less than ``cap`` s: one Comparison whose row times are medians, and {row: n}."""
    owner = _backend_of()
    runs = [first]
    for _ in range(repeats - 1):
        again = sorted({owner[r.accountant] for r in runs[0] if r.ok and r.seconds is not None and r.seconds < cap})
        if not again:
            break
        runs.append(fn(**dict(kwargs, backends=again)))
    rows, counts = [], {}
    for r in runs[0]:
        times = [run.row(r.accountant).seconds for run in runs if r.accountant in {x.accountant for x in run}]
        times = [t for t in times if t is not None] if r.ok else []
        counts[r.accountant] = len(times)
        rows.append(dataclasses.replace(r, seconds=statistics.median(times)) if times else r)
    return dataclasses.replace(runs[0], rows=tuple(rows)), counts


def progress(items, desc):
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="point", file=sys.stderr)


# ---------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------

def fmt_seconds(t):
    if t is None:
        return "-"
    return f"{t * 1e6:.0f} µs" if t < 1e-3 else f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def fmt_ratio(r):
    return "-" if r is None else f"{r:,.0f}x" if r >= 100 else f"{r:.3g}x"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def short_error(row):
    if row.error is None:
        return ""
    first = row.error.split(";")[0]
    return first if len(first) <= 80 else first[:77] + "..."


def informative(row):
    """A value to measure: finite, and for a bound not the trivial 0 (lower) or inf (upper)."""
    if not row.ok or not math.isfinite(row.value):
        return False
    return row.value > 0 or row.kind == "estimate"


def fmt_point(point):
    s, q, n, d, _ = point
    return f"sigma {s:g}, q {q:g}, {n:g} steps, delta {d:g}"


def cell(row, digits=5):
    """A value with what went wrong instead of it."""
    if row.ok:
        return f"{row.value:.{digits}g}"
    if row.error.startswith("timed out"):
        return "timed out"
    if row.error.startswith("not run"):
        return "not run (timed out before)"
    return "error: " + short_error(row)


# ---------------------------------------------------------------------------
# 1. accuracy
# ---------------------------------------------------------------------------

def accuracy(plan: Plan, md: List[str]):
    md += ["## Accuracy against the PLD truth", "",
           "eps of every accountant at each point of the tight-accounting grid (`GRID_MECH` and `DELTAS` of "
           "`tests/test_reference_pld.py`) from `edgeworth.compare(sigma, q, steps, delta)` with the peer settings "
           f"above (PLD interval {plan.settings.pld_value_discretization_interval:g}, PRV eps_error "
           f"{plan.settings.prv_eps_error:g}) and a time limit of {plan.time_limit:g} s per heavy call; PRV that "
           "timed out at delta 1e-5 is not run again at 1e-8 (`sweep` over delta).",
           "",
           "**Truth**: the midpoint of dp_accounting's optimistic (privacy buckets, a lower bound) and pessimistic "
           "(connect-the-dots, an upper bound) PLD at the interval in the column *PLD interval* "
           "(`tests/pld_reference.pld_eps`); *± half-gap* is half their distance, the truth's own uncertainty. "
           "The interval is the tests' per-point choice, made finer at "
           + ", ".join(f"sigma {s:g}, q {q:g}, {n:g} steps ({v:g})" for (s, q, n), v in REFINED_INTERVAL.items())
           + ". The optimistic PLD loses up to one interval per step, so at 1e5 steps the bracket stays wide "
           "(finer grids cost minutes, and at 1e-7 dp_accounting's pessimistic PLD was seen to break); there the "
           "pessimistic PLD, which converges much faster, is the better guide, and the bracket is shown so that "
           "nobody over-reads a relative error smaller than it.",
           ""]
    points = [(s, q, n, vdi) for s, q, n, vdi in plan.grid]
    results = []
    for s, q, n, vdi in progress(points, "accuracy"):
        comps = sweep(compare, "delta", sorted(plan.deltas, reverse=True), sigma=s, q=q, steps=n,
                      time_limit=plan.time_limit, settings=plan.settings, progress=False)
        for comp in comps:
            d = comp.inputs["delta"]
            lo, hi = pld_eps(((s, q, n),), d, False, vdi), pld_eps(((s, q, n),), d, True, vdi)
            results.append(((s, q, n, d, vdi), (lo + hi) / 2, (hi - lo) / 2, comp))
    names = [r.accountant for r in results[0][3]]
    kinds = {r.accountant: r.kind for r in results[0][3]}

    summary = []
    for name in names:
        errs, fails, breaks, vacuous = [], 0, 0, 0
        for (point, truth, half, comp) in results:
            r = comp.row(name)
            if not r.ok:
                fails += 1
                continue
            if informative(r):
                errs.append((r.value / truth - 1, point, half / truth))
            else:
                vacuous += 1
            if (r.kind == "upper bound" and r.value < truth - half) or (r.kind == "lower bound" and
                                                                        r.value > truth + half):
                breaks += 1
        abs_errs = sorted(abs(e) for e, _, _ in errs)
        worst = max(errs, key=lambda e: abs(e[0]), default=None)
        summary.append([name, kinds[name], len(results) - fails, vacuous, fails,
                        f"{100 * statistics.median(abs_errs):.2f} %" if abs_errs else "-",
                        f"{100 * worst[0]:+.2f} % at {fmt_point(worst[1])} (truth ± {100 * worst[2]:.2g} %)"
                        if worst else "-",
                        f"{100 * min(e for e, _, _ in errs):+.2f} % .. {100 * max(e for e, _, _ in errs):+.2f} %"
                        if errs else "-", breaks])
    md += ["### Summary", "",
           "Relative error = eps / truth - 1, over the points where the accountant gave a value (a bound of 0 or "
           "inf says nothing and is counted as vacuous instead). The worst point comes with the truth's own "
           "uncertainty there: an error within it is not an error. *Outside the bracket* counts upper bounds below "
           "the PLD lower bound and lower bounds above the PLD upper bound: a bound that is wrong whatever the truth "
           "is (it should be 0).", ""]
    md += table(["accountant", "kind", "points with a value", "of which vacuous bounds (0 or inf)", "failed",
                 "median abs. rel. error", "worst rel. error", "range", "outside the bracket"], summary)
    md += ["", "### Every point", "",
           "eps, with the relative error to the truth in brackets; a failure says what it was.", ""]
    rows = []
    for (s, q, n, d, vdi), truth, half, comp in results:
        cells = []
        for name in names:
            r = comp.row(name)
            cells.append(f"{cell(r, 4)} ({100 * (r.value / truth - 1):+.1f} %)" if informative(r) else cell(r, 4))
        rows.append([f"{s:g}", f"{q:g}", f"{n:g}", f"{d:g}", f"{vdi:g}", f"{truth:.5g}",
                     f"{half:.2g} ({100 * half / truth:.2g} %)"] + cells)
    md += table(["sigma", "q", "steps", "delta", "PLD interval", "truth", "± half-gap"] + names, rows)
    md += [""]
    return results


# ---------------------------------------------------------------------------
# 2. calibration, 3. eps timing
# ---------------------------------------------------------------------------

def timing_section(md, title, fn, over_steps, plan, what, time_limit, **fixed):
    """One sweep over steps (a backend that timed out is not run at larger steps), then repeats for medians."""
    fixed = dict(fixed, time_limit=time_limit, settings=plan.settings)
    comps, counts = [], []
    firsts = sweep(fn, "steps", over_steps, **fixed)
    for first in firsts:
        comp, count = timed(first, fn, plan.repeats, plan.repeat_cap, steps=first.parameters()["steps"], **fixed)
        comps.append(comp)
        counts.append(count)
    rows = []
    for comp, count in zip(comps, counts):
        base = comp.row("edgeworth certified")
        for r in comp:
            ratio = r.seconds / base.seconds if r.ok and base.ok and r.seconds else None
            rows.append([f"{int(comp.parameters()['steps']):,}", r.accountant, r.kind,
                         cell(r, 6), fmt_seconds(r.seconds) if r.ok else "-", count[r.accountant] if r.ok else 0,
                         fmt_ratio(ratio)])
    md += table(["steps", "accountant", "kind", what, "median time", "n", "x edgeworth certified"], rows)
    md += [""]
    return comps, firsts


def calibration(plan: Plan, md: List[str]):
    md += ["## Calibration time", "",
           f"The noise multiplier for eps = {plan.target:g} at delta = {DELTA:g}, q = {Q:g}, from "
           "`edgeworth.compare_noise_multipliers(eps, delta, steps, q)`: each library's own calibration "
           "(`edgeworth.noise_multiplier`; dp_accounting `calibrate_dp_mechanism` with its RDP and PLD accountants; "
           "Opacus `get_noise_multiplier` with rdp, gdp and prv; a bisection on prv_accountant's eps_up to "
           f"relative width {plan.settings.calibration_rtol:g}, as prv_accountant has no calibration). "
           f"Time limit {plan.calibration_time_limit:g} s per heavy call. *x edgeworth certified* is the row's "
           "median time over edgeworth's certified `noise_multiplier` at the same steps: the speed-up.", ""]
    comps, firsts = timing_section(md, "calibration", compare_noise_multipliers, plan.calibration_steps, plan,
                                   "sigma", plan.calibration_time_limit, eps=plan.target, delta=DELTA, q=Q)
    last = comps[-1]
    base = last.row("edgeworth certified")
    md += [f"**Targets at {last.inputs['steps']:g} steps** (measured in this run, met or not):", ""]
    for name, goal in (("Opacus RDP", 100), ("dp_accounting PLD pessimistic", 1000), ("prv_accountant eps_up", 1000),
                       ("Opacus PRV", 1000)):
        r = last.row(name)
        if r.ok and base.ok:
            ratio = r.seconds / base.seconds
            md.append(f"- vs {name}: {fmt_ratio(ratio)} faster (target {goal}x: "
                      f"{'met' if ratio >= goal else 'NOT met'}).")
        else:
            md.append(f"- vs {name}: no time ({short_error(r)}).")
    md += ["", "![calibration time against steps](calibration_time.png)", ""]
    return comps, firsts


def eps_timing(plan: Plan, md: List[str]):
    md += ["## eps evaluation time against steps", "",
           f"eps at sigma = {SIGMA:g}, delta = {DELTA:g}, q = {Q:g}, from `edgeworth.compare(sigma, q, steps, delta)` "
           f"with a time limit of {plan.time_limit:g} s per heavy call; an accountant that timed out is not run at "
           "larger steps. *x edgeworth certified* is the row's median time over edgeworth's certified `epsilon` at "
           "the same steps.", ""]
    comps, _ = timing_section(md, "eps timing", compare, plan.eps_steps, plan, "eps", plan.time_limit, sigma=SIGMA,
                              delta=DELTA, q=Q)
    md += ["![eps against steps](eps_vs_steps.png)", "", "![eps evaluation time against steps](eps_time_vs_steps.png)",
           ""]
    return comps


def sigma_targets(plan: Plan, md: List[str], calibrated: Sequence):
    """sigma against the target eps; the calibration section's point (its first run, not the medians) is reused."""
    n = plan.sigma_targets_steps
    done = {c.inputs["eps"]: c for c in calibrated if c.inputs["steps"] == n}
    todo = [e for e in plan.sigma_targets if e not in done]
    md += ["## Noise multiplier against the target eps", "",
           f"`sweep(compare_noise_multipliers, \"eps\", {todo}, delta={DELTA:g}, steps={n}, q={Q:g})`, one call "
           f"each (time limit {plan.calibration_time_limit:g} s per heavy call)"
           + (f"; eps = {', '.join(f'{e:g}' for e in done)} is the calibration section's first run" if done else "")
           + ".", ""]
    new = dict(zip(todo, sweep(compare_noise_multipliers, "eps", todo, delta=DELTA, steps=n, q=Q,
                               time_limit=plan.calibration_time_limit, settings=plan.settings)))
    comps = [new[e] if e in new else done[e] for e in plan.sigma_targets]
    names = [r.accountant for r in comps[0]]
    md += table(["accountant", "kind"] + [f"sigma at eps = {e:g}" for e in plan.sigma_targets],
                [[name, comps[0].row(name).kind] + [cell(c.row(name), 5) for c in comps] for name in names])
    md += ["", "![sigma against the target eps](sigma_vs_target.png)", ""]
    return comps


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tiny grid (the test suite's smoke run)")
    ap.add_argument("--out-dir", default=str(HERE), help="where RESULTS.md and the PNGs go (default benchmarks/)")
    ap.add_argument("--repeats", type=int, default=5, help="runs per timed configuration; rows show medians")
    ap.add_argument("--repeat-cap", type=float, default=3.0,
                    help="a backend whose call took longer than this (s) is not repeated (default 3)")
    ap.add_argument("--time-limit", type=float, default=30.0, help="s per heavy eps call (default 30)")
    ap.add_argument("--calibration-time-limit", type=float, default=120.0,
                    help="s per heavy calibration call (default 120)")
    args = ap.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = quick_plan(args) if args.quick else full_plan(args)
    command = " ".join(["PYTHONPATH=. python benchmarks/report.py"] + list(sys.argv[1:] if argv is None else argv))
    # Each peer's row keeps the warnings it raised; on the console they would only repeat them.
    warnings.simplefilter("ignore")
    logging.getLogger("absl").setLevel(logging.ERROR)
    started, t0, load0 = datetime.now(timezone.utc), time.perf_counter(), os.getloadavg()

    compare(sigma=SIGMA, q=Q, steps=10, delta=DELTA, settings=plan.settings)  # warm-up: imports, first calls
    body: List[str] = []
    accuracy(plan, body)
    calib, calib_firsts = calibration(plan, body)
    eps = eps_timing(plan, body)
    targets = sigma_targets(plan, body, calib_firsts)
    figures = {"calibration_time.png": plots.plot_calibration_time(calib),
               "eps_vs_steps.png": plots.plot_epsilon_vs_steps(eps),
               "eps_time_vs_steps.png": plots.plot(eps, "steps", y="seconds"),
               "sigma_vs_target.png": plots.plot_sigma_vs_target(targets)}
    runtime = time.perf_counter() - t0

    md = ["# Every accountant side by side: accuracy and speed", "",
          "Generated by `benchmarks/report.py`; every number and plot below comes from this one run. "
          "Semantics throughout: DP-SGD as the Poisson-subsampled Gaussian, add/remove-one neighbours, sigma the "
          "noise multiplier. Each value is labelled an *upper bound*, a *lower bound* or an *estimate*.", "",
          "## Machine and run", ""]
    md += machine_lines(command, started, runtime, load0, os.getloadavg())
    md += [f"- opacus {_version('opacus')}; matplotlib {_version('matplotlib')}",
           f"- peer settings: {dataclasses.asdict(plan.settings)}; timing: median of up to {plan.repeats} runs, "
           f"a backend slower than {plan.repeat_cap:g} s per call runs once (n = 1)",
           "- how a time is taken: light calls in this process, heavy ones (PLD, PRV) in a forked worker with a "
           f"time limit and a {DEFAULT_MEMORY_LIMIT:g} GiB memory cap; each call is timed where it runs, so a fork is never counted", ""]
    for name, fig in figures.items():  # written only now, so that the git state above is the run's own
        fig.savefig(out / name, dpi=110)
    (out / "RESULTS.md").write_text("\n".join(md + body))
    print(f"wrote {out / 'RESULTS.md'} and 4 plots in {runtime:.0f} s", file=sys.stderr)


def _version(dist):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
