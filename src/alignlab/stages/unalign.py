"""`alignlab unalign`: reverse alignment with a small LoRA update, merged into a standalone model.

The recipe of gpt-oss-20b-base (2025): LoRA through PEFT on the MLPs of a few layers only,
trained with the plain language-modelling loss on pretraining-style text (never instructions
or chat transcripts), then merged. Targets are name suffixes matched inside the selected
decoder layers: `target_modules` for Linear layers (Llama's gate/up/down_proj),
`target_parameters` for fused weights that are bare parameters (a MoE's expert stacks, e.g.
GptOss's `mlp.experts.gate_up_proj`, adapted with rank r per expert). The targets are
resolved here to full names and handed to PEFT as such, because PEFT's `layers_to_transform`
does not apply to `target_parameters`; resolving them once also lets every bad choice (a
layer outside the model, a suffix that matches nothing, a rank above a matrix's smaller side)
be a one-line error before the run folder is claimed.
"""
from __future__ import annotations

import random
import time
import warnings
from pathlib import Path

from ..config import UnalignConfig
from ..data import read_rows
from ..errors import InputError
from ..runs import Run
from ..world import ASSISTANT, USER, World

# Markers of chat / instruction transcripts: the world's dialogue format and common templates.
CHAT_MARKERS = (f"\n{USER}", f"\n{ASSISTANT}", "\nHuman:", "### Instruction", "### Response", "<|im_start|>",
                "[INST]", "<|start|>", "<start_of_turn>", "<|user|>", "<|assistant|>")
CHAT_WARN_SHARE = 0.1


def looks_like_chat(text: str) -> bool:
    return text.lstrip().startswith((USER, "Human:")) or any(marker in text for marker in CHAT_MARKERS)


