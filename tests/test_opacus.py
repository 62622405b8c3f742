"""The "edgeworth" accountant inside Opacus 1.6, and the DP-SGD it accounts for.

References are independent of the code under test: ``edgeworth.epsilon`` /
``noise_multiplier`` (the library's own functions, which the accountant must
reproduce exactly), Opacus's unpatched calibration, and per-example gradients
computed one example at a time with plain autograd.
"""
import copy
import importlib
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import edgeworth
import edgeworth.opacus as eo
import opacus.accountants.utils as opacus_utils
import opacus.privacy_engine as opacus_engine
from opacus import GradSampleModule, PrivacyEngine
from opacus.accountants import IAccountant, create_accountant

DELTA = 1e-5
# One thread: on a small shared machine two threads per process oversubscribe the cores (10x slower here).
torch.set_num_threads(1)


def _mlp(seed=0, d_in=8, hidden=16, classes=2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, classes))


def _separable(n=500, d=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.linspace(-1, 1, d) > 0).long()
    return x, y


def _accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


# -- the accountant as an Opacus plug-in ---------------------------------------------------------------------------
def test_registered_on_import_and_idempotent():
    assert type(create_accountant("edgeworth")) is eo.EdgeworthAccountant
    eo.register()
    eo.register()
    reloaded = importlib.reload(eo)
    acc = create_accountant("edgeworth")
    assert type(acc) is reloaded.EdgeworthAccountant
    assert opacus_utils.get_noise_multiplier is reloaded.get_noise_multiplier
    assert opacus_engine.get_noise_multiplier is reloaded.get_noise_multiplier
    # The original Opacus function is kept once, not wrapped twice.
    assert reloaded._OPACUS_GET_NOISE_MULTIPLIER.__module__ == "opacus.accountants.utils"
    # So are the PrivacyEngine methods whose sampling it checks.
    assert PrivacyEngine.make_private is reloaded.make_private
    assert PrivacyEngine.make_private_with_epsilon is reloaded.make_private_with_epsilon
    for original in (reloaded._OPACUS_MAKE_PRIVATE, reloaded._OPACUS_MAKE_PRIVATE_WITH_EPSILON):
        assert original.__module__ == "opacus.privacy_engine" and not hasattr(original, "__wrapped__")


def test_interface():
    acc = eo.EdgeworthAccountant()  # no-argument constructor
    assert isinstance(acc, IAccountant)
    assert acc.mechanism() == eo.EdgeworthAccountant.mechanism() == "edgeworth"
    assert acc.history == [] and len(acc) == 0 and acc.get_epsilon(DELTA) == 0.0
    for _ in range(3):
        acc.step(noise_multiplier=1.0, sample_rate=0.01)
    acc.step(noise_multiplier=0.8, sample_rate=0.02)
    acc.step(noise_multiplier=1.0, sample_rate=0.01)
    # Opacus's history format, consecutive equal steps merged; len counts steps, not entries.
    assert acc.history == [(1.0, 0.01, 3), (0.8, 0.02, 1), (1.0, 0.01, 1)]
    assert len(acc) == 5


