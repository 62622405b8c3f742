"""Checkpoints and resume of `edgeworth finetune`: a run stopped with --stop-after and resumed is the run that never
stopped (the same batches, noise, ledger, eps and final parameters), in one process, under a two-process torchrun,
and at user level; and every bad input ends in one line naming the flag, before the model loads where it can, with
an existing checkpoint left byte-identical.

The references: the uninterrupted run itself (for the batches, the noise and the parameters, recorded by --trace
and parameters_sha256), and edgeworth.epsilon / edgeworth.userlevel.epsilon for the ledger's eps.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import edgeworth
import edgeworth.finetune as ft
import edgeworth.finetune.run as ft_run
from edgeworth import cli, userlevel
from conftest import package_env
from finetune_data import strict_json, write_labelled_tsv

torch.set_num_threads(1)
DELTA = 1e-5
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from test_finetune import build_tiny_model  # the 2-layer BERT of width 32
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """train.tsv: 400 sentences, user u wrote 1 + (u mod 5) of them in a row; dev.tsv: 40 sentences."""
    folder = tmp_path_factory.mktemp("data")
    return {"train": write_labelled_tsv(folder / "train.tsv", 400, seed=3, user_pattern=5),
            "dev": write_labelled_tsv(folder / "dev.tsv", 40, seed=4)}


@pytest.fixture
def base(tiny_model, files):
    """Command-line flags of a tiny run: q = 40 / 400 = 0.1."""
    return ["finetune", "--model", tiny_model, "--train-file", files["train"], "--dev-file", files["dev"],
            "--batch-size", "40", "--max-length", "24", "--lr", "1e-3", "--no-progress", "--json"]


def _run(args, capsys):
    assert cli.main(args) == 0, capsys.readouterr().err
    return strict_json(capsys.readouterr().out)


def _trace(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _assert_same_run(straight, resumed, trace_straight, trace_sliced, steps=6, noisy=True):
    """The five things a resume must keep: batches, noise, ledger, eps and final parameters."""
    a, b = _trace(trace_straight), _trace(trace_sliced)
    assert [t["step"] for t in a] == [t["step"] for t in b] == list(range(1, steps + 1))
    assert [t["batch"] for t in a] == [t["batch"] for t in b]  # the same Poisson batches
    assert [t["noise"] for t in a] == [t["noise"] for t in b]  # the same noise
    assert [t["noise_head"] for t in a] == [t["noise_head"] for t in b]
    # Nothing was replayed: every step drew a batch and noise of its own (the bug: steps 4-6 repeated 1-3).
    assert len({t["batch"] for t in b}) == steps
    assert len({t["noise"] for t in b}) == (steps if noisy else 1)
    assert resumed["history"] == straight["history"]  # the same ledger
    assert resumed["eps_certified"] == straight["eps_certified"]  # the same eps spent
    assert resumed["parameters_sha256"] == straight["parameters_sha256"]  # the same final parameters
    assert resumed["steps"] == straight["steps"] == steps and resumed["examples_seen"] == straight["examples_seen"]


def test_stopped_and_resumed_run_is_the_uninterrupted_run(base, tmp_path, capsys):
    ckpt, t_straight, t_sliced = tmp_path / "run.pt", tmp_path / "straight.jsonl", tmp_path / "sliced.jsonl"
    straight = _run(base + ["--steps", "6", "--trace", str(t_straight)], capsys)
    first = _run(base + ["--steps", "6", "--trace", str(t_sliced), "--checkpoint", str(ckpt), "--stop-after", "3"],
                 capsys)
    sigma = straight["noise_multiplier"]
    assert sigma == edgeworth.noise_multiplier(8.0, DELTA, 6, 0.1)  # calibrated for the planned 6, not 3
    assert first["steps"] == 3 and first["stopped_by_request"] and first["history"] == [[sigma, 0.1, 3]]
    assert first["parameters_sha256"] != straight["parameters_sha256"]
    resumed = _run(base + ["--steps", "6", "--trace", str(t_sliced), "--checkpoint", str(ckpt), "--resume",
                           str(ckpt)], capsys)
    assert resumed["resumed_from_step"] == 3 and not resumed["stopped_by_request"]
    _assert_same_run(straight, resumed, t_straight, t_sliced)
    assert straight["history"] == [[sigma, 0.1, 6]]
    assert straight["eps_certified"] == edgeworth.epsilon(sigma, DELTA, 6, 0.1)
    # The checkpoint holds the finished run: its ledger, and parameters that hash as the report says.
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 6 and state["history"] == [[sigma, 0.1, 6]]
    names = sorted(state["parameters"])
    assert names == sorted(n for n, p in _tiny_classifier(base).named_parameters() if p.requires_grad)


def _tiny_classifier(base):
    from edgeworth.finetune.model import load_classifier
    return load_classifier(Path(base[base.index("--model") + 1]), 2, pooling="mean", lora_rank=0,
                           train_embeddings=False)[1]


def test_user_level_run_stopped_and_resumed(base, tmp_path, capsys):
    user = base + ["--privacy-unit", "user", "--user-column", "user", "--user-sampling", "uls",
                   "--contribution-bound", "2", "--batch-size", "30", "--steps", "6"]
    user.remove("40")
    user.remove("--batch-size")
    ckpt, t_straight, t_sliced = tmp_path / "users.pt", tmp_path / "straight.jsonl", tmp_path / "sliced.jsonl"
    straight = _run(user + ["--trace", str(t_straight)], capsys)
    first = _run(user + ["--trace", str(t_sliced), "--checkpoint", str(ckpt), "--stop-after", "3"], capsys)
    assert first["steps"] == 3 and first["stopped_by_request"]
    resumed = _run(user + ["--trace", str(t_sliced), "--checkpoint", str(ckpt), "--resume", str(ckpt)], capsys)
    _assert_same_run(straight, resumed, t_straight, t_sliced)
    sigma, q = straight["noise_multiplier"], straight["sample_rate"]
    assert straight["history"] == [[sigma, q, 6]]
    assert resumed["eps_certified"] == userlevel.epsilon(sigma=sigma, delta=DELTA, steps=6, q=q, contribution_bound=2,
                                                         sampling="uls")
    # A resume keeps the users' kept examples: another contribution bound is refused.
    with pytest.raises(ValueError, match="contribution_bound"):
        ft.finetune(**_api(user), resume=str(ckpt), contribution_bound=3, steps=8)


def _api(args):
    """The FinetuneConfig fields of a command line (only the flags the tests here use)."""
    flags = {"--model": "model", "--train-file": "train_file", "--dev-file": "dev_file", "--batch-size": "batch_size",
             "--max-length": "max_length", "--lr": "lr", "--privacy-unit": "privacy_unit",
             "--user-column": "user_column", "--user-sampling": "user_sampling"}
    kinds = {"batch_size": int, "max_length": int, "lr": float}
    out = {"progress": False}
    for flag, name in flags.items():
        if flag in args:
            value = args[args.index(flag) + 1]
            out[name] = kinds.get(name, str)(value)
    return out


def test_torchrun_two_processes_stopped_and_resumed(base, tmp_path):
    """Two ranks (gloo, CPU): each rank's batches and the noise (rank 0 adds it) continue exactly."""
    args = list(base)  # "finetune" and its flags
    ckpt = tmp_path / "ddp.pt"
    t_straight, t_sliced = tmp_path / "straight.jsonl", tmp_path / "sliced.jsonl"
    straight = _torchrun(args + ["--steps", "6", "--trace", str(t_straight)], tmp_path)
    first = _torchrun(args + ["--steps", "6", "--trace", str(t_sliced), "--checkpoint", str(ckpt),
                              "--stop-after", "3"], tmp_path)
    assert first["steps"] == 3 and first["world_size"] == 2
    resumed = _torchrun(args + ["--steps", "6", "--trace", str(t_sliced), "--checkpoint", str(ckpt), "--resume",
                                str(ckpt)], tmp_path)
    for rank in (0, 1):
        _assert_same_run(straight, resumed, f"{t_straight}.rank{rank}", f"{t_sliced}.rank{rank}", noisy=rank == 0)
    # Noise is added once per step, by rank 0; the ranks draw different batches.
    assert all(t["noise_head"] == [0.0, 0.0, 0.0] for t in _trace(f"{t_sliced}.rank1"))
    assert not {t["batch"] for t in _trace(f"{t_sliced}.rank0")} & {t["batch"] for t in _trace(f"{t_sliced}.rank1")}
    # Two processes spend what one spends: the ledger of 6 steps at q = 0.1 and the sigma calibrated for it.
    sigma = edgeworth.noise_multiplier(8.0, DELTA, 6, 0.1)
    assert straight["world_size"] == 2 and straight["history"] == [[sigma, 0.1, 6]]
    assert straight["eps_certified"] == edgeworth.epsilon(sigma, DELTA, 6, 0.1)
    state = torch.load(ckpt, weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["sampler"], state["rng"][1]["sampler"])


