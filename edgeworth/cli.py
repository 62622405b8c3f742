"""Command line: ``edgeworth sigma``, ``edgeworth epsilon``, ``edgeworth delta``, ``edgeworth compare``.

``edgeworth sigma`` with no options calibrates the noise multiplier for a
typical DP-SGD run (eps = 8, delta = 1e-5, 1000 steps at q = 0.01) and says
which of those values it assumed.  ``--json`` prints one JSON object.

``edgeworth compare`` puts every accountant side by side: eps at ``--sigma``
(default), or the noise multiplier for a target with ``--eps``; ``--plot
FILE.png`` draws a sweep (eps against steps, sigma against the target eps, or
calibration time against steps with ``--plot-kind time-steps``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from .accounting import delta_details, epsilon_details, noise_multiplier_details
from .comparison.runner import DEFAULT_TIME_LIMIT

DEFAULTS = {"eps": 8.0, "delta": 1e-5, "steps": 1000, "q": 0.01, "sigma": 1.0}

_MEANING = {
    ("noise_multiplier", "certified"): "certified: the true eps at this sigma is at most the target",
    ("noise_multiplier", "tilted"): "estimate: the saddle-point eps at this sigma equals the target (no guarantee)",
    ("noise_multiplier", "edgeworth"): "estimate: the Edgeworth eps at this sigma equals the target; "
                                       "the true eps may be larger",
    ("epsilon", "certified"): "certified upper bound on eps (add and remove neighbours)",
    ("epsilon", "tilted"): "saddle-point (tilted Edgeworth) estimate of eps, not a bound",
    ("epsilon", "edgeworth"): "Edgeworth point estimate of eps, not a bound",
    ("delta", "certified"): "certified upper bound on delta (add and remove neighbours)",
    ("delta", "tilted"): "saddle-point (tilted Edgeworth) estimate of delta, not a bound",
    ("delta", "edgeworth"): "Edgeworth point estimate of delta, not a bound",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeworth", description="Differential-privacy accounting for DP-SGD "
                                "(Poisson-subsampled Gaussian, add/remove neighbours).")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, needs):
        for name in needs:
            sp.add_argument(f"--{name}", type=int if name == "steps" else float, default=None,
                            help=f"(default {DEFAULTS[name]:g})")
        sp.add_argument("--method", choices=["certified", "tilted", "edgeworth"], default="certified",
                        help="certified upper bound (default), tilted (saddle-point) estimate, "
                             "or Edgeworth point estimate")
        sp.add_argument("--order", type=int, default=2, help="Edgeworth order 1, 2 or 3 (default 2)")
        sp.add_argument("--ordering", choices=["remove", "add", "both"], default=None,
                        help="orderings for the Edgeworth estimate (default remove; the others cover both)")
        sp.add_argument("--json", action="store_true", help="print one JSON object")

    common(sub.add_parser("sigma", help="noise multiplier for a target (eps, delta)"), ["eps", "delta", "steps", "q"])
    common(sub.add_parser("epsilon", help="eps at a given sigma and delta"), ["sigma", "delta", "steps", "q"])
    common(sub.add_parser("delta", help="delta at a given sigma and eps"), ["sigma", "eps", "steps", "q"])

    cp = sub.add_parser("compare", help="every accountant side by side: eps at --sigma, or sigma for a target --eps")
    for name in ("sigma", "eps", "delta", "steps", "q"):
        cp.add_argument(f"--{name}", type=int if name == "steps" else float, default=None,
                        help=f"(default {DEFAULTS[name]:g})" if name not in ("sigma", "eps") else
                        ("noise multiplier: compare eps (the default mode, sigma 1)" if name == "sigma" else
                         "target eps: compare noise multipliers instead"))
    cp.add_argument("--backends", default=None,
                    help="comma-separated groups or keys (default all): edgeworth, gdp_clt, dp_accounting, "
                         "prv_accountant, opacus, or e.g. opacus.prv")
    cp.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT,
                    help=f"seconds each heavy backend (PLD, PRV) may run (default {DEFAULT_TIME_LIMIT:g})")
    out = cp.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print a markdown table")
    out.add_argument("--json", action="store_true", help="print one JSON object")
    cp.add_argument("--plot", metavar="FILE.png", default=None, help="also draw a sweep into this file")
    cp.add_argument("--plot-kind", choices=["eps-steps", "sigma-eps", "time-steps"], default=None,
                    help="eps against steps (default with --sigma), sigma against target eps (default with --eps), "
                         "or calibration time against steps (with --eps)")
    cp.add_argument("--plot-points", type=int, default=6, help="points in the sweep (default 6)")
    return p


def _compare(args) -> int:
    """``edgeworth compare``: the table, and the plot if asked for."""
    import numpy as np

    from .comparison import compare, compare_noise_multipliers, plots, sweep

    if args.sigma is not None and args.eps is not None:
        print("edgeworth: error: sigma and eps: give --sigma (compare eps) or --eps (compare noise multipliers), "
              "not both", file=sys.stderr)
        return 2
    calibrate = args.eps is not None
    needs = ["eps", "delta", "steps", "q"] if calibrate else ["sigma", "delta", "steps", "q"]
    values = {n: (DEFAULTS[n] if getattr(args, n) is None else getattr(args, n)) for n in needs}
    kind = args.plot_kind or ("sigma-eps" if calibrate else "eps-steps")
    backends = None if args.backends is None else [b.strip() for b in args.backends.split(",") if b.strip()]
    fn = compare_noise_multipliers if calibrate else compare
    try:
        if kind != "eps-steps" and not calibrate:
            raise ValueError(f"plot-kind: {kind} plots noise multipliers; give a target with --eps")
        if kind == "eps-steps" and calibrate:
            raise ValueError("plot-kind: eps-steps plots eps; give --sigma instead of --eps")
        if args.plot_points < 2:
            raise ValueError(f"plot-points must be an integer >= 2, got {args.plot_points}")
        result = fn(**values, backends=backends, time_limit=args.time_limit)
    except ValueError as exc:
        print(f"edgeworth: error: {exc}", file=sys.stderr)
        return 2
    assumed = [n for n in needs if getattr(args, n) is None]
    if args.json:
        print(json.dumps({"quantity": result.quantity, "inputs": result.inputs, "assumed": assumed,
                          "settings": result.settings, "seconds": result.seconds, "rows": result.to_dicts()}))
    else:
        if assumed:
            print("assumed " + ", ".join(f"{n} = {values[n]:g}" for n in assumed))
        print(result.to_markdown() if args.markdown else result.to_text())
    if args.plot:
        if kind == "sigma-eps":
            over, grid = "eps", np.geomspace(values["eps"] / 4, values["eps"] * 2, args.plot_points)
        else:
            over = "steps"
            grid = np.unique(np.geomspace(min(10, values["steps"]), values["steps"], args.plot_points).astype(int))
        fixed = {k: v for k, v in values.items() if k != over}
        comps = sweep(fn, over, [float(g) if over == "eps" else int(g) for g in grid], backends=backends,
                      time_limit=args.time_limit, **fixed)
        draw = {"eps-steps": plots.plot_epsilon_vs_steps, "sigma-eps": plots.plot_sigma_vs_target,
                "time-steps": plots.plot_calibration_time}[kind]
        draw(comps, args.plot)
        print(f"wrote {args.plot} ({kind}, {len(comps)} points)", file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "compare":
        return _compare(args)
    needs = {"sigma": ["eps", "delta", "steps", "q"], "epsilon": ["sigma", "delta", "steps", "q"],
             "delta": ["sigma", "eps", "steps", "q"]}[args.command]
    assumed = [name for name in needs if getattr(args, name) is None]
    values = {name: (DEFAULTS[name] if getattr(args, name) is None else getattr(args, name)) for name in needs}
    fn = {"sigma": noise_multiplier_details, "epsilon": epsilon_details, "delta": delta_details}[args.command]
    start = time.perf_counter()
    try:
        result = fn(**values, method=args.method, order=args.order, ordering=args.ordering)
    except ValueError as exc:
        print(f"edgeworth: error: {exc}", file=sys.stderr)
        return 2
    elapsed_ms = (time.perf_counter() - start) * 1e3

    if args.json:
        out = result.as_dict()
        out["assumed"] = {name: values[name] for name in assumed}
        out["elapsed_ms"] = elapsed_ms
        print(json.dumps(out))
        return 0
    if assumed:
        print("assumed " + ", ".join(f"{n} = {values[n]:g}" for n in assumed) + " (pass --" +
              " / --".join(assumed) + " to change)")
    name = {"noise_multiplier": "sigma", "epsilon": "eps", "delta": "delta"}[result.quantity]
    given = ", ".join(f"{n} = {values[n]:g}" for n in needs)
    method = result.method + (f" order {result.order}, {result.orderings} ordering(s)" if result.order else "")
    print(f"{name} = {result.value:.6g}   for {given}")
    print(f"  {_MEANING[(result.quantity, result.method)]}")
    print(f"  method: {method}; dominating ordering: {result.dominating}; computed in {elapsed_ms:.1f} ms")
    print("  Poisson sampling, add/remove-one neighbours; sigma is the noise multiplier (noise std / clip norm)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
