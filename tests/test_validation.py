"""Bad input gets a ValueError that names the parameter; never a crash, hang or nan."""
import math

import numpy as np
import pytest

import edgeworth
from edgeworth import _core

GOOD = dict(sigma=1.0, delta=1e-5, steps=100, q=0.01, eps=2.0)

BAD = {
    "eps": [0.0, -1.0, math.nan, math.inf, 1e4],
    "delta": [0.0, 1.0, -1e-5, 1.5, math.nan, math.inf],
    "q": [0.0, -0.1, 1.1, math.nan],
    "sigma": [0.0, -1.0, math.nan, math.inf],
    "steps": [0, -5, 2.5, math.nan, math.inf, True],
}

CALLS = {
    "epsilon": (edgeworth.epsilon, ("sigma", "delta", "steps", "q")),
    "delta": (edgeworth.delta, ("sigma", "eps", "steps", "q")),
    "noise_multiplier": (edgeworth.noise_multiplier, ("eps", "delta", "steps", "q")),
}

CASES = [(fn_name, param, bad) for fn_name, (_, params) in CALLS.items() for param in params
         for bad in BAD[param] if not (fn_name == "delta" and param == "eps" and bad == 0.0)]


@pytest.mark.parametrize("fn_name,param,bad", CASES)
@pytest.mark.parametrize("method", ["certified", "edgeworth"])
def test_out_of_range_parameter_is_named(fn_name, param, bad, method):
    fn, params = CALLS[fn_name]
    args = {p: GOOD[p] for p in params}
    args[param] = bad
    with pytest.raises(ValueError, match=rf"^{param}\b"):
        fn(**args, method=method)


@pytest.mark.parametrize("param", ["sigma", "delta", "steps", "q"])
def test_one_bad_element_in_an_array_is_reported(param):
    args = {p: GOOD[p] for p in ("sigma", "delta", "steps", "q")}
    args[param] = np.array([args[param], BAD[param][0]])
    with pytest.raises(ValueError, match=rf"^{param}\b"):
        edgeworth.epsilon(**args)


@pytest.mark.parametrize("order", [0, 4, -1, 2.0, "2", True])
def test_order_must_be_1_2_or_3(order):
    with pytest.raises(ValueError, match="^order"):
        edgeworth.epsilon(1.0, 1e-5, 100, 0.01, method="edgeworth", order=order)


@pytest.mark.parametrize("method", ["rdp", "", "Certified", None])
def test_unknown_method(method):
    with pytest.raises(ValueError, match="^method"):
        edgeworth.epsilon(1.0, 1e-5, 100, 0.01, method=method)


@pytest.mark.parametrize("ordering", ["remove", "add", "sideways"])
def test_ordering_checks(ordering):
    # the certified bound always covers both orderings; unknown names are rejected
    with pytest.raises(ValueError, match="^ordering"):
        edgeworth.epsilon(1.0, 1e-5, 100, 0.01, method="certified", ordering=ordering)


def test_arrays_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"do not broadcast.*sigma\(2,\).*q\(3,\)"):
        edgeworth.epsilon([1.0, 2.0], 1e-5, 100, [0.01, 0.02, 0.03])


@pytest.mark.parametrize("value", ["1.0", None, [1.0, "x"], object()])
def test_non_numbers(value):
    with pytest.raises(ValueError, match="^sigma"):
        edgeworth.epsilon(value, 1e-5, 100, 0.01)


def test_empty_arrays_give_empty_results():
    out = edgeworth.epsilon(np.array([]), 1e-5, 100, 0.01)
    assert isinstance(out, np.ndarray) and out.shape == (0,)


def test_unreachable_target_is_a_clear_error():
    # a million full-batch steps at eps = 0.01: no sigma up to 1e6 is enough
    with pytest.raises(edgeworth.UnreachableTargetError, match=r"no sigma <= 1e\+06 meets"):
        edgeworth.noise_multiplier(0.01, 1e-10, 10 ** 9, 1.0)
    assert issubclass(edgeworth.UnreachableTargetError, ValueError)


def test_target_met_without_noise_is_a_clear_error():
    # one step at q = 1e-6 with delta = 0.9 >> q: even sigma = 0.01 meets eps = 1000
    with pytest.raises(edgeworth.UnreachableTargetError, match="is met even at sigma = 0.01"):
        edgeworth.noise_multiplier(1000.0, 0.9, 1, 1e-6)


