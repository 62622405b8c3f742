#!/usr/bin/env python3
"""Coverage-guided fuzzer of edgeworth's Python API and of the C++ entry points in edgeworth._core.

Each input (bytes from libFuzzer, via atheris) picks one entry point and its
arguments.  Numbers are drawn mostly from the values that break numerical code
(nan, +-inf, -0.0, denormals, the extremes of double, values just outside each
allowed range) and otherwise from the raw bytes; arguments may also be of the
wrong type (strings, None, complex, bool, lists of mixed objects), arrays of
mismatched shapes, 2-d or empty arrays.

The property checked on every input: the call returns, and what it returns is
finite (and in range, for certified values), or it raises a ValueError (for
the raw C++ bindings also a TypeError, pybind11's answer to an argument it
cannot convert).  Any other exception, a nan or inf, or a value out of range
is a finding: the harness raises, and libFuzzer saves the input as a crash
file.  A call that runs past libFuzzer's -timeout is reported as a hang.

Run (see docs/robustness.md; the extension should be the fuzz build, so that
libFuzzer also sees coverage of the C++ core)::

    .ci/build_variant.sh fuzz build/fuzz
    PYTHONPATH=build/fuzz python fuzz/fuzz_api.py -max_total_time=60 -timeout=30 NEW_DIR fuzz/corpus
    python fuzz/fuzz_api.py --replay fuzz/corpus      # each corpus input once, no libFuzzer
"""
from __future__ import annotations

import ctypes
import math
import sys
import warnings

import atheris
import numpy as np

# A replay (--replay, the sanitizer job's use) imports edgeworth plainly:
# atheris' Python instrumentation only guides the fuzzer, and its comparison
# hooks leak references to the numpy arrays they see (LeakSanitizer reported
# 307 arrays over the corpus with it, none without).
if len(sys.argv) > 1 and sys.argv[1] == "--replay":
    import edgeworth
    from edgeworth import _core
else:
    with atheris.instrument_imports(include=["edgeworth"]):
        import edgeworth
        from edgeworth import _core

# Values that break numerical code, and the ends of each parameter's range.
SPECIAL = [
    math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1e-300, 1e-15, 1e-7,
    1e-3, 0.01, 0.1, 0.5, 1.0 - 2 ** -53, 1.0, 1.0 + 2 ** -52, 2.0, 10.0, 100.0, 1000.0, 1000.0000000000001,
    1e6, 1e6 * (1 + 2 ** -52), 1e9, 2.0 ** 53, 2.0 ** 53 + 2, 1e300, 1.7976931348623157e308, -1.0, -1e-300,
    9.999999999999999e-3, 1e-2 * (1 - 2 ** -52),
]
# Wrong types; each must be refused with a ValueError (a TypeError from the raw bindings).
ODD = [None, "1.0", b"1", "nan", 1j, 1 + 0j, True, False, [], [1.0, "x"], {"a": 1}, object(), (1.0, None),
       np.array(["1"]), np.array([1 + 1j]), np.array([], dtype=float), np.array([[1.0, 2.0], [3.0, 4.0]]),
       np.array([1.0, 2.0, 3.0]), np.float32(0.5), np.int64(10), np.uint8(3), np.float16(1e-7),
       # issue 16: read as numbers (or overflowing) before
       np.bool_(True), np.datetime64(1, "s"), np.ma.masked_array([1.0, 0.0], mask=[0, 1]), np.array([b"1"]),
       10 ** 400, 2 ** 53 + 1, np.array([2 ** 53 + 1]), [1.0, True]]

METHODS = ["certified", "tilted", "edgeworth", "Certified", "", "bogus"]
ORDERINGS = [None, "both", "remove", "add", "none", ""]
MAX_ARRAY = 3  # certified calls cost up to ~0.1 s per element


def number(fdp: atheris.FuzzedDataProvider) -> float:
    kind = fdp.ConsumeIntInRange(0, 3)
    if kind <= 1:
        return SPECIAL[fdp.ConsumeIntInRange(0, len(SPECIAL) - 1)]
    if kind == 2:
        return fdp.ConsumeFloat()  # any double, nan and inf included
    return fdp.ConsumeRegularFloat()


def steps_value(fdp: atheris.FuzzedDataProvider) -> float:
    if fdp.ConsumeBool():
        return float(fdp.ConsumeIntInRange(1, 10 ** 9))
    return number(fdp)


