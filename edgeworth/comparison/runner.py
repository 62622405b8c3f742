"""compare, compare_noise_multipliers and sweep: every accountant on one question.

Each backend of :mod:`edgeworth.comparison.backends` answers in its own row.
Light backends run in this process; heavy ones (PLD, PRV) run in a worker
process under ``time_limit`` (see :mod:`edgeworth.comparison.isolation`).
Whatever goes wrong with one backend (not installed, an exception, a
time-out, a history it cannot take) is written in its row, and the other
rows are computed as usual.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .._validate import check_delta, check_eps, check_q, check_range, check_sigma, check_steps
from ..accountant import Accountant
from .backends import Backend, Output, PeerSettings, select
from .isolation import Outcome, call_with_time_limit
from .result import Comparison, ComparisonRow

#: Seconds a heavy backend (PLD, PRV) may run per call unless the caller says otherwise.
DEFAULT_TIME_LIMIT = 30.0
#: GiB a heavy backend's worker may allocate beyond what it inherits unless the caller says otherwise.
DEFAULT_MEMORY_LIMIT = 8.0

_TIMED_OUT = "timed out"


def _single(name: str, arr: np.ndarray) -> float:
    if np.ndim(arr) != 0:
        raise ValueError(f"{name} must be a single number here, got shape {np.shape(arr)}; "
                         "use edgeworth.comparison.sweep for several values")
    return float(arr)


class Limits(NamedTuple):
    """What a heavy backend's worker may use: seconds (None: in this process, no limit) and bytes of memory."""

    seconds: Optional[float]
    memory: Optional[int]


#: The accepted ranges of the limits.  time_limit: a positive number of seconds up to 1e6 (11.6 days; the
#: pipe's poll overflowed on 1e308).  memory_limit: GiB from 1/1024 (1 MiB: below it the cap rounded to
#: 0 bytes, which meant no cap at all) up to 2^20 (1 PiB).
TIME_LIMIT_MAX = 1e6
MEMORY_LIMIT_RANGE = (2.0 ** -10, 2.0 ** 20)


def _check_limits(time_limit: Optional[float], memory_limit: Optional[float]) -> Limits:
    def checked(name, value, low, high, low_open, why):
        return None if value is None else _single(name, check_range(name, value, low=low, high=high,
                                                                    low_open=low_open, high_open=False, why=why))
    memory = checked("memory_limit", memory_limit, *MEMORY_LIMIT_RANGE, False, " (GiB: 1 MiB to 1 PiB)")
    return Limits(checked("time_limit", time_limit, 0.0, TIME_LIMIT_MAX, True, " (seconds)"),
                  None if memory is None else int(memory * 2 ** 30))


def _check_settings(settings: Optional[PeerSettings]) -> PeerSettings:
    if settings is None:
        return PeerSettings()
    if not isinstance(settings, PeerSettings):
        raise ValueError(f"settings must be an edgeworth.comparison.PeerSettings, got {settings!r}")
    for f in dataclasses.fields(settings):
        high, high_open = (1.0, True) if f.name == "calibration_rtol" else (math.inf, True)
        check_range(f"settings.{f.name}", getattr(settings, f.name), low=0.0, high=high, low_open=True,
                    high_open=high_open)
    return settings


def _history(sigma, q, steps, history) -> List[Tuple[float, float, int]]:
    if history is not None:
        if any(v is not None for v in (sigma, q, steps)):
            raise ValueError("history: give either history or sigma, q and steps, not both")
        entries = history.history if isinstance(history, Accountant) else history
        acc = Accountant()
        acc.load_state_dict({"history": [tuple(e) for e in entries]})  # checks every entry
        if not acc.history:
            raise ValueError("history must hold at least one (noise_multiplier, sample_rate, steps) segment")
        return list(acc.history)
    missing = [n for n, v in (("sigma", sigma), ("q", q), ("steps", steps)) if v is None]
    if missing:
        raise ValueError(f"{', '.join(missing)}: give sigma, q and steps (or a history)")
    return [(_single("sigma", check_sigma(sigma)), _single("q", check_q(q)), int(_single("steps", check_steps(steps))))]


def _rows(backend: Backend, outputs: Sequence[Output], fn: Callable, args: tuple, settings: PeerSettings,
          limits: Limits, reason: Optional[str]) -> Tuple[List[ComparisonRow], bool]:
    """The rows of one backend's call, and whether it timed out."""
    if reason is None:
        reason = backend.missing()
    if reason is not None:
        outcome = Outcome(error=reason)
    else:
        outcome = call_with_time_limit(fn, args, limits.seconds if backend.heavy else None, limits.memory)
        if outcome.error is None:
            values = tuple(outcome.result)
            bad = [v for v in values if not isinstance(v, float) or math.isnan(v)]
            if len(values) != len(outputs) or bad:
                outcome = dataclasses.replace(outcome, error=f"unexpected result {outcome.result!r}")
    library = backend.library()
    warned = "; ".join(w[:300] for w in outcome.warnings)
    rows = []
    for i, out in enumerate(outputs):
        note = settings.describe(out.note) + (f"; warned: {warned}" if warned else "")
        rows.append(ComparisonRow(
            accountant=out.accountant, value=None if outcome.error else outcome.result[i], kind=out.kind,
            library=library, seconds=outcome.seconds, error=outcome.error, note=note))
    return rows, bool(outcome.error and outcome.error.startswith(_TIMED_OUT))


