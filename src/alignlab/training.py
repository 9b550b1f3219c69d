"""Glue between alignlab runs and the transformers/TRL Trainer machinery, shared by every stage.

The Trainer brings the things we want for free (accelerate / DeepSpeed / FSDP underneath,
gradient accumulation, clipping, schedules, checkpoints with RNG state); this module adds
the three things a laboratory needs on top: metrics into the run folder, a stop on a
non-finite loss that keeps the last good checkpoint, and resume from the last *complete*
checkpoint after a kill -9.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .errors import InputError, TrainingFailed
from .runs import Run

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class NonFiniteLoss(TrainingFailed):
    pass


class FiniteLossMixin:
    """Raise before the optimizer steps when a micro-batch loss is NaN or infinite.

    Mixed into Trainer, SFTTrainer or DPOTrainer. The check runs before this step's update,
    so the weights (and every checkpoint saved so far) are the last good ones.
    """

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not math.isfinite(loss.item()):
            raise NonFiniteLoss(f"non-finite loss ({loss.item()}) at step {self.state.global_step + 1}")
        return loss


def metrics_callback(run: Run):
    from transformers import TrainerCallback

    class RunMetrics(TrainerCallback):
        """Append every Trainer log record to the run's metrics.jsonl."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                run.log({"step": state.global_step, **{k: v for k, v in logs.items() if k != "total_flos"}})

    return RunMetrics()


def last_complete_checkpoint(folder: Path, marker: str = "trainer_state.json") -> Path | None:
    """The newest checkpoint-N whose `marker` file (written last: the Trainer's trainer_state.json,
    PPO's state.json) parses; one killed while saving has none, or half of one."""
    if not Path(folder).is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in Path(folder).iterdir()
                    if (m := _CHECKPOINT.match(p.name)) and p.is_dir()), reverse=True)
    for _, path in found:
        try:
            json.loads((path / marker).read_text())
            return path
        except (FileNotFoundError, json.JSONDecodeError):
            continue  # killed while saving this one
    return None


def common_args(cfg) -> dict:
    """TrainingArguments fields every stage shares (also valid for TRL's config classes).

    Built before any model is loaded, so that a DeepSpeed ZeRO-3 config (under `accelerate launch`)
    is live when from_pretrained runs and shards the weights at load time. The model trains with
    fp32 master weights; on a GPU with dtype bfloat16/float16 the Trainer runs it under autocast.
    On the CPU always fp32 (this one emulates bf16 10-25x slower). use_cpu on a machine without
    CUDA is what makes several CPU processes train as one DDP group under `accelerate launch` /
    torchrun; without it each process would train alone."""
    import torch

    from .models import compute_of
    device, dtype = compute_of(cfg)
    on_gpu = device.type == "cuda"
    if dtype == torch.float16 and not on_gpu:
        raise InputError("dtype: float16 training needs a CUDA device; use float32 or bfloat16 on the CPU")
    return dict(
        use_cpu=not on_gpu,
        output_dir=str(Run(cfg.out).checkpoints_dir), seed=cfg.seed, data_seed=cfg.seed,
        learning_rate=cfg.lr, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, max_steps=cfg.max_steps,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        save_strategy="steps", save_steps=cfg.save_steps, logging_steps=cfg.logging_steps,
        logging_nan_inf_filter=False, report_to="none",
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        activation_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0, disable_tqdm=False, ddp_find_unused_parameters=False,
    )


def trainer_arguments(cls, cfg, **stage_fields):
    """The stage's TrainingArguments (or TRL config class `cls`): the shared fields, the stage's own, and
    on top the user's `trainer:` mapping, so any field of the installed class is one YAML line away
    (`trainer: {report_to: tensorboard, lr_scheduler_type: linear}`). Unknown names are refused."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg.trainer) - known)
    if unknown:
        raise InputError(f"trainer.{unknown[0]}: not a field of {cls.__module__.split('.')[0]}'s {cls.__name__}")
    try:
        return cls(**{**common_args(cfg), **stage_fields, **cfg.trainer})
    except (ValueError, TypeError, ImportError) as e:
        raise InputError(f"trainer: {cls.__name__} refused these settings: {str(e).strip().splitlines()[0]}") from None


def train(trainer, run: Run, resume: bool) -> dict:
    """Train (from the last complete checkpoint when resuming); on a non-finite loss or bad input
    met mid-training, mark the run failed (naming the last good checkpoint) and re-raise."""
    from transformers.trainer_callback import ProgressCallback

    from .console import quiet_progress_callback, verbose

    if not verbose():  # the bar stays; the dict the Trainer prints at every logged step goes (--verbose: back)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(quiet_progress_callback())
    checkpoint = last_complete_checkpoint(run.checkpoints_dir) if resume else None
    try:
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except NonFiniteLoss as e:
        good = last_complete_checkpoint(run.checkpoints_dir)
        message = f"{e}; last good checkpoint: {good if good else 'none (no checkpoint saved yet)'}"
        run.fail(message)
        raise NonFiniteLoss(message) from None
    except InputError as e:  # bad input found mid-training, e.g. a scorer returning NaN
        run.fail(str(e))
        raise
    return {"train_loss": output.training_loss, "global_step": output.global_step,
            "resumed_from": str(checkpoint) if checkpoint else None}


def load_trainable(cfg, spec: str | None = None):
    """The causal LM a stage trains: fp32 on the CPU, for the Trainer to place (fp32 master weights); with
    QLoRA (`lora.quantize: 4bit`) the frozen base in NF4 on this process's GPU, computing in the stage's dtype."""
    from .models import load_model

    spec = spec or cfg.model
    if getattr(cfg, "lora", None) is None or cfg.lora.quantize == "none":
        return load_model(spec, cfg.trust_remote_code)
    from peft import prepare_model_for_kbit_training

    model = load_model(spec, cfg.trust_remote_code, dtype=cfg.dtype, quantize=cfg.lora.quantize)
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)


def lora_config(cfg, task_type: str = "CAUSAL_LM"):
    """PEFT's LoraConfig for a stage config's `lora` settings; None when the stage trains every weight."""
    if getattr(cfg, "lora", None) is None:
        return None
    from peft import LoraConfig

    lora = cfg.lora
    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type=task_type,
                      target_modules=lora.target_modules)


def merged(model, cfg):
    """The model to save: a LoRA-trained model with its adapter merged (a standalone model, as every
    stage after it expects), unless the config keeps the adapter apart (`lora.merge: false`)."""
    from peft import PeftModel

    lora = getattr(cfg, "lora", None)
    if isinstance(model, PeftModel) and (lora is None or lora.merge):
        return model.merge_and_unload()
    return model


def save_final(trainer, tokenizer, run: Run, cfg=None) -> None:
    """Save the model and tokenizer to run/model (safetensors), on the main process; a LoRA adapter
    merged into it first unless `cfg.lora.merge` is false (then the adapter is saved alone).

    The Trainer also pickles its arguments there (training_args.bin); a model folder should hold
    nothing pickled, and the run's config.yaml already records every setting, so it goes."""
    if cfg is not None:
        trainer.model = merged(trainer.model, cfg)
    trainer.save_model(str(run.model_dir))
    if run.main:
        tokenizer.save_pretrained(str(run.model_dir))
        (run.model_dir / "training_args.bin").unlink(missing_ok=True)
