"""Differentially private training inside the Hugging Face ``Trainer``: :class:`PrivateTrainer`.

``PrivateTrainer`` is a :class:`transformers.Trainer` that runs DP-SGD (Abadi et al., CCS 2016) with the noise
multiplier this library certifies.  It takes the Trainer's usual arguments plus ``target_epsilon``,
``target_delta`` and ``max_grad_norm`` (or ``noise_multiplier`` instead of a target), and trains causal-LM and
sequence-classification heads, plain or peft (LoRA) models.

What one optimizer step does (neighbouring datasets differ by adding or removing one training example):

* **Poisson sampling.**  Every example joins the step's logical batch independently with probability
  ``q = B / N``, where ``B`` = ``per_device_train_batch_size`` x ``gradient_accumulation_steps`` x world size is the
  *expected* batch and ``N`` the number of training examples.  The batch is drawn from a generator seeded by
  (seed, step) alone (:func:`edgeworth.finetune.checkpoint.stream_seed`), the same on every rank; rank ``r`` takes
  the sampled examples ``r, r + W, r + 2W, ...``.  An empty batch still takes a step (noise only).
* **Per-example clipping** to ``max_grad_norm`` (C).  Each rank splits its share into physical batches of
  ``per_device_train_batch_size`` (gradient accumulation), computes per-example gradients with Opacus's
  ``GradSampleHooks`` (hooks where Opacus has a grad sampler, ``torch.func`` for other layers, e.g. RMSNorm), and
  adds up the clipped gradients.  Each example's loss is its own (the mean over its own target tokens for a causal
  LM): a loss averaged over the whole batch would couple the examples and void the sensitivity bound.  An example
  whose gradient is not finite contributes nothing.  A causal LM's output layer runs only at the positions that
  predict a target token (``logits_to_keep``, where the model's forward takes it; :func:`causal_lm_logits`).
* **Noise once per logical step.**  The ranks' clipped sums are added up (``all_reduce``), Gaussian noise of std
  ``sigma * C`` from a generator seeded by (seed, step) is added (every rank draws the same noise, so the model
  stays identical on every rank and the noise counts once), and the result divided by ``B`` is the gradient
  the Trainer's optimizer applies.  The Trainer's own gradient clipping is turned off (it would clip the noisy
  mean, which is harmless but not what ``max_grad_norm`` means here).
* **Accounting.**  sigma comes from :func:`edgeworth.noise_multiplier` (certified) for the planned steps; the
  ledger is ``[(sigma, q, steps)]``; the Trainer's logs carry ``epsilon`` (the certified upper bound,
  :func:`edgeworth.epsilon`) and ``epsilon_estimate`` (the tilted saddle-point estimate, or the PRV accountant's
  where the tilted one declines; not a bound) at every logging step.
* **Budget guard.**  The run stops after the last step whose certified eps stays within ``target_epsilon``; a run
  where not even one step fits is refused before training.
* **Checkpoints.**  Each Trainer checkpoint holds ``edgeworth_privacy.json`` (the ledger, sigma, q, delta, C, the
  seed, the expected batch, N and the world size) beside the Trainer's own files (model or adapters, optimizer,
  scheduler, and each rank's Python, numpy, torch CPU and CUDA generator states).  The sampler's and the noise's
  generators are functions of (seed, step), so ``train(resume_from_checkpoint=...)`` draws exactly the batches and
  the noise of the uninterrupted run, and never those of an earlier step: a resumed run ends with the same
  parameters as one never stopped.  A resume whose settings contradict the checkpoint's is refused; to extend a
  run past its planned steps, give the checkpoint's ``noise_multiplier`` (the guard then checks the target).

The training loss in the Trainer's logs is computed from the data without noise (as in other DP trainers): it is
not covered by the guarantee; treat the logs as private, or do not publish the loss.

Mixed precision: ``bf16=True`` runs the forward pass under bf16 autocast (CPU or CUDA); ``fp16=True`` (CUDA) under
fp16 autocast with the Trainer's loss scaler (the loss is scaled for the backward pass and the per-example
gradients unscaled before clipping, so a skipped step cannot depend on the data).  Multi-process runs: DDP under
``torchrun`` or ``accelerate launch`` (NCCL or gloo).

What does not work (refused where it can be detected): FSDP, DeepSpeed and tensor parallelism (per-example
gradients of sharded parameters are not wired in); ghost clipping (this trainer materialises per-example
gradients, which is cheap for LoRA adapters and costly for full fine-tuning of large models); a custom
``compute_loss`` or ``compute_loss_func`` (the per-example loss is built in); ``IterableDataset`` training sets
(Poisson sampling needs N); Opacus's secure RNG; models with trainable layers that hold buffers (BatchNorm).

References: Abadi et al., "Deep Learning with Differential Privacy" (CCS 2016); Yousefpour et al., "Opacus"
(arXiv 2109.12298); Hu et al., "LoRA" (ICLR 2022).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import warnings
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from . import accounting as _accounting
from ._core import UnreachableTargetError
from .finetune.budget import budget_stop, spent_epsilon
from .finetune.checkpoint import stream_seed

PRIVACY_FILE = "edgeworth_privacy.json"
PRIVACY_FORMAT = "edgeworth-hf/1"
TASKS = ("causal-lm", "sequence-classification")
_STEP_KEY = "edgeworth_step"
_INDEX_KEY = "edgeworth_indices"


# -- Poisson sampling ----------------------------------------------------------------------------------------------
def poisson_indices(num_examples: int, sample_rate: float, seed: int, step: int) -> torch.Tensor:
    """The examples of step ``step``'s logical batch: each of ``num_examples`` joins independently with
    probability ``sample_rate``, from a generator seeded by (seed, step) only (the same on every rank)."""
    g = torch.Generator().manual_seed(stream_seed(seed, 0, f"hf-sampler/{step}"))
    return torch.nonzero(torch.rand(num_examples, generator=g) < sample_rate).flatten()


def step_noise_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of step ``step``'s Gaussian noise (seeded by (seed, step); the same on every rank)."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, 0, f"hf-noise/{step}"))


class PoissonBatchSampler:
    """Yields, for consecutive steps from ``start_step()``, this rank's share of each step's Poisson batch as
    ``(step, index)`` pairs (``(step, None)`` alone when the share is empty)."""

    def __init__(self, num_examples: int, sample_rate: float, steps_per_epoch: int, seed: int, rank: int,
                 world_size: int, start_step) -> None:
        self.train_examples, self.sample_rate, self.steps_per_epoch = num_examples, sample_rate, steps_per_epoch
        self.seed, self.rank, self.world_size, self.start_step = seed, rank, world_size, start_step

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self):
        first = int(self.start_step())
        for step in range(first, first + self.steps_per_epoch):
            mine = poisson_indices(self.train_examples, self.sample_rate, self.seed, step)[self.rank::self.world_size]
            yield [(step, int(i)) for i in mine] or [(step, None)]


class _StepTagged(torch.utils.data.Dataset):
    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        step, index = key
        return step, index, (None if index is None else self.dataset[index])


class _StepCollator:
    """The Trainer's collator on the sampled examples, plus the step the batch was drawn for."""

    def __init__(self, collate) -> None:
        self.collate = collate

    def __call__(self, items):
        steps = {s for s, _, _ in items}
        if len(steps) != 1:
            raise RuntimeError(f"a Poisson batch mixes steps {sorted(steps)}")
        examples = [x for _, i, x in items if i is not None]
        batch = dict(self.collate(examples)) if examples else {}
        batch[_STEP_KEY] = torch.tensor(steps.pop())
        batch[_INDEX_KEY] = torch.tensor([i for _, i, _ in items if i is not None], dtype=torch.long)
        return batch


