"""Input checks shared by the API, the accountant and the command line.

The contract, everywhere in the public API: a wrong value *or a wrong type*
raises ``ValueError`` whose message starts with (or names) the parameter and
says what is allowed, before any expensive work, so a bad call never reaches
the C++ core (which checks again on its own).  No other exception type
(``TypeError``, ``OverflowError``, ``RecursionError``, ``AttributeError``) is
part of the contract, and nothing is coerced silently:

* a number is a real number: a Python ``int`` or ``float``, a numpy integer
  or floating scalar, or an array (or nested list) of them.  ``bool``,
  strings and bytes, complex numbers, dates and times, ``None`` and masked
  arrays (whose mask would be ignored) are refused, not read as numbers;
* integers are checked exactly before they become doubles (``steps =
  2**53 + 1`` is refused, not rounded to 2**53);
* an array, and the shape that several arrays broadcast to, may hold at most
  :data:`MAX_ELEMENTS` elements.
"""
from __future__ import annotations

import numbers
import reprlib
from typing import Dict, Tuple

import numpy as np

from . import _core

METHODS = ("certified", "tilted", "edgeworth")
ORDERINGS = ("remove", "add", "both")

#: The most elements an array argument, or the broadcast of the array arguments
#: of one call, may hold.  Measured (2-core machine): a certified element costs
#: ~1 to 3 ms (3.2 ms each over 20,000 sigmas in [2, 3] at q = 0.5, 10 steps), so
#: 10**6 elements are already about an hour of work, and the call's peak memory
#: grew by 73 bytes per element (the contiguous copies, the answers, the
#: results): ~75 MB at the cap, against 6.7 GiB that the 10**8-element broadcast
#: of a (10000, 1) and a (1, 10000) array reached before it.
MAX_ELEMENTS = 10 ** 6

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother, _repr.maxlong = 3, 40, 60, 40


def show(value) -> str:
    """A short repr of a caller's value for a message (depth and length bounded: a
    list nested 5,000 deep or a 400-digit integer cannot blow up the message)."""
    try:
        return _repr.repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not replace the message
        return f"<{type(value).__name__}>"


def _not_a_number(name: str, value, why: str = "") -> ValueError:
    return ValueError(f"{name} must be a real number or an array of real numbers, got {show(value)}{why}")


_REFUSED_KINDS = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "byte strings",
                  "M": "dates", "m": "time spans", "V": "raw bytes"}


