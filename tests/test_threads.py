"""Threads: the long C++ calls release the GIL, and concurrent calls give the serial answers bit for bit.

The core keeps no shared mutable state (every call builds its own Composition
and works on the stack), so 8 threads calling it at once must reproduce the
serial results exactly, not merely to a tolerance: the arithmetic done for one
input does not depend on what else runs.  Bit identity is checked on the raw
bytes of the float64 results.
"""
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import edgeworth
from edgeworth import _core

N_THREADS = 8

# One configuration set per thread: each thread gets different inputs, so a
# result that leaked from one call into another would show.
SIGMAS = np.array([0.6, 0.8, 1.0, 1.3, 2.0])
QS = np.array([1e-3, 1e-2, 0.05, 0.2, 1.0])
STEPS = np.array([10.0, 1e3, 1e5, 1e7, 1e9])


def _inputs(k):
    """The k-th thread's arrays: a rotation of the grid, so no two threads share an order."""
    r = np.roll
    return r(SIGMAS, k), r(QS, 2 * k), r(STEPS, 3 * k)


def _work(k):
    """A mix of long calls: certified eps, delta and sigma on arrays, a tilted estimate, a ledger."""
    sigma, q, steps = _inputs(k)
    delta = np.full(sigma.shape, 10.0 ** -(5 + k % 4))
    out = [
        edgeworth.epsilon(sigma, delta, steps, q),
        edgeworth.delta(sigma, 1.0 + k, steps, q),
        edgeworth.noise_multiplier(2.0 + k, 1e-5, steps[:2], q[:2]),
        np.array([edgeworth.epsilon(1.0, 1e-5, 1000, 0.01 * (k + 1), method="tilted")]),
    ]
    acc = edgeworth.Accountant()
    acc.compose(noise_multiplier=1.0 + 0.1 * k, sample_rate=0.01, steps=500)
    acc.compose(noise_multiplier=0.8, sample_rate=0.02, steps=200 + k)
    out.append(np.array([acc.epsilon(1e-5)]))
    return [np.ascontiguousarray(a, dtype=np.float64).tobytes() for a in out]


def test_concurrent_calls_are_bit_identical_to_serial():
    serial = [_work(k) for k in range(N_THREADS)]
    # Sanity: the work is real (finite, positive, different between threads).
    first = np.frombuffer(serial[0][0])
    assert np.all(np.isfinite(first)) and np.all(first > 0)
    assert serial[0][0] != serial[1][0]
    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        for _ in range(2):  # twice, so threads also overlap in different phases
            concurrent = list(pool.map(_work, range(N_THREADS)))
            assert concurrent == serial


def _stamps_mid_call(call):
    """Times at which a pure-Python loop in another thread ran during the middle half of `call`.

    The loop records time.perf_counter() every few iterations.  While this
    thread holds the GIL inside `call` (one bytecode here), that loop cannot
    run at all; it can only run before the call starts or after it ends
    (CPython hands the GIL over at most every 5 ms switch interval).  So
    stamps strictly inside the middle half of the call, [t0 + d/4, t0 + 3d/4],
    exist only if the call released the GIL.
    """
    stamps = []
    stop = threading.Event()

    def counter():
        n = 0
        while not stop.is_set():
            n += 1
            if n % 64 == 0:
                stamps.append(time.perf_counter())

    t = threading.Thread(target=counter)
    t.start()
    try:
        while not stamps:  # the loop is running before the call starts
            pass
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    d = t1 - t0
    return [s for s in stamps if t0 + d / 4 < s < t0 + 3 * d / 4]


def test_gil_detector_sees_a_call_that_holds_the_gil():
    # list.sort holds the GIL for its whole run: the detector must find no mid-call stamps.
    data = list(range(2_000_000))
    random.Random(1).shuffle(data)
    assert _stamps_mid_call(lambda: sorted(data)) == []


def test_long_core_calls_release_the_gil():
    sigma, q, steps = (np.tile(a, 8) for a in _inputs(0))
    delta = np.full(sigma.shape, 1e-5)
    comp = _core.Composition()
    comp.add(_core.SubsampledGaussian(1.0, 0.01), 1000.0)
    comp.add(_core.SubsampledGaussian(0.8, 0.02), 200.0)
    calls = {
        "dpsgd_epsilon": lambda: _core.dpsgd_epsilon(sigma, delta, steps, q, "certified", 2, "both"),
        "dpsgd_delta": lambda: _core.dpsgd_delta(sigma, np.full(sigma.shape, 2.0), steps, q, "certified", 2, "both"),
        "dpsgd_noise_multiplier": lambda: _core.dpsgd_noise_multiplier(
            np.full(4, 3.0), np.full(4, 1e-5), steps[:4], q[:4], "certified", 2, "both"),
        "dpsgd_epsilon (tilted)": lambda: _core.dpsgd_epsilon(sigma[:10], delta[:10], steps[:10] * 0 + 1000,
                                                               q[:10] * 0 + 0.01, "tilted", 2, "both"),
    }
    for name, call in calls.items():
        assert len(_stamps_mid_call(call)) > 0, name
