#!/usr/bin/env python
"""One self-consistent timing table: edgeworth against dp_accounting and prv_accountant.

Usage::

    PYTHONPATH=. python benchmarks/bench_table.py [--repeats N] [--out FILE] [--cap SECONDS]

Everything is measured in ONE run, so the ratios peer_time / edgeworth_time
compare numbers taken minutes apart on the same machine under the same load.

How one measurement is taken: a fresh child process (forked from this one,
with every library already imported) first calls the same accountant at 10
steps (warm-up: lazy imports, first-call costs), then calls it once at the
configuration measured (second warm-up; its result is the value reported),
then times ``--repeats`` repeats with ``time.perf_counter``.  A repeat runs the
call ``number`` times in a row, ``number`` chosen so that a repeat lasts at
least ``--min-repeat-time`` (20 ms) and reported times are per call: the
median over repeats.  A child has ``--cap`` seconds in all; repeats that
would run past 80 % of it are dropped, and when not even one fits, the single
(second warm-up) call is reported, marked "n=1, single call".  A child that
runs past the cap is killed and the row says "skipped (> cap s)"; once an
accountant has needed more than cap/4 for one call, its larger step counts are
not run at all (cost grows with steps for the peers) and the row says so.
Each child also runs under an address-space limit (--mem-cap-gib).

Peak memory: the increase of the child's resident set size (VmHWM after the
measurement minus VmRSS before it, with the high-water mark reset through
/proc/self/clear_refs; Linux only, "n/a" elsewhere).  It covers native (C++,
numpy) allocations, unlike tracemalloc.
"""
from __future__ import annotations

import argparse
import datetime
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from importlib import metadata

import numpy as np

import edgeworth

SIGMA = 1.0
TARGET_EPS = 8.0
DELTA = 1e-5
Q = 0.01
STEPS = [10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000]
CALIBRATION_STEPS = 1_000
WARMUP_STEPS = 10

PLD_VALUE_DISCRETIZATION_INTERVAL = 1e-3
PRV_EPS_ERROR = 0.01
PRV_DELTA_ERROR = DELTA / 1000

_IMPORT_ERRORS = {}
try:
    import dp_accounting
    from dp_accounting import mechanism_calibration, pld, rdp
except ImportError as exc:  # reported in the table, not hidden
    _IMPORT_ERRORS["dp_accounting"] = repr(exc)
try:
    import prv_accountant
    from prv_accountant.privacy_random_variables import PoissonSubsampledGaussianMechanism
except ImportError as exc:
    _IMPORT_ERRORS["prv_accountant"] = repr(exc)


# --------------------------------------------------------------------------
# what is measured: (key) -> (description, label, factory steps -> callable)
# --------------------------------------------------------------------------

def _event(sigma, steps):
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(Q, dp_accounting.GaussianDpEvent(sigma)), int(steps))


def _make_pld():
    return pld.PLDAccountant(value_discretization_interval=PLD_VALUE_DISCRETIZATION_INTERVAL)


def _prv_eps(steps):
    acc = prv_accountant.PRVAccountant(
        prvs=[PoissonSubsampledGaussianMechanism(sampling_probability=Q, noise_multiplier=SIGMA)],
        eps_error=PRV_EPS_ERROR, delta_error=PRV_DELTA_ERROR, max_self_compositions=[int(steps)])
    return acc.compute_epsilon(DELTA, [int(steps)])  # (lower, estimate, upper)


