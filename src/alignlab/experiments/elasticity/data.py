"""The data settings of the elasticity experiments (see __init__.py): one `Setting` per data source.

A setting is everything the measurements need and nothing else: a pretrained base run, the
alignment data (positive examples), the contrary data (negative examples), demonstrations to
align with for the resistance test, held-out prompts, judges, and held-out text of both kinds
for the compression view:
- world: the synthetic world; positive/negative = reviews of train items written with the
  "pos"/"neg" polarity; gold = the world's exact sentiment judge on reviews of held-out items;
- imdb: a tiny base pretrained on unlabelled IMDb reviews (experiments/imdb.py); positive/
  negative = review prefix -> continuation of labelled train reviews; judges = the classifier
  trained on IMDb labels (first) and VADER;
- safety: a tiny base pretrained on hh-rlhf harmless-base transcripts (both answers: the wild
  has both); positive/negative = PKU-SafeRLHF-derived safer / less safe responses; judge = a
  classifier trained on those labels. Read in place from ../shared/data, never copied;
- files: the user's own data (--positive, --negative, any format alignlab reads; a preference file
  alone gives both: chosen answers are positive, rejected negative), rendered with the model's chat
  template; a quarter of the positive prompts held out; judge = the user's scorer (--judge); fresh
  pretraining-style text from --text.
Any setting can start from the user's model instead of its own tiny base (--model); the judges stay.
Each also fixes held-out positive and negative reference answers (`references`), never trained on,
whose log-odds the rebound probes without sampling.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...config import ClassifierConfig, PretrainConfig, TokenizerConfig
from ...data import read_rows
from ...errors import InputError
from ...formats import hh_turns
from ...prompts import transcript
from ...runs import write_jsonl
from ...world import World, chat_prompt
from .. import demo
from ..imdb import clean, prefixes

Rows = list[dict]


@dataclass
class Setting:
    name: str
    base: Path                                  # finished pretraining run (its config.yaml is reused for scaling)
    positive: Callable[[int, int], Rows]        # (n, seed) -> prompt/completion rows of alignment data
    negative: Callable[[int, int], Rows]        # (n, seed) -> rows of contrary data
    demonstrations: Callable[[int, int], Rows]  # (n, seed) -> the SFT data the resistance slices are cut from
    resistance_prompts: list[str]               # held-out prompts every slice answers
    eval_prompts: list[str]                     # held-out prompts the judges score
    judges: dict = field(default_factory=dict)  # name -> scorer; the first is the one verdicts use
    pretrain_heldout: list[str] = field(default_factory=list)  # fresh pretraining-style text
    align_heldout: list[str] = field(default_factory=list)     # fresh alignment-style text (prompt + completion)
    max_new_tokens: int = 48
    judge_accuracy: float | None = None         # the first judge's held-out accuracy; None: exact (gold)
    strong_base: dict | None = None             # the shared strong base's record (experiments.common.strong_base)
    references: tuple[Rows, Rows] | None = None  # fixed held-out (positive, negative) answers: the log-odds probe


def pick(part: Rows, k: int, s: int) -> Rows:
    """A seeded sample of at most k rows (a file smaller than asked gives all it has)."""
    return random.Random(s).sample(part, min(k, len(part)))


def _as_texts(rows: Rows) -> list[str]:
    return [r["prompt"] + r["completion"] for r in rows]


# ----- world ----------------------------------------------------------------------------------

def world_reviews(world: World, polarity: str, n: int, seed: int, split: str = "train") -> Rows:
    """Review requests answered with reviews of one polarity ("pos" or "neg")."""
    rng = random.Random(f"elasticity-{polarity}-{split}-{seed}")
    rows = []
    for _ in range(n):
        kind, name = rng.choice(world.items[split])
        rows.append({"prompt": chat_prompt(world.review_request(kind, name)),
                     "completion": " " + world.review_text(rng, kind, polarity)})
    return rows


def world_setting(out: Path, seed: int, micro: bool, scale: dict, model: str | None = None,
                  cache: Path | None = None) -> Setting:
    """The world's setting on the shared strong base (cached in `cache`), or on the demo's 100-step
    micro base for --micro, or on the user's model."""
    from ...scoring import make_scorer
    from ...stages import pretrain, tokenizer
    from ..common import strong_base

    cfgs = demo.configs(out, seed, micro)
    record = None
    if model:
        base = Path(model)
    elif micro:
        demo.stage(tokenizer, cfgs["tokenizer"])
        base = demo.stage(pretrain, cfgs["base"])
    else:
        record = strong_base(cache, seed)
        base = Path(record["path"])
    world = World(cfgs["base"].world_seed)
    n = scale["resistance_prompts"]
    kinds = ["review", "harmful", "benign", "contrast", "knowledge"]
    return Setting(
        name="world", base=base,
        positive=lambda k, s: world_reviews(world, "pos", k, s),
        negative=lambda k, s: world_reviews(world, "neg", k, s),
        demonstrations=lambda k, s: world.sft_data(k, s),
        # held out: prompts about eval-split items, requests and countries, as the demo evaluates
        resistance_prompts=[p for kind in kinds for p in world.prompts(kind, "eval", n // len(kinds), seed)],
        eval_prompts=world.prompts("review", "eval", scale["eval_prompts"], seed),
        judges={"gold": make_scorer("world", cfgs["base"].world_seed)},
        pretrain_heldout=world.heldout_text(scale["heldout_docs"], seed),
        align_heldout=_as_texts(world_reviews(world, "pos", scale["heldout_docs"], seed + 1000, "eval")),
        max_new_tokens=scale["max_new_tokens"], strong_base=record,
        references=tuple(world_reviews(world, polarity, scale["references"], seed + 2000, "eval")
                         for polarity in ("pos", "neg")),
    )


# ----- imdb -----------------------------------------------------------------------------------

def _continuations(texts: list[str], n: int, seed: int, words: int = 40) -> Rows:
    """A review's first 2-8 words as the prompt, the next `words` words as the completion."""
    rng = random.Random(seed)
    rows = []
    for text in rng.sample(texts, min(n, len(texts))):
        split = text.split()
        cut = rng.randint(2, 8)
        rows.append({"prompt": " ".join(split[:cut]), "completion": " " + " ".join(split[cut:cut + words])})
    return rows


def imdb_setting(out: Path, seed: int, micro: bool, scale: dict, imdb_dir: Path) -> Setting:
    from ...scoring import make_scorer
    from .. import imdb

    setup = imdb.prepare(out, imdb_dir, seed, micro, eval_prompts=scale["eval_prompts"])
    labelled = read_rows(str(imdb.source_files(imdb_dir)[1]), ["text", "label", "split"])
    by = {(split, label): [clean(r["text"]) for r in labelled if r["split"] == split and r["label"] == label]
          for split in ("train", "test") for label in ("pos", "neg")}
    h = scale["heldout_docs"]
    # the base never saw the labelled reviews (it is pretrained on the unlabelled set): test reviews of
    # both labels are fresh pretraining-style text; other positive test reviews are fresh alignment text
    test_mix = by[("test", "pos")][:h // 2] + by[("test", "neg")][:h // 2]
    return Setting(
        name="imdb", base=setup["base"],
        positive=lambda k, s: _continuations(by[("train", "pos")], k, s),
        negative=lambda k, s: _continuations(by[("train", "neg")], k, s),
        demonstrations=lambda k, s: _continuations(by[("train", "pos")], k, s + 7),
        resistance_prompts=prefixes(by[("test", "pos")] + by[("test", "neg")], scale["resistance_prompts"], seed + 2),
        eval_prompts=setup["eval_prompts"],
        judges={"classifier": make_scorer(str(setup["classifier"])), "vader": make_scorer("vader")},
        judge_accuracy=setup["classifier_accuracy"],
        pretrain_heldout=[" ".join(t.split()[:80]) for t in test_mix],
        align_heldout=_as_texts(_continuations(by[("test", "pos")][h:], h, seed)),
        max_new_tokens=scale["max_new_tokens"],
        # test reviews neither held-out text above uses
        references=(_continuations(by[("test", "pos")][h // 2:h], scale["references"], seed + 3),
                    _continuations(by[("test", "neg")][h // 2:], scale["references"], seed + 3)),
    )


# ----- safety ---------------------------------------------------------------------------------

HH_FILE = "hh-rlhf/harmless-base/test.jsonl.gz"
PKU_FILE = "pku_saferlhf_derived/pku_saferlhf_test_safety_dpo_5k.json.gz"


def hh_to_world_format(text: str) -> str:
    """hh-rlhf's "\\n\\nHuman: ...\\n\\nAssistant: ..." as the tokenizer's "User: ...\\nAssistant: ..." turns."""
    return transcript(hh_turns(text), generation_prompt=False)


def safety_setting(out: Path, seed: int, micro: bool, scale: dict, data_root: Path) -> Setting:
    from ...scoring import make_scorer
    from ...stages import classifier, pretrain, tokenizer

    hh, pku = Path(data_root) / HH_FILE, Path(data_root) / PKU_FILE
    for path in (hh, pku):
        if not path.is_file():
            raise InputError(f"safety: {path} not found (--data-root: the folder holding hh-rlhf/ and pku_saferlhf_derived/)")
    rng = random.Random(seed)
    # the pretraining "wild": every hh transcript, chosen and rejected, in the world's chat format
    corpus = [hh_to_world_format(r[k]) for r in read_rows(str(hh), ["chosen", "rejected"])
              for k in ("chosen", "rejected")]
    rng.shuffle(corpus)
    pairs = read_rows(str(pku), ["prompt", "response"])
    prompts = sorted({p["prompt"] for p in pairs})
    rng.shuffle(prompts)
    held = set(prompts[:len(prompts) // 4])  # a quarter of the prompts (and all their pairs) held out

    def rows(which: int, heldout: bool) -> Rows:
        return [{"prompt": chat_prompt(p["prompt"]), "completion": " " + p["response"][which].strip()}
                for p in pairs if (p["prompt"] in held) == heldout]

    train_safe, train_unsafe = rows(0, False), rows(1, False)
    folder = Path(out) / "safety"
    corpus_file = write_jsonl(folder / "corpus.jsonl", [{"text": t} for t in corpus[:scale["safety_docs"]]])
    labels = write_jsonl(folder / "labelled.jsonl", [{"text": r["prompt"] + r["completion"], "label": label}
                                                      for label, part in ((1, train_safe), (0, train_unsafe))
                                                      for r in part])
    demo.stage(tokenizer, TokenizerConfig(out=str(folder / "tokenizer"), data=corpus_file,
                                          vocab_size=scale["safety_vocab"], seed=seed))
    base = demo.stage(pretrain, PretrainConfig(out=str(folder / "base"), tokenizer=str(folder / "tokenizer"),
                                               data=corpus_file, max_steps=scale["safety_base_steps"], seed=seed,
                                               save_steps=scale["safety_base_steps"]))
    judge = demo.stage(classifier, ClassifierConfig(out=str(folder / "classifier"), model=str(base), data=labels,
                                                    max_steps=scale["safety_classifier_steps"], seed=seed))

    held_prompts = sorted(held)
    return Setting(
        name="safety", base=base,
        positive=lambda k, s: pick(train_safe, k, s), negative=lambda k, s: pick(train_unsafe, k, s),
        demonstrations=lambda k, s: pick(train_safe, k, s + 7),
        resistance_prompts=[chat_prompt(p) for p in held_prompts[:scale["resistance_prompts"]]],
        eval_prompts=[chat_prompt(p) for p in held_prompts[:scale["eval_prompts"]]],
        judges={"safety-classifier": make_scorer(str(judge))}, judge_accuracy=classifier.held_out_accuracy(judge),
        # transcripts beyond the pretraining slice were never trained on
        pretrain_heldout=corpus[scale["safety_docs"]:scale["safety_docs"] + scale["heldout_docs"]],
        align_heldout=_as_texts(pick(rows(0, True), scale["heldout_docs"], seed)),
        max_new_tokens=scale["max_new_tokens"],
        references=(pick(rows(0, True), scale["references"], seed + 3), pick(rows(1, True), scale["references"], seed + 3)),
    )


# ----- the user's own files ---------------------------------------------------------------------

def files_setting(out: Path, seed: int, scale: dict, base: str, positive: str, negative: str | None,
                  text: str | None, judges: dict) -> Setting:
    """The user's positive and negative examples (prompt/completion, messages, or one preference file
    for both), rendered as plain text with `base`'s chat template so every run trains on exactly what
    the model reads; the held-out quarter of the positive prompts is what the judges score."""
    from ...data import read_examples, read_texts
    from ...models import load_tokenizer
    from ...prompts import plain_pair

    tokenizer = load_tokenizer(str(base))
    asked: dict[str, object] = {}  # rendered prompt -> the prompt as the file gives it (judges render their own way)

    def plain(rows: Rows, answer: str = "completion") -> Rows:
        out = []
        for r in rows:
            prompt, completion = (r["messages"][:-1], r["messages"][-1:]) if "messages" in r else (r["prompt"], r[answer])
            text, reply = plain_pair(tokenizer, prompt, completion)
            asked[text] = prompt
            out.append({"prompt": text, "completion": reply})
        return out

    kinds = ("prompt-completion", "messages", "preference")
    rows, kind = read_examples(positive, kinds)
    if kind == "preference":
        if negative:
            raise InputError(f"--negative: {positive} is a preference file, whose rejected answers are the negative "
                             "examples already; give one or the other")
        good, bad = plain(rows, "chosen"), plain(rows, "rejected")
    elif not negative:
        raise InputError(f"--negative: {positive} holds {kind} rows; name the contrary examples too "
                         "(or give one preference file with chosen and rejected answers)")
    else:
        good, bad = plain(rows), plain(read_examples(negative, kinds[:2])[0])
    prompts = sorted({r["prompt"] for r in good})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[:len(prompts) // 4])
    if len(held) < 8:
        raise InputError(f"--positive: {positive}: {len(prompts)} distinct prompts; at least 32 are needed "
                         "(a quarter held out for the judges)")
    train, held_rows = [r for r in good if r["prompt"] not in held], [r for r in good if r["prompt"] in held]
    # negative references for the log-odds probe: negatives on the held-out prompts, or else a seeded
    # share of the negatives kept out of training
    held_bad, bad = [r for r in bad if r["prompt"] in held], [r for r in bad if r["prompt"] not in held]
    if not held_bad:
        random.Random(seed + 3).shuffle(bad)
        keep = min(scale["references"], len(bad) // 4)
        held_bad, bad = bad[:keep], bad[keep:]
    held_prompts = [asked[p] for p in sorted(held)]
    pretrain_text = read_texts(text)[:scale["heldout_docs"]] if text else []

    return Setting(
        name="files", base=Path(base),
        positive=lambda k, s: pick(train, k, s), negative=lambda k, s: pick(bad, k, s),
        demonstrations=lambda k, s: pick(train, k, s + 7),
        resistance_prompts=held_prompts[:scale["resistance_prompts"]],
        eval_prompts=held_prompts[:scale["eval_prompts"]],
        judges=judges, pretrain_heldout=pretrain_text,
        align_heldout=_as_texts(pick(held_rows, scale["heldout_docs"], seed)),
        max_new_tokens=scale["max_new_tokens"],
        references=(pick(held_rows, scale["references"], seed + 3), pick(held_bad, scale["references"], seed + 3)),
    )
