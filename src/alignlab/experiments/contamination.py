"""`alignlab experiment contamination`: test items on the web inflate the benchmark, and n-gram
decontamination takes the inflation away.

The benchmark is the world's 24 held-out knowledge probes (multiple choice: which capital, language,
animal, colour; the eval countries appear in encyclopedia text only, never in question-answer form).
Per seed (4, the unit of analysis):
1. the probes are dealt into three groups of 8 by the seed: never leaked, leaked LEAKS["low"] times
   and leaked LEAKS["high"] times, each copy the question with its true answer pasted into an ordinary
   page at a random line (how test sets reach a crawl);
2. the raw corpus (fresh world documents plus those pages) goes through the corpus pipeline with
   decontamination only (`alignlab data`: word 12-grams against the world's eval items, action drop);
3. the same base config is pretrained on the raw and on the decontaminated corpus for the same steps;
4. measured per group: accuracy and the log-probability of the true answer among the candidates.
Inflation = the group's score minus the never-leaked group's, within one model (the groups share the
model, so what the model learnt in general cancels). Claims, fixed before the runs (t intervals over
seeds):
- K1 contamination inflates: in the raw model, inflation of the items leaked LEAKS["high"] times, interval above 0;
- K2 decontamination removes it: raw inflation minus decontaminated inflation, interval above 0;
- K3 nothing is left: the decontaminated model's inflation, interval's upper end below RESIDUAL.
Published anchors: GPT-3 (Brown et al. 2020, appendix C) flagged test items by 13-gram overlap and
found small effects on most benchmarks; Magar & Schwartz 2022 showed models can exploit leaked test
items (memorization) once they have seen them; the scale here decides which of the two we see.
"""
from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from statistics import mean

from ..analysis.stats import fmt_interval, seed_level
from ..runs import write_jsonl
from ..world import World
from ..world.raw import leak_page, leaks
from .common import WORLD_SEED, corpus_base, corpus_run, frozen, run_corpus_experiment, verdict_fields, verdict_report

LEAKS = {"clean": 0, "low": 2, "high": 16}  # copies of each of the group's items in the raw corpus
DECONTAMINATE = {"n": 12, "against": ["world"], "action": "drop"}  # as recipes/data/world.yaml
RESIDUAL = 0.1  # K3: the decontaminated model may keep at most this much accuracy inflation
SCALES = {
    "default": dict(seeds=4, world_docs=12000, max_steps=400, heldout_docs=300),
    "micro": dict(seeds=2, world_docs=600, max_steps=10, heldout_docs=20),
}


def groups(seed: int) -> dict[str, list[int]]:
    """The probes' indices dealt into the groups of LEAKS, 8 each, by the seed."""
    order = list(range(len(World(WORLD_SEED).knowledge_probes("eval"))))
    random.Random(f"contamination-{seed}").shuffle(order)
    size = len(order) // len(LEAKS)
    return {name: sorted(order[i * size:(i + 1) * size]) for i, name in enumerate(LEAKS)}


def raw_corpus(seed: int, world_docs: int) -> list[dict]:
    """Fresh world documents plus every leaked item's pages, shuffled: [{"text", "label": clean | leak}]."""
    world, rng = World(WORLD_SEED), random.Random(f"contamination-corpus-{seed}")
    docs = [{"text": t, "label": "clean"} for t in world.corpus(world_docs, seed=2000 + seed, canary_repeats=[])]
    items = leaks(world)
    for name, indices in groups(seed).items():
        docs += [{"text": leak_page(world, rng, items[i]), "label": "leak"} for i in indices for _ in range(LEAKS[name])]
    rng.shuffle(docs)
    return docs


