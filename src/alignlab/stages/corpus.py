"""`alignlab data`: turn raw sources into a pretraining corpus, one small step at a time.

    read -> language -> quality -> perplexity -> exact dedup -> MinHash near dedup -> decontaminate -> mix -> write

The filters and the MinHash dedup are datatrove's (its Gopher, C4 and FineWeb filters; its four MinHash
stages, run in this process on one rank); language ID is py3langid (its model ships in the wheel, no
download); exact dedup, the perplexity filter, decontamination and mixing are small and written here.
Each step records what it dropped and why (steps/<step>.json), so `--resume` after a crash starts at
the first unfinished step. Documents carrying a planted label (the world's raw internet) get each
step's precision and recall against the labels it is meant to catch.

Outputs in the run folder: corpus/00000.jsonl... (`pretrain --data RUN/corpus` and `tokenizer --data`
read the folder), stats.json (per step: documents and tokens in and out, drops per reason with
examples, duplicate cluster sizes; the mix against the asked ratios), report.html.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import shutil
from collections import Counter
from pathlib import Path

from ..config import CorpusConfig
from ..errors import InputError
from ..runs import Run

STEPS = ["language", "quality", "perplexity", "exact_dedup", "minhash", "decontaminate"]
# what each step is meant to catch, as planted labels (the world's raw internet)
TARGETS = {"language": ("foreign",), "quality": ("junk",), "perplexity": ("junk", "foreign"),
           "exact_dedup": ("exact_dup",), "minhash": ("near_dup",), "decontaminate": ("leak",)}
FILTERS = {"gopher_quality": "GopherQualityFilter", "gopher_repetition": "GopherRepetitionFilter",
           "c4": "C4QualityFilter", "fineweb": "FineWebQualityFilter"}


def words(text: str) -> int:
    """The token count the stats and the mix use: whitespace words (tokenizer-free, so the same for any model)."""
    return len(text.split())


# ----- read ------------------------------------------------------------------------------------

def read_sources(cfg: CorpusConfig) -> list[dict]:
    """Every source's documents as {"id", "source", "text"} (+ "label" for the world's raw internet)."""
    from ..data import read_rows
    from ..world import World
    from ..world.raw import raw_internet

    docs = []
    for i, source in enumerate(cfg.sources):
        if source.path == "world":
            rows = [{"text": t} for t in World(cfg.world_seed).corpus(source.docs, seed=cfg.seed, canary_repeats=[])]
        elif source.path == "world-raw":
            rows = raw_internet(World(cfg.world_seed), source.docs, seed=cfg.seed)
        else:
            try:
                rows = read_rows(source.path, [source.text_field])
            except InputError as e:
                raise InputError(f"sources[{i}] ({source.name}): {e}") from None
        for row in rows[:source.max_docs]:
            doc = {"id": f"{source.name}/{len(docs)}", "source": source.name, "text": str(row[source.text_field])}
            if source.path == "world-raw":  # the planted truth
                doc.update({k: row[k] for k in ("label", "edits") if k in row})
            docs.append(doc)
    return docs


# ----- the steps: each returns {doc id: reason} for the documents it drops -----------------------

def in_workers(function, docs: list[dict], settings: dict, workers: int) -> list:
    """function(chunk, settings) over contiguous chunks of docs in `workers` processes (spawned: no forked
    torch state), results in order; in this process when one worker is asked or the input is small."""
    if workers <= 1 or len(docs) < 200:
        return [function(docs, settings)]
    import multiprocessing

    size = math.ceil(len(docs) / workers)
    chunks = [docs[i:i + size] for i in range(0, len(docs), size)]
    with multiprocessing.get_context("spawn").Pool(len(chunks)) as pool:
        return pool.starmap(function, [(chunk, settings) for chunk in chunks])


def _languages(docs: list[dict], settings: dict) -> dict[str, str]:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identify = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)  # npz in the wheel, no pickle
    keep, floor = set(settings.get("keep", ["en"])), settings.get("min_probability", 0.5)
    dropped = {}
    for doc in docs:
        lang, probability = identify.classify(doc["text"])
        if lang not in keep or probability < floor:
            dropped[doc["id"]] = f"language:{lang}"
    return dropped


def language(docs: list[dict], settings: dict, _: Path, workers: int = 1) -> dict[str, str]:
    return {k: v for part in in_workers(_languages, docs, settings, workers) for k, v in part.items()}


@functools.lru_cache(maxsize=None)
def shared_split(language: str):
    """datatrove's word and sentence split for `language`, done once per text for all the filters.

    Each of datatrove's filters splits the document again (Gopher quality, Gopher repetition and
    FineWeb into words, C4 each line into sentences), and spaCy's tokenizer is about 80% of the quality
    step's time. For a language datatrove splits with spaCy, this returns a tokenizer that parses a text
    once (spaCy's Doc gives both the words and the sentences) and keeps the last few results; the
    filters take it in place of the language code. Other languages keep datatrove's own tokenizer."""
    from collections import OrderedDict

    from datatrove.utils.word_tokenizers import SpaCyTokenizer, WordTokenizer, load_word_tokenizer, strip_strings

    spacy = load_word_tokenizer(language)
    if type(spacy) is not SpaCyTokenizer or language == "ja":  # ja chunks long texts; leave it to datatrove
        return language

    class SharedSplit(WordTokenizer):
        def __init__(self):
            super().__init__(language)
            self.recent: OrderedDict[str, tuple[list[str], list[tuple[int, int]]]] = OrderedDict()

        def _split(self, text: str) -> tuple[list[str], list[tuple[int, int]]]:
            if text not in self.recent:
                nlp = spacy.tokenizer
                with nlp.memory_zone():
                    nlp.max_length = len(text) + 10
                    doc = nlp(text, disable=["parser", "tagger", "ner"])
                    self.recent[text] = (strip_strings([t.text for t in doc]),
                                         [(sent.start_char, sent.end_char) for sent in doc.sents])
                if len(self.recent) > 16:
                    self.recent.popitem(last=False)
            return self.recent[text]

        def word_tokenize(self, text: str) -> list[str]:
            return list(self._split(text)[0])

        def sent_tokenize(self, text: str) -> list[str]:
            return strip_strings([text[a:b] for a, b in self._split(text)[1]])

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return list(self._split(text)[1])

    return SharedSplit()


def quality_filters(settings: dict) -> dict:
    """datatrove's filters by name, built with the config's keyword arguments (and `shared_split`)."""
    from datatrove.pipeline import filters

    built = {}
    for name, kwargs in settings.items():
        if name not in FILTERS:
            raise InputError(f"quality: unknown filter {name!r} (choose from {', '.join(FILTERS)})")
        kwargs = dict(kwargs or {})
        kwargs["language"] = shared_split(kwargs.get("language", "en"))
        try:
            built[name] = getattr(filters, FILTERS[name])(**kwargs)
        except TypeError as e:
            raise InputError(f"quality.{name}: {e}") from None
    return built


def _quality_verdicts(docs: list[dict], settings: dict, every: bool) -> dict[str, dict[str, str]]:
    from datatrove.data import Document

    from ..console import quiet_datatrove

    quiet_datatrove()  # in a spawned worker too
    steps, verdicts = quality_filters(settings), {name: {} for name in settings}
    for doc in docs:  # every filter on one document in turn, so shared_split's parse serves them all
        for name, step in steps.items():
            result = step.filter(Document(text=doc["text"], id=doc["id"]))
            if result is not True and (result is False or not result[0]):
                verdicts[name][doc["id"]] = f"{name}:{result[1] if isinstance(result, tuple) else 'rejected'}"
                if not every:
                    break
    return verdicts


def quality_verdicts(docs: list[dict], settings: dict, workers: int = 1, every: bool = True) -> dict[str, dict]:
    """The datatrove filters on the documents: {filter: {doc id: its reason}} for the ones it rejects. With
    `every`, each filter sees every document (its own precision and recall); without, a document stops at
    the first filter that rejects it, as in a datatrove pipeline."""
    quality_filters(settings)  # a bad filter name or argument fails here, once, not in every worker
    parts = in_workers(functools.partial(_quality_verdicts, every=every), docs, settings, workers)
    return {name: {k: v for part in parts for k, v in part[name].items()} for name in settings}


def quality(docs: list[dict], settings: dict, folder: Path, workers: int = 1) -> dict[str, str]:
    """The union of the filters' rejections, each document credited to the first filter (config order).
    With planted labels, every filter sees every document, and each one's rejections go to
    steps/quality-filters.json (its own precision and recall)."""
    verdicts = quality_verdicts(docs, settings, workers, every=any("label" in d for d in docs))
    (folder / "steps" / "quality-filters.json").write_text(json.dumps(verdicts))
    dropped: dict[str, str] = {}
    for rejected in verdicts.values():
        for doc_id, reason in rejected.items():
            dropped.setdefault(doc_id, reason)
    return dropped


def perplexity(docs: list[dict], settings: dict, folder: Path, seed: int = 0) -> dict[str, str]:
    """CCNet-style: score each document's NLL per token under a small LM trained on good text; drop the
    worst `drop_quantile` (or everything above `max_nll`)."""
    from ..evals import text_nll
    from ..models import load_model, load_tokenizer

    model_path = settings.get("model", "auto")
    if model_path == "auto":
        model_path = str(reference_lm(folder / "reference-lm", settings.get("reference", "world"), seed))
    model, tokenizer = load_model(str(model_path), device="auto"), load_tokenizer(model_path)
    scores = text_nll(model, tokenizer, [d["text"] for d in docs], settings.get("max_tokens", 256))
    if "max_nll" in settings:
        cut = settings["max_nll"]
    else:
        ranked = sorted(scores)
        cut = ranked[min(len(ranked) - 1, math.floor((1 - settings.get("drop_quantile", 0.1)) * len(ranked)))]
    return {d["id"]: f"perplexity:nll>{cut:.3f}" for d, s in zip(docs, scores) if s > cut}


def reference_lm(folder: Path, reference: str, seed: int) -> Path:
    """A tiny LM pretrained on the reference ("good") text: the world's clean documents or a file."""
    from ..config import PretrainConfig, TokenizerConfig
    from ..runs import is_finished
    from . import pretrain, tokenizer

    data = "world" if reference == "world" else reference
    tok = folder / "tokenizer"
    if not is_finished(tok):
        shutil.rmtree(tok, ignore_errors=True)  # a tokenizer has no checkpoints: an unfinished one starts over
        tokenizer.run(TokenizerConfig(out=str(tok), data=data, seed=seed))
    lm = folder / "lm"
    if not is_finished(lm):
        pretrain.run(PretrainConfig(out=str(lm), tokenizer=str(tok), data=data, world_docs=4000, canary_repeats=[],
                                    max_steps=300, block_size=128, batch_size=16, warmup_steps=20, save_steps=300,
                                    seed=seed, resume=lm.exists()))
    return lm


def exact_dedup(docs: list[dict], _: dict, __: Path) -> dict[str, str]:
    """Byte-identical documents: the first copy stays."""
    seen, dropped = set(), {}
    for doc in docs:
        digest = hashlib.sha1(doc["text"].encode()).digest()
        if digest in seen:
            dropped[doc["id"]] = "exact_dup"
        seen.add(digest)
    return dropped


def minhash(docs: list[dict], settings: dict, folder: Path) -> dict[str, str]:
    """datatrove's four MinHash stages (signatures, buckets, clusters, filter) on one rank in this process;
    the first document of each cluster stays. Cluster sizes go to the stats. Shingles are word n-grams of
    datatrove's simplified text (lower case, no punctuation), split on whitespace: the same words its
    spaCy tokenizer finds there, several times faster."""
    from datatrove.data import Document
    from datatrove.pipeline.dedup import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                          MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            raise NotImplementedError

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            raise NotImplementedError

    try:
        config = MinhashConfig(**settings)
    except TypeError as e:
        raise InputError(f"minhash: {e}") from None
    work = folder / "minhash"
    as_docs = lambda: (Document(text=d["text"], id=d["id"]) for d in docs)  # noqa: E731
    MinhashDedupSignature(output_folder=str(work / "signatures"), config=config,
                          language=Whitespace("en")).run(as_docs(), 0, 1)
    for bucket in range(config.num_buckets):  # one task per bucket, as datatrove's executors run them
        MinhashDedupBuckets(input_folder=str(work / "signatures"), output_folder=str(work / "buckets"),
                            config=config).run(None, bucket, config.num_buckets)
    MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=config,
                        save_cluster_size=True).run(None, 0, 1)
    kept = {doc.id for doc in MinhashDedupFilter(input_folder=str(work / "remove")).run(as_docs(), 0, 1)}
    return {d["id"]: "near_dup" for d in docs if d["id"] not in kept}


