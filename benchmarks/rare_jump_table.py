"""The rare-jump bound against the one-jump approximation, the certified answer and PLD (docs/certified.md).

    PYTHONPATH=. python benchmarks/rare_jump_table.py

prints one markdown row per configuration: the rare-jump bound (remove ordering, ``_core.jump_epsilon``), the
one-jump approximation (steps * delta_1(eps) = delta by scipy; not a bound), the certified ``edgeworth.epsilon``
(the smallest of all the bounds, both orderings) and, where it can be run, dp_accounting's PLD of the remove
ordering at interval 1e-4 as [optimistic, pessimistic].
"""
import math
import os
import sys

from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtr

import edgeworth
from edgeworth import _core

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

ROWS = [  # sigma, q, steps, delta, run PLD
    (0.66, 1e-7, 1e6, 1e-15, False),
    (0.66, 1e-7, 1000, 1e-15, False),
    (0.3117, 1e-7, 1000, 1e-15, False),
    (0.9341, 1.15e-4, 33, 4.9e-11, True),
    (0.5717, 1.17e-4, 7, 1.8e-7, True),
    (0.8007, 1.88e-4, 212, 4.2e-12, True),
    (0.37, 1e-7, 1e6, 1e-5, False),
    (1.459, 0.0124, 11, 4.7e-11, True),
]


def one_jump(sigma, q, steps, delta):
    mu = 1.0 / sigma

    def log_gap(e):
        b = math.log1p(math.expm1(e) / q)
        d1 = q * (ndtr(mu / 2 - b / mu) - math.exp(b + log_ndtr(-mu / 2 - b / mu)))
        return math.log(max(steps * d1, 1e-300)) - math.log(delta)

    return brentq(log_gap, 1e-6, 30.0, xtol=1e-12)


def main():
    print("| sigma | q | steps | delta | rare-jump | one-jump approx. | certified | PLD (remove) |")
    print("|---|---|---|---|---|---|---|---|")
    for sigma, q, steps, delta, pld in ROWS:
        jump = _core.jump_epsilon(sigma, q, steps, delta)
        cert = edgeworth.epsilon(sigma, delta, steps, q)
        ref = ""
        if pld:
            from pld_reference import pld_eps_by_ordering
            lo = pld_eps_by_ordering(((sigma, q, int(steps)),), delta, False, 1e-4)["remove"]
            hi = pld_eps_by_ordering(((sigma, q, int(steps)),), delta, True, 1e-4)["remove"]
            ref = f"[{lo:.4g}, {hi:.4g}]"
        print(f"| {sigma:g} | {q:g} | {steps:g} | {delta:g} | {jump:.4g} | {one_jump(sigma, q, steps, delta):.4g} "
              f"| {cert:.4g} | {ref} |")


if __name__ == "__main__":
    main()
