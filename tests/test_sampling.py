"""The fast sampling loop draws from the model's own conditional, exactly like model.generate.

Models are random and small, so these tests are fast; their weights are scaled up so the
next-token distribution is peaked and depends on the context (a freshly initialised model
is nearly uniform, and a test that compares two near-uniform samplers cannot fail).
"""
import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

import alignlab.sampling as sampling
from alignlab.models import build_tiny_model, load_tokenizer
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
