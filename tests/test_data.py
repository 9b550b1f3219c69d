"""Reading data at the edge: local formats, line-numbered errors, and real public data sets."""
import gzip
import json
from statistics import mean

import pytest

from alignlab.config import PretrainConfig, TokenizerConfig
from alignlab.data import read_rows, read_texts
from alignlab.formats import detect
from alignlab.errors import InputError
from alignlab.scoring import VaderScorer, checked_scores
from conftest import SHARED_DATA, needs_shared_data


def test_local_formats(tmp_path):
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b'{"text": "one"}\n\n{"text": "two"}\n'))
    (tmp_path / "b.json").write_text(json.dumps([{"prompt": "p", "completion": "c"}]))
    (tmp_path / "c.csv").write_text("prompt,chosen,rejected\np,a,b\n")
    (tmp_path / "d.txt").write_text("first doc\nstill first\n\nsecond doc\n")
    assert read_texts(str(tmp_path / "a.jsonl.gz")) == ["one", "two"]
    assert detect(read_rows(str(tmp_path / "b.json"))[0]) == "prompt-completion"
    assert detect(read_rows(str(tmp_path / "c.csv"))[0]) == "preference"
    assert read_texts(str(tmp_path / "d.txt")) == ["first doc\nstill first", "second doc"]


@pytest.mark.parametrize("content, expected", [
    ('{"text": "a"}\n{"text": \n', ":2: invalid JSON"),
    ('{"text": "a"}\n[1, 2]\n', ":2: expected a JSON object"),
    ('{"text": "a"}\n{"body": "b"}\n', ":2: missing column 'text'"),
    ('{"text": ""}\n', ":1: column 'text' is empty"),
    ("\n\n", "no rows"),
])
def test_errors_name_the_line(tmp_path, content, expected):
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=expected):
        read_texts(str(path))


def test_unsupported_and_missing_files(tmp_path):
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(InputError, match="unsupported file type"):
        read_rows(str(tmp_path / "x.xlsx"))
    (tmp_path / "x.parquet").write_text("")  # parquet is read (pyarrow); a broken one is one line naming it
    with pytest.raises(InputError, match=r"x\.parquet: cannot read as parquet"):
        read_rows(str(tmp_path / "x.parquet"))
    with pytest.raises(InputError, match="does not exist"):
        read_rows(str(tmp_path / "missing.jsonl"))


def test_unknown_format_is_reported():
    with pytest.raises(InputError, match="match no known format; known: preference.*hh-rlhf.*alpaca"):
        detect({"question": "q", "answer": "a"})


class BrokenScorer:
    name = "broken"

    def __init__(self, scores):
        self.scores = scores

    def score(self, prompts, completions):
        return self.scores


def test_scorer_output_is_checked():
    with pytest.raises(InputError, match="returned 1 scores for 2 completions"):
        checked_scores(BrokenScorer([0.5]), ["p", "p"], ["a", "b"])
    with pytest.raises(InputError, match="non-finite score nan for completion 1"):
        checked_scores(BrokenScorer([0.5, float("nan")]), ["p", "p"], ["a", "b"])


@needs_shared_data
def test_real_preference_pairs_and_reviews_load():
    pairs = read_rows(str(SHARED_DATA / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"), ["chosen", "rejected"])
    assert len(pairs) == 2312 and "\n\nHuman:" in pairs[0]["chosen"]
    reviews = read_rows(str(SHARED_DATA / "imdb" / "aclImdb_labeled.jsonl.gz"), ["text", "label"])
    assert len(reviews) == 50000 and {r["label"] for r in reviews} == {"pos", "neg"}


@needs_shared_data
def test_vader_separates_real_positive_and_negative_reviews():
    reviews = read_rows(str(SHARED_DATA / "imdb" / "aclImdb_labeled.jsonl.gz"), ["text", "label"])[::125]
    scores = checked_scores(VaderScorer(), [""] * len(reviews), [r["text"] for r in reviews])
    pos = [s for s, r in zip(scores, reviews) if r["label"] == "pos"]
    neg = [s for s, r in zip(scores, reviews) if r["label"] == "neg"]
    assert mean(pos) > mean(neg) + 0.3


@needs_shared_data
def test_tokenizer_and_pretraining_on_real_text(tmp_path):
    from alignlab.runs import read_status
    from alignlab.stages import pretrain, tokenizer

    text = str(SHARED_DATA / "tinyshakespeare" / "input.txt.gz")
    tok = tokenizer.run(TokenizerConfig(out=str(tmp_path / "tok"), data=text, vocab_size=512))
    assert read_status(tok)["bytes_per_token"] > 1.5  # merges learned from real English
    run = pretrain.run(PretrainConfig(out=str(tmp_path / "base"), data=text, tokenizer=str(tok), block_size=64,
                                      batch_size=8, max_steps=20, warmup_steps=2, save_steps=20))
    assert read_status(run)["status"] == "finished"
