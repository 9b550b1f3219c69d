"""Sampling throughput: alignlab.sampling.sample vs plain model.generate, in one process.

Both sample (temperature 1, no top-k/top-p) one completion for each of the same 32 world chat
prompts (mixed kinds, so the batch is left-padded), 64 new tokens, from the same untrained
build_tiny_model model. An untrained model is near-uniform, so it rarely samples EOS and never
in every row: both run exactly 64 decoding steps on the whole batch (checked after each run), and
tokens/s = batch x 64 / seconds for both.

  generate: wall time of the model.generate call alone (prompts already tokenized and padded)
  sample:   wall time of the whole alignlab.sampling.sample call (tokenizing, decoding to text)

One untimed call of each warms up; then runs alternate (generate, sample, x --repeats) to spread
machine drift, and the medians are compared per model (also printed: the median of the ratios of
each repeat's adjacent pair, which slow drift in the machine's load affects least).

    python benchmarks/sampling_throughput.py --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # benchmark the working tree

import torch

from alignlab.models import build_tiny_model, load_tokenizer, train_tokenizer
from alignlab.sampling import sample, unsupported_by_fast_path
from alignlab.world import World

TARGET_RATIO = 1.5
KINDS = ("review", "benign", "harmful", "knowledge")  # prompts of different lengths


def prompts(n: int) -> list[str]:
    world = World(0)
    per_kind = -(-n // len(KINDS))
    return [p for kind in KINDS for p in world.prompts(kind, "eval", per_kind)][:n]


def time_generate(model, tokenizer, texts: list[str], new_tokens: int, seed: int) -> float:
    """Seconds for one plain model.generate call on the left-padded batch."""
    pad = tokenizer.pad_token_id
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, encoded))
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    torch.manual_seed(seed)
    start = time.perf_counter()
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=True,
                         temperature=1.0, top_k=None, top_p=None, pad_token_id=pad,
                         eos_token_id=tokenizer.eos_token_id)
    seconds = time.perf_counter() - start
    assert out.shape[1] - width == new_tokens, "generate stopped early: every row sampled EOS"
    return seconds


def time_sample(model, tokenizer, texts: list[str], new_tokens: int, seed: int) -> float:
    """Seconds for one alignlab.sampling.sample call (one batch)."""
    start = time.perf_counter()
    samples = sample(model, tokenizer, texts, new_tokens, temperature=1.0, batch_size=len(texts), seed=seed)
    seconds = time.perf_counter() - start
    assert max(len(s.completion_ids) for s in samples) == new_tokens, "sample stopped early: every row sampled EOS"
    return seconds


def benchmark(models=("tiny-1m", "tiny-4m"), batch_size=32, new_tokens=64, repeats=3, threads=None,
              tokenizer=None, world_docs=2000) -> dict:
    threads = threads or os.cpu_count()
    torch.set_num_threads(threads)
    print(f"torch threads: {torch.get_num_threads()} (machine cores: {os.cpu_count()})")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5:
        print(f"warning: load average {os.getloadavg()[0]:.2f}, the machine is busy: figures will be noisy")
    # the vocabulary size is what matters here, not the tokenizer's quality
    tok = load_tokenizer(tokenizer) if tokenizer else train_tokenizer(World(0).corpus(world_docs, seed=0))
    texts = prompts(batch_size)
    tokens = batch_size * new_tokens
    results = {}
    for name in models:
        model = build_tiny_model(name, tok, seed=0).eval()
        if reason := unsupported_by_fast_path(model):
            raise SystemExit(f"{name}: alignlab's fast sampling path is not used ({reason})")
        time_generate(model, tok, texts, new_tokens, seed=0)  # warm-up, untimed
        time_sample(model, tok, texts, new_tokens, seed=0)
        runs = {"generate": [], "sample": []}
        for i in range(repeats):
            for method, timed in (("generate", time_generate), ("sample", time_sample)):
                seconds = timed(model, tok, texts, new_tokens, seed=i + 1)
                runs[method].append({"tokens_per_second": tokens / seconds, "seconds": seconds})
                print(f"{name} [{i + 1}/{repeats}] {method:8s} {tokens / seconds:8.0f} tok/s  ({seconds:.2f} s)")
        median = {k: statistics.median(r["tokens_per_second"] for r in v) for k, v in runs.items()}
        paired = [s["tokens_per_second"] / g["tokens_per_second"] for g, s in zip(runs["generate"], runs["sample"])]
        results[name] = {"runs": runs, "median_tokens_per_second": median,
                         "ratio": median["sample"] / median["generate"], "paired_ratios": paired}
        print(f"{name}: median tok/s generate {median['generate']:.0f}  sample {median['sample']:.0f}  "
              f"ratio {results[name]['ratio']:.2f}, median paired ratio {statistics.median(paired):.2f} "
              f"(target >= {TARGET_RATIO})")
    return {"models": results, "batch_size": batch_size, "new_tokens": new_tokens, "repeats": repeats,
            "threads": torch.get_num_threads(), "vocab_size": len(tok),
            "prompt_tokens": [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny-1m,tiny-4m", help="comma-separated tiny configs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--tokenizer", default=None, help="a tokenizer folder (default: train one on the world corpus)")
    a = p.parse_args(argv)
    r = benchmark(a.models.split(","), a.batch_size, a.new_tokens, a.repeats, a.threads, a.tokenizer)
    for name, m in r["models"].items():
        ok = "met" if m["ratio"] >= TARGET_RATIO else "NOT met"
        print(f"{name}: sample / generate = {m['ratio']:.2f} (target >= {TARGET_RATIO}: {ok})")
    return r


if __name__ == "__main__":
    main()
