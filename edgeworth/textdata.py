"""Labelled text for fine-tuning: reading TSV/CSV files, tokenizing, batching.

Kept apart from the training loop (:mod:`edgeworth.finetune`): nothing here
knows about privacy.  The batches it makes are what the loop feeds the model:
``(input_ids, attention_mask, labels)``, padded to the longest example of the
batch.  A Poisson-sampled batch can be empty; Opacus's data loader makes the
empty batch itself.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

#: Column names tried, in order, when no text column is named.
TEXT_COLUMNS = ("sentence", "text")

#: The environment variable that overrides where SST-2 is looked for.
SST2_ENV = "EDGEWORTH_SST2_DIR"


def default_sst2_dir() -> Path:
    """Where SST-2 (GLUE's ``train.tsv`` and ``dev.tsv``) is read from by default.

    ``$EDGEWORTH_SST2_DIR`` if set (a folder holding the same two files);
    else the copy that ships inside the package, ``edgeworth/datasets/sst2/``
    (package data: ``pip install .`` installs it with the code, so it is found
    from any working directory, in a source checkout or an installed copy).
    Its README gives the source and the citation.
    """
    if os.environ.get(SST2_ENV):
        return Path(os.environ[SST2_ENV])
    return Path(__file__).resolve().parent / "datasets" / "sst2"


@dataclass(frozen=True)
class LabelledText:
    """Examples read from one file.

    Attributes:
        texts: the text of each example.
        labels: integer class ids, 0 .. len(label_names) - 1.
        label_names: the label as written in the file, for each class id.
        path: the file they came from.
        users: the user (privacy unit) of each example, as written in the
            file's user column; None when no user column was read.
    """

    texts: List[str]
    labels: List[int]
    label_names: List[str]
    path: str
    users: Optional[List[str]] = None

    def __len__(self) -> int:
        return len(self.texts)


def read_labelled_text(path, *, text_column: Optional[str] = None, label_column: str = "label",
                       limit: Optional[int] = None, label_names: Optional[Sequence[str]] = None,
                       user_column: Optional[str] = None) -> LabelledText:
    """Reads a TSV (``.tsv``) or CSV file with a header row.

    Args:
        path: the file.
        text_column: the column holding the text (default: the first of
            "sentence" and "text" that the header has).
        label_column: the column holding the label (default "label").
        limit: keep only the first ``limit`` examples (an integer >= 1), or
            all of them (None).
        label_names: the class names in class-id order, to share one
            mapping between a training and a dev file.  By default labels
            that are all integers keep their value (SST-2: 0 negative,
            1 positive), and other labels are numbered in sorted order.
        user_column: the column naming each example's user, for user-level
            privacy (None: not read).

    Raises:
        ValueError: a missing file or column, an empty file, a bad limit, a
            row without a label (or user), a row with more fields than the
            header, or a label outside ``label_names``.
    """
    path = Path(path)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1 or None, got {limit!r}")
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    tsv = path.suffix.lower() == ".tsv"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        header = reader.fieldnames or []
        if text_column is None:
            text_column = next((c for c in TEXT_COLUMNS if c in header), None)
        if text_column not in header:
            raise ValueError(f"text_column: {str(path)!r} has columns {header}, none of them "
                             f"{text_column if text_column else ' or '.join(TEXT_COLUMNS)!r}")
        if label_column not in header:
            raise ValueError(f"label_column: {str(path)!r} has columns {header}, not {label_column!r}")
        if user_column is not None and user_column not in header:
            raise ValueError(f"user_column: {str(path)!r} has columns {header}, not {user_column!r}")
        rows, users = [], []
        wanted = [text_column, label_column] + ([user_column] if user_column is not None else [])
        for row in reader:
            line = reader.line_num
            missing = [c for c in wanted if row[c] is None or (c != text_column and not row[c].strip())]
            if missing:
                raise ValueError(f"path: line {line} of {str(path)!r} has no {missing[0]!r} value "
                                 f"({len([v for v in row.values() if v is not None])} fields, the header has "
                                 f"{len(header)})")
            if None in row:
                raise ValueError(f"path: line {line} of {str(path)!r} has more fields than the header's "
                                 f"{len(header)}")
            rows.append((row[text_column], row[label_column].strip()))
            if user_column is not None:
                users.append(row[user_column].strip())
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"path: {str(path)!r} has no examples")
    raw = [label for _, label in rows]
    if label_names is None:
        if all(label.lstrip("-").isdigit() for label in raw):
            values = sorted({int(label) for label in raw})
            if values[0] < 0:
                raise ValueError(f"label_column: integer labels must be >= 0, got {values[0]}")
            label_names = [str(v) for v in range(values[-1] + 1)]
        else:
            label_names = sorted(set(raw))
    label_names = [str(name) for name in label_names]
    index = {name: i for i, name in enumerate(label_names)}
    unknown = sorted({label for label in raw if label not in index})
    if unknown:
        raise ValueError(f"label_column: labels {unknown[:5]} in {str(path)!r} are not among {label_names}")
    return LabelledText(texts=[t for t, _ in rows], labels=[index[label] for label in raw],
                        label_names=label_names, path=str(path), users=users if user_column is not None else None)


class TokenizedText(Dataset):
    """Token ids of each example (unpadded) and its label; ``dataset[i]`` is
    ``(LongTensor of ids, LongTensor label)``."""

    def __init__(self, examples: LabelledText, tokenizer, max_length: int) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
        encoded = tokenizer(list(examples.texts), truncation=True, max_length=max_length)["input_ids"]
        self.ids = [torch.tensor(ids, dtype=torch.long) for ids in encoded]
        self.labels = torch.tensor(examples.labels, dtype=torch.long)
        self.num_labels = len(examples.label_names)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.ids[i], self.labels[i]


def padding_collate(pad_id: int) -> Callable[[list], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """A collate function padding ids to the longest example of the batch.

    Returns ``(input_ids [B, L], attention_mask [B, L], labels [B])``.
    """
    def collate(batch):
        longest = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, (ids, _) in enumerate(batch):
            input_ids[row, :len(ids)] = ids
            attention_mask[row, :len(ids)] = 1
        return input_ids, attention_mask, torch.stack([label for _, label in batch])
    return collate
