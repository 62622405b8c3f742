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
    out = strict_json(capsys.readouterr().out)
    assert out["label"] == "certified" and out["quantity"] == "noise_multiplier"
    assert out["value"] == edgeworth.noise_multiplier(8.0, 1e-5, 1000, 0.01)
    assert out["assumed"] == {} and out["dominating_ordering"] == "remove"
    assert "estimate" not in out  # the tilted estimate is not computed unless --estimate asks for it


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")  # the plain estimate is off here (+3 to +5 %)
def test_epsilon_and_delta_commands(capsys):
    assert main(["epsilon", "--sigma", "1.0", "--delta", "1e-5", "--steps", "1000", "--q", "0.01",
                 "--method", "edgeworth", "--order", "1", "--json"]) == 0
    out = strict_json(capsys.readouterr().out)
    assert out["label"] == "estimate" and out["order"] == 1
    assert out["value"] == edgeworth.epsilon(1.0, 1e-5, 1000, 0.01, method="edgeworth", order=1)
    assert main(["delta", "--sigma", "1.0", "--eps", "2"]) == 0
    assert "certified upper bound on delta" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needles", [
    (["sigma", "--delta", "2"], ["--delta must be in (0, 1)", "got 2"]),
    (["sigma", "--q", "0"], ["--q must be in [1e-12, 1]", "got 0"]),
    (["sigma", "--q", "2"], ["--q must be in [1e-12, 1]", "got 2"]),  # both ends of the range
    (["epsilon", "--sigma", "-1"], ["--sigma must be in [0.01, 1e+06]", "noise multiplier", "got -1"]),
    (["sigma", "--steps", "0"], ["--steps must be a whole number in [1, 2^53]", "got 0 "]),
    (["sigma", "--steps", "1e20"], ["--steps must be a whole number in [1, 2^53]", "got 1e20"]),
    (["sigma", "--steps", "2.5"], ["--steps must be a whole number", "1e4", "got '2.5'"]),
    (["sigma", "--steps", "many"], ["--steps must be a whole number", "got 'many'"]),
    (["sigma", "--eps", "0"], ["--eps must be in (0, 1000]", "got 0"]),
    (["sigma", "--order", "5", "--method", "edgeworth"], ["--order: invalid choice: 5"]),
    (["sigma", "--method", "exact"], ["--method: invalid choice: 'exact'"]),
    (["sigma", "--order", "1"], ["--order applies to --method edgeworth only"]),
    (["epsilon", "--ordering", "add"], ["--ordering applies to --method edgeworth only"]),
    (["delta", "--method", "tilted", "--ordering", "both"], ["--ordering applies to --method edgeworth only"]),
    (["compare", "--backends", ",,,"], ["--backends names no backend"]),
    (["compare", "--sigma", "1", "--eps", "8"], ["not both"]),
    (["compare", "--plot", "/nonexistent/folder/x.png", "--backends", "gdp_clt"], ["--plot", "does not exist"]),
    (["compare", "--plot-points", "1", "--plot", "x.png"], ["--plot-points must be a whole number in [2, 1000]"]),
])
def test_bad_input_is_one_line_naming_the_flag_and_exits_2(argv, needles, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("edgeworth"), err  # one line, no traceback, no usage block
    for needle in needles:
        assert needle in err, (needle, err)
    assert "got 0.0" not in err and "Traceback" not in err


def test_steps_accepts_scientific_notation(capsys):
    assert main(["sigma", "--steps", "1e4", "--json"]) == 0
    out = strict_json(capsys.readouterr().out)
    assert out["inputs"]["steps"] == 10_000
    assert out["value"] == edgeworth.noise_multiplier(8.0, 1e-5, 10_000, 0.01)


def test_help_pages_say_what_the_command_and_each_flag_mean(capsys):
    for command, says in [("sigma", "smallest sigma"), ("epsilon", "privacy spent"), ("delta", "probability")]:
        assert main([command, "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert says in out
        assert "--q Q sampling rate: the probability that each example is in a step's batch" in out
        assert "--steps STEPS number of DP-SGD steps" in out and "1e4" in out
        assert "Exit status" in out


def test_decline_is_reported_as_a_decline_with_exit_3(capsys):
    # no estimate answers at the seeded grid's one known decline (tests/test_tilted.py; 0.095 sampled steps in
    # all); a CLI user reads flags, not Python keywords
    assert main(["epsilon", "--method", "tilted", "--sigma", "0.7165652591", "--delta", "1.66e-5", "--steps", "102", "--q", "0.000935779"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("edgeworth epsilon: declined: ") and err.count("\n") == 1
    assert "--method certified" in err and "method='" not in err
    # a target that every sigma in the searched range meets: no answer, not a usage error
    assert main(["sigma", "--eps", "1000", "--steps", "1", "--q", "1e-12"]) == 3
    assert "declined" in capsys.readouterr().err


@pytest.mark.filterwarnings("error")  # the warning must reach the user as a line of text, not a Python warning
def test_warnings_are_one_line_without_source(capsys):
    assert main(["epsilon", "--method", "edgeworth", "--order", "1"]) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeworth epsilon: warning: the Edgeworth order-1 estimate")
    assert "--method tilted" in err and "method='" not in err and "cli.py" not in err


def test_sigma_times_the_certified_figure_alone_and_estimate_adds_the_tilted_one(capsys):
    assert main(["sigma", "--json"]) == 0
    plain = strict_json(capsys.readouterr().out)
    assert "estimate" not in plain and plain["elapsed_ms"] > 0
    assert main(["sigma", "--json", "--estimate"]) == 0
    both = strict_json(capsys.readouterr().out)
    assert both["value"] == plain["value"] == edgeworth.noise_multiplier(8.0, 1e-5, 1000, 0.01)
    assert both["estimate"]["value"] == edgeworth.noise_multiplier(8.0, 1e-5, 1000, 0.01, method="tilted")
    assert both["estimate"]["label"] == "estimate" and both["estimate"]["elapsed_ms"] > 0
    assert main(["sigma", "--estimate"]) == 0
    out = capsys.readouterr().out
    assert "tilted estimate (not a bound): sigma = " in out and out.count("computed in") == 2


def _reject_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def strict_json(text):
    """json.loads that refuses NaN, Infinity and -Infinity (as JavaScript's JSON.parse does)."""
    return json.loads(text, parse_constant=_reject_constant)


def test_strict_parser_refuses_what_python_json_writes():
    with pytest.raises(ValueError, match="NaN"):
        strict_json('{"a": NaN}')
    with pytest.raises(ValueError, match="Infinity"):
        strict_json('{"a": Infinity}')


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")
@pytest.mark.parametrize("argv", [
    ["sigma", "--json"], ["sigma", "--json", "--estimate", "--method", "edgeworth"],
    ["epsilon", "--json", "--estimate"], ["delta", "--json", "--estimate"],
    # no estimate answers here (the seeded grid's one known decline): the estimate is null with the reason
    ["epsilon", "--json", "--estimate", "--sigma", "0.7165652591", "--delta", "1.66e-5", "--steps", "102", "--q", "0.000935779"],
    # the paper's bound is +inf here (vacuous)
    ["compare", "--json", "--backends", "edgeworth,gdp_clt"],
    ["compare", "--json", "--eps", "8", "--backends", "edgeworth,gdp_clt"],
])
def test_every_json_output_is_strict(argv, capsys):
    assert main(argv) == 0
    out = strict_json(capsys.readouterr().out)
    missing = []

    def walk(obj, where):
        if isinstance(obj, dict):
            for key, value in obj.items():
                if value is None and key in ("value", "estimate"):
                    missing.append((where, key, obj.get(f"{key}_reason")))
                walk(value, f"{where}.{key}")
        elif isinstance(obj, list):
            for i, value in enumerate(obj):
                walk(value, f"{where}[{i}]")
    walk(out, "")
    for where, key, reason in missing:  # every missing number says why
        assert reason, (where, key)
    if argv[0] == "compare" and "--eps" not in argv:
        upper = next(r for r in out["rows"] if r["accountant"] == "edgeworth paper bound (upper)")
        assert upper["value"] is None and upper["value_reason"].startswith("infinite")
    if "0.000935779" in argv:  # edgeworth.epsilon(0.7165652591, 1.66e-5, 102, 0.000935779, method="tilted") raises
        assert out["estimate"]["value"] is None and "declined" in out["estimate"]["value_reason"]


def test_compare_plot_without_matplotlib_is_one_line(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from edgeworth.cli import main\n"
            f"sys.exit(main(['compare', '--backends', 'gdp_clt', '--plot', {str(tmp_path / 'x.png')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert 'needs matplotlib' in proc.stderr and 'pip install ".[compare]"' in proc.stderr


def test_compare_plot_writes_the_file(tmp_path, capsys):
    path = tmp_path / "eps.png"
    assert main(["compare", "--backends", "gdp_clt", "--steps", "100", "--plot", str(path),
                 "--plot-points", "3"]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().err


def test_finetune_help_without_torch(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeworth.cli import main\n"
            "sys.exit(main(['finetune', '--help']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: edgeworth finetune") and "--batch-size" in proc.stdout


def test_finetune_help(capsys):
    assert main(["finetune", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: edgeworth finetune") and "--batch-size" in out


def test_install_hints_work_from_a_clone():
    from edgeworth.comparison import INSTALL_HINT
    assert INSTALL_HINT == 'pip install ".[compare]"'  # edgeworth is not on PyPI; quoted for zsh


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
