"""`alignlab dpo`: Direct Preference Optimization with TRL's DPOTrainer.

Pairs come from a prompt/chosen/rejected file, or are made automatically (`data: auto`):
sample `samples_per_prompt` completions per prompt from the starting model, score them with
the judge, and pair the best with the worst (prompts whose samples all tie are dropped).
The made pairs are kept in the run folder as pairs.jsonl.
"""
from __future__ import annotations

from pathlib import Path

from ..config import DPOConfig
from ..data import read_examples, read_rows
from ..errors import InputError
from ..prompts import as_text, is_conversation, render
from .. import distributed
from ..runs import Run, read_jsonl
from ..scoring import sample_and_score, stage_scorer
from ..world import World

# The world's preference prompts: which kinds, in what shares.
WORLD_PROMPT_MIX = {"review": 0.4, "harmful": 0.2, "benign": 0.2, "contrast": 0.2}


def preference_prompts(cfg) -> list:
    """The prompts of any stage config with `prompts`, `n_prompts`, `world_seed` and `seed`:
    the world's mix of review, harmful, benign and contrast requests (train split) as one-turn
    conversations, or the first n_prompts of a file / hub set's `prompt` column (plain text, or
    conversations in TRL's form). Each model renders them its own way (alignlab.prompts)."""
    if cfg.prompts == "world":
        world = World(cfg.world_seed)
        return [p for kind, share in WORLD_PROMPT_MIX.items()
                for p in world.conversations(kind, "train", round(cfg.n_prompts * share), seed=cfg.seed)]
    return [p if is_conversation(p) else str(p)
            for p in (r["prompt"] for r in read_rows(cfg.prompts, ["prompt"]))][:cfg.n_prompts]


def make_pairs(model, tokenizer, prompts: list[str], scorer, k: int, max_new_tokens: int,
               temperature: float, seed: int, all_pairs: bool = False) -> list[dict]:
    """Pairs among k samples per prompt, ranked by the scorer: best vs worst, or (all_pairs)
    every two samples whose scores differ. Ties carry no preference and are dropped.

    Under several processes each samples its own share of the prompts (every process-count-th one,
    seeded by seed and rank) and every process gets all the pairs, in rank order."""
    rank, count = distributed.rank_and_count()
    if count > 1:
        prompts, seed = prompts[rank::count], seed * 1_000_003 + rank
    samples, scored = sample_and_score(model, tokenizer, prompts, k, {"judge": scorer}, max_new_tokens, temperature,
                                       seed, desc="sampling pairs")
    scores = scored["judge"]
    pairs = []
    for i, asked in enumerate(prompts):
        # a pair keeps the prompt as the policy read it (rendered), so training sees what was sampled,
        # and a conversation as well, for a model with another chat format (a reward model's) to render
        prompt = render(tokenizer, asked)
        extra = {"conversation": asked} if is_conversation(asked) else {}
        group = sorted(zip(scores[i * k:(i + 1) * k], (s.completion for s in samples[i * k:(i + 1) * k])),
                       key=lambda x: x[0])  # ascending; stable, so ties keep sampling order
        candidates = ([(b, a) for j, a in enumerate(group) for b in group[j + 1:]] if all_pairs
                      else [(group[-1], group[0])])
        for (high, chosen), (low, rejected) in candidates:
            if high > low and chosen != rejected:
                pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                              "score_chosen": high, "score_rejected": low, **extra})
    return distributed.gather(pairs)


def auto_pairs(cfg: DPOConfig, run: Run, model, tokenizer) -> list[dict]:
    """Judge-ranked pairs, saved as pairs.jsonl; a resumed run reuses the pairs it made before."""
    pairs_file = run.path / "pairs.jsonl"
    if cfg.resume and pairs_file.exists():
        return read_jsonl(pairs_file)
    scorer = stage_scorer(cfg.judge, cfg)
    pairs = make_pairs(model, tokenizer, preference_prompts(cfg), scorer, cfg.samples_per_prompt,
                       cfg.max_new_tokens, cfg.temperature, cfg.seed)
    run.write_jsonl("pairs.jsonl", pairs)
    return pairs


def read_pairs(spec: str, data_format: str | None = None) -> list[dict]:
    """Preference pairs from a file or hub set in any known shape (hh-rlhf, ShareGPT/LLaMA-Factory, PKU, ...)."""
    rows, _ = read_examples(spec, ("preference",), data_format)
    for i, row in enumerate(rows):
        if row["chosen"] == row["rejected"]:
            raise InputError(f"{spec}: record {i + 1} has identical chosen and rejected responses")
    return rows


def run(cfg: DPOConfig) -> Path:
    import datasets
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    from ..models import autocast, compute_of, load_model, load_tokenizer, on_device
    from ..training import (FiniteLossMixin, load_trainable, lora_config, metrics_callback, save_final, train,
                            trainer_arguments)

    pairs = read_pairs(cfg.data, cfg.data_format) if cfg.data != "auto" else None
    args = trainer_arguments(  # before the models: see training.common_args
        TRLDPOConfig, cfg, lr_scheduler_type="cosine", beta=cfg.beta, max_length=cfg.max_length,
        loss_type="sigmoid", precompute_ref_log_probs=False,
    )
    device, dtype = compute_of(cfg)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model = load_trainable(cfg)  # fp32 master weights (or a 4-bit base); the Trainer places it
    # frozen: the compute dtype is enough (half the memory of fp32 in bf16); the Trainer places it too.
    # With LoRA the reference is the model with its adapter off (TRL's way), unless one is named
    reference = (load_model(cfg.reference or cfg.model, cfg.trust_remote_code, dtype=dtype)
                 if cfg.lora is None or cfg.reference else None)
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
    if pairs is None:
        with autocast(device, dtype):
            pairs = auto_pairs(cfg, run, on_device(model, device), tokenizer)
    if not pairs:
        raise InputError("data: no preference pairs (every prompt's samples scored the same)")
    dataset = datasets.Dataset.from_list([as_text(tokenizer, {k: p[k] for k in ("prompt", "chosen", "rejected")})
                                          for p in pairs])
    trainer = type("DPO", (FiniteLossMixin, DPOTrainer), {})(
        model=model, ref_model=reference, args=args, train_dataset=dataset, peft_config=lora_config(cfg),
        processing_class=tokenizer, callbacks=[metrics_callback(run)],
    )
    result = train(trainer, run, cfg.resume)
    save_final(trainer, tokenizer, run, cfg)
    judged = [p["score_chosen"] - p["score_rejected"] for p in pairs if "score_chosen" in p]
    run.finish(**result, pairs=len(pairs), mean_judge_margin=sum(judged) / len(judged) if judged else None)
    return run.path