@pytest.mark.parametrize("call", [
    lambda: _core.SubsampledGaussian(-1.0, 0.5),
    lambda: _core.SubsampledGaussian(1.0, 0.0),
    lambda: _core.SubsampledGaussian(float("nan"), 0.5),
    lambda: _core.Composition().epsilon(1e-5),  # empty composition
    lambda: _core.Composition().add(_core.SubsampledGaussian(1.0, 0.5), 0.5),
    lambda: _core.dpsgd_epsilon(np.array([1.0]), np.array([2.0]), np.array([10.0]), np.array([0.1]),
                                "certified", 2, "both"),
    lambda: _core.dpsgd_epsilon(np.array([1.0]), np.array([1e-5]), np.array([10.5]), np.array([0.1]),
                                "certified", 2, "both"),
    lambda: _core.dpsgd_epsilon(np.array([1.0]), np.array([1e-5]), np.array([10.0]), np.array([0.1]),
                                "edgeworth", 7, "both"),
    lambda: _core.dpsgd_epsilon(np.array([1.0]), np.array([1e-5]), np.array([10.0]), np.array([0.1]),
                                "moments", 2, "both"),
    lambda: _core.dpsgd_epsilon(np.array([1.0, 2.0]), np.array([1e-5]), np.array([10.0]), np.array([0.1]),
                                "certified", 2, "both"),
    lambda: _core.dpsgd_noise_multiplier(np.array([-8.0]), np.array([1e-5]), np.array([10.0]), np.array([0.1]),
                                         "certified", 2, "both"),
])
def test_core_checks_its_own_inputs(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")  # extremes: Edgeworth may be far off
@pytest.mark.parametrize("steps", [1, 10 ** 6])
@pytest.mark.parametrize("q", [1e-5, 1.0])
@pytest.mark.parametrize("sigma", [0.3, 1.0, 50.0])
def test_valid_extremes_are_finite_or_named(sigma, q, steps):
    e = edgeworth.epsilon(sigma, 1e-12, steps, q)
    assert math.isfinite(e) and e >= 0
    # The Edgeworth expansion may break down (one step at tiny q is extremely
    # skewed); then it says so instead of returning a number.
    try:
        est = edgeworth.epsilon(sigma, 1e-12, steps, q, method="edgeworth")
    except edgeworth.UnreachableTargetError as exc:
        assert "the expansion is unusable here" in str(exc)
    else:
        assert math.isfinite(est) and est >= 0


def test_degenerate_privacy_loss_has_no_edgeworth_expansion():
    # sigma = 0.01 at q = 1e-7: Var X ~ e^-1250.  The expansion either says it is undefined there, or gives the
    # true eps, 0: delta(0) <= q = 1e-7 < delta (the one step is sampled with probability q), so eps is 0.
    try:
        assert edgeworth.epsilon(0.01, 1e-5, 1, 1e-7, method="edgeworth") == 0.0
    except edgeworth.UnreachableTargetError as exc:
        assert "Edgeworth expansion is undefined" in str(exc)
    # the certified bound is still a finite number there
    assert math.isfinite(edgeworth.epsilon(0.01, 1e-5, 1, 1e-7))


# Findings of the fuzzer (fuzz/fuzz_api.py, docs/robustness.md) and the extreme sweep, kept as regressions.

@pytest.mark.parametrize("sigma", [0.009, 1e-3, 1e-160, 5e-324, 1.01e6, 1e150, 1.7976931348623157e308])
def test_sigma_outside_the_numerical_range_is_named(sigma):
    # Below 0.01 the CGF and moment quadratures overflow or stop converging,
    # above 1e6 the cumulants lose their digits (both raised RuntimeError, at
    # 1e-160 and 1e150 for instance); now every entry point refuses by name.
    for call in (lambda: edgeworth.epsilon(sigma, 1e-5, 10, 0.5), lambda: edgeworth.delta(sigma, 1.0, 10, 0.5),
                 lambda: edgeworth.privacy_loss_cumulants(sigma, 0.5)):
        with pytest.raises(ValueError, match=r"^sigma must be in \[0\.01, 1e\+06\].*quadratures"):
            call()
    for call in (lambda: _core.edgeworth_bound_moments(sigma, 1.0), lambda: _core.SubsampledGaussian(sigma, 0.5),
                 lambda: _core.cf_delta(sigma, 0.5, 10.0, 1.0, "remove")):
        with pytest.raises(ValueError, match=r"^sigma \(noise multiplier\) must be in \[0\.01, 1e\+06\]"):
            call()
    # both ends are served
    assert math.isfinite(edgeworth.epsilon(0.01, 1e-5, 10, 0.5))
    assert 0 <= edgeworth.epsilon(1e6, 1e-5, 10, 0.5) < edgeworth.epsilon(1e3, 1e-5, 10, 0.5)


@pytest.mark.parametrize("q", [9e-13, 1e-100, 5e-324])
def test_q_below_the_numerical_floor_is_named(q):
    with pytest.raises(ValueError, match=r"^q must be in \[1e-12, 1\].*underflows"):
        edgeworth.epsilon(1.0, 1e-5, 10, q)
    with pytest.raises(ValueError, match=r"^q \(sampling rate\) must be in \[1e-12, 1\]"):
        _core.edgeworth_bound_moments(0.5, q)
    # the floor itself is served, below the full-batch value
    assert 0 <= edgeworth.epsilon(1.0, 1e-5, 10, 1e-12) < edgeworth.epsilon(1.0, 1e-5, 10, 1.0)


@pytest.mark.parametrize("call,name", [
    (lambda: edgeworth.privacy_loss_cumulants([1.0, 2.0], 0.1), "sigma"),
    (lambda: edgeworth.Accountant().compose(1.0, np.array([0.1, 0.2]), 10), "sample_rate"),
    (lambda: edgeworth.Accountant().compose(1.0, 0.1, [10, 20]), "steps"),
    (lambda: edgeworth.Accountant().compose(1.0, 0.1, 10).epsilon(np.array([1e-5, 1e-6])), "delta"),
    (lambda: edgeworth.PoissonSubsampledGaussian(np.ones(2), 0.1), "noise_multiplier"),
])
def test_an_array_where_one_number_is_meant_is_named(call, name):
    # float() of a 1-d array raised numpy's TypeError before
    with pytest.raises(ValueError, match=rf"^{name} must be a single number here"):
        call()


def test_a_non_finite_tilted_estimate_is_a_named_refusal():
    # The saddle point ran off to the flat part of the loss and returned delta = inf.  Now the estimate's
    # fallbacks answer there, with a finite value: at sigma 0.05 one sampled step's loss is ~200 (sd 20), so delta
    # at eps 1 is the chance that a step is sampled at all, 1 - (1 - q)^steps, to ~1e-9.
    sampled = 1.0 - (1.0 - 1e-7) ** 1000
    est = edgeworth.delta(0.05, 1.0, 1000, 1e-7, method="tilted")
    assert math.isfinite(est) and est == pytest.approx(sampled, rel=1e-5)
    assert edgeworth.delta(0.05, 1.0, 1000, 1e-7) == pytest.approx(sampled, rel=1e-6)  # the certified bound


def test_pllr_keeps_its_digits_near_its_floor_when_q_is_near_one():
    # l(x) = log(1 - q + q e^z) with z = x/sigma - 1/(2 sigma^2).  log1p(q expm1(z))
    # cancelled there (7 digits lost at q = 1 - 1e-9), which stalled the moment
    # quadratures; checked against 50-digit mpmath.
    import mpmath
    mpmath.mp.dps = 50
    for sigma, q, x in [(0.1, 1 - 1e-9, 2.0), (0.1, 1 - 1e-9, -3.0), (0.05, 0.9, 5.0), (1.0, 0.999, -2.0)]:
        z = mpmath.mpf(x) / sigma - 1 / (2 * mpmath.mpf(sigma) ** 2)
        want = float(mpmath.log(1 - mpmath.mpf(q) + mpmath.mpf(q) * mpmath.exp(z)))
        got = _core.SubsampledGaussian(sigma, q).pllr(x)
        assert abs(got - want) <= 1e-14 * abs(want), (sigma, q, x, got, want)


@pytest.mark.parametrize("sigma,q", [(0.05, 0.9), (0.05, 0.999), (0.1, 1 - 1e-9), (0.2, 1 - 1e-12)])
def test_edgeworth_moments_of_an_almost_constant_loss(sigma, q):
    # X under P sits at log(1 - q) but for a tail beyond x ~ 1/sigma; the moment
    # quadrature raised RuntimeError (did not converge) here.
    # Checked against kappa_1, kappa_2 of X from the CGF (cgf.hpp, a separate quadrature).
    m = _core.edgeworth_bound_moments(sigma, q)["x"]
    kappa = edgeworth.privacy_loss_cumulants(sigma, q)["remove"]["x"]
    assert m["mean"] == pytest.approx(kappa[0], rel=1e-12)
    assert m["variance"] == pytest.approx(kappa[1], rel=1e-9)
    assert m["fourth"] > 0 and math.isfinite(m["fourth"])
    b = edgeworth.edgeworth_bounds(sigma, 1e-5, 1000, q)
    assert b.lower <= b.upper


def test_a_huge_noise_multiplier_gives_a_certified_delta_of_zero():
    # The optimal Chernoff order runs off to t ~ 1e9 where the CGF quadrature
    # fails (RuntimeError before); any order gives a valid bound, so the search
    # stops at the last one that could be evaluated.  The true delta is below
    # e^-1e7, so the bound is 0 in double, up to the few denormals the
    # sampled-count bound charges for its terms' rounding among the subnormals.
    assert 0.0 <= edgeworth.delta(1e4, 1.0, 1, 0.01) <= 1e-320
    assert 0.0 <= edgeworth.delta(1e4, 1.0, 1, 0.5) <= 1e-320
    # and the estimate, whose saddle point cannot evaluate its CGF there, answers through its fallbacks with the
    # same 0 (for one step the tilted estimate is the exact curve, 0 here)
    assert 0.0 <= edgeworth.delta(1e3, 1.0, 2, 0.01, method="tilted") <= 1e-320
    assert 0.0 <= edgeworth.delta(1e3, 1.0, 1, 0.01, method="tilted") <= 1e-320


@pytest.mark.parametrize("steps", [2.0 ** 53 + 2, 7.190772265886733e307])
def test_steps_beyond_two_to_the_53_are_named(steps):
    # 7.19e307 steps hung the certified delta (fuzzer); 2^53 is the last integer
    # up to which every count is a double.
    with pytest.raises(ValueError, match=r"^steps must be at most 2\^53"):
        edgeworth.delta(0.5, 0.0, steps, 0.5)
    for call in (lambda: _core.cf_delta(0.5, 0.9999999999999999, steps, 0.0, "remove"),
                 lambda: _core.edgeworth_bound(0.5, 0.5, steps, 1e-5)):
        with pytest.raises(ValueError, match=r"^steps must be an integer in \[1, 2\^53"):
            call()
    acc = edgeworth.Accountant().compose(1.0, 0.01, 2 ** 52)
    acc.compose(0.9, 0.01, 2 ** 52)  # 2^53 in all: still served
    assert math.isfinite(acc.epsilon(1e-5))
    # (2^53 + 1 would round to 2^53 in double): the compose itself is refused now, the ledger unchanged
    with pytest.raises(ValueError, match=r"^steps: the ledger holds 9007199254740992 steps, and 2 more"):
        acc.compose(0.8, 0.01, 2)
    assert len(acc) == 2 ** 53 and len(acc.history) == 2


def test_a_tilt_where_the_cgf_cannot_be_evaluated_is_named():
    # Composition.tilted(4.2e306) raised RuntimeError from the quadrature (fuzzer).
    comp = _core.Composition()
    comp.add(_core.SubsampledGaussian(0.5, 0.001), 10.0)
    assert comp.tilted(1.0, 3)["cgf"] == pytest.approx(0.0, abs=1e-12)  # K_X(1) = log E_P[q/p] = 0
    with pytest.raises(ValueError, match=r"^s = 4\.2320103025253525e\+306: the CGF cannot be evaluated"):
        comp.tilted(4.2320103025253525e306, 3)


def test_an_internal_nan_of_the_tilted_estimate_is_not_blamed_on_the_input():
    # epsilon(0.1, delta, 1000, 1, method="tilted") raised "eps must be finite and
    # >= 0, got -nan" (found by the extreme sweep): the estimate fed itself a nan.
    # (It now declines on its work budget before that; the refusal is named either way.)
    with pytest.raises(edgeworth.UnreachableTargetError, match=r"tilted \(saddle-point\) estimate is unreliable here"):
        edgeworth.epsilon(0.1, 1e-5, 1000, 1.0, method="tilted")
    assert math.isfinite(edgeworth.epsilon(0.1, 1e-5, 1000, 1.0))


def test_cf_diagnostic_bindings_decline_rather_than_raise_at_huge_sigma():
    # _core.cf_delta / cf_epsilon passed a RuntimeError of the CGF quadrature
    # through at sigma 1e3..1e6 with one step (the fuzzer's one tolerated
    # exception); a failing quadrature is now a decline (None), as in the API.
    for sigma in (1e3, 3e4, 1e6):
        for q in (1e-12, 1e-3, 0.5, 1.0):
            for eps in (1e-9, 1e-3, 1.0, 100.0):
                for ordering in ("remove", "add"):
                    v = edgeworth._core.cf_delta(sigma, q, 1, eps, ordering)
                    assert v is None or (0.0 <= v[0] <= v[1] <= 1.0)
                    e = edgeworth._core.cf_epsilon(sigma, q, 1, min(eps, 0.5), ordering)
                    assert e is None or (math.isfinite(e) and e >= 0.0)
    with pytest.raises(ValueError, match="ordering must be 'remove' or 'add'"):
        edgeworth._core.cf_delta(1.0, 0.01, 100, 1.0, "both")
