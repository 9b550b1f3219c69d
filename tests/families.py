"""Tiny random models of real architectures, each with its family's chat format, built offline.

`build(family, tokenizer, out)` writes a Hugging Face folder (safetensors) that an alignlab stage
takes like any hub model: a 2-layer random model of the family's `model_type` (its config made by
`AutoConfig.for_model`, nothing downloaded) and the world's BPE tokenizer with the family's special
turn tokens, a short chat template in the family's style, its BOS habit, and a generation config
whose `eos_token_id` lists EOS and the end-of-turn token, as the real checkpoints' do.
The models are untrained: they check that every stage runs on the architecture and honours its
format, not what it learns.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Family:
    model_type: str
    template: str | None  # None: no chat template, so prompts are plain `User:`/`Assistant:` transcripts
    turn_tokens: tuple[str, ...] = ()  # special tokens of the chat format
    end_of_turn: str | None = None  # the token that closes an assistant turn, besides EOS
    bos: str | None = None  # a BOS token the tokenizer puts before every text (Llama, Gemma, Mistral)
    config: dict = field(default_factory=dict)  # architecture settings beyond the shared tiny ones


# Templates: the shape of each family's real one, cut to what one-turn prompts and answers need.
# Real templates have no {% generation %} markers, so neither do these.
LLAMA3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
GEMMA = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}"
         "\n{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
MISTRAL = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
           "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")
PHI3 = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
HARMONY = ("{% for m in messages %}<|start|>{{ m['role'] }}{% if m['role'] == 'assistant' %}<|channel|>final{% endif %}"
           "<|message|>{{ m['content'] }}<|end|>{% endfor %}"
           "{% if add_generation_prompt %}<|start|>assistant<|channel|>final<|message|>{% endif %}")

FAMILIES = {
    "llama": Family("llama", LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>",
                    bos="<|begin_of_text|>"),
    "qwen3": Family("qwen3", CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>", config=dict(head_dim=16)),
    "gpt2": Family("gpt2", None),
    # alternating sliding and full attention with a window shorter than a prompt, as Gemma 3 has
    "gemma3_text": Family("gemma3_text", GEMMA, ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>", bos="<bos>",
                          config=dict(head_dim=16, sliding_window=16,
                                      layer_types=["sliding_attention", "full_attention"])),
    # Mistral's turn ends with EOS itself: no separate end-of-turn token
    "mistral": Family("mistral", MISTRAL, ("[INST]", "[/INST]"), bos="<s>"),
    "phi3": Family("phi3", PHI3, ("<|user|>", "<|assistant|>", "<|end|>"), "<|end|>"),
    # a mixture of experts whose experts are fused 3-D parameters, not Linear layers
    "gpt_oss": Family("gpt_oss", HARMONY, ("<|start|>", "<|channel|>", "<|message|>", "<|end|>"), "<|end|>",
                      config=dict(head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=16)),
}


def tiny_config(family: Family, tokenizer):
    """The family's config at a tiny size (GPT-2 names its sizes its own way)."""
    from transformers import AutoConfig

    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if family.model_type == "gpt2":
        sizes = dict(n_embd=32, n_layer=2, n_head=2, n_inner=64, n_positions=256)
    else:
        sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                     intermediate_size=64, max_position_embeddings=256)
    return AutoConfig.for_model(family.model_type, **ids, **sizes, **family.config)


def family_tokenizer(family: Family, tokenizer_spec: str):
    """The world's tokenizer with the family's special tokens, BOS habit and chat template."""
    from alignlab.models import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_spec)
    if family.turn_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(family.turn_tokens)})
    if family.bos:
        tokenizer.add_special_tokens({"bos_token": family.bos})
        tokenizer.add_bos_token = True  # rebuilds the post-processor so that every text starts with BOS
    tokenizer.chat_template = family.template
    return tokenizer


def build(name: str, tokenizer_spec: str, out: Path, seed: int = 0) -> Path:
    """A random tiny `name` model with its tokenizer in `out` (safetensors), ready for any stage."""
    import torch
    from transformers import AutoModelForCausalLM

    family = FAMILIES[name]
    tokenizer = family_tokenizer(family, tokenizer_spec)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, tokenizer))
    if family.end_of_turn:  # real chat checkpoints stop generating at either
        model.generation_config.eos_token_id = [tokenizer.eos_token_id,
                                                tokenizer.convert_tokens_to_ids(family.end_of_turn)]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)