def _comparison(quantity: str, inputs: dict, calls, settings: PeerSettings, limits: Limits,
                skip: Dict[str, str]) -> Tuple[Comparison, List[str]]:
    start = time.perf_counter()
    rows: List[ComparisonRow] = []
    timed_out: List[str] = []
    for backend, outputs, fn, args, reason in calls:
        new, late = _rows(backend, outputs, fn, args, settings, limits, skip.get(backend.key, reason))
        rows += new
        if late:
            timed_out.append(backend.key)
    settings_dict = dict(dataclasses.asdict(settings), time_limit=limits.seconds,
                         memory_limit_gib=None if limits.memory is None else limits.memory / 2 ** 30)
    return Comparison(quantity=quantity, inputs=inputs, rows=tuple(rows), seconds=time.perf_counter() - start,
                      settings=settings_dict), timed_out


def _compare(sigma=None, q=None, steps=None, delta=None, *, history=None, backends=None,
             time_limit: Optional[float] = DEFAULT_TIME_LIMIT, memory_limit: Optional[float] = DEFAULT_MEMORY_LIMIT,
             settings: Optional[PeerSettings] = None, skip: Optional[Dict[str, str]] = None):
    hist = _history(sigma, q, steps, history)
    if delta is None:
        raise ValueError("delta: give the target delta, in (0, 1)")
    delta = _single("delta", check_delta(delta))
    limits, settings = _check_limits(time_limit, memory_limit), _check_settings(settings)
    calls = []
    for b in select(backends):
        if b.epsilon is None:
            continue
        reason = None if b.heterogeneous or len(hist) == 1 else \
            f"not supported: {b.key} takes a single (noise_multiplier, sample_rate) only, not a history"
        calls.append((b, b.epsilon_rows, b.epsilon, (hist, delta, settings), reason))
    return _comparison("epsilon", {"delta": delta, "history": hist}, calls, settings, limits, skip or {})


def compare(sigma: float = None, q: float = None, steps: int = None, delta: float = None, *,
            history=None, backends: Optional[Iterable[str]] = None,
            time_limit: Optional[float] = DEFAULT_TIME_LIMIT, memory_limit: Optional[float] = DEFAULT_MEMORY_LIMIT,
            settings: Optional[PeerSettings] = None) -> Comparison:
    """eps of a DP-SGD run by every accountant, side by side.

    DP-SGD here is the Poisson-subsampled Gaussian mechanism under add/remove-one
    neighbours: ``steps`` steps, each example sampled with probability ``q``,
    noise std ``sigma`` times the clipping norm.

    Args:
        sigma: noise multiplier (noise std / clipping norm), in [0.01, 1e6].
        q: Poisson sampling rate, in [1e-12, 1].
        steps: number of steps, an integer >= 1 (steps = epochs / q).
        delta: the delta at which eps is computed, in (0, 1).
        history: instead of sigma, q and steps, a heterogeneous run: a list of
            ``(noise_multiplier, sample_rate, steps)`` segments (as in Opacus)
            or an :class:`edgeworth.Accountant`.  Backends that take only one
            segment (Opacus GDP, the paper's Edgeworth bounds) say so in their
            row.
        backends: groups ("edgeworth", "gdp_clt", "dp_accounting",
            "prv_accountant", "opacus") or keys ("opacus.prv", ...) to run;
            all by default (``edgeworth.comparison.BACKENDS`` lists them).
        time_limit: seconds each heavy backend (PLD, PRV) may take, in
            (0, 1e6], in a worker process that is killed when it runs over;
            None runs them in this process, with no time or memory limit.
        memory_limit: GiB the worker may allocate beyond what it inherits
            (Linux), in [2^-10, 2^20] (1 MiB to 1 PiB); a backend that asks
            for more fails with MemoryError in its row.  None: no cap.
        settings: the peers' numerical settings (:class:`PeerSettings`: PLD
            interval, PRV errors); their defaults by default.

    Returns:
        A :class:`Comparison`: one row per accountant with its eps, its kind
        ("upper bound", "lower bound" or "estimate"), the library and version
        that computed it, the call's wall time and, instead of a value, the
        error when it failed.  ``print`` it, or use ``to_markdown()`` and
        ``to_dicts()``.

    Raises:
        ValueError: a parameter outside its range (named in the message), or
            an unknown backend name.  A backend's own failure never raises.

    References: Wang et al., arXiv 2206.04236 (Edgeworth accountant); Gopi,
    Lee, Wutschitz, arXiv 2106.02848 (PRV); Mironov, Talwar, Zhang,
    arXiv 1908.10530 (RDP of the subsampled Gaussian); Koskela et al. and
    Doroshenko et al., arXiv 2207.04380 (PLD, connect-the-dots); Bu et al.,
    arXiv 1911.11607 (GDP-CLT).
    """
    return _compare(sigma, q, steps, delta, history=history, backends=backends, time_limit=time_limit,
                    memory_limit=memory_limit, settings=settings)[0]


