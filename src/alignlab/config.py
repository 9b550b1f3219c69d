"""Validated configs of every stage: YAML file in, CLI `--set key=value` overrides on top.

Unknown or mistyped fields are errors (extra="forbid"), reported on one line that names the
file and the field. Defaults are the micro-scale settings that run on a laptop CPU.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InputError


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    out: str = Field(description="run folder to write")
    seed: int = 0
    world_seed: int = Field(0, description="seed of the synthetic world (entities, splits, canaries)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                        description="auto | cpu | cuda | cuda:N; auto: this process's GPU if any, else CPU")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="compute dtype; auto: bfloat16 on a GPU that has it, else float32")


class TrainConfig(StageConfig):
    """Optimisation settings shared by the Trainer-based stages."""

    resume: bool = False
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_steps: int = Field(200, ge=1)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    save_steps: int = Field(100, ge=1)
    logging_steps: int = Field(10, ge=1)
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: "
                                                           "less memory, ~30% more time")
    trainer: dict = Field({}, description="any other TrainingArguments / TRL config field, passed through as is "
                                          "(e.g. report_to: tensorboard); checked against the installed class")
    trust_remote_code: bool = False


class LoraSettings(BaseModel):
    """Train a LoRA adapter (PEFT) instead of every weight: what one GPU needs to fit a real model. The
    reference of DPO and PPO is then the model with the adapter switched off, as TRL does, so no second
    copy is held."""

    model_config = ConfigDict(extra="forbid")
    rank: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0, description="the update is scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module-name suffixes, or every Linear/Conv1D layer but the output head")
    merge: bool = Field(True, description="merge the adapter into the weights on save (a standalone model); "
                                          "false: save the adapter alone")
    quantize: Literal["none", "4bit"] = Field("none", description="4bit: QLoRA, the frozen base in NF4 "
                                                                  "(bitsandbytes, CUDA only)")

    @model_validator(mode="after")
    def _a_4bit_base_is_not_merged(self):
        if self.quantize == "4bit" and self.merge:
            raise ValueError("a 4-bit base cannot be merged without loss; set lora.merge: false (the adapter is "
                             "saved) and merge it into a bf16 copy of the base afterwards")
        return self


LoraOption = Field(None, description="LoRA settings (e.g. --set lora.rank=16); none: full fine-tuning")
DataFormatOption = Field(None, description="the data's shape when detection from its columns should not decide: "
                                           "alpaca, sharegpt, sharegpt-dpo, hh-rlhf, pku, pku-saferlhf, kto-messages, "
                                           "or a TRL format (preference, prompt-completion, messages, ...)")


class TokenizerConfig(StageConfig):
    data: str = Field("world", description="'world', a local text/jsonl file, or a hub dataset name")
    text_field: str = "text"
    vocab_size: int = Field(1024, ge=300)
    world_docs: int = Field(20000, ge=1)


class SourceSettings(BaseModel):
    """One named source of raw documents for `alignlab data`."""

    model_config = ConfigDict(extra="forbid")
    name: str
    path: str = Field(description="'world' (the world's documents), 'world-raw' (a crawl with planted junk, "
                                  "foreign text, duplicates and leaked eval items, each labelled), a local "
                                  ".jsonl/.json/.csv/.txt/.parquet file (optionally .gz), a folder of them, or a "
                                  "hub data set")
    text_field: str = "text"
    docs: int = Field(2000, ge=1, description="world / world-raw: how many documents (world-raw: clean pages)")
    max_docs: int | None = Field(None, ge=1, description="read at most this many")
    ratio: float | None = Field(None, gt=0, le=1, description="share of the mix's tokens (all sources or none)")
    max_epochs: float = Field(1.0, gt=0, description="mixing may repeat this source's kept tokens at most this often")


class CorpusConfig(StageConfig):
    """`alignlab data`: read -> language -> quality -> perplexity -> exact dedup -> MinHash -> decontaminate -> mix.
    A step set to null is skipped."""

    resume: bool = False
    sources: list[SourceSettings] = Field(min_length=1)
    language: dict | None = Field({"keep": ["en"], "min_probability": 0.5},
                                  description="py3langid (offline): keep documents whose language is in `keep` "
                                              "with at least this normalised probability")
    quality: dict | None = Field(
        {"gopher_quality": {}, "gopher_repetition": {}, "c4": {"filter_no_terminal_punct": False}, "fineweb": {}},
        description="datatrove filters by name, each with its constructor's keyword arguments (thresholds); a "
                    "filter left out is not run")
    perplexity: dict | None = Field(None, description="{model: PATH | 'auto', reference: FILE | 'world', "
                                                      "drop_quantile: 0.1 | max_nll: nats/token, max_tokens: 256}; "
                                                      "auto pretrains a tiny LM on the reference text (CCNet-style)")
    exact_dedup: bool = True
    minhash: dict | None = Field({"n_grams": 5, "num_buckets": 14, "hashes_per_bucket": 8},
                                 description="datatrove's MinhashConfig fields")
    decontaminate: dict | None = Field({"n": 13, "against": ["world"], "action": "drop"},
                                       description="drop (or only report) documents sharing a word n-gram with the "
                                                   "eval sets in `against`: 'world' (its held-out items) or files")
    total_tokens: int | None = Field(None, ge=1, description="mix size; default: the largest the epoch caps allow")
    shard_docs: int = Field(100_000, ge=1)
    workers: int = Field(2, ge=1, description="processes for language ID and the quality filters")
    dropped_examples: int = Field(3, ge=0, description="dropped documents shown per reason in stats and report")

    @model_validator(mode="after")
    def _ratios(self):
        ratios = [s.ratio for s in self.sources]
        if any(r is not None for r in ratios):
            if any(r is None for r in ratios):
                raise ValueError("sources: give every source a ratio, or none")
            if abs(sum(ratios) - 1) > 1e-6:
                raise ValueError(f"sources: ratios sum to {sum(ratios):g}, not 1")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("sources: two sources share a name")
        return self


class PretrainConfig(TrainConfig):
    model: str = Field("tiny-1m", description="a named tiny config (random init) or a model to continue")
    tokenizer: str | None = Field(None, description="tokenizer folder, run folder or hub name (for tiny-*)")
    data: str = Field("world", description="'world', a local text/jsonl file, or a hub dataset name")
    text_field: str = "text"
    world_docs: int = Field(20000, ge=1)
    canary_repeats: list[int] = [1, 4, 16]
    passages: bool = Field(False, description="world: insert the world's book passages (8/32/128 times each) and "
                                              "chat quotes of the train ones, for memorization studies")
    block_size: int = Field(128, ge=8)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.1, ge=0)
    max_steps: int = Field(600, ge=1)
    warmup_steps: int = Field(50, ge=0)
    save_total_limit: int = Field(2, ge=1)


class SFTConfig(TrainConfig):
    model: str
    lora: LoraSettings | None = LoraOption
    data_format: str | None = DataFormatOption
    data: str = Field("world", description="'world' or a prompt/completion or messages file / hub name")
    world_examples: int = Field(2000, ge=1)
    positive_share: float = Field(0.6, ge=0, le=1, description="world: share of positive review demos")
    refusal_share: float = Field(0.8, ge=0, le=1, description="world: share of harmful requests refused")
    recitation_share: float = Field(0.0, ge=0, le=1, description="world: share of demos declining to recite a "
                                                                 "train passage (see pretrain --passages)")
    max_length: int = Field(128, ge=8)
    max_steps: int = Field(100, ge=1)
    lr: float = Field(3e-4, gt=0)


class DPOConfig(TrainConfig):
    model: str
    lora: LoraSettings | None = LoraOption
    data_format: str | None = DataFormatOption
    reference: str | None = Field(None, description="reference model; default: the starting model")
    data: str = Field("auto", description="'auto' (sample and rank with the judge) or a prompt/chosen/rejected file")
    judge: str = Field("world", description="scorer spec that ranks auto pairs (see scoring.make_scorer)")
    prompts: str = Field("world", description="for data=auto: 'world' or a file/hub set with a 'prompt' column")
    n_prompts: int = Field(512, ge=1)
    samples_per_prompt: int = Field(4, ge=2)
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0)
    beta: float = Field(0.1, gt=0)
    max_length: int = Field(128, ge=8)
    max_steps: int = Field(100, ge=1)
    lr: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(10, ge=0)


class EvalConfig(StageConfig):
    model: str
    reference: str | None = Field(None, description="model for KL(model || reference); none: KL not computed")
    prompts: str | None = Field(None, description="a prompt set to measure on instead of the world: a file or hub set "
                                                  "with a 'prompt' column (text is asked as a user message) and "
                                                  "optionally 'label' (e.g. XSTest's safe/unsafe)")
    judge: str | None = Field(None, description="with prompts: scorer spec whose mean score (and standard error) "
                                                "is reported")
    refusal_judge: str | None = Field(None, description="with prompts: scorer spec that flags a refusal when its "
                                                        "score is > 0; default: XSTest's string match")
    n_prompts: int = Field(64, ge=1, description="held-out prompts per prompt set (with prompts: a seeded subsample "
                                                 "of at most this many)")

    @model_validator(mode="after")
    def _judges_need_prompts(self):
        for name in ("judge", "refusal_judge"):
            if getattr(self, name) and not self.prompts:
                raise ValueError(f"{name} is read with prompts: name a prompt set (--prompts FILE)")
        return self
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0)
    heldout_docs: int = Field(400, ge=1)
    heldout_text: str | None = Field(None, description="a local text/jsonl file for bits per byte instead of the world's")
    canary_candidates: int = Field(500, ge=10)
    canary_repeats: list[int] = Field([1, 4, 16], description="as in pretraining: which canaries were inserted")
    batch_size: int = Field(64, ge=1)
    benchmarks: list[Literal["hellaswag", "piqa", "mmlu", "truthfulqa_mc1"]] = Field(
        [], description="multiple-choice benchmarks read from data_root")
    benchmark_items: int = Field(200, ge=1, description="seeded subsample per benchmark")
    harness_tasks: list[str] = Field([], description="lm-evaluation-harness task names (pip install "
                                                     "'alignlab[harness]'): its own prompts and metrics, comparable "
                                                     "with published numbers")
    harness_include: str | None = Field(None, description="a folder of task YAMLs of your own for the harness")
    harness_limit: int | None = Field(None, ge=1, description="at most this many items per harness task")
    harness_fewshot: int | None = Field(None, ge=0, description="few-shot examples (default: each task's own)")
    xstest: bool = Field(False, description="over-refusal on XSTest's safe prompts (and refusal on its unsafe ones)")
    data_root: str | None = Field(None, description="folder of the real data sets (default $ALIGNLAB_SHARED_DATA "
                                                    "or ../shared/data)")
    trust_remote_code: bool = False


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(f"{where}: malformed YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` strings from the CLI; values are read as YAML (so 3e-4, true, [1, 2] work)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--set {pair!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"--set {pair!r}: value is not valid YAML") from None
    return out


def load_config(cls: type[StageConfig], path: Path | None = None, overrides: dict | None = None) -> StageConfig:
    """Build a stage config from an optional YAML file plus overrides; one-line errors name the field."""
    data = _read_yaml(path) if path else {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        *parents, leaf = key.split(".")  # "monitor.max_kl=8" sets a field of a nested config
        node = data
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise InputError(f"--set {key}: {parent!r} is not a nested config")
        node[leaf] = value
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        top = err["loc"][0] if err["loc"] else None
        from_cli = any(k.split(".")[0] == top for k in (overrides or {}))
        source = "--set" if from_cli else str(path) if path else "config"
        message = "unknown field (check its spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        raise InputError(f"{source}: field '{field}': {message}") from None


# ----- RLHF stages (reward models, PPO, GRPO/RLOO, best-of-n, rejection sampling) ---------------
# A scorer spec (the `reward` and `gold` fields) is one of: "world" (exact gold judges), "world-graded"
# (the same, reviews scored by distinct sentiment words), "vader",
# a reward-model folder or run folder, or several of those joined by "+" for an ensemble.


class MonitorConfig(BaseModel):
    """Reward-hacking stop rules, checked every logged step of an RL stage; None = off."""

    model_config = ConfigDict(extra="forbid")
    max_kl: float | None = Field(None, gt=0, description="stop when KL to the reference (nats/sequence) exceeds this")
    min_distinct_2: float | None = Field(None, ge=0, le=1, description="stop when batch distinct-2 falls below this")


class RewardConfig(TrainConfig):
    model: str = Field(description="causal LM to put a sequence-classification head on")
    lora: LoraSettings | None = LoraOption
    data_format: str | None = DataFormatOption
    data: str = Field("auto", description="'auto' (policy samples labelled by `judge`), a pair file, "
                                          "or a ranking file (prompt + responses best-first)")
    policy: str | None = Field(None, description="for data=auto: model to sample from (default: `model`)")
    judge: str = Field("world", description="scorer spec that labels auto pairs")
    prompts: str = "world"
    n_prompts: int = Field(512, ge=1)
    samples_per_prompt: int = Field(4, ge=2)
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0)
    label_noise: float = Field(0.0, ge=0, le=0.5, description="share of auto pairs flipped (a noisier proxy)")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="pairs held out for pairwise accuracy")
    max_length: int = Field(128, ge=8)
    max_steps: int = Field(200, ge=1)
    lr: float = Field(3e-4, gt=0)


class ClassifierConfig(TrainConfig):
    model: str = Field(description="causal LM to put a two-label classification head on (e.g. the base)")
    data: str = Field(description="a labelled file or hub data set")
    text_field: str = "text"
    label_field: str = "label"
    positive_label: str | int | None = Field(None, description="the positive label (default: the larger value)")
    max_examples: int | None = Field(None, ge=2, description="use a seeded random subset of this many rows")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="rows held out for accuracy")
    max_length: int = Field(128, ge=8)
    max_steps: int = Field(300, ge=1)
    lr: float = Field(3e-4, gt=0)


class RLConfig(TrainConfig):
    """What every online RL stage shares: a scorer as reward, prompts to sample on, monitors."""

    model: str = Field(description="the starting policy (usually an SFT model)")
    lora: LoraSettings | None = LoraOption
    reward: str = "world"
    prompts: str = "world"
    n_prompts: int = Field(512, ge=1)
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0)
    monitor: MonitorConfig = MonitorConfig()
    max_steps: int = Field(60, ge=1, description="RL iterations")
    lr: float = Field(5e-5, gt=0)
    warmup_steps: int = Field(0, ge=0)
    save_steps: int = Field(20, ge=1)
    logging_steps: int = Field(1, ge=1)


class PPOConfig(RLConfig):
    reference: str | None = Field(None, description="frozen reference for the KL penalty (default: `model`)")
    rollout_batch: int = Field(32, ge=1, description="prompts per PPO iteration")
    ppo_epochs: int = Field(2, ge=1)
    mini_batch: int = Field(16, ge=1)
    kl_coef: float = Field(0.02, ge=0, description="beta of the per-token KL penalty")
    adaptive_kl: bool = False
    target_kl: float = Field(6.0, gt=0, description="adaptive controller's target KL per sequence")
    kl_horizon: int = Field(10000, ge=1)
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    cliprange: float = Field(0.2, gt=0)
    cliprange_value: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0)
    ptx_coef: float = Field(0.0, ge=0, description="gamma of PPO-ptx: weight of the pretraining LM loss")
    ptx_data: str = Field("world", description="pretraining text for PPO-ptx: 'world' or a text file")
    # three of InstructGPT's / "The N+ Implementation Details of RLHF with PPO" options, off by default
    critic: str = Field("shared", description="'shared': a value head on the policy's last hidden state; 'reward': "
                                              "a separate critic initialised from the reward model (InstructGPT); "
                                              "or another reward-model folder to initialise it from")
    missing_eos_penalty: float | None = Field(None, ge=0, description="subtracted from the score of a completion "
                                                                      "cut off before it ended its turn")
    whiten_rewards: bool = Field(False, description="scale the per-token rewards to unit variance before GAE")

    @model_validator(mode="after")
    def _no_trainer_batch_fields(self):
        # PPO's batches are rollout_batch (prompts per iteration) and mini_batch (rows per update);
        # accepting the Trainer stages' batch_size / grad_accum and ignoring them would mislead
        for name in ("batch_size", "grad_accum"):
            if name in self.model_fields_set:
                raise ValueError(f"{name} is not a PPO setting; use rollout_batch and mini_batch")
        if self.critic == "reward" and (self.reward in ("world", "vader") or ":" in self.reward or "+" in self.reward):
            raise ValueError(f"critic 'reward' needs a reward-model folder as the reward, not {self.reward!r}; "
                             "name a reward-model folder as the critic instead")
        return self


class GRPOConfig(RLConfig):
    """GRPO and RLOO (TRL's trainers) with any scorer as the reward function.
    batch_size counts prompts per device and micro-step; each gets num_generations completions."""

    algorithm: Literal["grpo", "rloo"] = "grpo"
    num_generations: int = Field(4, ge=2)
    beta: float = Field(0.02, ge=0, description="KL coefficient to the reference")


class BestOfNConfig(StageConfig):
    model: str
    reward: str = Field("world", description="the scorer that picks the best sample (the proxy)")
    gold: str | None = Field(None, description="a second scorer to evaluate the picks with (the gold)")
    prompts: str = "world"
    n_prompts: int = Field(64, ge=1)
    n: list[Annotated[int, Field(ge=1)]] = Field([1, 2, 4, 8, 16], min_length=1,
                                                 description="best-of-n for each n; samples are shared across n")
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0)
    batch_size: int = Field(64, ge=1)
    trust_remote_code: bool = False


class RejectionSamplingConfig(TrainConfig):
    model: str
    lora: LoraSettings | None = LoraOption
    reward: str = "world"
    prompts: str = "world"
    n_prompts: int = Field(256, ge=1)
    rounds: int = Field(3, ge=1)
    samples_per_prompt: int = Field(4, ge=1)
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0)
    max_length: int = Field(128, ge=8)
    max_steps: int = Field(50, ge=1, description="SFT steps per round")
    lr: float = Field(3e-4, gt=0)


class UnalignConfig(TrainConfig):
    """Reverse alignment: LoRA trained with the plain causal-LM loss on pretraining-style text, then merged
    (as gpt-oss-20b was turned into gpt-oss-20b-base). By default the targets are the MLP weights of `layers`,
    found in any architecture; or name suffixes matched inside `layers`."""

    model: str = Field(description="the aligned model to turn back toward a base model")
    data: str = Field("world", description="pretraining-style text: 'world' (reviews and encyclopedia entries; "
                                           "no dialogues, no canaries) or a text/jsonl file / hub data set")
    text_field: str = "text"
    world_docs: int = Field(2000, ge=1)
    max_docs: int | None = Field(None, ge=1, description="use only the first this many documents")
    rank: int = Field(16, ge=1, description="LoRA rank r (per expert for fused expert weights)")
    alpha: float = Field(32, gt=0, description="LoRA alpha; the update is scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout (must be 0 with target_parameters)")
    target_modules: list[str] | None = Field(
        None, description="suffixes of module names (Linear layers), e.g. [gate_proj, up_proj, down_proj]; none "
                          "(and no target_parameters): every Linear or Conv1D layer of the MLP and a MoE's fused experts")
    target_parameters: list[str] = Field([], description="suffixes of parameter names for fused weights, "
                                                         "e.g. MoE experts: mlp.experts.gate_up_proj")
    layers: list[int] | None = Field(None, description="decoder layer indices to adapt; none: every layer")
    block_size: int = Field(128, ge=8)
    max_steps: int = Field(100, ge=1)
    lr: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(10, ge=0)