# -- per-example losses --------------------------------------------------------------------------------------------
def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """Each example's own loss, shape [batch].

    causal-lm: the mean cross-entropy over the example's own target tokens (labels != -100; position t predicts
    label t + 1), 0 for an example with no target token.  sequence-classification: cross-entropy (mean squared
    error for a single regression output).
    """
    if task == "causal-lm":
        return target_token_loss(logits[:, :-1, :], labels[:, 1:])
    logits = logits.float()
    if logits.shape[-1] == 1 and labels.is_floating_point():
        return (logits.squeeze(-1) - labels.float()) ** 2
    return F.cross_entropy(logits, labels, reduction="none")


def target_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's mean cross-entropy over its target tokens (labels != -100), 0 for a row with none; ``logits``
    [batch, positions, vocab] are already aligned with ``labels`` [batch, positions]."""
    logits = logits.float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                         reduction="none").view(labels.shape)
    return ce.sum(dim=1) / (labels != -100).sum(dim=1).clamp(min=1)


def accepts_logits_to_keep(model) -> bool:
    """Whether the (unwrapped: DDP, peft) model's forward takes ``logits_to_keep`` (transformers' causal LMs)."""
    import inspect

    model = getattr(model, "module", model)
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def causal_lm_logits(net, chunk: Dict[str, Any], labels: torch.Tensor, positions_only: bool):
    """(logits, targets) of one physical causal-LM batch, aligned (position t's logits with token t + 1), for
    :func:`target_token_loss`.  With ``positions_only``, the output layer runs only at the positions that predict a
    target token in some row (``logits_to_keep``): the same losses as over all positions, without the
    vocabulary-sized projection of prompt and padding positions."""
    shifted = labels[:, 1:]
    keep = (shifted != -100).any(dim=0).nonzero().squeeze(1)
    if not positions_only or len(keep) == 0 or len(keep) == shifted.shape[1]:
        return net(**chunk).logits[:, :-1, :], shifted
    logits = net(**chunk, logits_to_keep=keep.to(chunk["input_ids"].device)).logits
    return logits, shifted[:, keep.to(shifted.device)]


def model_task(model) -> str:
    """"causal-lm" or "sequence-classification", from the (base) model's class name."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = type(base).__name__
    if name.endswith("ForCausalLM"):
        return "causal-lm"
    if name.endswith("ForSequenceClassification"):
        return "sequence-classification"
    raise ValueError(f"model: PrivateTrainer trains causal-LM and sequence-classification heads; {name} is "
                     "neither (give task= to say which loss it needs)")


# -- the trainer ---------------------------------------------------------------------------------------------------
class _BudgetGuard(TrainerCallback):
    def __init__(self, trainer: "PrivateTrainer") -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        stop_at = self.trainer._stop_at
        if stop_at is not None and state.global_step >= stop_at and state.global_step < state.max_steps:
            self.trainer.stopped_by_budget_guard = True
            control.should_training_stop = True
            control.should_log = True
            if args.save_strategy != "no":
                control.should_save = True
        return control


class PrivateTrainer(Trainer):
    """A :class:`transformers.Trainer` that trains with DP-SGD and certified accounting (see the module's text).

    Args (besides the Trainer's own):
        target_epsilon: the eps the run may spend (certified, add/remove neighbours); with no
            ``noise_multiplier`` sigma is calibrated so that the planned steps spend it exactly
            (:func:`edgeworth.noise_multiplier`); with one, it is the budget guard's limit only.
        target_delta: delta of the guarantee, in (0, 1).
        max_grad_norm: per-example clipping norm C > 0 (L2 over all trainable parameters).
        noise_multiplier: sigma (noise std / C) instead of calibrating it; without ``target_epsilon`` no guard
            stops the run and the logs still report the spent eps.
        task: "causal-lm" or "sequence-classification"; by default from the model's class.

    The expected batch is ``per_device_train_batch_size * gradient_accumulation_steps * world_size``; the
    Trainer's ``max_grad_norm`` and ``gradient_accumulation_steps`` are taken over (each optimizer step is one
    logical Poisson batch, processed in physical batches of ``per_device_train_batch_size``).  After
    ``train()``, :meth:`privacy_report` says what was spent.
    """

    def __init__(self, model=None, args=None, *trainer_args, target_epsilon: Optional[float] = None,
                 target_delta: Optional[float] = None, max_grad_norm: Optional[float] = None,
                 noise_multiplier: Optional[float] = None, task: Optional[str] = None, **trainer_kwargs) -> None:
        if args is None:
            raise ValueError("args: PrivateTrainer needs TrainingArguments (output_dir, batch size, steps)")
        _check_private_settings(target_epsilon, target_delta, max_grad_norm, noise_multiplier)
        if trainer_kwargs.get("compute_loss_func") is not None:
            raise ValueError("compute_loss_func: PrivateTrainer computes each example's own loss; a custom batch "
                             "loss is not supported")
        if args.deepspeed or args.fsdp:
            raise ValueError("args: PrivateTrainer supports one process or DDP; FSDP and DeepSpeed are not supported")
        self.target_epsilon, self.target_delta = target_epsilon, float(target_delta)
        self.max_grad_norm = float(max_grad_norm)
        self.accumulation = int(args.gradient_accumulation_steps)
        self.physical_batch_size = int(args.per_device_train_batch_size)
        dp_args = copy.copy(args)
        dp_args.gradient_accumulation_steps = 1  # one dataloader item = one logical Poisson batch
        dp_args.max_grad_norm = 0.0  # the Trainer's own clipping of the (noisy) mean gradient: off
        dp_args.ignore_data_skip = True  # batches are functions of the step: nothing to skip on resume
        super().__init__(model, dp_args, *trainer_args, **trainer_kwargs)
        self.task = task if task is not None else model_task(self.model)
        self._positions_only = self.task == "causal-lm" and accepts_logits_to_keep(self.model)
        if self.task not in TASKS:
            raise ValueError(f"task: one of {', '.join(TASKS)}; got {task!r}")
        if self.train_dataset is None or isinstance(self.train_dataset, torch.utils.data.IterableDataset):
            raise ValueError("train_dataset: Poisson sampling needs a map-style dataset of known length")
        self.train_examples = len(self.train_dataset)
        self.expected_batch_size = self.physical_batch_size * self.accumulation * self.args.world_size
        if self.expected_batch_size > self.train_examples:
            raise ValueError(f"per_device_train_batch_size: the expected batch ({self.expected_batch_size} = batch x "
                             f"accumulation x processes) exceeds the {self.train_examples} training examples")
        self.sample_rate = self.expected_batch_size / self.train_examples
        self.steps_per_epoch = max(1, round(self.train_examples / self.expected_batch_size))
        self.planned_steps = (self.args.max_steps if self.args.max_steps > 0
                              else math.ceil(self.args.num_train_epochs * self.steps_per_epoch))
        self.seed = int(self.args.seed)
        if noise_multiplier is None:
            self.noise_multiplier = calibrate(target_epsilon, self.target_delta, self.planned_steps,
                                              self.sample_rate)
        else:
            self.noise_multiplier = float(noise_multiplier)
        self.steps_taken = 0
        #: one record per step this process took: step, rank, examples of this rank, their indices in the
        #: training set, and the first two noise values of each trainable parameter (a trace for tests and audits)
        self.step_records: List[Dict[str, Any]] = []
        self.stopped_by_budget_guard = False
        self._stop_at = self._guard(0)  # refuses a run where not even one step fits, before training
        self._eps_cache: Dict[int, tuple] = {}
        self._params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("model: it has no trainable parameters")
        from opacus.grad_sample import GradSampleHooks
        self._hooks = GradSampleHooks(self.model, batch_first=True, loss_reduction="sum", strict=True)
        self.add_callback(_BudgetGuard(self))

    # -- accounting ----------------------------------------------------------------------------------------------
    @property
    def history(self) -> List[tuple]:
        """The ledger: ``[(noise_multiplier, sample_rate, steps)]`` (empty before the first step)."""
        return [(self.noise_multiplier, self.sample_rate, self.steps_taken)] if self.steps_taken else []

    def spent(self, steps: Optional[int] = None) -> tuple:
        """(certified eps, estimated eps, the estimate's method) after ``steps`` steps (default: those taken)."""
        steps = self.steps_taken if steps is None else steps
        if steps not in self._eps_cache:
            history = [(self.noise_multiplier, self.sample_rate, steps)] if steps else []
            self._eps_cache[steps] = spent_epsilon(history, self.target_delta)
        return self._eps_cache[steps]

    def _guard(self, start_step: int) -> Optional[int]:
        if self.target_epsilon is None:
            return None

        def eps_after(k: int) -> float:
            n = start_step + k
            return 0.0 if n == 0 else float(_accounting.epsilon(self.noise_multiplier, self.target_delta, n,
                                                                self.sample_rate))
        return budget_stop(eps_after, target_eps=self.target_epsilon, sigma=self.noise_multiplier,
                           q=self.sample_rate, start_step=start_step,
                           planned_steps=max(self.planned_steps, start_step))

    def privacy_report(self) -> Dict[str, Any]:
        """What the run spent, JSON-ready: certified eps (upper bound) and its estimate, the ledger, sigma, q."""
        certified, estimate, method = self.spent()
        return {"format": PRIVACY_FORMAT, "epsilon": certified, "epsilon_kind": "certified upper bound",
                "epsilon_estimate": estimate, "epsilon_estimate_method": method,
                "delta": self.target_delta, "target_epsilon": self.target_epsilon,
                "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "max_grad_norm": self.max_grad_norm, "steps": self.steps_taken, "planned_steps": self.planned_steps,
                "stopped_by_budget_guard": self.stopped_by_budget_guard,
                "expected_batch_size": self.expected_batch_size, "num_examples": self.train_examples,
                "world_size": self.args.world_size, "seed": self.seed, "history": [list(h) for h in self.history],
                "neighbours": "add/remove one training example", "sampling": "Poisson"}

    def log(self, logs: Dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs or "train_loss" in logs:
            certified, estimate, _ = self.spent()
            logs = {**logs, "epsilon": certified, "epsilon_estimate": estimate}
        super().log(logs, *args, **kwargs)

    # -- data ----------------------------------------------------------------------------------------------------
    def get_train_dataloader(self):
        dataset, collate = self.train_dataset, self.data_collator
        try:
            import datasets
            is_hf_dataset = isinstance(dataset, datasets.Dataset)
        except ImportError:
            is_hf_dataset = False
        if is_hf_dataset:
            dataset = self._remove_unused_columns(dataset, description="training")
        else:
            collate = self._get_collator_with_removed_columns(collate, description="training")
        sampler = PoissonBatchSampler(self.train_examples, self.sample_rate, self.steps_per_epoch, self.seed,
                                      self.args.process_index, self.args.world_size,
                                      start_step=lambda: self.state.global_step)
        # Not passed through accelerate: the sampler already gives each rank its share.
        return torch.utils.data.DataLoader(_StepTagged(dataset), batch_sampler=sampler,
                                           collate_fn=_StepCollator(collate),
                                           num_workers=self.args.dataloader_num_workers,
                                           pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available())

    # -- one DP-SGD step -----------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        step = int(inputs.pop(_STEP_KEY))
        indices = inputs.pop(_INDEX_KEY)
        if step != self.state.global_step or step != self.steps_taken:
            raise RuntimeError(f"privacy: the batch drawn for step {step} reached step {self.state.global_step} "
                               f"(ledger {self.steps_taken}); the accounting would not hold")
        if self._stop_at is not None and step >= self._stop_at:
            raise RuntimeError(f"privacy: step {step + 1} would pass the budget (the guard stops at {self._stop_at})")
        net = self.model
        net.train()
        device = self.args.device
        summed = [torch.zeros(p.shape, dtype=torch.float32, device=p.device) for _, p in self._params]
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        rows = _rows(inputs)
        scaler = getattr(self.accelerator, "scaler", None)
        no_sync = model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext()
        with no_sync, warnings.catch_warnings():
            # frozen embeddings (LoRA): Opacus's full backward hooks fire on outputs only, as they should
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for start in range(0, rows, self.physical_batch_size):
                chunk = self._prepare_inputs({k: (v[start:start + self.physical_batch_size]
                                                  if torch.is_tensor(v) and v.dim() > 0 else v)
                                              for k, v in inputs.items()})
                labels = chunk.pop("labels")
                with self.accelerator.autocast():
                    if self.task == "causal-lm":
                        logits, targets = causal_lm_logits(net, chunk, labels, self._positions_only)
                    else:
                        logits, targets = net(**chunk).logits, labels
                losses = (target_token_loss(logits, targets) if self.task == "causal-lm"
                          else per_example_loss(logits, targets, self.task))
                scale = float(scaler.get_scale()) if scaler is not None else 1.0
                (losses.sum() * scale).backward()
                self._clip_and_add(summed, len(losses), scale)
                loss_sum += losses.detach().double().nan_to_num(0.0).sum()
        examples = torch.tensor(float(rows), dtype=torch.float64, device=device)
        if self.args.world_size > 1:
            flat = torch.cat([s.reshape(-1) for s in summed]).to(device)
            torch.distributed.all_reduce(flat)
            torch.distributed.all_reduce(loss_sum)
            torch.distributed.all_reduce(examples)
            summed = [t.view(s.shape).to(s.device) for t, s in zip(flat.split([s.numel() for s in summed]), summed)]
        std = self.noise_multiplier * self.max_grad_norm
        noise_head: List[float] = []
        noise_scale = float(scaler.get_scale()) if scaler is not None else 1.0
        # One generator for the whole step, drawn in parameter order: the noise is i.i.d. over every coordinate of
        # every parameter (a generator per parameter, seeded alike, would repeat the same noise in parameters of
        # the same shape, and their difference would carry no noise at all).
        g = step_noise_generator(self.seed, step, self._params[0][1].device)
        for (_, p), s in zip(self._params, summed):
            noise = torch.normal(0.0, std, size=tuple(p.shape), generator=g, device=g.device).to(p.device)
            p.grad = ((s + noise) * (noise_scale / self.expected_batch_size)).to(p.dtype)
            noise_head.extend(float(v) for v in noise.reshape(-1)[:2])
        self.steps_taken += 1
        self.step_records.append({"step": step + 1, "rank": self.args.process_index, "examples": len(indices),
                                  "indices": indices.tolist(), "noise_head": noise_head})
        return (loss_sum / examples.clamp(min=1)).float().detach().to(device)

    def _clip_and_add(self, summed: List[torch.Tensor], batch: int, scale: float) -> None:
        """Clips this physical batch's per-example gradients to ``max_grad_norm`` and adds them to ``summed``."""
        grads = []
        for name, p in self._params:
            gs = getattr(p, "grad_sample", None)
            if gs is None:
                if p.grad is not None and bool(p.grad.ne(0).any()):
                    raise RuntimeError(f"privacy: parameter {name} has a gradient but no per-example gradient; "
                                       "clipping could not bound its sensitivity")
                gs = torch.zeros((batch, *p.shape), device=p.device)
            elif isinstance(gs, list):
                gs = torch.cat(gs, dim=0)
            if gs.shape[0] != batch:
                raise RuntimeError(f"privacy: the per-example gradients of {name} have {gs.shape[0]} rows for "
                                   f"{batch} examples (a layer whose input is shared by the batch, such as "
                                   "position embeddings); freeze that parameter")
            grads.append(gs.float() / scale)
            p.grad_sample, p.grad = None, None
        norms = torch.sqrt(sum(g.reshape(batch, -1).pow(2).sum(dim=1) for g in grads))
        factor = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        factor = torch.where(torch.isfinite(norms), factor, torch.zeros_like(factor))
        for s, g in zip(summed, grads):
            s.add_(torch.einsum("b,b...->...", factor, g.nan_to_num(0.0, 0.0, 0.0)))

    # -- checkpoints and resume ----------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            _write_json(os.path.join(folder, PRIVACY_FILE), self.privacy_report())

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if isinstance(resume_from_checkpoint, bool) and resume_from_checkpoint:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"resume_from_checkpoint: no checkpoint in {self.args.output_dir!r}")
        if resume_from_checkpoint:
            self._restore_ledger(str(resume_from_checkpoint))
        else:
            self.steps_taken = 0
        self.stopped_by_budget_guard = False
        self._stop_at = self._guard(self.steps_taken)
        return super().train(resume_from_checkpoint=resume_from_checkpoint or None, *args, **kwargs)

    def _restore_ledger(self, folder: str) -> None:
        path = os.path.join(folder, PRIVACY_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"resume_from_checkpoint: {folder!r} has no {PRIVACY_FILE}; it is not a checkpoint of "
                             "a private run, and resuming it would leave its steps unaccounted")
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("format") != PRIVACY_FORMAT:
            raise ValueError(f"resume_from_checkpoint: {path!r} is not of format {PRIVACY_FORMAT}")
        mine = self.privacy_report()
        for key in ("noise_multiplier", "sample_rate", "delta", "max_grad_norm", "seed", "expected_batch_size",
                    "num_examples", "world_size"):
            if saved[key] != mine[key]:
                raise ValueError(f"{key}: the checkpoint's run has {saved[key]!r}, this run {mine[key]!r}; a resume "
                                 "keeps the run's settings")
        with open(os.path.join(folder, "trainer_state.json"), encoding="utf-8") as f:
            global_step = json.load(f)["global_step"]
        if saved["steps"] != global_step:
            raise ValueError(f"resume_from_checkpoint: the ledger holds {saved['steps']} steps, the Trainer's state "
                             f"{global_step}")
        self.steps_taken = int(saved["steps"])


def calibrate(target_epsilon: float, delta: float, steps: int, sample_rate: float) -> float:
    """Certified sigma for (target_epsilon, delta) after ``steps`` steps at rate ``sample_rate``, or a ValueError
    that says no sigma meets the target."""
    try:
        return float(_accounting.noise_multiplier(target_epsilon, delta, steps, sample_rate))
    except UnreachableTargetError as exc:
        raise ValueError(f"target_epsilon: {exc}") from None


def _check_private_settings(target_epsilon, target_delta, max_grad_norm, noise_multiplier) -> None:
    def positive(name, value):
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name}: a finite number > 0; got {value!r}")
    if target_epsilon is None and noise_multiplier is None:
        raise ValueError("target_epsilon: give a target eps, or a noise_multiplier")
    if target_epsilon is not None:
        positive("target_epsilon", target_epsilon)
    if noise_multiplier is not None:
        positive("noise_multiplier", noise_multiplier)
    if target_delta is None or not isinstance(target_delta, (int, float)) or not 0 < target_delta < 1:
        raise ValueError(f"target_delta: a number in (0, 1); got {target_delta!r}")
    positive("max_grad_norm", max_grad_norm)


def _rows(inputs: Dict[str, Any]) -> int:
    for v in inputs.values():
        if torch.is_tensor(v) and v.dim() > 0:
            return int(v.shape[0])
    return 0


def _write_json(path: str, data: Dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
