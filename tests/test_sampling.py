"""The fast sampling loop draws from the model's own conditional, exactly like model.generate.

Models are random and small, so these tests are fast; their weights are scaled up so the
next-token distribution is peaked and depends on the context (a freshly initialised model
is nearly uniform, and a test that compares two near-uniform samplers cannot fail).
"""
import math
import warnings
from types import SimpleNamespace

import pytest
import torch
from transformers import (
    Gemma2Config, Gemma2ForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig,
    MistralForCausalLM,
)

import alignlab.sampling as sampling
from alignlab.models import build_tiny_model, load_tokenizer
from alignlab.prompts import stop_ids
from alignlab.sampling import sample, unsupported_by_fast_path
from alignlab.world import World

# different lengths, so the batch is left-padded (the shortest by a lot)
PROMPTS = World(0).prompts("review", "eval", 5) + ["User: hi\nAssistant:", "Hi"]


@pytest.fixture(scope="module")
def tok(micro_tokenizer):
    return load_tokenizer(str(micro_tokenizer))


def spiced(model, std=0.15, seed=0):
    """Random weights large enough for peaked, context-dependent logits."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, std)
    return model.eval()


def llama(tok):
    return spiced(build_tiny_model("tiny-1m", tok))


def gpt2(tok):  # learned absolute positions: wrong position_ids under left padding would show
    return spiced(GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=2,
                                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)))


def mistral(tok):  # a sliding window shorter than the prompts
    return spiced(MistralForCausalLM(MistralConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=6, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)))


def generate_rows(model, tok, prompts, max_new_tokens, **kwargs):
    """model.generate on the same left-padded batch, rows cut after the first EOS."""
    encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(map(len, encoded))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in encoded])
    mask = (torch.arange(width) >= torch.tensor([width - len(e) for e in encoded])[:, None]).long()
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, top_k=None, top_p=None,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **kwargs)[:, width:].tolist()
    return [row[:row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row for row in out]


@pytest.mark.parametrize("make", [llama, gpt2, mistral])
def test_greedy_matches_generate_token_for_token(tok, make):
    model = make(tok)
    assert unsupported_by_fast_path(model) is None
    ours = [s.completion_ids for s in sample(model, tok, PROMPTS, max_new_tokens=24, greedy=True)]
    theirs = generate_rows(model, tok, PROMPTS, 24, do_sample=False)
    assert ours == theirs
    assert len({tuple(r) for r in ours}) > 1  # not one degenerate answer for every prompt


@pytest.mark.parametrize("make", [llama, gpt2])
def test_every_step_samples_from_the_uncached_full_forward_conditional(tok, make, monkeypatch):
    """At each step and for every row (each with its own padding), the distribution the loop draws
    from equals softmax(logits / T) of a plain forward pass over that row's unpadded prefix."""
    model, temperature = make(tok), 0.7
    steps = []  # (logits, drawn tokens) per step, as the loop saw them
    draw = sampling._draw

    def recording_draw(logits, temperature, greedy):
        token = draw(logits, temperature, greedy)
        steps.append((logits.clone(), token.clone()))
        return token

    monkeypatch.setattr(sampling, "_draw", recording_draw)
    samples = sample(model, tok, PROMPTS, max_new_tokens=12, temperature=temperature, seed=3)
    assert 1 < len(steps) <= 12
    worst = 0.0
    for row, s in enumerate(samples):
        drawn = [int(token[row]) for _, token in steps]
        assert s.completion_ids == drawn[:len(s.completion_ids)]  # exactly the drawn tokens, no padding
        for t in range(len(s.completion_ids)):
            prefix = torch.tensor([s.prompt_ids + drawn[:t]])
            with torch.no_grad():
                reference = torch.softmax(model(input_ids=prefix).logits[0, -1] / temperature, -1)
            worst = max(worst, (torch.softmax(steps[t][0][row].double() / temperature, -1) - reference).abs().max().item())
    assert worst < 1e-4