def _calibrate(eps: float = None, delta: float = None, steps: int = None, q: float = None, *, backends=None,
               time_limit: Optional[float] = DEFAULT_TIME_LIMIT, memory_limit: Optional[float] = DEFAULT_MEMORY_LIMIT,
               settings: Optional[PeerSettings] = None, skip: Optional[Dict[str, str]] = None):
    missing = [n for n, v in (("eps", eps), ("delta", delta), ("steps", steps), ("q", q)) if v is None]
    if missing:
        raise ValueError(f"{', '.join(missing)}: give the target eps and delta, steps and q")
    eps = _single("eps", check_eps(eps))
    delta = _single("delta", check_delta(delta))
    steps = int(_single("steps", check_steps(steps)))
    q = _single("q", check_q(q))
    limits, settings = _check_limits(time_limit, memory_limit), _check_settings(settings)
    calls = [(b, b.sigma_rows, b.noise_multiplier, (eps, delta, steps, q, settings), None)
             for b in select(backends) if b.noise_multiplier is not None]
    return _comparison("noise_multiplier", {"eps": eps, "delta": delta, "steps": steps, "q": q}, calls, settings,
                       limits, skip or {})


def compare_noise_multipliers(eps: float = None, delta: float = None, steps: int = None, q: float = None, *,
                              backends: Optional[Iterable[str]] = None,
                              time_limit: Optional[float] = DEFAULT_TIME_LIMIT,
                              memory_limit: Optional[float] = DEFAULT_MEMORY_LIMIT,
                              settings: Optional[PeerSettings] = None) -> Comparison:
    """The noise multiplier that each accountant calls enough for (eps, delta), side by side.

    Same mechanism and semantics as :func:`compare`: ``steps`` steps of the
    Poisson-subsampled Gaussian at sampling rate ``q``, add/remove-one
    neighbours, sigma the noise multiplier (noise std / clipping norm).  Each row is the smallest
    sigma (noise std / clipping norm) whose eps, by that accountant, is at
    most ``eps`` at ``delta``, found by that library's own calibration
    (``edgeworth.noise_multiplier``, dp_accounting's
    ``calibrate_dp_mechanism``, Opacus's ``get_noise_multiplier``; a bisection
    on ``eps_up`` for prv_accountant, which has none).  Its kind compares it
    with the least sigma that truly meets the target: an accountant whose eps
    is an upper bound gives an upper bound on that sigma (it is safe), an
    estimate gives an estimate.

    Args:
        eps: target epsilon, in (0, 1000].
        delta: target delta, in (0, 1).
        steps: number of steps, an integer >= 1.
        q: Poisson sampling rate, in [1e-12, 1].
        backends, time_limit, memory_limit, settings: as in :func:`compare`.

    Returns:
        A :class:`Comparison` whose rows hold sigmas.

    Raises:
        ValueError: a parameter outside its range, or an unknown backend.
    """
    return _calibrate(eps, delta, steps, q, backends=backends, time_limit=time_limit, memory_limit=memory_limit,
                      settings=settings)[0]


_INTERNAL = {compare: _compare, compare_noise_multipliers: _calibrate}


def sweep(compare_fn: Callable[..., Comparison], over: str, values: Sequence, *, progress: bool = True,
          **fixed) -> List[Comparison]:
    """``compare_fn(**fixed, over=value)`` for each value, with a progress bar.

    Args:
        compare_fn: :func:`compare` or :func:`compare_noise_multipliers`.
        over: the argument that varies ("steps", "eps", "sigma", "delta", "q").
        values: its values.
        progress: show a tqdm progress bar (when tqdm is installed).
        **fixed: the other arguments of ``compare_fn``.

    When the values get harder as they go (steps increasing, or delta
    decreasing), a heavy backend that timed out is not run again at the later
    values (its cost only grows); its rows say so.

    Returns:
        One :class:`Comparison` per value, in order.
    """
    if compare_fn not in _INTERNAL:
        raise ValueError("compare_fn must be edgeworth.compare or edgeworth.compare_noise_multipliers")
    values = list(values)
    harder = {"steps": lambda a, b: a < b, "delta": lambda a, b: a > b}.get(over)
    monotone = harder is not None and all(harder(a, b) for a, b in zip(values, values[1:]))
    skip: Dict[str, str] = {}
    out = []
    for value in _progress(values, progress, f"compare over {over}"):
        comp, timed_out = _INTERNAL[compare_fn](**fixed, **{over: value}, skip=dict(skip))
        out.append(comp)
        if monotone:
            for key in timed_out:
                skip.setdefault(key, f"not run: it timed out at {over} = {value:g} already "
                                     f"(time limit {comp.settings['time_limit']:g} s)")
    return out


def _progress(values, enabled: bool, desc: str):
    if not enabled or len(values) < 2:
        return values
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return values
    return tqdm(values, desc=desc, unit="point")
