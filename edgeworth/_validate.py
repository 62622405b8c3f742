"""Input checks shared by the API, the accountant and the command line.

Every check raises ``ValueError`` naming the parameter and its allowed range,
so a bad call never reaches the C++ core (which checks again on its own).
"""
from __future__ import annotations

import numbers
from typing import Dict, Tuple

import numpy as np

from . import _core

METHODS = ("certified", "tilted", "edgeworth")
ORDERINGS = ("remove", "add", "both")


def _as_float_array(name: str, value) -> np.ndarray:
    if isinstance(value, (str, bytes)) or value is None:
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from exc
    return arr


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


def check_eps(value, *, allow_zero: bool = False) -> np.ndarray:
    return check_range("eps", value, low=0.0, high=_core.EPS_MAX, low_open=not allow_zero, high_open=False)


def check_steps(value) -> np.ndarray:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"steps must be an integer >= 1, got {value!r}")
    arr = _as_float_array("steps", value)
    ok = np.isfinite(arr) & (arr >= 1) & (arr == np.floor(arr))
    if not np.all(ok):
        raise ValueError(f"steps must be an integer >= 1, got {_first_bad(arr, ok)!r}")
    # 2^53: the last integer up to which every count is a double (the solvers
    # hung on counts near 1e308).
    ok = arr <= _core.STEPS_MAX
    if not np.all(ok):
        raise ValueError(f"steps must be at most 2^53 = {_core.STEPS_MAX:.0f}, got {_first_bad(arr, ok)!r}; "
                         "beyond it not every step count is a double")
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
    """Broadcasts the named arrays together or says which shapes clash."""
    try:
        out = np.broadcast_arrays(*arrays.values())
    except ValueError:
        shapes = ", ".join(f"{k}{np.shape(v)}" for k, v in arrays.items())
        raise ValueError(f"arguments do not broadcast to a common shape: {shapes}") from None
    return dict(zip(arrays.keys(), out))