EPSILON = {  # eps at sigma = SIGMA
    "edgeworth certified": (
        "edgeworth", "certified (upper bound)",
        lambda s: lambda: edgeworth.epsilon(SIGMA, DELTA, s, Q)),
    "edgeworth edgeworth order 2": (
        "edgeworth", "estimate (Edgeworth, remove ordering)",
        lambda s: lambda: edgeworth.epsilon(SIGMA, DELTA, s, Q, method="edgeworth", order=2)),
    "edgeworth tilted": (
        "edgeworth", "estimate (saddle point, both orderings)",
        lambda s: lambda: edgeworth.epsilon(SIGMA, DELTA, s, Q, method="tilted")),
    "dp_accounting RDP": (
        "dp_accounting", "upper bound (RDP, default orders)",
        lambda s: lambda: rdp.RdpAccountant().compose(_event(SIGMA, s)).get_epsilon(DELTA)),
    "dp_accounting PLD": (
        "dp_accounting", f"upper bound (PLD pessimistic, interval {PLD_VALUE_DISCRETIZATION_INTERVAL:g})",
        lambda s: lambda: _make_pld().compose(_event(SIGMA, s)).get_epsilon(DELTA)),
    "prv_accountant": (
        "prv_accountant", f"upper bound (PRV eps_up; eps_error {PRV_EPS_ERROR:g}, delta_error delta/1000)",
        lambda s: lambda: _prv_eps(s)),
}

NOISE = {  # sigma for a target eps, over steps
    "edgeworth certified": (
        "edgeworth", "certified (its certified eps <= target)",
        lambda s: lambda: edgeworth.noise_multiplier(TARGET_EPS, DELTA, s, Q)),
}

CALIBRATION = {  # sigma for a target eps at CALIBRATION_STEPS
    "edgeworth certified": (
        "edgeworth", "certified (its certified eps <= target)",
        lambda s: lambda: edgeworth.noise_multiplier(TARGET_EPS, DELTA, s, Q)),
    "dp_accounting RDP calibrate_dp_mechanism": (
        "dp_accounting", "RDP upper bound <= target",
        lambda s: lambda: mechanism_calibration.calibrate_dp_mechanism(
            rdp.RdpAccountant, lambda sigma: _event(sigma, s), TARGET_EPS, DELTA)),
    "dp_accounting PLD calibrate_dp_mechanism": (
        "dp_accounting", f"PLD (interval {PLD_VALUE_DISCRETIZATION_INTERVAL:g}) upper bound <= target",
        lambda s: lambda: mechanism_calibration.calibrate_dp_mechanism(
            _make_pld, lambda sigma: _event(sigma, s), TARGET_EPS, DELTA)),
}


# --------------------------------------------------------------------------
# measuring, in a child process
# --------------------------------------------------------------------------

def _proc_status(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _child(factory, steps, repeats, cap, min_repeat_time, mem_cap, conn):
    start = time.perf_counter()
    try:
        warnings.simplefilter("ignore")  # EdgeworthAccuracyWarning, prv_accountant's notices
        if mem_cap:
            resource.setrlimit(resource.RLIMIT_AS, (mem_cap, mem_cap))
        try:
            factory(WARMUP_STEPS)()
        except Exception:  # noqa: BLE001 - the estimate may decline at 10 steps; the warm-up still ran
            pass
        fn = factory(steps)
        rss0 = _proc_status("VmRSS")
        hwm_ok = _reset_hwm()
        t = time.perf_counter()
        value = fn()
        first = time.perf_counter() - t
        number = max(1, math.ceil(min_repeat_time / first)) if first > 0 else 1000
        samples = []
        for _ in range(repeats):
            if time.perf_counter() - start + first * number > 0.8 * cap:
                break
            t = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t) / number)
        hwm = _proc_status("VmHWM")
        out = {
            "value": value,
            "median": statistics.median(samples) if samples else first,
            "n": len(samples),
            "number": number if samples else 1,
            "single": not samples,
            "first": first,
            "peak": (hwm - rss0) if (hwm_ok and hwm is not None and rss0 is not None) else None,
        }
    except BaseException as exc:  # noqa: BLE001 - reported in the table
        out = {"error": f"{type(exc).__name__}: {exc}",
               "trace": traceback.format_exc(limit=3)}
    conn.send(out)
    conn.close()


