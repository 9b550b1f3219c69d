"""Sampling completions and scoring sequences under a model: the two primitives of every
preference-labelling, RL and evaluation step.

`sample` returns token ids as well as text, so a KL estimate can score exactly the sampled
tokens (re-tokenizing decoded text would not round-trip). `completion_logprobs` sums
log p(completion | prompt) in batches.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


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
    """One completion per prompt (pure sampling at `temperature`, or greedy), ending at EOS."""
    model.eval()
    torch.manual_seed(seed)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    out: list[Sample] = []
    with _progress(len(prompts), desc) as bar:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in chunk]
            width = max(map(len, encoded))
            ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
            mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
            generated = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                do_sample=not greedy, temperature=None if greedy else temperature, top_k=None, top_p=None,
                pad_token_id=pad, eos_token_id=eos,
            )[:, width:].tolist()
            for prompt, prompt_ids, row in zip(chunk, encoded, generated):
                completion_ids = row[:row.index(eos) + 1] if eos in row else row
                completion_ids = [t for t in completion_ids if t != pad]
                text = tokenizer.decode(completion_ids, skip_special_tokens=True)
                out.append(Sample(prompt, text, prompt_ids, completion_ids))
            bar.update(len(chunk))
    return out


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
