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


@app.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", help="show the libraries' raw logs and bars")):
    """Options for every command."""
    from .console import configure

    configure(verbose)


def _run_stage(config_cls, stage_run, config: Optional[Path], sets: list[str], **shortcuts) -> None:
    import time

    from .config import load_config, parse_overrides

    overrides = parse_overrides(sets)
    # None: the option was not given; False: a flag (--resume) was not passed, and must not switch
    # off what the YAML says. Test identity, not `in (None, False)`: 0 == False, so `--seed 0` counts.
    given = {k: v for k, v in shortcuts.items() if v is not None and v is not False}
    overrides.update({k: (str(v) if isinstance(v, Path) else v) for k, v in given.items()})
    cfg = load_config(config_cls, config, overrides)
    started = time.time()
    path = stage_run(cfg)
    typer.echo(f"finished: {path} ({time.time() - started:.0f} s)")


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


@app.command()
def reward(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
           seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt,
           model: Optional[str] = typer.Option(None, help="causal LM to put a reward head on"),
           data: Optional[str] = typer.Option(None, help="'auto', a pair file, or a ranking file (prompt + responses)"),
           judge: Optional[str] = typer.Option(None, help="scorer that labels auto pairs")):
    """Bradley-Terry reward model (TRL RewardTrainer) with held-out pairwise accuracy."""
    from .config import RewardConfig
    from .stages import reward as stage

    _run_stage(RewardConfig, stage.run, config, sets, out=out, seed=seed, resume=resume, model=model, data=data,
               judge=judge)


@app.command()
def classifier(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
               seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt,
               model: Optional[str] = typer.Option(None, help="causal LM to put a two-label head on"),
               data: Optional[str] = typer.Option(None, help="a labelled file or hub data set"),
               label_field: Optional[str] = typer.Option(None, "--label-field")):
    """A two-label text classifier (e.g. IMDb sentiment) to use as a judge or reward: log-odds of positive."""
    from .config import ClassifierConfig
    from .stages import classifier as stage

    _run_stage(ClassifierConfig, stage.run, config, sets, out=out, seed=seed, resume=resume, model=model,
               data=data, label_field=label_field)


@app.command()
def ppo(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
        seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt,
        model: Optional[str] = typer.Option(None, help="the starting policy"),
        reward: Optional[str] = typer.Option(None, help="scorer spec: world | vader | RM folder | A+B | llm-judge:M")):
    """PPO as in InstructGPT: KL penalty to the reference, value head, GAE, clipping, optional ptx."""
    from .config import PPOConfig
    from .stages import ppo as stage

    _run_stage(PPOConfig, stage.run, config, sets, out=out, seed=seed, resume=resume, model=model, reward=reward)


def _group_policy(algorithm: str):
    def command(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
                seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt,
                model: Optional[str] = typer.Option(None, help="the starting policy"),
                reward: Optional[str] = typer.Option(None, help="scorer spec")):
        from .config import GRPOConfig
        from .stages import grpo as stage

        _run_stage(GRPOConfig, lambda cfg: stage.run(cfg, algorithm), config, sets, out=out, seed=seed,
                   resume=resume, model=model, reward=reward)

    command.__doc__ = f"{algorithm.upper()} through TRL's {algorithm.upper()}Trainer, with any scorer as the reward."
    return command


app.command("grpo")(_group_policy("grpo"))
app.command("rloo")(_group_policy("rloo"))


@app.command("best-of-n")
def best_of_n(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
              seed: Optional[int] = SeedOpt,
              model: Optional[str] = typer.Option(None, help="the sampling policy"),
              reward: Optional[str] = typer.Option(None, help="scorer that picks the best (proxy)"),
              gold: Optional[str] = typer.Option(None, help="scorer that evaluates the picks")):
    """Best-of-n sampling for several n, with the analytic and empirical KL of each."""
    from .config import BestOfNConfig
    from .stages import best_of_n as stage

    _run_stage(BestOfNConfig, stage.run, config, sets, out=out, seed=seed, model=model, reward=reward, gold=gold)


