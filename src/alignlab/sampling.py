"""Sampling completions and scoring sequences under a model: the two primitives of every
preference-labelling, RL and evaluation step.

`sample` returns token ids as well as text, so a KL estimate can score exactly the sampled
tokens (re-tokenizing decoded text would not round-trip). `completion_logprobs` sums
log p(completion | prompt) in batches.

Generation is most of the cost of RLHF, so `sample` does not call `model.generate` for
ordinary decoder-only models: `_decode` is a lean loop (one prefill, then one cached forward
per token) that skips generate's per-step machinery (logits processors, stopping criteria,
kwargs plumbing, per-step mask building), samples with one uniform per row instead of
torch.multinomial, writes the KV cache in place instead of growing it with torch.cat, and on CPU
stores Linear weights column-major while it runs (MKL's small-batch GEMM is faster that way).
It draws from exactly softmax(logits / temperature) of the model's conditional;
tests/test_sampling.py checks that.
"""
from __future__ import annotations

import contextlib
import inspect
import warnings
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer


@dataclass
class Sample:
    prompt: str
    completion: str
    prompt_ids: list[int]
    completion_ids: list[int]


def _progress(total: int, desc: str | None):
    return tqdm(total=total, desc=desc, disable=desc is None, leave=False)


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], max_new_tokens: int = 48, temperature: float = 1.0,
           greedy: bool = False, batch_size: int = 64, seed: int = 0, desc: str | None = None) -> list[Sample]:
    """One completion per prompt (pure sampling at `temperature`, or greedy), ending at EOS.

    Pure means no top-k/top-p or other processors from the model's generation_config: the
    samples follow the model's own conditional, which is what KL estimates and RL assume.
    completion_ids are exactly the sampled tokens, through the first EOS."""
    model.eval()
    torch.manual_seed(seed)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    decode = _decode
    if reason := unsupported_by_fast_path(model):
        warnings.warn(f"sample: {reason}; falling back to model.generate (slower)", stacklevel=2)
        decode = _generate
    out: list[Sample] = []
    weights = _column_major_linear_weights(model) if decode is _decode else contextlib.nullcontext()
    with _progress(len(prompts), desc) as bar, weights:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            encoded = tokenizer(chunk, add_special_tokens=False)["input_ids"]  # one batched call, same ids
            width = max(map(len, encoded))
            ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=model.device)
            mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=model.device)
            rows = decode(model, ids, mask, max_new_tokens, temperature, greedy, eos, pad)
            # tokens after EOS are padding (generate) or were never meant to be kept (_decode)
            completions = [row[:row.index(eos) + 1] if eos in row else row for row in rows]
            texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
            out += map(Sample, chunk, texts, encoded, completions)
            bar.update(len(chunk))
    return out


# Model types whose forward (in transformers 5.23) uses the 2D attention_mask only through
# create_causal_mask, which returns a 4D mask as is, and Linear weights only through nn.Linear: the
# per-step mask and weight-layout shortcuts are safe for them. Not for all: e.g. Falcon builds ALiBi
# biases from the 2D mask. Other models still take the fast path, without these two shortcuts.
_CHECKED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gpt2"})


@contextlib.contextmanager
def _column_major_linear_weights(model):
    """On CPU, store each nn.Linear weight column-major while decoding, then put the very same tensors back.

    Same values and shape, so F.linear computes the same products (up to summation order), but MKL
    then gets the (in, out) matrix untransposed, which its GEMM for a few rows (a decode step has
    batch-many) runs up to 1.6x faster at tiny-1m/4m shapes (1.0-1.6x by shape, measured with
    32 rows). Costs one extra copy of those weights meanwhile, and a few ms per call to make it."""
    if model.device.type != "cpu" or model.config.model_type not in _CHECKED_MODEL_TYPES:
        yield
        return
    weights = {id(m.weight): m.weight for m in model.modules()  # by identity: tied weights once
               if type(m) is torch.nn.Linear and m.weight.dim() == 2 and m.weight.is_contiguous()}
    originals = {key: w.data for key, w in weights.items()}
    try:
        for w in weights.values():
            w.data = w.data.t().contiguous().t()
        yield
    finally:
        for key, w in weights.items():
            w.data = originals[key]


def unsupported_by_fast_path(model) -> str | None:
    """Why `_decode` cannot run this model (then `sample` uses model.generate), or None if it can."""
    if getattr(model.config, "is_encoder_decoder", False):
        return f"{type(model).__name__} is an encoder-decoder model"
    accepted = inspect.signature(model.forward).parameters
    for name in ("attention_mask", "position_ids", "past_key_values"):
        if name not in accepted:
            return f"{type(model).__name__}.forward takes no {name}"
    try:
        layers = DynamicCache(config=model.config).layers
    except Exception as e:  # a config DynamicCache cannot read
        return f"no DynamicCache for {type(model).__name__} ({e})"
    # recurrent or linear-attention layers keep state that needs generate's own cache handling
    if odd := {type(layer) for layer in layers} - {DynamicLayer, DynamicSlidingWindowLayer}:
        return f"{type(model).__name__} has cache layers of type {', '.join(sorted(t.__name__ for t in odd))}"
    return None


def _generate(model, ids, mask, max_new_tokens, temperature, greedy, eos, pad) -> list[list[int]]:
    """The slow path: transformers' generate with every processor switched off."""
    return model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
        do_sample=not greedy, temperature=None if greedy else temperature, top_k=None, top_p=None,
        pad_token_id=pad, eos_token_id=eos,
    )[:, ids.shape[1]:].tolist()


