"""Sampling completions and scoring sequences under a model: the two primitives of every
preference-labelling, RL and evaluation step.

`sample` returns token ids as well as text, so a KL estimate can score exactly the sampled
tokens (re-tokenizing decoded text would not round-trip). A prompt is plain text or a conversation
(TRL's list of {"role", "content"} messages); `alignlab.prompts` renders and encodes it and says
which ids end a turn. `completion_logprobs` sums log p(completion | prompt) in batches, computing
logits only where a completion token is predicted, so its memory does not grow with the full
(batch, length, vocab) logits. Everything runs on the model's device.

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
import functools
import inspect
import warnings
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from . import prompts as _prompts


@dataclass
class Sample:
    prompt: str | list[dict]  # exactly as given to `sample`: scorers render it in their own format
    completion: str
    prompt_ids: list[int]  # the ids of `text`: what the model read
    completion_ids: list[int]
    text: str = ""  # the rendered prompt (for a plain-text prompt, the prompt itself)


def _device(model) -> torch.device:
    """Where the model's inputs go: HF models say so (the first shard's device under a device map)."""
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


def _pad_id(tokenizer, stops: list[int]) -> int:
    """A filler id for padding: any id will do, as padding is masked out and never kept."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return stops[0] if stops else 0


def _through_first_stop(row: list[int], stops: set[int]) -> list[int]:
    """The tokens up to and including the first stop id (all of them if none stops)."""
    for i, token in enumerate(row):
        if token in stops:
            return row[:i + 1]
    return row


def _progress(total: int, desc: str | None):
    return tqdm(total=total, desc=desc, disable=desc is None, leave=False)


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str | list[dict]], max_new_tokens: int = 48, temperature: float = 1.0,
           greedy: bool = False, batch_size: int = 64, seed: int = 0, desc: str | None = None) -> list[Sample]:
    """One completion per prompt (pure sampling at `temperature`, or greedy), ending at the first
    stop id (`alignlab.prompts.stop_ids`: EOS and the model's end-of-turn ids).

    A prompt is plain text (read as it is) or a conversation (rendered with the tokenizer's chat
    template, ending with the generation prompt); BOS is prepended where the tokenizer adds one.
    Pure means no top-k/top-p or other processors from the model's generation_config: the
    samples follow the model's own conditional, which is what KL estimates and RL assume.
    completion_ids are exactly the sampled tokens, through the first stop id."""
    model.eval()
    torch.manual_seed(seed)
    stops = _prompts.stop_ids(model, tokenizer)
    stop_set, pad, device = set(stops), _pad_id(tokenizer, stops), _device(model)
    decode = _decode
    if reason := unsupported_by_fast_path(model):
        warnings.warn(f"sample: {reason}; falling back to model.generate (slower)", stacklevel=2)
        decode = _generate
    out: list[Sample] = []
    weights = _column_major_linear_weights(model) if decode is _decode else contextlib.nullcontext()
    with _progress(len(prompts), desc) as bar, weights:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            rendered = [_prompts.render(tokenizer, p) for p in chunk]
            encoded = _prompts.encode(tokenizer, rendered)  # one batched call, same ids as one by one
            width = max(map(len, encoded))
            ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
            mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
            rows = decode(model, ids, mask, max_new_tokens, temperature, greedy, stops, pad)
            # tokens after the first stop id are padding (generate) or were never meant to be kept (_decode)
            completions = [_through_first_stop(row, stop_set) for row in rows]
            texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
            out += map(Sample, chunk, texts, encoded, completions, rendered)
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
    if _device(model).type != "cpu" or model.config.model_type not in _CHECKED_MODEL_TYPES:
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


def _generate(model, ids, mask, max_new_tokens, temperature, greedy, stops, pad) -> list[list[int]]:
    """The slow path: transformers' generate with every processor switched off; a row ends at any stop id."""
    return model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
        do_sample=not greedy, temperature=None if greedy else temperature, top_k=None, top_p=None,
        pad_token_id=pad, eos_token_id=list(stops) or None,
    )[:, ids.shape[1]:].tolist()


