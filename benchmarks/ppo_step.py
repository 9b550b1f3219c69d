"""PPO step time, broken into generation / scoring / training (median over iterations).

Runs alignlab's PPO stage for a few iterations on a tiny Llama with a world tokenizer (random
weights: every rollout runs the full 48 new tokens, the slowest case) and the world's gold judge
as reward, then reads the per-iteration `time/*` records from its metrics.jsonl.

    python benchmarks/ppo_step.py [--model tiny-1m --iterations 8 --rollout-batch 32]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PHASES = ["time/generation", "time/scoring", "time/training"]


def benchmark(model: str = "tiny-1m", iterations: int = 8, rollout_batch: int = 32) -> dict:
    from alignlab.config import PPOConfig
    from alignlab.models import build_tiny_model, train_tokenizer
    from alignlab.runs import read_metrics
    from alignlab.stages import ppo
    from alignlab.world import World

    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        tokenizer = train_tokenizer(World(0).corpus(3000))
        policy = Path(tmp) / "policy"
        build_tiny_model(model, tokenizer).save_pretrained(policy)
        tokenizer.save_pretrained(policy)
        run = ppo.run(PPOConfig(out=str(Path(tmp) / "ppo"), model=str(policy), rollout_batch=rollout_batch,
                                mini_batch=16, max_steps=iterations, save_steps=iterations + 1))
        records = read_metrics(run)[1:]  # the first iteration pays one-time warm-up costs
    phases = {k: statistics.median(r[k] for r in records) for k in PHASES}
    return {"model": model, "iterations": len(records), "rollout_batch": rollout_batch, "phases": phases,
            "total": sum(phases.values())}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-1m")
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--rollout-batch", type=int, default=32)
    a = p.parse_args()
    r = benchmark(a.model, a.iterations, a.rollout_batch)
    for k, v in r["phases"].items():
        print(f"{k}: {v:.3f} s ({v / r['total']:.0%})")
