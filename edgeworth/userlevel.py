"""User-level privacy for DP-SGD: ELS and ULS accounting, the group-privacy baseline, and the contribution bound.

Example-level DP protects one example; when a person wrote many examples,
user-level DP protects all of them at once: the neighbouring datasets differ by
adding or removing one *user* with all their examples.  Two ways to train with
user-level DP-SGD (Charles et al., "Fine-tuning large language models with
user-level differential privacy", arXiv 2407.07737):

* **ELS** (example-level sampling): each user keeps at most k examples (the
  contribution bound), each example joins a batch independently with
  probability q (Poisson sampling), gradients are clipped per example to norm
  C and N(0, sigma^2 C^2) noise is added to their sum.  The number of one
  user's examples in a batch is Binomial(k, q), so one step is exactly the pair
  P = N(0, 1) against Q = sum_j Binom(j; k, q) N(j / sigma, 1): a mixture of
  Gaussians, accounted here exactly (:func:`els_mechanism`).  k = 1 is DP-SGD.
* **ULS** (user-level sampling): each user joins a batch with probability q
  (the user sampling rate); a sampled user's gradient is the average of its
  per-example gradients over its (at most k) examples, clipped to norm C, and
  noise N(0, sigma^2 C^2) is added to the sum over users.  A user moves the
  sum by at most C, so user-level ULS is example-level DP-SGD over users: its
  eps does not depend on k.

Before exact ELS accounting, ELS was accounted through **group privacy**
(:func:`group_privacy_epsilon`, :func:`group_privacy_noise_multiplier`): an
example-level (eps', delta') guarantee gives (k eps', k e^((k-1) eps') delta')
for a group of k examples (Vadhan, "The complexity of differential privacy",
2017, Lemma 2.2; Dwork and Roth, "The algorithmic foundations of differential
privacy", 2014, Thm. 2.2 for eps-DP).  It is valid but loose, and the gap grows
with k (``docs/userlevel.md`` measures it).

Units and conventions throughout: ``sigma`` is the noise multiplier (noise
standard deviation over the clipping norm C), ``q`` the Poisson sampling rate
of examples (ELS) or of users (ULS), ``steps`` the number of steps, and
``contribution_bound`` k the most examples a user keeps.  ``method`` is as in
:func:`edgeworth.epsilon`: "certified" (upper bound, default), "tilted" or
"edgeworth" (estimates).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

from . import _core
from ._validate import check_delta, check_eps, check_method, check_q, check_range, check_sigma, check_steps, scalar
from ._validate import show
from .accountant import Accountant
from .accounting import epsilon as _example_epsilon
from .accounting import noise_multiplier as _example_noise_multiplier
from .mechanisms import MAX_COMPONENTS, MixtureOfGaussians

SAMPLINGS = ("els", "uls")

#: The largest contribution bound k of ELS accounting: one ELS step is a mixture of
#: k + 1 Gaussians, and a mixture may have at most MAX_COMPONENTS = 512 components
#: (its cost grows about as their cube; see :data:`edgeworth.mechanisms.MAX_COMPONENTS`).
#: Before this cap, contribution_bound=10**6 ran past 60 s.  ULS and the group-privacy
#: baseline cost the same at any k and take any k.
MAX_CONTRIBUTION_BOUND = MAX_COMPONENTS - 1


def check_contribution_bound(k, *, els: bool = False) -> int:
    """k as an int >= 1 (at most :data:`MAX_CONTRIBUTION_BOUND` where ``els``), else ValueError."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"contribution_bound must be an integer >= 1, got {show(k)}")
    if els and k > MAX_CONTRIBUTION_BOUND:
        raise ValueError(f"contribution_bound must be at most {MAX_CONTRIBUTION_BOUND} for ELS accounting "
                         f"(edgeworth.userlevel.MAX_CONTRIBUTION_BOUND: one step is a mixture of k + 1 Gaussians, "
                         f"at most {MAX_COMPONENTS} components), got {show(k)}")
    return int(k)


def _scalars(**checked) -> Dict[str, float]:
    """The single numbers of already checked arguments (an array is refused by name)."""
    return {name: scalar(name, value) for name, value in checked.items()}


def _check_sampling(sampling: str) -> str:
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    return sampling


def binomial_weights(k: int, q: float) -> np.ndarray:
    """Binom(j; k, q) for j = 0..k, computed in logs (no underflow of the sum for large k).

    k: an integer in [1, MAX_CONTRIBUTION_BOUND]; q: a probability in (0, 1].
    """
    k = check_contribution_bound(k, els=True)
    q = scalar("q", check_range("q", q, low=0.0, high=1.0, low_open=True, high_open=False))
    j = np.arange(k + 1)
    if q == 1.0:
        return (j == k).astype(float)
    lg = np.array([math.lgamma(k + 1) - math.lgamma(i + 1) - math.lgamma(k - i + 1) for i in j])
    log_w = lg + j * math.log(q) + (k - j) * math.log1p(-q)
    w = np.exp(log_w)
    return w / math.fsum(w)


