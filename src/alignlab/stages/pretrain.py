"""`alignlab pretrain`: causal-LM training on packed sequences.

AdamW, linear warmup then cosine decay to `min_lr_ratio * lr`, gradient accumulation and
clipping, periodic checkpoints, `--resume` from the last complete checkpoint (the Trainer
restores optimizer, scheduler, RNG state and the data position, so a resumed run ends where
an uninterrupted one would), and a stop on a non-finite loss.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..config import PretrainConfig
from ..data import read_texts
from ..errors import InputError
from ..runs import Run
from ..world import World


def corpus_texts(data: str, text_field: str, world_seed: int, world_docs: int,
                 canary_repeats=(1, 4, 16), seed: int = 0, passages: bool = False) -> list[str]:
    """Pretraining documents: the synthetic world's corpus, or the texts of a file / hub set."""
    if data == "world":
        return World(world_seed).corpus(world_docs, seed=seed, canary_repeats=canary_repeats, passages=passages)
    return read_texts(data, text_field)


def pack(texts: list[str], tokenizer, block_size: int):
    """Tokenize, join with EOS, and cut into full blocks of `block_size` tokens."""
    import datasets

    ids: list[int] = []
    for start in range(0, len(texts), 1000):
        for row in tokenizer(texts[start:start + 1000], add_special_tokens=False)["input_ids"]:
            ids.extend(row + [tokenizer.eos_token_id])
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise InputError(f"data: only {len(ids)} tokens, fewer than one block of {block_size}")
    blocks = [ids[i * block_size:(i + 1) * block_size] for i in range(n_blocks)]
    return datasets.Dataset.from_dict({"input_ids": blocks, "labels": blocks})


def run(cfg: PretrainConfig) -> Path:
    from transformers import Trainer, TrainingArguments, default_data_collator

    from ..models import TINY_CONFIGS, build_tiny_model, count_parameters, load_model, load_tokenizer, train_tokenizer
    from ..training import FiniteLossMixin, metrics_callback, trainer_arguments, save_final, train

    texts = corpus_texts(cfg.data, cfg.text_field, cfg.world_seed, cfg.world_docs, cfg.canary_repeats, cfg.seed,
                         cfg.passages)
    args = trainer_arguments(  # before the model: see training.common_args
        TrainingArguments, cfg, lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_ratio}, save_total_limit=cfg.save_total_limit,
        adam_beta1=0.9, adam_beta2=0.95,
    )
    if cfg.model in TINY_CONFIGS:
        tokenizer = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else train_tokenizer(texts)
        model = build_tiny_model(cfg.model, tokenizer, max_length=max(512, cfg.block_size), seed=cfg.seed)
    else:  # continue pretraining an existing model with its own tokenizer
        tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, cfg.trust_remote_code)
        model = load_model(cfg.model, cfg.trust_remote_code)
    dataset = pack(texts, tokenizer, cfg.block_size)
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
    trainer = type("PretrainTrainer", (FiniteLossMixin, Trainer), {})(
        model=model, args=args, train_dataset=dataset, data_collator=default_data_collator,
        processing_class=tokenizer, callbacks=[metrics_callback(run)],
    )
    start = time.time()
    result = train(trainer, run, cfg.resume)
    seconds = time.time() - start
    save_final(trainer, tokenizer, run)
    tokens = result["global_step"] * cfg.batch_size * cfg.grad_accum * cfg.block_size
    run.finish(**result, parameters=count_parameters(model), corpus_tokens=len(dataset) * cfg.block_size,
               tokens_trained=tokens, train_seconds=round(seconds, 2),
               tokens_per_second=round(tokens / max(seconds, 1e-9), 1))
    return run.path
