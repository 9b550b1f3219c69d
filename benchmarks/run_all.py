"""Run the benchmarks and write their sections of BENCHMARKS.md at the repo root.

    python benchmarks/run_all.py                  # all: pretrain throughput, the demo's wall time, sampling
                                                  #   throughput, PPO step time, completion_logprobs memory
    python benchmarks/run_all.py --only demo      # only re-run the demo; the other sections are kept
    python benchmarks/run_all.py --only data      # the corpus pipeline on IMDb's 50k unlabelled reviews

Each benchmark owns one section of BENCHMARKS.md (between <!-- bench:NAME --> markers) and
replaces only that section, so figures from different runs can sit side by side; every section
records its own date, command and machine. Everything else in the file is kept verbatim (the GPU
check, benchmarks/gpu_check.py, writes its own section the same way). Run on an otherwise idle
machine: torch uses every core, and competing load slows the runs erratically.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pretrain_throughput  # the sibling scripts (benchmarks/ is on sys.path when run as a script)
import ppo_step
import logprob_memory
import sampling_throughput
import train_memory
import data_pipeline
import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
MD = ROOT / "BENCHMARKS.md"
HEADER = ("# Benchmarks\n\nWritten by `benchmarks/run_all.py` (see `benchmarks/README.md`); each section "
          "is replaced when its benchmark is re-run. Run on an otherwise idle machine.\n")
DEMO_TARGET_SECONDS = 300
PRETRAIN_TARGET_RATIO = 0.8
SAMPLING_TARGET_RATIO = sampling_throughput.TARGET_RATIO
BENCHMARKS = ("pretrain", "demo", "sampling", "ppo", "logprobs", "train", "data")


def load_average() -> str:
    return "%.2f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else "?"


def machine(threads: str, load: str) -> str:
    cpu = platform.processor() or platform.machine()
    ram = "?"
    try:
        cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M).group(1)
        kib = int(re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))
        ram = f"{kib / 2**20:.1f} GiB"
    except (OSError, AttributeError):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {ram} RAM, load average {load} at start; "
            f"torch {torch.__version__}, transformers {transformers.__version__}, torch threads {threads}")


def preamble(title: str, command: str, machine_line: str, setup: str) -> list[str]:
    return [f"## {title}", "", f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}", f"- command: `{command}`",
            f"- machine: {machine_line}", f"- setup: {setup}", ""]


def pretrain_section(r: dict, command: str, load: str) -> str:
    def row(name, runs, median):
        tps = ", ".join(f"{x['tokens_per_second']:.0f}" for x in runs)
        secs = ", ".join(f"{x['seconds']:.2f}" for x in runs)
        loss = ", ".join(f"{x['train_loss']:.3f}" for x in runs)
        return f"| {name} | {median:.0f} | {tps} | {secs} | {loss} |"

    m, ok = r["median_tokens_per_second"], r["ratio"] >= PRETRAIN_TARGET_RATIO
    setup = (f"{r['model']}, {r['steps']} optimizer steps, batch {r['batch_size']} x block {r['block_size']} "
             f"({r['batch_size'] * r['block_size']} tokens/step), {r['world_docs']} world docs "
             f"({r['blocks']} blocks), fp32, {r['repeats']} alternating repeats (bare first)")
    lines = preamble("Pretraining throughput: alignlab vs a bare PyTorch loop", command,
                     machine(str(r["threads"]), load), setup) + [
        "| | tokens/s (median) | tokens/s per repeat | timed seconds per repeat | mean train loss |",
        "|---|---:|---:|---:|---:|",
        row("alignlab pretrain stage (Trainer)", r["runs"]["alignlab"], m["alignlab"]),
        row("bare PyTorch loop (same-run baseline)", r["runs"]["bare"], m["bare"]),
        f"| **ratio alignlab / bare** | **{r['ratio']:.3f}** | | | |",
        "",
        f"Target: alignlab >= {PRETRAIN_TARGET_RATIO}x the bare loop: **{'met' if ok else 'NOT met'}**.",
        "alignlab's figure is its own status.json `tokens_per_second` (timer around `trainer.train()`: "
        "includes logging, progress bar, checkpoints); the bare loop times its steps after 2 warm-up steps.",
    ]
    return "\n".join(lines)


def run_demo() -> dict | None:
    """`alignlab demo` in a subprocess; None (with a message) when it cannot run."""
    out = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "alignlab.cli", "demo", "--out", str(out / "demo")]
    try:
        start = time.perf_counter()
        code = subprocess.run(cmd, env=env, cwd=ROOT).returncode
        wall = time.perf_counter() - start
        if code != 0:
            print(f"demo: SKIPPED, `python {shlex.join(cmd[1:])}` exited with code {code} (see its output above); "
                  "the demo section of BENCHMARKS.md is left as it was")
            return None
        try:
            summary = json.loads((out / "demo" / "summary.json").read_text())
            reported = float(summary["wall_seconds"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"demo: SKIPPED, no usable wall_seconds in {out / 'demo' / 'summary.json'} ({e!r}); "
                  "the demo section of BENCHMARKS.md is left as it was")
            return None
        extra = {k: v for k, v in summary.items() if k.endswith("_seconds") and k != "wall_seconds"
                 and isinstance(v, (int, float))}
        return {"wall_seconds": reported, "process_seconds": wall, "extra": extra}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def demo_section(r: dict, command: str, threads: str, load: str) -> str:
    ok = r["wall_seconds"] <= DEMO_TARGET_SECONDS
    lines = preamble("Demo wall time (`alignlab demo`)", command, machine(threads, load),
                     "`python -m alignlab.cli demo --out <temp dir>`, defaults") + [
        "| | seconds | ratio to target |",
        "|---|---:|---:|",
        f"| demo `wall_seconds` (summary.json) | {r['wall_seconds']:.1f} | {r['wall_seconds'] / DEMO_TARGET_SECONDS:.2f} |",
        f"| whole subprocess (incl. interpreter start, imports) | {r['process_seconds']:.1f} | "
        f"{r['process_seconds'] / DEMO_TARGET_SECONDS:.2f} |",
        *(f"| {k} | {v:.1f} | |" for k, v in r["extra"].items()),
        f"| target (baseline) | {DEMO_TARGET_SECONDS} | 1.00 |",
        "",
        f"Target: demo <= {DEMO_TARGET_SECONDS} s wall: **{'met' if ok else 'NOT met'}**.",
    ]
    return "\n".join(lines)


def sampling_section(r: dict, command: str, load: str) -> str:
    def row(name, model, runs, median):
        tps = ", ".join(f"{x['tokens_per_second']:.0f}" for x in runs)
        secs = ", ".join(f"{x['seconds']:.2f}" for x in runs)
        return f"| {model} | {name} | {median:.0f} | {tps} | {secs} |"

    models = r["models"]
    ok = all(m["ratio"] >= SAMPLING_TARGET_RATIO for m in models.values())
    widths = r["prompt_tokens"]
    setup = (f"untrained {', '.join(models)} (build_tiny_model, vocab {r['vocab_size']}), batch {r['batch_size']} "
             f"world chat prompts ({min(widths)}-{max(widths)} tokens, left-padded), exactly {r['new_tokens']} new "
             f"tokens per row (temperature 1, no top-k/top-p), fp32, {r['repeats']} alternating repeats "
             "(generate first) after one untimed warm-up of each")
    lines = preamble("Sampling throughput: alignlab `sample` vs plain `model.generate`", command,
                     machine(str(r["threads"]), load), setup) + [
        "| model | | new tokens/s (median) | new tokens/s per repeat | seconds per repeat |",
        "|---|---|---:|---:|---:|",
    ]
    for name, m in models.items():
        lines += [
            row("alignlab `sample`", name, m["runs"]["sample"], m["median_tokens_per_second"]["sample"]),
            row("`model.generate` (same-run baseline)", name, m["runs"]["generate"], m["median_tokens_per_second"]["generate"]),
            f"| {name} | **ratio sample / generate** | **{m['ratio']:.2f}** | | |",
        ]
    lines += [
        "",
        f"Target: sample >= {SAMPLING_TARGET_RATIO}x generate on every model: **{'met' if ok else 'NOT met'}**.",
        "tokens/s = batch x new tokens / seconds. `sample` is timed as a whole call (tokenizing, decoding to text); "
        "`generate` only around the call, on prompts already tokenized and padded.",
    ]
    return "\n".join(lines)


def ppo_section(r: dict, command: str, load: str) -> str:
    setup = (f"{r['model']} (random weights, so every rollout runs all 48 new tokens), world tokenizer, gold judge "
             f"as reward, rollout batch {r['rollout_batch']}, mini-batch 16, 2 PPO epochs; median over "
             f"{r['iterations']} iterations after the first")
    lines = preamble("PPO step time by phase", command, machine(str(torch.get_num_threads()), load), setup) + [
        "| phase | seconds per iteration (median) | share |", "|---|---:|---:|",
        *(f"| {k.split('/')[1]} | {v:.3f} | {v / r['total']:.0%} |" for k, v in r["phases"].items()),
        f"| total | {r['total']:.3f} | 100% |",
    ]
    return "\n".join(lines)


def logprobs_section(r: dict, command: str, load: str) -> str:
    labels = [label for label, _, _ in logprob_memory.IMPLEMENTATIONS]
    tokens = r["prompt_tokens"] + r["completion_tokens"]
    setup = (f"tiny random Llama (hidden 64, 2 layers, tied embeddings), batch {r['batch']} rows x "
             f"({r['prompt_tokens']} prompt + {r['completion_tokens']} completion tokens), fp32, CPU; each figure from "
             "a fresh subprocess: peak RSS (getrusage ru_maxrss) minus RSS just before the call, after a 2-token "
             f"warm-up call; alignlab's default max_logits is 2**{r['default_max_logits'].bit_length() - 1}")
    lines = preamble("completion_logprobs peak memory: completion positions only vs a full log_softmax", command,
                     machine(str(r["threads"]), load), setup) + [
        "| vocab | " + " | ".join(f"{label}: MiB added at peak (seconds)" for label in labels)
        + " | after / before | largest per-token difference | one (batch, length, vocab) fp32 tensor, MiB |",
        "|---:|" + "---:|" * (len(labels) + 3),
    ]
    upper_bound = False
    for row in r["results"]:
        m = [row["measured"][label] for label in labels]
        upper_bound |= any(x["peak_set_before_call"] for x in m)
        cells = [f"{x['delta_mib']:.0f}{'*' if x['peak_set_before_call'] else ''} ({x['seconds']:.2f})" for x in m]
        lines.append(f"| {row['vocab']:,} | " + " | ".join(cells)
                     + f" | {m[1]['delta_mib'] / max(m[0]['delta_mib'], 1e-9):.2f} | {row['max_abs_difference']:.1e}"
                     f" | {row['full_logits_mib']:.0f} |")
    lines += [
        "",
        f"before: log_softmax over the logits of all {tokens} positions of every row (two float32 copies); after: "
        "logits only where a completion token is predicted, at most max_logits values per forward, normalised by a "
        "float32 logsumexp in slices. The last column is one float32 tensor of the full logits, for scale. "
        "Largest per-token difference: |after - before| over every completion token, both alignlab rows.",
    ]
    if upper_bound:
        lines.append("*: the call never rose above the child's earlier peak (model building): an upper bound.")
    return "\n".join(lines)


def train_section(r: dict, command: str, load: str) -> str:
    setup = (f"random tiny Llama models, world tokenizer, fp32, CPU, {r['steps']} iterations each; DPO: batch 16 pairs, "
             "max_length 128, pairs from a fixed file (no sampling); PPO: rollout batch 32, mini-batch 16, 48 new "
             "tokens, world gold judge. Memory: peak RSS (ru_maxrss) minus RSS just before the stage, in a fresh "
             "process per row. Seconds: DPO train_runtime / steps; PPO median time/training after the first iteration")
    lines = preamble("DPO and PPO: peak memory and seconds per iteration, with and without gradient checkpointing",
                     command, machine(str(torch.get_num_threads()), load), setup) + [
        "| stage | model | MiB added at peak, plain | with checkpointing | s/iteration, plain | with checkpointing |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for stage in train_memory.STAGES:
        for model in dict.fromkeys(x["model"] for x in r["rows"]):
            plain, ckpt = (next(x for x in r["rows"] if x["stage"] == stage and x["model"] == model
                                and x["checkpointing"] == c) for c in (False, True))
            lines.append(f"| {stage} | {model} | {plain['added_mib']:.0f} | {ckpt['added_mib']:.0f} | "
                         f"{plain['seconds_per_iteration']:.3f} | {ckpt['seconds_per_iteration']:.3f} |")
    return "\n".join(lines)


def update_md(name: str, body: str) -> None:
    """Replace (or append) the section between this benchmark's markers; keep everything else verbatim."""
    block = f"<!-- bench:{name} -->\n{body}\n<!-- /bench:{name} -->"
    text = MD.read_text() if MD.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    MD.write_text(text)
    print(f"{MD}: wrote the {name} section")