def decontaminate(docs: list[dict], settings: dict, _: Path, world_seed: int = 0) -> dict[str, str]:
    """Documents sharing a word n-gram (datatrove's text normalisation) with an eval item. With
    action: report they are listed in the stats and kept."""
    from datatrove.utils.text import TextNormConfig, simplify_text

    n = settings.get("n", 13)
    norm = TextNormConfig()
    grams = lambda text: {tuple(w[i:i + n]) for w in [simplify_text(text, norm).split()]  # noqa: E731
                          for i in range(len(w) - n + 1)}
    index: dict[tuple, str] = {}
    for item, name in eval_texts(settings.get("against", ["world"]), world_seed):
        for gram in grams(item):
            index.setdefault(gram, name)
    dropped = {}
    for doc in docs:
        hit = next((index[g] for g in grams(doc["text"]) if g in index), None)
        if hit:
            dropped[doc["id"]] = f"contaminated:{hit}"
    return dropped


def eval_texts(against: list[str], world_seed: int) -> list[tuple[str, str]]:
    """(text, set name) of every eval item: 'world' (its held-out items) or a file's rows (all string fields)."""
    from ..data import read_rows
    from ..world import World
    from ..world.raw import eval_items

    items = []
    for spec in against:
        if spec == "world":
            items += [(t, "world") for t in eval_items(World(world_seed))]
        else:
            try:
                rows = read_rows(spec)
            except InputError as e:
                raise InputError(f"decontaminate.against: {e}") from None
            items += [(" ".join(str(v) for v in row.values() if isinstance(v, str)), Path(spec).name) for row in rows]
    return items


