""":func:`finetune`: a run from its settings to its report, checking everything that can be checked before the
model loads (settings, the checkpoint file, the data, the batch size, the budget), then training by the
example-level (Opacus) or the user-level loop, with checkpoints and resume."""
from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import mechanisms as edgeworth_mechanisms
from .. import userlevel
from ..accountant import Accountant
from ..textdata import TokenizedText, padding_collate
from . import budget, checkpoint, data
from .config import FinetuneConfig
from .loop import Plan, StepTrace, all_ranks, check_local_batches, make_private, train_steps, train_unit_steps
from .model import (Distributed, check_model_folder, default_model_path, evaluate, load_classifier,
                    parameters_sha256, resolve_device)
from .report import FinetuneReport


def finetune(config: Optional[FinetuneConfig] = None, **overrides: Any) -> FinetuneReport:
    """Fine-tunes a pre-trained encoder with DP-SGD and reports accuracy and privacy spent.

    Args:
        config: a :class:`FinetuneConfig` (defaults: all-MiniLM-L6-v2 on SST-2,
            eps = 8, delta = 1e-5, one epoch at expected batch size 256).
        **overrides: fields of :class:`FinetuneConfig` to change.

    Returns:
        A :class:`FinetuneReport` (on every rank of a distributed run).

    Raises:
        ValueError: a bad setting, a missing or malformed file, a folder
            without a model, a checkpoint that does not match the run or that
            the run would overwrite, or a target eps that not one more step
            fits.  All but a broken model folder's are raised before the model
            loads.
    """
    config = dataclasses.replace(config or FinetuneConfig(), **overrides).validate()
    if config.secure_rng and importlib.util.find_spec("torchcsprng") is None:
        raise ValueError("secure_rng: Opacus's secure mode needs the torchcsprng package, which is not installed "
                         "(and has no build for this torch); run without secure_rng")
    checkpoint.check_writable(config)
    state = checkpoint.load(config.resume) if config.resume else None
    dist = Distributed.from_environment()
    device = resolve_device(config.device, dist.local_rank)
    model_path = Path(config.model) if config.model else default_model_path()
    if state is not None:
        checkpoint.check_resume(state, config, model=str(model_path.resolve()), world_size=dist.world_size,
                                device=device)
    check_model_folder(model_path)
    if config.threads:
        torch.set_num_threads(config.threads)
    dist.start(device)
    try:
        run = _run_user_level if config.privacy_unit == "user" else _run_example_level
        return run(config, dist, device, state, model_path)
    finally:
        dist.stop()


def _read_data(config: FinetuneConfig, state: Optional[Dict[str, Any]]):
    train_text, dev_text = data.load_data(config)
    fingerprint = data.fingerprint(train_text)
    if state is not None:
        checkpoint.check_same_data(state, fingerprint, len(train_text))
    return train_text, dev_text, fingerprint


def _planned_steps(config: FinetuneConfig, q: float, state: Optional[Dict[str, Any]]) -> int:
    """The run's planned steps: --steps, else round(epochs / q), else the checkpoint's plan, else one epoch."""
    if config.steps is not None:
        planned = config.steps
    elif config.epochs is not None or state is None:
        planned = max(1, round(config.run_epochs / q))
    else:
        planned = state["planned_steps"]
    if state is not None and planned <= state["step"]:
        raise ValueError(f"steps: the checkpoint has already taken {state['step']} steps; ask for more to extend "
                         f"the run (this run plans {planned})")
    return planned


def _plan(config: FinetuneConfig, q: float, state: Optional[Dict[str, Any]]) -> Plan:
    """The plan at rate q: a fresh run's, or the checkpoint's (its q must be this data's and batch size's; its
    sigma, step and examples continue)."""
    plan = Plan(sample_rate=q, planned_steps=_planned_steps(config, q, state))
    if state is not None:
        if not math.isclose(state["sample_rate"], q, rel_tol=1e-12):
            raise ValueError(f"batch_size: the checkpoint sampled at q = {state['sample_rate']:.6g}, this data and "
                             f"batch size give q = {q:.6g}")
        plan.start_step, plan.examples_before = state["step"], state["examples_seen"]
        plan.noise_multiplier = state["noise_multiplier"]
    return plan


def _finish_plan(plan: Plan, budget_stop: int, config: FinetuneConfig) -> None:
    plan.stop_at = budget_stop if config.stop_after is None else min(budget_stop, plan.start_step + config.stop_after)


def _load_model(config: FinetuneConfig, model_path: Path, train_text, dev_text, state):
    torch.manual_seed(config.seed)  # the head's initialisation (and LoRA's), the same on every rank
    tokenizer, core = load_classifier(model_path, len(train_text.label_names), pooling=config.pooling,
                                      lora_rank=config.lora_rank, train_embeddings=config.train_embeddings)
    train = TokenizedText(train_text, tokenizer, config.max_length)
    dev = TokenizedText(dev_text, tokenizer, config.eval_max_length)
    if state is not None:
        checkpoint.load_trainable_state(core, state["parameters"])
    return core, train, dev, padding_collate(tokenizer.pad_token_id or 0)