@torch.inference_mode()  # ~10% faster than no_grad on tiny models; nothing but Python ints leaves
def _decode(model, ids, mask, max_new_tokens, temperature, greedy, eos, pad) -> list[list[int]]:
    """New tokens for a batch of left-padded prompts: prefill once, then one cached forward per token.

    Rows that reached EOS keep decoding (their tokens are dropped later) until every row has,
    like generate; rows never change the others' results, as padding is masked out."""
    batch, width = ids.shape
    cache = _cache(model.config, capacity=width + max_new_tokens)
    # count positions over real tokens only, so a left-padded prompt is seen as if unpadded
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    position = positions[:, -1:]  # the last column is a real token in every row
    # the mask grows by one column per step: allocate it whole, pass a growing slice
    attention = torch.cat([mask, mask.new_ones(batch, max_new_tokens)], dim=1)
    if _step_mask_is_padding_mask(model, cache):
        # a decode step's query sees every real token so far: its sdpa mask is just the padding mask as a
        # (batch, 1, 1, length) bool view, which create_causal_mask passes through instead of rebuilding
        attention = attention.bool()[:, None, None, :]
    # only the last position's logits are needed (skips a (batch, width, vocab) head in prefill)
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    new = ids.new_zeros(batch, max_new_tokens)
    finished = torch.zeros(batch, dtype=torch.bool, device=ids.device)

    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, **keep).logits[:, -1]
    for step in range(max_new_tokens):
        token = _draw(logits, temperature, greedy)
        new[:, step] = token[:, 0]
        if eos is not None:
            finished |= token[:, 0] == eos
        if step + 1 == max_new_tokens or finished.all():
            return new[:, :step + 1].tolist()
        position = position + 1
        logits = model(input_ids=token, attention_mask=attention[..., :width + step + 1], position_ids=position,
                       past_key_values=cache, use_cache=True, **keep).logits[:, -1]
    return new[:, :0].tolist()  # max_new_tokens == 0


def _step_mask_is_padding_mask(model, cache) -> bool:
    """Whether decode steps may pass the padding mask 4D: sdpa (bool masks), full attention only
    (sliding-window layers hold fewer keys and need their own mask) and a checked model type."""
    return (model.config._attn_implementation == "sdpa" and model.config.model_type in _CHECKED_MODEL_TYPES
            and all(type(layer) is _PreallocatedLayer for layer in cache.layers))


def _draw(logits: torch.Tensor, temperature: float, greedy: bool) -> torch.Tensor:
    """(batch, 1) next tokens: argmax, or an exact sample from softmax(logits / temperature).

    Inverse-CDF sampling needs one uniform per row; torch.multinomial on CPU costs ~15x more
    here (~0.9 ms for 32 x 1k vocab, a fifth of a tiny model's step). The CDF is left
    unnormalised (u is scaled to its total instead: one pass fewer) and summed in float64, so
    that even tiny probabilities are drawn at their rate; exp in float32 is as exact as
    generate's softmax (only probabilities below ~1e-45 underflow to zero)."""
    if greedy:
        return logits.argmax(-1, keepdim=True)
    shifted = logits.float() - logits.amax(-1, keepdim=True)  # a new tensor: the caller's logits stay intact
    if temperature != 1:  # (x - max x) / T = x / T - max(x / T); at T = 1 (RL's usual) one op fewer
        shifted /= temperature
    cdf = shifted.exp_().cumsum(-1, dtype=torch.float64)
    u = torch.rand(len(cdf), 1, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
    # the first token whose cumulative probability exceeds u; zero-probability tokens never are
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1)


class _PreallocatedLayer(DynamicLayer):
    """A DynamicLayer that writes new keys/values into a buffer sized for the whole generation.

    DynamicLayer appends with torch.cat, copying the layer's entire cache twice per step;
    here each step writes one column and attention gets a view of the filled part (same values)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.dtype, self.device = key_states.dtype, key_states.device
            self.key_buffer = key_states.new_empty((*key_states.shape[:-2], self.capacity, key_states.shape[-1]))
            self.value_buffer = value_states.new_empty((*value_states.shape[:-2], self.capacity, value_states.shape[-1]))
            self.is_initialized = True
        start, self.length = self.length, self.length + key_states.shape[-2]
        self.key_buffer[..., start:self.length, :] = key_states
        self.value_buffer[..., start:self.length, :] = value_states
        self.keys, self.values = self.key_buffer[..., :self.length, :], self.value_buffer[..., :self.length, :]
        return self.keys, self.values


def _cache(config, capacity: int) -> DynamicCache:
    """The model's DynamicCache with its full-attention layers preallocated (sliding ones kept as they are)."""
    cache = DynamicCache(config=config)
    cache.layers = [_PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


@torch.no_grad()
def completion_logprobs(model, tokenizer, prompt_ids: list[list[int]], completion_ids: list[list[int]],
                        batch_size: int = 64, per_token: bool = False) -> list:
    """Sum (or, with per_token, the list) of log p(completion token | everything before it)."""
    model.eval()
    pad = tokenizer.pad_token_id
    results = []
    for start in range(0, len(prompt_ids), batch_size):
        pairs = list(zip(prompt_ids[start:start + batch_size], completion_ids[start:start + batch_size]))
        rows = [p + c for p, c in pairs]
        width = max(map(len, rows))
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        # the token at position t is predicted by the logits at t - 1
        token_logprobs = logprobs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
        for i, (p, c) in enumerate(pairs):
            values = token_logprobs[i, len(p) - 1:len(p) - 1 + len(c)]
            results.append(values.tolist() if per_token else values.sum().item())
    return results


def encode_pairs(tokenizer, prompts: list[str], completions: list[str]) -> tuple[list, list]:
    """Token ids of prompts and completions, tokenized separately so the boundary is exact."""
    encode = lambda texts: [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]  # noqa: E731
    return encode(prompts), encode(completions)
