"""IMDb (Maas et al. 2011) for the experiments, the DPO paper's controlled-sentiment setting:
- a tiny base model pretrained on the unlabelled reviews (it plays the DPO paper's SFT model:
  a language model of movie reviews);
- a sentiment classifier trained on the labelled train split (the DPO paper's reward), beside
  the VADER lexicon as a second, independent judge;
- prompts that are review prefixes of 2-8 words: from unlabelled reviews for training, from
  the test split for evaluation.

The data are read in place from the folder holding `aclImdb_unsup.jsonl.gz` and
`aclImdb_labeled.jsonl.gz` (../shared/data/imdb on the developers' machines); the derived
files written into the experiment folder are subsets with the HTML line breaks removed.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

from ..config import ClassifierConfig, PretrainConfig, TokenizerConfig
from ..data import read_rows
from ..errors import InputError
from ..runs import write_jsonl
from . import demo

UNSUP, LABELLED = "aclImdb_unsup.jsonl.gz", "aclImdb_labeled.jsonl.gz"
SCALES = {
    "default": dict(docs=6000, vocab_size=2048, base_steps=1000, labelled=6000, classifier_steps=300),
    "micro": dict(docs=400, vocab_size=400, base_steps=40, labelled=300, classifier_steps=10),
}


def clean(text: str) -> str:
    """Reviews carry HTML line breaks ("<br /><br />"); a language model need not learn them."""
    return re.sub(r"\s+", " ", re.sub(r"<br\s*/?>", " ", text)).strip()


def default_dir() -> Path:
    from ..evals.benchmarks import shared_data_dir

    return shared_data_dir() / "imdb"


def source_files(imdb_dir: Path) -> tuple[Path, Path]:
    files = Path(imdb_dir) / UNSUP, Path(imdb_dir) / LABELLED
    for path in files:
        if not path.is_file():
            raise InputError(f"imdb: {path} not found (the IMDb folder must hold {UNSUP} and {LABELLED})")
    return files


def prefixes(texts: list[str], n: int, seed: int, shortest: int = 2, longest: int = 8) -> list[str]:
    """The first 2-8 words of `n` reviews: the prompts the policy continues."""
    rng = random.Random(seed)
    chosen = rng.sample(texts, min(n, len(texts)))
    return [" ".join(t.split()[:rng.randint(shortest, longest)]) for t in chosen]


def prepare(out: Path, imdb_dir: Path, seed: int, micro: bool = False, model: str = "tiny-1m",
            n_prompts: int = 512, eval_prompts: int = 48) -> dict:
    """Tokenizer, base and classifier runs (reused when finished) and the prompt sets."""
    from ..stages import classifier, pretrain, tokenizer

    scale = SCALES["micro" if micro else "default"]
    unsup_file, labelled_file = source_files(imdb_dir)
    rng = random.Random(seed)
    unsup = [clean(r["text"]) for r in read_rows(str(unsup_file), ["text"])]
    rng.shuffle(unsup)
    labelled = read_rows(str(labelled_file), ["text", "label", "split"])
    train = [{"text": clean(r["text"]), "label": r["label"]} for r in labelled if r["split"] == "train"]
    test = [clean(r["text"]) for r in labelled if r["split"] == "test"]
    rng.shuffle(train)

    folder = Path(out) / "imdb"
    corpus = write_jsonl(folder / "unsup.jsonl", [{"text": t} for t in unsup[:scale["docs"]]])
    labels = write_jsonl(folder / "labelled-train.jsonl", train[:scale["labelled"]])
    demo.stage(tokenizer, TokenizerConfig(out=str(folder / "tokenizer"), data=corpus, vocab_size=scale["vocab_size"],
                                          seed=seed))
    base = demo.stage(pretrain, PretrainConfig(out=str(folder / "base"), model=model, tokenizer=str(folder / "tokenizer"),
                                               data=corpus, max_steps=scale["base_steps"], seed=seed,
                                               save_steps=scale["base_steps"]))
    judge = demo.stage(classifier, ClassifierConfig(out=str(folder / "classifier"), model=str(base), data=labels,
                                                    max_steps=scale["classifier_steps"], max_length=96, seed=seed))
    # training prompts come from reviews the base was not pretrained on
    train_prompts = [{"prompt": p} for p in prefixes(unsup[scale["docs"]:], n_prompts, seed)]
    return {"base": base, "classifier": judge, "prompts_file": write_jsonl(folder / "prompts-train.jsonl", train_prompts),
            "eval_prompts": prefixes(test, eval_prompts, seed + 1),
            "classifier_accuracy": classifier.held_out_accuracy(judge)}
