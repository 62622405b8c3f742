"""Noise multipliers for the EW-Tune settings (background, section 6), computed by edgeworth.

For each task and delta at target eps = 8: the order-1 Edgeworth sigma (the
paper's method, an *estimate*), edgeworth's certified sigma, and dp_accounting's
RDP sigma; then the eps that the order-1 sigma really gives, as a certified
upper bound (edgeworth) and as dp_accounting's PLD (pessimistic, fine grid).

    python benchmarks/ewtune_sigmas.py            # prints a markdown table
"""
import argparse
import time

import edgeworth

TASKS = [  # name, q = B/N, T = 20 * floor(N/B)
    ("SST-2", 2000 / 67349, 660),
    ("QNLI", 2000 / 104743, 1040),
    ("QQP", 2000 / 363846, 3620),
    ("MNLI", 2000 / 392702, 3920),
]
DELTAS = (1e-5, 1e-6)


def pld_epsilon(sigma, q, steps, delta, interval):
    from dp_accounting import dp_event, pld
    from dp_accounting import NeighboringRelation
    acc = pld.PLDAccountant(NeighboringRelation.ADD_OR_REMOVE_ONE, value_discretization_interval=interval)
    acc.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)
    return acc.get_epsilon(delta)


def rdp_sigma(eps, delta, steps, q):
    from dp_accounting import dp_event, mechanism_calibration, rdp
    make = lambda s: dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(s)), steps)
    return mechanism_calibration.calibrate_dp_mechanism(
        rdp.RdpAccountant, make, eps, delta, mechanism_calibration.LowerEndpointAndGuess(0.1, 1.0), tol=1e-5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pld-interval", type=float, default=1e-4, help="PLD value discretisation (default 1e-4)")
    args = ap.parse_args()
    print("| task | delta | sigma, Edgeworth order 1 (estimate) | sigma, certified | sigma, RDP (dp_accounting) "
          "| eps at the order-1 sigma: certified bound | eps at the order-1 sigma: PLD pessimistic "
          "| certified calibration time |")
    print("|---|---|---|---|---|---|---|---|")
    for name, q, steps in TASKS:
        for delta in DELTAS:
            ew = edgeworth.noise_multiplier(8.0, delta, steps, q, method="edgeworth", order=1)
            t0 = time.perf_counter()
            cert = edgeworth.noise_multiplier(8.0, delta, steps, q)
            ms = (time.perf_counter() - t0) * 1e3
            print(f"| {name} | {delta:g} | {ew:.4f} | {cert:.4f} | {rdp_sigma(8.0, delta, steps, q):.4f} "
                  f"| {edgeworth.epsilon(ew, delta, steps, q):.3f} | {pld_epsilon(ew, q, steps, delta, args.pld_interval):.3f} "
                  f"| {ms:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