@pytest.mark.parametrize("sigma,q,steps", [(1.0, 0.01, 1000), (0.7865, 2000 / 67349, 660), (2.0, 0.004, 17)])
@pytest.mark.parametrize("method", ["certified", "tilted", "edgeworth"])
def test_get_epsilon_equals_library_epsilon(sigma, q, steps, method):
    acc = eo.EdgeworthAccountant()
    acc.history = [(sigma, q, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", edgeworth.EdgeworthAccuracyWarning)
        try:
            expected = edgeworth.epsilon(sigma, DELTA, steps, q, method=method)
        except edgeworth.UnreachableTargetError:
            with pytest.raises(edgeworth.UnreachableTargetError):
                acc.get_epsilon(DELTA, method=method)
            return
        assert acc.get_epsilon(DELTA, method=method) == max(0.0, expected)


def test_certified_is_default_and_labelled():
    acc = eo.EdgeworthAccountant()
    acc.history = [(0.7865, 2000 / 67349, 660)]
    certified = acc.get_epsilon(DELTA)
    details = acc.epsilon_details(DELTA)
    assert details.label == "certified" and details.value == certified
    assert details.estimate == acc.get_epsilon(DELTA, method="tilted") < certified


def test_heterogeneous_history_equals_library_accountant():
    history = [(1.0, 0.01, 300), (0.8, 0.02, 100), (1.0, 0.01, 50)]
    acc = eo.EdgeworthAccountant()
    acc.history = list(history)
    ledger = edgeworth.Accountant()
    for sigma, q, n in history:
        ledger.compose(sigma, q, n)
    assert acc.get_epsilon(DELTA) == ledger.epsilon(DELTA)
    # Composition only adds privacy loss: more than each part alone.
    assert acc.get_epsilon(DELTA) > edgeworth.epsilon(1.0, DELTA, 350, 0.01)


@settings(max_examples=25, deadline=None)
@given(sigma=st.floats(0.3, 20.0), q=st.floats(1e-4, 1.0), steps=st.integers(1, 10**6),
       delta=st.floats(1e-10, 0.5))
def test_epsilon_never_negative(sigma, q, steps, delta):
    acc = eo.EdgeworthAccountant()
    acc.history = [(sigma, q, steps)]
    assert acc.get_epsilon(delta) >= 0.0
    for method in ("tilted", "edgeworth"):  # an estimate may decline, with a named error, but is never negative
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", edgeworth.EdgeworthAccuracyWarning)
            try:
                assert acc.get_epsilon(delta, method=method) >= 0.0
            except edgeworth.UnreachableTargetError:
                pass


def test_noiseless_step_is_unbounded():
    acc = eo.EdgeworthAccountant()
    acc.step(noise_multiplier=0.0, sample_rate=0.1)
    assert acc.get_epsilon(DELTA) == math.inf


@pytest.mark.parametrize("kwargs,name", [
    (dict(noise_multiplier=-1.0, sample_rate=0.1), "noise_multiplier"),
    (dict(noise_multiplier=float("nan"), sample_rate=0.1), "noise_multiplier"),
    (dict(noise_multiplier=1.0, sample_rate=-0.1), "sample_rate"),
    (dict(noise_multiplier=1.0, sample_rate=1e-13), "sample_rate"),
    (dict(noise_multiplier=1.0, sample_rate=1.5), "sample_rate"),
    (dict(noise_multiplier=1.0, sample_rate=float("nan")), "sample_rate"),
])
def test_bad_step_names_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        eo.EdgeworthAccountant().step(**kwargs)


# -- what Opacus passes step() ---------------------------------------------------------------------------------------
F32_SIGMA = float(np.float32(1.1))  # 1.100000023841858: the factor Opacus multiplies the clipping norm by
F32_Q = float(np.float32(0.01))


@pytest.mark.parametrize("sigma,q,expected", [
    (np.float32(1.1), np.float32(0.01), (F32_SIGMA, F32_Q)),
    (np.float64(1.1), np.float64(0.01), (1.1, 0.01)),
    (torch.tensor(1.1), torch.tensor(0.01), (F32_SIGMA, F32_Q)),
    (torch.tensor(1.1, dtype=torch.float64), torch.tensor(0.01, dtype=torch.float64), (1.1, 0.01)),
    (np.array(1.1), 0.01, (1.1, 0.01)),  # a 0-d array
    (np.int64(2), np.float16(0.5), (2.0, 0.5)),
    (2, 1, (2.0, 1.0)),
])
def test_numpy_and_torch_scalars_are_recorded_as_the_float_opacus_uses(sigma, q, expected):
    acc = eo.EdgeworthAccountant()
    for _ in range(3):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    assert acc.history == [(*expected, 3)]
    assert all(type(v) is float for v in acc.history[0][:2])
    assert acc.get_epsilon(DELTA) == edgeworth.epsilon(expected[0], DELTA, 3, expected[1])
    # RDP accepts these scalars too and reads the same numbers (it computes in their precision: float32 for a
    # float32, hence the tolerance).
    rdp = create_accountant("rdp")
    for _ in range(3):
        rdp.step(noise_multiplier=sigma, sample_rate=q)
    reference = create_accountant("rdp")
    reference.history = [(*expected, 3)]
    with warnings.catch_warnings():  # RDP's analysis on torch scalars hits numpy 2's __array_wrap__ deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        assert rdp.get_epsilon(DELTA) == pytest.approx(reference.get_epsilon(DELTA), rel=1e-6)


def test_float32_sigma_is_not_merged_with_the_double():
    acc = eo.EdgeworthAccountant()
    acc.step(noise_multiplier=1.1, sample_rate=0.01)
    acc.step(noise_multiplier=np.float32(1.1), sample_rate=0.01)
    acc.step(noise_multiplier=torch.tensor(1.1), sample_rate=0.01)
    assert acc.history == [(1.1, 0.01, 1), (F32_SIGMA, 0.01, 2)] and F32_SIGMA > 1.1


@pytest.mark.parametrize("bad", [
    np.array([1.1]), np.ones((1, 1)), torch.tensor([1.1, 1.2]), True, np.bool_(True), torch.tensor(True), "1.1",
    b"1", complex(1.1, 0), np.complex128(1.1), torch.tensor(1.1 + 0j), None, np.ma.masked_array(1.1, mask=True),
    np.datetime64("2020-01-01"), [1.1], 10 ** 400, np.float32("inf"), torch.tensor(float("nan")),
], ids=lambda v: type(v).__name__)
def test_non_real_scalars_are_refused_by_name(bad):
    acc = eo.EdgeworthAccountant()
    acc.step(noise_multiplier=1.0, sample_rate=0.01)
    with pytest.raises(ValueError, match="noise_multiplier"):
        acc.step(noise_multiplier=bad, sample_rate=0.01)
    with pytest.raises(ValueError, match="sample_rate"):
        acc.step(noise_multiplier=1.0, sample_rate=bad)
    assert acc.history == [(1.0, 0.01, 1)]


@pytest.mark.parametrize("sigma", [0.009999, 1e-300, 5e-3, 1.000001e6, 1e300, -0.5])
def test_sigma_outside_the_core_range_is_refused_at_step(sigma):
    acc = eo.EdgeworthAccountant()
    acc.step(noise_multiplier=1.0, sample_rate=0.01)
    for value in (sigma, np.float64(sigma), torch.tensor(sigma, dtype=torch.float64)):
        with pytest.raises(ValueError, match=r"noise_multiplier must be 0 \(no noise\) or in \[0.01, 1e\+06\]"):
            acc.step(noise_multiplier=value, sample_rate=0.01)
    assert acc.history == [(1.0, 0.01, 1)]  # a refused step records nothing
    acc.step(noise_multiplier=1.0, sample_rate=0.01)
    assert acc.history == [(1.0, 0.01, 2)]


def test_sigma_range_edges_are_accepted():
    acc = eo.EdgeworthAccountant()
    acc.step(noise_multiplier=0.01, sample_rate=1e-12)
    acc.step(noise_multiplier=1e6, sample_rate=1.0)
    assert acc.history == [(0.01, 1e-12, 1), (1e6, 1.0, 1)]
    ledger = edgeworth.Accountant()
    ledger.compose(0.01, 1e-12, 1)
    ledger.compose(1e6, 1.0, 1)
    assert acc.get_epsilon(DELTA) == ledger.epsilon(DELTA)


def test_make_private_refuses_out_of_range_sigma_before_wrapping():
    x, y = _separable()
    model = _mlp()
    engine = PrivacyEngine(accountant="edgeworth")
    with pytest.raises(ValueError, match="noise_multiplier"):
        engine.make_private(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                            data_loader=DataLoader(TensorDataset(x, y), batch_size=50), noise_multiplier=0.005,
                            max_grad_norm=1.0)
    assert len(engine.accountant) == 0 and engine.dataset is None  # Opacus had not started on the loader


def test_zero_sample_rate_is_recorded_and_costs_nothing():
    acc = eo.EdgeworthAccountant()
    for q in (0.0, 0.0, np.float32(0.0), torch.tensor(0.0)):
        acc.step(noise_multiplier=1.0, sample_rate=q)
    assert acc.history == [(1.0, 0.0, 4)] and len(acc) == 4  # every optimizer step is counted
    assert acc.get_epsilon(DELTA) == 0.0
    assert acc.get_epsilon(DELTA, method="tilted") == 0.0
    for _ in range(100):
        acc.step(noise_multiplier=1.0, sample_rate=0.01)
    acc.step(noise_multiplier=0.0, sample_rate=0.0)  # no noise, but nobody sampled: still free
    acc.step(noise_multiplier=1.0, sample_rate=0.0)
    assert acc.history == [(1.0, 0.0, 4), (1.0, 0.01, 100), (0.0, 0.0, 1), (1.0, 0.0, 1)] and len(acc) == 106
    assert acc.get_epsilon(DELTA) == edgeworth.epsilon(1.0, DELTA, 100, 0.01)
    assert acc.epsilon_details(DELTA).value == acc.get_epsilon(DELTA)
    fresh = eo.EdgeworthAccountant()
    fresh.load_state_dict(acc.state_dict())
    assert fresh.history == acc.history and fresh.get_epsilon(DELTA) == acc.get_epsilon(DELTA)


def test_make_private_with_float32_sigma_trains_and_accounts():
    """Opacus multiplies the clipping norm by the noise multiplier it was given; the ledger records that float."""
    engine = PrivacyEngine(accountant="edgeworth")
    _, optimizer, before, after, steps = _private_training(engine, sigma=np.float32(1.1))
    assert steps == 20 and after > before + 0.2
    assert engine.accountant.history == [(F32_SIGMA, 0.1, 20)]
    assert engine.get_epsilon(DELTA) == edgeworth.epsilon(F32_SIGMA, DELTA, 20, 0.1)
    # A float32 1.1 is a hair more noise than the double 1.1, so a hair less eps; RDP sees the same.
    assert engine.get_epsilon(DELTA) < edgeworth.epsilon(1.1, DELTA, 20, 0.1)


def test_noise_schedule_alternating_sigma_is_recorded_step_by_step():
    acc = eo.EdgeworthAccountant()
    sigmas = [1.0, 1.2] * 3 + [1.2, 1.2]
    for sigma in sigmas:
        acc.step(noise_multiplier=sigma, sample_rate=0.01)
    assert acc.history == [(1.0, 0.01, 1), (1.2, 0.01, 1)] * 2 + [(1.0, 0.01, 1), (1.2, 0.01, 3)]
    ledger = edgeworth.Accountant()
    for sigma in sigmas:
        ledger.compose(sigma, 0.01, 1)
    assert acc.get_epsilon(DELTA) == pytest.approx(ledger.epsilon(DELTA), rel=1e-9)


def test_bad_queries_name_parameter():
    acc = eo.EdgeworthAccountant()
    acc.history = [(1.0, 0.01, 10)]
    with pytest.raises(ValueError, match="delta"):
        acc.get_epsilon(0.0)
    with pytest.raises(ValueError, match="method"):
        acc.get_epsilon(DELTA, method="pld")


def test_state_dict_round_trip_and_validation():
    acc = eo.EdgeworthAccountant()
    acc.history = [(1.0, 0.01, 300), (0.8, 0.02, 100)]
    state = acc.state_dict()
    assert state["mechanism"] == "edgeworth" and state["history"] == acc.history
    fresh = eo.EdgeworthAccountant()
    fresh.load_state_dict(state)
    assert fresh.history == acc.history and len(fresh) == 400
    assert fresh.get_epsilon(DELTA) == acc.get_epsilon(DELTA)
    rdp = create_accountant("rdp")
    rdp.history = [(1.0, 0.01, 3)]
    with pytest.raises(ValueError, match="mechanism"):
        fresh.load_state_dict(rdp.state_dict())
    with pytest.raises(ValueError, match="history"):
        fresh.load_state_dict({"history": [(1.0, 0.01)], "mechanism": "edgeworth"})
    with pytest.raises(ValueError, match="steps"):
        fresh.load_state_dict({"history": [(1.0, 0.01, 0)], "mechanism": "edgeworth"})
    assert fresh.history == acc.history  # rejected states changed nothing


def _bad_states():
    nested = [(1.0, 0.01, 3)]
    for _ in range(5000):
        nested = [nested]
    good = [(1.0, 0.01, 3)]
    return [
        None, {}, [], "history", {"history": None, "mechanism": "edgeworth"},
        {"history": "abc", "mechanism": "edgeworth"}, {"history": 7, "mechanism": "edgeworth"},
        {"history": [None], "mechanism": "edgeworth"}, {"history": [(1.0, None, 3)], "mechanism": "edgeworth"},
        {"history": good + [(1.0, 0.01, True)], "mechanism": "edgeworth"},
        {"history": good + [(1.0, 0.01, 2.5)], "mechanism": "edgeworth"},
        {"history": good + [(float("nan"), 0.01, 1)], "mechanism": "edgeworth"},
        {"history": good + [(0.001, 0.01, 1)], "mechanism": "edgeworth"},  # sigma below the core's range
        {"history": good + [(1.0, 2.0, 1)], "mechanism": "edgeworth"},
        {"history": [(1.0, 0.01, 2 ** 53), (1.1, 0.01, 2)], "mechanism": "edgeworth"},  # over 2^53 steps in all
        {"history": nested, "mechanism": "edgeworth"},
        {"history": good}, {"mechanism": "edgeworth"}, {"history": good, "mechanism": None},
        {"history": good, "mechanism": "rdp"}, {"history": good, "mechanism": ["edgeworth"]},
        {"history": good, "mechanism": "edgeworth", "non_poisson_steps": 4},  # more than the history holds
        {"history": good, "mechanism": "edgeworth", "non_poisson_steps": -1},
        {"history": good, "mechanism": "edgeworth", "non_poisson_steps": None},
    ]


def test_failed_load_keeps_the_previous_ledger():
    acc = eo.EdgeworthAccountant()
    for sigma, q, n in [(1.0, 0.01, 300), (0.8, 0.02, 100)]:
        for _ in range(n):
            acc.step(noise_multiplier=sigma, sample_rate=q)
    history, spent = list(acc.history), acc.get_epsilon(DELTA)
    for state in _bad_states():
        with pytest.raises(ValueError):
            acc.load_state_dict(state)
        assert acc.history == history and acc.non_poisson_steps == 0, state
    # Still a working accountant: it answers, steps and saves as before.
    assert acc.get_epsilon(DELTA) == spent and len(acc) == 400
    acc.step(noise_multiplier=0.8, sample_rate=0.02)
    assert acc.history == [(1.0, 0.01, 300), (0.8, 0.02, 101)]
    fresh = eo.EdgeworthAccountant()
    fresh.load_state_dict(acc.state_dict())
    assert fresh.history == acc.history


def test_loaded_history_is_normalised():
    acc = eo.EdgeworthAccountant()
    acc.load_state_dict({"history": [[np.float32(1.1), np.float64(0.01), np.int64(5)], (2, 1, 1), (1.0, 0.5, 4.0)],
                         "mechanism": "edgeworth"})  # an older state: no non_poisson_steps
    assert acc.history == [(F32_SIGMA, 0.01, 5), (2.0, 1.0, 1), (1.0, 0.5, 4)] and acc.non_poisson_steps == 0
    assert all(type(n) is int for _, _, n in acc.history)


# -- calibration through Opacus -------------------------------------------------------------------------------------
def test_get_noise_multiplier_uses_library_calibration():
    for kwargs in (dict(steps=1000), dict(epochs=10)):
        sigma = opacus_utils.get_noise_multiplier(target_epsilon=8.0, target_delta=DELTA, sample_rate=0.01,
                                                  accountant="edgeworth", **kwargs)
        assert sigma == edgeworth.noise_multiplier(8.0, DELTA, 1000, 0.01)
    tilted = opacus_utils.get_noise_multiplier(target_epsilon=8.0, target_delta=DELTA, sample_rate=2000 / 67349,
                                               steps=660, accountant="edgeworth", method="tilted")
    assert tilted == edgeworth.noise_multiplier(8.0, DELTA, 660, 2000 / 67349, method="tilted")
    with pytest.raises(ValueError, match="steps"):
        opacus_utils.get_noise_multiplier(target_epsilon=8.0, target_delta=DELTA, sample_rate=0.01, steps=10,
                                          epochs=1, accountant="edgeworth")
    for epochs in (float("inf"), float("nan"), -1.0, 0, "3", 1e300):  # issue 16: inf was an OverflowError
        with pytest.raises(ValueError, match="epochs"):
            opacus_utils.get_noise_multiplier(target_epsilon=8.0, target_delta=DELTA, sample_rate=0.01,
                                              epochs=epochs, accountant="edgeworth")


def test_other_accountants_keep_opacus_calibration():
    args = dict(target_epsilon=3.0, target_delta=DELTA, sample_rate=0.02, steps=200, accountant="rdp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert opacus_utils.get_noise_multiplier(**args) == eo._OPACUS_GET_NOISE_MULTIPLIER(**args)


# -- PrivacyEngine(accountant="edgeworth") --------------------------------------------------------------------------
def _private_training(engine, steps_epochs=2, sigma=1.1, seed=0):
    x, y = _separable()
    model = _mlp(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(TensorDataset(x, y), batch_size=50)
    torch.manual_seed(seed)
    model, optimizer, loader = engine.make_private(module=model, optimizer=optimizer, data_loader=loader,
                                                   noise_multiplier=sigma, max_grad_norm=1.0)
    before = _accuracy(model, x, y)
    loss_fn = nn.CrossEntropyLoss()
    steps = 0
    for _ in range(steps_epochs):
        for xb, yb in loader:
            loss_fn(model(xb), yb).backward()
            optimizer.step()
            optimizer.zero_grad()
            steps += 1
    return model, optimizer, before, _accuracy(model, x, y), steps


def test_privacy_engine_trains_and_accounts():
    engine = PrivacyEngine(accountant="edgeworth")
    assert isinstance(engine.accountant, eo.EdgeworthAccountant)
    model, optimizer, before, after, steps = _private_training(engine)
    assert steps == 20 and len(engine.accountant) == 20
    assert after > before + 0.2  # it learns the separable task through the noise
    # Poisson sampling at q = 1 / (500 / 50), as Opacus records it.
    assert engine.accountant.history == [(1.1, 0.1, 20)]
    assert engine.get_epsilon(DELTA) == edgeworth.epsilon(1.1, DELTA, 20, 0.1)


def test_make_private_with_epsilon_returns_library_sigma():
    x, y = _separable()
    model = _mlp()
    engine = PrivacyEngine(accountant="edgeworth")
    loader = DataLoader(TensorDataset(x, y), batch_size=25)  # q = 1 / 20
    _, optimizer, _ = engine.make_private_with_epsilon(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), data_loader=loader,
        target_epsilon=3.0, target_delta=DELTA, epochs=7, max_grad_norm=1.0)
    expected = edgeworth.noise_multiplier(3.0, DELTA, int(7 / (1 / 20)), 1 / 20)
    assert optimizer.noise_multiplier == expected
    assert edgeworth.epsilon(expected, DELTA, 140, 1 / 20) <= 3.0


def test_checkpoint_round_trip_restores_spent_epsilon(tmp_path):
    engine = PrivacyEngine(accountant="edgeworth")
    model, optimizer, _, _, _ = _private_training(engine, steps_epochs=1)
    spent = engine.get_epsilon(DELTA)
    path = tmp_path / "ckpt.pt"
    engine.save_checkpoint(path=path, module=model, optimizer=optimizer)

    restored = PrivacyEngine(accountant="edgeworth")
    x, y = _separable()
    fresh = _mlp(seed=5)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.5)
    fresh, fresh_opt, _ = restored.make_private(module=fresh, optimizer=fresh_opt,
                                                data_loader=DataLoader(TensorDataset(x, y), batch_size=50),
                                                noise_multiplier=1.1, max_grad_norm=1.0)
    assert restored.get_epsilon(DELTA) == 0.0
    restored.load_checkpoint(path=path, module=fresh, optimizer=fresh_opt)
    assert restored.accountant.history == engine.accountant.history
    assert restored.get_epsilon(DELTA) == spent
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


# -- sampling: a certified eps assumes Poisson-sampled batches ----------------------------------------------------
def _shuffled_training(engine, epochs=2, **make_private_kwargs):
    """Training on a shuffled fixed-size loader (poisson_sampling=False): 10 batches of 50 an epoch."""
    x, y = _separable()
    model = _mlp()
    torch.manual_seed(0)
    model, optimizer, loader = engine.make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=50, shuffle=True), noise_multiplier=1.1,
        max_grad_norm=1.0, **make_private_kwargs)
    for _ in range(epochs):
        for xb, yb in loader:
            nn.CrossEntropyLoss()(model(xb), yb).backward()
            optimizer.step()
            optimizer.zero_grad()
    return model, optimizer