def one_seed(out: Path, seed: int, scale: dict, tokenizer: Path) -> dict:
    from ..evals import bits_per_byte, multiple_choice
    from ..models import load_tokenizer
    from ..runs import read_jsonl
    from ..stages import corpus

    folder = out / f"seed{seed}"
    raw = folder / "raw.jsonl"
    if not raw.exists():
        write_jsonl(raw, raw_corpus(seed, scale["world_docs"]))
    clean = corpus_run(folder / "decontaminated", [{"name": "raw", "path": str(raw)}], seed,
                       decontaminate=DECONTAMINATE)
    world = World(WORLD_SEED)
    probes, heldout = world.knowledge_probes("eval"), world.heldout_text(scale["heldout_docs"], seed=seed)
    dealt = groups(seed)
    # the pipeline reads the file in order, so document i is "raw/i"; its label is the planted truth
    labelled = [{"id": f"raw/{i}", "label": row["label"]} for i, row in enumerate(read_jsonl(raw))]
    dropped = set(json.loads((clean / "steps" / "decontaminate.json").read_text()))
    result: dict = {"groups": dealt, "decontamination": corpus.planted_scores(labelled, dropped, ("leak",))}
    for name, data in (("raw", str(raw)), ("decontaminated", str(clean / "corpus"))):
        base = corpus_base(folder / f"base-{name}", tokenizer, data, seed, scale["max_steps"])
        model, tok = frozen(base), load_tokenizer(str(base))
        scored = multiple_choice(model, tok, probes)
        result[name] = {
            "accuracy": {g: mean(scored[i]["correct"] for i in indices) for g, indices in dealt.items()},
            "true_logprob": {g: mean(scored[i]["true_logprob"] for i in indices) for g, indices in dealt.items()},
            "benchmark_accuracy": mean(r["correct"] for r in scored),
            "bits_per_byte": bits_per_byte(model, tok, heldout)["bits_per_byte"]}
    return result


def inflation(r: dict, model: str, metric: str = "accuracy", group: str = "high") -> float:
    return r[model][metric][group] - r[model][metric]["clean"]


def claims(per_seed: dict) -> dict:
    runs = list(per_seed.values())
    raw = seed_level([inflation(r, "raw") for r in runs])
    removed = seed_level([inflation(r, "raw") - inflation(r, "decontaminated") for r in runs])
    left = seed_level([inflation(r, "decontaminated") for r in runs])
    described = {f"{model} {metric} {group}": seed_level([inflation(r, model, metric, group) for r in runs])
                 for model in ("raw", "decontaminated") for metric in ("accuracy", "true_logprob") for group in ("low", "high")}
    benchmark = {model: seed_level([r[model]["benchmark_accuracy"] for r in runs]) for model in ("raw", "decontaminated")}
    enough = raw["n_seeds"] >= 3
    interval = functools.partial(fmt_interval, spec="+.2f")
    verdicts = {
        f"K1 leaking a test item {LEAKS['high']} times inflates its accuracy": (
            raw["ci_low"] > 0 if enough else None,
            f"raw model, leaked minus never-leaked items: {interval(raw)} over {raw['n_seeds']} seeds "
            f"(supported: interval above 0); log-prob of the true answer {interval(described['raw true_logprob high'])}"),
        "K2 decontamination removes the inflation": (
            removed["ci_low"] > 0 if enough else None,
            f"raw inflation minus decontaminated inflation: {interval(removed)} (supported: interval above 0)"),
        f"K3 no inflation is left after decontamination (< {RESIDUAL})": (
            left["ci_high"] < RESIDUAL if enough else None,
            f"decontaminated model, leaked minus never-leaked: {interval(left)} (supported: upper end < {RESIDUAL})"),
    }
    return {"inflation_raw": raw, "inflation_removed": removed, "inflation_left": left, "described": described,
            "benchmark_accuracy": benchmark, **verdict_fields(verdicts)}


def run(out: Path, seed: int = 0, micro: bool = False) -> dict:
    return run_corpus_experiment(out, seed, micro, SCALES, one_seed, claims, write_report, leaks=LEAKS,
                                 decontaminate=DECONTAMINATE)


def write_report(out: Path, s: dict) -> Path:
    from ..report import plot_bars

    report = verdict_report("Contamination and decontamination", s,
                            f"8 held-out knowledge probes per group leaked {s['leaks']} times; decontamination: "
                            f"word {s['decontaminate']['n']}-grams, drop")
    rows = {}
    for seed, r in s["per_seed"].items():
        for model in ("raw", "decontaminated"):
            rows[f"seed {seed} {model}"] = {**{f"accuracy {g}": v for g, v in r[model]["accuracy"].items()},
                                            **{f"log p(true) {g}": v for g, v in r[model]["true_logprob"].items()},
                                            "benchmark accuracy": r[model]["benchmark_accuracy"],
                                            "bits_per_byte": r[model]["bits_per_byte"]}
    report.heading("Per seed").table(rows)
    report.heading("Decontamination against the planted leaks").table(
        {f"seed {seed}": {k: r["decontamination"][k] for k in ("targets_in", "dropped", "caught", "precision", "recall")}
         for seed, r in s["per_seed"].items()})
    groups_ = list(s["leaks"])
    report.figure(plot_bars({model: {g: mean(r[model]["accuracy"][g] for r in s["per_seed"].values()) for g in groups_}
                             for model in ("raw", "decontaminated")}, groups_,
                            "accuracy by times leaked (mean over seeds)"), "accuracy")
    return report.write(out / "report.html")
