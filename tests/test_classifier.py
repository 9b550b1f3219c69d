"""`alignlab classifier` (a two-label judge) and the IMDb helpers of the experiments."""
import json
import random

import pytest

from alignlab.config import ClassifierConfig
from alignlab.errors import InputError
from conftest import SHARED_DATA, needs_shared_data


def world_reviews(path, n=600, seed=0):
    """Labelled world reviews: the gold sentiment is the label, so a classifier can learn it."""
    from alignlab.world import World

    world, rng = World(0), random.Random(seed)
    rows = []
    for _ in range(n):
        polarity = rng.choice(["pos", "neg"])
        rows.append({"text": world.review_text(rng, "film", polarity), "label": {"pos": "positive", "neg": "negative"}[polarity]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_classifier_learns_world_sentiment_and_scores_log_odds(tmp_path, micro_base):
    from alignlab.scoring import make_scorer
    from alignlab.stages import classifier

    data = world_reviews(tmp_path / "reviews.jsonl")
    path = classifier.run(ClassifierConfig(out=str(tmp_path / "clf"), model=str(micro_base), data=str(data),
                                           max_steps=60, batch_size=16, warmup_steps=5, max_length=64))
    status = json.loads((path / "status.json").read_text())
    assert status["labels"] == ["negative", "positive"] and status["examples_eval"] == 60
    assert status["accuracy"] >= 0.85  # the world's sentiment words are easy; chance is 0.5
    from alignlab.world import lexicon

    scorer = make_scorer(str(path))  # the scorer reads the classifier's folder: log-odds of "positive"
    good, bad = scorer.score(["", ""], [f" The plot is {lexicon.POSITIVE_ADJ[0]}.", f" The plot is {lexicon.NEGATIVE_ADJ[0]}."])
    assert good > bad
    # a text longer than the classifier trained on is read as in training: its first max_length - 1 tokens + EOS
    assert scorer.max_length == 64
    ids = scorer.tokenizer(" ".join(json.loads(line)["text"] for line in data.read_text().splitlines()[:40]),
                           add_special_tokens=False)["input_ids"]
    assert len(ids) > 200
    long_text, cut_text = scorer.tokenizer.decode(ids), scorer.tokenizer.decode(ids[:63])
    assert scorer.tokenizer(cut_text, add_special_tokens=False)["input_ids"] == ids[:63]
    assert scorer.score([""], [long_text]) == pytest.approx(scorer.score([""], [cut_text]), abs=1e-5)


def test_classifier_bad_labels(tmp_path, micro_base):
    from alignlab.stages import classifier

    three = tmp_path / "three.jsonl"
    three.write_text("".join(json.dumps({"text": f"t{i}", "label": i % 3}) + "\n" for i in range(9)))
    with pytest.raises(InputError, match="exactly 2 values"):
        classifier.run(ClassifierConfig(out=str(tmp_path / "c1"), model=str(micro_base), data=str(three)))
    two = tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps({"text": f"t{i}", "label": ["pos", "neg"][i % 2]}) + "\n" for i in range(9)))
    with pytest.raises(InputError, match="positive_label"):
        classifier.run(ClassifierConfig(out=str(tmp_path / "c2"), model=str(micro_base), data=str(two),
                                        positive_label="good"))
    assert not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()


def test_reward_scorer_rejects_a_causal_lm(micro_base):
    from alignlab.scoring import make_scorer

    with pytest.raises(InputError, match="not a reward model"):
        make_scorer(str(micro_base))


def test_imdb_text_helpers(tmp_path):
    from alignlab.experiments import imdb

    assert imdb.clean("Great.<br /><br />Really  great.<br/>") == "Great. Really great."
    texts = [" ".join(f"w{i}" for i in range(20))] * 10
    prompts = imdb.prefixes(texts, 5, seed=0)
    assert len(prompts) == 5 and all(2 <= len(p.split()) <= 8 for p in prompts)
    assert prompts == imdb.prefixes(texts, 5, seed=0)
    with pytest.raises(InputError, match="not found"):
        imdb.source_files(tmp_path)


@needs_shared_data
def test_imdb_source_files_present():
    from alignlab.data import read_rows
    from alignlab.experiments import imdb

    unsup, labelled = imdb.source_files(SHARED_DATA / "imdb")
    assert unsup.is_file() and labelled.is_file()
    first = read_rows(str(labelled), ["text", "label", "split"])[0]
    assert first["label"] in ("pos", "neg")