# ----- mix and write -----------------------------------------------------------------------------

def mix(docs: list[dict], cfg: CorpusConfig) -> tuple[list[dict], dict]:
    """Sample documents so that each source's share of the tokens is its ratio, never repeating a source
    more than its max_epochs; the total is total_tokens or the largest the caps allow. Without ratios,
    everything kept goes through once."""
    by_source = {s.name: [d for d in docs if d["source"] == s.name] for s in cfg.sources}
    available = {name: sum(words(d["text"]) for d in rows) for name, rows in by_source.items()}
    if cfg.sources[0].ratio is None:
        return docs, {"ratios": None, "tokens": available}
    empty = [s.name for s in cfg.sources if available[s.name] == 0]
    if empty:
        raise InputError(f"sources: nothing of {empty[0]!r} is left to mix (every document was dropped)")
    feasible = min(available[s.name] * s.max_epochs / s.ratio for s in cfg.sources)
    total = cfg.total_tokens or feasible
    if total > feasible * (1 + 1e-9):
        raise InputError(f"total_tokens: {cfg.total_tokens:,} needs more than the epoch caps allow ({feasible:,.0f})")
    rng, out, report = random.Random(cfg.seed), [], {}
    for source in cfg.sources:
        rows, target = by_source[source.name], source.ratio * total
        taken = 0
        while taken < target:  # whole passes, then a random part of one
            for doc in rng.sample(rows, len(rows)):
                if taken >= target:
                    break
                out.append(doc)
                taken += words(doc["text"])
        # epochs is also each document's expected number of copies: its sampling probability, per pass
        report[source.name] = {"asked": source.ratio, "tokens": taken, "available_tokens": available[source.name],
                               "epochs": taken / available[source.name]}
    grand = sum(r["tokens"] for r in report.values())
    for r in report.values():
        r["got"] = r["tokens"] / grand
    rng.shuffle(out)
    return out, {"ratios": report, "tokens": grand}


