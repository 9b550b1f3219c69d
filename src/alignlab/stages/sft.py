"""`alignlab sft`: supervised instruction tuning with TRL's SFTTrainer, loss on completions only.

Data: the world's demonstrations, or a file / hub set in TRL's prompt/completion or
messages format (messages are trained on assistant turns only).
"""
from __future__ import annotations

from pathlib import Path

from ..config import SFTConfig
from ..data import detect_format, read_rows
from ..errors import InputError
from ..runs import Run
from ..world import World


def sft_rows(cfg: SFTConfig) -> tuple[list[dict], str]:
    if cfg.data == "world":
        rows = World(cfg.world_seed).sft_data(cfg.world_examples, cfg.seed, cfg.positive_share, cfg.refusal_share)
        return rows, "prompt-completion"
    rows = read_rows(cfg.data)
    kind = detect_format(rows, cfg.data)
    if kind not in ("prompt-completion", "messages"):
        raise InputError(f"{cfg.data}: SFT needs prompt/completion or messages rows, found the {kind} format")
    return rows, kind


def build_trainer(cfg: SFTConfig, rows: list[dict], kind: str, model, tokenizer, run: Run):
    import datasets
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from ..training import FiniteLossMixin, common_args, metrics_callback

    args = TRLSFTConfig(
        **common_args(cfg, run), lr_scheduler_type="cosine", max_length=cfg.max_length, packing=False,
        assistant_only_loss=kind == "messages", activation_checkpointing=False,
    )
    return type("SFT", (FiniteLossMixin, SFTTrainer), {})(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer, callbacks=[metrics_callback(run)],
    )


def run(cfg: SFTConfig) -> Path:
    from ..models import load_model, load_tokenizer
    from ..training import save_final, train

    rows, kind = sft_rows(cfg)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model = load_model(cfg.model, cfg.trust_remote_code)
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
    trainer = build_trainer(cfg, rows, kind, model, tokenizer, run)
    result = train(trainer, run, cfg.resume)
    save_final(trainer, tokenizer, run)
    run.finish(**result, examples=len(rows), data_format=kind)
    return run.path