def main():
    p = argparse.ArgumentParser(description="Run the benchmarks and update BENCHMARKS.md")
    p.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated: {', '.join(BENCHMARKS)}")
    p.add_argument("--model", default="tiny-1m")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=None, help="alternating repeats (default: 2 pretrain, 3 sampling)")
    p.add_argument("--world-docs", type=int, default=20000)
    p.add_argument("--data-docs", type=int, default=50000, help="IMDb reviews for the data pipeline benchmark")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads: pretrain and sampling (default: all cores), each logprobs child (default: 1)")
    a = p.parse_args()
    chosen = [s.strip() for s in a.only.split(",") if s.strip()]
    if unknown := set(chosen) - set(BENCHMARKS):
        p.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    command = shlex.join([python, *sys.argv])
    default_threads = torch.get_num_threads()  # what the demo subprocess will use

    if "pretrain" in chosen:
        load = load_average()
        r = pretrain_throughput.benchmark(a.model, a.steps, 16, 128, a.repeats or 2, a.world_docs, a.threads)
        print(f"pretrain: ratio alignlab/bare {r['ratio']:.3f} (target >= {PRETRAIN_TARGET_RATIO})")
        update_md("pretrain", pretrain_section(r, command, load))
    if "demo" in chosen:
        load = load_average()
        r = run_demo()
        if r:
            print(f"demo: {r['wall_seconds']:.1f} s (target <= {DEMO_TARGET_SECONDS} s)")
            update_md("demo", demo_section(r, command, f"{default_threads} (torch default in the demo process)", load))
    if "sampling" in chosen:
        load = load_average()
        r = sampling_throughput.benchmark(repeats=a.repeats or 3, threads=a.threads)
        print("sampling: ratio sample/generate " + ", ".join(f"{k} {m['ratio']:.2f}" for k, m in r["models"].items())
              + f" (target >= {SAMPLING_TARGET_RATIO})")
        update_md("sampling", sampling_section(r, command, load))
    if "ppo" in chosen:
        load = load_average()
        r = ppo_step.benchmark()
        print("ppo: " + ", ".join(f"{k} {v:.3f} s" for k, v in r["phases"].items()))
        update_md("ppo", ppo_section(r, command, load))
    if "logprobs" in chosen:
        load = load_average()
        r = logprob_memory.benchmark(threads=a.threads or 1)
        update_md("logprobs", logprobs_section(r, command, load))
    if "train" in chosen:
        load = load_average()
        r = train_memory.benchmark()
        update_md("train", train_section(r, command, load))
    if "data" in chosen:
        if not data_pipeline.IMDB.exists():
            print(f"data: {data_pipeline.IMDB} not found (../shared/data); the data section is left as it was")
        else:
            load = load_average()
            r = data_pipeline.benchmark(a.data_docs)
            print(f"data: whole pipeline {r['whole_seconds']:.0f} s on {r['docs']:,} reviews "
                  f"(target <= {data_pipeline.TARGET_SECONDS} s)")
            update_md("data", data_pipeline.section(r, command, machine(str(torch.get_num_threads()), load)))


if __name__ == "__main__":
    main()
