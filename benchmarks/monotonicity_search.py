"""Seeded search for monotonicity violations of the certified values (issue 16).

The true eps(delta) of DP-SGD grows with steps and q and falls with sigma and
delta; the true delta(eps) grows with steps and q and falls with sigma and eps;
the least sigma that meets (eps, delta) grows with steps and q and falls with
eps and delta.  (q and sigma: a step at a smaller q, or a larger sigma, is a
post-processing of the step at the larger q, or the smaller sigma, that maps
the reference N(0, 1) to itself; steps: dropping a step is post-processing.)
A certified value is an upper bound, not the truth, so it may step the wrong
way, but by no more than the tolerance the README states (TOLERANCE below).

The search draws configurations over the whole documented range, weighted
toward practical values but with the edges drawn too:

- sigma in [0.01, 1e6]: log-uniform over 0.3..10 (half the draws), over the
  whole range (the rest), and each edge in 1 % of draws;
- q in [1e-12, 1], log-uniform over 1e-4..1 (half) or the whole range, the
  edges in 1 %;
- steps in [1, 2^53], log-uniform over 1..1e5 (half) or the whole range,
  rounded to an integer, the edges in 1 %;
- delta in (0, 1): log-uniform over 1e-15..0.5, 1e-300 in 1 %;
- eps in (0, 1000]: log-uniform over 1e-3..100, the range's ends (1e-6, 1000)
  in 1 %.

For each configuration and each quantity (certified epsilon, delta and
noise_multiplier) it evaluates the value and its neighbours one step up in
steps (+1) and a relative move of MOVE in q, sigma, and delta or eps (toward
the inside of the range at an edge), and reports every pair that steps the
wrong way by more than the tolerance.  A named ValueError (a decline, or a
target no sigma in range meets) leaves the pair unchecked and is counted; any
other exception is a failure.  It prints the seed and the command, and exits
with status 1 on a violation or a failure.

Usage::

    PYTHONPATH=. python benchmarks/monotonicity_search.py --seed 0 --configs 2000 --jobs 2
    PYTHONPATH=. python benchmarks/monotonicity_search.py --smoke     # 4 configurations (the test suite)
"""
import argparse
import math
import random
import sys
import time

import edgeworth

# The README's tolerance (section "What the numbers mean"): a certified value
# may step the wrong way between neighbouring inputs by at most this,
# relative to the larger of the two values, where q * steps >= 1 for both;
# TOLERANCE_FEW where fewer steps are sampled in all, over the whole range.
# The pairs beyond MAX_STEPS steps are tagged: there the Chernoff bound's
# numerical margin moved certified values by tens of percent until one step's
# CGF was computed accurate relative to itself (docs/certified.md).
TOLERANCE = {"epsilon": 1e-4, "delta": 1e-4, "noise_multiplier": 3e-5}
TOLERANCE_FEW = 1e-3
MAX_STEPS = 1e12
# and absolutely: eps below 1e-12 and delta below 1e-300 are zero for this check
ABS_FLOOR = {"epsilon": 1e-12, "delta": 1e-300, "noise_multiplier": 0.0}
MOVE = 0.01  # the relative move of the neighbours in q, sigma, delta and eps

SIGMA_MIN, SIGMA_MAX = 0.01, 1e6
Q_MIN, Q_MAX = 1e-12, 1.0
STEPS_MAX = 2.0 ** 53
EPS_MAX = 1000.0


def _lu(rng, a, b):
    return math.exp(rng.uniform(math.log(a), math.log(b)))


def draw(rng):
    """One configuration (sigma, q, steps, delta, eps)."""
    def pick(lo, hi, plo, phi, edges=True):
        u = rng.random()
        if edges and u < 0.01:
            return lo
        if edges and u < 0.02:
            return hi
        return _lu(rng, plo, phi) if rng.random() < 0.5 else _lu(rng, lo, hi)
    sigma = pick(SIGMA_MIN, SIGMA_MAX, 0.3, 10.0)
    q = pick(Q_MIN, Q_MAX, 1e-4, 1.0)
    steps = float(min(STEPS_MAX, max(1.0, round(pick(1.0, STEPS_MAX, 1.0, 1e5)))))
    delta = 1e-300 if rng.random() < 0.01 else _lu(rng, 1e-15, 0.5)
    u = rng.random()
    eps = 1e-6 if u < 0.01 else EPS_MAX if u < 0.02 else _lu(rng, 1e-3, 100.0)
    return sigma, q, steps, delta, eps


