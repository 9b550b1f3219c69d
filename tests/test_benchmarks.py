"""Benchmark loaders (real files read in place from ../shared/data), their errors on bad files
(tiny synthetic files in tmp_path), and Self-BLEU against hand-computed values."""
import bz2
import io
import json
import math
import tarfile
import warnings
from pathlib import Path

import pytest

from alignlab.errors import InputError
from alignlab.evals import multiple_choice_accuracy
from alignlab.evals.benchmarks import (
    DEFAULT_PATHS, bleu, hellaswag, load_suite, mmlu, piqa, self_bleu, shared_data_dir, truthfulqa_mc1, xstest,
)
from conftest import SHARED_DATA, needs_shared_data

MC_LOADERS = {
    "hellaswag": lambda n, seed: hellaswag(SHARED_DATA / DEFAULT_PATHS["hellaswag"], n, seed),
    "piqa": lambda n, seed: piqa(SHARED_DATA / DEFAULT_PATHS["piqa"], None, n, seed),
    "mmlu": lambda n, seed: mmlu(SHARED_DATA / DEFAULT_PATHS["mmlu"], n, seed),
    "truthfulqa_mc1": lambda n, seed: truthfulqa_mc1(SHARED_DATA / DEFAULT_PATHS["truthfulqa_mc1"], n, seed),
}


def assert_well_formed(probe):
    assert isinstance(probe["prompt"], str) and probe["prompt"].strip()
    assert len(probe["candidates"]) >= 2
    assert all(isinstance(c, str) and c.startswith(" ") and c.strip() for c in probe["candidates"])
    assert isinstance(probe["answer"], int) and 0 <= probe["answer"] < len(probe["candidates"])


def raises_one_line(match, call, *args, **kwargs) -> str:
    with pytest.raises(InputError, match=match) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


# ----------------------------------------------------------------------------- real data

@needs_shared_data
@pytest.mark.parametrize("name", MC_LOADERS)
def test_loader_returns_n_well_formed_probes_deterministically(name):
    probes = MC_LOADERS[name](25, 3)
    assert len(probes) == 25
    for probe in probes:
        assert_well_formed(probe)
    assert MC_LOADERS[name](25, 3) == probes
    assert MC_LOADERS[name](25, 4) != probes


@pytest.fixture(scope="module")
def full_suite():
    return load_suite(None, n=None, root=SHARED_DATA)


@needs_shared_data
def test_full_sets_have_the_documented_sizes(full_suite):
    sizes = {name: len(v) if name != "xstest" else {k: len(p) for k, p in v.items()} for name, v in full_suite.items()}
    assert sizes == {"hellaswag": 10042, "piqa": 1838, "mmlu": 14042, "truthfulqa_mc1": 817,
                     "xstest": {"safe": 250, "unsafe": 200}}
    assert len(mmlu(SHARED_DATA / DEFAULT_PATHS["mmlu"], split="dev")) == 285
    for name in MC_LOADERS:
        for probe in full_suite[name]:
            assert_well_formed(probe)


@needs_shared_data
def test_format_details(full_suite):
    question = full_suite["mmlu"][0]
    assert question["candidates"] == [" A", " B", " C", " D"] and question["subject"] == "abstract_algebra"
    lines = question["prompt"].split("\n")
    assert lines[0].startswith("Question: ") and lines[-1] == "Answer:"
    assert [line[:3] for line in lines[-5:-1]] == ["A. ", "B. ", "C. ", "D. "]
    assert full_suite["piqa"][0]["prompt"].startswith("Question: ")
    assert full_suite["piqa"][0]["prompt"].endswith("\nAnswer:")
    assert len({p["answer"] for p in full_suite["truthfulqa_mc1"]}) > 1  # the best answer is shuffled, not first
    assert {p["answer"] for p in full_suite["hellaswag"]} == {0, 1, 2, 3}


@needs_shared_data
def test_xstest_splits_safe_and_unsafe():
    prompts = xstest(SHARED_DATA / DEFAULT_PATHS["xstest"], 10, 1)
    assert sorted(prompts) == ["safe", "unsafe"]
    assert [len(prompts["safe"]), len(prompts["unsafe"])] == [10, 10]
    assert all(isinstance(p, str) and p for group in prompts.values() for p in group)
    assert xstest(SHARED_DATA / DEFAULT_PATHS["xstest"], 10, 1) == prompts


@needs_shared_data
def test_multiple_choice_accuracy_runs_on_every_benchmark():
    from alignlab.models import build_tiny_model, train_tokenizer

    suite = load_suite(["hellaswag", "piqa", "mmlu", "truthfulqa_mc1"], n=20, seed=0, root=SHARED_DATA)
    texts = [p["prompt"] + c for probes in suite.values() for p in probes for c in p["candidates"]]
    tokenizer = train_tokenizer(texts, vocab_size=300)
    model = build_tiny_model("tiny-1m", tokenizer, max_length=4096)
    for name, probes in suite.items():
        assert len(probes) == 20
        # batch_size=4: one probe's candidates per batch, so a long MMLU prompt does not pad 64 rows
        multiple_choice_accuracy(model, tokenizer, probes, batch_size=4)  # runs; an untrained model's score means nothing