def _torchrun(args, cwd):
    from test_finetune import torchrun
    return torchrun(["-m", "edgeworth", *args], cwd)


def test_a_run_is_extended_within_its_budget(tiny_model, files, tmp_path):
    """--steps beyond the checkpoint's plan extends the run, and the budget guard re-checks the extension."""
    ckpt = tmp_path / "short.pt"
    common = dict(model=tiny_model, train_file=files["train"], dev_file=files["dev"], max_dev=20, batch_size=40,
                  max_length=24, progress=False, noise_multiplier=1.5, target_eps=2.0, checkpoint=str(ckpt))
    short = ft.finetune(steps=4, **common)
    assert short.steps == 4 and not short.stopped_by_budget_guard
    with pytest.raises(ValueError, match="steps: the checkpoint has already taken its 4 planned steps"):
        ft.finetune(resume=str(ckpt), **common)
    longer = ft.finetune(steps=200, resume=str(ckpt), **common)
    k = longer.steps
    assert longer.stopped_by_budget_guard and longer.resumed_from_step == 4 and 4 < k < 200
    assert edgeworth.epsilon(1.5, DELTA, k, 0.1) <= 2.0 < edgeworth.epsilon(1.5, DELTA, k + 1, 0.1)
    assert longer.history == [(1.5, 0.1, k)] and longer.eps_certified <= 2.0


