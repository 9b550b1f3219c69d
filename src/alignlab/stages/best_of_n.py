"""`alignlab best-of-n`: sample n completions, keep the one the scorer likes best.

For each prompt it draws max(n) samples once; best-of-n for every n uses the first n of them,
so the curves over n share their samples. For each n it reports the mean proxy score (the
scorer that picks) and, with `gold`, the mean gold score of the picks, plus two KLs of the
best-of-n policy to the sampling policy:
- analytic: log n - (n-1)/n, exact when rewards never tie (Stiennon et al. 2020);
- empirical: the exact KL given each prompt's empirical reward distribution F (from all its
  samples), with ties handled by level sets: P_bon(level v) = F(v)^n - F(v-)^n. It is at most
  the analytic value, and far below it when the scorer has few distinct values.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from statistics import mean

from ..config import BestOfNConfig
from ..errors import InputError
from ..runs import Run
from ..scoring import sample_and_score, stage_scorer
from .dpo import preference_prompts


def kl_analytic(n: int) -> float:
    return math.log(n) - (n - 1) / n


def kl_empirical(rewards: list[float], n: int) -> float:
    """KL(best-of-n || base) when the base's rewards are distributed as the sample `rewards`."""
    counts = sorted(Counter(rewards).items())
    total, below, kl = len(rewards), 0, 0.0
    for _, count in counts:
        p, f_low, f_high = count / total, below / total, (below + count) / total
        p_bon = f_high ** n - f_low ** n
        if p_bon > 0:
            kl += p_bon * math.log(p_bon / p)
        below += count
    return kl


def best_index(scores: list[float], n: int) -> int:
    """The first of the n samples with the highest score."""
    return max(range(n), key=lambda i: (scores[i], -i))


def picks(scores: list[float], pool: int, n: int) -> list[int]:
    """For each prompt, whose samples are scores[i*pool:(i+1)*pool], the index of its best-of-n pick
    (the best of its first n samples)."""
    return [i * pool + best_index(scores[i * pool:(i + 1) * pool], n) for i in range(len(scores) // pool)]


def run(cfg: BestOfNConfig) -> Path:
    from ..models import load_model, load_tokenizer

    prompts = preference_prompts(cfg)
    if not prompts:
        raise InputError(f"prompts: {cfg.prompts}: no prompts")
    proxy = stage_scorer(cfg.reward, cfg)
    gold = stage_scorer(cfg.gold, cfg) if cfg.gold else None
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model = load_model(cfg.model, cfg.trust_remote_code, cfg.device, cfg.dtype)
    run = Run.start(cfg.out, cfg.model_dump())

    n_max = max(cfg.n)
    scorers = {"proxy": proxy, **({"gold": gold} if gold else {})}
    samples, scores = sample_and_score(model, tokenizer, prompts, n_max, scorers, cfg.max_new_tokens,
                                       cfg.temperature, cfg.seed, cfg.batch_size, f"best-of-{n_max}: sampling")
    proxy_scores, gold_scores = scores["proxy"], scores.get("gold")

    results, rows = [], []
    for n in sorted(set(cfg.n)):
        chosen = picks(proxy_scores, n_max, n)
        result = {
            "n": n,
            "proxy": mean(proxy_scores[j] for j in chosen),
            "gold": mean(gold_scores[j] for j in chosen) if gold_scores else None,
            "kl_analytic": kl_analytic(n),
            "kl_empirical": mean(kl_empirical(proxy_scores[i * n_max:(i + 1) * n_max], n) for i in range(len(prompts))),
            "response_tokens": mean(len(samples[j].completion_ids) for j in chosen),
        }
        results.append(result)
        run.log({"step": n, **result})
        rows += [{"n": n, "prompt": samples[j].prompt, "completion": samples[j].completion, "proxy": proxy_scores[j],
                  "gold": gold_scores[j] if gold_scores else None} for j in chosen]
    run.write_samples(rows)
    run.write_json("results.json", {"proxy": proxy.name, "gold": gold.name if gold else None, "results": results})
    run.finish(prompts=len(prompts), samples_per_prompt=n_max,
               **{f"{key}_n{r['n']}": r[key] for r in results for key in ("proxy", "gold", "kl_analytic", "kl_empirical")})
    return run.path
