"""`alignlab eval`: measure what a model is, on held-out world prompts and pretraining-style text.

Metrics (all in the run's metrics.json and status.json):
- gold_reward: mean gold sentiment of the model's reviews for held-out items (in [-1, 1]);
- reward_<set>: mean world-gold score per prompt set (review, harmful, benign, contrast);
- refusal_rate on harmful requests; over_refusal_rate on benign requests (plain and the
  contrast ones that use violent verbs on objects);
- kl_to_reference: sequence-level KL(model || reference) in nats, from the model's samples;
- distinct_1 / distinct_2 over all samples; mean_completion_tokens;
- knowledge_accuracy: multiple-choice probes about held-out countries;
- nll_per_token and bits_per_byte on held-out pretraining-style documents;
- canary_exposure (bits, mean over inserted canaries), canary_exposure_control (canaries never
  inserted: the chance level), canary_recall;
- chat_format_adherence: share of answers to chat prompts that end their turn (EOS) without
  writing the next "User:" turn themselves, as a base model continuing a transcript does;
- review_positive_share / review_negative_share: the distribution of gold sentiment;
- self_bleu_review: Self-BLEU-4 of the reviews (higher = less diverse);
- optional, the alignment-tax suite on real data: bench_<name> accuracy on multiple-choice
  benchmarks (HellaSwag, PIQA, MMLU, TruthfulQA MC1) and XSTest over-refusal.
"""
from __future__ import annotations

from pathlib import Path
from statistics import mean

from ..config import EvalConfig
from ..data import read_texts
from ..evals import bits_per_byte, canary_memorization, distinct_n, kl_from_samples, multiple_choice_accuracy
from ..runs import Run
from ..sampling import sample
from ..evals.benchmarks import self_bleu
from ..prompts import render, stop_ids, user
from ..world import USER, World
from ..evals.refusal import refuses as refuses_anyhow
from ..world.judges import WorldJudge, refuses

PROMPT_SETS = ["review", "harmful", "benign", "contrast"]


def evaluate(model, tokenizer, cfg: EvalConfig, reference=None) -> tuple[dict, list]:
    """All metrics of one model; returns (metrics, sample rows)."""
    world = World(cfg.world_seed)
    judge = WorldJudge(world)
    prompts = {s: world.conversations(s, "eval", cfg.n_prompts, seed=cfg.seed) for s in PROMPT_SETS}
    flat = [(s, p) for s in PROMPT_SETS for p in prompts[s]]
    samples = sample(model, tokenizer, [p for _, p in flat], cfg.max_new_tokens, cfg.temperature,
                     batch_size=cfg.batch_size, seed=cfg.seed, desc="eval: sampling")
    scores = judge.score([s.prompt for s in samples], [s.completion for s in samples])
    rows = [{"set": name, "prompt": render(tokenizer, s.prompt), "completion": s.completion, "score": score}
            for (name, _), s, score in zip(flat, samples, scores)]
    by_set = {name: [r for r in rows if r["set"] == name] for name in PROMPT_SETS}

    metrics: dict = {"gold_reward": mean(r["score"] for r in by_set["review"])}
    metrics.update({f"reward_{name}": mean(r["score"] for r in by_set[name]) for name in PROMPT_SETS})
    metrics["refusal_rate"] = mean(refuses(r["completion"]) for r in by_set["harmful"])
    benign = by_set["benign"] + by_set["contrast"]
    metrics["over_refusal_rate"] = mean(refuses(r["completion"]) for r in benign)
    metrics["over_refusal_rate_contrast"] = mean(refuses(r["completion"]) for r in by_set["contrast"])
    texts = [s.completion for s in samples]
    metrics["distinct_1"], metrics["distinct_2"] = distinct_n(texts, 1), distinct_n(texts, 2)
    metrics["mean_completion_tokens"] = mean(len(s.completion_ids) for s in samples)
    metrics["kl_to_reference"] = (kl_from_samples(model, reference, tokenizer, samples, cfg.batch_size)
                                  if reference is not None else None)
    metrics["knowledge_accuracy"] = multiple_choice_accuracy(model, tokenizer, world.knowledge_probes("eval"),
                                                             cfg.batch_size)
    heldout = read_texts(cfg.heldout_text) if cfg.heldout_text else world.heldout_text(cfg.heldout_docs, cfg.seed)
    metrics.update(bits_per_byte(model, tokenizer, heldout))
    canaries = canary_memorization(model, tokenizer, world.canaries, cfg.canary_candidates, cfg.seed)
    repeats = cfg.canary_repeats + [0] * (len(canaries) - len(cfg.canary_repeats))
    inserted = [c for c, r in zip(canaries, repeats) if r > 0]
    control = [c for c, r in zip(canaries, repeats) if r == 0]
    metrics["canary_exposure"] = mean(c["exposure_bits"] for c in inserted) if inserted else None
    metrics["canary_exposure_control"] = mean(c["exposure_bits"] for c in control) if control else None
    metrics["canary_recall"] = mean(c["recalled"] for c in inserted) if inserted else None
    metrics["canaries"] = [{**c, "repeats": r} for c, r in zip(canaries, repeats)]
    metrics.update(format_and_spread(samples, by_set, stop_ids(model, tokenizer)))
    metrics.update(tax_suite(model, tokenizer, cfg))
    return metrics, rows


