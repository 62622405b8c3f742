"""Command line: ``edgeworth sigma``, ``edgeworth epsilon``, ``edgeworth delta``.

``edgeworth sigma`` with no options calibrates the noise multiplier for a
typical DP-SGD run (eps = 8, delta = 1e-5, 1000 steps at q = 0.01) and says
which of those values it assumed.  ``--json`` prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from .accounting import delta_details, epsilon_details, noise_multiplier_details

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
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
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