@app.command("rejection-sampling")
def rejection_sampling(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
                       seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt,
                       model: Optional[str] = typer.Option(None, help="the starting policy"),
                       reward: Optional[str] = typer.Option(None, help="scorer spec")):
    """Rounds of sample K, keep the best by the scorer, SFT on the kept ones (LLaMA-2 style)."""
    from .config import RejectionSamplingConfig
    from .stages import rejection_sampling as stage

    _run_stage(RejectionSamplingConfig, stage.run, config, sets, out=out, seed=seed, resume=resume, model=model,
               reward=reward)


@app.command()
def unalign(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
            seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt,
            model: Optional[str] = typer.Option(None, help="the aligned model to turn back toward a base"),
            data: Optional[str] = typer.Option(None, help="'world' or a pretraining-style text/jsonl file or hub set"),
            rank: Optional[int] = typer.Option(None, "--rank", help="LoRA rank")):
    """Reverse alignment: LoRA on pretraining-style text (causal-LM loss), merged into a standalone model."""
    from .config import UnalignConfig
    from .stages import unalign as stage

    _run_stage(UnalignConfig, stage.run, config, sets, out=out, seed=seed, resume=resume, model=model, data=data,
               rank=rank)


@app.command("eval")
def eval_(config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt, sets: list[str] = SetOpt,
          seed: Optional[int] = SeedOpt,
          model: Optional[str] = typer.Option(None, help="hub name, model folder or run folder"),
          reference: Optional[str] = typer.Option(None, help="reference model for KL(model || reference)"),
          prompts: Optional[str] = typer.Option(None, help="a prompt set (file or hub; 'prompt', optional 'label') "
                                                           "instead of the world's"),
          judge: Optional[str] = typer.Option(None, help="with --prompts: scorer spec to report the mean score of")):
    """Measure a model: the world's metrics, or on any prompt set a judge's score, KL, diversity and refusals."""
    from .config import EvalConfig
    from .stages import evaluate as stage

    _run_stage(EvalConfig, stage.run, config, sets, out=out, seed=seed, model=model, reference=reference,
               prompts=prompts, judge=judge)


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="folder for the runs and the report"),
         seed: int = typer.Option(0, "--seed"),
         micro: bool = typer.Option(False, "--micro", help="a shrunken smoke run (seconds; numbers mean little)")):
    """Pretrain a tiny base on the world, SFT it, DPO it, evaluate all three and write report.html."""
    from .experiments import demo as experiment

    summary = experiment.run(out, seed=seed, micro=micro)
    typer.echo(f"report: {out / 'report.html'}  ({summary['wall_seconds']:.0f} s)")


ExperimentSeed = typer.Option(0, "--seed")
MicroOpt = typer.Option(False, "--micro", help="a shrunken smoke run (numbers mean little)")
experiment_app = typer.Typer(no_args_is_help=True, help="Reproductions of published findings, one command each.")
app.add_typer(experiment_app, name="experiment")


PolicyOpt = typer.Option(None, "--policy", help="your starting policy (hub name or folder) instead of the world's "
                                                "SFT model; with --gold and --prompts")
GoldOpt = typer.Option(None, "--gold", help="scorer spec that plays the true reward: a classifier or reward-model "
                                            "folder, 'vader', 'llm-judge:MODEL', ...")
PromptsOpt = typer.Option(None, "--prompts", help="a file or hub set with a 'prompt' column (plain text or "
                                                  "messages), split into training and held-out prompts")


