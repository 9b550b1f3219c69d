"""`alignlab classifier`: a text classifier (two labels) to use as a judge or reward.

A causal LM (usually the base model, so it shares the policy's tokenizer) gets a two-logit
sequence-classification head and learns the labels of a labelled corpus, e.g. IMDb's
positive/negative reviews. As a scorer (`scoring.RewardModelScorer` on its folder) it returns
the log-odds of the positive label, logit[pos] - logit[neg]: the DPO paper's IMDb reward.

Texts are cut to their first `max_length - 1` tokens and end with EOS, the text a scorer
builds from prompt + completion, so the head reads the same kind of last token in training and
in use. Held-out accuracy goes into status.json.
"""
from __future__ import annotations

import random
from pathlib import Path

from ..config import ClassifierConfig
from ..data import read_rows
from ..errors import InputError
from ..runs import Run


def labelled_examples(cfg: ClassifierConfig) -> tuple[list[dict], list[dict], list]:
    """(train, held-out) examples {text, label 0/1} and the two label values, negative first.

    Labels may be any two values; the positive one is `positive_label`, or else the larger of
    the two (1 > 0, "pos" > "neg", "positive" > "negative")."""
    rows = read_rows(cfg.data, [cfg.text_field, cfg.label_field])
    values = list({row[cfg.label_field] for row in rows})
    try:
        values.sort()
    except TypeError:  # mixed types: order by text
        values.sort(key=str)
    if len(values) != 2:
        raise InputError(f"{cfg.data}: field {cfg.label_field!r} must have exactly 2 values, found {len(values)}: "
                         f"{values[:5]}")
    positive = values[1] if cfg.positive_label is None else cfg.positive_label
    if positive not in values and str(positive) not in map(str, values):
        raise InputError(f"positive_label: {positive!r} is not one of the labels {values}")
    negative = next(v for v in values if str(v) != str(positive))
    examples = [{"text": str(row[cfg.text_field]), "label": int(str(row[cfg.label_field]) == str(positive))}
                for row in rows]
    random.Random(cfg.seed).shuffle(examples)
    if cfg.max_examples:
        examples = examples[:cfg.max_examples]
    n_eval = round(len(examples) * cfg.eval_fraction)
    return examples[n_eval:], examples[:n_eval], [negative, positive]


def encode(tokenizer, examples: list[dict], max_length: int):
    import datasets

    from ..scoring import cut_with_eos

    ids = tokenizer([e["text"] for e in examples], add_special_tokens=False)["input_ids"]
    rows = [cut_with_eos(row, max_length, tokenizer.eos_token_id) for row in ids]
    return datasets.Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows],
                                       "labels": [e["label"] for e in examples]})


def accuracy(scorer, examples: list[dict]) -> float | None:
    if not examples:
        return None
    scores = scorer.score([""] * len(examples), [e["text"] for e in examples])
    return sum((s > 0) == bool(e["label"]) for s, e in zip(scores, examples)) / len(examples)


def held_out_accuracy(run_path: Path) -> float | None:
    """Accuracy of a finished classifier run on its own held-out examples, measured now (the same
    split as in training: it follows from the run's config.yaml)."""
    import yaml

    from ..scoring import RewardModelScorer

    cfg = ClassifierConfig(**yaml.safe_load((Path(run_path) / "config.yaml").read_text()))
    return accuracy(RewardModelScorer(str(run_path), max_length=cfg.max_length), labelled_examples(cfg)[1])


def run(cfg: ClassifierConfig) -> Path:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from ..models import load_tokenizer, load_with_head
    from ..scoring import RewardModelScorer
    from ..training import FiniteLossMixin, metrics_callback, save_final, train, trainer_arguments

    train_examples, eval_examples, labels = labelled_examples(cfg)
    if not train_examples:
        raise InputError(f"{cfg.data}: no training examples left after holding out {cfg.eval_fraction:.0%}")
    args = trainer_arguments(TrainingArguments, cfg, lr_scheduler_type="cosine")  # before the model: see common_args
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model = load_with_head(cfg.model, 2, tokenizer, cfg.seed, cfg.trust_remote_code)
    model.config.id2label = {0: str(labels[0]), 1: str(labels[1])}
    model.config.label2id = {str(labels[0]): 0, str(labels[1]): 1}
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
    tokenizer.padding_side = "right"  # the head reads the last non-pad token
    trainer = type("Classifier", (FiniteLossMixin, Trainer), {})(
        model=model, args=args, train_dataset=encode(tokenizer, train_examples, cfg.max_length),
        data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
        callbacks=[metrics_callback(run)],
    )
    result = train(trainer, run, cfg.resume)
    save_final(trainer, tokenizer, run)
    if not run.main:
        return run.path
    scorer = RewardModelScorer(str(run.model_dir), max_length=cfg.max_length)
    run.finish(**result, labels=[str(v) for v in labels], examples_train=len(train_examples),
               examples_eval=len(eval_examples), accuracy=accuracy(scorer, eval_examples),
               train_accuracy=accuracy(scorer, train_examples[:512]))
    return run.path
