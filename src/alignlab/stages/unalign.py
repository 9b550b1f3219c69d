"""`alignlab unalign`: reverse alignment with a small LoRA update, merged into a standalone model.

The recipe of gpt-oss-20b-base (2025): LoRA through PEFT on the MLPs of a few layers only,
trained with the plain language-modelling loss on pretraining-style text (never instructions
or chat transcripts), then merged. By default the targets are found in each selected decoder
layer's MLP, whatever the architecture calls its weights: its Linear layers (Llama's
gate/up/down_proj, Phi-3's gate_up_proj) or GPT-2's Conv1D ones (c_fc, c_proj), and a MoE's
fused expert stacks (GptOss's `mlp.experts.gate_up_proj`, 3-D parameters adapted with rank r per
expert); the router stays frozen. Or they are named as suffixes matched inside the selected
layers: `target_modules` for Linear layers, `target_parameters` for fused weights. The targets are
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
from ..world import ASSISTANT, USER, World, document_kind

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
            if document_kind(doc) != "dialogue":
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


# What architectures call a decoder layer's MLP (Llama, GPT-2, Gemma, Phi-3, GptOss: mlp; Llama 4: feed_forward;
# Mixtral before transformers 5: block_sparse_moe).
MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe")


def is_router(name: str) -> bool:
    """A MoE's router (GptOss's router, Mixtral's gate, Qwen-MoE's shared_expert_gate): it picks experts and is
    no MLP weight, so it stays frozen, as in the gpt-oss-20b-base recipe."""
    return name == "router" or name.endswith("gate")


def mlp_targets(model, start: str) -> tuple[list[str], list[str]]:
    """The MLP weights of the decoder layer whose names begin with `start`: its Linear layers (or GPT-2's
    Conv1D) as modules, and fused expert stacks (3-D parameters, not inside such a layer) as parameters."""
    import torch
    from transformers.pytorch_utils import Conv1D

    def in_mlp(name: str) -> bool:
        parts = name[len(start):].split(".")
        return name.startswith(start) and parts[0] in MLP_NAMES and not is_router(parts[-1])

    modules = [k for k, m in model.named_modules() if in_mlp(k) and isinstance(m, (torch.nn.Linear, Conv1D))]
    params = [k for k, p in model.named_parameters()
              if in_mlp(k) and p.ndim == 3 and not k.startswith(tuple(f"{m}." for m in modules))]
    return modules, params


def resolve_targets(model, cfg: UnalignConfig) -> tuple[list[str], list[str]]:
    """Full names of the modules and parameters to adapt, checked against the model: the MLP's weights
    (`mlp_targets`) unless target_modules or target_parameters name them."""
    import torch

    prefix, n = decoder_layers(model)
    layers = list(range(n)) if cfg.layers is None else sorted(set(cfg.layers))
    bad = [i for i in layers if not 0 <= i < n]
    if bad or not layers:
        what = f"{bad[0]} is not a layer of this model" if bad else "empty; name at least one layer"
        raise InputError(f"layers: {what} (it has {n}: 0..{n - 1})")
    detect = cfg.target_modules is None and not cfg.target_parameters
    if not detect and not cfg.target_modules and not cfg.target_parameters:
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
    if detect:
        for i, start in zip(layers, starts):
            found_modules, found_params = mlp_targets(model, start)
            if not found_modules and not found_params:
                raise InputError(f"target_modules: found no MLP weights in layer {i} to adapt by default; {known()}; "
                                 "name them in target_modules (Linear layers) or target_parameters (fused weights)")
            out_modules += found_modules
            out_params += found_params
        for k in out_modules + out_params:
            check_rank(k, (modules[k].weight if k in modules else params[k]).shape)
    for suffix in cfg.target_modules or []:
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
    if cfg.dropout and out_params:
        raise InputError(f"dropout: PEFT cannot apply dropout to fused weights such as {out_params[0]} "
                         "(target_parameters); set dropout=0")
    return [k for k in modules if k in out_modules], [k for k in params if k in out_params]  # model order


def build_lora(model, cfg: UnalignConfig):
    """The PEFT model with LoRA on exactly the resolved targets, and those targets."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    modules, params = resolve_targets(model, cfg)
    # GPT-2's Conv1D stores its weight as (in, out), the transpose of a Linear's; PEFT must be told
    conv1d = bool(modules) and all(isinstance(model.get_submodule(k), Conv1D) for k in modules)
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
                        target_modules=modules, target_parameters=params or None, fan_in_fan_out=conv1d,
                        task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config), modules + params
    except ValueError as e:  # a target PEFT has no LoRA layer for
        raise InputError(f"target_modules: PEFT cannot adapt these targets ({str(e).splitlines()[0]})") from None


def run(cfg: UnalignConfig) -> Path:
    from transformers import Trainer, TrainingArguments, default_data_collator, set_seed

    from ..models import count_parameters, load_model, load_tokenizer
    from ..training import FiniteLossMixin, metrics_callback, save_final, train, trainer_arguments
    from .pretrain import pack

    texts = pretraining_texts(cfg)
    # before the model: see training.common_args
    args = trainer_arguments(TrainingArguments, cfg, lr_scheduler_type="cosine", label_names=["labels"])
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model = load_model(cfg.model, cfg.trust_remote_code)
    total = count_parameters(model)
    set_seed(cfg.seed)  # LoRA's A matrices start random: seed them by this run's seed, not by what ran before
    peft_model, targets = build_lora(model, cfg)  # validates layers, targets and rank
    dataset = pack(texts, tokenizer, cfg.block_size)
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
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