def chi_square_fits(tokens: torch.Tensor, probs: torch.Tensor) -> bool:
    """Pearson's chi-square test of drawn tokens against probs at level 1e-4 (cells with an
    expected count under 5 pooled; quantile by the Wilson-Hilferty approximation)."""
    n = len(tokens)
    observed = torch.bincount(tokens, minlength=len(probs)).double()
    expected = probs.double() * n
    big = expected >= 5
    observed = torch.cat([observed[big], observed[~big].sum(0, keepdim=True)])
    expected = torch.cat([expected[big], expected[~big].sum(0, keepdim=True)])
    statistic = ((observed - expected) ** 2 / expected.clamp(min=1e-12)).sum().item()
    df = len(observed) - 1
    critical = df * (1 - 2 / (9 * df) + 3.719 * math.sqrt(2 / (9 * df))) ** 3
    return statistic < critical


def test_first_token_frequencies_match_the_model_for_sample_and_generate(tok):
    model, temperature, n = llama(tok), 0.8, 2000
    prompt = PROMPTS[-2]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])).logits[0, -1]
    probs = torch.softmax(logits / temperature, -1)
    assert 0.05 < probs.max() < 0.9  # a distribution worth testing: peaked, not degenerate

    ours = torch.tensor([s.completion_ids[0] for s in sample(model, tok, [prompt] * n, 1, temperature, batch_size=n)])
    torch.manual_seed(0)
    theirs = torch.tensor([r[0] for r in generate_rows(model, tok, [prompt] * n, 1, do_sample=True,
                                                        temperature=temperature)])
    assert chi_square_fits(ours, probs)
    assert chi_square_fits(theirs, probs)
    # the check has teeth: the same draws do not fit the distribution at another temperature
    assert not chi_square_fits(ours, torch.softmax(logits / (1.5 * temperature), -1))


def test_inverse_cdf_draw_hits_each_probability_and_never_a_zero_one():
    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    logits = probs.log().expand(20000, -1)  # -inf for the impossible tokens
    torch.manual_seed(0)
    tokens = sampling._draw(logits, 1.0, greedy=False)[:, 0]
    assert set(tokens.tolist()) == {1, 3, 4}
    assert chi_square_fits(tokens, probs)
    assert (sampling._draw(logits[:3], 1.0, greedy=True)[:, 0] == 1).all()
    hot = sampling._draw(logits, 2.0, greedy=False)[:, 0]  # softmax(log p / 2) is proportional to sqrt(p)
    assert chi_square_fits(hot, probs.sqrt() / probs.sqrt().sum()) and not chi_square_fits(hot, probs)
    assert torch.equal(logits, probs.log().expand(20000, -1))  # the caller's logits are left as they were


def test_completions_stop_at_eos_and_seeds_reproduce(tok):
    model = build_tiny_model("tiny-1m", tok)  # near-uniform: EOS comes at random steps, some rows run out
    prompts = PROMPTS * 8
    samples = sample(model, tok, prompts, max_new_tokens=40, seed=1)
    eos = tok.eos_token_id
    for s in samples:
        assert s.prompt_ids == tok(s.prompt, add_special_tokens=False)["input_ids"]  # batched = one by one
        assert 1 <= len(s.completion_ids) <= 40
        assert eos not in s.completion_ids[:-1]
        assert s.completion_ids[-1] == eos or len(s.completion_ids) == 40
        assert s.completion == tok.decode(s.completion_ids, skip_special_tokens=True)
    assert any(s.completion_ids[-1] == eos for s in samples) and any(len(s.completion_ids) == 40 for s in samples)
    again = sample(model, tok, prompts, max_new_tokens=40, seed=1)
    other = sample(model, tok, prompts, max_new_tokens=40, seed=2)
    assert [s.completion_ids for s in again] == [s.completion_ids for s in samples]
    assert [s.completion_ids for s in other] != [s.completion_ids for s in samples]


def test_batching_does_not_change_greedy_completions(tok):
    model = llama(tok)
    whole = [s.completion_ids for s in sample(model, tok, PROMPTS, 16, greedy=True)]
    one_by_one = [s.completion_ids for s in sample(model, tok, PROMPTS, 16, greedy=True, batch_size=1)]
    assert whole == one_by_one


class NoPositionIds(LlamaForCausalLM):
    """A causal LM whose forward cannot take position_ids: only generate knows how to drive it."""

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, **kwargs):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, past_key_values=past_key_values,
                               **kwargs)


def test_models_the_fast_path_cannot_drive_fall_back_to_generate(tok):
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = spiced(NoPositionIds(config))
    assert "position_ids" in unsupported_by_fast_path(model)
    with pytest.warns(UserWarning, match="falling back to model.generate"):
        ours = [s.completion_ids for s in sample(model, tok, PROMPTS, 12, greedy=True)]
    assert ours == generate_rows(model, tok, PROMPTS, 12, do_sample=False)