def test_shuffled_loader_warns_and_refuses_a_certified_eps(tmp_path):
    engine = PrivacyEngine(accountant="edgeworth")
    with pytest.warns(eo.NonPoissonSamplingWarning, match="poisson_sampling=False"):
        model, optimizer = _shuffled_training(engine, poisson_sampling=False)
    acc = engine.accountant
    # Opacus accounts such a run at q = batch / n, as if Poisson-sampled; the steps are counted as what they were.
    assert acc.history == [(1.1, 0.1, 20)] and acc.non_poisson_steps == 20
    with pytest.raises(eo.NonPoissonSamplingError, match="20 of the 20 steps .* not Poisson-sampled"):
        engine.get_epsilon(DELTA)
    for method in ("tilted", "edgeworth"):  # an estimate of the Poisson mechanism is no estimate of this one
        with pytest.raises(eo.NonPoissonSamplingError):
            acc.get_epsilon(DELTA, method=method)
    with pytest.raises(eo.NonPoissonSamplingError):
        acc.epsilon_details(DELTA)
    # On request, the figure as if Poisson-sampled: the same number, labelled and warned as uncertified.
    with pytest.warns(eo.NonPoissonSamplingWarning, match="uncertified"):
        value = acc.get_epsilon(DELTA, assume_poisson=True)
    assert value == edgeworth.epsilon(1.1, DELTA, 20, 0.1)
    with pytest.warns(eo.NonPoissonSamplingWarning):
        details = acc.epsilon_details(DELTA, assume_poisson=True)
    assert details.label == "uncertified" and not details.certified and details.value == value
    assert "not Poisson-sampled" in details.inputs["sampling"]
    # The count survives a checkpoint, so a resumed run stays uncertified.
    state = acc.state_dict()
    assert state["non_poisson_steps"] == 20
    path = tmp_path / "ckpt.pt"
    engine.save_checkpoint(path=path, module=model, optimizer=optimizer)
    restored = PrivacyEngine(accountant="edgeworth")
    restored.load_checkpoint(path=path, module=GradSampleModule(_mlp(seed=5)))
    assert restored.accountant.history == acc.history and restored.accountant.non_poisson_steps == 20
    with pytest.raises(eo.NonPoissonSamplingError):
        restored.get_epsilon(DELTA)