@experiment_app.command("overoptimization")
def experiment_overoptimization(
        out: Path = typer.Option(Path("runs/overoptimization"), "--out", "-o"),
        seed: int = ExperimentSeed,
        micro: bool = MicroOpt,
        policy: Optional[str] = PolicyOpt, gold: Optional[str] = GoldOpt, prompts: Optional[str] = PromptsOpt):
    """Gao et al. 2022: gold vs proxy reward under best-of-n and PPO, for proxies of several data sizes."""
    from .experiments import overoptimization

    overoptimization.run(out, seed=seed, micro=micro, policy=policy, gold=gold, prompts=prompts)
    typer.echo(f"report: {out / 'report.html'}")


def _corpus_experiment(name: str, out: Path, seed: int, micro: bool) -> None:
    """The corpus experiments (dedup, contamination, mixing) build their corpora with `alignlab data`."""
    try:
        import datatrove  # noqa: F401
    except ImportError as e:
        raise InputError(f"experiment {name}: needs the corpus pipeline's extra (pip install 'alignlab[data]'): {e}") from None
    import importlib

    summary = importlib.import_module(f"alignlab.experiments.{name}").run(out, seed=seed, micro=micro)
    for claim, ok in summary["verdicts"].items():
        typer.echo(f"{claim}: {'not testable' if ok is None else 'yes' if ok else 'no'}")
    typer.echo(f"report: {out / 'report.html'}")


@experiment_app.command("dedup")
def experiment_dedup(out: Path = typer.Option(Path("runs/dedup"), "--out", "-o"), seed: int = ExperimentSeed,
                     micro: bool = MicroOpt):
    """Lee et al. 2022: the same base pretrained on a raw and on a deduplicated corpus (exact + MinHash):
    canary exposure and recall, held-out bits per byte, 3 seeds. Needs the data extra."""
    _corpus_experiment("dedup", out, seed, micro)


@experiment_app.command("contamination")
def experiment_contamination(out: Path = typer.Option(Path("runs/contamination"), "--out", "-o"),
                             seed: int = ExperimentSeed, micro: bool = MicroOpt):
    """Held-out knowledge probes leaked 0/2/16 times into pretraining: the inflation of their accuracy, then
    the same base on the n-gram decontaminated corpus, 4 seeds. Needs the data extra."""
    _corpus_experiment("contamination", out, seed, micro)


@experiment_app.command("mixing")
def experiment_mixing(out: Path = typer.Option(Path("runs/mixing"), "--out", "-o"), seed: int = ExperimentSeed,
                      micro: bool = MicroOpt):
    """Reviews / encyclopedia / dialogues mixed in thirds or 60/20/20 by the data pipeline: per-domain held-out
    bits per byte of the same base on each mix, the trade-off plotted, 3 seeds. Needs the data extra."""
    _corpus_experiment("mixing", out, seed, micro)


@experiment_app.command("reversal")
def experiment_reversal(
        out: Path = typer.Option(Path("runs/reversal"), "--out", "-o"),
        seed: int = ExperimentSeed,
        micro: bool = MicroOpt,
        aligned: Optional[str] = typer.Option(None, "--aligned", help="your aligned model (hub name or folder) "
                                                                      "instead of the world lifecycle; with --text"),
        base: Optional[str] = typer.Option(None, "--base", help="its base model, for the gaps, KL and weight deltas"),
        text: Optional[str] = typer.Option(None, "--text", help="pretraining-style documents (text/jsonl 'text' "
                                                                "column or a hub set); a share is held out"),
        prompts: Optional[str] = typer.Option(None, "--prompts", help="prompts to measure refusals, the judge and KL "
                                                                      "on (e.g. XSTest's file)"),
        judge: Optional[str] = typer.Option(None, "--judge", help="scorer spec for the replies to --prompts")):
    """Undo alignment with a merged LoRA (gpt-oss-20b-base recipe) on the shared strong base, 4 seeds, two arms and
    two controls: back to base (P1-P5)? weight space; the tax table. $ALIGNLAB_CACHE: where the base is cached."""
    from .errors import InputError
    from .experiments import reversal

    if aligned or text:
        if not (aligned and text):
            raise InputError(f"{'--text' if aligned else '--aligned'}: your own reversal needs --aligned and --text")
        summary = reversal.run_own(out, aligned, text, base=base, prompts=prompts, judge=judge, seed=seed,
                                   micro=micro)
    elif base or prompts or judge:
        raise InputError("--aligned: --base, --prompts and --judge measure your own aligned model; name it")
    else:
        summary = reversal.run(out, seed=seed, micro=micro)
    for claim, ok in summary["verdicts"].items():
        typer.echo(f"{claim}: {'not testable' if ok is None else 'yes' if ok else 'no'}")
    typer.echo(f"report: {out / 'report.html'}")


