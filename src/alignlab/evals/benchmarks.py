"""Public benchmarks for measuring the alignment tax, plus Self-BLEU.

Multiple-choice loaders return probes `{"prompt": str, "candidates": [str, ...], "answer": int}`,
the format `alignlab.evals.multiple_choice_accuracy` scores by log p(candidate | prompt).
Each loader takes a local file (the formats in `../shared/data/README.md`) or, when the argument
is not a local path, a Hugging Face hub name loaded with `datasets.load_dataset`. `n` keeps a
seeded random subsample of at most n items (in file order); `n=None` keeps everything.
Bad input raises `InputError` with a one-line message naming the file (and line or field).
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import os
import random
import tarfile
import warnings
from pathlib import Path

from ..data import numbered_rows
from ..errors import InputError

# Benchmark name -> file under the shared data folder (see shared_data_dir()).
DEFAULT_PATHS = {
    "hellaswag": "hellaswag/hellaswag_val_full.txt.bz2",
    "piqa": "piqa/valid.jsonl.gz",
    "mmlu": "mmlu/mmlu_data.tar.gz",
    "truthfulqa_mc1": "truthfulqa/TruthfulQA.csv",
    "xstest": "xstest/xstest_prompts.csv",
}
_FILE_SUFFIXES = {".bz2", ".gz", ".tgz", ".tar", ".jsonl", ".json", ".csv", ".txt", ".lst"}
_MMLU_SPLITS = {"dev": "dev", "val": "validation", "test": "test"}  # file folder -> hub split


def shared_data_dir() -> Path:
    """Folder of the real data sets: $ALIGNLAB_SHARED_DATA, else ../shared/data (relative to cwd)."""
    return Path(os.environ.get("ALIGNLAB_SHARED_DATA", "../shared/data"))


def _one_line(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _source(spec, name: str, config: str | None, split: str):
    """A local Path, or a hub Dataset when `spec` does not look like (and is not) a local file."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if isinstance(spec, Path) or str(spec).startswith((".", "/", "~")) or path.suffix in _FILE_SUFFIXES:
        raise InputError(f"{name}: file {spec} does not exist")
    import datasets

    try:
        return datasets.load_dataset(str(spec), config, split=split)
    except Exception as e:  # the hub raises many types; the user needs one line
        raise InputError(f"{name}: {spec!r} is not a local file and could not be loaded from the hub "
                         f"({_one_line(e)})") from None


def _read_text(path: Path) -> str:
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({_one_line(e)})") from None


def _lines(path: Path) -> list[str]:
    """Lines split on \\n only (str.splitlines would also split on \\x0c, \\u2028, ... inside text)."""
    text = _read_text(path).rstrip("\n")
    return [line.rstrip("\r") for line in text.split("\n")] if text else []


def _csv_rows(path: Path, columns: list[str]) -> list[tuple[int, dict]]:
    """(line number, row) of a CSV with a header that must contain `columns`."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r} (header: {', '.join(reader.fieldnames or [])})")
    return [(reader.line_num, row) for row in reader]


def _field(row: dict, key: str, where: str):
    value = row.get(key)
    if value is None or (isinstance(value, (str, list)) and not value):
        raise InputError(f"{where}: missing or empty field {key!r}")
    return value


def _probe(prompt: str, candidates: list, answer, where: str, **extra) -> dict:
    """A probe; candidates get one leading space (they continue the prompt's text)."""
    candidates = [" " + str(c).strip() for c in candidates]
    try:
        answer = int(answer)
    except (TypeError, ValueError):
        raise InputError(f"{where}: answer {answer!r} is not an index") from None
    if not 0 <= answer < len(candidates):
        raise InputError(f"{where}: answer {answer} out of range for {len(candidates)} candidates")
    return {"prompt": prompt, "candidates": candidates, "answer": answer, **extra}


def _subsample(items: list, n: int | None, seed: int, what: str) -> list:
    """At most n items, chosen with random.Random(seed), kept in their original order."""
    if not items:
        raise InputError(f"{what}: no items found")
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise InputError(f"{what}: n must be at least 1, got {n}")
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), n))]