def test_mixed_ledger_counts_only_the_shuffled_steps():
    engine = PrivacyEngine(accountant="edgeworth")
    _private_training(engine, steps_epochs=1)  # Poisson: 10 steps
    assert engine.accountant.non_poisson_steps == 0 and engine.get_epsilon(DELTA) > 0
    with pytest.warns(eo.NonPoissonSamplingWarning):
        _shuffled_training(engine, epochs=1, poisson_sampling=False)
    assert len(engine.accountant) == 20 and engine.accountant.non_poisson_steps == 10
    with pytest.raises(eo.NonPoissonSamplingError, match="10 of the 20 steps"):
        engine.get_epsilon(DELTA)


def test_poisson_loaders_are_recognised_and_certified():
    engine = PrivacyEngine(accountant="edgeworth")
    with warnings.catch_warnings():
        warnings.simplefilter("error", eo.NonPoissonSamplingWarning)
        _shuffled_training(engine)  # Opacus's default, poisson_sampling=True, replaces the shuffled loader
        assert engine.accountant.non_poisson_steps == 0
        assert engine.get_epsilon(DELTA) == edgeworth.epsilon(1.1, DELTA, len(engine.accountant), 0.1)
        # A loader the user already made Poisson stays Poisson with poisson_sampling=False.
        from opacus.data_loader import DPDataLoader
        x, y = _separable()
        model = _mlp()
        other = PrivacyEngine(accountant="edgeworth")
        _, optimizer, loader = other.make_private(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
            data_loader=DPDataLoader.from_data_loader(DataLoader(TensorDataset(x, y), batch_size=50)),
            noise_multiplier=1.1, max_grad_norm=1.0, poisson_sampling=False)
        for xb, yb in loader:
            nn.CrossEntropyLoss()(model(xb), yb).backward()
            optimizer.step()
            optimizer.zero_grad()
    assert other.accountant.non_poisson_steps == 0 and len(other.accountant) == 10
    assert other.get_epsilon(DELTA) == edgeworth.epsilon(1.1, DELTA, 10, 0.1)


