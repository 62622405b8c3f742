"""The README runs as written, in a fresh clone after its set-up command.

* Every ```python block is executed, statement by statement, in an empty folder.  A statement whose line ends in a
  comment that starts with a figure (``# 0.5863..., certified`` or ``# ('certified', 'remove', 8.2891, ...)``) is
  evaluated, and what it returns must show that figure to the digits written (rounded).  A block may use only the names it defines, plus those listed in ``GIVEN`` (the user's own
  model, optimizer and data loader in the Opacus example), which are built here.
* Every ```bash command that is cheap runs as written: the accounting commands (``edgeworth sigma | epsilon | delta |
  compare``) and ``python benchmarks/synthetic_users.py``; the ``edgeworth finetune`` commands (minutes to hours each)
  are parsed by the command's own parser, and the files they read must exist once the commands before them ran.
* The set-up section holds exactly the two commands that ``.ci/run`` runs verbatim.
"""
import ast
import builtins
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

#: A figure as the README writes it in a comment: 0.5863, 1.9315... (truncated), 4e-06.
_FIGURE = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?:\.\.\.)?"


def _blocks(language):
    return [m.group(1) for m in re.finditer(rf"^```{language}\n(.*?)^```", README, re.S | re.M)]


def _section(title):
    return re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M).group(1)


def _commands(text):
    """The shell commands of bash blocks: continuation lines joined, comment lines and trailing comments dropped."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                out.append(" ".join(line.split()))
    return out


# -- the figures written in comments ----------------------------------------------------------------------------------
def _check_figure(value, text, where):
    """value shows as text: equal to it within half a unit in its last written digit ("1.9315..." too: the dots say
    that more digits follow, not that the figure is cut rather than rounded)."""
    mantissa, _, exponent = text.rstrip(".").partition("e")
    half_unit = 0.5 * 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))
    assert abs(float(value) - float(text.rstrip("."))) <= half_unit * (1 + 1e-9), (where, float(value), text)


def _check_comment(value, comment, where):
    comment = comment.strip()
    if comment.startswith("("):
        shown = [t.strip() for t in comment[1:comment.index(")")].split(",")]
        assert isinstance(value, tuple) and len(value) == len(shown), (where, value)
        for v, t in zip(value, shown):
            if re.fullmatch(_FIGURE, t):
                _check_figure(v, t, where)
            else:
                assert str(v) == ast.literal_eval(t), (where, v, t)
        return
    m = re.match(rf"({_FIGURE})(?=[,;:\s]|$)", comment)
    if m:
        _check_figure(value, m.group(1), where)


def _figure_comments(source):
    """{line number: comment text} for lines whose comment starts with a figure or a tuple of them."""
    out = {}
    for i, line in enumerate(source.splitlines(), start=1):
        code, hash_, comment = line.partition("#")
        if hash_ and code.strip() and (re.match(rf"\s*{_FIGURE}(?=[,;:\s]|$)", comment)
                                       or re.match(r"\s*\(", comment)):
            out[i] = comment
    return out


# -- names a snippet may take from the reader -------------------------------------------------------------------------
def _tiny_training():
    """A small classifier, its optimizer and a data loader: the reader's own, in the Opacus example."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    return {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
            "loader": DataLoader(data, batch_size=16)}


GIVEN = {"model": _tiny_training, "optimizer": _tiny_training, "loader": _tiny_training}