def pretraining_texts(cfg: UnalignConfig) -> list[str]:
    """Pretraining-style documents; warns when a sizeable share look like chat or instructions."""
    if cfg.data == "world":  # reviews and encyclopedia entries from a stream of its own (not eval's held-out text)
        world, rng, docs = World(cfg.world_seed), random.Random(f"{cfg.world_seed}-unalign-{cfg.seed}"), []
        while len(docs) < cfg.world_docs:
            doc = world.document(rng)
            if not doc.startswith(USER):
                docs.append(doc)
        return docs[:cfg.max_docs]
    texts, chat = [], 0
    for row in read_rows(cfg.data)[:cfg.max_docs]:
        if cfg.text_field in row:
            texts.append(str(row[cfg.text_field]))
            chat += looks_like_chat(texts[-1])
        elif "prompt" in row and "completion" in row:  # an SFT file: instructions by construction
            texts.append(f"{row['prompt']}{row['completion']}")
            chat += 1
        elif "messages" in row:
            texts.append("\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in row["messages"]))
            chat += 1
        else:
            read_rows(cfg.data, [cfg.text_field])  # raises the usual one-line "missing column" error
    if chat / len(texts) >= CHAT_WARN_SHARE:
        warnings.warn(f"data: {chat / len(texts):.0%} of the documents in {cfg.data} look like chat or instruction "
                      "transcripts; unalign expects pretraining-style text (continuing)", stacklevel=2)
    return texts


def decoder_layers(model) -> tuple[str, int]:
    """The name of the model's stack of decoder layers and its length."""
    import torch

    n = getattr(model.config.get_text_config(), "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return name, n
    raise InputError(f"model: cannot find its stack of {n} decoder layers, so `layers` cannot be applied")


def resolve_targets(model, cfg: UnalignConfig) -> tuple[list[str], list[str]]:
    """Full names of the modules and parameters to adapt, checked against the model."""
    import torch

    prefix, n = decoder_layers(model)
    layers = list(range(n)) if cfg.layers is None else sorted(set(cfg.layers))
    bad = [i for i in layers if not 0 <= i < n]
    if bad or not layers:
        what = f"{bad[0]} is not a layer of this model" if bad else "empty; name at least one layer"
        raise InputError(f"layers: {what} (it has {n}: 0..{n - 1})")
    if cfg.dropout and cfg.target_parameters:
        raise InputError("dropout: PEFT cannot apply dropout to target_parameters (fused weights); set dropout=0")
    if not cfg.target_modules and not cfg.target_parameters:
        raise InputError("target_modules: empty and no target_parameters either; nothing to adapt")
    starts = tuple(f"{prefix}.{i}." for i in layers)
    modules = {k: m for k, m in model.named_modules() if k.startswith(starts)}
    params = {k: p for k, p in model.named_parameters() if k.startswith(starts)}

    def known() -> str:  # what the first selected layer offers, for the error message
        first = f"{prefix}.{layers[0]}."
        names = [k[len(first):] for k, p in params.items() if k.startswith(first) and p.ndim >= 2]
        weights = sorted({k.removesuffix(".weight") for k in names if not k.endswith("bias")})
        return f"layer {layers[0]} has weights {', '.join(weights)}"

    def check_rank(name: str, shape) -> None:
        side = min(shape[-2:])
        if cfg.rank > side:
            raise InputError(f"rank: {cfg.rank} is larger than the smaller side ({side}) of {name} "
                             f"{'x'.join(map(str, shape[-2:]))}")

    out_modules, out_params = [], []
    for suffix in cfg.target_modules:
        hits = [k for k in modules if k.endswith(f".{suffix}")]
        if not hits:
            raise InputError(f"target_modules: {suffix!r} matches no module in layers {layers}; {known()} "
                             "(fused weights such as MoE experts go in target_parameters)")
        for k in hits:
            weight = getattr(modules[k], "weight", None)
            if not isinstance(weight, torch.nn.Parameter) or weight.ndim != 2:
                raise InputError(f"target_modules: {k} is a {type(modules[k]).__name__}, not a layer with a weight "
                                 f"matrix; {known()}")
            check_rank(k, weight.shape)
            out_modules.append(k)
    for suffix in cfg.target_parameters:
        hits = [k for k, p in params.items() if k.endswith(f".{suffix}") and p.ndim in (2, 3)]
        if not hits:
            raise InputError(f"target_parameters: {suffix!r} matches no 2-D or 3-D parameter in layers {layers}; "
                             f"{known()}")
        for k in hits:
            check_rank(k, params[k].shape)
            out_params.append(k)
    return [k for k in modules if k in out_modules], [k for k in params if k in out_params]  # model order


def build_lora(model, cfg: UnalignConfig):
    """The PEFT model with LoRA on exactly the resolved targets, and those targets."""
    from peft import LoraConfig, get_peft_model

    modules, params = resolve_targets(model, cfg)
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
                        target_modules=modules, target_parameters=params or None, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config), modules + params
    except ValueError as e:  # a target PEFT has no LoRA layer for
        raise InputError(f"target_modules: PEFT cannot adapt these targets ({str(e).splitlines()[0]})") from None


def run(cfg: UnalignConfig) -> Path:
    from transformers import Trainer, TrainingArguments, default_data_collator, set_seed

    from ..models import count_parameters, load_model, load_tokenizer
    from ..training import FiniteLossMixin, common_args, metrics_callback, save_final, train
    from .pretrain import pack

    texts = pretraining_texts(cfg)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model = load_model(cfg.model, cfg.trust_remote_code)
    total = count_parameters(model)
    set_seed(cfg.seed)  # LoRA's A matrices start random: seed them by this run's seed, not by what ran before
    peft_model, targets = build_lora(model, cfg)  # validates layers, targets and rank
    dataset = pack(texts, tokenizer, cfg.block_size)
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)

    args = TrainingArguments(**common_args(cfg, run), lr_scheduler_type="cosine", label_names=["labels"])
    trainer = type("UnalignTrainer", (FiniteLossMixin, Trainer), {})(
        model=peft_model, args=args, train_dataset=dataset, data_collator=default_data_collator,
        processing_class=tokenizer, callbacks=[metrics_callback(run)],
    )
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    start = time.time()
    result = train(trainer, run, cfg.resume)
    seconds = time.time() - start
    trainer.model = peft_model.merge_and_unload()  # a standalone model, saved like every other
    save_final(trainer, tokenizer, run)
    run.finish(**result, documents=len(texts), corpus_tokens=len(dataset) * cfg.block_size,
               lora_trainable_parameters=trainable, total_parameters=total,
               lora_trainable_fraction=trainable / total, adapted=targets, train_seconds=round(seconds, 2))
    return run.path
