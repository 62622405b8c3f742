"""Hostile inputs of issue 16: refused up front with a ValueError that names the parameter.

The contract (``edgeworth/_validate.py``): every wrong value or wrong type given
to the public API raises ``ValueError`` (``UnreachableTargetError``, a
ValueError, where a method declines) whose message names the parameter; never
``TypeError``, ``OverflowError``, ``RecursionError`` or ``AttributeError``,
never a silent coercion, a NaN or a negative probability, and no call runs
unbounded: the array size, the broadcast size, the mixture's components, the
ELS contribution bound and the dp_accounting tree are capped, and a long array
call stops at Ctrl-C.  Each case here failed before (issue 16's adversarial
sweep); ``test_no_hostile_input_hangs_or_takes_a_gibibyte`` runs all of them in a
fresh process and checks its peak memory.
"""
import math
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import edgeworth
from edgeworth import userlevel
from edgeworth.mechanisms import Gaussian, Laplace, MixtureOfGaussians, PoissonSubsampled

GOOD = dict(sigma=1.0, delta=1e-5, steps=100, q=0.01)


def _nested_event(depth):
    from dp_accounting import dp_event
    ev = dp_event.GaussianDpEvent(1.0)
    for _ in range(depth):
        ev = dp_event.ComposedDpEvent([dp_event.SelfComposedDpEvent(ev, 1)])
    return ev


def _nested_state(depth):
    d = {"type": "Gaussian", "noise_multiplier": 1.0}
    for _ in range(depth):
        d = {"type": "PoissonSubsampled", "mechanism": d, "sampling_rate": 0.5}
    return {"history": [{"mechanism": d, "steps": 1}]}


def _nested_list(depth):
    x = [1.0, 0.01, 10]
    for _ in range(depth):
        x = [x]
    return x


class GaussianDpEvent:  # a look-alike that lacks the fields (AttributeError before)
    pass


class SelfComposedDpEvent:
    count = 3


def _compare(**limits):
    from edgeworth.comparison import compare
    return compare(sigma=1.0, q=0.01, steps=10, delta=1e-5, backends=["edgeworth"], **limits)


def _get_noise_multiplier(**kw):
    from edgeworth import opacus as eo
    return eo.get_noise_multiplier(target_epsilon=1.0, target_delta=1e-5, sample_rate=0.01, accountant="edgeworth",
                                   **kw)


def _full_ledger():
    return edgeworth.Accountant().compose(1.0, 0.01, 2 ** 52).compose(0.9, 0.01, 2 ** 52)


def _mixture(n):
    w = np.full(n, 1.0 / n)
    w[-1] = 1.0 - w[:-1].sum()
    return MixtureOfGaussians(1.0, tuple(np.linspace(0.0, 1.0, n)), tuple(w))


