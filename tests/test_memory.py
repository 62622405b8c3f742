"""Memory: a million repeated calls do not grow the resident set.

A leak in the bindings (a missing decref, an exception path that drops an
allocation, a result array never freed) costs at least a few bytes per call;
over 1e6 calls that is megabytes.  Each test warms up first (so that caches,
pymalloc arenas and numpy's small-array pool are already in place), reads
VmRSS from /proc/self/status, repeats the calls, and reads it again.

Tolerance: RSS_TOLERANCE (4 MiB), i.e. a leak of 4 bytes per call over 1e6
calls fails.  The cheap entry points run 1e6 times; the certified and
estimate calls, which cost about a millisecond each, run fewer times (stated in
each test) with a tolerance scaled the same way (per call).
"""
import gc
import sys

import numpy as np
import pytest

import edgeworth
from edgeworth import _core

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")

RSS_TOLERANCE = 4 * 2 ** 20
MILLION = 1_000_000


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")


def growth(body, n: int, warmup: int) -> int:
    """RSS after n calls of body() minus RSS after `warmup` calls."""
    for _ in range(warmup):
        body()
    gc.collect()
    before = rss_bytes()
    for _ in range(n):
        body()
    gc.collect()
    return rss_bytes() - before


def raises_value_error(fn, *args):
    def body():
        try:
            fn(*args)
        except ValueError:
            return
        raise AssertionError(f"{fn} did not raise ValueError for {args}")
    return body


EMPTY = np.empty(0)
ONE = np.array([1.0])
CUMULANTS = [0.1, 0.2, 0.03, 0.004, 0.0005]

# (name, body): each body is one call of a real entry point, cheap enough for 1e6 repetitions.
CHEAP_CALLS = [
    ("edgeworth_sf", lambda: _core.edgeworth_sf(0.3, CUMULANTS, 2)),
    ("dgg_delta_n", lambda: _core.dgg_delta_n(1000.0, 1.5, 2.0, 3.0, 0.5, 0.1)),
    ("SubsampledGaussian.pllr", lambda: _core.SubsampledGaussian(1.0, 0.01).pllr(0.5)),
    # the whole vectorised path (conversion, GIL release, result arrays, tuple) with nothing to compute
    ("dpsgd_epsilon on empty arrays", lambda: _core.dpsgd_epsilon(EMPTY, EMPTY, EMPTY, EMPTY, "certified", 2, "both")),
    # error paths: a C++ exception translated to ValueError, and the bindings' own shape and method checks
    ("SubsampledGaussian(sigma=-1) raises", raises_value_error(_core.SubsampledGaussian, -1.0, 0.5)),
    ("dpsgd_epsilon, mismatched lengths, raises",
     raises_value_error(_core.dpsgd_epsilon, ONE, EMPTY, ONE, ONE, "certified", 2, "both")),
    ("dpsgd_delta, unknown method, raises",
     raises_value_error(_core.dpsgd_delta, ONE, ONE, ONE, ONE, "bogus", 2, "both")),
    ("Composition.epsilon, delta out of range, raises",
     raises_value_error(lambda: _core.Composition().epsilon(2.0, "certified", 2, "both"))),
]


@pytest.mark.parametrize("name,body", CHEAP_CALLS, ids=[c[0] for c in CHEAP_CALLS])
def test_a_million_cheap_calls_do_not_grow_rss(name, body):
    assert growth(body, MILLION, warmup=20_000) < RSS_TOLERANCE, name


def test_python_api_error_paths_do_not_grow_rss():
    # 1e5 calls of each through the Python validation (about 20 us each), scaled tolerance.
    n = 100_000
    bodies = [raises_value_error(edgeworth.epsilon, -1.0, 1e-5, 10, 0.01),
              raises_value_error(edgeworth.noise_multiplier, 1.0, 1e-5, 2.5, 0.01),
              raises_value_error(edgeworth.delta, [1.0, 2.0], 1.0, [10, 20, 30], 0.01)]
    for body in bodies:
        assert growth(body, n, warmup=5_000) < RSS_TOLERANCE * n / MILLION + 2 ** 20


def test_certified_calls_do_not_grow_rss():
    # The full certified path (CGF quadratures, characteristic-function bound,
    # calibration), a millisecond or more per call: 2000 calls, a tolerance of
    # 1 MiB, i.e. ~500 bytes per call, which any per-call leak of the
    # intermediate vectors would exceed.
    n = 2000
    k = iter(range(10 ** 9))

    def body():
        i = next(k) % 7
        edgeworth.epsilon(1.0 + 0.1 * i, 1e-5, 1000, 0.01)
        edgeworth.delta(1.0, 1.0 + i, 1000, 0.01)

    assert growth(body, n, warmup=200) < 2 ** 20
    m = 200
    assert growth(lambda: edgeworth.noise_multiplier(3.0, 1e-5, 1000, 0.01), m, warmup=20) < 2 ** 20