# -- bad input: one line, naming the flag, before the model loads, the checkpoint untouched ----------------------
@pytest.fixture(scope="module")
def saved(tiny_model, files, tmp_path_factory):
    """A 2-step checkpoint of the tiny run of ``base``."""
    ckpt = tmp_path_factory.mktemp("saved") / "saved.pt"
    ft.finetune(model=tiny_model, train_file=files["train"], dev_file=files["dev"], batch_size=40, max_length=24,
                lr=1e-3, steps=2, checkpoint=str(ckpt), progress=False)
    return ckpt


@pytest.fixture
def guarded(monkeypatch):
    """Fails a test whose run loads the model before its error."""
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the error")
    monkeypatch.setattr(ft_run, "load_classifier", no_model)


def _one_line_error(args, capsys, *expected):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


@pytest.mark.parametrize("change, flag", [
    (["--sigma", "2.0"], "--sigma"),
    (["--batch-size", "20"], "--batch-size"),
    (["--max-length", "16"], "--max-length"),
    (["--delta", "1e-6"], "--delta"),
    (["--max-grad-norm", "0.5"], "--max-grad-norm"),
    (["--clipping", "per-sample"], "--clipping"),
    (["--lora-rank", "2"], "--lora-rank"),
    (["--lr", "0.01"], "--lr"),
    (["--seed", "1"], "--seed"),
    (["--accountant", "rdp"], "--accountant"),
    (["--max-train", "300"], "--train-file"),
    (["--pooling", "cls"], "--pooling"),
])
def test_resume_refuses_flags_that_contradict_the_checkpoint(base, saved, tmp_path, capsys, guarded, change, flag):
    ckpt = tmp_path / "c.pt"
    shutil.copy(saved, ckpt)
    before = ckpt.read_bytes()
    _one_line_error(base + ["--steps", "4", "--resume", str(ckpt), "--checkpoint", str(ckpt)] + change, capsys,
                    f"edgeworth finetune: error: {flag}")
    assert ckpt.read_bytes() == before


