"""edgeworth.hf.PrivateTrainer: DP-SGD inside the Hugging Face Trainer, on tiny models built locally.

What is checked: the eps in the Trainer's logs is edgeworth.epsilon of the run's ledger at that step; the DP step
is per-example clipping plus noise once, against a reference computed example by example with torch.autograd; the
Poisson batches are the independent Bernoulli draws of each step; the budget guard stops at the last step within
the target; a run stopped and resumed from its checkpoint draws the same batches and noise and ends with the same
parameters and ledger as an uninterrupted run (plain model, LoRA, two-process torchrun with gloo).
"""
import json
import math
import os
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("opacus")

import edgeworth  # noqa: E402

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
import hf_tiny  # noqa: E402
from edgeworth import hf  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _straight_and_resumed(tmp_path, **kw):
    straight = hf_tiny.trainer(tmp_path / "straight", **kw)
    straight.train()
    first = hf_tiny.trainer(tmp_path / "sliced", stop_at=3, **kw)
    first.train()
    assert first.state.global_step == 3 and first.steps_taken == 3
    resumed = hf_tiny.trainer(tmp_path / "sliced", **kw)
    resumed.train(resume_from_checkpoint=str(tmp_path / "sliced" / "checkpoint-3"))
    return straight, first, resumed


def _assert_same_run(straight, first, resumed):
    assert straight.step_records == first.step_records + resumed.step_records
    assert [r["step"] for r in straight.step_records] == [1, 2, 3, 4, 5, 6]
    a, b = hf_tiny.trainable(straight), hf_tiny.trainable(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight.history == resumed.history == [(straight.noise_multiplier, 0.2, 6)]
    assert straight.spent() == resumed.spent()
    # the resumed half did not replay the first half's batches or noise
    assert all(r["noise_head"] != s["noise_head"] for r in resumed.step_records for s in first.step_records)


def _assert_logged_eps_is_the_ledgers(trainer):
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged, "no training logs"
    for entry in logged:
        certified = edgeworth.epsilon(trainer.noise_multiplier, 1e-5, entry["step"], trainer.sample_rate)
        assert entry["epsilon"] == certified
        assert abs(entry["epsilon_estimate"] - certified) < 0.05 * certified  # an estimate, close to the bound
    # sigma was calibrated for the 6 planned steps: the run spends the target, within the calibration's tolerance
    assert 2.99 < logged[-1]["epsilon"] <= 3.0


def test_tiny_causal_lm_logs_the_ledgers_eps_and_resumes_exactly(tmp_path):
    straight, first, resumed = _straight_and_resumed(tmp_path)
    _assert_same_run(straight, first, resumed)
    _assert_logged_eps_is_the_ledgers(straight)
    saved = json.loads((tmp_path / "sliced" / "checkpoint-6" / hf.PRIVACY_FILE).read_text())
    assert saved["history"] == [[straight.noise_multiplier, 0.2, 6]]
    assert saved["epsilon"] == edgeworth.epsilon(straight.noise_multiplier, 1e-5, 6, 0.2)


def test_lora_model_resumes_exactly(tmp_path):
    straight, first, resumed = _straight_and_resumed(tmp_path, use_lora=True)
    _assert_same_run(straight, first, resumed)
    _assert_logged_eps_is_the_ledgers(straight)
    names = list(hf_tiny.trainable(straight))
    assert names and all("lora_" in n for n in names)
    # adapter-only checkpoints: the Trainer saved the peft adapters, not the whole model
    assert (tmp_path / "sliced" / "checkpoint-3" / "adapter_model.safetensors").is_file()


def test_budget_guard_stops_at_the_last_step_within_the_target(tmp_path):
    sigma, q, delta, target = 1.2, 0.2, 1e-5, 2.7
    fits = max(k for k in range(1, 30) if edgeworth.epsilon(sigma, delta, k, q) <= target)
    assert fits < 20
    trainer = hf_tiny.trainer(tmp_path, max_steps=20, save_steps=100, noise_multiplier=sigma,
                              target_epsilon=target)
    trainer.train()
    assert trainer.state.global_step == trainer.steps_taken == fits
    assert trainer.stopped_by_budget_guard
    assert trainer.spent()[0] <= target < edgeworth.epsilon(sigma, delta, fits + 1, q)
    assert trainer.privacy_report()["stopped_by_budget_guard"] is True


def test_one_step_over_the_target_is_refused_before_training(tmp_path):
    one = edgeworth.epsilon(0.3, 1e-5, 1, 0.2)
    with pytest.raises(ValueError, match=r"target_eps: one step at sigma 0\.3 .* already costs eps"):
        hf_tiny.trainer(tmp_path, noise_multiplier=0.3, target_epsilon=one * 0.9)
    assert not (tmp_path / "checkpoint-3").exists()


def test_dp_step_is_clipped_per_example_plus_noise_once(tmp_path):
    """One step against a reference built example by example: each example's gradient (of its own mean token
    loss) clipped to C, summed, plus the step's N(0, sigma^2 C^2) noise, divided by the expected batch."""
    trainer = hf_tiny.trainer(tmp_path, max_steps=1, save_steps=100, max_grad_norm=0.05, noise_multiplier=0.7,
                              target_epsilon=None)
    model = trainer.model
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sampled = hf.poisson_indices(40, 0.2, 3, 0).tolist()
    assert sampled
    reference = {n: torch.zeros_like(before[n]) for n in names}
    params = dict(model.named_parameters())
    for i in sampled:
        batch = trainer.data_collator([trainer.train_dataset[i]])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        loss = hf.per_example_loss(logits, batch["labels"], "causal-lm")[0]
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        grads = [torch.zeros_like(params[n]) if g is None else g for n, g in zip(names, grads)]
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
        for n, g in zip(names, grads):
            reference[n] += g * min(1.0, 0.05 / (float(norm) + 1e-6))
    for p in model.parameters():
        p.grad_sample, p.grad = None, None
    g = hf.step_noise_generator(3, 0, torch.device("cpu"))  # one stream for the step, in parameter order
    for n in names:
        reference[n] = (reference[n] + torch.normal(0.0, 0.7 * 0.05, size=tuple(params[n].shape), generator=g)) / 8
    batch = trainer.get_train_dataloader()
    inputs = next(iter(batch))
    assert inputs[hf._INDEX_KEY].tolist() == sampled
    trainer.state.global_step = 0
    trainer.training_step(model, inputs)
    for n in names:
        assert torch.allclose(params[n].grad, reference[n], rtol=1e-4, atol=1e-7), n
    # i.i.d. noise: no two parameters of the same shape got the same noise
    heads = trainer.step_records[0]["noise_head"]
    assert len(heads) == 2 * len(names) and len(set(heads)) == len(heads)


def test_poisson_batches_are_independent_bernoulli_draws():
    n, q = 50, 0.3
    for step in range(5):
        g = torch.Generator().manual_seed(hf.stream_seed(7, 0, f"hf-sampler/{step}"))
        expected = torch.nonzero(torch.rand(n, generator=g) < q).flatten()
        assert torch.equal(hf.poisson_indices(n, q, 7, step), expected)
    sampler = hf.PoissonBatchSampler(n, q, 4, 7, rank=1, world_size=2, start_step=lambda: 2)
    shares = list(sampler)
    assert [s[0][0] for s in shares] == [2, 3, 4, 5]
    whole = hf.poisson_indices(n, q, 7, 2).tolist()
    assert [i for _, i in shares[0] if i is not None] == whole[1::2]
    # over many steps the batch size has the Poisson-binomial mean q n (5 standard errors)
    sizes = torch.tensor([len(hf.poisson_indices(n, q, 7, s)) for s in range(400)], dtype=torch.float64)
    assert abs(float(sizes.mean()) - q * n) < 5 * math.sqrt(q * (1 - q) * n / 400)


@pytest.mark.parametrize("bad, message", [
    ({"target_epsilon": None, "noise_multiplier": None}, "target_epsilon: give a target eps"),
    ({"target_delta": 1.5}, r"target_delta: a number in \(0, 1\)"),
    ({"max_grad_norm": 0.0}, "max_grad_norm: a finite number > 0"),
    ({"noise_multiplier": float("nan")}, "noise_multiplier: a finite number > 0"),
    ({"batch": 30, "accumulation": 2}, r"per_device_train_batch_size: the expected batch \(60"),
    ({"target_epsilon": 1e-12, "batch": 20, "max_steps": 1000}, r"target_epsilon: no sigma <= 1e\+06 meets"),
])
def test_bad_settings_are_refused_by_name(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        hf_tiny.trainer(tmp_path, **bad)


def test_resume_refuses_a_checkpoint_without_a_ledger_or_with_other_settings(tmp_path):
    first = hf_tiny.trainer(tmp_path / "a", stop_at=3)
    first.train()
    ckpt = tmp_path / "a" / "checkpoint-3"
    other = hf_tiny.trainer(tmp_path / "a", max_grad_norm=2.0)
    with pytest.raises(ValueError, match="max_grad_norm: the checkpoint's run has 1.0"):
        other.train(resume_from_checkpoint=str(ckpt))
    os.remove(ckpt / hf.PRIVACY_FILE)
    again = hf_tiny.trainer(tmp_path / "a")
    with pytest.raises(ValueError, match="it is not a checkpoint of a private run"):
        again.train(resume_from_checkpoint=str(ckpt))


def test_torchrun_two_processes_gloo_resume_exactly(tmp_path):
    from test_finetune import torchrun

    straight = torchrun([str(TESTS / "hf_ddp_probe.py"), str(tmp_path / "straight")], cwd=tmp_path)
    first = torchrun([str(TESTS / "hf_ddp_probe.py"), str(tmp_path / "sliced"), "--stop-at", "3"], cwd=tmp_path)
    resumed = torchrun([str(TESTS / "hf_ddp_probe.py"), str(tmp_path / "sliced"), "--resume",
                        str(tmp_path / "sliced" / "checkpoint-3")], cwd=tmp_path)
    assert straight["world_size"] == 2 and straight["ranks_equal"] and resumed["ranks_equal"]
    for rank in (0, 1):
        assert straight["records"][rank] == first["records"][rank] + resumed["records"][rank]
    # the two ranks' shares of each step are disjoint and together the whole Poisson batch
    for r0, r1 in zip(*straight["records"]):
        whole = hf.poisson_indices(40, 0.4, 3, r0["step"] - 1).tolist()
        assert sorted(r0["indices"] + r1["indices"]) == whole
        assert r0["noise_head"] == r1["noise_head"]  # the same noise on both ranks: it counts once
    assert straight["parameters"] == resumed["parameters"]
    assert straight["history"] == resumed["history"] == [[straight["sigma"], 0.4, 6]]
    assert straight["epsilon"] == edgeworth.epsilon(straight["sigma"], 1e-5, 6, 0.4)


# -- edgeworth finetune --task causal-lm --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = hf_tiny.tokenizer()
    hf_tiny.causal_lm(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _tsv(path, header, rows):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _cli(args, capsys):
    from edgeworth.cli import main

    code = main(["finetune", "--task", "causal-lm", *args])
    return code, capsys.readouterr()


@pytest.mark.parametrize("extra", [[], ["--bf16"]])  # --bf16 on a machine without CUDA: autocast on the CPU
def test_cli_causal_lm_trains_prompt_completion_and_exports_adapters(tmp_path, tiny_model_folder, capsys, extra):
    sentences = hf_tiny.texts(40)
    data = _tsv(tmp_path / "train.tsv", ["prompt", "completion"],
                [(s, " positive" if i % 2 else " negative") for i, s in enumerate(sentences)])
    out = tmp_path / "out"
    code, io = _cli(["--data", str(data), "--prompt-column", "prompt", "--completion-column", "completion",
                     "--model", str(tiny_model_folder), "--output", str(out), "--steps", "4", "--batch-size", "4",
                     "--accumulation", "2", "--eps", "3", "--lora-rank", "2", "--lora-targets", "q_proj,v_proj",
                     "--max-length", "16", "--json", *extra], capsys)
    assert code == 0, io.err
    report = json.loads(io.out.strip().splitlines()[-1])
    privacy = report["privacy"]
    assert privacy["steps"] == report["steps"] == 4
    assert privacy["epsilon"] == edgeworth.epsilon(privacy["noise_multiplier"], 1e-5, 4, 0.2) <= 3.0
    assert json.loads((out / "privacy_report.json").read_text())["privacy"] == privacy
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 2


def test_cli_causal_lm_under_torchrun_writes_once_and_ends_cleanly(tmp_path, tiny_model_folder):
    """Two processes: the expected batch counts both (4 x 2 x 2 = 16 of 40), one process writes the export and the
    report, and both end without gloo's abort at interpreter exit."""
    from test_finetune import torchrun

    data = _tsv(tmp_path / "train.tsv", ["text"], [(s,) for s in hf_tiny.texts(40)])
    out = tmp_path / "out"
    report = torchrun(["-m", "edgeworth", "finetune", "--task", "causal-lm", "--data", str(data), "--text-column",
                       "text", "--model", str(tiny_model_folder), "--output", str(out), "--steps", "3",
                       "--batch-size", "4", "--accumulation", "2", "--eps", "8", "--lora-rank", "2",
                       "--lora-targets", "q_proj,v_proj", "--max-length", "16", "--json"], cwd=tmp_path)
    privacy = report["privacy"]
    assert privacy["world_size"] == 2 and privacy["expected_batch_size"] == 16 and privacy["sample_rate"] == 0.4
    assert privacy["steps"] == report["steps"] == 3
    assert privacy["epsilon"] == edgeworth.epsilon(privacy["noise_multiplier"], 1e-5, 3, 0.4) <= 8.0
    assert json.loads((out / "privacy_report.json").read_text())["privacy"] == privacy
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_completion_only_loss_masks_the_prompt():
    from edgeworth.causal_lm import CompletionDataset

    tok = hf_tiny.tokenizer()
    ds = CompletionDataset(tok, ["the film was"], [" good"], max_length=8)
    ids, labels = ds[0]["input_ids"], ds[0]["labels"]
    assert ids == tok("the film was good <eos>")["input_ids"]
    assert labels == [-100, -100, -100] + ids[3:]
    bare = CompletionDataset(tok, ["the film was"], [" good"], max_length=8, end_with_eos=False)[0]
    assert bare["input_ids"] == ids[:-1] and bare["labels"] == labels[:-1]
    kept = CompletionDataset(tok, ["the film was", "it is not very good"], [" good"] * 2, max_length=5,
                             drop_long=True)
    assert len(kept) == 1 and kept.dropped == 1
    with pytest.raises(ValueError, match=r"max_length: example 1 has a prompt of 3 tokens and a completion of 2, "
                                         r"more than --max-length 4"):
        CompletionDataset(tok, ["the film was"], [" good"], max_length=4)


@pytest.mark.parametrize("case", ["missing column", "missing text column", "not a model", "config not JSON",
                                  "not a causal LM", "config without weights", "no tokenizer", "prompt too long",
                                  "no sigma"])
def test_cli_causal_lm_bad_input_is_one_line_before_training(tmp_path, tiny_model_folder, capsys, case):
    data = _tsv(tmp_path / "train.tsv", ["prompt", "completion"], [(s, " good") for s in hf_tiny.texts(40)])
    args = {"--data": str(data), "--prompt-column": "prompt", "--completion-column": "completion",
            "--model": str(tiny_model_folder), "--output": str(tmp_path / "out"), "--steps": "4",
            "--batch-size": "4", "--max-length": "16"}
    expected = {"missing column": r"--completion-column: no column 'answer' in .* \(its columns: prompt, completion\)",
                "missing text column": r"--text-column: no column 'text' in .* \(its columns: prompt, completion\)",
                "not a model": r"--model: '.*' is not a Hugging Face model folder \(no config.json nor .gguf file\)",
                "config not JSON": r"--model: '.*' has a config.json that is not valid JSON",
                "not a causal LM": r"--model: '.*' holds a 'resnet' model, not a causal language model",
                "config without weights": r"--model: '.*' has a config.json but no weights \(model.safetensors or "
                                          r"pytorch_model.bin\)",
                "no tokenizer": r"--model: no tokenizer loads from '.*' \(",
                "prompt too long": r"--max-length: example \d+ has a prompt of \d+ tokens",
                "no sigma": r"--eps: no sigma <= 1e\+06 meets"}[case]
    if case == "missing column":
        args["--completion-column"] = "answer"
    elif case == "missing text column":
        del args["--prompt-column"], args["--completion-column"]
        args["--text-column"] = "text"
    elif case == "not a model":
        (tmp_path / "empty").mkdir()
        args["--model"] = str(tmp_path / "empty")
    elif case in ("config not JSON", "not a causal LM", "config without weights", "no tokenizer"):
        import shutil

        folder = tmp_path / "model"
        shutil.copytree(tiny_model_folder, folder)
        if case == "config not JSON":
            (folder / "config.json").write_text("{not json", encoding="utf-8")
        elif case == "not a causal LM":
            (folder / "config.json").write_text(json.dumps({"model_type": "resnet"}), encoding="utf-8")
        elif case == "config without weights":
            (folder / "model.safetensors").unlink()
        else:
            for f in folder.iterdir():
                if f.name.startswith(("tokenizer", "special_tokens")):
                    f.unlink()
        args["--model"] = str(folder)
    elif case == "prompt too long":
        args["--max-length"] = "4"
    else:
        args.update({"--eps": "1e-12", "--steps": "1000", "--batch-size": "20", "--accumulation": "2"})
    code, io = _cli([x for kv in args.items() for x in kv], capsys)
    assert code == 2
    lines = io.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeworth finetune: error: "), io.err
    import re
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_bf16_autocast_on_the_cpu(tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2,
                             max_steps=2, save_strategy="no", report_to=[], use_cpu=True, bf16=True,
                             disable_tqdm=True, seed=3)
    tok = hf_tiny.tokenizer()
    model = hf_tiny.causal_lm(tok)
    trainer = hf.PrivateTrainer(model=model, args=args, train_dataset=hf_tiny.TextDataset(tok, hf_tiny.texts(40)),
                                data_collator=hf_tiny.collator(tok), target_epsilon=3.0, target_delta=1e-5,
                                max_grad_norm=1.0)
    dtypes = []
    model.lm_head.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    trainer.train()
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert trainer.steps_taken == 2 and trainer.spent()[0] == edgeworth.epsilon(trainer.noise_multiplier, 1e-5, 2,
                                                                                 0.2)


def _completion_trainer(tmp_path, tok, model):
    from transformers import TrainingArguments

    from edgeworth.causal_lm import CompletionDataset, PadCollator

    prompts = hf_tiny.texts(40)
    completions = [" good" if i % 2 else " not very good" for i in range(40)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2,
                             max_steps=1, report_to=[], use_cpu=True, disable_tqdm=True, save_strategy="no")
    return hf.PrivateTrainer(model=model, args=args, train_dataset=CompletionDataset(tok, prompts, completions, 16),
                             data_collator=PadCollator(tok.pad_token_id), noise_multiplier=0.7,
                             target_epsilon=None, target_delta=1e-5, max_grad_norm=0.05)


def test_output_layer_at_target_positions_only_gives_the_full_step(tmp_path):
    """The step that projects onto the vocabulary only where a target token is predicted (logits_to_keep) equals
    the step over all positions (per_example_loss on the full logits), gradient for gradient."""
    tok = hf_tiny.tokenizer()
    trainer = _completion_trainer(tmp_path, tok, hf_tiny.lora(hf_tiny.causal_lm(tok)))
    assert trainer._positions_only
    inputs = next(iter(trainer.get_train_dataloader()))
    labels = inputs["labels"]
    with torch.no_grad():
        logits, _ = hf.causal_lm_logits(trainer.model, {k: v for k, v in inputs.items() if k in
                                                        ("input_ids", "attention_mask")}, labels, True)
    assert logits.shape[1] < labels.shape[1] - 1  # the prompt positions were left out
    grads = {}
    for positions_only in (True, False):
        trainer._positions_only = positions_only
        trainer.state.global_step = trainer.steps_taken = 0
        trainer.training_step(trainer.model, dict(inputs))
        grads[positions_only] = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        for p in trainer.model.parameters():
            p.grad_sample, p.grad = None, None
    assert grads[True].keys() == grads[False].keys()
    for n in grads[True]:
        assert torch.allclose(grads[True][n], grads[False][n], rtol=1e-5, atol=1e-8), n


@pytest.mark.parametrize("sliced", [True, False])
def test_label_accuracy_scores_each_prompt_as_alone(monkeypatch, sliced):
    """label_accuracy (batched, sorted by length, padded) against each prompt scored alone, without padding: the
    summed log-probabilities of each choice's tokens from the full logits."""
    from edgeworth.causal_lm import label_accuracy

    tok = hf_tiny.tokenizer()
    model = hf_tiny.causal_lm(tok, seed=5)
    assert hf.accepts_logits_to_keep(model)
    monkeypatch.setattr(hf, "accepts_logits_to_keep", lambda m: sliced)
    prompts = hf_tiny.texts(11)
    for choices in ((" good", " bad"), (" very good", " not good at all", " fine")):
        best = []
        for p in prompts:
            ids = tok(p, add_special_tokens=False)["input_ids"]
            scores = []
            for c in choices:
                cids = tok(c, add_special_tokens=False)["input_ids"]
                with torch.no_grad():
                    logp = torch.log_softmax(model(input_ids=torch.tensor([ids + cids])).logits[0].double(), -1)
                scores.append(sum(float(logp[len(ids) - 1 + t, k]) for t, k in enumerate(cids)))
            assert sorted(scores)[-1] - sorted(scores)[-2] > 1e-6  # no near tie
            best.append(choices[scores.index(max(scores))])
        answers = [b if i % 3 else next(c for c in choices if c != b) for i, b in enumerate(best)]
        expected = sum(i % 3 != 0 for i in range(len(prompts))) / len(prompts)
        assert label_accuracy(model, tok, prompts, answers, choices, batch_size=4) == expected
