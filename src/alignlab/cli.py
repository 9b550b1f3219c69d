"""The `alignlab` command line: one command per stage and experiment, each thin.

Every stage command takes `--config FILE.yaml`, `--set key=value` (repeatable, applied on top)
and a few shortcut options for the fields people change most. Bad input prints one line
naming the file, line or field and exits 2; a training failure exits 1.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import InputError, TrainingFailed

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="alignlab: pretrain, align, unalign and measure language models.")

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file", dir_okay=False)
SetOpt = typer.Option([], "--set", help="override a config field: key=value (repeatable)")
OutOpt = typer.Option(None, "--out", "-o", help="run folder to write")
SeedOpt = typer.Option(None, "--seed", help="random seed")
ResumeOpt = typer.Option(False, "--resume", help="continue an unfinished run from its last checkpoint")


def _run_stage(config_cls, stage_run, config: Optional[Path], sets: list[str], **shortcuts) -> None:
    from .config import load_config, parse_overrides

    overrides = parse_overrides(sets)
    overrides.update({k: (str(v) if isinstance(v, Path) else v) for k, v in shortcuts.items() if v not in (None, False)})
    cfg = load_config(config_cls, config, overrides)
    path = stage_run(cfg)
    typer.echo(f"finished: {path}")


@app.command()
def tokenizer(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
              data: Optional[str] = typer.Option(None, help="'world', a text/jsonl file, or a hub data set"),
              vocab_size: Optional[int] = typer.Option(None, "--vocab-size")):
    """Train a byte-level BPE tokenizer with the chat template."""
    from .config import TokenizerConfig
    from .stages import tokenizer as stage

    _run_stage(TokenizerConfig, stage.run, config, sets, out=out, data=data, vocab_size=vocab_size)


@app.command()
def pretrain(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
             seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt,
             model: Optional[str] = typer.Option(None, help="tiny-1m | tiny-4m | tiny-16m, or a model to continue"),
             tokenizer: Optional[str] = typer.Option(None, help="tokenizer folder or run (default: train one)"),
             data: Optional[str] = typer.Option(None, help="'world', a text/jsonl file, or a hub data set"),
             max_steps: Optional[int] = typer.Option(None, "--max-steps")):
    """Causal-LM pretraining on packed sequences (warmup + cosine, accumulation, clipping, checkpoints)."""
    from .config import PretrainConfig
    from .stages import pretrain as stage

    _run_stage(PretrainConfig, stage.run, config, sets, out=out, seed=seed, resume=resume, model=model,
               tokenizer=tokenizer, data=data, max_steps=max_steps)


@app.command()
def sft(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
        seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt,
        model: Optional[str] = typer.Option(None, help="hub name, model folder or run folder"),
        data: Optional[str] = typer.Option(None, help="'world' or a prompt/completion or messages file")):
    """Supervised fine-tuning, loss on completions only (TRL SFTTrainer)."""
    from .config import SFTConfig
    from .stages import sft as stage

    _run_stage(SFTConfig, stage.run, config, sets, out=out, seed=seed, resume=resume, model=model, data=data)


@app.command()
def dpo(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
        seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt,
        model: Optional[str] = typer.Option(None, help="hub name, model folder or run folder"),
        data: Optional[str] = typer.Option(None, help="'auto' (sample and judge) or a prompt/chosen/rejected file"),
        judge: Optional[str] = typer.Option(None, help="'world' (gold judges) or 'vader'"),
        beta: Optional[float] = typer.Option(None)):
    """Direct Preference Optimization (TRL DPOTrainer), on a pair file or judge-ranked samples."""
    from .config import DPOConfig
    from .stages import dpo as stage

    _run_stage(DPOConfig, stage.run, config, sets, out=out, seed=seed, resume=resume, model=model, data=data,
               judge=judge, beta=beta)


@app.command("eval")
def eval_(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
          seed: Optional[int] = SeedOpt,
          model: Optional[str] = typer.Option(None, help="hub name, model folder or run folder"),
          reference: Optional[str] = typer.Option(None, help="reference model for KL(model || reference)")):
    """Measure a model: reward, KL, diversity, refusals, knowledge, bits per byte, canaries."""
    from .config import EvalConfig
    from .stages import evaluate as stage

    _run_stage(EvalConfig, stage.run, config, sets, out=out, seed=seed, model=model, reference=reference)


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="folder for the runs and the report"),
         seed: int = typer.Option(0, "--seed"),
         micro: bool = typer.Option(False, "--micro", help="a shrunken smoke run (seconds; numbers mean little)")):
    """Pretrain a tiny base on the world, SFT it, DPO it, evaluate all three and write report.html."""
    from .experiments import demo as experiment

    summary = experiment.run(out, seed=seed, micro=micro)
    typer.echo(f"report: {out / 'report.html'}  ({summary['wall_seconds']:.0f} s)")


@app.command()
def world(out: Path = typer.Option(..., "--out", "-o", help="folder to write the world's data sets into"),
          docs: int = typer.Option(20000, help="pretraining documents"),
          seed: int = typer.Option(0, "--seed", help="world seed")):
    """Write the synthetic world's data sets as JSONL files (corpus, SFT demos, prompt sets)."""
    from .experiments.demo import export_world

    for path in export_world(out, docs, seed):
        typer.echo(str(path))


def main() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        app()
    except InputError as e:
        typer.echo(f"alignlab: error: {e}", err=True)
        sys.exit(2)
    except TrainingFailed as e:
        typer.echo(f"alignlab: training failed: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
