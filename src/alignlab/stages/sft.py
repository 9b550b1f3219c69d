"""`alignlab sft`: supervised instruction tuning with TRL's SFTTrainer, loss on completions only.

Data: the world's demonstrations, or a file / hub set in TRL's prompt/completion or
messages format (messages are trained on assistant turns only).
"""
from __future__ import annotations

from pathlib import Path

from ..config import SFTConfig
from ..data import read_examples
from ..runs import Run
from ..prompts import as_text, has_chat_template, user
from ..world import World
from ..world.judges import last_request


def sft_rows(cfg: SFTConfig, chat: bool = False) -> tuple[list[dict], str]:
    """The demonstrations and their format. The world's are `User:`/`Assistant:` transcripts; with `chat`
    (a model with a chat template) they become conversations, which TRL renders with that template, so
    the model learns the format, and the end-of-turn token, that every later stage prompts it with."""
    if cfg.data == "world":
        rows = World(cfg.world_seed).sft_data(cfg.world_examples, cfg.seed, cfg.positive_share, cfg.refusal_share,
                                                 cfg.recitation_share)
        if chat:
            rows = [{"prompt": user(last_request(r["prompt"])),
                     "completion": [{"role": "assistant", "content": r["completion"].removeprefix(" ")}]} for r in rows]
        return rows, "prompt-completion"
    return read_examples(cfg.data, ("prompt-completion", "messages"), cfg.data_format)


def training_args(cfg: SFTConfig, kind: str):
    from trl import SFTConfig as TRLSFTConfig

    from ..training import trainer_arguments

    return trainer_arguments(TRLSFTConfig, cfg, lr_scheduler_type="cosine", max_length=cfg.max_length, packing=False,
                             assistant_only_loss=kind == "messages")


def build_trainer(cfg: SFTConfig, args, rows: list[dict], model, tokenizer, run: Run):
    import datasets
    from trl import SFTTrainer

    from ..training import FiniteLossMixin, lora_config, metrics_callback

    return type("SFT", (FiniteLossMixin, SFTTrainer), {})(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), peft_config=lora_config(cfg),
        processing_class=tokenizer, callbacks=[metrics_callback(run)],
    )


def run(cfg: SFTConfig) -> Path:
    from ..models import load_tokenizer
    from ..training import load_trainable, save_final, train

    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    rows, kind = sft_rows(cfg, chat=has_chat_template(tokenizer))
    if not has_chat_template(tokenizer):  # conversations as plain transcripts, which TRL can read
        rows, kind = [as_text(tokenizer, row) for row in rows], "prompt-completion"
    args = training_args(cfg, kind)  # before the model: see training.common_args
    model = load_trainable(cfg)
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
    trainer = build_trainer(cfg, args, rows, model, tokenizer, run)
    result = train(trainer, run, cfg.resume)
    save_final(trainer, tokenizer, run, cfg)
    run.finish(**result, examples=len(rows), data_format=kind)
    return run.path