def write_shards(run: Run, docs: list[dict], shard_docs: int) -> list[str]:
    (run.path / "corpus").mkdir(exist_ok=True)
    names = [f"corpus/{start // shard_docs:05d}.jsonl" for start in range(0, len(docs), shard_docs)]
    for name, start in zip(names, range(0, len(docs), shard_docs)):
        run.write_jsonl(name, [{"text": d["text"], "source": d["source"]} for d in docs[start:start + shard_docs]])
    return names


# ----- the run ------------------------------------------------------------------------------------

def step_stats(name: str, before: list[dict], dropped: dict[str, str], examples: int) -> dict:
    by_id = {d["id"]: d for d in before}
    reasons = Counter(dropped.values())
    out = {"docs_in": len(before), "docs_out": len(before) - len(dropped),
           "tokens_in": sum(words(d["text"]) for d in before),
           "tokens_out": sum(words(d["text"]) for d in before if d["id"] not in dropped),
           "dropped_by_reason": dict(reasons.most_common()),
           "dropped_examples": {reason: [by_id[i]["text"][:300] for i, r in dropped.items() if r == reason][:examples]
                                for reason in reasons}}
    if any("label" in d for d in before):
        out["planted"] = planted_scores(before, set(dropped), TARGETS[name])
    return out