def _free_names(tree):
    """Names a snippet loads before it binds them (other than builtins)."""
    bound, free = set(), []
    for stmt in tree.body:
        for node in ast.walk(stmt):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        loads = [n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        free += [n for n in loads if n not in bound and not hasattr(builtins, n)]
        bound.update(n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return sorted(set(free))


PYTHON = _blocks("python")


def test_the_readme_has_python_snippets_with_figures():
    assert len(PYTHON) >= 4
    assert sum(len(_figure_comments(block)) for block in PYTHON) >= 10


@pytest.mark.filterwarnings("ignore::edgeworth.EdgeworthAccuracyWarning")  # the README says the estimate warns
@pytest.mark.parametrize("index", range(len(PYTHON)), ids=lambda i: f"python-block-{i + 1}")
def test_python_snippet_runs_and_shows_what_it_returns(index, tmp_path, monkeypatch):
    source = PYTHON[index]
    tree = ast.parse(source)
    free = _free_names(tree)
    unknown = [n for n in free if n not in GIVEN]
    assert not unknown, f"README python block {index + 1} uses {unknown}, which it never defines"
    namespace = {"__name__": "__readme__"}
    for make in {GIVEN[name] for name in free}:
        namespace.update(make())
    monkeypatch.chdir(tmp_path)
    comments = _figure_comments(source)
    checked = 0
    for stmt in tree.body:
        where = f"README python block {index + 1}, line {stmt.lineno}: {ast.get_source_segment(source, stmt)}"
        if isinstance(stmt, ast.Expr) and stmt.end_lineno in comments:
            value = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)
            _check_comment(value, comments[stmt.end_lineno], where)
            checked += 1
        else:
            exec(compile(ast.Module([stmt], type_ignores=[]), where, "exec"), namespace)
    assert checked == len([n for n in comments if any(isinstance(s, ast.Expr) and s.end_lineno == n
                                                      for s in tree.body)])


def test_figure_checks_catch_a_stale_figure():
    _check_comment(0.58626, " 0.5863..., certified", "here")
    _check_comment(10.6923, " 10.69, certified", "here")
    _check_comment(("certified", "remove", 8.28912, 8.28908, 4.2e-06), " ('certified', 'remove', 8.2891, 8.2891, 4e-06)",
                   "here")
    for value, comment in [(0.58624, " 0.5863..., certified"), (10.70, " 10.69, certified"), (6.323552, " 6.3252"),
                           (("tilted", 8.2891), " ('certified', 8.2891)")]:
        with pytest.raises(AssertionError):
            _check_comment(value, comment, "here")


# -- shell commands ---------------------------------------------------------------------------------------------------
def test_set_up_is_two_commands_and_ci_runs_them():
    setup = _commands(_section("Set up"))
    assert len(setup) == 2, setup
    install, tests = setup
    assert install.startswith('pip install ".[test]"') and install.endswith("edgeworth sigma")
    assert tests == "pytest"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "## Set up" in ci and "git clone" in ci and "mktemp" in ci


def _edgeworth():
    script = shutil.which("edgeworth")
    return [script] if script else [sys.executable, "-m", "edgeworth"]


ACCOUNTING = [c for c in _commands(README) if re.match(r"edgeworth (sigma|epsilon|delta|compare)\b", c)]


def test_the_readme_shows_accounting_commands():
    assert ACCOUNTING


@pytest.mark.parametrize("command", ACCOUNTING)
def test_accounting_command_runs_as_written(command, tmp_path):
    proc = subprocess.run(_edgeworth() + shlex.split(command)[1:], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    if "--plot" in command:
        plot = tmp_path / shlex.split(command)[shlex.split(command).index("--plot") + 1]
        assert plot.read_bytes()[:4] == b"\x89PNG"


def test_user_level_commands_run_or_parse_as_written(tmp_path):
    """The user-level block: the data command runs (from the repository root, as written), and the fine-tuning
    command's flags are the command's own, reading the file that the data command wrote."""
    from edgeworth.cli import _finetune_parser  # the torch extra, which the README's set-up command installs

    block = _section("User-level privacy")
    commands = _commands(block)
    assert any(c.startswith("python benchmarks/synthetic_users.py") for c in commands)
    for command in commands:
        args = shlex.split(command)
        if args[0] == "python":
            script = ROOT / args[1]
            proc = subprocess.run([sys.executable, str(script), *args[2:]], cwd=ROOT, capture_output=True,
                                  text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.startswith("wrote ")
        else:
            assert args[:2] == ["edgeworth", "finetune"], command
            parsed = _finetune_parser().parse_args(args[2:])
            if parsed.train_file:
                assert Path(parsed.train_file).is_file(), command


def test_fine_tuning_commands_parse():
    from edgeworth.cli import _finetune_parser  # the torch extra, which the README's set-up command installs

    commands = [c for c in _commands(README) if c.startswith("edgeworth finetune")]
    assert commands
    for command in commands:
        _finetune_parser().parse_args(shlex.split(command)[2:])


def test_benchmark_scripts_named_in_the_readme_exist():
    named = set(re.findall(r"python (benchmarks/\w+\.py)", README))
    assert "benchmarks/finetune_bench.py" in named and "benchmarks/synthetic_users.py" in named
    for path in named:
        assert (ROOT / path).is_file(), path
