"""The DP-SGD loops of a fine-tuning run, and the trace that records what each step drew.

* :func:`make_private` and :func:`train_steps`: example-level DP-SGD through
  Opacus (Poisson sampling by its ``DPDataLoader``, per-example or ghost
  clipping, noise added once per step, by rank 0 in a distributed run).  The
  sampler and the noise draw from the run's own generators
  (:class:`edgeworth.finetune.checkpoint.RandomStreams`), so that a checkpoint
  can save and restore them.
* :func:`dp_step` and :func:`train_unit_steps`: user-level DP-SGD (ELS or ULS,
  :mod:`edgeworth.userlevel`), a plain loop that clips one gradient per
  sampled unit.

References: Abadi et al., "Deep Learning with Differential Privacy" (CCS 2016);
Yousefpour et al., "Opacus" (arXiv 2109.12298).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .. import opacus as _edgeworth_opacus  # noqa: F401  (registers the "edgeworth" accountant with Opacus)
from .config import EMPTY_LOCAL_BATCH_RISK, FinetuneConfig
from .model import Distributed, choose_clipping


@dataclass
class Plan:
    """What is fixed before the first step of this invocation: the run's q, planned steps and sigma, where this
    invocation starts and where it stops (the budget guard's step, or earlier with ``stop_after``)."""

    sample_rate: float
    planned_steps: int
    start_step: int = 0
    examples_before: int = 0
    noise_multiplier: Optional[float] = None
    stop_at: int = 0


@dataclass
class Private:
    """The Opacus side of a private run."""

    engine: Any
    clipping: str  # Opacus's grad_sample_mode: "ghost" or "hooks"


class StepTrace:
    """Appends one JSON line per step to a file: the step, the rank, a fingerprint of the batch (the examples'
    token ids and labels, in order, of every physical part), the number of examples, and a fingerprint and the
    first values of the noise this rank added.  Off (every method a no-op) without a path."""

    def __init__(self, path: Optional[str], rank: int = 0, world_size: int = 1) -> None:
        self.path = None if path is None else (path if world_size == 1 else f"{path}.rank{rank}")
        self.rank = rank
        self._reset()

    def _reset(self) -> None:
        self._batch, self._noise, self._examples, self._head = hashlib.sha256(), hashlib.sha256(), 0, []

    @property
    def active(self) -> bool:
        return self.path is not None

    def batch(self, tensors: Sequence[torch.Tensor]) -> None:
        if not self.active:
            return
        for t in tensors:
            self._batch.update(t.detach().to("cpu").contiguous().numpy().tobytes())
        self._examples += len(tensors[-1])

    def noise(self, tensors: Sequence[torch.Tensor]) -> None:
        if not self.active:
            return
        for t in tensors:
            flat = t.detach().to("cpu", torch.float64).reshape(-1)
            self._noise.update(flat.numpy().tobytes())
            if len(self._head) < 3:
                self._head += [float(v) for v in flat[:3 - len(self._head)]]

    def step(self, step: int) -> None:
        if not self.active:
            return
        line = {"step": step, "rank": self.rank, "examples": self._examples, "batch": self._batch.hexdigest()[:16],
                "noise": self._noise.hexdigest()[:16], "noise_head": self._head}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        self._reset()


# -- example level: Opacus -----------------------------------------------------------------------------------------
def check_local_batches(dist: Distributed, plan: Plan, n: int) -> None:
    """Opacus's distributed sampler skips an empty local batch (which is not Poisson sampling): refuse runs where
    that is at all likely."""
    risk = plan.planned_steps * dist.world_size * (1.0 - plan.sample_rate) ** math.floor(n / dist.world_size)
    if risk > EMPTY_LOCAL_BATCH_RISK:
        raise ValueError(f"batch_size: with {dist.world_size} processes some local Poisson batch would be empty "
                         f"with probability up to {risk:.2g} over the run, and Opacus's distributed sampler skips "
                         "empty batches (no longer Poisson sampling); use a larger batch_size")


def make_private(net, optimizer, criterion, loader, plan: Plan, config: FinetuneConfig, streams=None,
                 trace: Optional[StepTrace] = None):
    """Opacus's PrivacyEngine around the model, optimizer, loss and loader (Poisson sampling).

    With ``streams`` (:class:`~edgeworth.finetune.checkpoint.RandomStreams`) the Poisson sampler draws from
    ``streams.sampler`` and the noise from ``streams.noise`` (unless secure mode supplies both); the data
    loader's own per-epoch seed draws from a generator of its own, so that no draw depends on where an epoch
    started.  Returns ``(model, optimizer, criterion, loader, Private)``.
    """
    from opacus import PrivacyEngine

    clipping = choose_clipping(net, config.clipping)
    engine = PrivacyEngine(accountant=config.accountant, secure_mode=config.secure_rng)
    noise = None if streams is None or config.secure_rng else streams.noise
    wrapped = engine.make_private(module=net, optimizer=optimizer, criterion=criterion, data_loader=loader,
                                  noise_multiplier=plan.noise_multiplier, max_grad_norm=config.max_grad_norm,
                                  poisson_sampling=True, grad_sample_mode=clipping, noise_generator=noise)
    model, optimizer, criterion, loader = wrapped if clipping == "ghost" else (wrapped[0], wrapped[1], criterion,
                                                                              wrapped[2])
    if not math.isclose(1.0 / len(loader), plan.sample_rate, rel_tol=1e-12):
        raise RuntimeError(f"Opacus accounts q = {1.0 / len(loader)!r}, calibrated for {plan.sample_rate!r}")
    if streams is not None and not config.secure_rng:
        loader.batch_sampler.generator = streams.sampler
        # Drawn at every new epoch for worker seeds (unused: no workers); kept off the streams that matter.
        loader.generator = torch.Generator().manual_seed(0)
    if trace is not None and trace.active:
        add_noise = optimizer.add_noise

        def traced_add_noise():
            add_noise()
            trace.noise([p.grad.reshape(-1) - p.summed_grad.reshape(-1) for p in optimizer.params])
        optimizer.add_noise = traced_add_noise
    if config.physical_batch_size:
        from opacus.utils.batch_memory_manager import wrap_data_loader
        loader = wrap_data_loader(data_loader=loader, max_batch_size=config.physical_batch_size, optimizer=optimizer)
    return model, optimizer, criterion, loader, Private(engine, clipping)


def train_steps(model, optimizer, criterion, loader, private: Optional[Private], plan: Plan, config: FinetuneConfig,
                dist: Distributed, device: torch.device, save: Callable[[int, int], None],
                trace: StepTrace, eps_now: Callable[[], float]) -> Tuple[int, int, float]:
    """Steps from ``plan.start_step`` to ``plan.stop_at``, saving checkpoints through ``save(step, examples)``;
    returns (last step, examples, seconds) of this process."""
    from tqdm.auto import tqdm

    stop_at = plan.stop_at
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
                trace.batch([input_ids, labels])
                if len(labels):
                    loss = criterion(model(input_ids.to(device), mask.to(device)), labels.to(device))
                    loss.backward()
                    loss_avg = float(loss.item()) if loss_avg is None else 0.95 * loss_avg + 0.05 * float(loss.item())
                else:  # an empty Poisson batch: the step still releases noise, and is accounted
                    zero_per_example_gradients(optimizer, private.clipping)
                optimizer.step()
                optimizer.zero_grad()
                seconds += time.perf_counter() - tick
                examples += len(labels)
                if getattr(optimizer, "_is_last_step_skipped", False):
                    tick = time.perf_counter()
                    continue  # one physical part of a larger Poisson batch: its gradients wait for the rest
                step += 1
                trace.step(step)
                if not bar.disable:
                    if private and (step % eps_every == 0 or step == stop_at or eps_shown is None):
                        eps_shown = eps_now()
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


def zero_per_example_gradients(optimizer, clipping: str) -> None:
    """What Opacus's optimizer expects after the backward pass of an empty batch."""
    for p in optimizer.params:
        if clipping == "ghost":
            p.grad = torch.zeros_like(p)
        else:
            p.grad_sample = p.new_zeros((0, *p.shape))


def all_ranks(value, dist: Distributed, device: torch.device, op: str = "sum"):
    """``value`` summed (or maxed) over the ranks of a distributed run."""
    if not dist.active:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    reduce_op = torch.distributed.ReduceOp
    torch.distributed.all_reduce(t, op=reduce_op.SUM if op == "sum" else reduce_op.MAX)
    return type(value)(t.item())


# -- user level: ELS and ULS ---------------------------------------------------------------------------------------
def dp_step(core: nn.Module, params: List[torch.Tensor], units: List[List[int]], sampled: List[int], train, collate,
            criterion, sigma: float, clip: float, expected_units: float, device: torch.device,
            noise_generator: Optional[torch.Generator] = None, trace: Optional[StepTrace] = None) -> int:
    """One DP-SGD step over the sampled units: each unit's gradient (the mean loss over its examples) is clipped
    to norm ``clip``, the clipped gradients are summed, N(0, sigma^2 clip^2) noise (from ``noise_generator``) is
    added to the sum, and the result divided by the expected number of units becomes the gradient.  Returns the
    examples used."""
    total = [torch.zeros_like(p) for p in params]
    examples = 0
    for u in sampled:
        input_ids, mask, labels = collate([train[i] for i in units[u]])
        if trace is not None:
            trace.batch([input_ids, labels])
        loss = criterion(core(input_ids.to(device), mask.to(device)), labels.to(device))
        grads = torch.autograd.grad(loss, params)
        norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads))
        scale = min(1.0, clip / (float(norm) + 1e-12))
        for t, g in zip(total, grads):
            t.add_(g.detach(), alpha=scale)
        examples += len(units[u])
    noises = [torch.randn(t.shape, generator=noise_generator, device=t.device, dtype=t.dtype) * (sigma * clip)
              for t in total]
    if trace is not None:
        trace.noise(noises)
    for p, t, z in zip(params, total, noises):
        p.grad = (t + z) / expected_units
    return examples


