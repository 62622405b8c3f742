"""Checkpoints of a fine-tuning run, and the random streams they carry.

One format serves example-level and user-level runs.  A checkpoint holds

* the trainable parameters only (LoRA adapters and the head, or the unfrozen
  layers), not the frozen pre-trained model, which is read again from its folder;
* the optimizer's state, the privacy ledger, the step, the planned steps,
  sigma and q;
* every random state the run uses, for every rank: Python's ``random``,
  numpy's global generator, torch's CPU generator (and the CUDA one of the
  run's device), the Poisson sampler's generator and the noise generator;
* the run's settings and a fingerprint of its training examples, which a
  resume must match.

Restoring all of them makes a resumed run draw exactly the batches and the
noise that the run would have drawn had it never stopped: the accounting
assumes fresh sampling and fresh noise at every step, and a resume that
reseeded would replay them.  With Opacus's secure mode the sampler and the
noise come from a cryptographically secure generator whose state cannot be
saved: a resumed secure run continues with fresh secure randomness, which
the analysis covers just as well (every step's batch and noise are still
drawn afresh, and none is replayed).

Files are written atomically (a temporary file in the same folder, synced,
then renamed), so a crash never leaves half a checkpoint, and read with
``torch.load(weights_only=True)``, which runs no code from the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .config import FinetuneConfig

CHECKPOINT_FORMAT = "edgeworth-finetune/2"

#: Settings a resume may not change: they define the run (its sampling, noise, model and optimisation), and the
#: checkpoint's optimizer and random states were made with them.  seed is among them (every random state is
#: restored from the checkpoint, so a new seed could not take effect), and so is lr (the optimizer's saved state
#: carries it).  What may change: steps or epochs (to extend the run), target_eps (the guard re-checks it),
#: checkpoint, checkpoint_every, stop_after, overwrite, trace, progress, threads, physical_batch_size (memory only)
#: and the dev set (dev_file, max_dev, eval_max_length).
RESUME_MUST_MATCH = ("private", "privacy_unit", "accountant", "batch_size", "max_length", "pooling", "delta",
                     "max_grad_norm", "clipping", "lora_rank", "train_embeddings", "lr", "seed", "text_column",
                     "label_column", "user_column", "user_sampling", "secure_rng")


# -- random streams ----------------------------------------------------------------------------------------------
def stream_seed(seed: int, rank: int, stream: str) -> int:
    """A 63-bit seed for one named stream of one rank, derived from the run's seed (distinct streams and ranks
    get unrelated seeds)."""
    digest = hashlib.sha256(f"edgeworth-finetune/{seed}/{rank}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


@dataclass
class RandomStreams:
    """The generators of one rank: ``sampler`` draws the Poisson batches, ``noise`` the Gaussian noise (on the
    run's device).  Both are None under Opacus's secure mode, whose own generator then draws both."""

    sampler: Optional[torch.Generator]
    noise: Optional[torch.Generator]
    device: torch.device

    @classmethod
    def seeded(cls, seed: int, rank: int, device: torch.device, secure: bool = False) -> "RandomStreams":
        """Fresh streams of a new run; also seeds Python's, numpy's and torch's global generators (dropout)."""
        base = stream_seed(seed, rank, "global")
        random.seed(base)
        np.random.seed(base % 2 ** 32)
        torch.manual_seed(base)  # the CPU generator and every CUDA device's
        if secure:
            return cls(None, None, device)
        sampler = torch.Generator().manual_seed(stream_seed(seed, rank, "sampler"))
        noise = torch.Generator(device=device).manual_seed(stream_seed(seed, rank, "noise"))
        return cls(sampler, noise, device)

    def state(self) -> Dict[str, Any]:
        """Every random state of this process, in types ``torch.load(weights_only=True)`` reads back."""
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "sampler": None if self.sampler is None else self.sampler.get_state(),
            "noise": None if self.noise is None else self.noise.get_state(),
        }

    def restore(self, state: Dict[str, Any]) -> None:
        """Puts back what :meth:`state` saved (the secure generator, if any, continues with fresh randomness)."""
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        torch.set_rng_state(state["torch"])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)
        if self.sampler is not None:
            self.sampler.set_state(state["sampler"])
        if self.noise is not None:
            self.noise.set_state(state["noise"])


def all_rank_states(streams: RandomStreams, world_size: int) -> List[Dict[str, Any]]:
    """Every rank's random states, in rank order (a collective call: every rank calls it)."""
    mine = streams.state()
    if world_size == 1:
        return [mine]
    gathered: List[Any] = [None] * world_size
    torch.distributed.all_gather_object(gathered, mine)
    return gathered


