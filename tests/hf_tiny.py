"""Tiny models, a tiny tokenizer and tiny data for the PrivateTrainer tests (built locally; nothing downloaded)."""
from __future__ import annotations

import torch

WORDS = ("the film was good bad great awful fine dull fun slow a an it is not very quite plot acting story "
         "review sentiment positive negative").split()


def tokenizer():
    """A word-level fast tokenizer over :data:`WORDS` (with pad, eos and unk)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def causal_lm(tok, seed: int = 0):
    """A two-layer Llama with a 32-wide hidden state."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(config)


def lora(model):
    """The model with LoRA adapters (rank 4) on the attention projections."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            lora_dropout=0.0, task_type="CAUSAL_LM"))


def texts(n: int = 40):
    """n short sentences, deterministic."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        k = int(torch.randint(3, 9, (1,), generator=g))
        out.append(" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (k,), generator=g)))
    return out


class TextDataset(torch.utils.data.Dataset):
    def __init__(self, tok, sentences):
        self.items = [tok(s + " <eos>")["input_ids"] for s in sentences]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {"input_ids": self.items[i]}


def collator(tok):
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tok, mlm=False)


class StopAt:
    """A Trainer callback that ends training after step ``n`` (a preempted job), after its checkpoint."""

    def __new__(cls, n):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step >= n:
                    control.should_training_stop = True
                return control
        return _Stop()


def trainer(out_dir, *, use_lora=False, max_steps=6, save_steps=3, stop_at=None, seed=3, n=40, batch=4,
            accumulation=2, ddp_backend=None, **private):
    """A PrivateTrainer on the tiny Llama (optionally with LoRA) and ``n`` tiny sentences."""
    from transformers import TrainingArguments

    from edgeworth.hf import PrivateTrainer

    tok = tokenizer()
    model = causal_lm(tok)
    if use_lora:
        model = lora(model)
    args = TrainingArguments(output_dir=str(out_dir), per_device_train_batch_size=batch,
                             gradient_accumulation_steps=accumulation, max_steps=max_steps, logging_steps=1,
                             save_steps=save_steps, report_to=[], learning_rate=1e-2, seed=seed, use_cpu=True,
                             disable_tqdm=True, **({"ddp_backend": ddp_backend} if ddp_backend else {}))
    private = {"target_epsilon": 3.0, "target_delta": 1e-5, "max_grad_norm": 1.0, **private}
    return PrivateTrainer(model=model, args=args, train_dataset=TextDataset(tok, texts(n)),
                          data_collator=collator(tok), callbacks=[StopAt(stop_at)] if stop_at else None, **private)


def trainable(trainer_):
    """The trainable parameters at the end, by name, on the CPU."""
    return {k: p.detach().cpu().clone() for k, p in trainer_.model.named_parameters() if p.requires_grad}