def _checkpoint_state(config, *, model_path, fingerprint, train_examples, core, optimizer, history, plan, step,
                      examples_seen, rng, dist, device, contribution_bound=None) -> Dict[str, Any]:
    return {
        "format": checkpoint.CHECKPOINT_FORMAT,
        "config": checkpoint.settings(config),
        "model_path": str(model_path.resolve()),
        "data_sha256": fingerprint,
        "train_examples": train_examples,
        "parameters": checkpoint.trainable_state(core),
        "optimizer": optimizer.state_dict(),
        "history": history,
        "step": step,
        "planned_steps": plan.planned_steps,
        "noise_multiplier": plan.noise_multiplier,
        "sample_rate": plan.sample_rate,
        "contribution_bound": contribution_bound,
        "examples_seen": examples_seen,
        "world_size": dist.world_size,
        "device_type": device.type,
        "rng": rng,
    }


# -- example level -------------------------------------------------------------------------------------------------
def _run_example_level(config: FinetuneConfig, dist: Distributed, device: torch.device,
                       state: Optional[Dict[str, Any]], model_path: Path) -> FinetuneReport:
    from opacus.accountants import create_accountant
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

    train_text, dev_text, fingerprint = _read_data(config, state)
    n = len(train_text)
    data.check_batch_size(config.batch_size, n)
    q = 1.0 / math.ceil(n / config.batch_size)  # Opacus's rate for Poisson sampling from a loader of this batch size
    plan = _plan(config, q, state)
    ledger = None
    budget_stop = plan.planned_steps
    if config.private:
        if plan.noise_multiplier is None:
            plan.noise_multiplier = config.noise_multiplier or budget.calibrate_noise_multiplier(
                config.target_eps, config.delta, plan.planned_steps, q, config.accountant)
        ledger = create_accountant(config.accountant)
        ledger.history = [tuple(e) for e in state["history"]] if state is not None else []
        budget_stop = budget.budget_stop(budget.opacus_eps_after(ledger, plan.noise_multiplier, q, config.delta),
                                         target_eps=config.target_eps, sigma=plan.noise_multiplier, q=q,
                                         start_step=plan.start_step, planned_steps=plan.planned_steps)
        if dist.active:
            check_local_batches(dist, plan, n)
    _finish_plan(plan, budget_stop, config)

    core, train, dev, collate = _load_model(config, model_path, train_text, dev_text, state)
    core.to(device).train()
    optimizer = torch.optim.AdamW([p for p in core.parameters() if p.requires_grad], lr=config.lr)
    streams = checkpoint.RandomStreams.seeded(config.seed, dist.rank, device, secure=config.secure_rng)
    trace = StepTrace(config.trace, dist.rank, dist.world_size)
    loader = DataLoader(train, batch_size=config.batch_size, collate_fn=collate, shuffle=not config.private,
                        generator=streams.sampler)
    model, criterion, private = core, nn.CrossEntropyLoss(), None
    if config.private:
        model, optimizer, criterion, loader, private = make_private(
            DPDDP(core) if dist.active else core, optimizer, criterion, loader, plan, config, streams, trace)
        private.engine.accountant.history = list(ledger.history)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        streams.restore(state["rng"][dist.rank])

    def history():
        return [tuple(e) for e in private.engine.accountant.history] if private else []

    def save(step: int, examples: int) -> None:
        if not config.checkpoint:
            return
        rng = checkpoint.all_rank_states(streams, dist.world_size)
        examples_seen = plan.examples_before + all_ranks(examples, dist, device)
        if dist.rank == 0:
            checkpoint.save(config.checkpoint, _checkpoint_state(
                config, model_path=model_path, fingerprint=fingerprint, train_examples=n, core=core,
                optimizer=optimizer, history=[list(e) for e in history()], plan=plan, step=step,
                examples_seen=examples_seen, rng=rng, dist=dist, device=device))
        if dist.active:
            torch.distributed.barrier()

    step, examples, seconds = train_steps(
        model, optimizer, criterion, loader, private, plan, config, dist, device, save, trace,
        lambda: budget.spent_epsilon(history(), config.delta, estimate=False)[0])
    examples, seconds = all_ranks(examples, dist, device), all_ranks(seconds, dist, device, op="max")
    accuracy = evaluate(core, dev, collate, device)
    spent = history()
    certified, estimate, estimate_method = budget.spent_epsilon(spent, config.delta) if private else (None, None, None)
    return FinetuneReport(
        dev_accuracy=accuracy, dev_examples=len(dev), private=config.private, eps_certified=certified,
        eps_estimate=estimate, eps_estimate_method=estimate_method,
        eps_accountant=budget._epsilon_with(private.engine.accountant, spent, config.delta) if private else None,
        accountant=config.accountant if private else None, target_eps=config.target_eps if private else None,
        delta=config.delta if private else None, noise_multiplier=plan.noise_multiplier,
        sample_rate=plan.sample_rate, max_grad_norm=config.max_grad_norm if private else None, steps=step,
        planned_steps=plan.planned_steps, stopped_by_budget_guard=step == budget_stop < plan.planned_steps,
        train_examples=n, examples_seen=plan.examples_before + examples,
        examples_per_s=examples / seconds if seconds > 0 else 0.0, train_seconds=seconds, device=str(device),
        world_size=dist.world_size,
        clipping={"ghost": "ghost", "hooks": "per-sample"}[private.clipping] if private else None,
        lora_rank=config.lora_rank, trainable_parameters=sum(p.numel() for p in core.parameters() if p.requires_grad),
        model=str(model_path), history=spent, parameters_sha256=parameters_sha256(core),
        resumed_from_step=plan.start_step, stopped_by_request=step < budget_stop)