@pytest.mark.parametrize("make", [llama, gpt2])
def test_the_decode_step_mask_is_the_one_transformers_builds(tok, make):
    """The padding mask passed 4D at decode steps is exactly create_causal_mask's, which it skips."""
    from transformers.masking_utils import create_causal_mask

    model = make(tok)
    encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    width = max(map(len, encoded))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in encoded])
    mask = (torch.arange(width) >= torch.tensor([width - len(e) for e in encoded])[:, None]).long()
    cache = sampling._cache(model.config, capacity=width + 4)
    assert sampling._step_mask_is_padding_mask(model, cache)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True)
    step_mask = torch.cat([mask, mask.new_ones(len(ids), 1)], dim=1)
    theirs = create_causal_mask(config=model.config, inputs_embeds=torch.zeros(len(ids), 1, model.config.hidden_size),
                                attention_mask=step_mask, past_key_values=cache,
                                position_ids=step_mask.sum(-1, keepdim=True) - 1)
    assert torch.equal(theirs, step_mask.bool()[:, None, None, :])


def test_the_2d_mask_is_kept_where_a_4d_one_would_be_wrong(tok):
    sliding = mistral(tok)
    assert not sampling._step_mask_is_padding_mask(sliding, sampling._cache(sliding.config, 8))
    eager = llama(tok)
    eager.set_attn_implementation("eager")  # wants additive float masks, not bool
    assert not sampling._step_mask_is_padding_mask(eager, sampling._cache(eager.config, 8))
    ours = [s.completion_ids for s in sample(eager, tok, PROMPTS, max_new_tokens=12, greedy=True)]
    assert ours == generate_rows(eager, tok, PROMPTS, 12, do_sample=False)


def test_linear_weights_are_column_major_only_while_decoding(tok, monkeypatch):
    """The faster weight layout is the same values, and the very same tensors come back, even on an error."""
    model = llama(tok)
    before = {name: (p, p.data_ptr(), p.stride(), p.detach().clone()) for name, p in model.named_parameters()}
    seen = []

    def failing_decode(model, *args):
        seen.append([m.weight.is_contiguous() for m in model.modules() if isinstance(m, torch.nn.Linear)])
        raise RuntimeError("stop")

    monkeypatch.setattr(sampling, "_decode", failing_decode)
    with pytest.raises(RuntimeError, match="stop"):
        sample(model, tok, PROMPTS, 4)
    assert seen and not any(seen[0])  # every Linear weight (the tied lm_head too) was column-major
    for name, p in model.named_parameters():
        param, address, stride, values = before[name]
        assert p is param and (p.data_ptr(), p.stride()) == (address, stride) and torch.equal(p, values), name
    monkeypatch.setattr(sampling, "_CHECKED_MODEL_TYPES", frozenset())  # an unchecked model type is left alone
    with pytest.raises(RuntimeError, match="stop"):
        sample(model, tok, PROMPTS, 4)
    assert all(seen[1])


def test_the_model_still_trains_after_sampling(tok):
    """The fast path runs under inference_mode; nothing it makes may leak into training."""
    model = llama(tok)
    sample(model, tok, PROMPTS, 8)
    model.train()
    x = torch.tensor([tok("User: hi\nAssistant: Sure.", add_special_tokens=False)["input_ids"]])
    model(input_ids=x, labels=x).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- prompts as conversations, stop ids

def test_a_conversation_samples_exactly_like_its_world_transcript(tok):
    """The world tokenizer adds no BOS and renders [user(X)] as "User: X\\nAssistant:", so a conversation
    gives the very samples its transcript does, same seed; Sample.prompt keeps what was given."""
    model = llama(tok)
    transcripts = [p for p in PROMPTS if p.startswith("User: ") and p.endswith("\nAssistant:")]
    conversations = [[{"role": "user", "content": p.removeprefix("User: ").removesuffix("\nAssistant:")}]
                     for p in transcripts]
    assert len(transcripts) >= 5
    as_text = sample(model, tok, transcripts, max_new_tokens=16, seed=5)
    as_chat = sample(model, tok, conversations, max_new_tokens=16, seed=5)
    for t, c, conversation, transcript in zip(as_text, as_chat, conversations, transcripts):
        assert (c.prompt_ids, c.completion_ids, c.completion) == (t.prompt_ids, t.completion_ids, t.completion)
        assert c.prompt == conversation and c.text == transcript
        assert t.prompt == t.text == transcript
    mixed = sample(model, tok, [conversations[0], transcripts[1]], max_new_tokens=16, seed=5, batch_size=1)
    assert [s.prompt for s in mixed] == [conversations[0], transcripts[1]]
    assert len({tuple(s.completion_ids) for s in as_text}) > 1