def hellaswag(path, n: int | None = None, seed: int = 0) -> list[dict]:
    """HellaSwag (Zellers et al. 2019): pick the ending of `activity_label: context`. Local file:
    6 lines per task (context, gold label 0-3, 4 endings), optionally .bz2/.gz; hub: Rowan/hellaswag."""
    source = _source(path, "hellaswag", None, "validation")
    probes = []
    if isinstance(source, Path):
        lines = _lines(source)
        if len(lines) % 6:
            raise InputError(f"{source}:{len(lines) // 6 * 6 + 1}: incomplete task "
                             f"(6 lines each: context, gold label 0-3, 4 endings; file has {len(lines)} lines)")
        for i in range(0, len(lines), 6):
            context, label, *endings = lines[i:i + 6]
            if label.strip() not in {"0", "1", "2", "3"}:
                raise InputError(f"{source}:{i + 2}: expected a gold label 0-3, got {label!r}")
            if not context.strip() or not all(e.strip() for e in endings):
                raise InputError(f"{source}:{i + 1}: empty context or ending in the task starting here")
            probes.append(_probe(context.strip(), endings, label, f"{source}:{i + 2}"))
    else:
        for i, row in enumerate(source):
            where = f"hellaswag {path} row {i}"
            prompt = f"{_field(row, 'activity_label', where)}: {_field(row, 'ctx', where)}"
            probes.append(_probe(prompt, _field(row, "endings", where), _field(row, "label", where), where))
    return _subsample(probes, n, seed, f"hellaswag {path}")


def _labels_beside(path: Path) -> Path:
    return path.with_name(path.name.split(".")[0] + "-labels.lst")  # valid.jsonl.gz -> valid-labels.lst


def piqa(path, labels_path=None, n: int | None = None, seed: int = 0) -> list[dict]:
    """PIQA (Bisk et al. 2020): the better of two solutions for a goal. Local: JSONL(.gz) with goal,
    sol1, sol2 plus a labels file (one 0/1 a line; default `<stem>-labels.lst` beside it); hub: ybisk/piqa."""
    source = _source(path, "piqa", None, "validation")
    if isinstance(source, Path):
        labels_path = Path(labels_path) if labels_path else _labels_beside(source)
        if not labels_path.exists():
            raise InputError(f"piqa: labels file {labels_path} does not exist")
        labels = _lines(labels_path)
        rows = [(f"{source}:{number}", record) for number, record in numbered_rows(source)]
        if len(labels) != len(rows):
            raise InputError(f"{labels_path}: {len(labels)} labels for {len(rows)} questions in {source}")
        for number, ((_, record), label) in enumerate(zip(rows, labels), 1):
            if label.strip() not in {"0", "1"}:
                raise InputError(f"{labels_path}:{number}: expected label 0 or 1, got {label!r}")
            record["label"] = int(label)
    else:
        rows = [(f"piqa {path} row {i}", row) for i, row in enumerate(source)]
    probes = [_probe(f"Question: {_field(r, 'goal', w)}\nAnswer:", [_field(r, "sol1", w), _field(r, "sol2", w)],
                     _field(r, "label", w), w) for w, r in rows]
    return _subsample(probes, n, seed, f"piqa {path}")


def _mmlu_prompt(question: str, options: list[str]) -> str:
    return f"Question: {question.strip()}\n" + "".join(f"{k}. {o}\n" for k, o in zip("ABCD", options)) + "Answer:"


