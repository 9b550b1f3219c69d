"""Real data at the edge: read a local file or a hub data set into rows of TRL's standard formats.

Formats (by columns): `text`; `prompt`/`completion`; `prompt`/`chosen`/`rejected`; `messages`.
Local files: .jsonl, .json (a list of records), .csv, .txt (documents separated by blank
lines), each optionally .gz. A broken line, a missing column or an empty file is an
InputError that names the file and line.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

from .errors import InputError

FORMATS = {
    "preference": ["prompt", "chosen", "rejected"],
    "prompt-completion": ["prompt", "completion"],
    "messages": ["messages"],
    "text": ["text"],
}


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
    raise InputError(f"{path}: unsupported file type {kind!r} (use .jsonl, .json, .csv or .txt, optionally .gz)")


def _rows_from_hub(name: str, split: str) -> list[tuple[int, dict]]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as e:  # the hub raises many types; the user needs one line
        raise InputError(f"data: {name!r} is not a local file and could not be loaded from the hub "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return [(i + 1, dict(r)) for i, r in enumerate(dataset)]


def read_rows(spec: str, columns: list[str] | None = None, split: str = "train") -> list[dict]:
    """Rows of a local file or hub data set, each checked to have `columns` (non-empty)."""
    path = Path(spec).expanduser()
    local = path.exists() or spec.startswith((".", "/", "~")) or path.suffix in {".jsonl", ".json", ".csv", ".txt", ".gz"}
    if local and not path.exists():
        raise InputError(f"data: file {spec} does not exist")
    numbered = numbered_rows(path) if local else _rows_from_hub(spec, split)
    if not numbered:
        raise InputError(f"{spec}: no rows (the data set is empty)")
    for number, row in numbered:
        for column in columns or []:
            if column not in row:
                where = f"{spec}:{number}" if number else f"{spec} (a record)"
                raise InputError(f"{where}: missing column {column!r}")
            if row[column] in (None, "", []):
                where = f"{spec}:{number}" if number else f"{spec} (a record)"
                raise InputError(f"{where}: column {column!r} is empty")
    return [row for _, row in numbered]


def detect_format(rows: list[dict], source: str) -> str:
    """Which TRL format the rows are in, by their columns."""
    keys = set(rows[0])
    for name, columns in FORMATS.items():
        if set(columns) <= keys:
            return name
    raise InputError(f"{source}: columns {sorted(keys)} match no known format "
                     f"({'; '.join('/'.join(c) for c in FORMATS.values())})")


def read_texts(spec: str, text_field: str = "text") -> list[str]:
    return [str(row[text_field]) for row in read_rows(spec, [text_field])]
