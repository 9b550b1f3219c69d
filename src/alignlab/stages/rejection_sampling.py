"""`alignlab rejection-sampling`: rounds of sample K -> keep the best by the scorer -> SFT on the
kept ones (the LLaMA-2 recipe; also called RAFT or expert iteration).

Each round is a finished SFT run folder inside this run (round-1/, round-2/, ...) with the kept
samples beside it (round-N-kept.jsonl), so an interrupted run resumes at the first unfinished
round. Round r samples from round r-1's model on fresh prompts. Metrics per round: mean score
of all samples, mean score of the kept ones, and the SFT loss.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from statistics import mean

from ..config import RejectionSamplingConfig, SFTConfig
from ..errors import InputError
from .. import distributed
from ..runs import Run, is_finished, read_status
from ..prompts import render
from ..scoring import sample_and_score, stage_scorer
from . import sft
from .best_of_n import picks
from .dpo import preference_prompts


def keep_best(prompts: list[str], completions: list[str], scores: list[float], k: int) -> list[dict]:
    """The best of each prompt's k samples, as SFT rows (prompts as the policy read them, rendered)."""
    return [{"prompt": prompt, "completion": completions[j], "score": scores[j]}
            for prompt, j in zip(prompts, picks(scores, k, k))]


def run(cfg: RejectionSamplingConfig) -> Path:
    from ..models import load_model, load_tokenizer

    if cfg.lora and cfg.lora.quantize != "none":
        raise InputError("lora.quantize: rejection sampling merges each round's adapter, which a 4-bit base "
                         "does not allow; use quantize: none")
    scorer = stage_scorer(cfg.reward, cfg)
    if not preference_prompts(cfg):
        raise InputError(f"prompts: {cfg.prompts}: no prompts")
    load_tokenizer(cfg.model, cfg.trust_remote_code)  # fail early on a bad model path
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
    current = cfg.model
    for r in range(1, cfg.rounds + 1):
        round_dir = run.path / f"round-{r}"
        if is_finished(round_dir):  # done before an interruption
            current = str(round_dir)
            continue
        if run.main:
            shutil.rmtree(round_dir, ignore_errors=True)  # an unfinished round starts over, from its own seed
        prompts = preference_prompts(cfg.model_copy(update={"seed": cfg.seed + r}))
        # under several processes each samples every count-th prompt (seeded by rank) and all get every row
        rank, count = distributed.rank_and_count()
        mine = prompts[rank::count]
        model = load_model(current, cfg.trust_remote_code, cfg.device, cfg.dtype)
        tokenizer = load_tokenizer(current, cfg.trust_remote_code)
        samples, scored = sample_and_score(model, tokenizer, mine, cfg.samples_per_prompt, {"reward": scorer},
                                           cfg.max_new_tokens, cfg.temperature, desc=f"round {r}: sampling",
                                           seed=cfg.seed + r if count == 1 else (cfg.seed + r) * 1_000_003 + rank)
        completions, scores = [s.completion for s in samples], scored["reward"]
        kept = keep_best([render(tokenizer, p) for p in mine], completions, scores, cfg.samples_per_prompt)
        kept, scores = distributed.gather(kept), distributed.gather(scores)
        run.write_jsonl(f"round-{r}-kept.jsonl", kept)
        distributed.barrier()  # the main process wrote the file every process trains on next
        sft.run(SFTConfig(
            out=str(round_dir), model=current, data=str(run.path / f"round-{r}-kept.jsonl"), seed=cfg.seed + r,
            world_seed=cfg.world_seed, lr=cfg.lr, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
            max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
            max_grad_norm=cfg.max_grad_norm, save_steps=cfg.save_steps, logging_steps=cfg.logging_steps,
            max_length=cfg.max_length, trust_remote_code=cfg.trust_remote_code, device=cfg.device, dtype=cfg.dtype,
            gradient_checkpointing=cfg.gradient_checkpointing,
            # each round's model is the next round's sampler and base: a LoRA is merged into it every round
            lora=cfg.lora.model_copy(update={"merge": True}) if cfg.lora else None,
        ))
        distributed.barrier()  # the main process saves the round's model; the next round samples from it
        run.log({"step": r, "round": r, "score_all": mean(scores), "score_kept": mean(k["score"] for k in kept),
                 "sft_loss": read_status(round_dir)["train_loss"], "prompts": len(prompts)})
        current = str(round_dir)
    if run.main:
        shutil.copytree(Path(current) / "model", run.model_dir, dirs_exist_ok=True)
    run.finish(rounds=cfg.rounds)
    return run.path