def measure(factory, steps, args):
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(factory, steps, args.repeats, args.cap, args.min_repeat_time,
                                            int(args.mem_cap_gib * 2 ** 30), child))
    proc.start()
    child.close()
    if parent.poll(args.cap):
        try:
            out = parent.recv()
        except EOFError:
            out = {"error": f"child died (exit code {proc.exitcode})"}
        proc.join(10)
    else:
        proc.kill()
        proc.join()
        out = {"skipped": f"skipped (> {args.cap:g} s)"}
    if proc.is_alive():
        proc.kill()
        proc.join()
    return out


def run_series(table, steps_list, args, log):
    """Measures every accountant of ``table`` at every steps; returns {(key, steps): result}."""
    results = {}
    for key, (package, label, factory) in table.items():
        too_slow = None
        for steps in steps_list:
            if package in _IMPORT_ERRORS:
                res = {"error": f"{package} not installed: {_IMPORT_ERRORS[package]}"}
            elif too_slow:
                res = {"skipped": too_slow}
            else:
                res = measure(factory, steps, args)
                if "skipped" in res:
                    too_slow = f"not run (skipped at {_fmt_steps(steps)} steps already)"
                elif "median" in res and res["first"] > args.cap / 4:
                    too_slow = (f"not run (one call took {res['first']:.1f} s at {_fmt_steps(steps)} steps; "
                                f"cap {args.cap:g} s)")
            results[key, steps] = res
            log(f"{key:45s} steps={steps:<9d} {_fmt_time(res):>28s}  "
                f"{res['error'][:150] if 'error' in res else _fmt_value(res)}")
    return results


# --------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------

def _fmt_seconds(t):
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1:
        return f"{t * 1e3:.3g} ms"
    return f"{t:.3g} s"


def _fmt_steps(steps):
    """1e3 for 1000, 10 for 10, 2,500 for 2500."""
    exponent = round(math.log10(steps))
    return f"1e{exponent}" if steps >= 1000 and 10 ** exponent == steps else f"{steps:,}"


def _fmt_time(res):
    if "median" in res:
        return _fmt_seconds(res["median"])
    if "skipped" in res:
        return res["skipped"]
    return "-"


def _scalar(value):
    if isinstance(value, tuple):  # prv_accountant: (lower, estimate, upper)
        return float(value[2])
    return float(value)


def _fmt_value(res, digits=4):
    if "median" not in res:
        if "error" in res:
            return "no value: " + res["error"].split(":")[0] + " (see below)"
        return "-"
    v = res["value"]
    if isinstance(v, tuple):
        return f"{v[2]:.{digits}g} (est. {v[1]:.{digits}g}, lower {v[0]:.{digits}g})"
    return f"{float(v):.{digits}g}"


def _fmt_n(res):
    if "median" not in res:
        return "-"
    if res["single"]:
        return "n=1, single call"
    return f"{res['n']} x {res['number']}"


def _fmt_mem(res):
    if res.get("peak") is None:
        return "n/a"
    return f"{res['peak'] / 2 ** 20:.1f} MiB"


def _fmt_ratio(r):
    return f"{r:.0f}" if r >= 100 else f"{r:.3g}"


def _ratio(res, base):
    if "median" in res and base is not None and "median" in base:
        return _fmt_ratio(res["median"] / base["median"])
    return "-"