# -- files -------------------------------------------------------------------------------------------------------
def check_writable(config: FinetuneConfig) -> None:
    """A run may write its checkpoint file: the folder exists, and an existing file is the one it resumes from
    or ``overwrite`` allows replacing it.  Checked before anything is loaded."""
    if not config.checkpoint:
        return
    path = Path(config.checkpoint)
    if not path.parent.is_dir():
        raise ValueError(f"checkpoint: the folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"checkpoint: {str(path)!r} is a folder, not a file")
    resuming_it = config.resume is not None and Path(config.resume).resolve() == path.resolve()
    if path.exists() and not resuming_it and not config.overwrite:
        raise ValueError(f"checkpoint: {str(path)!r} exists; resume from it, or allow replacing it with "
                         "overwrite (--overwrite)")


def save(path: str, state: Dict[str, Any]) -> None:
    """Writes ``state`` atomically: a temporary file in the same folder, flushed to disk, then renamed."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # the rename itself survives a power cut once the folder is synced
        fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str) -> Dict[str, Any]:
    """Reads a checkpoint, or raises ValueError naming what is wrong with the file (not a Python traceback)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"resume: no checkpoint file {path!r}")
    if p.stat().st_size == 0:
        raise ValueError(f"resume: {path!r} is empty, not an edgeworth fine-tuning checkpoint")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError, ValueError, UnicodeDecodeError,
            AttributeError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"resume: {path!r} is not an edgeworth fine-tuning checkpoint (torch.load with "
                         f"weights_only cannot read it: {type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise ValueError(f"resume: {path!r} is not an edgeworth fine-tuning checkpoint of format {CHECKPOINT_FORMAT}"
                         + (f" (it is {found!r})" if found else ""))
    return state


def check_resume(state: Dict[str, Any], config: FinetuneConfig, *, model: str, world_size: int,
                 device: torch.device) -> None:
    """Refuses a resume whose settings contradict the checkpoint's, naming the first such field."""
    saved = state["config"]
    for name in RESUME_MUST_MATCH:
        if saved[name] != getattr(config, name):
            raise ValueError(f"{name}: the checkpoint was made with {saved[name]!r}, this run asks for "
                             f"{getattr(config, name)!r}; a resume keeps the run's settings")
    if state["model_path"] != model:
        raise ValueError(f"model: the checkpoint was made with {state['model_path']!r}, this run asks for {model!r}")
    if config.noise_multiplier is not None and config.noise_multiplier != state["noise_multiplier"]:
        raise ValueError(f"noise_multiplier: the checkpoint's run uses sigma {state['noise_multiplier']!r}, this run "
                         f"asks for {config.noise_multiplier!r}; leave it out to continue at the run's sigma")
    if config.contribution_bound is not None and config.contribution_bound != state.get("contribution_bound"):
        raise ValueError(f"contribution_bound: the checkpoint's run keeps {state.get('contribution_bound')!r} "
                         f"examples per user, this run asks for {config.contribution_bound!r}")
    if state["world_size"] != world_size:
        raise ValueError(f"resume: the checkpoint was written by {state['world_size']} process(es), this run has "
                         f"{world_size}; resume with the same number (each rank continues its own random streams)")
    if state["device_type"] != device.type:
        raise ValueError(f"device: the checkpoint's random states are for {state['device_type']}, this run is on "
                         f"{device.type}; resume on the same kind of device")
    if state["step"] >= state["planned_steps"] and config.steps is None and config.epochs is None:
        raise ValueError(f"steps: the checkpoint has already taken its {state['planned_steps']} planned steps; "
                         "give more steps to extend the run")


def check_same_data(state: Dict[str, Any], data_fingerprint: str, examples: int) -> None:
    """A resume trains on the examples the checkpoint's run trained on."""
    if state["data_sha256"] != data_fingerprint:
        raise ValueError(f"train_file: the training examples ({examples}, sha256 {data_fingerprint[:12]}) are not "
                         f"the checkpoint's ({state['train_examples']}, sha256 {state['data_sha256'][:12]}); "
                         "a resume trains on the same file and max_train")


def trainable_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The trainable parameters, detached on the CPU, by name."""
    return {name: p.detach().to("cpu").clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, saved: Dict[str, torch.Tensor]) -> None:
    """Puts saved trainable parameters back; the names and shapes must be exactly the model's trainable ones."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(saved):
        missing, extra = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise ValueError(f"resume: the checkpoint's trainable parameters do not fit this model (missing {missing[:3]}, "
                         f"unexpected {extra[:3]})")
    with torch.no_grad():
        for name, p in params.items():
            if p.shape != saved[name].shape:
                raise ValueError(f"resume: parameter {name} has shape {tuple(saved[name].shape)} in the checkpoint, "
                                 f"{tuple(p.shape)} in this model")
            p.copy_(saved[name])


def settings(config: FinetuneConfig) -> Dict[str, Any]:
    """The run's settings as saved in a checkpoint (plain values only)."""
    return dataclasses.asdict(config)
