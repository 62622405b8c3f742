"""What a fine-tuning run reports: :class:`FinetuneReport`, as text or as a JSON-ready dict."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


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
        parameters_sha256: sha256 of the trainable parameters at the end, in
            name order (:func:`edgeworth.finetune.model.parameters_sha256`):
            equal for two runs that end with equal parameters.
        resumed_from_step: the step the run resumed from (0 for a fresh run).
        stopped_by_request: True when ``stop_after`` ended this invocation
            before the planned steps (a checkpoint holds the rest).
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
    parameters_sha256: str = ""
    resumed_from_step: int = 0
    stopped_by_request: bool = False
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
            + (f" (LoRA rank {self.lora_rank})" if self.lora_rank else "")
            + f"; parameters sha256 {self.parameters_sha256[:16]}",
        ]
        if self.resumed_from_step or self.stopped_by_request:
            lines.append((f"resumed from step {self.resumed_from_step}" if self.resumed_from_step else "fresh run")
                         + ("; stopped as asked (stop_after), the checkpoint continues it" if self.stopped_by_request
                            else ""))
        return "\n".join(lines)