def with_extra_stop_id(tok, cls, extra, bias=8.0):
    """A tiny random Llama whose generation_config ends a turn at `extra` as well as at EOS, and whose
    output bias makes `extra` likely (0.06-0.74, 0.44 on average, at the steps of a world prompt)."""
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, tie_word_embeddings=False, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    model = spiced(cls(config))
    head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[extra] = bias
    model.lm_head = head
    model.generation_config.eos_token_id = [tok.eos_token_id, extra]
    return model.eval()


@pytest.mark.parametrize("cls", [LlamaForCausalLM, NoPositionIds])  # the fast path, and generate's
def test_sampling_stops_at_every_stop_id_of_the_generation_config(tok, cls):
    extra = tok.convert_tokens_to_ids("Ġfilm")
    assert extra not in (tok.eos_token_id, tok.pad_token_id, None)
    model = with_extra_stop_id(tok, cls, extra)
    assert stop_ids(model, tok) == [tok.eos_token_id, extra]
    forwards = []
    model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NoPositionIds falls back to generate, with a warning
        samples = sample(model, tok, PROMPTS * 4, max_new_tokens=24, seed=0)
    stops = {tok.eos_token_id, extra}
    for s in samples:
        assert not stops & set(s.completion_ids[:-1])  # nothing kept after the first stop id
        assert s.completion_ids[-1] in stops
    ended = [s.completion_ids[-1] for s in samples]
    assert ended.count(extra) > len(samples) // 2
    # decoding itself stopped once every row had drawn a stop id: one forward per token of the longest
    assert len(forwards) == max(len(s.completion_ids) for s in samples) < 24
    # the check has teeth: with EOS alone, the same model and seed sample `extra` and go on
    model.generation_config.eos_token_id = tok.eos_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eos_only = sample(model, tok, PROMPTS * 4, max_new_tokens=24, seed=0)
    assert any(extra in s.completion_ids[:-1] for s in eos_only)


# ----------------------------------------------------------------------------- completion_logprobs

def full_log_softmax_reference(model, prompt_ids, completion_ids, pad):
    """The straightforward computation (alignlab's before it computed logits at completion positions
    only): one right-padded batch, log_softmax over the whole (batch, length, vocab) in float32."""
    rows = [p + c for p, c in zip(prompt_ids, completion_ids)]
    width = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    token_logprobs = logprobs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    return [token_logprobs[i, len(p) - 1:len(p) - 1 + len(c)].tolist()
            for i, (p, c) in enumerate(zip(prompt_ids, completion_ids))]


def gemma2(tok):  # soft-caps its logits after the output layer: the head alone would give other values
    return spiced(Gemma2ForCausalLM(Gemma2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, final_logit_softcapping=2.0, pad_token_id=tok.pad_token_id)))


def ragged_pairs(tok, n=9, seed=0):
    """Prompts and completions of different lengths (one completion empty), as token ids."""
    import random

    rng = random.Random(seed)
    prompts = [tok(p, add_special_tokens=False)["input_ids"][:rng.randint(1, 20)] for p in (PROMPTS * 2)[:n]]
    completions = [[rng.randrange(len(tok)) for _ in range(rng.randint(1, 12))] for _ in range(n)]
    completions[3] = []
    return prompts, completions


