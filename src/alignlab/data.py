"""Real data at the edge: read a local file or a hub data set into rows of TRL's standard formats.

Formats: TRL's (`text`; `prompt`/`completion`; `prompt`/`chosen`/`rejected`; `messages`; KTO's
`prompt`/`completion`/`label`) and, through `formats`, Alpaca, ShareGPT, hh-rlhf, PKU-SafeRLHF and
LLaMA-Factory's shapes. Local files: .jsonl, .json (a list of records), .csv, .parquet, .txt (documents
separated by blank lines), each optionally .gz. Hub data sets: `name`, `name:config`,
`name@split` or `name:config@split` (default split: train). A broken line, a missing column or an
empty file is an InputError that names the file and line.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

from .errors import InputError
from .formats import to_standard


def _open_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        return (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e})") from None


def numbered_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) pairs; line numbers are 1-based (0 where a format has none)."""
    text = _open_text(path)
    kind = path.suffixes[-2] if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix
    if kind == ".jsonl":
        rows = []
        # split on "\n" only: str.splitlines() would also split inside strings at U+2028 / U+0085
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{number}: invalid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            rows.append((number, record))
        return rows
    if kind == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InputError(f"{path}: expected a JSON list of objects")
        return [(0, r) for r in records]
    if kind == ".csv":
        return [(number, dict(r)) for number, r in enumerate(csv.DictReader(io.StringIO(text)), 2)]
    if kind == ".txt":
        return [(0, {"text": doc.strip()}) for doc in text.split("\n\n") if doc.strip()]
    raise InputError(f"{path}: unsupported file type {kind!r} (use .jsonl, .json, .csv, .txt or .parquet, "
                     "optionally .gz)")


def _parquet_rows(path: Path) -> list[tuple[int, dict]]:
    import pyarrow.parquet as pq  # a dependency of datasets

    try:
        return [(i + 1, row) for i, row in enumerate(pq.read_table(path).to_pylist())]
    except Exception as e:  # pyarrow's errors are many types; the user needs one line
        raise InputError(f"{path}: cannot read as parquet ({type(e).__name__}: {e})") from None


DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".txt", ".parquet")


def _file_rows(path: Path) -> list[tuple[int, dict]]:
    return _parquet_rows(path) if path.suffix == ".parquet" else numbered_rows(path)


def _folder_rows(path: Path) -> list[tuple[int, dict]]:
    """The rows of every data file in a folder (shards, as `alignlab data` writes them), in name order."""
    files = sorted(p for p in path.iterdir() if p.name.removesuffix(".gz").endswith(DATA_SUFFIXES))
    if not files:
        raise InputError(f"data: folder {path} holds no data files ({', '.join(DATA_SUFFIXES)}, optionally .gz)")
    return [row for file in files for row in _file_rows(file)]


