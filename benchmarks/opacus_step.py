"""Cost of one ``step()`` of the "edgeworth" Opacus accountant against Opacus's RDP accountant.

Opacus calls ``accountant.step(noise_multiplier=..., sample_rate=...)`` once per
optimizer step, from the optimizer's step hook, so it should cost about what
Opacus's own accountants cost.  Both accountants are timed in this one run, case by
case, on the same inputs:

- ``same``: the usual run, one (sigma, q) for every step (merged into one entry);
- ``alternating``: sigma changes every step (a noise schedule), one entry a step;
- ``float32`` / ``tensor``: the noise multiplier as ``np.float32(1.1)`` or
  ``torch.tensor(1.1)`` (what a user may pass to ``make_private``).

Each case: ``--repeats`` fresh accountants, each stepped ``--number`` times; the
time is the median per call.  A case that raises prints the error instead.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/opacus_step.py
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import subprocess
import time

import numpy as np
import torch
from opacus.accountants import RDPAccountant

import edgeworth.opacus as eo

CASES = {
    "same": lambda: itertools.repeat((1.1, 0.01)),
    "alternating": lambda: itertools.cycle([(1.1, 0.01), (1.2, 0.01)]),
    "float32": lambda: itertools.repeat((np.float32(1.1), 0.01)),
    "tensor": lambda: itertools.repeat((torch.tensor(1.1), 0.01)),
}


def per_call(cls, case: str, number: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        acc = cls()
        args = list(itertools.islice(CASES[case](), number))
        step = acc.step
        start = time.perf_counter()
        for sigma, q in args:
            step(noise_multiplier=sigma, sample_rate=q)
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000, help="steps per timed loop")
    parser.add_argument("--repeats", type=int, default=7, help="timed loops per case (the median is shown)")
    args = parser.parse_args()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip()
    except OSError:
        commit = "?"
    print(f"# python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, git {commit or '?'}")
    print(f"# {args.repeats} x {args.number} steps per case, median per call")
    print(f"{'case':<12} {'edgeworth':>12} {'opacus rdp':>12} {'ratio':>7}")
    for case in CASES:
        rdp = per_call(RDPAccountant, case, args.number, args.repeats)
        try:
            ours = per_call(eo.EdgeworthAccountant, case, args.number, args.repeats)
        except ValueError as exc:
            print(f"{case:<12} {'raises':>12} {rdp * 1e6:>9.3f} us   -   ({exc})")
            continue
        print(f"{case:<12} {ours * 1e6:>9.3f} us {rdp * 1e6:>9.3f} us {ours / rdp:>6.2f}x")


if __name__ == "__main__":
    main()