def format_and_spread(samples, by_set: dict, stops: list[int]) -> dict:
    ended = [s.completion_ids[-1:] != [] and s.completion_ids[-1] in stops and USER not in s.completion
             for s in samples]
    reviews = [r["score"] for r in by_set["review"]]
    return {"chat_format_adherence": mean(ended),
            "review_positive_share": mean(x > 0 for x in reviews), "review_negative_share": mean(x < 0 for x in reviews),
            "self_bleu_review": self_bleu([r["completion"] for r in by_set["review"]]) if len(reviews) > 1 else None}


def tax_suite(model, tokenizer, cfg: EvalConfig) -> dict:
    """Benchmarks read from the real data sets (absent files: a warning and no number)."""
    from ..evals import benchmarks

    names = cfg.benchmarks + (["xstest"] if cfg.xstest else [])
    if not names:
        return {}
    metrics, suite = {}, benchmarks.load_suite(names, cfg.benchmark_items, cfg.seed, cfg.data_root)
    for name in cfg.benchmarks:
        metrics[f"bench_{name}"] = (multiple_choice_accuracy(model, tokenizer, suite[name], batch_size=8)
                                    if name in suite else None)
    if "xstest" in suite:
        for label, key in (("safe", "over_refusal_rate_xstest"), ("unsafe", "refusal_rate_xstest_unsafe")):
            answers = sample(model, tokenizer, [user(p) for p in suite["xstest"][label]], cfg.max_new_tokens,
                             cfg.temperature, batch_size=cfg.batch_size, seed=cfg.seed)
            metrics[key] = mean(refuses_anyhow(a.completion) for a in answers)
    return metrics


def evaluate_prompt_set(model, tokenizer, cfg: EvalConfig, reference=None) -> tuple[dict, list]:
    """Any model on any prompt set: the judge's mean score with its standard error, KL to the reference,
    diversity, length, and refusals (overall and per label: on XSTest, refusals of 'safe' prompts are
    over-refusal). Plain-text prompts are asked as one user message, in the model's chat format."""
    import random

    from scipy.stats import sem

    from ..data import read_rows
    from ..evals.refusal import refuses
    from ..scoring import checked_scores, stage_scorer

    rows = read_rows(cfg.prompts, ["prompt"])
    random.Random(cfg.seed).shuffle(rows)
    rows = rows[:cfg.n_prompts]
    prompts = [r["prompt"] if isinstance(r["prompt"], list) else user(str(r["prompt"])) for r in rows]
    samples = sample(model, tokenizer, prompts, cfg.max_new_tokens, cfg.temperature, batch_size=cfg.batch_size,
                     seed=cfg.seed, desc="eval: sampling")
    texts = [s.completion for s in samples]
    metrics: dict = {"prompts": len(rows), "mean_completion_tokens": mean(len(s.completion_ids) for s in samples),
                     "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
                     "self_bleu": self_bleu(texts) if len(texts) > 1 else None,
                     "kl_to_reference": (kl_from_samples(model, reference, tokenizer, samples, cfg.batch_size)
                                         if reference is not None else None)}
    scores = checked_scores(stage_scorer(cfg.judge, cfg), prompts, texts) if cfg.judge else None
    if scores:
        metrics.update(judge=cfg.judge, judge_score=mean(scores), judge_score_se=float(sem(scores)) if len(scores) > 1
                       else None)
    if cfg.refusal_judge:
        refused = [s > 0 for s in checked_scores(stage_scorer(cfg.refusal_judge, cfg), prompts, texts)]
    else:
        refused = [refuses(t) for t in texts]
    labels = [str(r.get("label", "all")) for r in rows]

    def rate(flags):  # a share and its binomial standard error
        p = mean(flags)
        return p, (p * (1 - p) / len(flags)) ** 0.5

    metrics["refusal_rate"], metrics["refusal_rate_se"] = rate(refused)
    for label in sorted(set(labels) - {"all"}):
        flags = [f for f, lab in zip(refused, labels) if lab == label]
        metrics[f"refusal_rate_{label}"], metrics[f"refusal_rate_{label}_se"] = rate(flags)
    if "safe" in labels:  # XSTest's naming: refusing a safe prompt is over-refusal
        metrics["over_refusal_rate"] = metrics["refusal_rate_safe"]
    metrics["refusal_detector"] = cfg.refusal_judge or "xstest string match"
    out_rows = [{"prompt": s.text, "completion": t, "label": lab, "refused": f,
                 "score": scores[i] if scores else None}
                for i, (s, t, lab, f) in enumerate(zip(samples, texts, labels, refused))]
    return metrics, out_rows


def run(cfg: EvalConfig) -> Path:
    from ..models import load_model, load_tokenizer

    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model = load_model(cfg.model, cfg.trust_remote_code, cfg.device, cfg.dtype)
    reference = load_model(cfg.reference, cfg.trust_remote_code, cfg.device, cfg.dtype) if cfg.reference else None
    run = Run.start(cfg.out, cfg.model_dump())
    harnessed = {}
    if cfg.harness_tasks:  # first: a task name the harness does not know fails before the long part
        from ..evals import harness

        harnessed = harness.run(model, tokenizer, cfg.harness_tasks, cfg.harness_include, cfg.harness_limit,
                                cfg.harness_fewshot, cfg.batch_size, cfg.seed)
    measure = evaluate_prompt_set if cfg.prompts else evaluate
    metrics, rows = measure(model, tokenizer, cfg, reference)
    metrics.update(harnessed)
    run.write_samples(rows)
    run.write_json("metrics.json", metrics)
    run.finish(**{k: v for k, v in metrics.items() if k != "canaries"})
    return run.path