def mmlu(path, n: int | None = None, seed: int = 0, split: str = "test") -> list[dict]:
    """MMLU (Hendrycks et al. 2021), zero-shot, candidates " A".." D". Local: the tar(.gz) of
    `<split>/<subject>_<split>.csv` files, no header: question,A,B,C,D,answer; hub: cais/mmlu "all"."""
    if split not in _MMLU_SPLITS:
        raise InputError(f"mmlu: unknown split {split!r}; choose one of {', '.join(_MMLU_SPLITS)}")
    source = _source(path, "mmlu", "all", _MMLU_SPLITS[split])
    probes = []
    if isinstance(source, Path):
        texts = {}  # member name -> CSV text, read in archive order (seeking back in a .gz is slow)
        try:
            with tarfile.open(source) as tar:
                for member in tar:
                    if member.isfile() and member.name.endswith(".csv") and Path(member.name).parent.name == split:
                        texts[member.name] = tar.extractfile(member).read().decode("utf-8")
        except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as e:
            raise InputError(f"{source}: cannot read the archive ({_one_line(e)})") from None
        if not texts:
            raise InputError(f"{source}: no {split}/*.csv files in the archive")
        for name in sorted(texts):
            subject = Path(name).stem.removesuffix(f"_{split}")
            reader = csv.reader(io.StringIO(texts[name], newline=""))
            for row in reader:
                where = f"{source}:{name}:{reader.line_num}"
                if len(row) != 6:
                    raise InputError(f"{where}: expected 6 fields (question,A,B,C,D,answer), got {len(row)}")
                if row[5].strip() not in {"A", "B", "C", "D"}:
                    raise InputError(f"{where}: answer must be A, B, C or D, got {row[5]!r}")
                probes.append(_probe(_mmlu_prompt(row[0], row[1:5]), "ABCD", "ABCD".index(row[5].strip()), where,
                                     subject=subject))
    else:
        for i, row in enumerate(source):
            where = f"mmlu {path} row {i}"
            probes.append(_probe(_mmlu_prompt(_field(row, "question", where), _field(row, "choices", where)), "ABCD",
                                 _field(row, "answer", where), where, subject=row.get("subject", "")))
    return _subsample(probes, n, seed, f"mmlu {path} ({split})")


def truthfulqa_mc1(path, n: int | None = None, seed: int = 0) -> list[dict]:
    """TruthfulQA MC1 (Lin et al. 2022), zero-shot "Q: ...\\nA:": the best answer against the
    incorrect ones, in a seeded shuffled order. Local: TruthfulQA.csv (answers `;`-separated);
    hub: truthfulqa/truthful_qa "multiple_choice" (mc1_targets)."""
    source = _source(path, "truthfulqa_mc1", "multiple_choice", "validation")
    items = []  # (where, question, candidates, answer)
    if isinstance(source, Path):
        for line, row in _csv_rows(source, ["Question", "Best Answer", "Incorrect Answers"]):
            where = f"{source}:{line}"
            wrong = [a.strip() for a in _field(row, "Incorrect Answers", where).split(";") if a.strip()]
            if not wrong:
                raise InputError(f"{where}: field 'Incorrect Answers' has no answers")
            items.append((where, _field(row, "Question", where), [_field(row, "Best Answer", where), *wrong], 0))
    else:
        for i, row in enumerate(source):
            where = f"truthfulqa_mc1 {path} row {i}"
            targets = _field(row, "mc1_targets", where)
            if 1 not in targets.get("labels", []):
                raise InputError(f"{where}: mc1_targets has no correct answer")
            items.append((where, _field(row, "question", where), targets["choices"], targets["labels"].index(1)))
    rng, probes = random.Random(seed), []
    for where, question, candidates, answer in _subsample(items, n, seed, f"truthfulqa_mc1 {path}"):
        order = rng.sample(range(len(candidates)), len(candidates))
        probes.append(_probe(f"Q: {question.strip()}\nA:", [candidates[j] for j in order], order.index(answer), where))
    return probes