def els_mechanism(noise_multiplier: float, q: float, contribution_bound: int) -> MixtureOfGaussians:
    """One ELS step as a mechanism value: P = N(0, 1) against sum_j Binom(j; k, q) N(j / sigma, 1).

    Args:
        noise_multiplier: sigma (noise std / per-example clipping norm), > 0.
        q: the Poisson sampling rate of examples, in (0, 1].
        contribution_bound: k, the most examples a user keeps, in [1, 511]
            (:data:`MAX_CONTRIBUTION_BOUND`).

    With k = 1 this is exactly the Poisson-subsampled Gaussian of DP-SGD.
    """
    sigma = scalar("noise_multiplier", check_sigma(noise_multiplier))
    q = scalar("q", check_q(q))
    k = check_contribution_bound(contribution_bound, els=True)
    return MixtureOfGaussians(sigma, tuple(float(j) for j in range(k + 1)), tuple(binomial_weights(k, q)))


def _els_accountant(sigma, steps, q, k) -> Accountant:
    return Accountant().compose(mechanism=els_mechanism(sigma, q, k), steps=steps)


def epsilon(*, sigma: float, delta: float, steps: int, q: float, contribution_bound: int, sampling: str = "els",
            method: str = "certified") -> float:
    """User-level eps after ``steps`` steps of ELS or ULS DP-SGD.

    Args:
        sigma: noise multiplier (noise std / clipping norm), > 0.
        delta: user-level delta, in (0, 1).
        steps: number of steps, an integer >= 1.
        q: Poisson sampling rate, in (0, 1]: of examples for ELS, of users for ULS.
        contribution_bound: k, the most examples a user keeps, >= 1; at most
            :data:`MAX_CONTRIBUTION_BOUND` = 511 for ELS.
        sampling: "els" (exact mixture-of-Gaussians accounting) or "uls"
            (example-level accounting over users; k does not change eps).
        method: "certified" (upper bound over both orderings), "tilted" or
            "edgeworth" (estimates).

    Returns:
        eps for add/remove-one-user neighbours.

    Raises:
        ValueError: bad input (the message names the parameter), or an
            estimate that declines where it is unreliable.
    """
    a = _scalars(sigma=check_sigma(sigma), delta=check_delta(delta), steps=check_steps(steps), q=check_q(q))
    k = check_contribution_bound(contribution_bound, els=_check_sampling(sampling) == "els")
    method, _, _ = check_method(method, 2, None)
    if sampling == "uls":
        return float(_example_epsilon(a["sigma"], a["delta"], a["steps"], a["q"], method=method))
    return _els_accountant(a["sigma"], int(a["steps"]), a["q"], k).epsilon(a["delta"], method=method)


def noise_multiplier(*, eps: float, delta: float, steps: int, q: float, contribution_bound: int,
                     sampling: str = "els", method: str = "certified") -> float:
    """The least noise multiplier whose user-level eps at ``delta`` is at most ``eps``.

    Args:
        eps: target user-level eps, in (0, 1000].
        delta: target user-level delta, in (0, 1).
        steps, q, contribution_bound, sampling, method: as in :func:`epsilon`.

    Returns:
        sigma in [0.01, 1e6] with ``epsilon(sigma=sigma, ...) <= eps`` exactly
        (the safe end of the final bracket; for "certified" the search stops
        once eps is within 1e-5 of the target, as in
        :func:`edgeworth.noise_multiplier`).
        For ELS with k = 1 and for ULS it is :func:`edgeworth.noise_multiplier`.

    Raises:
        ValueError: bad input; ``edgeworth.UnreachableTargetError`` where no
            sigma in [0.01, 1e6] meets the target.
    """
    a = _scalars(eps=check_eps(eps), delta=check_delta(delta), steps=check_steps(steps), q=check_q(q))
    k = check_contribution_bound(contribution_bound, els=_check_sampling(sampling) == "els")
    method, _, _ = check_method(method, 2, None)
    eps, delta, steps, q = a["eps"], a["delta"], a["steps"], a["q"]
    if sampling == "uls" or k == 1:
        return float(_example_noise_multiplier(eps, delta, steps, q, method=method))
    segment = els_mechanism(1.0, q, k).noise_segment()
    return float(_core.calibrate_noise(eps, delta, [segment + (steps,)], method).value)


