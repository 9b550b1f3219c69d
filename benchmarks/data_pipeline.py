"""The corpus pipeline (`alignlab data`) on IMDb's 50k unlabelled reviews: seconds, documents/s and MB/s of
each step and of the whole run, and its MinHash dedup against datasketch's MinHashLSH on the same documents.

The whole pipeline is the stage's own `run` (read, language ID, the four quality filters, exact dedup,
MinHash, no decontamination or perplexity: IMDb has no eval set of ours, and the perplexity filter's LM is
the user's choice), timed from the outside; each step's seconds come from timing the step functions the run
calls. datasketch gets the same documents (those reaching the MinHash step), the same shingles (word
5-grams of datatrove's simplified text, split on whitespace, as the stage does) and the same number of permutations (14 bands x 8 rows = 112) with the threshold
those bands imply, (1/14)^(1/8) = 0.72; both keep the first document of each group. Agreement: Jaccard of
the two sets of removed documents.

    python benchmarks/data_pipeline.py [--docs 50000]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # benchmark the working tree

ROOT = Path(__file__).resolve().parents[1]
IMDB = ROOT.parent / "shared" / "data" / "imdb" / "aclImdb_unsup.jsonl.gz"
TARGET_SECONDS = 180


def datasketch_dedup(docs: list[dict], bands: int, rows: int, n_grams: int) -> tuple[set[str], float]:
    from datasketch import MinHash, MinHashLSH
    from datatrove.utils.text import TextNormConfig, ngrams, simplify_text

    norm = TextNormConfig()
    start = time.perf_counter()
    lsh, removed = MinHashLSH(num_perm=bands * rows, params=(bands, rows)), set()
    for doc in docs:
        signature = MinHash(num_perm=bands * rows, seed=1)
        signature.update_batch([" ".join(g).encode() for g in
                                ngrams(simplify_text(doc["text"], norm).split(), n_grams)])
        if lsh.query(signature):  # a candidate among the kept ones: a duplicate, removed
            removed.add(doc["id"])
        else:
            lsh.insert(doc["id"], signature)
    return removed, time.perf_counter() - start


def benchmark(n_docs: int) -> dict:
    from alignlab.config import CorpusConfig
    from alignlab.stages import corpus

    timings: dict[str, float] = {}
    reached: dict[str, list] = {}
    for name in corpus.STEPS:  # time each step function as the run calls it
        def timed(*args, _f=corpus.STEP_FUNCTIONS[name], _n=name, **kwargs):
            start = time.perf_counter()
            reached[_n] = list(args[0])
            out = _f(*args, **kwargs)
            timings[_n] = time.perf_counter() - start
            return out
        corpus.STEP_FUNCTIONS[name] = timed
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CorpusConfig(out=f"{tmp}/run", sources=[{"name": "imdb", "path": str(IMDB), "max_docs": n_docs}],
                           decontaminate=None)
        start = time.perf_counter()
        corpus.run(cfg)
        whole = time.perf_counter() - start
        stats = json.loads(Path(f"{tmp}/run/stats.json").read_text())
        removed = set(json.loads(Path(f"{tmp}/run/steps/minhash.json").read_text()))
    mb = {name: sum(len(d["text"].encode()) for d in docs) / 1e6 for name, docs in reached.items()}
    steps = {name: {"seconds": timings[name], "docs": len(reached[name]), "docs_per_s": len(reached[name]) / timings[name],
                    "mb_per_s": mb[name] / timings[name]} for name in reached}
    theirs, their_seconds = datasketch_dedup(reached["minhash"], 14, 8, 5)
    union = removed | theirs
    return {"docs": n_docs, "mb": mb["language"], "whole_seconds": whole, "steps": steps, "stats": stats,
            "minhash": {"ours_removed": len(removed), "ours_seconds": timings["minhash"],
                        "datasketch_removed": len(theirs), "datasketch_seconds": their_seconds,
                        "agreement": len(removed & theirs) / len(union) if union else 1.0}}


def section(r: dict, command: str, machine: str) -> str:
    lines = ["## Corpus pipeline (`alignlab data`) on IMDb's unlabelled reviews", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", f"- command: `{command}`",
             f"- machine: {machine}",
             f"- setup: {r['docs']:,} reviews ({r['mb']:.1f} MB of text); steps: language ID (py3langid), datatrove's "
             "Gopher quality, Gopher repetition, C4 (no terminal-punctuation rule) and FineWeb filters at their "
             "defaults, exact dedup, datatrove MinHash (5-grams, 14 buckets x 8 hashes); no perplexity filter or "
             "decontamination", "",
             "| step | documents in | seconds | documents/s | MB/s |", "|---|---:|---:|---:|---:|"]
    for name, s in r["steps"].items():
        lines.append(f"| {name} | {s['docs']:,} | {s['seconds']:.1f} | {s['docs_per_s']:,.0f} | {s['mb_per_s']:.2f} |")
    lines.append(f"| **whole run** (read to written shards) | {r['docs']:,} | {r['whole_seconds']:.1f} | "
                 f"{r['docs'] / r['whole_seconds']:,.0f} | {r['mb'] / r['whole_seconds']:.2f} |")
    m = r["minhash"]
    lines += ["", f"Target: the whole pipeline on 50k reviews in <= {TARGET_SECONDS} s: "
              f"**{'met' if r['whole_seconds'] <= TARGET_SECONDS and r['docs'] >= 50_000 else 'not met'}** "
              f"({r['whole_seconds']:.0f} s).", "",
              "| near dedup (same documents, same shingles, 112 permutations) | removed | seconds |",
              "|---|---:|---:|",
              f"| datatrove MinHash, 4 stages (alignlab) | {m['ours_removed']:,} | {m['ours_seconds']:.1f} |",
              f"| datasketch MinHashLSH (same-run baseline) | {m['datasketch_removed']:,} | {m['datasketch_seconds']:.1f} |",
              f"| **ratio datatrove / datasketch seconds** | | **{m['ours_seconds'] / m['datasketch_seconds']:.2f}** |",
              "", f"Agreement of the removed sets (Jaccard): {m['agreement']:.3f}. Exact duplicates removed before: "
              f"{r['stats']['exact_dedup']['docs_in'] - r['stats']['exact_dedup']['docs_out']:,}; written: "
              f"{r['stats']['written']['docs']:,} of {r['docs']:,}."]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=50_000)
    a = p.parse_args()
    print(section(benchmark(a.docs), "python benchmarks/data_pipeline.py", "(see run_all.py for the machine line)"))


if __name__ == "__main__":
    main()
