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
    # sigma = 0.01 at q = 1e-7: Var X ~ e^-1250 underflows; the expansion is undefined, and says so
    with pytest.raises(edgeworth.UnreachableTargetError, match="Edgeworth expansion is undefined"):
        edgeworth.epsilon(0.01, 1e-5, 1, 1e-7, method="edgeworth")
    # the certified bound is still a finite number there
    assert math.isfinite(edgeworth.epsilon(0.01, 1e-5, 1, 1e-7))