# (id, call, regex the message must match; it starts with, or names, the parameter)
HOSTILE = [
    # -- unbounded cost: caps checked up front --------------------------------------------------
    ("contribution_bound 10**6 (epsilon)",
     lambda: userlevel.epsilon(sigma=1.0, delta=1e-6, steps=10, q=0.01, contribution_bound=10 ** 6),
     r"^contribution_bound must be at most 511 for ELS"),
    ("contribution_bound 10**6 (noise_multiplier)",
     lambda: userlevel.noise_multiplier(eps=2.0, delta=1e-6, steps=10, q=0.01, contribution_bound=10 ** 6),
     r"^contribution_bound must be at most 511 for ELS"),
    ("contribution_bound 512 (els_mechanism)", lambda: userlevel.els_mechanism(1.0, 0.01, 512),
     r"^contribution_bound must be at most 511"),
    ("contribution_bound 10**6 (binomial_weights)", lambda: userlevel.binomial_weights(10 ** 6, 0.5),
     r"^contribution_bound must be at most 511"),
    ("broadcast of 10**8 elements",
     lambda: edgeworth.epsilon(np.ones((10000, 1)), 1e-5, 1000, np.full((1, 10000), .01)),
     r"^arguments broadcast to shape \(10000, 10000\) = 100000000 elements, more than the limit of 1000000"),
    ("an array of 10**6 + 1 elements", lambda: edgeworth.delta(np.ones(10 ** 6 + 1), 1.0, 10, 0.01),
     r"^sigma has 1000001 elements, more than the limit of 1000000"),
    ("3000 mixture components", lambda: _mixture(3000), r"^sensitivities: a mixture may have at most 512 components"),
    ("a sampled 512-component mixture",
     lambda: PoissonSubsampled(MixtureOfGaussians(1.0, tuple(range(1, 513)), (1 / 512,) * 512), 0.1),
     r"^mechanism: sampling adds a component .* at most 512 components"),
    ("a dp_accounting tree of 2^40 events", lambda: edgeworth.from_dp_event(_doubling_event(40)),
     r"^event: the tree holds more than 1000000 events"),
    # -- wrong exception types --------------------------------------------------------------------
    ("steps 10**400 (epsilon)", lambda: edgeworth.epsilon(1.0, 1e-5, 10 ** 400, 0.01), r"^steps must be at most 2\^53"),
    ("steps 10**400 (compose)", lambda: edgeworth.Accountant().compose(1.0, 0.01, 10 ** 400),
     r"^steps must be at most 2\^53"),
    ("steps 10**400 (SelfComposedDpEvent)",
     lambda: edgeworth.from_dp_event(_self_composed(10 ** 400)), r"^SelfComposedDpEvent: count .* more than 2\^53"),
    ("group_privacy_noise_multiplier at large eps and k",
     lambda: userlevel.group_privacy_noise_multiplier(eps=900.0, delta=1e-5, steps=10, q=0.01,
                                                      contribution_bound=1000),
     r"^eps: the example-level delta .* underflows"),
    ("group_privacy_delta at eps' = 1000", lambda: userlevel.group_privacy_delta(1000.0 + 1e-9, 1e-5, 10),
     r"^example_eps must be in \[0, 1000\]"),
    ("Opacus epochs = inf", lambda: _get_noise_multiplier(epochs=float("inf")), r"^epochs must be a finite number"),
    ("Opacus epochs = 1e300", lambda: _get_noise_multiplier(epochs=1e300), r"^epochs: .* more than 2\^53"),
    ("compare time_limit = 1e308", lambda: _compare(time_limit=1e308), r"^time_limit must be in \(0, 1e\+06\]"),
    ("Gaussian(array)", lambda: Gaussian(np.ones(2)), r"^noise_multiplier must be a single number"),
    ("Laplace(array)", lambda: Laplace(np.ones(2)), r"^noise_multiplier \(Laplace scale b\) must be a single number"),
    ("PoissonSubsampled(array rate)", lambda: PoissonSubsampled(Gaussian(1.0), np.ones(2)),
     r"^sampling_rate must be a single number"),
    ("compose(steps=np.array([7]))",
     lambda: edgeworth.Accountant().compose(mechanism=Gaussian(1.0), steps=np.array([7])),
     r"^steps must be a single number"),
    ("userlevel.epsilon(array sigma)",
     lambda: userlevel.epsilon(sigma=np.ones(2), delta=1e-5, steps=10, q=0.01, contribution_bound=2),
     r"^sigma must be a single number"),
    ("userlevel.noise_multiplier(array eps)",
     lambda: userlevel.noise_multiplier(eps=np.ones(2), delta=1e-5, steps=10, q=0.01, contribution_bound=2),
     r"^eps must be a single number"),
    ("userlevel.group_privacy_epsilon(array q)",
     lambda: userlevel.group_privacy_epsilon(sigma=1.0, delta=1e-5, steps=10, q=np.full(2, 0.01),
                                             contribution_bound=2),
     r"^q must be a single number"),
    ("uls_predicted_noise(string examples_per_step)",
     lambda: userlevel.uls_predicted_noise([1, 2], 2, eps=1.0, delta=1e-5, steps=10, examples_per_step="5"),
     r"^examples_per_step must be a real number"),
    ("None in a history", lambda: edgeworth.Accountant().load_state_dict({"history": [None]}),
     r"^history entries must be .* got None at history\[0\]"),
    ("a number as a history", lambda: edgeworth.Accountant().load_state_dict({"history": 5}),
     r"^state must be a dict with a 'history' list"),
    ("None as a ComposedDpEvent's events", lambda: edgeworth.from_dp_event(_composed(None)),
     r"^ComposedDpEvent: events must be a list of events, got None"),
    ("None as a SelfComposedDpEvent count", lambda: edgeworth.from_dp_event(_self_composed(None)),
     r"^SelfComposedDpEvent: count must be an integer >= 0, got None"),
    ("None as a sampling probability", lambda: edgeworth.from_dp_event(_sampled(None)),
     r"^PoissonSampledDpEvent.sampling_probability must be a real number"),
    ("None as mixture sensitivities", lambda: edgeworth.from_dp_event(_mixture_event(None)),
     r"^MixtureOfGaussiansDpEvent: sensitivities must be a real number"),
    ("a state dict nested 5,000 deep", lambda: edgeworth.Accountant().load_state_dict(_nested_state(5000)),
     r"^mechanism of a PoissonSubsampled must be a Gaussian, Laplace or MixtureOfGaussians"),
    ("a history entry nested 5,000 deep",
     lambda: edgeworth.Accountant().load_state_dict({"history": [_nested_list(5000)]}),
     r"^history entries must be \(noise_multiplier, sample_rate, steps\), got \[\[\[\[\.\.\.\]\]\]\]"),
    ("a fake GaussianDpEvent without fields", lambda: edgeworth.from_dp_event(GaussianDpEvent()),
     r"^GaussianDpEvent.noise_multiplier: the event has no field"),
    ("a fake SelfComposedDpEvent without its event", lambda: edgeworth.from_dp_event(SelfComposedDpEvent()),
     r"^SelfComposedDpEvent.event: the event has no field"),
    # -- silent coercions and clamps -----------------------------------------------------------------
    ("steps = 2**53 + 1", lambda: edgeworth.epsilon(1.0, 1e-5, 2 ** 53 + 1, 0.01),
     r"^steps must be at most 2\^53 = 9007199254740992, got 9007199254740993"),
    ("steps = np.int64(2**53 + 1)", lambda: edgeworth.delta(1.0, 1.0, np.array([2 ** 53 + 1]), 0.01),
     r"^steps must be at most 2\^53 = 9007199254740992, got 9007199254740993"),
    ("sigma = True", lambda: edgeworth.epsilon(True, 1e-5, 10, 0.01), r"^sigma must be a real number"),
    ("steps = [10, True]", lambda: edgeworth.epsilon(1.0, 1e-5, [10, True], 0.01), r"^steps must be a real number"),
    ("q = np.bool_", lambda: edgeworth.epsilon(1.0, 1e-5, 10, np.bool_(True)), r"^q must be a real number"),
    ("byte strings in an array", lambda: edgeworth.epsilon(np.array([b"1"]), 1e-5, 10, 0.01),
     r"^sigma must be a real number .*byte strings"),
    ("np.datetime64", lambda: edgeworth.epsilon(np.datetime64(1, "s"), 1e-5, 10, 0.01),
     r"^sigma must be a real number"),
    ("a masked array", lambda: edgeworth.epsilon(np.ma.masked_array([1.0, 0.0], mask=[0, 1]), 1e-5, 10, 0.01),
     r"^sigma: masked arrays are not accepted"),
    ("a complex array", lambda: edgeworth.epsilon(np.array([1 + 1j]), 1e-5, 10, 0.01),
     r"^sigma must be a real number .*complex"),
    ("MixtureOfGaussians(1., '12', ...)", lambda: MixtureOfGaussians(1.0, "12", (1.0,)),
     r"^sensitivities must be a real number"),
    ("MixtureOfGaussians with a string weight", lambda: MixtureOfGaussians(1.0, (0, 1), ("0.5", 0.5)),
     r"^weights must be a real number"),
    ("a ledger past 2^53 steps", lambda: _full_ledger().compose(0.8, 0.01, 2),
     r"^steps: the ledger holds 9007199254740992 steps, and 2 more"),
    ("compare memory_limit = 1e-12", lambda: _compare(memory_limit=1e-12),
     r"^memory_limit must be in \[0.000976562, 1.04858e\+06\]"),
    # -- NaN, or a negative value where a number is promised ----------------------------------------
    ("group_privacy_delta(nan, ...)", lambda: userlevel.group_privacy_delta(math.nan, 1e-5, 4),
     r"^example_eps must be in \[0, 1000\], got nan"),
    ("group_privacy_delta(-1, -1e-5, 4)", lambda: userlevel.group_privacy_delta(-1.0, -1e-5, 4),
     r"^example_eps must be in \[0, 1000\], got -1.0"),
    ("group_privacy_delta(1, -1e-5, 4)", lambda: userlevel.group_privacy_delta(1.0, -1e-5, 4),
     r"^example_delta must be in \[0, 1\], got -1e-05"),
    ("binomial_weights(4, nan)", lambda: userlevel.binomial_weights(4, math.nan), r"^q must be in \(0, 1\], got nan"),
    ("choose_contribution_bound(uint64 2^64 - 1)",
     lambda: userlevel.choose_contribution_bound(np.array([2 ** 64 - 1], dtype=np.uint64), "els"),
     r"^examples_per_user must be a non-empty 1-d sequence of integers in \[1, 2\^53\]"),
    ("choose_contribution_bound(candidates=[])",
     lambda: userlevel.choose_contribution_bound([3, 5, 7], "uls", eps=1.0, delta=1e-5, steps=10,
                                                 examples_per_step=5, candidates=[]),
     r"^candidates must be a non-empty sequence"),
]