# -- the group-privacy baseline ------------------------------------------------------

def group_privacy_delta(example_eps: float, example_delta: float, contribution_bound: int) -> float:
    """The group delta min(1, k e^((k-1) eps') delta') from an example-level (eps', delta') (Vadhan 2017, Lemma 2.2).

    Args:
        example_eps: eps' in [0, 1000]; example_delta: delta' in [0, 1];
        contribution_bound: k >= 1.

    Computed in logs; a value above 1 says nothing and is returned as 1 (a
    delta is a probability; the certified deltas of :func:`edgeworth.delta`
    are capped the same way), where the product itself overflowed before.
    """
    example_eps = scalar("example_eps", check_eps(example_eps, allow_zero=True, name="example_eps"))
    example_delta = scalar("example_delta", check_range("example_delta", example_delta, low=0.0, high=1.0,
                                                        low_open=False, high_open=False))
    k = check_contribution_bound(contribution_bound)
    if example_delta == 0.0:
        return 0.0
    log_delta = math.log(k) + (k - 1) * example_eps + math.log(example_delta)
    return 1.0 if log_delta >= 0.0 else math.exp(log_delta)


def group_privacy_noise_multiplier(*, eps: float, delta: float, steps: int, q: float,
                                   contribution_bound: int) -> float:
    """The baseline that exact ELS accounting replaces: sigma from group privacy (certified).

    To meet user-level (eps, delta) with k examples per user through group
    privacy, the run must be example-level (eps / k, delta / (k e^((k-1) eps / k)))-DP;
    this is the certified example-level noise multiplier for that target.

    Args:
        eps, delta: the user-level target.
        steps, q: the run's steps and example sampling rate.
        contribution_bound: k >= 1.
    """
    a = _scalars(eps=check_eps(eps), delta=check_delta(delta), steps=check_steps(steps), q=check_q(q))
    k = check_contribution_bound(contribution_bound)
    eps = a["eps"]
    example_delta = math.exp(math.log(a["delta"]) - math.log(k) - (k - 1) * eps / k)
    if example_delta == 0.0:
        raise ValueError(f"eps: the example-level delta delta / (k e^((k-1) eps / k)) = "
                         f"e^{math.log(a['delta']) - math.log(k) - (k - 1) * eps / k:.6g} underflows a double at "
                         f"eps = {eps:g}, contribution_bound = {k}; group privacy cannot be calibrated here")
    return float(_example_noise_multiplier(eps / k, example_delta, a["steps"], a["q"]))


def group_privacy_epsilon(*, sigma: float, delta: float, steps: int, q: float, contribution_bound: int) -> float:
    """User-level eps of an ELS run by group privacy (certified, but loose).

    The smallest k eps' over example-level pairs (eps', delta'(eps')), with
    delta'(eps') the certified example-level delta, such that the group delta
    k e^((k-1) eps') delta'(eps') is at most ``delta``; found by bisection on
    eps' (the group delta decreases in eps' wherever it matters).
    """
    a = _scalars(sigma=check_sigma(sigma), delta=check_delta(delta), steps=check_steps(steps), q=check_q(q))
    sigma, delta, steps, q = a["sigma"], a["delta"], a["steps"], a["q"]
    k = check_contribution_bound(contribution_bound)
    if k == 1:
        return float(_example_epsilon(sigma, delta, steps, q))
    from .accounting import delta as _example_delta

    def group_delta(e):
        return group_privacy_delta(e, float(_example_delta(sigma, e, steps, q)), k)

    lo, hi = 0.0, max(1e-3, float(_example_epsilon(sigma, delta / k, steps, q)))
    while group_delta(hi) > delta:
        lo, hi = hi, 2.0 * hi
        if hi > _core.EPS_MAX:
            raise _core.UnreachableTargetError(f"no example-level eps <= {_core.EPS_MAX:g} meets the group delta")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if group_delta(mid) > delta:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-10 * hi:
            break
    return k * hi


# -- choosing the contribution bound ---------------------------------------------------

def _counts(examples_per_user: Sequence[int]) -> np.ndarray:
    try:
        counts = np.asarray(examples_per_user)
    except (TypeError, ValueError, OverflowError):
        counts = np.asarray([])
    if isinstance(examples_per_user, (str, bytes)) or counts.ndim != 1 or counts.size == 0 or \
            not np.issubdtype(counts.dtype, np.integer) or counts.min() < 1 or counts.max() > 2 ** 53:
        raise ValueError("examples_per_user must be a non-empty 1-d sequence of integers in [1, 2^53] (one per "
                         f"user), got {show(examples_per_user)}")
    return counts.astype(np.int64)