def argument(fdp: atheris.FuzzedDataProvider, scalar) -> object:
    """A scalar from `scalar`, an array of them, or an argument of the wrong type."""
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind <= 5:
        return scalar(fdp)
    if kind <= 7:
        n = fdp.ConsumeIntInRange(0, MAX_ARRAY)
        arr = np.array([scalar(fdp) for _ in range(n)], dtype=float)
        if kind == 7 and n >= 2 and n % 2 == 0:
            arr = arr.reshape(2, n // 2)  # 2-d
        return arr
    if kind == 8:
        return ODD[fdp.ConsumeIntInRange(0, len(ODD) - 1)]
    return [scalar(fdp) for _ in range(fdp.ConsumeIntInRange(0, 2))]  # a plain list


def choice(fdp, options):
    return options[fdp.ConsumeIntInRange(0, len(options) - 1)]


def check_value(name: str, value, low: float, high: float) -> None:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise AssertionError(f"{name} returned a non-finite value: {value!r}")
    if not np.all((arr >= low) & (arr <= high)):
        raise AssertionError(f"{name} returned a value outside [{low}, {high}]: {value!r}")


def fuzz_api(fdp: atheris.FuzzedDataProvider) -> None:
    """The public functions: a ValueError or a finite answer."""
    which = fdp.ConsumeIntInRange(0, 6)
    method = choice(fdp, METHODS) if fdp.ConsumeIntInRange(0, 3) == 0 else "certified"
    ordering = choice(fdp, ORDERINGS) if fdp.ConsumeIntInRange(0, 3) == 0 else None
    order = choice(fdp, [1, 2, 3, 0, 4, 2.0, True, None, "2"]) if fdp.ConsumeIntInRange(0, 3) == 0 else 2
    kw = {"method": method, "ordering": ordering, "order": order}
    certified = method == "certified"
    try:
        if which == 0:
            v = edgeworth.epsilon(argument(fdp, number), argument(fdp, number), argument(fdp, steps_value),
                                  argument(fdp, number), **kw)
            check_value("epsilon", v, 0.0 if certified else -math.inf, math.inf)
        elif which == 1:
            v = edgeworth.delta(argument(fdp, number), argument(fdp, number), argument(fdp, steps_value),
                                argument(fdp, number), **kw)
            check_value("delta", v, 0.0, 1.0) if certified else check_value("delta", v, -math.inf, math.inf)
        elif which == 2:
            v = edgeworth.noise_multiplier(argument(fdp, number), argument(fdp, number),
                                           argument(fdp, steps_value), argument(fdp, number), **kw)
            check_value("noise_multiplier", v, _core.SIGMA_MIN, _core.SIGMA_MAX)
        elif which == 3:
            fn = choice(fdp, [edgeworth.epsilon_details, edgeworth.delta_details, edgeworth.noise_multiplier_details])
            r = fn(argument(fdp, number), argument(fdp, number), argument(fdp, steps_value), argument(fdp, number),
                   **kw)
            check_value(fn.__name__, r.value, -math.inf, math.inf)
        elif which == 4:
            b = edgeworth.edgeworth_bounds(number(fdp), number(fdp), steps_value(fdp), number(fdp))
            if not (b.lower <= b.upper) or math.isnan(b.lower) or math.isnan(b.upper):
                raise AssertionError(f"edgeworth bounds out of order or nan: {b!r}")
        elif which == 5:
            acc = edgeworth.Accountant()
            for _ in range(fdp.ConsumeIntInRange(1, 3)):
                acc.compose(noise_multiplier=argument(fdp, number), sample_rate=argument(fdp, number),
                            steps=argument(fdp, steps_value))
            if fdp.ConsumeBool():
                check_value("Accountant.epsilon", acc.epsilon(argument(fdp, number)), 0.0, math.inf)
            else:
                check_value("Accountant.delta", acc.delta(argument(fdp, number)), 0.0, 1.0)
        else:
            c = edgeworth.privacy_loss_cumulants(argument(fdp, number), argument(fdp, number),
                                                 argument(fdp, steps_value))
            for o in ("remove", "add"):
                for xy in ("x", "y"):
                    check_value("privacy_loss_cumulants", c[o][xy], -math.inf, math.inf)
    except ValueError:
        pass  # a refusal with a message is the expected answer to a bad input


def fuzz_core(fdp: atheris.FuzzedDataProvider) -> None:
    """The C++ entry points directly, with raw arrays (no Python-side validation or broadcasting)."""
    which = fdp.ConsumeIntInRange(0, 7)
    try:
        if which <= 2:
            fn = (_core.dpsgd_epsilon, _core.dpsgd_delta, _core.dpsgd_noise_multiplier)[which]
            arrays = [argument(fdp, steps_value if i == 2 else number) for i in range(4)]
            vals, codes, cert, how = fn(*arrays, choice(fdp, METHODS), choice(fdp, [1, 2, 3, 0, -1, 7]),
                                   choice(fdp, ["both", "remove", "add", "x"]))
            check_value(fn.__name__, vals, -math.inf, math.inf)
        elif which == 3:
            comp = _core.Composition()
            for _ in range(fdp.ConsumeIntInRange(1, 3)):
                comp.add(_core.SubsampledGaussian(number(fdp), number(fdp)), steps_value(fdp))
            op = fdp.ConsumeIntInRange(0, 4)
            if op == 0:
                check_value("Composition.epsilon", comp.epsilon(number(fdp)).value, 0.0, math.inf)
            elif op == 1:
                check_value("Composition.delta", comp.delta(number(fdp)).value, 0.0, 1.0)
            elif op == 2:
                comp.tilted(number(fdp), fdp.ConsumeIntInRange(-1, 7))
            elif op == 3:
                comp.loss_cgf(choice(fdp, ["remove", "add", "r"]), choice(fdp, ["x", "y", "z"]), number(fdp),
                              fdp.ConsumeIntInRange(-1, 7))
            else:
                comp.cumulants()
        elif which == 4:
            # the characteristic-function, sampled-count and rare-jump bounds, one ordering
            fn = choice(fdp, [_core.cf_delta, _core.cf_epsilon, _core.count_delta, _core.count_epsilon,
                              _core.jump_delta, _core.jump_epsilon])
            r = fn(number(fdp), number(fdp), steps_value(fdp), number(fdp), choice(fdp, ["remove", "add", "both"]))
            if r is not None:
                check_value(fn.__name__, r, 0.0, 1.0 if fn.__name__.endswith("delta") else math.inf)
        elif which == 5:
            r = _core.edgeworth_bound(number(fdp), number(fdp), steps_value(fdp), number(fdp))
            if math.isnan(r["eps_lower"]) or math.isnan(r["eps_upper"]):
                raise AssertionError(f"edgeworth_bound gave nan: {r!r}")
        elif which == 6:
            _core.edgeworth_bound_moments(number(fdp), number(fdp))
        else:
            _core.edgeworth_sf(number(fdp), [number(fdp) for _ in range(fdp.ConsumeIntInRange(0, 6))],
                               fdp.ConsumeIntInRange(-1, 5))
    except (ValueError, TypeError):
        pass  # ValueError: refused with a message; TypeError: pybind11 could not convert an argument


def test_one_input(data: bytes) -> None:
    if not _registered and _fuzzing:
        # atheris loads its libFuzzer only inside atheris.Fuzz(), so the core's
        # counters are handed over on the first input (libFuzzer accepts
        # counter arrays at any time; atheris' own Python counters arrive the same way).
        register_core_coverage()
        _registered.append(True)
    fdp = atheris.FuzzedDataProvider(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EdgeworthAccuracyWarning and numpy's casting warnings are not findings
        (fuzz_api if fdp.ConsumeBool() else fuzz_core)(fdp)


_registered = []
_fuzzing = []  # set by main(): only a libFuzzer session registers the C++ counters


def register_core_coverage() -> None:
    """Hands the C++ core's block counters (fuzz/coverage_shim.cpp) to libFuzzer, if this is the fuzz build."""
    lib = ctypes.CDLL(_core.__file__)
    try:
        register = lib.edgeworth_fuzz_register
    except AttributeError:
        print("fuzz_api: edgeworth._core is not the fuzz build (.ci/build_variant.sh fuzz); "
              "libFuzzer sees Python coverage only", file=sys.stderr)
        return
    fuzzer = sys.modules.get("atheris.core_with_libfuzzer")
    if fuzzer is None:
        raise SystemExit("fuzz_api: atheris' libFuzzer module is not loaded")
    libfuzzer = ctypes.CDLL(fuzzer.__file__)  # the loaded module itself: dlopen returns the same handle
    register.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    addr = [ctypes.cast(getattr(libfuzzer, f), ctypes.c_void_p).value
            for f in ("__sanitizer_cov_8bit_counters_init", "__sanitizer_cov_pcs_init")]
    if register(*addr) != 0:
        raise SystemExit("fuzz_api: libFuzzer's coverage registration functions were not found")
    print(f"fuzz_api: C++ block coverage of {_core.__file__} registered with libFuzzer", file=sys.stderr)


def replay(paths) -> int:
    """Runs every input in the given files or folders once, without libFuzzer.

    This is how the sanitizer job (.ci/sanitize) feeds the corpus to the
    AddressSanitizer build: a finding raises, as under libFuzzer.
    """
    import pathlib
    files = sorted(f for p in map(pathlib.Path, paths) for f in ([p] if p.is_file() else p.iterdir()) if f.is_file())
    for f in files:
        test_one_input(f.read_bytes())
    print(f"fuzz_api: replayed {len(files)} inputs, no finding", file=sys.stderr)
    return len(files)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--replay":
        replay(sys.argv[2:])
        return
    _fuzzing.append(True)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