def planted_scores(docs: list[dict], dropped: set[str], targets: tuple[str, ...]) -> dict:
    """Precision and recall of a step's drops against the planted labels it is meant to catch."""
    truth = {d["id"] for d in docs if d.get("label", "").startswith(targets)}
    hits = len(truth & dropped)
    return {"target": list(targets), "targets_in": len(truth), "dropped": len(dropped), "caught": hits,
            "precision": hits / len(dropped) if dropped else None, "recall": hits / len(truth) if truth else None,
            "dropped_by_label": dict(Counter(d.get("label") for d in docs if d["id"] in dropped))}


def run(cfg: CorpusConfig) -> Path:
    from tqdm import tqdm

    from ..console import quiet_datatrove

    quiet_datatrove()
    run = Run.start(cfg.out, cfg.model_dump(), resume=cfg.resume)
    docs = read_sources(cfg)
    if not docs:
        raise InputError("sources: no documents to read")
    stats: dict = {"read": {"docs": len(docs), "tokens": sum(words(d["text"]) for d in docs),
                            "by_source": dict(Counter(d["source"] for d in docs))}}
    steps = run.path / "steps"
    steps.mkdir(exist_ok=True)
    bar = tqdm(STEPS, desc="data")
    for name in bar:
        settings = getattr(cfg, name)
        if not settings:
            stats[name] = "skipped"
            continue
        bar.set_description(f"data: {name}")
        done = steps / f"{name}.json"
        if done.exists():  # finished before a crash: its drops are on disk
            dropped = json.loads(done.read_text())
        else:
            extra = {"perplexity": {"seed": cfg.seed}, "decontaminate": {"world_seed": cfg.world_seed},
                     "language": {"workers": cfg.workers}, "quality": {"workers": cfg.workers}}.get(name, {})
            dropped = STEP_FUNCTIONS[name](docs, settings if isinstance(settings, dict) else {}, run.path, **extra)
            run.write_json(f"steps/{name}.json", dropped)
        action = settings.get("action", "drop") if isinstance(settings, dict) else "drop"
        stats[name] = step_stats(name, docs, dropped, cfg.dropped_examples) | {"action": action}
        if name == "quality" and any("label" in d for d in docs):
            verdicts = json.loads((steps / "quality-filters.json").read_text())
            stats[name]["per_filter"] = {f: planted_scores(docs, set(v), TARGETS["quality"]) for f, v in verdicts.items()}
        if name == "minhash":
            stats[name]["cluster_sizes"] = cluster_sizes(run.path / "minhash" / "remove")
            near = [d for d in docs if "edits" in d]
            if near:  # recall against how far each planted copy was edited
                stats[name]["recall_by_edits"] = {
                    str(k): sum(d["id"] in dropped for d in near if d["edits"] == k) / sum(d["edits"] == k for d in near)
                    for k in sorted({d["edits"] for d in near})}
        if action == "drop":
            docs = [d for d in docs if d["id"] not in dropped]
        if not docs:
            raise InputError(f"{name}: every document was dropped; loosen its settings or skip it")
    mixed, stats["mix"] = mix(docs, cfg)
    shards = write_shards(run, mixed, cfg.shard_docs)
    stats["written"] = {"docs": len(mixed), "tokens": sum(words(d["text"]) for d in mixed), "shards": shards}
    if any("label" in d for d in mixed):
        stats["written"]["by_label"] = dict(Counter(d.get("label") for d in mixed))
    run.write_json("stats.json", stats)
    write_report(run.path, stats, cfg)
    run.finish(docs_read=stats["read"]["docs"], docs_written=len(mixed), tokens_written=stats["written"]["tokens"])
    return run.path