@experiment_app.command("frontier")
def experiment_frontier(
        out: Path = typer.Option(Path("runs/frontier"), "--out", "-o"),
        seed: int = ExperimentSeed,
        micro: bool = MicroOpt,
        data: str = typer.Option("auto", "--data", help="world | imdb | both | auto (both when --imdb is found)"),
        imdb: Path | None = typer.Option(None, "--imdb", help="folder with the aclImdb JSONL files "
                                                              "(default $ALIGNLAB_SHARED_DATA/imdb, else ../shared/data/imdb)"),
        policy: Optional[str] = PolicyOpt, gold: Optional[str] = GoldOpt, prompts: Optional[str] = PromptsOpt):
    """DPO paper: the reward-vs-KL frontier of DPO, PPO, preferred-FT and best-of-n (world and IMDb sentiment)."""
    from .experiments import frontier, imdb as imdb_data

    imdb = imdb or imdb_data.default_dir()
    if data == "auto" and not (policy or gold or prompts):
        data = "both" if (imdb / imdb_data.UNSUP).is_file() else "world"
        typer.echo(f"frontier: data {data}" + ("" if data == "both" else f" (no IMDb files in {imdb})"))
    frontier.run(out, seed=seed, micro=micro, data=data, imdb=imdb, policy=policy, gold=gold, prompts=prompts)
    typer.echo(f"report: {out / 'report.html'}")


elasticity_app = typer.Typer(no_args_is_help=True, help="Ji et al. 2025, 'Language Models Resist Alignment': "
                                                       "resistance, rebound, scaling, the compression view.")
app.add_typer(elasticity_app, name="elasticity")
ElasticityOut = typer.Option(Path("runs/elasticity"), "--out", "-o", help="folder for the runs and the report")
ElasticityData = typer.Option("world", "--data", help="world | imdb (DATA_ROOT/imdb) | safety (DATA_ROOT's hh-rlhf "
                                                    "and PKU-SafeRLHF files) | files (your --positive/--negative)")
ElasticityRoot = typer.Option(None, "--data-root", help="folder of the real data sets, read in place "
                                                        "(default $ALIGNLAB_SHARED_DATA, else ../shared/data)")


def _elasticity(parts: tuple[str, ...], out: Path, seed: int, micro: bool, data: str, data_root: Path | None,
                **own) -> None:
    from .experiments import elasticity

    summary = elasticity.run(out, parts=parts, seed=seed, micro=micro, data=data, data_root=data_root, **own)
    for claim, ok in summary["verdicts"].items():
        unmeasured = "not run" if summary["verdict_details"][claim] == "not run" else "not testable"
        typer.echo(f"{claim}: {unmeasured if ok is None else 'supported' if ok else 'not reproduced'}")
    typer.echo(f"report: {out / 'report.html'}  ({summary['wall_seconds']:.0f} s)")


ELASTICITY_COMMANDS = {
    "resistance": "Forward (earlier slice on a later slice's answers) vs inverse alignment losses, over 6 seeds.",
    "rebound": "Negative fine-tuning after 0..N positive examples, 3 seeds: log-odds and KL-to-base probes, "
               "two-phase return to the base (R1, R1'), examples to the KL minimum against the amount (R2).",
    "scaling": "Rebound strength against pretraining tokens (R1' on the strong base's checkpoints) and, "
               "exploratory, model size.",
    "compression": "Change in bits per byte on pretraining vs alignment text under a perturbation, against |D_p|/|D_a|.",
    "all": "Every part, sharing runs, with one summary.json and report.html.",
}


