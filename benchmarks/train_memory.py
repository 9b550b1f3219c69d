"""Peak memory and seconds per iteration of DPO and PPO, tiny-1m/4m/16m, fp32, with and without
gradient checkpointing.

Each measurement runs in a fresh subprocess: it builds a random tiny Llama (world tokenizer), writes
its inputs (DPO: a fixed pair file, so no sampling is timed; PPO: the world's prompts and gold judge,
random weights, so every rollout runs all its new tokens), reads its resident set size, runs the
stage, and reads its peak resident set size (getrusage ru_maxrss). The figure is peak minus the RSS
just before the stage: what training added at its peak (weights, gradients, AdamW moments,
activations). Seconds per iteration: DPO, the Trainer's train_runtime / steps; PPO, the median
`time/training` (the forward/backward part that checkpointing changes) over the iterations after
the first.

    python benchmarks/train_memory.py [--models tiny-1m,tiny-4m,tiny-16m --steps 6]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # benchmark the working tree

MODELS = ("tiny-1m", "tiny-4m", "tiny-16m")
STAGES = ("dpo", "ppo")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(stage: str, model: str, checkpointing: bool, steps: int) -> dict:
    """One measurement (run in its own process)."""
    from alignlab.config import DPOConfig, PPOConfig
    from alignlab.models import build_tiny_model, train_tokenizer
    from alignlab.runs import read_metrics
    from alignlab.stages import dpo, ppo
    from alignlab.world import World

    world = World(0)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tokenizer = train_tokenizer(world.corpus(3000))
        policy = Path(tmp) / "policy"
        build_tiny_model(model, tokenizer).save_pretrained(policy)
        tokenizer.save_pretrained(policy)
        common = dict(model=str(policy), max_steps=steps, save_steps=steps + 1, logging_steps=1, dtype="float32",
                      device="cpu", gradient_checkpointing=checkpointing)
        if stage == "dpo":
            rows = world.sft_data(256)  # prompt + a demonstration; the pair's other answer is another demo's
            pairs = [{"prompt": a["prompt"], "chosen": a["completion"], "rejected": b["completion"]}
                     for a, b in zip(rows, rows[1:] + rows[:1]) if a["completion"] != b["completion"]]
            (Path(tmp) / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
            cfg = DPOConfig(out=str(Path(tmp) / "run"), data=str(Path(tmp) / "pairs.jsonl"), batch_size=16,
                            max_length=128, **common)
        else:
            cfg = PPOConfig(out=str(Path(tmp) / "run"), rollout_batch=32, mini_batch=16, max_new_tokens=48, **common)
        before = rss_mib()
        (dpo if stage == "dpo" else ppo).run(cfg)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        records = read_metrics(cfg.out)
    if stage == "dpo":
        seconds = next(r["train_runtime"] for r in records if "train_runtime" in r) / steps
    else:
        seconds = statistics.median(r["time/training"] for r in records[1:])
    return {"added_mib": peak - before, "seconds_per_iteration": seconds}


def measure(stage: str, model: str, checkpointing: bool, steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps([stage, model, checkpointing, steps])],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def benchmark(models=MODELS, steps: int = 6) -> dict:
    rows = []
    for stage in STAGES:
        for model in models:
            for checkpointing in (False, True):
                r = measure(stage, model, checkpointing, steps)
                rows.append({"stage": stage, "model": model, "checkpointing": checkpointing, **r})
                print(f"{stage} {model} checkpointing={checkpointing}: {r['added_mib']:.0f} MiB, "
                      f"{r['seconds_per_iteration']:.3f} s/iteration", flush=True)
    return {"steps": steps, "rows": rows}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        import os
        import contextlib

        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            result = child(*json.loads(a.child))
        print(json.dumps(result))
    else:
        benchmark(a.models.split(","), a.steps)
