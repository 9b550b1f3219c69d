"""Pretraining throughput: alignlab's pretrain stage vs a bare PyTorch loop, in one process.

Both train the same model (build_tiny_model, same seed) on the same packed blocks, with the same
batch/block size, AdamW (same lr, betas, eps, weight decay groups, fused like the Trainer's
default), warmup + cosine-to-min_lr LambdaLR and gradient clipping, fp32, shuffled batches, for
the same number of optimizer steps. One-time setup (corpus, tokenizer, model build, packing,
Trainer construction) is outside both timings:

  alignlab: tokens_per_second from the run's status.json (its timer wraps trainer.train(), so it
            includes the Trainer's logging, progress bar and periodic checkpoints, as users get)
  bare:     wall time of the step loop only, after 2 warm-up steps

Runs alternate (bare, alignlab, bare, alignlab, ...) to spread machine drift; medians are reported.

    python benchmarks/pretrain_throughput.py --steps 200 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # benchmark the working tree

import torch

from alignlab.config import PretrainConfig
from alignlab.models import build_tiny_model, train_tokenizer
from alignlab.stages import pretrain

WARMUP_STEPS = 2  # untimed steps at the start of the bare loop


def bare_loop(cfg: PretrainConfig, tokenizer, blocks: torch.Tensor) -> dict:
    """Train with a plain PyTorch loop; time the steps after the first WARMUP_STEPS."""
    model = build_tiny_model(cfg.model, tokenizer, max_length=max(512, cfg.block_size), seed=cfg.seed)
    model.train()
    # weight decay on matrices only (the Trainer also exempts norms and biases)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)

    def lr_lambda(step):  # linear warmup, then cosine down to min_lr_ratio * lr
        if step < cfg.warmup_steps:
            return step / max(1, cfg.warmup_steps)
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return max(0.0, 0.5 * (1 + math.cos(math.pi * progress)) * (1 - cfg.min_lr_ratio) + cfg.min_lr_ratio)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)

    gen = torch.Generator().manual_seed(cfg.seed)
    order, pos = torch.randperm(len(blocks), generator=gen), 0
    loss_sum = torch.zeros(())
    for step in range(cfg.max_steps):
        if step == WARMUP_STEPS:
            start = time.perf_counter()
        if pos + cfg.batch_size > len(order):  # new epoch, reshuffle
            order, pos = torch.randperm(len(blocks), generator=gen), 0
        x = blocks[order[pos:pos + cfg.batch_size]]
        pos += cfg.batch_size
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
    seconds = time.perf_counter() - start
    tokens = (cfg.max_steps - WARMUP_STEPS) * cfg.batch_size * cfg.block_size
    return {"tokens_per_second": tokens / seconds, "seconds": seconds,
            "train_loss": loss_sum.item() / cfg.max_steps}


def alignlab_run(cfg: PretrainConfig) -> dict:
    """Run the pretrain stage and read its own timing from status.json."""
    status = json.loads((pretrain.run(cfg) / "status.json").read_text())
    assert status["global_step"] == cfg.max_steps, status
    return {"tokens_per_second": status["tokens_per_second"], "seconds": status["train_seconds"],
            "train_loss": status["train_loss"]}


def benchmark(model="tiny-1m", steps=200, batch_size=16, block_size=128, repeats=2,
              world_docs=20000, threads=None, out_dir=None) -> dict:
    threads = threads or os.cpu_count()
    torch.set_num_threads(threads)
    print(f"torch threads: {torch.get_num_threads()} (machine cores: {os.cpu_count()})")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5:
        print(f"warning: load average {os.getloadavg()[0]:.2f}, the machine is busy: figures will be noisy")
    tmp = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="bench-pretrain-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        # shared setup: one corpus, one tokenizer (saved, so alignlab loads the identical one), one packing
        texts = pretrain.corpus_texts("world", "text", 0, world_docs, seed=0)
        tokenizer = train_tokenizer(texts)
        tokenizer.save_pretrained(tmp / "tokenizer")
        blocks = pretrain.pack(texts, tokenizer, block_size).with_format("torch")[:]["input_ids"]  # (n, block) int64
        print(f"data: {world_docs} docs -> {len(blocks)} blocks of {block_size} tokens")
        cfg = PretrainConfig(out=str(tmp / "unused"), model=model, tokenizer=str(tmp / "tokenizer"),
                             world_docs=world_docs, block_size=block_size, batch_size=batch_size,
                             max_steps=steps)

        results = {"bare": [], "alignlab": []}
        for i in range(repeats):
            results["bare"].append(bare_loop(cfg, tokenizer, blocks))
            print(f"[{i + 1}/{repeats}] bare:     {results['bare'][-1]['tokens_per_second']:10.0f} tok/s")
            run_cfg = cfg.model_copy(update={"out": str(tmp / f"alignlab-{i}")})
            results["alignlab"].append(alignlab_run(run_cfg))
            print(f"[{i + 1}/{repeats}] alignlab: {results['alignlab'][-1]['tokens_per_second']:10.0f} tok/s")
    finally:
        if not out_dir:
            shutil.rmtree(tmp, ignore_errors=True)

    median = {k: statistics.median(r["tokens_per_second"] for r in v) for k, v in results.items()}
    return {"model": model, "steps": steps, "batch_size": batch_size, "block_size": block_size,
            "repeats": repeats, "world_docs": world_docs, "threads": torch.get_num_threads(),
            "blocks": len(blocks), "runs": results, "median_tokens_per_second": median,
            "ratio": median["alignlab"] / median["bare"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-1m")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--world-docs", type=int, default=20000, help="corpus size (the pretrain default)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--out-dir", default=None, help="keep the runs here (default: a temp dir, removed)")
    a = p.parse_args(argv)
    if a.steps <= WARMUP_STEPS:
        p.error(f"--steps must be more than {WARMUP_STEPS} (the bare loop's warm-up steps)")
    r = benchmark(a.model, a.steps, a.batch_size, a.block_size, a.repeats, a.world_docs, a.threads, a.out_dir)
    m = r["median_tokens_per_second"]
    print(f"median tokens/s  bare: {m['bare']:.0f}  alignlab: {m['alignlab']:.0f}  "
          f"ratio alignlab/bare: {r['ratio']:.3f} (target >= 0.8)")
    return r


if __name__ == "__main__":
    main()