def _composed(events):
    from dp_accounting import dp_event
    return dp_event.ComposedDpEvent(events)


def _self_composed(count):
    from dp_accounting import dp_event
    return dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(1.0), count)


def _sampled(q):
    from dp_accounting import dp_event
    return dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(1.0))


def _mixture_event(sens):
    from dp_accounting import dp_event
    return dp_event.MixtureOfGaussiansDpEvent(1.0, sens, sens)


def _doubling_event(depth):
    """A tree of 2^depth Gaussian leaves in `depth` levels (each level repeats the one below twice)."""
    from dp_accounting import dp_event
    ev = dp_event.GaussianDpEvent(1.0)
    for _ in range(depth):
        ev = dp_event.ComposedDpEvent([ev, ev])
    return ev


@pytest.mark.parametrize("name,call,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_a_value_error_naming_the_parameter(name, call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_no_hostile_input_hangs_or_takes_a_gibibyte(tmp_path):
    # Must-show 4: every case above, in a fresh process: it ends (the timeout is a hang detector only),
    # each raises exactly ValueError (or a subclass), and the process's peak resident set stays under 1 GiB
    # (the 10**8-element broadcast alone reached 6.7 GiB before).
    script = (
        "import resource, sys, warnings\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "warnings.simplefilter('ignore')\n"
        "import test_hostile_inputs as t\n"
        "for name, call, _ in t.HOSTILE:\n"
        "    try:\n"
        "        call()\n"
        "    except ValueError:\n"
        "        continue\n"
        "    except BaseException as exc:\n"
        "        print('WRONG', name, type(exc).__name__, exc)\n"
        "        continue\n"
        "    print('ACCEPTED', name)\n"
        # VmHWM, this process image's own peak: ru_maxrss carries over the parent's peak through fork and exec
        # (a pytest process that has loaded models reads 1.7 GiB there before this script allocates anything)
        "try:\n"
        "    peak = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "except OSError:\n"
        "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "print('MAXRSS', peak)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(edgeworth.__file__))] +
                                                      sys.path))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert not [ln for ln in lines if ln.startswith(("WRONG", "ACCEPTED"))], out.stdout
    peak = int(lines[-1].split()[1])
    assert peak < 2 ** 30, f"peak resident set {peak / 2 ** 20:.0f} MiB"