# ----------------------------------------------------------------------------- suite

def test_load_suite_skips_absent_files_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="not found; skipped"):
        assert load_suite(["hellaswag", "xstest"], n=5, root=tmp_path) == {}
    raises_one_line("unknown name 'arc'", load_suite, ["arc"], root=tmp_path)


def test_shared_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ALIGNLAB_SHARED_DATA", raising=False)
    assert shared_data_dir() == Path("../shared/data")
    monkeypatch.setenv("ALIGNLAB_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path


# ----------------------------------------------------------------------------- bad input

def test_missing_file_and_unknown_hub_name_give_one_line_errors(tmp_path):
    raises_one_line("does not exist", hellaswag, tmp_path / "nope.txt.bz2")
    raises_one_line("does not exist", mmlu, "./nope.tar.gz")
    raises_one_line("could not be loaded from the hub", piqa, "no-such-owner/no-such-piqa")  # offline in tests


def test_hub_rows_are_converted_like_local_files(monkeypatch):
    """The hub branch, offline: a fake load_dataset returns rows in each hub set's documented schema."""
    import datasets

    rows = {
        ("Rowan/hellaswag", None, "validation"): [
            {"activity_label": "Cooking", "ctx": "A man cracks an egg. he", "endings": ["sings.", "fries it."],
             "label": "1"}],
        ("ybisk/piqa", None, "validation"): [{"goal": "Open a jar", "sol1": "twist", "sol2": "eat", "label": 0}],
        ("cais/mmlu", "all", "test"): [{"question": "1+1?", "subject": "arith", "choices": ["1", "2", "3", "4"],
                                        "answer": 1}],
        ("truthfulqa/truthful_qa", "multiple_choice", "validation"): [
            {"question": "Is the sky green?", "mc1_targets": {"choices": ["No", "Yes"], "labels": [1, 0]}}],
        ("walledai/XSTest", None, "test"): [{"prompt": "Kill a process?", "label": "safe"},
                                            {"prompt": "Hurt someone?", "label": "unsafe"}],
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None: rows[name, config, split])
    assert hellaswag("Rowan/hellaswag") == [{"prompt": "Cooking: A man cracks an egg. he",
                                             "candidates": [" sings.", " fries it."], "answer": 1}]
    assert piqa("ybisk/piqa")[0]["candidates"] == [" twist", " eat"]
    assert mmlu("cais/mmlu")[0]["prompt"] == "Question: 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    [probe] = truthfulqa_mc1("truthfulqa/truthful_qa")
    assert probe["candidates"][probe["answer"]] == " No"
    assert xstest("walledai/XSTest") == {"safe": ["Kill a process?"], "unsafe": ["Hurt someone?"]}
    rows["ybisk/piqa", None, "validation"][0].pop("sol2")
    raises_one_line("piqa ybisk/piqa row 0: missing or empty field 'sol2'", piqa, "ybisk/piqa")


def test_malformed_hellaswag(tmp_path):
    task = ["Cooking: A man cracks an egg. he", "1", "sings.", "fries it.", "flies.", "sleeps."]
    path = tmp_path / "hs.txt"
    path.write_text("\n".join(task + task[:3]) + "\n")
    raises_one_line(f"{path}:7: incomplete task", hellaswag, path)
    path.write_text("\n".join(task[:1] + ["x"] + task[2:]) + "\n")
    raises_one_line(f"{path}:2: expected a gold label", hellaswag, path)
    broken = tmp_path / "hs.txt.bz2"
    broken.write_bytes(b"not bzip2 at all")
    raises_one_line(f"{broken}: cannot read", hellaswag, broken)
    path.write_text("\n".join(task) + "\n")
    assert hellaswag(path) == [{"prompt": task[0], "candidates": [" sings.", " fries it.", " flies.", " sleeps."],
                                "answer": 1}]
    bz = tmp_path / "ok.txt.bz2"
    bz.write_bytes(bz2.compress(("\n".join(task) + "\n").encode()))
    assert hellaswag(bz) == hellaswag(path)


def test_malformed_piqa(tmp_path):
    data, labels = tmp_path / "valid.jsonl", tmp_path / "valid-labels.lst"
    row = {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "eat the lid"}
    data.write_text(json.dumps(row) + "\n{broken\n")
    labels.write_text("0\n1\n")
    raises_one_line(f"{data}:2: invalid JSON", piqa, data)
    data.write_text(json.dumps(row) + "\n")
    raises_one_line(f"{labels}: 2 labels for 1 questions", piqa, data)
    labels.write_text("2\n")
    raises_one_line(f"{labels}:1: expected label 0 or 1", piqa, data)
    labels.write_text("0\n")
    assert piqa(data) == [{"prompt": "Question: Open a jar\nAnswer:", "candidates": [" twist the lid", " eat the lid"],
                           "answer": 0}]
    data.write_text(json.dumps({"goal": "Open a jar", "sol1": "twist"}) + "\n")
    raises_one_line(f"{data}:1: missing or empty field 'sol2'", piqa, data, labels)


def write_tar(path, files: dict):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            blob = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_malformed_mmlu(tmp_path):
    path = tmp_path / "mmlu.tar.gz"
    good = "What is 1+1?,1,2,3,4,B\n"
    write_tar(path, {"data/test/arith_test.csv": good + "Too short,1,2,B\n"})
    raises_one_line(f"{path}:data/test/arith_test.csv:2: expected 6 fields", mmlu, path)
    write_tar(path, {"data/test/arith_test.csv": good + "What is 2+2?,1,2,3,4,E\n"})
    raises_one_line("answer must be A, B, C or D", mmlu, path)
    write_tar(path, {"data/dev/arith_dev.csv": good})
    raises_one_line("no test/\\*.csv files", mmlu, path)
    raises_one_line("unknown split", mmlu, path, split="train")
    assert mmlu(path, split="dev") == [{"prompt": "Question: What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:",
                                        "candidates": [" A", " B", " C", " D"], "answer": 1, "subject": "arith"}]
    path.write_bytes(b"garbage")
    raises_one_line(f"{path}: cannot read the archive", mmlu, path)


def test_malformed_truthfulqa_and_xstest(tmp_path):
    path = tmp_path / "tqa.csv"
    path.write_text("Type,Question,Best Answer\nA,Is the sky green?,No\n")
    raises_one_line(f"{path}: missing column 'Incorrect Answers'", truthfulqa_mc1, path)
    path.write_text("Question,Best Answer,Incorrect Answers\nIs the sky green?,No,Yes; Always\nIs grass red?,No, ; \n")
    raises_one_line(f"{path}:3: field 'Incorrect Answers' has no answers", truthfulqa_mc1, path)
    path.write_text("Question,Best Answer,Incorrect Answers\nIs the sky green?,No,Yes; Always\n")
    [probe] = truthfulqa_mc1(path, seed=0)
    assert probe["prompt"] == "Q: Is the sky green?\nA:"
    assert sorted(probe["candidates"]) == [" Always", " No", " Yes"] and probe["candidates"][probe["answer"]] == " No"
    xs = tmp_path / "xs.csv"
    xs.write_text("id,prompt,label\n1,How do I kill a process?,safe\n2,How do I hurt someone?,maybe\n")
    raises_one_line(f"{xs}:3: label must be 'safe' or 'unsafe'", xstest, xs)
    xs.write_text("id,prompt,label\n1,How do I kill a process?,safe\n2,How do I hurt someone?,unsafe\n")
    assert xstest(xs) == {"safe": ["How do I kill a process?"], "unsafe": ["How do I hurt someone?"]}


# ----------------------------------------------------------------------------- Self-BLEU

def test_bleu_hand_computed():
    hyp, ref = "the cat sat on the mat".split(), "the cat is on the mat".split()
    # clipped precisions 5/6, 3/5, 1/4 and 0/3 -> smoothed 0.1/3; equal lengths so no brevity penalty
    assert bleu(hyp, [ref]) == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 0.1 / 3) ** 0.25)
    # perfect 1- and 2-gram precision, but 3 words against the closest reference of 6: BP = exp(1 - 6/3)
    assert bleu("the cat sat".split(), [ref, "the cat sat on the mat".split()], n=2) == pytest.approx(math.exp(-1))
    # "the the the" clips to the reference's two "the": unigram precision 2/3
    assert bleu("the the the".split(), [ref], n=1) == pytest.approx(2 / 3 * math.exp(1 - 6 / 3))
    assert bleu("dog".split(), [ref]) == 0.0


def test_self_bleu():
    same = ["the quick brown fox jumps over the lazy dog"] * 3
    assert self_bleu(same) == pytest.approx(1.0)
    varied = ["the quick brown fox jumps over the lazy dog", "a slow green turtle walks under the busy bridge",
              "the quick red fox runs past the sleepy cat"]
    assert 0.0 < self_bleu(varied) < self_bleu(same)
    pair = ["the cat sat on the mat", "the cat is on the mat"]  # symmetric: both directions score the same
    assert self_bleu(pair) == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 0.1 / 3) ** 0.25)
    raises_one_line("at least 2 texts", self_bleu, ["alone"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert self_bleu(["a b", "c d"]) == 0.0
