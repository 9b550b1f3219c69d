"""Metrics: compression (bits per byte), KL (from samples, or token-level on texts), diversity, knowledge,
memorization.

Each function takes a model and tokenizer (or plain texts) and returns numbers; the eval
stage decides which to run and writes them into a run folder.
"""
from __future__ import annotations

import math
import random

from ..errors import InputError
from ..sampling import Sample, completion_logprobs, encode_pairs, sample


def distinct_n(texts: list[str], n: int) -> float:
    """Unique word n-grams over all n-grams across the texts (Li et al. 2016)."""
    grams = [tuple(words[i:i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _scored_texts(model, tokenizer, texts: list[str], max_tokens: int, batch_size: int) -> tuple[list, list]:
    """Each text's token ids (the first max_tokens) and their total log-prob, scored after an EOS."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens] for t in texts]
    return ids, completion_logprobs(model, tokenizer, [[tokenizer.eos_token_id]] * len(ids), ids, batch_size)


def bits_per_byte(model, tokenizer, texts: list[str], max_tokens: int = 512, batch_size: int = 32) -> dict:
    """Held-out NLL per token (nats) and bits per UTF-8 byte over all the texts."""
    ids, logprobs = _scored_texts(model, tokenizer, texts, max_tokens, batch_size)
    n_bytes = sum(len(tokenizer.decode(i).encode("utf-8")) for i in ids)
    nll, n_tokens = -sum(logprobs), sum(map(len, ids))
    return {"nll_per_token": nll / n_tokens, "bits_per_byte": nll / math.log(2) / n_bytes}


def text_nll(model, tokenizer, texts: list[str], max_tokens: int = 256, batch_size: int = 32) -> list[float]:
    """Each text's own NLL per token (nats), what a perplexity filter ranks documents by; inf for an empty one."""
    ids, logprobs = _scored_texts(model, tokenizer, texts, max_tokens, batch_size)
    return [-lp / len(i) if i else math.inf for i, lp in zip(ids, logprobs)]


def kl_from_samples(model, reference, tokenizer, samples: list[Sample], batch_size: int = 64) -> float:
    """Monte-Carlo estimate of sequence-level KL(model || reference) in nats, from the model's own
    samples: mean over samples of log p_model(y|x) - log p_ref(y|x)."""
    if reference.get_input_embeddings().weight.shape[0] != model.get_input_embeddings().weight.shape[0]:
        raise InputError("reference: its vocabulary differs from the model's; KL needs a shared tokenizer")
    prompts = [s.prompt_ids for s in samples]
    completions = [s.completion_ids for s in samples]
    own = completion_logprobs(model, tokenizer, prompts, completions, batch_size)
    ref = completion_logprobs(reference, tokenizer, prompts, completions, batch_size)
    return sum(a - b for a, b in zip(own, ref)) / len(samples)


def token_kl(reference, model, tokenizer, texts: list[str], max_tokens: int = 256, max_logits: int = 2 ** 25) -> float:
    """Token-level KL(reference || model) in nats per token on raw texts (each read after an EOS, as
    `bits_per_byte` reads them): at every position, the sum over the vocabulary of
    p_ref(v | context) (log p_ref(v | context) - log p_model(v | context)), averaged over positions. Exact
    given the contexts (no sampling); the contexts are the texts', so it says how the two models differ
    on this kind of text, not on what either would write. Rows go a few at a time, so two
    (rows x length x vocab) float32 tensors stay within `max_logits` values each."""
    import torch

    from ..sampling import _device

    if reference.get_input_embeddings().weight.shape[0] != model.get_input_embeddings().weight.shape[0]:
        raise InputError("reference: its vocabulary differs from the model's; KL needs a shared tokenizer")
    rows = [[tokenizer.eos_token_id] + tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens] for t in texts]
    rows = [r for r in rows if len(r) > 1]
    vocab = model.get_output_embeddings().weight.shape[0]
    total, count = 0.0, 0
    reference.eval(), model.eval()
    with torch.no_grad():
        i = 0
        while i < len(rows):
            length = max(map(len, rows[i:i + 64]))
            group = rows[i:i + max(1, min(64, max_logits // (length * vocab)))]
            i += len(group)
            width = max(map(len, group))
            ids = torch.tensor([r + [tokenizer.eos_token_id] * (width - len(r)) for r in group])
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in group])
            logp = [torch.log_softmax(m(input_ids=ids.to(_device(m)), attention_mask=mask.to(_device(m))).logits[:, :-1]
                                      .float().cpu(), -1) for m in (reference, model)]
            per_position = (logp[0].exp() * (logp[0] - logp[1])).sum(-1)
            keep = mask[:, 1:].bool()  # positions that predict a real token
            total += float(per_position[keep].sum())
            count += int(keep.sum())
    return total / count


def multiple_choice(model, tokenizer, probes: list[dict], batch_size: int = 64) -> list[dict]:
    """Per probe: `correct` (the true candidate has the highest log-likelihood after the prompt) and
    `true_logprob`, the log of the probability the model gives the true candidate among the candidates
    (a continuous score: it moves before the argmax flips)."""
    prompts = [p["prompt"] for p in probes for _ in p["candidates"]]
    candidates = [c for p in probes for c in p["candidates"]]
    scores = completion_logprobs(model, tokenizer, *encode_pairs(tokenizer, prompts, candidates), batch_size)
    results, i = [], 0
    for probe in probes:
        row = scores[i:i + len(probe["candidates"])]
        i += len(row)
        top = max(row)
        normaliser = top + math.log(sum(math.exp(r - top) for r in row))
        results.append({"correct": max(range(len(row)), key=row.__getitem__) == probe["answer"],
                        "true_logprob": row[probe["answer"]] - normaliser})
    return results


def multiple_choice_accuracy(model, tokenizer, probes: list[dict], batch_size: int = 64) -> float:
    """Share of probes whose true candidate has the highest log-likelihood after the prompt."""
    return sum(r["correct"] for r in multiple_choice(model, tokenizer, probes, batch_size)) / len(probes)


def canary_memorization(model, tokenizer, canaries: list[dict], n_candidates: int = 500, seed: int = 0) -> list[dict]:
    """Per canary: exposure in bits (Carlini et al. 2019), estimated against `n_candidates` random
    secrets of the same shape, and recall (greedy decoding reproduces the secret verbatim)."""
    rng = random.Random(seed)
    results = []
    greedy = sample(model, tokenizer, [c["prefix"] for c in canaries], max_new_tokens=16, greedy=True)
    for canary, decoded in zip(canaries, greedy):
        length = len(canary["secret"].split())
        others = [" ".join(rng.choice("0123456789") for _ in range(length)) for _ in range(n_candidates)]
        texts = [f" {s}." for s in [canary["secret"], *others]]
        scores = completion_logprobs(model, tokenizer, *encode_pairs(tokenizer, [canary["prefix"]] * len(texts), texts))
        better = sum(s > scores[0] for s in scores[1:])
        results.append({
            "prefix": canary["prefix"],
            "exposure_bits": math.log2((n_candidates + 1) / (better + 1)),
            "recalled": decoded.completion.strip().startswith(canary["secret"]),
        })
    return results


def recitation(model, tokenizer, probes: list[dict], n_tokens: int = 32, threshold: int = 24) -> list[dict]:
    """Per probe ({"prompt", "target"}): `run`, how many of the target's first `n_tokens` tokens greedy
    decoding reproduces verbatim before its first miss; `recited`, run >= threshold (or the whole target
    when shorter); and `logprob`, the teacher-forced mean log p per token of those true tokens (extraction
    as Carlini et al. 2021 measure it; the science audit's G4)."""
    prompts = [p["prompt"] for p in probes]
    _, targets = encode_pairs(tokenizer, prompts, [p["target"] for p in probes])
    targets = [t[:n_tokens] for t in targets]
    greedy = sample(model, tokenizer, prompts, max_new_tokens=n_tokens, greedy=True)
    # scored after exactly the ids greedy decoding read (BOS included where the tokenizer adds one)
    logprobs = completion_logprobs(model, tokenizer, [g.prompt_ids for g in greedy], targets)
    results = []
    for decoded, target, logprob in zip(greedy, targets, logprobs):
        pairs = list(zip(decoded.completion_ids, target))
        run = next((i for i, (a, b) in enumerate(pairs) if a != b), len(pairs))
        results.append({"run": run, "recited": run >= min(threshold, len(target)), "logprob": logprob / len(target)})
    return results