def cluster_sizes(folder: Path) -> dict[str, int]:
    """How many MinHash clusters have each size (datatrove's .sizes file: (doc index, size) pairs)."""
    import struct

    sizes = Counter()
    for file in folder.glob("*.sizes"):
        data = file.read_bytes()
        for _, size in struct.iter_unpack("<2I", data):
            sizes[size] += 1
    # a cluster of size s is listed once per member
    return {str(size): count // size for size, count in sorted(sizes.items())}


STEP_FUNCTIONS = {"language": language, "quality": quality, "perplexity": perplexity, "exact_dedup": exact_dedup,
                  "minhash": minhash, "decontaminate": decontaminate}


def write_report(folder: Path, stats: dict, cfg: CorpusConfig) -> Path:
    from ..report import Report

    report = Report("Corpus pipeline", f"{stats['read']['docs']:,} documents read from "
                    f"{', '.join(s.name for s in cfg.sources)}; {stats['written']['docs']:,} written "
                    f"({stats['written']['tokens']:,} words)")
    rows = {name: {k: s[k] for k in ("docs_in", "docs_out", "tokens_in", "tokens_out")} | {"action": s["action"]}
            for name, s in stats.items() if isinstance(s, dict) and "docs_in" in s}
    report.heading("Steps").table(rows)
    planted = {name: {k: s["planted"][k] for k in ("targets_in", "dropped", "caught", "precision", "recall")}
               for name, s in stats.items() if isinstance(s, dict) and "planted" in s}
    planted |= {f"quality: {f}": {k: v[k] for k in ("targets_in", "dropped", "caught", "precision", "recall")}
                for f, v in stats.get("quality", {}).get("per_filter", {}).items()} if isinstance(stats.get("quality"), dict) else {}
    if planted:
        report.heading("Against the planted truth").table(planted)
        report.text("targets: language → foreign text; quality and each filter → junk; perplexity → junk or foreign; "
                    "exact dedup → exact copies; MinHash → near copies (k word edits); decontamination → leaked "
                    "eval items. Recall counts the targets that reached the step.")
    if stats["mix"]["ratios"]:
        report.heading("Mix").table(stats["mix"]["ratios"])
    for name, s in stats.items():
        if isinstance(s, dict) and s.get("dropped_examples"):
            report.heading(f"Dropped by {name}")
            for reason, texts in s["dropped_examples"].items():
                report.text(f"{reason} ({s['dropped_by_reason'][reason]}): " + " ¶ ".join(t.replace("\n", " / ") for t in texts))
    return report.write(folder / "report.html")