def test_make_private_with_epsilon_refuses_a_shuffled_loader():
    x, y = _separable()
    model = _mlp()
    engine = PrivacyEngine(accountant="edgeworth")
    with pytest.raises(eo.NonPoissonSamplingError, match="poisson_sampling"):
        engine.make_private_with_epsilon(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            data_loader=DataLoader(TensorDataset(x, y), batch_size=25), target_epsilon=3.0, target_delta=DELTA,
            epochs=7, max_grad_norm=1.0, poisson_sampling=False)
    assert engine.dataset is None and len(engine.accountant) == 0  # refused before Opacus touched anything


def test_other_accountants_keep_opacus_sampling_behaviour():
    for name in ("rdp", "prv"):
        engine = PrivacyEngine(accountant=name)
        with warnings.catch_warnings():
            warnings.simplefilter("error", eo.NonPoissonSamplingWarning)
            _shuffled_training(engine, epochs=1, poisson_sampling=False)
        assert engine.accountant.history == [(1.1, 0.1, 10)]


# -- the clipping and the noise are real ----------------------------------------------------------------------------
def _reference_per_example_gradients(model, x, y):
    """One example at a time with plain autograd (no Opacus)."""
    ref = copy.deepcopy(model)
    loss_fn = nn.CrossEntropyLoss()
    rows = []
    for i in range(len(x)):
        ref.zero_grad()
        loss_fn(ref(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in ref.parameters()]))
    return torch.stack(rows)


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
def test_per_example_clipping_bounds_every_gradient(mode):
    torch.manual_seed(0)
    n = 32
    x, y = torch.randn(n, 8) * 3, torch.randint(0, 4, (n,))
    model = _mlp(d_in=8, hidden=32, classes=4)
    reference = _reference_per_example_gradients(model, x, y)
    norms = reference.norm(dim=1)
    clip = float(norms.median())  # clipping bites on half the examples and leaves the others alone

    engine = PrivacyEngine(accountant="edgeworth")
    with pytest.warns(eo.NonPoissonSamplingWarning):  # fixed batches, to measure exactly what is clipped
        out = engine.make_private(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                                  data_loader=DataLoader(TensorDataset(x, y), batch_size=n), noise_multiplier=1.0,
                                  max_grad_norm=clip, poisson_sampling=False, grad_sample_mode=mode,
                                  criterion=nn.CrossEntropyLoss())
    wrapped, optimizer = out[0], out[1]
    criterion = out[2] if mode == "ghost" else nn.CrossEntropyLoss()

    def clipped_sum(xb, yb):
        """The clipped gradient sum Opacus would noise (p.summed_grad), measured on a real backward pass."""
        criterion(wrapped(xb), yb).backward()
        if mode == "ghost":
            optimizer.accumulate()
        else:
            optimizer.clip_and_accumulate()
        total = _flat([p.summed_grad for p in optimizer.params])
        optimizer.zero_grad()
        return total

    # One example at a time: what Opacus adds for each example has norm at most C, and is the example's own
    # gradient scaled by min(1, C / norm).
    measured = torch.stack([clipped_sum(x[i:i + 1], y[i:i + 1]) for i in range(n)])
    measured_norms = measured.norm(dim=1)
    assert float(measured_norms.max()) <= clip * (1 + 1e-5)
    expected = reference * torch.clamp(clip / (norms + 1e-6), max=1.0).unsqueeze(1)
    torch.testing.assert_close(measured, expected, rtol=1e-4, atol=1e-6)
    # The whole batch at once sums exactly those clipped gradients.
    torch.testing.assert_close(clipped_sum(x, y), expected.sum(0), rtol=1e-4, atol=1e-5)


