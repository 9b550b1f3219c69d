"""`alignlab reward`: a Bradley-Terry reward model with TRL's RewardTrainer.

A causal LM gets a one-logit sequence-classification head and learns
P(chosen > rejected) = sigmoid(r(chosen) - r(rejected)). Pairs come from:
- a prompt/chosen/rejected file;
- a ranking file in the InstructGPT form: a prompt and K responses best-first, which gives all
  K*(K-1)/2 ordered pairs;
- `data: auto`: samples of a policy, labelled by a judge (gold or AI feedback), every two
  samples whose scores differ making a pair. `label_noise` flips a share of them, for proxies
  of graded quality.
Pairwise accuracy on held-out pairs goes into status.json.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from ..config import RewardConfig
from ..data import read_rows
from ..errors import InputError
from ..runs import Run, read_jsonl
from ..prompts import as_text, render
from ..scoring import RewardModelScorer, stage_scorer
from .dpo import make_pairs, preference_prompts, read_pairs


def pairs_from_rankings(rows: list[dict], source: str) -> list[dict]:
    """InstructGPT's ranking form: K responses best-first -> every (better, worse) pair."""
    pairs = []
    for i, row in enumerate(rows):
        responses = row["responses"]
        if not isinstance(responses, list) or len(responses) < 2:
            raise InputError(f"{source}: record {i + 1}: 'responses' must list at least 2 responses, best first")
        if len(set(responses)) < len(responses):
            raise InputError(f"{source}: record {i + 1}: 'responses' has identical responses")
        pairs += [{"prompt": row["prompt"], "chosen": better, "rejected": worse}
                  for j, better in enumerate(responses) for worse in responses[j + 1:]]
    return pairs


def file_pairs(spec: str, data_format: str | None = None) -> list[dict]:
    """Pairs from a ranking file (prompt + responses best-first) or a pair file in any known shape."""
    rows = read_rows(spec)
    if "responses" in rows[0] and "prompt" in rows[0]:
        return pairs_from_rankings(read_rows(spec, ["prompt", "responses"]), spec)
    return read_pairs(spec, data_format)


def auto_reward_pairs(cfg: RewardConfig, run: Run) -> list[dict]:
    """Policy samples labelled by the judge; saved as pairs.jsonl (and reused on --resume)."""
    from ..models import load_model, load_tokenizer

    saved = run.path / "pairs.jsonl"
    if cfg.resume and saved.exists():
        return read_jsonl(saved)
    policy = cfg.policy or cfg.model
    pairs = make_pairs(load_model(policy, cfg.trust_remote_code, cfg.device, cfg.dtype),
                       load_tokenizer(policy, cfg.trust_remote_code),
                       preference_prompts(cfg), stage_scorer(cfg.judge, cfg), cfg.samples_per_prompt,
                       cfg.max_new_tokens, cfg.temperature, cfg.seed, all_pairs=True)
    rng = random.Random(cfg.seed)
    for pair in pairs:  # a noisier labeller: swap chosen and rejected for a share of the pairs
        if rng.random() < cfg.label_noise:
            pair["chosen"], pair["rejected"] = pair["rejected"], pair["chosen"]
            pair["flipped"] = True
    run.write_jsonl("pairs.jsonl", pairs)
    return pairs


def split(pairs: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Held-out pairs by prompt, so no evaluation prompt was seen in training."""
    key = lambda p: json.dumps(p["prompt"])  # noqa: E731  (a conversation is a list: compare its JSON)
    prompts = sorted({key(p) for p in pairs})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[:round(len(prompts) * eval_fraction)])
    return [p for p in pairs if key(p) not in held], [p for p in pairs if key(p) in held]


def pairwise_accuracy(scorer, pairs: list[dict]) -> float | None:
    if not pairs:
        return None
    prompts = [p.get("conversation", p["prompt"]) for p in pairs]  # the scorer renders a conversation its own way
    chosen = scorer.score(prompts, [p["chosen"] for p in pairs])
    rejected = scorer.score(prompts, [p["rejected"] for p in pairs])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def run(cfg: RewardConfig) -> Path:
    import datasets
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from ..models import load_tokenizer, load_with_head
    from ..training import FiniteLossMixin, lora_config, metrics_callback, save_final, train, trainer_arguments

    pairs = file_pairs(cfg.data, cfg.data_format) if cfg.data != "auto" else None
    if cfg.lora and cfg.lora.quantize != "none":
        raise InputError("lora.quantize: a 4-bit base is supported for the causal-LM stages (sft, dpo, ppo, grpo, "
                         "rloo, rejection-sampling), not for a reward head")
    args = trainer_arguments(TRLRewardConfig, cfg, lr_scheduler_type="cosine", max_length=cfg.max_length)  # before model
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model = load_with_head(cfg.model, 1, tokenizer, cfg.seed, cfg.trust_remote_code)
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
    if pairs is None:
        pairs = auto_reward_pairs(cfg, run)
    train_pairs, eval_pairs = split(pairs, cfg.eval_fraction, cfg.seed)
    if not train_pairs:
        raise InputError("data: no training pairs (all prompts tied, or all held out)")
    # the reward model reads each exchange in its own chat format, in training as in use (scoring.py)
    rows = [as_text(tokenizer, {"prompt": render(tokenizer, p["conversation"]) if "conversation" in p else p["prompt"],
                                "chosen": p["chosen"], "rejected": p["rejected"]}) for p in train_pairs]
    trainer = type("Reward", (FiniteLossMixin, RewardTrainer), {})(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), peft_config=lora_config(cfg, "SEQ_CLS"),
        processing_class=tokenizer, callbacks=[metrics_callback(run)],
    )
    result = train(trainer, run, cfg.resume)
    save_final(trainer, tokenizer, run, cfg)
    if not run.main:
        return run.path
    scorer = RewardModelScorer(str(run.model_dir), max_length=cfg.max_length, device=cfg.device, dtype=cfg.dtype)
    run.finish(**result, pairs_train=len(train_pairs), pairs_eval=len(eval_pairs),
               pairwise_accuracy=pairwise_accuracy(scorer, eval_pairs),
               train_accuracy=pairwise_accuracy(scorer, train_pairs[:512]))
    return run.path