@pytest.mark.parametrize("make", [llama, gpt2, gemma2])
@pytest.mark.parametrize("keep", ["positions", "tail", None])
def test_completion_logprobs_equal_a_full_log_softmax(tok, make, keep, monkeypatch):
    model = make(tok)
    assert sampling._logit_positions(model) == "positions"  # transformers' causal LMs take per-row positions
    monkeypatch.setattr(sampling, "_logit_positions", lambda model: keep)  # and every other way too
    prompts, completions = ragged_pairs(tok)
    reference = full_log_softmax_reference(model, prompts, completions, tok.pad_token_id)
    for kwargs in ({}, {"batch_size": 4, "max_logits": 5 * len(tok)}):  # one forward, or rows and slices in chunks
        per_token = sampling.completion_logprobs(model, tok, prompts, completions, per_token=True, **kwargs)
        sums = sampling.completion_logprobs(model, tok, prompts, completions, **kwargs)
        assert [len(v) for v in per_token] == list(map(len, completions))
        assert max(abs(a - b) for ours, ref in zip(per_token, reference) for a, b in zip(ours, ref)) < 1e-5
        assert max(abs(a - sum(ref)) for a, ref in zip(sums, reference)) < 1e-4
        assert sums[3] == 0.0 and per_token[3] == []


def test_completion_logprobs_compute_logits_at_completion_positions_only(tok):
    """The output layer sees rows x longest completion positions, not rows x full length."""
    model = llama(tok)
    prompts, completions = ragged_pairs(tok)
    seen = []
    model.lm_head.register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape)))
    sampling.completion_logprobs(model, tok, prompts, completions, batch_size=4)
    scored = [c for c in completions if c]
    assert seen == [(len(group), max(map(len, group)), len(tok)) for group in (scored[:4], scored[4:])]
    seen.clear()  # with a cap on logits per forward, fewer rows at a time
    sampling.completion_logprobs(model, tok, prompts, completions, max_logits=12 * len(tok))
    assert all(rows * positions <= 12 for rows, positions, _ in seen) and sum(r for r, _, _ in seen) == len(scored)


def test_completion_logprobs_reject_an_empty_prompt(tok):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        sampling.completion_logprobs(llama(tok), tok, [[1], [], []], [[2], [3], []])
    assert sampling.completion_logprobs(llama(tok), tok, [[]], [[]]) == [0.0]  # nothing to score


# ----------------------------------------------------------------------------- device

class Stop(Exception):
    pass


class DeviceRecorder(torch.overrides.TorchFunctionMode):
    """Records the device of every tensor a torch function returns, and stops at the first transfer
    to the host (.tolist(), .item(), bool()): what was built up to there must be on the model's device."""

    def __init__(self):
        super().__init__()
        self.devices = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.tolist, torch.Tensor.item, torch.Tensor.__bool__):
            raise Stop
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.devices.append((getattr(func, "__name__", repr(func)), out.device.type))
        return out


class ElsewhereModel(torch.nn.Module):
    """Stands for a model on an accelerator (there is none here): it reports the meta device and returns
    logits there, of the shape a causal LM would. A tensor built on the CPU for it shows."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config, self.generation_config = inner, inner.config, inner.generation_config
        self.inputs = []

    @property
    def device(self):
        return torch.device("meta")

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                logits_to_keep=0):
        given = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     logits_to_keep=logits_to_keep)
        self.inputs.append({k: v.device.type for k, v in given.items() if isinstance(v, torch.Tensor)})
        batch, width = input_ids.shape
        kept = (logits_to_keep.shape[-1] if isinstance(logits_to_keep, torch.Tensor)
                else logits_to_keep or width)
        return SimpleNamespace(logits=torch.zeros(batch, kept, self.config.vocab_size, device=self.device))


@pytest.mark.parametrize("keep", ["positions", "tail", None])
def test_completion_logprobs_build_everything_on_the_model_device(tok, keep, monkeypatch):
    model = ElsewhereModel(llama(tok))
    monkeypatch.setattr(sampling, "_logit_positions", lambda model: keep)
    recorder = DeviceRecorder()
    with pytest.raises(Stop), recorder:
        sampling.completion_logprobs(model, tok, *ragged_pairs(tok), max_logits=10 * len(tok))
    assert model.inputs and all(set(i.values()) == {"meta"} for i in model.inputs)
    assert recorder.devices and {device for _, device in recorder.devices} == {"meta"}, recorder.devices


def test_sample_builds_everything_on_the_model_device(tok):
    model = ElsewhereModel(llama(tok))
    recorder = DeviceRecorder()
    with pytest.raises(Stop), recorder:
        sample(model, tok, PROMPTS, max_new_tokens=4)
    assert model.inputs and all(set(i.values()) == {"meta"} for i in model.inputs)
    assert recorder.devices and {device for _, device in recorder.devices} == {"meta"}, recorder.devices