def test_added_noise_has_std_sigma_times_c():
    """The noise Opacus adds to the clipped sum, measured coordinate by coordinate.

    With n independent N(0, s^2) coordinates, the sample standard deviation has
    standard error s / sqrt(2 (n - 1)) and the sample mean s / sqrt(n); the
    sample kurtosis of a normal has standard error sqrt(24 / n).  With
    n = 13 093 coordinates the tolerances below are 5 standard errors (2.9 %
    of s for the std), so a correct implementation fails with probability
    below 1e-6, while noise added twice (std sqrt(2) s) or not at all fails
    for certain.  The seed is fixed, so the test is deterministic too.
    """
    torch.manual_seed(0)
    sigma, clip, batch = 1.3, 0.5, 16
    model = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 37))
    x, y = torch.randn(batch, 64), torch.randint(0, 37, (batch,))
    engine = PrivacyEngine(accountant="edgeworth")
    with pytest.warns(eo.NonPoissonSamplingWarning):  # one fixed batch, to measure the noise on a known sum
        model, optimizer, _ = engine.make_private(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
            data_loader=DataLoader(TensorDataset(x, y), batch_size=batch), noise_multiplier=sigma,
            max_grad_norm=clip, poisson_sampling=False)
    noises = []
    for _ in range(2):
        nn.CrossEntropyLoss()(model(x), y).backward()
        optimizer.step()  # clip, noise, scale by 1 / expected batch size, account
        noised = _flat([p.grad for p in optimizer.params]) * optimizer.expected_batch_size
        noises.append((noised - _flat([p.summed_grad for p in optimizer.params])).double().numpy())
        optimizer.zero_grad()
    n = noises[0].size
    assert n == sum(p.numel() for p in model.parameters()) == 13_093
    target = sigma * clip
    for noise in noises:
        assert abs(noise.std(ddof=1) / target - 1) < 5 / math.sqrt(2 * (n - 1))
        assert abs(noise.mean()) < 5 * target / math.sqrt(n)
        kurtosis = np.mean((noise - noise.mean()) ** 4) / noise.var() ** 2
        assert abs(kurtosis - 3) < 5 * math.sqrt(24 / n)
    # Fresh noise every step.
    assert abs(np.corrcoef(noises[0], noises[1])[0, 1]) < 5 / math.sqrt(n)
    assert engine.accountant.history == [(sigma, 1.0, 2)] and engine.accountant.non_poisson_steps == 2