def _rows_from_hub(spec: str, split: str) -> list[tuple[int, dict]]:
    """Rows of a hub data set named `name`, `name:config`, `name@split` or `name:config@split`."""
    import datasets

    name, _, chosen_split = spec.partition("@")
    name, _, config = name.partition(":")
    try:
        dataset = datasets.load_dataset(name, config or None, split=chosen_split or split)
    except Exception as e:  # the hub raises many types; the user needs one line
        raise InputError(f"data: {name!r} is not a local file and could not be loaded from the hub "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return [(i + 1, dict(r)) for i, r in enumerate(dataset)]


def _numbered(spec: str, split: str = "train") -> list[tuple[int, dict]]:
    path = Path(spec).expanduser()
    local = path.exists() or spec.startswith((".", "/", "~")) or path.suffix in {*DATA_SUFFIXES, ".gz"}
    if local and not path.exists():
        raise InputError(f"data: file {spec} does not exist")
    if path.is_dir():
        numbered = _folder_rows(path)
    else:
        numbered = _file_rows(path) if local else _rows_from_hub(spec, split)
    if not numbered:
        raise InputError(f"{spec}: no rows (the data set is empty)")
    return numbered


def read_rows(spec: str, columns: list[str] | None = None, split: str = "train") -> list[dict]:
    """Rows of a local file or hub data set as they are, each checked to have `columns` (non-empty)."""
    numbered = _numbered(spec, split)
    _check_columns(numbered, spec, columns or [])
    return [row for _, row in numbered]


def read_examples(spec: str, kinds: tuple[str, ...], data_format: str | None = None) -> tuple[list[dict], str]:
    """Rows in one of TRL's formats `kinds` (e.g. ("preference",) for DPO), whatever known shape the file or
    hub set has (`formats`): (rows, format). A shape this stage cannot use is a one-line error."""
    from .formats import STANDARD

    numbered = _numbered(spec)
    try:
        rows, kind = to_standard(numbered, spec, data_format)
    except InputError:
        # no known shape: if the rows look like the stage's own format with a column missing, say which
        number, first = numbered[0]
        for wanted in kinds:
            missing = [c for c in STANDARD[wanted] if c not in first]
            if data_format is None and len(missing) < len(STANDARD[wanted]):
                raise InputError(f"{spec}:{number}: missing column {missing[0]!r}" if number else
                                 f"{spec} (a record): missing column {missing[0]!r}") from None
        raise
    if kind not in kinds:
        raise InputError(f"{spec}: this stage needs {' or '.join(kinds)} rows; the data is in the {kind} format")
    # an empty completion is a demonstration of stopping at once (rejection sampling keeps such samples);
    # an empty prompt, text or preference answer is a broken row
    nonempty = [c for c in STANDARD[kind] if c not in ("completion", "label")]
    _check_columns(list(zip((n for n, _ in numbered), rows)), spec, STANDARD[kind], nonempty)
    return rows, kind


def _check_columns(numbered: list[tuple[int, dict]], spec: str, columns, nonempty=None) -> None:
    """Every row has `columns`; those in `nonempty` (default: all of them) hold something."""
    nonempty = columns if nonempty is None else nonempty
    for number, row in numbered:
        for column in columns or []:
            if column not in row:
                where = f"{spec}:{number}" if number else f"{spec} (a record)"
                raise InputError(f"{where}: missing column {column!r}")
            if column in nonempty and row[column] in (None, "", []):
                where = f"{spec}:{number}" if number else f"{spec} (a record)"
                raise InputError(f"{where}: column {column!r} is empty")


def read_texts(spec: str, text_field: str = "text") -> list[str]:
    return [str(row[text_field]) for row in read_rows(spec, [text_field])]


# which stages read each of TRL's formats (for `alignlab data inspect`)
STAGES_BY_FORMAT = {
    "preference": "dpo, reward", "prompt-completion": "sft", "messages": "sft",
    "unpaired-preference": "none yet (KTO's unpaired format; no KTO stage)", "text": "tokenizer, pretrain, unalign, classifier",
}


def describe(spec: str, data_format: str | None = None, tokenizer=None, rows: int = 2, width: int = 300) -> str:
    """What a data set becomes: its detected shape, the TRL format and row count, the stages that read it,
    and its first rows as they will see them (rendered with `tokenizer`'s chat format when given)."""
    from .formats import detect_or_say_where
    from .prompts import render, render_exchange

    numbered = _numbered(spec)
    shape = data_format or detect_or_say_where(numbered[0][1], spec)
    examples, kind = to_standard(numbered, spec, data_format)
    short = lambda text: (text if len(text) <= width else text[:width] + " ...")  # noqa: E731
    tail = lambda text: (text if len(text) <= width else "... " + text[-width:])  # noqa: E731  (where it ends matters)
    lines = [f"data: {spec}", f"shape: {shape} -> TRL format {kind}, {len(examples)} rows",
             f"read by: {STAGES_BY_FORMAT[kind]}"]
    for i, row in enumerate(examples[:rows], 1):
        lines.append(f"row {i}:")
        for key, value in row.items():
            shown = " | ".join(f"[{m['role']}] {m['content']}" for m in value) if isinstance(value, list) else str(value)
            lines.append(f"  {key}: {short(shown)!r}")
        if tokenizer is not None and "prompt" in row:
            lines.append(f"  as the model reads the prompt: {tail(render(tokenizer, row['prompt']))!r}")
            for key in ("completion", "chosen", "rejected"):
                if key in row:
                    lines.append(f"  as a reward model reads prompt + {key}: "
                                 f"{tail(render_exchange(tokenizer, row['prompt'], row[key]))!r}")
    return "\n".join(lines)

