"""`alignlab experiment mixing`: what the pretraining mix buys each domain, and what it costs the others.

The world's three domains (KINDS: reviews, encyclopedia entries, dialogues) are three sources of one
`alignlab data` recipe, mixed by word ratio (the pipeline's mixing step, at a fixed total) into
MIXTURES: balanced thirds, and each domain at 60% with the others at 20%. The same base config is
pretrained on each mix for the same number of steps, and measured by held-out bits per byte on fresh
documents of each domain. Per seed (3, the unit of analysis), all four mixes. Claims, fixed before the
runs (t intervals over seeds, every domain must pass):
- X1 a domain gains from its own share: its bits per byte under its 60% mix minus under the balanced
  mix, interval below 0;
- X2 the gain is paid by the others: the mean bits per byte of the two other domains under a domain's
  60% mix minus under the balanced mix, interval above 0.
Descriptive (no verdict): each mix's mean bits per byte over the domains, and each domain's bits per
byte against its share (the plot). Published anchors: data-mixing laws (Ye et al. 2024) fit a
domain's loss as falling with its own share and rising as the others grow; DoReMi (Xie et al. 2023)
reweights domains because the balance moves every domain's perplexity.
"""
from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from statistics import mean

from ..analysis.stats import fmt, fmt_interval, seed_level
from ..runs import write_jsonl
from ..world import KINDS, World
from .common import WORLD_SEED, corpus_base, corpus_run, frozen, run_corpus_experiment, verdict_fields, verdict_report

HEAVY, LIGHT = 0.6, 0.2
MIXTURES = {"balanced": {k: 1 / 3 for k in KINDS},
            **{f"{kind}-heavy": {k: HEAVY if k == kind else LIGHT for k in KINDS} for kind in KINDS}}
SCALES = {
    # mix_words: every mix's size in words (~1 pass in max_steps), within every source's one epoch
    "default": dict(seeds=3, mix_words=480_000, max_steps=300, heldout_docs=200),
    "micro": dict(seeds=2, mix_words=12_000, max_steps=10, heldout_docs=20),
}


def sources(folder: Path, seed: int, words_each: int) -> dict[str, str]:
    """One JSONL of fresh training documents per domain, `words_each` words or a little more."""
    world, paths = World(WORLD_SEED), {}
    for kind in KINDS:
        path = folder / f"{kind}.jsonl"
        if not path.exists():
            rng, docs, words = random.Random(f"mixing-{seed}-{kind}"), [], 0
            while words < words_each:
                docs.append(world.document(rng, kind))
                words += len(docs[-1].split())
            write_jsonl(path, [{"text": t} for t in docs])
        paths[kind] = str(path)
    return paths


def one_seed(out: Path, seed: int, scale: dict, tokenizer: Path) -> dict:
    from ..evals import bits_per_byte
    from ..models import load_tokenizer

    folder = out / f"seed{seed}"
    # the heaviest share of the mix, plus 5% to spare: no source is ever repeated
    files = sources(folder / "sources", seed, round(1.05 * HEAVY * scale["mix_words"]))
    world = World(WORLD_SEED)
    heldout = {kind: world.heldout_text(scale["heldout_docs"], seed=seed, kind=kind) for kind in KINDS}
    result = {}
    for mix, ratios in MIXTURES.items():
        mixed = corpus_run(folder / f"mix-{mix}",
                           [{"name": kind, "path": files[kind], "ratio": ratios[kind]} for kind in KINDS], seed,
                           total_tokens=scale["mix_words"])
        got = json.loads((mixed / "stats.json").read_text())["mix"]["ratios"]
        base = corpus_base(folder / f"base-{mix}", tokenizer, str(mixed / "corpus"), seed, scale["max_steps"])
        model, tok = frozen(base), load_tokenizer(str(base))
        result[mix] = {"share": {kind: got[kind]["got"] for kind in KINDS},
                       "bits_per_byte": {kind: bits_per_byte(model, tok, heldout[kind])["bits_per_byte"] for kind in KINDS}}
    return result


def claims(per_seed: dict) -> dict:
    runs = list(per_seed.values())
    own, others = {}, {}
    for kind in KINDS:
        heavy, rest = f"{kind}-heavy", [k for k in KINDS if k != kind]
        own[kind] = seed_level([r[heavy]["bits_per_byte"][kind] - r["balanced"]["bits_per_byte"][kind] for r in runs])
        others[kind] = seed_level([mean(r[heavy]["bits_per_byte"][k] - r["balanced"]["bits_per_byte"][k] for k in rest)
                                   for r in runs])
    average = {mix: seed_level([mean(r[mix]["bits_per_byte"].values()) for r in runs]) for mix in MIXTURES}
    enough = len(runs) >= 3
    interval = functools.partial(fmt_interval, spec="+.4f")
    verdicts = {
        f"X1 every domain gains from its own share ({HEAVY:.0%} vs a third)": (
            all(s["ci_high"] < 0 for s in own.values()) if enough else None,
            "own bits per byte, heavy minus balanced: " + "; ".join(f"{k} {interval(s)}" for k, s in own.items())
            + " (supported: every interval below 0)"),
        "X2 the gain is paid by the other domains": (
            all(s["ci_low"] > 0 for s in others.values()) if enough else None,
            "the other domains' bits per byte, heavy minus balanced: "
            + "; ".join(f"{k}-heavy {interval(s)}" for k, s in others.items()) + " (supported: every interval above 0)"),
    }
    return {"own_gain": own, "others_cost": others, "average_bpb": average, **verdict_fields(verdicts)}


def run(out: Path, seed: int = 0, micro: bool = False) -> dict:
    return run_corpus_experiment(out, seed, micro, SCALES, one_seed, claims, write_report, mixtures=MIXTURES)


def write_report(out: Path, s: dict) -> Path:
    from ..report import plot_curves

    report = verdict_report("Pretraining mixtures and per-domain bits per byte", s, f"mixes {', '.join(s['mixtures'])}")
    rows = {mix: {**{f"share {k}": mean(r[mix]["share"][k] for r in s["per_seed"].values()) for k in KINDS},
                  **{f"bpb {k}": mean(r[mix]["bits_per_byte"][k] for r in s["per_seed"].values()) for k in KINDS},
                  "mean bpb": a["mean"], "mean bpb ci": f"[{fmt(a['ci_low'], '.4f')}, {fmt(a['ci_high'], '.4f')}]"}
            for mix, a in s["average_bpb"].items()}
    report.heading("Mixes (means over seeds)").table(rows, digits=4)
    curves = {}
    for kind in KINDS:  # each domain's bits per byte against its own share, mean over seeds
        points = sorted({round(ratios[kind], 3) for ratios in s["mixtures"].values()})
        ys = [mean(r[mix]["bits_per_byte"][kind] for r in s["per_seed"].values()
                   for mix, ratios in s["mixtures"].items() if round(ratios[kind], 3) == x) for x in points]
        curves[kind] = (points, ys)
    report.figure(plot_curves(curves, "held-out bits per byte by the domain's share of the mix", "share of the mix",
                              "bits per byte"), "tradeoff")
    return report.write(out / "report.html")
