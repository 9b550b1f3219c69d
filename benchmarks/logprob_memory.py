"""Peak memory of alignlab.sampling.completion_logprobs vs the full log_softmax it replaced.

The baseline (`full_log_softmax`, kept here as it was in alignlab) has the model produce logits
at every position of the right-padded batch and takes log_softmax over all of them in float32:
two (batch, length, vocab) float32 tensors. alignlab's version asks the model's forward for the
logits at the positions that predict a completion token only, a bounded number of rows at a time
(`max_logits`), and normalises them by a float32 logsumexp in slices.

Each measurement runs in a fresh subprocess (torch allocates outside Python's heap, so tracemalloc
cannot see it): the child builds a tiny random Llama (hidden 64, 2 layers) with a large vocabulary,
makes the token ids, scores one 2-token row to warm up (thread pools, kernels), reads its resident
set size, scores the batch once and reads its peak resident set size (getrusage ru_maxrss). The
figure is peak minus the RSS just before the call: what the call itself added at its peak. It also
returns the per-token log-probs, and the parent checks that old and new agree.

    python benchmarks/logprob_memory.py [--vocabs 1000,50000,150000 --batch 32 --prompt-tokens 64
                                         --completion-tokens 64 --threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # benchmark the working tree

VOCABS = (1_000, 50_000, 150_000)
SMALL_CAP = 2 ** 24  # a second alignlab row with a tighter max_logits: the peak follows the cap
# what each child runs: (label, implementation, max_logits)
IMPLEMENTATIONS = (("full log_softmax (before)", "old", None),
                   ("alignlab, default max_logits (after)", "new", None),
                   (f"alignlab, max_logits=2**{SMALL_CAP.bit_length() - 1}", "new", SMALL_CAP))


def full_log_softmax(model, tokenizer, prompt_ids, completion_ids, batch_size=64, per_token=False):
    """alignlab's completion_logprobs before it computed logits at completion positions only (the
    baseline, unchanged but for the device its tensors go to)."""
    import torch

    pad, device = tokenizer.pad_token_id, next(model.parameters()).device
    results = []
    with torch.no_grad():
        for start in range(0, len(prompt_ids), batch_size):
            pairs = list(zip(prompt_ids[start:start + batch_size], completion_ids[start:start + batch_size]))
            rows = [p + c for p, c in pairs]
            width = max(map(len, rows))
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
            logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            token_logprobs = logprobs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
            for i, (p, c) in enumerate(pairs):
                values = token_logprobs[i, len(p) - 1:len(p) - 1 + len(c)]
                results.append(values.tolist() if per_token else values.sum().item())
    return results


def _rss_kib() -> int:
    """The current resident set size (Linux /proc; elsewhere the peak so far, a lower bound on the delta)."""
    try:
        return int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                        if line.startswith("VmRSS:")))
    except (OSError, StopIteration):
        return _peak_kib()


def _peak_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes, Linux KiB


def measure(spec: dict) -> dict:
    """One measurement, in this (fresh) process."""
    import random

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from alignlab.sampling import completion_logprobs

    torch.set_num_threads(spec["threads"])
    vocab = spec["vocab"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        tie_word_embeddings=True, pad_token_id=0)).eval()
    tokenizer = type("Tokenizer", (), {"pad_token_id": 0})()  # completion_logprobs only reads the pad id
    rng = random.Random(0)
    prompts = [[rng.randrange(1, vocab) for _ in range(spec["prompt_tokens"])] for _ in range(spec["batch"])]
    completions = [[rng.randrange(1, vocab) for _ in range(spec["completion_tokens"])] for _ in range(spec["batch"])]
    if spec["impl"] == "old":
        score = lambda p, c: full_log_softmax(model, tokenizer, p, c, per_token=True)  # noqa: E731
    else:
        cap = {"max_logits": spec["max_logits"]} if spec["max_logits"] else {}
        score = lambda p, c: completion_logprobs(model, tokenizer, p, c, per_token=True, **cap)  # noqa: E731
    score([[1]], [[2]])  # warm-up: lazy one-time allocations are not the call's
    before, peak_before = _rss_kib(), _peak_kib()
    start = time.perf_counter()
    logprobs = score(prompts, completions)
    seconds = time.perf_counter() - start
    peak = _peak_kib()
    return {"rss_before_mib": before / 1024, "peak_mib": peak / 1024, "delta_mib": max(0, peak - before) / 1024,
            # the call never rose above an earlier high-water mark: its delta is then only an upper bound
            "peak_set_before_call": peak == peak_before, "seconds": seconds, "logprobs": logprobs}


def run_child(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"logprob_memory child {spec} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def benchmark(vocabs=VOCABS, batch=32, prompt_tokens=64, completion_tokens=64, threads=1) -> dict:
    from alignlab.sampling import MAX_LOGITS

    results = []
    for vocab in vocabs:
        measured = {}
        for label, impl, cap in IMPLEMENTATIONS:
            spec = dict(vocab=vocab, impl=impl, max_logits=cap, batch=batch, prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, threads=threads)
            measured[label] = run_child(spec)
            m = measured[label]
            print(f"vocab {vocab:>7}: {label:40s} peak +{m['delta_mib']:8.1f} MiB  {m['seconds']:6.2f} s")
        old = measured[IMPLEMENTATIONS[0][0]].pop("logprobs")
        worst = max(abs(a - b) for label, _, _ in IMPLEMENTATIONS[1:]
                    for new_row, old_row in zip(measured[label].pop("logprobs"), old) for a, b in zip(new_row, old_row))
        print(f"vocab {vocab:>7}: largest |new - old| of a token's log-prob: {worst:.2e}")
        results.append({"vocab": vocab, "measured": measured, "max_abs_difference": worst,
                        # the baseline's two float32 (batch, length, vocab) tensors, for scale
                        "full_logits_mib": batch * (prompt_tokens + completion_tokens) * vocab * 4 / 2 ** 20})
    return {"results": results, "batch": batch, "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "threads": threads, "default_max_logits": MAX_LOGITS,
            "small_cap": SMALL_CAP}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocabs", default=",".join(map(str, VOCABS)), help="comma-separated vocabulary sizes")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--completion-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads in each child (memory does not need more)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measurement, as JSON on stdout
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(measure(json.loads(a.child))))
        return None
    return benchmark([int(v) for v in a.vocabs.split(",")], a.batch, a.prompt_tokens, a.completion_tokens, a.threads)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