def _moved(x, lo, hi):
    """(a, b) with a < b, b / a = 1 + MOVE, inside [lo, hi]: x and x * (1 + MOVE), or below x at the top edge."""
    b = x * (1.0 + MOVE)
    return (x, b) if b <= hi else (x / (1.0 + MOVE), x)


def neighbour_pairs(sigma, q, steps, delta, eps):
    """For each quantity, (axis, args_lo, args_hi, direction): direction +1 where the value must not fall
    from args_lo to args_hi, -1 where it must not rise."""
    n_lo, n_hi = (steps, steps + 1.0) if steps + 1.0 <= STEPS_MAX else (steps - 1.0, steps)
    q_lo, q_hi = _moved(q, Q_MIN, Q_MAX)
    s_lo, s_hi = _moved(sigma, SIGMA_MIN, SIGMA_MAX)
    d_lo, d_hi = _moved(delta, 0.0, 0.999)
    e_lo, e_hi = _moved(eps, 0.0, EPS_MAX)
    return {
        "epsilon": [  # epsilon(sigma, delta, steps, q)
            ("steps", (sigma, delta, n_lo, q), (sigma, delta, n_hi, q), +1),
            ("q", (sigma, delta, steps, q_lo), (sigma, delta, steps, q_hi), +1),
            ("sigma", (s_lo, delta, steps, q), (s_hi, delta, steps, q), -1),
            ("delta", (sigma, d_lo, steps, q), (sigma, d_hi, steps, q), -1),
        ],
        "delta": [  # delta(sigma, eps, steps, q)
            ("steps", (sigma, eps, n_lo, q), (sigma, eps, n_hi, q), +1),
            ("q", (sigma, eps, steps, q_lo), (sigma, eps, steps, q_hi), +1),
            ("sigma", (s_lo, eps, steps, q), (s_hi, eps, steps, q), -1),
            ("eps", (sigma, e_lo, steps, q), (sigma, e_hi, steps, q), -1),
        ],
        "noise_multiplier": [  # noise_multiplier(eps, delta, steps, q)
            ("steps", (eps, delta, n_lo, q), (eps, delta, n_hi, q), +1),
            ("q", (eps, delta, steps, q_lo), (eps, delta, steps, q_hi), +1),
            ("eps", (e_lo, delta, steps, q), (e_hi, delta, steps, q), -1),
            ("delta", (eps, d_lo, steps, q), (eps, d_hi, steps, q), -1),
        ],
    }


def wrong_way(quantity, a, b, direction):
    """How far (relative to the larger value) b steps the wrong way from a; 0 if it does not."""
    floor = ABS_FLOOR[quantity]
    a, b = max(a, floor), max(b, floor)
    drop = (a - b) if direction > 0 else (b - a)
    return drop / max(a, b) if drop > 0 else 0.0


_FNS = {"epsilon": edgeworth.epsilon, "delta": edgeworth.delta, "noise_multiplier": edgeworth.noise_multiplier}


def check_config(job):
    """The pairs of one configuration: (index, {quantity: (pairs, declined, violations)}, failures, slowest)."""
    i, config = job
    cache, failures, slowest = {}, [], (0.0, None)

    def value(quantity, args):
        nonlocal slowest
        key = (quantity, args)
        if key not in cache:
            t0 = time.perf_counter()
            try:
                cache[key] = float(_FNS[quantity](*args))
            except ValueError as e:  # a named decline or an unreachable target
                cache[key] = e
            except Exception as e:  # noqa: BLE001 - anything else is a failure, recorded and reported
                cache[key] = e
                failures.append((quantity, args, f"{type(e).__name__}: {e}"))
            dt = time.perf_counter() - t0
            if dt > slowest[0]:
                slowest = (dt, (quantity, args))
        return cache[key]

    out = {}
    for quantity, pairs in neighbour_pairs(*config).items():
        checked = declined = 0
        violations = []
        for axis, lo, hi, direction in pairs:
            a, b = value(quantity, lo), value(quantity, hi)
            if isinstance(a, Exception) or isinstance(b, Exception):
                declined += 1
                continue
            checked += 1
            rel = wrong_way(quantity, a, b, direction)
            few = min(lo[2] * lo[3], hi[2] * hi[3]) < 1.0  # (every signature ends with steps, q)
            if rel > (max(TOLERANCE[quantity], TOLERANCE_FEW) if few else TOLERANCE[quantity]):
                violations.append((rel, axis, lo, hi, a, b, i))
        out[quantity] = (checked, declined, violations)
    return i, out, failures, slowest