def _elasticity_command(name: str):
    parts = ("resistance", "rebound", "scaling", "compression") if name == "all" else (name,)

    def command(out: Path = ElasticityOut, seed: int = ExperimentSeed, micro: bool = MicroOpt,
                data: str = ElasticityData, data_root: Path | None = ElasticityRoot,
                model: Optional[str] = typer.Option(None, "--model", help="your base model (hub name or folder) "
                                                                          "instead of the setting's tiny base"),
                judge: Optional[str] = typer.Option(None, "--judge", help="scorer spec replacing the setting's judge"),
                positive: Optional[str] = typer.Option(None, "--positive", help="--data files: alignment examples "
                                                       "(any SFT format; a preference file gives both kinds)"),
                negative: Optional[str] = typer.Option(None, "--negative", help="--data files: contrary examples"),
                text: Optional[str] = typer.Option(None, "--text", help="--data files: fresh pretraining-style text"),
                pretrain_tokens: Optional[int] = typer.Option(None, "--pretrain-tokens",
                                                              help="--model's pretraining tokens (compression)")):
        _elasticity(parts, out, seed, micro, data, data_root, model=model, judge=judge, positive=positive,
                    negative=negative, text=text, pretrain_tokens=pretrain_tokens)

    command.__doc__ = ELASTICITY_COMMANDS[name]
    return command


for _name in ELASTICITY_COMMANDS:
    elasticity_app.command(_name)(_elasticity_command(_name))


data_app = typer.Typer(no_args_is_help=True, help="Build a pretraining corpus (alignlab data --config FILE), or look "
                                                  "at data before training on it (alignlab data inspect).")
app.add_typer(data_app, name="data")


@data_app.callback(invoke_without_command=True)
def data(ctx: typer.Context, config: Optional[Path] = ConfigOpt, out: Optional[str] = OutOpt,
         sets: list[str] = SetOpt, seed: Optional[int] = SeedOpt, resume: bool = ResumeOpt):
    """Build a pretraining corpus: language ID, quality filters, perplexity filter, exact and MinHash dedup,
    decontamination, mixing by token ratio (recipes/data/*.yaml). Needs the extra: pip install 'alignlab[data]'."""
    if ctx.invoked_subcommand is not None:
        return
    from .config import CorpusConfig

    try:
        import datatrove  # noqa: F401

        from .stages import corpus as stage
    except ImportError as e:
        raise InputError(f"data: the corpus pipeline needs its extra (pip install 'alignlab[data]'): {e}") from None
    _run_stage(CorpusConfig, stage.run, config, sets, out=out, seed=seed, resume=resume)


@data_app.command("inspect")
def data_inspect(source: str = typer.Argument(..., help="a local file or a hub data set (name[:config][@split])"),
                 model: Optional[str] = typer.Option(None, "--model", help="show prompts in this model's chat format"),
                 data_format: Optional[str] = typer.Option(None, "--format", help="the shape, when detection should "
                                                                               "not decide (e.g. alpaca, hh-rlhf)"),
                 rows: int = typer.Option(2, "--rows", help="how many rows to show")):
    """The data's detected shape, its TRL format and row count, the stages that read it, and its first rows as
    they will see them."""
    from .data import describe
    from .models import load_tokenizer

    tokenizer = load_tokenizer(model) if model else None
    typer.echo(describe(source, data_format, tokenizer, rows))


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
    finally:
        if "torch" in sys.modules:  # only a command that ran something can have set up several processes
            from .distributed import close

            close()


if __name__ == "__main__":
    main()
