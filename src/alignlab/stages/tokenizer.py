"""`alignlab tokenizer`: train a byte-level BPE tokenizer (with the chat template) on a corpus."""
from __future__ import annotations

from pathlib import Path

from ..config import TokenizerConfig
from ..runs import Run
from .pretrain import corpus_texts


def run(cfg: TokenizerConfig) -> Path:
    from ..models import train_tokenizer

    texts = corpus_texts(cfg.data, cfg.text_field, cfg.world_seed, cfg.world_docs, seed=cfg.seed)
    run = Run.start(cfg.out, cfg.model_dump())
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    tokenizer.save_pretrained(str(run.path / "tokenizer"))
    n_tokens = sum(len(ids) for ids in tokenizer(texts[:2000])["input_ids"])
    n_bytes = sum(len(t.encode()) for t in texts[:2000])
    run.finish(vocab_size=len(tokenizer), bytes_per_token=round(n_bytes / max(1, n_tokens), 3))
    return run.path
