"""The run-folder contract.

A run is a folder:

    config.yaml       the resolved config, written first
    metrics.jsonl     one JSON object per logged step, appended and flushed as training goes
    samples.jsonl     generated samples, when the stage makes any
    model/            the result (save_pretrained, safetensors), when the stage makes a model
    checkpoints/      periodic Trainer checkpoints, for --resume
    status.json       {"status": "finished" | "failed", ...}, written last and atomically

A folder without status "finished" is an unfinished run: resume it or remove it; it is never
read as a result. Under `accelerate launch` only the main process writes these files.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml

from .errors import InputError

STATUS_FILE = "status.json"


def is_main_process() -> bool:
    from .distributed import rank_and_count

    return rank_and_count()[0] == 0


def write_summary(folder: Path, summary: dict) -> None:
    """An experiment's summary.json, written by the main process only (under `accelerate launch` every
    process runs the experiment's code; the stages inside write their run folders from the main one)."""
    if is_main_process():
        _atomic_write(Path(folder) / "summary.json", json.dumps(summary, indent=2))


def read_status(path: Path) -> dict | None:
    try:
        return json.loads((Path(path) / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_finished(path: Path) -> bool:
    status = read_status(path)
    return bool(status) and status.get("status") == "finished"


def resolve_artifact(path: Path, what: str = "model") -> Path:
    """The folder to load from: a plain HF folder as is, or a finished run's `model/` (or `tokenizer/`)."""
    path = Path(path)
    if (path / "config.yaml").exists() and not (path / "config.json").exists():  # a run folder
        if not is_finished(path):
            raise InputError(f"{what}: run folder {path} is unfinished (no finished status.json); "
                             "resume it or remove it")
        for sub in ([what, "model"] if what != "model" else ["model"]):
            if (path / sub).is_dir():
                return path / sub
        raise InputError(f"{what}: run folder {path} has no {what}/ folder")
    return path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Run:
    """An open run folder. `Run.start` checks the folder, writes config.yaml and returns it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.main = is_main_process()

    @classmethod
    def start(cls, path: Path, config: dict, resume: bool = False) -> "Run":
        run = cls(path)
        if run.main:
            run._check_and_claim(config, resume)
        return run

    def _check_and_claim(self, config: dict, resume: bool) -> None:
        # the nearest part of the path that exists must be a folder (a file there: one line, not a traceback)
        existing = next((p for p in [self.path, *self.path.parents] if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise InputError(f"out: {existing} is a file, not a folder; choose another --out")
        status = read_status(self.path)
        if status and status.get("status") == "finished":
            raise InputError(f"out: {self.path} is already a finished run; choose another --out or remove it")
        if self.path.exists() and any(self.path.iterdir()) and not resume:
            raise InputError(f"out: {self.path} holds an unfinished run; pass --resume to continue it or remove it")
        if resume and (self.path / "config.yaml").exists():
            old = yaml.safe_load((self.path / "config.yaml").read_text()) or {}
            # stop rules may change: a paused run is resumed with relaxed (or tighter) rules
            free = {"resume", "monitor"}
            changed = sorted(k for k in set(old) | set(config) if k not in free and old.get(k) != config.get(k))
            if changed:
                raise InputError(f"resume: config field {changed[0]!r} differs from the run being resumed "
                                 f"({old.get(changed[0])!r} then, {config.get(changed[0])!r} now)")
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / STATUS_FILE).unlink(missing_ok=True)  # a failed run being resumed is unfinished again
        _atomic_write(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        self.started = time.time()

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def log(self, record: dict) -> None:
        if self.main:
            with open(self.path / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def write_samples(self, rows: list[dict]) -> None:
        self.write_jsonl("samples.jsonl", rows)

    def write_jsonl(self, name: str, rows: list[dict]) -> None:
        if self.main:
            write_jsonl(self.path / name, rows)

    def write_json(self, name: str, data: dict) -> None:
        if self.main:
            _atomic_write(self.path / name, json.dumps(data, indent=2))

    def finish(self, **summary) -> None:
        self._status("finished", summary)

    def fail(self, message: str, **details) -> None:
        self._status("failed", {"message": message, **details})

    def pause(self, message: str, **details) -> None:
        """Stopped on purpose (a stop rule fired): unfinished, resumable, with the reason."""
        self._status("paused", {"message": message, **details})

    def _status(self, status: str, details: dict) -> None:
        if self.main:
            record = {"status": status, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      "wall_seconds": round(time.time() - getattr(self, "started", time.time()), 2), **details}
            _atomic_write(self.path / STATUS_FILE, json.dumps(record, indent=2))


def write_jsonl(file: Path, rows: list[dict]) -> str:
    """Rows as JSONL, written whole or not at all (folders made as needed); the path, for configs."""
    Path(file).parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(Path(file), "".join(json.dumps(row) + "\n" for row in rows))
    return str(file)


def read_jsonl(file: Path) -> list[dict]:
    """The records of a JSONL file alignlab wrote (empty when there is none)."""
    file = Path(file)
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().split("\n") if line.strip()]


def read_metrics(path: Path) -> list[dict]:
    """The records of a run's metrics.jsonl."""
    return read_jsonl(Path(path) / "metrics.jsonl")