def train_unit_steps(core: nn.Module, params: List[torch.Tensor], optimizer, units: List[List[int]], train, collate,
                     plan: Plan, config: FinetuneConfig, device: torch.device, streams, save: Callable[[int, int], None],
                     trace: StepTrace, account: Callable[[], None]) -> Tuple[int, int, float]:
    """User-level steps from ``plan.start_step`` to ``plan.stop_at``: Poisson-samples units at rate q (from
    ``streams.sampler``), takes a :func:`dp_step`, and ``account()`` records it in the ledger.  Returns (last
    step, examples, seconds)."""
    criterion = nn.CrossEntropyLoss()
    q, expected = plan.sample_rate, plan.sample_rate * len(units)
    step, examples, seconds = plan.start_step, 0, 0.0
    core.train()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        while step < plan.stop_at:
            tick = time.perf_counter()
            sampled = torch.nonzero(torch.rand(len(units), generator=streams.sampler) < q).flatten().tolist()
            examples += dp_step(core, params, units, sampled, train, collate, criterion, plan.noise_multiplier,
                                config.max_grad_norm, expected, device, noise_generator=streams.noise, trace=trace)
            optimizer.step()
            optimizer.zero_grad()
            account()
            seconds += time.perf_counter() - tick
            step += 1
            trace.step(step)
            if step == plan.stop_at or (config.checkpoint_every and step % config.checkpoint_every == 0):
                save(step, examples)
    return step, examples, seconds