# -- user level ----------------------------------------------------------------------------------------------------
def _contribution_bound(config: FinetuneConfig, counts) -> int:
    if config.contribution_bound is not None:
        return config.contribution_bound
    median_k = userlevel.choose_contribution_bound(counts, "els")
    if config.user_sampling == "els":
        return median_k
    kept = sum(min(c, median_k) for c in counts)
    steps_hint = config.steps or max(1, round(config.run_epochs * kept / config.batch_size))
    return userlevel.choose_contribution_bound(counts, "uls", eps=config.target_eps, delta=config.delta,
                                               steps=steps_hint, examples_per_step=config.batch_size)


def _run_user_level(config: FinetuneConfig, dist: Distributed, device: torch.device,
                    state: Optional[Dict[str, Any]], model_path: Path) -> FinetuneReport:
    if dist.active:
        raise ValueError("privacy_unit: user-level training runs in one process for now (no torchrun)")
    train_text, dev_text, fingerprint = _read_data(config, state)
    counts = data.examples_per_user(train_text.users)
    sampling = config.user_sampling
    k = state["contribution_bound"] if state is not None else _contribution_bound(config, counts)
    units = data.user_units(train_text.users, k, sampling, config.seed)
    kept_examples = sum(len(u) for u in units)
    data.check_batch_size(config.batch_size, kept_examples, f"examples kept (at most {k} per user)")
    q = min(1.0, config.batch_size / kept_examples)
    plan = _plan(config, q, state)
    ledger = Accountant()
    if state is not None:
        ledger.load_state_dict({"history": state["history"]})
    else:
        plan.noise_multiplier = config.noise_multiplier or userlevel.noise_multiplier(
            eps=config.target_eps, delta=config.delta, steps=plan.planned_steps, q=q, contribution_bound=k,
            sampling=sampling)
    sigma = plan.noise_multiplier
    step_mechanism = (userlevel.els_mechanism(sigma, q, k) if sampling == "els"
                      else edgeworth_mechanisms.PoissonSubsampledGaussian(sigma, q))
    budget_stop = budget.budget_stop(budget.ledger_eps_after(ledger, step_mechanism, config.delta),
                                     target_eps=config.target_eps, sigma=sigma, q=q, start_step=plan.start_step,
                                     planned_steps=plan.planned_steps)
    _finish_plan(plan, budget_stop, config)

    core, train, dev, collate = _load_model(config, model_path, train_text, dev_text, state)
    core.to(device).train()
    params = [p for p in core.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    streams = checkpoint.RandomStreams.seeded(config.seed, dist.rank, device)
    trace = StepTrace(config.trace)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        streams.restore(state["rng"][0])

    def save(step: int, examples: int) -> None:
        if config.checkpoint:
            checkpoint.save(config.checkpoint, _checkpoint_state(
                config, model_path=model_path, fingerprint=fingerprint, train_examples=len(train_text), core=core,
                optimizer=optimizer, history=ledger.state_dict()["history"], plan=plan, step=step,
                examples_seen=plan.examples_before + examples, rng=[streams.state()], dist=dist, device=device,
                contribution_bound=k))

    step, examples, seconds = train_unit_steps(
        core, params, optimizer, units, train, collate, plan, config, device, streams, save, trace,
        lambda: ledger.compose(mechanism=step_mechanism, steps=1))
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
        max_grad_norm=config.max_grad_norm, steps=step, planned_steps=plan.planned_steps,
        stopped_by_budget_guard=step == budget_stop < plan.planned_steps, train_examples=len(train),
        examples_seen=plan.examples_before + examples, examples_per_s=examples / seconds if seconds > 0 else 0.0,
        train_seconds=seconds, device=str(device), world_size=1,
        clipping="per-example" if sampling == "els" else "per-user", lora_rank=config.lora_rank,
        trainable_parameters=sum(p.numel() for p in params), model=str(model_path),
        history=ledger.state_dict()["history"], privacy_unit="user", user_sampling=sampling, contribution_bound=k,
        users=len(counts), parameters_sha256=parameters_sha256(core), resumed_from_step=plan.start_step,
        stopped_by_request=step < budget_stop)