def run(seed, configs, jobs=1, out=sys.stdout):
    rng = random.Random(seed)
    work = [(i, draw(rng)) for i in range(configs)]
    stats = {k: {"pairs": 0, "declined": 0, "violations": []} for k in _FNS}
    failures = []
    slowest = (0.0, None)
    t_start = time.perf_counter()
    results = []

    def collect(r):
        results.append(r)
        for quantity, (_, _, violations) in r[1].items():
            for v in violations:  # as found, so that an interrupted run still shows them
                print(f"  violation in config {v[6]}: {quantity}: {v}", file=sys.stderr, flush=True)
        if len(results) % 100 == 0:
            print(f"  {len(results)} of {configs} ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)

    interrupted = False
    try:
        if jobs > 1:
            import multiprocessing
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                for r in pool.imap_unordered(check_config, work, chunksize=1):
                    collect(r)
        else:
            for job in work:
                collect(check_config(job))
    except KeyboardInterrupt:  # (SIGTERM too, see main): report what was checked
        interrupted = True
    for _, res, fails, slow in results:
        for quantity, (checked, declined, violations) in res.items():
            stats[quantity]["pairs"] += checked
            stats[quantity]["declined"] += declined
            stats[quantity]["violations"] += violations
        failures += fails
        slowest = max(slowest, slow, key=lambda s: s[0])
    elapsed = time.perf_counter() - t_start

    total = 0
    for quantity, st in stats.items():
        v = st["violations"]
        total += len(v)
        small = sum(1 for x in v if min(x[2][0], x[3][0]) < 0.03 and quantity != "noise_multiplier")
        huge = sum(1 for x in v if max(x[2][2], x[3][2]) > MAX_STEPS)
        print(f"{quantity}: {st['pairs']} pairs checked, {st['declined']} with a named error, "
              f"{len(v)} beyond {TOLERANCE[quantity]:g} relative ({TOLERANCE_FEW:g} where q * steps < 1): "
              f"{huge} of them beyond {MAX_STEPS:g} steps, {small} at sigma < 0.03", file=out)
        for rel, axis, lo, hi, a, b, i in sorted(v, reverse=True)[:40]:
            region = " [sigma < 0.03]" if min(lo[0], hi[0]) < 0.03 and quantity != "noise_multiplier" else ""
            region += f" [steps > {MAX_STEPS:g}]" if max(lo[2], hi[2]) > MAX_STEPS else ""
            print(f"    config {i}, along {axis}: {quantity}{lo} = {a!r}, {quantity}{hi} = {b!r} "
                  f"({rel:.3g} relative){region}", file=out)
    for quantity, args, msg in failures[:10]:
        print(f"FAILURE: {quantity}{args}: {msg}", file=out)
    if interrupted:
        print(f"INTERRUPTED after {len(results)} of {configs} configurations (in the order they finished)", file=out)
    print(f"{len(results)} configurations, {sum(s['pairs'] for s in stats.values())} pairs, {total} violations, "
          f"{len(failures)} failures, {elapsed:.0f} s wall (slowest call {slowest[0] * 1e3:.0f} ms: {slowest[1]})",
          file=out)
    return total, len(failures) + (1 if interrupted else 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (the results do not depend on it)")
    ap.add_argument("--smoke", action="store_true", help="4 configurations (what the test suite runs)")
    args = ap.parse_args(argv)
    configs = 4 if args.smoke else args.configs
    if configs < 1:
        ap.error("--configs must be at least 1")
    command = f"PYTHONPATH=. python benchmarks/monotonicity_search.py --seed {args.seed} --configs {configs}"
    print(f"seed {args.seed}; command: {command}", flush=True)
    import signal
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill reports the configurations checked
    violations, failures = run(args.seed, configs, max(1, args.jobs))
    return 1 if violations or failures else 0


if __name__ == "__main__":
    sys.exit(main())