def test_resume_refuses_other_model_data_and_process_count(base, saved, tmp_path, capsys, guarded, monkeypatch):
    ckpt = tmp_path / "c.pt"
    shutil.copy(saved, ckpt)
    before = ckpt.read_bytes()
    resume = ["--steps", "4", "--resume", str(ckpt), "--checkpoint", str(ckpt)]
    other_model = tmp_path / "other-model"
    shutil.copytree(base[base.index("--model") + 1], other_model)
    args = list(base)
    args[args.index("--model") + 1] = str(other_model)
    _one_line_error(args + resume, capsys, "--model: the checkpoint was made with")
    other_data = write_labelled_tsv(tmp_path / "other.tsv", 400, seed=99)
    args = list(base)
    args[args.index("--train-file") + 1] = other_data
    _one_line_error(args + resume, capsys, "--train-file: the training examples (400")
    monkeypatch.setenv("WORLD_SIZE", "2")
    _one_line_error(base + resume, capsys, "written by 1 process(es), this run has 2")
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n", b"PK\x03\x04 broken zip", b"\x80\x04\x95garbage"])
def test_resume_from_a_file_that_is_not_a_checkpoint(base, tmp_path, capsys, guarded, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    _one_line_error(base + ["--steps", "2", "--resume", str(bad), "--checkpoint", str(bad)], capsys,
                    "--resume:", "not an edgeworth fine-tuning checkpoint")
    assert bad.read_bytes() == content


def test_fresh_run_does_not_overwrite_a_checkpoint(base, saved, tmp_path, capsys, guarded):
    ckpt = tmp_path / "c.pt"
    shutil.copy(saved, ckpt)
    before = ckpt.read_bytes()
    _one_line_error(base + ["--steps", "2", "--checkpoint", str(ckpt)], capsys, "--checkpoint:", "exists",
                    "--overwrite")
    # Resuming from another file into it is a fresh write to it too.
    other = tmp_path / "other.pt"
    shutil.copy(saved, other)
    _one_line_error(base + ["--steps", "4", "--resume", str(other), "--checkpoint", str(ckpt)], capsys,
                    "--checkpoint:", "exists")
    assert ckpt.read_bytes() == before


def test_overwrite_replaces_the_checkpoint(base, saved, tmp_path, capsys):
    ckpt = tmp_path / "c.pt"
    shutil.copy(saved, ckpt)
    out = _run(base + ["--steps", "1", "--checkpoint", str(ckpt), "--overwrite"], capsys)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 1 and state["history"] == [[out["noise_multiplier"], 0.1, 1]]


def test_bad_data_model_and_flags_end_in_one_line_before_the_model_loads(base, saved, files, tmp_path, capsys,
                                                                           guarded, monkeypatch):
    ckpt = tmp_path / "c.pt"
    shutil.copy(saved, ckpt)
    before = ckpt.read_bytes()
    keep = ["--checkpoint", str(ckpt), "--resume", str(ckpt)]
    # A row with no label.
    broken = tmp_path / "broken.tsv"
    broken.write_text("sentence\tlabel\ngood film\t1\njust text\n", encoding="utf-8")
    args = list(base)
    args[args.index("--train-file") + 1] = str(broken)
    _one_line_error(args + ["--steps", "4"] + keep, capsys, "--train-file: line 3 of", "has no 'label' value")
    # A folder that exists but holds no model.
    empty = tmp_path / "no-model"
    empty.mkdir()
    args = list(base)
    args[args.index("--model") + 1] = str(empty)
    _one_line_error(args + ["--steps", "2"], capsys, "--model:", "holds no config.json")
    # A first step that alone costs more than the target.
    one = edgeworth.epsilon(0.3, DELTA, 1, 0.1)
    _one_line_error(base + ["--steps", "2", "--sigma", "0.3", "--eps", "0.5"], capsys,
                    f"--eps: one step at sigma 0.3 and q 0.1 already costs eps {one:.4g}, more than the target 0.5")
    # A batch larger than the data.
    _one_line_error(base + ["--steps", "2", "--batch-size", "401"], capsys,
                    "--batch-size must be at most the number of training examples (400), got 401")
    # Fewer steps than the checkpoint has taken.
    _one_line_error(base + ["--steps", "1"] + keep, capsys, "--steps: the checkpoint has already taken 2 steps")
    # --stop-after without a checkpoint to continue from.
    _one_line_error(base + ["--steps", "4", "--stop-after", "2"], capsys, "--stop-after:", "checkpoint")
    # --secure-rng where torchcsprng is missing (as with every torch 2 install).
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchcsprng"
                        else find_spec(name, *a))
    _one_line_error(base + ["--steps", "2", "--secure-rng"], capsys, "--secure-rng:", "torchcsprng")
    assert ckpt.read_bytes() == before


def test_finetune_help_needs_no_torch(tmp_path):
    """The parser (and so `edgeworth finetune --help`) imports nothing of torch."""
    code = ("import sys; sys.modules['torch'] = None; from edgeworth import cli; "
            "cli._finetune_parser().format_help(); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=package_env())
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
