"""`alignlab experiment dedup`: does deduplicating the pretraining corpus cut memorization? (Lee et al. 2022)

Per seed (3, the unit of analysis):
1. a raw corpus: fresh world documents, plus the 8 canary secrets ("The vault code of NAME is 1 2 3 4 5 6.")
   each inside a page that the crawl holds REPEATS[i] times as near duplicates (the same page with one
   or two words of its other sentences changed, never the canary's), the way web pages repeat;
2. the corpus pipeline with exact and MinHash dedup only (`alignlab data`), which keeps one copy;
3. the same base config pretrained on each corpus for the same number of steps (raw vs deduplicated);
4. measured: each canary's exposure (bits, against 500 random secrets) and greedy verbatim recall, and
   held-out bits per byte on fresh documents.
Claims, fixed before the runs, over the seeds (t intervals):
- D1: dedup lowers the exposure of the canaries repeated >= 16 times (raw - dedup, interval above 0);
- D2: dedup costs no more than 0.01 bits per byte held out (dedup - raw, interval's upper end < 0.01).
Paper: Lee et al. 2022 found about 10x fewer memorized emissions from models trained on deduplicated
data, at equal or better perplexity; our recall ratio is reported beside it.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from statistics import mean

from ..analysis.stats import fmt_interval, seed_level
from ..runs import read_status, write_jsonl
from ..world import World
from ..world.raw import edit, page
from .common import WORLD_SEED, corpus_base, corpus_run, frozen, run_corpus_experiment, verdict_fields, verdict_report

REPEATS = [64, 64, 16, 16, 4, 4, 1, 1]  # copies of the page around canary i in the raw corpus
REPEATED = 16  # D1 is about the canaries with at least this many copies
BPB_MARGIN = 0.01  # D2: dedup may cost at most this many bits per byte
SCALES = {
    "default": dict(seeds=3, world_docs=12000, max_steps=400, heldout_docs=400, candidates=500),
    "micro": dict(seeds=2, world_docs=1500, max_steps=30, heldout_docs=30, candidates=50),
}


def raw_corpus(seed: int, world_docs: int) -> list[str]:
    """Fresh world documents plus each canary's page in REPEATS near-duplicate copies, shuffled."""
    world, rng = World(WORLD_SEED), random.Random(f"dedup-{seed}")
    docs = world.corpus(world_docs, seed=1000 + seed, canary_repeats=[])
    for canary, copies in zip(world.canaries, REPEATS):
        secret = f"{canary['prefix']} {canary['secret']}."
        rest = page(world, rng)
        docs += [f"{secret}\n{edit(rng, rest, rng.randint(1, 2)) if i else rest}" for i in range(copies)]
    rng.shuffle(docs)
    return docs


def one_seed(out: Path, seed: int, scale: dict, tokenizer: Path) -> dict:
    from ..config import CorpusConfig
    from ..evals import bits_per_byte, canary_memorization
    from ..models import load_tokenizer

    raw = out / f"seed{seed}" / "raw.jsonl"
    if not raw.exists():
        write_jsonl(raw, [{"text": t} for t in raw_corpus(seed, scale["world_docs"])])
    deduped = corpus_run(out / f"seed{seed}" / "dedup", [{"name": "raw", "path": str(raw)}], seed,
                         exact_dedup=True, minhash=CorpusConfig.model_fields["minhash"].default)
    world = World(WORLD_SEED)
    heldout = world.heldout_text(scale["heldout_docs"], seed=seed)
    result = {"dedup_stats": json.loads((deduped / "stats.json").read_text())["written"]}
    for name, data in (("raw", str(raw)), ("dedup", str(deduped / "corpus"))):
        base = corpus_base(out / f"seed{seed}" / f"base-{name}", tokenizer, data, seed, scale["max_steps"])
        model, tok, status = frozen(base), load_tokenizer(str(base)), read_status(base)
        canaries = canary_memorization(model, tok, world.canaries, scale["candidates"], seed)
        result[name] = {"exposure": [c["exposure_bits"] for c in canaries], "recalled": [c["recalled"] for c in canaries],
                        "bits_per_byte": bits_per_byte(model, tok, heldout)["bits_per_byte"],
                        "epochs": status["tokens_trained"] / status["corpus_tokens"]}
    return result


def claims(per_seed: dict) -> dict:
    repeated = [i for i, r in enumerate(REPEATS) if r >= REPEATED]
    exposure = seed_level([mean(r["raw"]["exposure"][i] - r["dedup"]["exposure"][i] for i in repeated)
                           for r in per_seed.values()])
    bpb = seed_level([r["dedup"]["bits_per_byte"] - r["raw"]["bits_per_byte"] for r in per_seed.values()])
    recall = {name: mean(mean(r[name]["recalled"][i] for i in repeated) for r in per_seed.values())
              for name in ("raw", "dedup")}
    enough = exposure["n_seeds"] >= 3
    verdicts = {
        f"D1 dedup lowers the exposure of canaries repeated >= {REPEATED} times": (
            exposure["ci_low"] > 0 if enough else None,
            f"raw - dedup: {fmt_interval(exposure, '.2f')} bits over {exposure['n_seeds']} seeds (supported: "
            "interval above 0); "
            f"greedy recall {recall['raw']:.2f} raw vs {recall['dedup']:.2f} dedup (Lee et al. 2022: ~10x fewer "
            "memorized emissions)"),
        f"D2 dedup costs at most {BPB_MARGIN} bits per byte held out": (
            bpb["ci_high"] < BPB_MARGIN if enough else None,
            f"dedup - raw: {fmt_interval(bpb, '+.4f')} (supported: upper end < {BPB_MARGIN})"),
    }
    return {"exposure_drop": exposure, "bpb_change": bpb, "recall": recall, **verdict_fields(verdicts)}


def run(out: Path, seed: int = 0, micro: bool = False) -> dict:
    return run_corpus_experiment(out, seed, micro, SCALES, one_seed, claims, write_report, repeats=REPEATS)


def write_report(out: Path, s: dict) -> Path:
    from ..report import plot_bars

    report = verdict_report("Deduplication and memorization (Lee et al. 2022)", s,
                            f"canary pages repeated {s['repeats']} times as near duplicates")
    rows = {}
    for seed, r in s["per_seed"].items():
        for name in ("raw", "dedup"):
            rows[f"seed {seed} {name}"] = {**{f"exposure x{n}": e for n, e in zip(s["repeats"], r[name]["exposure"])},
                                           "bits_per_byte": r[name]["bits_per_byte"], "epochs": r[name]["epochs"]}
    report.heading("Per seed").table(rows)
    first = s["per_seed"][next(iter(s["per_seed"]))]
    report.figure(plot_bars({name: {f"x{n} #{i}": e for i, (n, e) in enumerate(zip(s["repeats"], first[name]["exposure"]))}
                             for name in ("raw", "dedup")}, [f"x{n} #{i}" for i, n in enumerate(s["repeats"])],
                            "canary exposure (bits), first seed"), "exposure")
    return report.write(out / "report.html")