# -- what the refusals must not refuse ---------------------------------------------------------------

def test_the_edges_of_the_caps_are_served():
    assert len(userlevel.els_mechanism(1.0, 0.01, 511).sensitivities) == 512
    w = userlevel.binomial_weights(511, 0.5)
    assert w.shape == (512,) and math.fsum(w) == pytest.approx(1.0, abs=1e-15) and np.all(w >= 0)
    # a mixture of 512 components that already holds shift 0 can be sampled (its support stays 512)
    mix = MixtureOfGaussians(1.0, tuple(range(512)), (1 / 512,) * 512)
    assert PoissonSubsampled(mix, 0.5).sampling_rate == 0.5
    # steps exactly 2^53, as an int and as an int64 array
    assert edgeworth._validate.check_steps(2 ** 53) == 2.0 ** 53
    assert edgeworth._validate.check_steps(np.array([2 ** 53], dtype=np.int64))[0] == 2.0 ** 53
    # numpy numbers and nested lists of them are numbers
    assert edgeworth.epsilon(np.float32(1.0), 1e-5, np.int64(100), 0.01) == edgeworth.epsilon(1.0, 1e-5, 100, 0.01)
    assert edgeworth.epsilon([[1.0]], 1e-5, [100], np.uint8(1)).shape == (1, 1)
    # ULS and group privacy take any contribution bound
    assert userlevel.epsilon(sigma=1.0, delta=1e-5, steps=10, q=0.01, contribution_bound=10 ** 6,
                             sampling="uls") == edgeworth.epsilon(1.0, 1e-5, 10, 0.01)


