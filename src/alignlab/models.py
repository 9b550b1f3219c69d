"""Models and tokenizers: named tiny configs, tokenizer training, and loading any HF causal LM.

Every model is a Hugging Face folder (`save_pretrained`, safetensors). Anywhere a model is
taken, the caller may pass a hub name, a local folder, or an earlier alignlab run folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError
from .runs import resolve_artifact

EOS, PAD = "<|endoftext|>", "<|pad|>"

# Renders messages the way the world's corpus writes dialogues, so a base model pretrained
# on the world already knows the chat format: "User: ...\nAssistant: ...<eos>". The generation
# markers let TRL's assistant_only_loss train on assistant turns only.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}Assistant:"
    "{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}"
    "{% if not loop.last %}\n{% endif %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

# One knob for size: hidden width, depth, heads. Parameter counts are with a 1024-token vocab.
TINY_CONFIGS = {
    "tiny-1m": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=384),
    "tiny-4m": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=768),
    "tiny-16m": dict(hidden_size=384, num_hidden_layers=8, num_attention_heads=6, intermediate_size=1280),
}


def train_tokenizer(texts, vocab_size: int = 1024):
    """A byte-level BPE tokenizer (the GPT-2 recipe) with the world's chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise InputError(f"vocab_size: must be at least 300 (256 bytes + specials + merges), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS, pad_token=PAD)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(name: str, tokenizer, max_length: int = 512, seed: int = 0):
    """A randomly initialised Llama-style model of a named tiny size."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if name not in TINY_CONFIGS:
        raise InputError(f"model: unknown tiny config {name!r}; choose one of {', '.join(TINY_CONFIGS)}")
    config = LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=max_length, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **TINY_CONFIGS[name],
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def locate(spec: str, what: str) -> str:
    """A local folder (or run folder's artifact) or else the spec itself as a hub name."""
    path = Path(spec).expanduser()
    if path.exists():
        return str(resolve_artifact(path, what))
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or spec.endswith("/"):
        raise InputError(f"{what}: path {spec} does not exist")
    if not hub_reachable():
        # without a network, the hub client would retry for a minute before failing; fail now, or read
        # the local cache in offline mode
        from huggingface_hub import constants, try_to_load_from_cache

        if not any(isinstance(try_to_load_from_cache(spec, f), str) for f in ("config.json", "tokenizer_config.json")):
            raise InputError(f"{what}: {spec!r} is neither a local folder nor in the local hub cache, and the hub "
                             "cannot be reached (offline)")
        constants.HF_HUB_OFFLINE = True
    return spec  # a hub name such as "gpt2" or "org/model"


_HUB_REACHABLE: bool | None = None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers (asked once per process); False in offline mode."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    global _HUB_REACHABLE
    if constants.HF_HUB_OFFLINE:
        return False
    if _HUB_REACHABLE is None:
        try:
            socket.create_connection((urlparse(constants.ENDPOINT).hostname, 443), timeout=timeout).close()
            _HUB_REACHABLE = True
        except OSError:
            _HUB_REACHABLE = False
    return _HUB_REACHABLE


def load_tokenizer(spec: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    where = locate(spec, "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise InputError(f"tokenizer: cannot load {spec!r}: {str(e).splitlines()[0]}") from None
    if tokenizer.pad_token is None:  # hub tokenizers (GPT-2, Llama) often ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(spec: str = "auto"):
    """The torch device a stage runs on: `auto` is this process's GPU (cuda:LOCAL_RANK under
    accelerate / torchrun) when CUDA is present, else the CPU; `cpu`, `cuda` and `cuda:N` as named."""
    import torch

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":  # one GPU per process under a launcher
        spec = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise InputError(f"device: {spec!r} is not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device: {spec!r} asked for, but this machine has no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"device: {spec!r}: only cpu and cuda are supported")
    return device


def resolve_dtype(spec: str = "auto", device=None):
    """The dtype models compute in: `auto` is bfloat16 on a GPU that supports it and float32 elsewhere
    (this CPU emulates bf16 10-25x slower than fp32)."""
    import torch

    if spec not in DTYPES:
        raise InputError(f"dtype: {spec!r} is not one of {', '.join(DTYPES)}")
    if spec == "auto":
        device = device or resolve_device()
        gpu_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if gpu_bf16 else torch.float32
    return getattr(torch, spec)


def compute_of(cfg) -> tuple:
    """(device, dtype) of a stage config's `device` and `dtype` fields."""
    device = resolve_device(cfg.device)
    return device, resolve_dtype(cfg.dtype, device)


def autocast(device, dtype):
    """Mixed precision for a hand-written loop (PPO) whose trained weights stay fp32: torch.autocast in
    the low dtype, or nothing in float32."""
    import contextlib

    import torch

    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def on_device(model, device):
    """The model on `device`, for sampling or measuring outside a Trainer; a quantized model stays where
    bitsandbytes put it (it cannot be moved)."""
    return model if getattr(model, "hf_quantizer", None) is not None else model.to(device)


def hidden_size(model) -> int:
    """Width of the last hidden state (a multimodal config such as Gemma 3's keeps it in its text config)."""
    return model.config.get_text_config().hidden_size


def load_pretrained(auto_class, spec: str, what: str, trust_remote_code: bool, dtype, device, **kwargs):
    """from_pretrained with safetensors only, and one-line errors for what a user meets: a missing or
    truncated weights file, a hub name that cannot be reached, an architecture this version lacks."""
    from safetensors import SafetensorError

    where = locate(spec, "model")
    local = Path(where).exists()
    try:
        model = auto_class.from_pretrained(where, dtype=dtype, use_safetensors=True,
                                           trust_remote_code=trust_remote_code, **kwargs)
    except SafetensorError as e:
        raise InputError(f"model: {spec}: unreadable safetensors weights ({e}); is the file complete?") from None
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not local and ("offline" in first.lower() or "connect" in first.lower() or "resolve" in first.lower()
                          or "not found" in first.lower() or "couldn't" in first.lower()):
            raise InputError(f"{what}: {spec!r} is neither a local folder nor reachable on the hub "
                             f"(no network, or no such model): {first}") from None
        raise InputError(f"{what}: cannot load {spec!r}: {first}") from None
    return model.to(device) if device is not None else model


def load_model(spec: str, trust_remote_code: bool = False, device="cpu", dtype="float32", quantize: str = "none"):
    """Any causal LM from a hub name, a local folder or a run folder; safetensors only.

    `device` and `dtype` take torch objects or their names ("auto" resolves as `resolve_device`
    and `resolve_dtype` do). A model a Trainer will train is loaded in float32 on the CPU (the
    defaults): the Trainer places it and keeps fp32 master weights under bf16 autocast. Frozen
    models (references, scorers, models only sampled or measured) take the stage's compute dtype."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(device) if isinstance(device, str) else device
    dtype = resolve_dtype(dtype, device) if isinstance(dtype, str) else dtype
    if quantize == "4bit":  # QLoRA: the frozen base in NF4, computing in `dtype`
        return load_pretrained(AutoModelForCausalLM, spec, "model", trust_remote_code, dtype, None,
                               **four_bit(dtype, resolve_device("auto")))
    return load_pretrained(AutoModelForCausalLM, spec, "model", trust_remote_code, dtype, device)


def four_bit(dtype, device) -> dict:
    """from_pretrained arguments for a 4-bit (NF4) base, as QLoRA trains on; CUDA and bitsandbytes only."""
    import importlib.util

    from transformers import BitsAndBytesConfig

    if device.type != "cuda":
        raise InputError("lora.quantize: 4-bit QLoRA needs a CUDA device (bitsandbytes); use quantize: none here")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise InputError("lora.quantize: 4-bit QLoRA needs bitsandbytes: pip install 'alignlab[qlora]'")
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                                bnb_4bit_use_double_quant=True)
    return {"quantization_config": config, "device_map": {"": device}}


def load_with_head(spec: str, num_labels: int, tokenizer, seed: int, trust_remote_code: bool = False):
    """A causal LM with a new sequence-classification head (a reward model's one logit, a
    classifier's two), fp32 on the CPU for the Trainer to place, safetensors only. The head starts
    random: it is seeded by `seed`, so the run does not depend on what ran before it in the process."""
    import torch
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(seed)
    kind = "a reward head" if num_labels == 1 else "a classifier head"
    model = load_pretrained(AutoModelForSequenceClassification, spec, f"model (for {kind})", trust_remote_code,
                  torch.float32, None, num_labels=num_labels)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