def _leaves(value):
    """The non-list leaves of a nested list or tuple, without recursion."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        else:
            yield v


def _as_numeric_array(name: str, value) -> np.ndarray:
    """``value`` as an array of dtype float, int, uint or object-of-real-numbers, refusing everything else."""
    if value is None or isinstance(value, (str, bytes, bytearray, bool, np.bool_, complex, np.complexfloating,
                                           np.datetime64, np.timedelta64)):
        raise _not_a_number(name, value)
    if isinstance(value, np.ma.MaskedArray):
        raise ValueError(f"{name}: masked arrays are not accepted (the mask would be ignored); pass "
                         f"value.compressed() or value.filled(...) instead (got one of shape {value.shape})")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _not_a_number(name, value, f" ({exc})") from None
    if raw.size > MAX_ELEMENTS:
        raise ValueError(f"{name} has {raw.size} elements, more than the limit of {MAX_ELEMENTS} per call "
                         "(edgeworth._validate.MAX_ELEMENTS); split the work into several calls")
    kind = raw.dtype.kind
    if kind in _REFUSED_KINDS:
        raise _not_a_number(name, value, f" (an array of {_REFUSED_KINDS[kind]})")
    if kind == "O":
        for x in raw.flat:
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
                raise _not_a_number(name, value, f" (element {show(x)})")
    elif isinstance(value, (list, tuple)):  # numpy reads True in [True, 1.0] as 1.0
        for x in _leaves(value):
            if isinstance(x, (bool, np.bool_)) or (isinstance(x, np.ndarray) and x.dtype.kind == "b"):
                raise _not_a_number(name, value, f" (element {show(x)})")
    return raw


def _to_float(name: str, raw: np.ndarray) -> np.ndarray:
    if raw.dtype.kind != "O":
        return raw.astype(float, copy=False) if raw.dtype.kind == "f" else raw.astype(float)
    out = np.empty(raw.shape, dtype=float)
    for i, x in enumerate(raw.flat):
        try:
            out.flat[i] = float(x)
        except OverflowError:
            raise ValueError(f"{name} is too large for a double, got {show(x)}") from None
    return out


def _as_float_array(name: str, value) -> np.ndarray:
    return _to_float(name, _as_numeric_array(name, value))


def _first_bad(arr: np.ndarray, ok: np.ndarray):
    bad = arr[~ok]
    return bad.flat[0].item() if bad.size else None  # a Python number: its repr is "0.0", not "np.float64(0.0)"


def check_range(name: str, value, *, low: float, high: float, low_open: bool, high_open: bool,
                why: str = "") -> np.ndarray:
    arr = _as_float_array(name, value)
    ok = np.isfinite(arr)
    ok &= (arr > low) if low_open else (arr >= low)
    ok &= (arr < high) if high_open else (arr <= high)
    if not np.all(ok):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {_first_bad(arr, ok)!r}{why}")
    return arr


def check_sigma(value) -> np.ndarray:
    # The range of the noise_multiplier search.  Below it one step's privacy
    # loss reaches 1/(2 sigma^2) > 5000 nats, past what the double-precision
    # quadratures of the core resolve (tiny sigma ends in overflow, e.g. 1e-160);
    # above it the loss is below 1e-6 nats and its cumulants lose their digits.
    return check_range("sigma", value, low=_core.SIGMA_MIN, high=_core.SIGMA_MAX, low_open=False, high_open=False,
                       why=f"; below {_core.SIGMA_MIN:g} one step's privacy loss (up to 1/(2 sigma^2) = "
                           f"{0.5 / _core.SIGMA_MIN ** 2:g} nats at {_core.SIGMA_MIN:g}) is beyond the "
                           f"double-precision quadratures of the core, and above {_core.SIGMA_MAX:g} it is too "
                           "small for them")


def check_q(value) -> np.ndarray:
    # A numerical floor like sigma's: at q = 1e-100 the Edgeworth cumulants
    # underflow and at denormal q the CGF quadrature fails.
    return check_range("q", value, low=_core.Q_MIN, high=1.0, low_open=False, high_open=False,
                       why=f"; below {_core.Q_MIN:g} the privacy loss of a step underflows in the core's "
                           "cumulants and quadratures")


def check_delta(value) -> np.ndarray:
    return check_range("delta", value, low=0.0, high=1.0, low_open=True, high_open=True)


def check_eps(value, *, allow_zero: bool = False, name: str = "eps") -> np.ndarray:
    return check_range(name, value, low=0.0, high=_core.EPS_MAX, low_open=not allow_zero, high_open=False)


def check_steps(value, name: str = "steps") -> np.ndarray:
    """Integers >= 1 and at most 2^53; an integer is compared exactly, before it becomes a double
    (2**53 + 1 would round to 2**53, and 10**400 would not convert at all)."""
    raw = _as_numeric_array(name, value)
    limit = int(_core.STEPS_MAX)
    too_big = f"{name} must be at most 2^53 = {limit}, got {{}}; beyond it not every step count is a double"
    if raw.dtype.kind in "iu" and raw.size and raw.max() > limit:
        raise ValueError(too_big.format(raw.max().item()))
    if raw.dtype.kind == "O":
        for x in raw.flat:
            if isinstance(x, numbers.Integral) and x > limit:
                raise ValueError(too_big.format(show(x)))
    arr = _to_float(name, raw)
    ok = np.isfinite(arr) & (arr >= 1) & (arr == np.floor(arr))
    if not np.all(ok):
        raise ValueError(f"{name} must be an integer >= 1, got {_first_bad(arr, ok)!r}")
    # 2^53: the last integer up to which every count is a double (the solvers
    # hung on counts near 1e308).
    ok = arr <= _core.STEPS_MAX
    if not np.all(ok):
        raise ValueError(too_big.format(repr(_first_bad(arr, ok))))
    return arr


def scalar(name: str, checked: np.ndarray) -> float:
    """The single number in an already checked argument, where only one number makes sense
    (a ledger entry, a query of the ledger): an array is refused by name rather than
    left to fail inside ``float()`` with numpy's TypeError."""
    if checked.ndim != 0:
        raise ValueError(f"{name} must be a single number here, got an array of shape {checked.shape}")
    return float(checked)


def check_method(method: str, order, ordering) -> Tuple[str, int, str]:
    """Normalises (method, order, ordering) and rejects anything unknown."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    if ordering is None:
        ordering = "remove" if method == "edgeworth" else "both"
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
    if method != "edgeworth" and ordering != "both":
        raise ValueError(f"ordering: method {method!r} always covers both orderings; "
                         f"leave ordering unset or pass 'both', got {ordering!r}")
    return method, int(order), ordering


def broadcast(**arrays: np.ndarray) -> Dict[str, np.ndarray]:
    """Broadcasts the named arrays together, or says which shapes clash or that the
    result would hold more than :data:`MAX_ELEMENTS` elements (checked before anything is allocated)."""
    shapes = [np.shape(v) for v in arrays.values()]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        listed = ", ".join(f"{k}{s}" for k, s in zip(arrays, shapes))
        raise ValueError(f"arguments do not broadcast to a common shape: {listed}") from None
    size = int(np.prod(shape, dtype=object)) if shape else 1
    if size > MAX_ELEMENTS:
        listed = ", ".join(f"{k}{s}" for k, s in zip(arrays, shapes))
        raise ValueError(f"arguments broadcast to shape {shape} = {size} elements, more than the limit of "
                         f"{MAX_ELEMENTS} per call (edgeworth._validate.MAX_ELEMENTS): {listed}; "
                         "split the work into several calls")
    out = np.broadcast_arrays(*arrays.values())
    return dict(zip(arrays.keys(), out))