def uls_predicted_noise(examples_per_user: Sequence[int], contribution_bound: int, *, eps: float, delta: float,
                        steps: int, examples_per_step: float) -> Dict[str, float]:
    """The prediction behind :func:`choose_contribution_bound` for ULS, at one k.

    The model: a fixed compute budget of B = ``examples_per_step`` examples per
    step in expectation, and U users with n_u examples each.  With bound k,
    user u contributes m_u = min(n_u, k) examples, M(k) = sum_u m_u in all, so
    to spend the budget users are sampled at q_u(k) = min(1, B / M(k)); sigma_k
    is the certified noise multiplier that meets the user-level target
    (eps, delta) after ``steps`` steps at that rate.  A ULS step adds
    N(0, sigma_k^2 C^2) to the sum of the sampled users' clipped average
    gradients, and the update divides that sum by the expected number of
    sampled users, q_u U.  Every example's gradient reaches the update only
    through its user's average, whose examples together carry the weight of
    one user, so the noise an example's contribution competes with is
    sigma_k / (q_u U) (in units of C): the predicted noise per example.

    What it predicts: while M(k) <= B (the budget does not bind, q_u = 1) the
    noise is sigma_1 / U whatever k is, and a larger k uses more examples at no
    cost in noise; once M(k) > B, raising k lowers q_u and sigma_k falls more
    slowly than q_u (amplification by sampling is sublinear), so the noise
    grows.  The minimiser, ties going to the larger k, is therefore the largest
    k whose examples fit in the budget (or the smallest candidate when even
    k = 1 overfills it).

    Returns:
        dict with k, q_u, sigma (certified), total_examples M(k) and
        noise_per_example (sigma / (q_u U)).
    """
    counts = _counts(examples_per_user)
    k = check_contribution_bound(contribution_bound)
    a = _scalars(eps=check_eps(eps), delta=check_delta(delta), steps=check_steps(steps),
                 examples_per_step=check_range("examples_per_step", examples_per_step, low=0.0, high=np.inf,
                                               low_open=True, high_open=True))
    total = float(np.minimum(counts, k).sum())
    q_u = min(1.0, a["examples_per_step"] / total)
    sigma = float(_example_noise_multiplier(a["eps"], a["delta"], a["steps"], q_u))
    return {"k": k, "q_u": q_u, "sigma": sigma, "total_examples": total,
            "noise_per_example": sigma / (q_u * counts.size)}


def choose_contribution_bound(examples_per_user: Sequence[int], sampling: str, *, eps: Optional[float] = None,
                              delta: Optional[float] = None, steps: Optional[int] = None,
                              examples_per_step: Optional[float] = None,
                              candidates: Optional[Sequence[int]] = None) -> int:
    """The contribution bound k for a data set with ``examples_per_user`` examples per user.

    Args:
        examples_per_user: n_u for each user (integers >= 1).
        sampling: "els": the median of n_u (rounded up), as Charles et al.
            (arXiv 2407.07737) recommend; no target is needed.  "uls": the k
            that minimises the predicted noise per example of
            :func:`uls_predicted_noise` for the target (eps, delta) over
            ``steps`` steps with ``examples_per_step`` examples per step
            (all four required).
        candidates: the k to try for ULS (default: the distinct n_u, since
            the prediction only changes its slope there, capped at 64 values
            spread evenly over them).

    Returns:
        k, an integer >= 1.
    """
    counts = _counts(examples_per_user)
    if _check_sampling(sampling) == "els":
        return int(math.ceil(float(np.median(counts))))
    if None in (eps, delta, steps, examples_per_step):
        raise ValueError("eps, delta, steps and examples_per_step are required for sampling='uls'")
    if candidates is None:
        distinct = np.unique(counts)
        if distinct.size > 64:
            distinct = distinct[np.unique(np.linspace(0, distinct.size - 1, 64).round().astype(int))]
        candidates = [int(k) for k in distinct]
    if isinstance(candidates, (str, bytes)) or not hasattr(candidates, "__iter__"):
        raise ValueError(f"candidates must be a non-empty sequence of integers >= 1, got {show(candidates)}")
    try:
        candidates = [check_contribution_bound(k) for k in candidates]
    except ValueError as exc:
        raise ValueError(f"candidates: {exc}") from None
    if not candidates:
        raise ValueError("candidates must be a non-empty sequence of integers >= 1, got an empty one")
    best_k, best = None, math.inf
    for k in sorted(set(candidates)):
        noise = uls_predicted_noise(counts, k, eps=eps, delta=delta, steps=steps,
                                    examples_per_step=examples_per_step)["noise_per_example"]
        if noise <= best * (1.0 + 1e-12):  # ties (the flat part) go to the larger k
            best_k, best = k, min(best, noise)
    return best_k
