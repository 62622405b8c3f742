"""The command line, in-process and as the installed console script."""
import json
import os
import subprocess
import sys

import pytest

import edgeworth
from edgeworth.cli import main


def test_sigma_defaults_are_sensible_and_stated(capsys):
    assert main(["sigma"]) == 0
    out = capsys.readouterr().out
    assert "assumed eps = 8, delta = 1e-05, steps = 1000, q = 0.01" in out
    assert "certified" in out
    sigma = edgeworth.noise_multiplier(8.0, 1e-5, 1000, 0.01)
    assert f"sigma = {sigma:.6g}" in out


def test_sigma_json(capsys):
    assert main(["sigma", "--eps", "8", "--delta", "1e-5", "--steps", "1000", "--q", "0.01", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label"] == "certified" and out["quantity"] == "noise_multiplier"
    assert out["value"] == edgeworth.noise_multiplier(8.0, 1e-5, 1000, 0.01)
    assert out["assumed"] == {} and out["dominating_ordering"] == "remove"


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")  # the plain estimate is off here (+3 to +5 %)
def test_epsilon_and_delta_commands(capsys):
    assert main(["epsilon", "--sigma", "1.0", "--delta", "1e-5", "--steps", "1000", "--q", "0.01",
                 "--method", "edgeworth", "--order", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label"] == "estimate" and out["order"] == 1
    assert out["value"] == edgeworth.epsilon(1.0, 1e-5, 1000, 0.01, method="edgeworth", order=1)
    assert main(["delta", "--sigma", "1.0", "--eps", "2"]) == 0
    assert "certified upper bound on delta" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["sigma", "--delta", "2"], "delta must be in (0, 1)"),
    (["sigma", "--q", "0"], "q must be in [1e-12, 1]"),
    (["epsilon", "--sigma", "-1"], "sigma must be in [0.01, 1e+06]"),
    (["sigma", "--order", "5", "--method", "edgeworth"], "order must be 1, 2 or 3"),
])
def test_bad_input_exits_2_with_a_message(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_console_script(tmp_path):
    # python -m edgeworth runs the same entry point as the `edgeworth` script
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "edgeworth", "sigma", "--eps", "8", "--delta", "1e-5",
                           "--steps", "1000", "--q", "0.01"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "certified" in proc.stdout and "sigma = " in proc.stdout


def test_tilted_method(capsys):
    assert main(["sigma", "--eps", "8", "--delta", "1e-6", "--steps", "3920", "--q", str(2000 / 392702),
                 "--method", "tilted"]) == 0
    out = capsys.readouterr().out
    assert "saddle-point eps at this sigma equals the target" in out
    assert f"sigma = {edgeworth.noise_multiplier(8.0, 1e-6, 3920, 2000 / 392702, method='tilted'):.6g}" in out
