"""Models and tokenizers: named tiny configs, tokenizer training, and loading any HF causal LM.

Every model is a Hugging Face folder (`save_pretrained`, safetensors). Anywhere a model is
taken, the caller may pass a hub name, a local folder, or an earlier alignlab run folder.
"""
from __future__ import annotations

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
    return spec  # a hub name such as "gpt2" or "org/model"


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


def load_model(spec: str, trust_remote_code: bool = False):
    """Any causal LM from a hub name, a local folder or a run folder; fp32, safetensors only."""
    import torch
    from transformers import AutoModelForCausalLM

    where = locate(spec, "model")
    try:
        return AutoModelForCausalLM.from_pretrained(
            where, dtype=torch.float32, use_safetensors=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise InputError(f"model: cannot load {spec!r}: {str(e).splitlines()[0]}") from None


def load_with_head(spec: str, num_labels: int, tokenizer, seed: int, trust_remote_code: bool = False):
    """A causal LM with a new sequence-classification head (a reward model's one logit, a
    classifier's two), fp32 and safetensors. The head starts random: it is seeded by `seed`, so
    the run does not depend on what ran before it in the process."""
    import torch
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(seed)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            locate(spec, "model"), num_labels=num_labels, dtype=torch.float32, use_safetensors=True,
            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        kind = "a reward head" if num_labels == 1 else "a classifier head"
        raise InputError(f"model: cannot load {spec!r} for {kind}: {str(e).splitlines()[0]}") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