@torch.inference_mode()  # ~10% faster than no_grad on tiny models; nothing but Python ints leaves
def _decode(model, ids, mask, max_new_tokens, temperature, greedy, stops, pad) -> list[list[int]]:
    """New tokens for a batch of left-padded prompts: prefill once, then one cached forward per token.

    Rows that drew a stop id keep decoding (their tokens are dropped later) until every row has,
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
    accepted = inspect.signature(model.forward).parameters
    keep = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
    if "output_router_logits" in accepted:
        # an MoE config saved with output_router_logits=true (TRL's SFT sets it) would compute the
        # load-balancing loss on every step, which a cached one-token step cannot (shapes differ)
        keep["output_router_logits"] = False
    new = ids.new_zeros(batch, max_new_tokens)
    finished = torch.zeros(batch, dtype=torch.bool, device=ids.device)
    stop = torch.tensor(stops, dtype=ids.dtype, device=ids.device) if stops else None

    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, **keep).logits[:, -1]
    for step in range(max_new_tokens):
        token = _draw(logits, temperature, greedy)
        new[:, step] = token[:, 0]
        if stop is not None:
            finished |= torch.isin(token[:, 0], stop)
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


# The most logit values `completion_logprobs` has the model produce in one forward (2**27: 512 MiB
# in float32, 256 MiB in bfloat16). Rows whose completions need more are scored a few at a time.
MAX_LOGITS = 2 ** 27


@torch.no_grad()
def completion_logprobs(model, tokenizer, prompt_ids: list[list[int]], completion_ids: list[list[int]],
                        batch_size: int = 64, per_token: bool = False, max_logits: int = MAX_LOGITS) -> list:
    """Sum (or, with per_token, the list) of log p(completion token | everything before it).

    Every prompt needs at least one token (the first token has no context: pass BOS as the prompt
    to score a whole text); an empty completion scores 0.0 ([] per token).

    Memory: the model computes logits only at the positions that predict a completion token
    (where its forward can be told which, see `_logit_positions`), for at most `batch_size` rows and
    at most `max_logits` logit values per forward, and each is normalised by a float32 logsumexp
    over the vocabulary, a slice of positions at a time. So the peak grows with rows x completion
    tokens x vocab up to that cap, not with batch x full length x vocab as a full log_softmax does."""
    model.eval()
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"completion_logprobs: {len(prompt_ids)} prompts but {len(completion_ids)} completions")
    scored = [i for i, c in enumerate(completion_ids) if c]
    if empty := [i for i in scored if not prompt_ids[i]]:
        raise ValueError(f"completion_logprobs: prompt {empty[0]} is empty; its first completion token has no "
                         "context (pass [bos] as the prompt to score a whole text)")
    device, keep, vocab = _device(model), _logit_positions(model), _vocab_size(model)
    pad = _pad_id(tokenizer, [])
    values: list[list[float]] = [[] for _ in completion_ids]
    pairs = [(prompt_ids[i], completion_ids[i]) for i in scored]
    # a fourth of the cap per float32 slice: it and its exp inside logsumexp stay within the cap's bytes
    step = max(1, max_logits // (4 * vocab))
    for group in _row_groups(pairs, batch_size, max(1, max_logits // vocab), keep):
        for i, row in zip(group, _score_rows(model, [pairs[g] for g in group], device, pad, keep, step)):
            values[scored[i]] = row
    return values if per_token else [sum(v, 0.0) for v in values]


def _logit_positions(model) -> str | None:
    """How the model's forward can be asked for the logits at some positions only.

    "positions": per-row positions as a (rows, n) tensor in `logits_to_keep`; "tail": an int
    `logits_to_keep` (the last n positions, what generate uses); None: all positions.

    The logits must come out of the model's own forward, not from applying its output layer to hidden
    states here: what lies between the last hidden state and the logits differs by model (Gemma 2
    soft-caps them with tanh, Granite and Cohere scale them, others add a bias or rescale tied
    embeddings), and only forward does it right for every one. `logits_to_keep` selects positions of
    the hidden states before the output layer, and whatever follows it acts per position, so the
    values are exactly those of the full forward at those positions. In transformers 5.23 (pinned),
    `slice_logits_to_keep` takes per-row positions, so every forward that calls it does; a forward that
    takes `logits_to_keep` otherwise is only relied on for the int form, and one that does not take
    it gives all logits (and rows are scored fewer at a time)."""
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return None
    return "positions" if _forward_slices_per_row(type(model)) else "tail"


@functools.cache
def _forward_slices_per_row(cls) -> bool:
    """Whether cls.forward hands logits_to_keep to transformers' slice_logits_to_keep (read once per class)."""
    try:
        return "slice_logits_to_keep(" in inspect.getsource(cls.forward)
    except (OSError, TypeError):  # no source to read (e.g. compiled): the int form is the safe one
        return False