def xstest(path, n: int | None = None, seed: int = 0) -> dict[str, list[str]]:
    """XSTest (Röttger et al. 2024) prompts by label: {"safe": [...], "unsafe": [...]}; a model
    should answer the safe ones (over-refusal) and refuse the unsafe contrasts. `n` is per label.
    Local: xstest_prompts.csv (columns prompt, label); hub: e.g. walledai/XSTest."""
    source = _source(path, "xstest", None, "test")
    if isinstance(source, Path):
        rows = [(f"{source}:{line}", row) for line, row in _csv_rows(source, ["prompt", "label"])]
    else:
        rows = [(f"xstest {path} row {i}", row) for i, row in enumerate(source)]
    by_label = {"safe": [], "unsafe": []}
    for where, row in rows:
        label = _field(row, "label", where).strip()
        if label not in by_label:
            raise InputError(f"{where}: label must be 'safe' or 'unsafe', got {label!r}")
        by_label[label].append(_field(row, "prompt", where).strip())
    return {label: _subsample(prompts, n, seed, f"xstest {path} ({label})") for label, prompts in by_label.items()}


LOADERS = {"hellaswag": hellaswag, "piqa": piqa, "mmlu": mmlu, "truthfulqa_mc1": truthfulqa_mc1, "xstest": xstest}


def load_suite(names=None, n: int | None = None, seed: int = 0, root=None) -> dict:
    """{name: loader output} for `names` (default: all of DEFAULT_PATHS) read from `root` (default
    shared_data_dir()). Benchmarks whose files are absent are skipped with a warning. Values are
    probe lists, except xstest's {"safe": [...], "unsafe": [...]}."""
    root = Path(root) if root is not None else shared_data_dir()
    suite = {}
    for name in names or DEFAULT_PATHS:
        if name not in DEFAULT_PATHS:
            raise InputError(f"benchmark: unknown name {name!r}; choose from {', '.join(DEFAULT_PATHS)}")
        path = root / DEFAULT_PATHS[name]
        needed = [path, _labels_beside(path)] if name == "piqa" else [path]
        missing = [p for p in needed if not p.exists()]
        if missing:
            warnings.warn(f"benchmark {name}: {missing[0]} not found; skipped", stacklevel=2)
            continue
        suite[name] = LOADERS[name](path, n=n, seed=seed)
    return suite


def bleu(hypothesis: list[str], references: list[list[str]], n: int = 4, epsilon: float = 0.1) -> float:
    """Sentence BLEU of a token list against reference token lists (Papineni et al. 2002): nltk's
    sentence_bleu(weights=(1/n,)*n, smoothing_function=SmoothingFunction(epsilon).method1). n-gram
    counts are clipped by their maximum count in any reference; a precision with no match becomes
    epsilon / (number of hypothesis n-grams, at least 1); 0 if no unigram matches; brevity penalty
    exp(1 - r/c) against the closest reference length r (shorter on ties) when c <= r.
    0.0 for an empty hypothesis or no references."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    if not hypothesis or not references:
        return 0.0
    return float(sentence_bleu(references, hypothesis, weights=(1 / n,) * n,
                               smoothing_function=SmoothingFunction(epsilon=epsilon).method1))


def self_bleu(texts: list[str], n: int = 4) -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen): mean BLEU-n of each text (whitespace tokens) against all
    the others as references. As in Texygen, each BLEU is nltk's sentence_bleu with uniform weights
    and smoothing method1 (see `bleu`; epsilon 0.1); the mean is over texts, not a corpus BLEU.
    Lower means more diverse; 1.0 for identical texts of >= n words.
    Cost grows as len(texts)**2, so subsample large sets."""
    if len(texts) < 2:
        raise InputError(f"self_bleu: needs at least 2 texts, got {len(texts)}")
    tokens = [t.split() for t in texts]
    return sum(bleu(tokens[i], tokens[:i] + tokens[i + 1:], n) for i in range(len(tokens))) / len(tokens)
