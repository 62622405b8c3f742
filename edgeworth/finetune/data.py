"""The data of a fine-tuning run: reading the files, the checks that need only the data (before any model loads),
a fingerprint of the training examples for checkpoints, and the privacy units of a user-level run.

Reading, tokenizing and batching themselves live in :mod:`edgeworth.textdata`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Tuple

from ..textdata import LabelledText, default_sst2_dir, read_labelled_text
from .config import FinetuneConfig


def _read(path: Path, field: str, limit_field: str, **kwargs) -> LabelledText:
    """read_labelled_text, with its errors naming the run's fields (train_file, max_train, ...)."""
    try:
        return read_labelled_text(path, **kwargs)
    except ValueError as exc:
        message = str(exc)
        for name, ours in (("path", field), ("limit", limit_field)):
            if message.startswith(name):
                message = ours + message[len(name):]
        raise ValueError(message) from None


def load_data(config: FinetuneConfig) -> Tuple[LabelledText, LabelledText]:
    """The training and dev examples (SST-2 by default), with one label mapping for both."""
    sst2 = default_sst2_dir()
    train_file = Path(config.train_file) if config.train_file else sst2 / "train.tsv"
    dev_file = Path(config.dev_file) if config.dev_file else sst2 / "dev.tsv"
    train = _read(train_file, "train_file", "max_train", text_column=config.text_column,
                  label_column=config.label_column, limit=config.max_train,
                  user_column=config.user_column if config.privacy_unit == "user" else None)
    dev = _read(dev_file, "dev_file", "max_dev", text_column=config.text_column, label_column=config.label_column,
                limit=config.max_dev, label_names=train.label_names)
    return train, dev


def fingerprint(data: LabelledText) -> str:
    """sha256 of the examples in order (text, label name, user): a resume checks that it trains on the same data."""
    h = hashlib.sha256()
    users = data.users if data.users is not None else [""] * len(data)
    for text, label, user in zip(data.texts, data.labels, users):
        for part in (text, data.label_names[label], user):
            encoded = part.encode("utf-8")
            h.update(len(encoded).to_bytes(8, "little") + encoded)
    return h.hexdigest()


def check_batch_size(batch_size: int, available: int, what: str = "training examples") -> None:
    """The expected batch cannot exceed the examples there are (checked before tokenizing)."""
    if batch_size > available:
        raise ValueError(f"batch_size must be at most the number of {what} ({available}), got {batch_size}")


def user_units(users: List[str], k: int, sampling: str, seed: int) -> List[List[int]]:
    """The privacy units of a user-level run: each user keeps a fixed random subset of at most k of its examples;
    ELS samples those examples one by one (one unit each), ULS samples users (one unit per user).  The subsets
    depend on ``seed`` only, so a resumed run keeps them."""
    import torch

    by_user: Dict[str, List[int]] = {}
    for i, u in enumerate(users):
        by_user.setdefault(u, []).append(i)
    gen = torch.Generator().manual_seed(seed)
    kept = []
    for idx in by_user.values():
        order = torch.randperm(len(idx), generator=gen)[:k].tolist()
        kept.append(sorted(idx[j] for j in order))
    return [[i] for unit in kept for i in unit] if sampling == "els" else kept


def examples_per_user(users: List[str]) -> List[int]:
    """How many examples each user has, in order of first appearance."""
    per_user: Dict[str, int] = {}
    for u in users:
        per_user[u] = per_user.get(u, 0) + 1
    return list(per_user.values())