def _vocab_size(model) -> int:
    """The width of the model's logits (for sizing batches; an estimate is enough)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(getattr(head, "weight", None), torch.Tensor):
        return head.weight.shape[0]
    config = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "vocab_size", None) or 1


def _kept_columns(pairs: list[tuple[list, list]], keep: str | None) -> int:
    """How many positions' logits the forward returns per row for these (prompt, completion) rows."""
    if keep == "positions":
        return max(len(c) for _, c in pairs)
    width = max(len(p) + len(c) for p, c in pairs)
    return width - min(len(p) - 1 for p, _ in pairs) if keep == "tail" else width


def _row_groups(pairs, batch_size: int, max_positions: int, keep: str | None):
    """Consecutive row indices scored in one forward: at most batch_size rows, and at most
    max_positions positions' logits in all unless a single row needs more."""
    group = []
    for i in range(len(pairs)):
        candidate = group + [i]
        if group and (len(candidate) > batch_size
                      or len(candidate) * _kept_columns([pairs[j] for j in candidate], keep) > max_positions):
            yield group
            candidate = [i]
        group = candidate
    if group:
        yield group


def _score_rows(model, pairs, device, pad: int, keep: str | None, step: int) -> list[list[float]]:
    """log p of each completion token of right-padded (prompt, completion) rows, in one forward."""
    rows = [p + c for p, c in pairs]
    width = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    lengths = [len(c) for _, c in pairs]
    starts = [len(p) - 1 for p, _ in pairs]  # the position whose logits predict a row's first completion token
    kwargs = {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}
    if keep == "positions":
        # a row's completion positions, then its last one repeated up to the longest completion
        positions = [[s + min(j, n - 1) for j in range(max(lengths))] for s, n in zip(starts, lengths)]
        kwargs["logits_to_keep"] = torch.tensor(positions, device=device)
        first = [0] * len(rows)  # where each row's completion positions begin among the returned columns
    elif keep == "tail":
        earliest = min(starts)
        kwargs["logits_to_keep"] = width - earliest
        first = [s - earliest for s in starts]
    else:
        first = starts
    logits = model(input_ids=ids, attention_mask=mask, **kwargs).logits
    expected = (len(rows), _kept_columns(pairs, keep))
    if tuple(logits.shape[:2]) != expected:
        raise RuntimeError(f"completion_logprobs: {type(model).__name__} returned logits of shape "
                           f"{tuple(logits.shape)} for logits_to_keep {keep}; expected {expected} x vocab")
    # every completion token flattened: its row, the column of the logits predicting it, its id
    row = torch.tensor([i for i, n in enumerate(lengths) for _ in range(n)], device=device)
    column = torch.tensor([f + j for f, n in zip(first, lengths) for j in range(n)], device=device)
    target = torch.tensor([t for _, c in pairs for t in c], device=device)
    out = torch.empty(len(target), dtype=torch.float32, device=device)
    for a in range(0, len(target), step):
        # log_softmax at one token = its logit - logsumexp over the vocabulary, in float32 as before
        x = logits[row[a:a + step], column[a:a + step]].float()
        out[a:a + step] = x.gather(-1, target[a:a + step, None])[:, 0] - torch.logsumexp(x, dim=-1)
    flat, values = out.tolist(), []  # one transfer from the device
    for n in lengths:
        values.append(flat[:n])
        flat = flat[n:]
    return values


def encode_pairs(tokenizer, prompts: list[str], completions: list[str]) -> tuple[list, list]:
    """Token ids of prompts and completions, tokenized separately so the boundary is exact."""
    encode = lambda texts: [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]  # noqa: E731
    return encode(prompts), encode(completions)