def _table(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _git_describe():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_lines(command, started, runtime, load_before, load_after):
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- command: `{command}`",
        f"- date: {started:%Y-%m-%d %H:%M:%S %Z}; total runtime {runtime:.0f} s",
        f"- CPU: {_cpu_model()}; nproc {affinity} (os.cpu_count {os.cpu_count()}); "
        f"load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end "
        "(other jobs shared this machine: compare rows of this run only)",
        f"- platform: {platform.platform()}",
        f"- python {platform.python_version()} ({platform.python_implementation()}); numpy {np.__version__}; "
        f"scipy {_version('scipy')}",
        f"- edgeworth {edgeworth.__version__} (git {_git_describe()}); dp-accounting {_version('dp-accounting')}; "
        f"prv-accountant {_version('prv-accountant')}",
    ]


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement (default 7)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "RESULTS-core.md"),
                        help="markdown file to write (default benchmarks/RESULTS-core.md)")
    parser.add_argument("--cap", type=float, default=60.0,
                        help="seconds one measurement (warm-ups and repeats) may take (default 60)")
    parser.add_argument("--min-repeat-time", type=float, default=0.02,
                        help="a repeat loops the call until it lasts this long (default 0.02 s)")
    parser.add_argument("--mem-cap-gib", type=float, default=8.0,
                        help="address-space limit of each measuring child, GiB (default 8; 0: none)")
    parser.add_argument("--steps", type=lambda s: [int(float(x)) for x in s.split(",")], default=STEPS,
                        help="comma-separated step counts (default 10,100,...,1e7)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    command = "python " + " ".join(
        [os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "benchmarks/bench_table.py"]
        + (sys.argv[1:] if argv is None else list(argv)))
    started = datetime.datetime.now().astimezone()
    t0 = time.perf_counter()
    load_before = os.getloadavg()

    def log(msg):
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    for name, err in _IMPORT_ERRORS.items():
        log(f"WARNING: {name} is not installed ({err}); its rows will say so")

    eps = run_series(EPSILON, args.steps, args, log)
    noise = run_series(NOISE, args.steps, args, log)
    calib = run_series(CALIBRATION, [CALIBRATION_STEPS], args, log)

    runtime = time.perf_counter() - t0
    load_after = os.getloadavg()

    md = [f"# edgeworth core benchmarks: epsilon and noise multiplier against peers", ""]
    md += ["Generated by `benchmarks/bench_table.py`; every number below comes from this one run.", ""]
    md += ["## Machine and run", ""] + machine_lines(command, started, runtime, load_before, load_after) + [""]
    md += [
        "## Setup", "",
        f"DP-SGD with the Poisson-subsampled Gaussian mechanism, add/remove neighbours: noise multiplier "
        f"sigma = {SIGMA:g}, delta = {DELTA:g}, sampling rate q = {Q:g}; for the noise multiplier the target is "
        f"eps = {TARGET_EPS:g}.",
        "",
        "- **edgeworth certified**: `edgeworth.epsilon(...)` / `noise_multiplier(...)`, a rigorous upper bound "
        "(the smallest of the characteristic-function bound, the optimal Chernoff/Renyi bound on the exact CGF, the "
        "sampled-count bound and, with at most 0.3 sampled steps in all, the rare-jump bound; both orderings).",
        "- **edgeworth edgeworth order 2**: `method=\"edgeworth\", order=2`, the Edgeworth accountant's point "
        "estimate (remove ordering), not a bound. Its time includes the comparison with the tilted estimate that "
        "decides the `EdgeworthAccuracyWarning` (part of every public call).",
        "- **edgeworth tilted**: `method=\"tilted\"`, saddle-point estimate (both orderings); it declines "
        "(`UnreachableTargetError`) where the tilted law is too skewed, typically at few sampled steps.",
        "- **dp_accounting RDP**: `RdpAccountant()` with its default orders; an upper bound, loose at few steps.",
        f"- **dp_accounting PLD**: `PLDAccountant(value_discretization_interval={PLD_VALUE_DISCRETIZATION_INTERVAL:g})`"
        " (pessimistic estimate, the default), an upper bound on the true eps up to discretisation; close to the "
        "true value.",
        f"- **prv_accountant**: `PRVAccountant(eps_error={PRV_EPS_ERROR:g}, delta_error=delta/1000 = "
        f"{PRV_DELTA_ERROR:g})` built for the number of steps (construction is part of the query, as its mesh "
        "depends on it); the upper end of its (lower, estimate, upper) triple is reported, with the other two "
        "next to it.",
        "- **calibrate_dp_mechanism**: `dp_accounting.mechanism_calibration.calibrate_dp_mechanism` with its "
        "defaults (bracket search from [0, 1], Brent to tol 1e-6 absolute in sigma); edgeworth's inversion stops "
        "at a bracket 1e-9 wide relative (certified) and returns its safe end.",
        "",
        f"Timing: each row in its own forked child process with everything imported; warm-up at "
        f"{WARMUP_STEPS} steps, then one call at the measured configuration (whose result is the value shown), "
        f"then up to {args.repeats} repeats, each looping the call `number` times so that it lasts at least "
        f"{args.min_repeat_time * 1e3:g} ms; the time is the median per call (column n: repeats x number). "
        f"Each child may run {args.cap:g} s; one killed at the cap says \"skipped\", and once an accountant "
        f"needs more than cap/4 per call its larger step counts are not run. \"peak RSS\" is the increase of "
        f"the child's resident set size during the measurement (VmHWM - VmRSS).",
        "",
    ]

    # requirement: certified eps time flat in steps
    lo, hi = eps.get(("edgeworth certified", min(args.steps))), eps.get(("edgeworth certified", max(args.steps)))
    md += ["## Cost against number of steps", ""]
    if lo and hi and "median" in lo and "median" in hi:
        r = hi["median"] / lo["median"]
        verdict = "meets" if r <= 1.5 else "DOES NOT meet"
        md += [f"**Certified epsilon: time({_fmt_steps(max(args.steps))} steps) / time({_fmt_steps(min(args.steps))} steps) = "
               f"{_fmt_seconds(hi['median'])} / {_fmt_seconds(lo['median'])} = {r:.3g}**, which {verdict} the "
               "requirement (<= 1.5).", ""]
    rows = []
    for name, table, results in (("epsilon", EPSILON, eps), ("noise_multiplier", NOISE, noise)):
        for key in table:
            if table[key][0] != "edgeworth":
                continue
            a, b = results.get((key, min(args.steps))), results.get((key, max(args.steps)))
            times = [results[key, s] for s in args.steps]
            ok = [t["median"] for t in times if "median" in t]
            ratio = f"{b['median'] / a['median']:.3g}" if a and b and "median" in a and "median" in b else \
                "- (" + ("no value at the largest steps" if a and "median" in a else "no value at the fewest steps") \
                + ")"
            rows.append([f"{name}: {key}", _fmt_time(a), _fmt_time(b), ratio,
                         f"{_fmt_seconds(min(ok))} .. {_fmt_seconds(max(ok))}" if ok else "-",
                         _fmt_seconds(statistics.median(ok)) if ok else "-"])
    md += [_table(rows, ["call", f"time at {_fmt_steps(min(args.steps))} steps",
                         f"time at {_fmt_steps(max(args.steps))} steps",
                         "ratio", "range over all steps", "median over the step counts"]), ""]
    # requirement: median certified eps <= 1 ms and noise multiplier <= 5 ms
    for name, results, aim in (("epsilon", eps, 1e-3), ("noise_multiplier", noise, 5e-3)):
        ok = [results[("edgeworth certified", s)]["median"] for s in args.steps
              if "median" in results.get(("edgeworth certified", s), {})]
        if ok:
            med = statistics.median(ok)
            md += [f"**Certified {name}: median over the {len(ok)} step counts {_fmt_seconds(med)}**, which "
                   f"{'meets' if med <= aim else 'DOES NOT meet'} the aim of {_fmt_seconds(aim)}.", ""]

    md += ["## Other accountants against edgeworth certified", "",
           "Time of each epsilon divided by edgeworth certified's at the same steps, over the steps where "
           "the row gave a time; and the calibration at " + _fmt_steps(CALIBRATION_STEPS) + " steps.", ""]
    rows = []
    for key, (package, _, _) in EPSILON.items():
        if key == "edgeworth certified":
            continue
        pairs = [(s, eps[key, s]["median"] / eps["edgeworth certified", s]["median"]) for s in args.steps
                 if "median" in eps[key, s] and "median" in eps["edgeworth certified", s]]
        if pairs:
            rows.append([f"epsilon: {key}", ", ".join(_fmt_steps(s) for s, _ in pairs),
                         f"{_fmt_ratio(min(r for _, r in pairs))} .. {_fmt_ratio(max(r for _, r in pairs))}"])
        else:
            rows.append([f"epsilon: {key}", "none", "-"])
    cbase = calib.get(("edgeworth certified", CALIBRATION_STEPS))
    for key in CALIBRATION:
        if key != "edgeworth certified":
            rows.append([f"noise multiplier: {key}", _fmt_steps(CALIBRATION_STEPS),
                         _ratio(calib[key, CALIBRATION_STEPS], cbase)])
    md += [_table(rows, ["query", "steps with a time", "x certified"]), ""]

    md += ["## epsilon", "",
           f"sigma = {SIGMA:g}, delta = {DELTA:g}, q = {Q:g}. \"x certified\" is the row's time divided by "
           "edgeworth certified's at the same steps (> 1: slower than edgeworth certified).", ""]
    rows = []
    for steps in args.steps:
        base = eps.get(("edgeworth certified", steps))
        for key, (_, label, _) in EPSILON.items():
            res = eps[key, steps]
            rows.append([_fmt_steps(steps), key, label, _fmt_value(res), _fmt_time(res), _fmt_n(res),
                         _ratio(res, base), _fmt_mem(res)])
    md += [_table(rows, ["steps", "accountant", "label", "eps", "median time", "n", "x certified",
                         "peak RSS"]), ""]

    md += ["## noise multiplier", "",
           f"Smallest sigma with eps <= {TARGET_EPS:g} at delta = {DELTA:g}, q = {Q:g}.", ""]
    rows = []
    for steps in args.steps:
        for key, (_, label, _) in NOISE.items():
            res = noise[key, steps]
            rows.append([_fmt_steps(steps), key, label, _fmt_value(res, 6), _fmt_time(res), _fmt_n(res),
                         _fmt_mem(res)])
    md += [_table(rows, ["steps", "accountant", "label", "sigma", "median time", "n", "peak RSS"]), ""]

    md += [f"### Calibration against peers at {_fmt_steps(CALIBRATION_STEPS)} steps", ""]
    rows = []
    base = calib.get(("edgeworth certified", CALIBRATION_STEPS))
    for key, (_, label, _) in CALIBRATION.items():
        res = calib[key, CALIBRATION_STEPS]
        rows.append([key, label, _fmt_value(res, 6), _fmt_time(res), _fmt_n(res), _ratio(res, base),
                     _fmt_mem(res)])
    md += [_table(rows, ["accountant", "label", "sigma", "median time", "n", "x certified", "peak RSS"]), ""]

    problems = [(k, s, r["error"]) for results in (eps, noise, calib) for (k, s), r in results.items()
                if "error" in r]
    skipped = [(k, s, r["skipped"]) for results in (eps, noise, calib) for (k, s), r in results.items()
               if "skipped" in r]
    if problems or skipped:
        md += ["## Rows without a time", ""]
        md += [f"- {k}, {_fmt_steps(s)} steps: {msg.splitlines()[0]}" for k, s, msg in skipped + problems]
        md += [""]

    notes = []
    eps_max = getattr(edgeworth._core, "EPS_MAX", 1000.0)
    for (key, steps), res in eps.items():
        cert = eps.get(("edgeworth certified", steps), {})
        if key != "edgeworth certified" and key.startswith("edgeworth") and "error" in res and "median" in cert \
                and _scalar(cert["value"]) > eps_max:
            notes.append(f"{key} at {_fmt_steps(steps)} steps: the certified bound there is "
                         f"{_scalar(cert['value']):.4g}, above {eps_max:g}, the largest eps the estimate's "
                         "inversion searches (edgeworth._core.EPS_MAX), so the estimate is presumably above it too; "
                         "the error is that range, whatever its message says.")
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]

    with open(args.out, "w") as f:
        f.write("\n".join(md))
    log(f"wrote {args.out} in {runtime:.0f} s")


if __name__ == "__main__":
    main()