def test_a_deep_dp_event_tree_is_read_without_recursion():
    # ComposedDpEvent([SelfComposedDpEvent(., 1)]) nested 5,000 deep (RecursionError before) is one Gaussian step
    acc = edgeworth.from_dp_event(_nested_event(5000))
    assert acc.history == [(Gaussian(1.0), 1)]
    # the Gaussian mechanism's exact eps (Balle and Wang 2018, Thm. 8) is the bound's floor
    from scipy.stats import norm
    eps = acc.epsilon(1e-5)
    exact_delta = norm.cdf(0.5 - eps) - math.exp(eps) * norm.cdf(-0.5 - eps)
    assert 0.9e-5 < exact_delta <= 1e-5 * (1 + 1e-9)


def test_group_privacy_at_large_k_is_a_bound_not_an_overflow():
    # OverflowError before: k e^((k-1) eps') overflowed
    assert userlevel.group_privacy_delta(1000.0, 1e-5, 10 ** 6) == 1.0
    assert userlevel.group_privacy_delta(1.0, 0.0, 10 ** 6) == 0.0
    assert userlevel.group_privacy_delta(0.5, 1e-5, 4) == pytest.approx(4 * math.exp(1.5) * 1e-5, rel=1e-15)
    eps = userlevel.group_privacy_epsilon(sigma=1.0, delta=1e-5, steps=10, q=0.01, contribution_bound=10 ** 5)
    # a group of k examples is never more private than one example
    assert math.isfinite(eps) and eps >= edgeworth.epsilon(1.0, 1e-5, 10, 0.01)


def test_choose_contribution_bound_reads_uint64_counts():
    assert userlevel.choose_contribution_bound(np.array([3, 5, 7], dtype=np.uint64), "els") == 5


def test_a_decline_in_an_array_call_names_the_element_and_its_inputs():
    # the tilted estimate declines at the seeded grid's one known decline (tests/test_tilted.py); before, the
    # message did not say which element
    known = r"\(sigma = 0\.7165652591, delta = 1\.66e-05, steps = 102, q = 0\.000935779\): no estimate answers"
    with pytest.raises(edgeworth.UnreachableTargetError, match=r"^element 1 " + known):
        edgeworth.epsilon([1.0, 0.7165652591], 1.66e-5, 102, 0.000935779, method="tilted")
    with pytest.raises(edgeworth.UnreachableTargetError, match=r"^element \(1, 0\) " + known):
        edgeworth.epsilon([[1.0, 1.0], [0.7165652591, 1.0]], 1.66e-5, 102, 0.000935779, method="tilted")
    # a scalar call's message is unchanged
    with pytest.raises(edgeworth.UnreachableTargetError, match=r"^no estimate answers"):
        edgeworth.epsilon(0.7165652591, 1.66e-5, 102, 0.000935779, method="tilted")


def test_a_long_array_call_stops_at_ctrl_c():
    # epsilon over 1e5 sigmas took 311 s and Ctrl-C was honoured only when the call ended.  A SIGINT
    # 0.5 s into a call that would take minutes must end it with KeyboardInterrupt; the 60 s bound only
    # catches a call that ignores the signal.
    sigmas = np.linspace(0.5, 5.0, 50_000)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            edgeworth.epsilon(sigmas, 1e-5, 1000, 0.01)
        elapsed = time.monotonic() - start
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert elapsed < 60.0
    # and the next call works
    assert edgeworth.epsilon(1.0, 1e-5, 10, 0.01) > 0
