"""Throughput of DP-SGD against non-private training: examples/s on the same model and the same batch.

    python benchmarks/finetune_bench.py                       # all-MiniLM-L6-v2, batch 32, on CUDA if present
    python benchmarks/finetune_bench.py --batch-size 64 --steps 10 --json

Each mode trains the same model (all-MiniLM-L6-v2 by default, through
:func:`edgeworth.finetune.load_classifier`, as ``edgeworth finetune`` does)
on one fixed batch: the first ``--batch-size`` SST-2 training sentences,
padded to their longest.  Modes:

* ``non-private``: AdamW on the mean loss;
* ``dp-ghost``: Opacus DP-SGD with ghost clipping (per-example norms without
  per-example gradients), Gaussian noise, AdamW;
* ``dp-per-sample``: Opacus DP-SGD with materialised per-example gradients.

The batch is the same in every mode, so no Poisson sampling here: this
measures the cost of clipping and noise, not privacy.  Each mode runs
``--warmup`` untimed steps; then the modes take turns, one timed step each,
``--steps`` rounds (CUDA synchronised), so that a machine whose load drifts
slows every mode alike.  The figure is the batch size over the median step
time.  The output names the device and the thread count, and the DP /
non-private ratio.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgeworth.finetune import default_model_path, load_classifier, resolve_device
from edgeworth.textdata import default_sst2_dir, read_labelled_text

MODES = ("non-private", "dp-ghost", "dp-per-sample")


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model} ({torch.get_num_threads()} threads)"


def fixed_batch(tokenizer, train_file: Path, batch_size: int, max_length: int):
    text = read_labelled_text(train_file, limit=batch_size)
    enc = tokenizer(text.texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], torch.tensor(text.labels), len(text.label_names)


def training_step(mode: str, args, device: torch.device, batch):
    """A function doing one training step of ``mode`` on the batch."""
    from opacus import PrivacyEngine

    input_ids, mask, labels, num_labels = batch
    torch.manual_seed(0)
    _, model = load_classifier(args.model, num_labels, pooling="mean", lora_rank=args.lora_rank,
                               train_embeddings=False)
    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    if mode != "non-private":
        clipping = "ghost" if mode == "dp-ghost" else "hooks"
        loader = DataLoader(TensorDataset(input_ids, mask, labels), batch_size=len(labels))
        out = PrivacyEngine(accountant="edgeworth").make_private(
            module=model, optimizer=optimizer, criterion=criterion, data_loader=loader, noise_multiplier=1.0,
            max_grad_norm=1.0, poisson_sampling=False, grad_sample_mode=clipping)
        model, optimizer = out[0], out[1]
        criterion = out[2] if clipping == "ghost" else criterion
    input_ids, mask, labels = input_ids.to(device), mask.to(device), labels.to(device)

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        criterion(model(input_ids, mask), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start
    return step


def examples_per_second(args, device: torch.device, batch) -> dict:
    """{mode: batch size / median step time}, the modes timed in turns."""
    steps = {mode: training_step(mode, args, device, batch) for mode in args.modes}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times = {mode: [] for mode in steps}
    for _ in range(args.steps):
        for mode, step in steps.items():
            times[mode].append(step())
    return {mode: args.batch_size / statistics.median(t) for mode, t in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="encoder folder (default all-MiniLM-L6-v2)")
    p.add_argument("--train-file", type=Path, default=None, help="TSV/CSV to take the batch from (default SST-2)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lora-rank", type=int, default=0)
    p.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per mode")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.model = args.model or default_model_path()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    tokenizer, _ = load_classifier(args.model, 2, pooling="mean", lora_rank=0, train_embeddings=False)
    batch = fixed_batch(tokenizer, args.train_file or default_sst2_dir() / "train.tsv", args.batch_size,
                        args.max_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus's secure-RNG notice, frozen-embedding hook notices
        rates = examples_per_second(args, device, batch)
    result = {
        "device": device_name(device), "device_type": device.type, "model": str(args.model),
        "batch_size": args.batch_size, "tokens_per_example": int(batch[0].shape[1]), "lora_rank": args.lora_rank,
        "examples_per_s": rates,
        "dp_over_non_private": {m: r / rates["non-private"] for m, r in rates.items()
                                if m != "non-private" and "non-private" in rates},
        "command": "python benchmarks/finetune_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"device: {result['device']}; model {args.model}; batch {args.batch_size} x "
          f"{result['tokens_per_example']} tokens; median of {args.steps} steps")
    for mode, rate in rates.items():
        ratio = result["dp_over_non_private"].get(mode)
        print(f"  {mode:14s} {rate:9.1f} examples/s" + (f"   {ratio:.2f} x non-private" if ratio else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
