"""Scorers: one call, `score(prompts, completions) -> list[float]`.

Every stage that needs a judgement (automatic preference pairs, evaluation, RL and best-of-n)
takes any object with that method. A scorer's output is checked here once, so a broken scorer
fails loudly instead of poisoning a run; `sample_and_score` is the one sample -> score step the
pool-based methods share.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

from .errors import InputError
from .models import load_pretrained
from .world import World
from .world.judges import WorldJudge


class Scorer(Protocol):
    name: str

    def score(self, prompts: list[str], completions: list[str]) -> list[float]: ...


class VaderScorer:
    """The VADER lexicon's compound sentiment of the completion, in [-1, 1] (for real text)."""

    name = "vader"

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [self.analyzer.polarity_scores(c)["compound"] for c in completions]


class RewardModelScorer:
    """A trained reward model (sequence classification, one logit) or a two-label classifier
    (`alignlab classifier`; the score is the log-odds of its positive label) scoring
    prompt + completion + EOS, the same text both were trained on: cut to its first
    `max_length - 1` tokens before the EOS (`cut_with_eos`), where `max_length` is the one given,
    else the training run's own (its config.yaml), else the model's position limit."""

    def __init__(self, path: str, batch_size: int = 64, trust_remote_code: bool = False,
                 max_length: int | None = None, device="auto", dtype="auto"):
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from .models import load_tokenizer, locate, resolve_device, resolve_dtype

        self.name = f"rm:{path}"
        self.tokenizer = load_tokenizer(path, trust_remote_code)
        where = locate(path, "model")
        try:
            config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)
            if not any(a.endswith("ForSequenceClassification") for a in config.architectures or []) \
                    or config.num_labels not in (1, 2):
                raise ValueError("not a reward model (one logit) or a two-label classifier")
        except (OSError, ValueError) as e:
            raise InputError(f"reward: cannot load reward model {path!r}: {str(e).splitlines()[0]}") from None
        device = resolve_device(device)
        self.model = load_pretrained(AutoModelForSequenceClassification, path, "reward", trust_remote_code,
                           resolve_dtype(dtype, device), device)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()
        self.batch_size = batch_size
        self.max_length = (max_length or trained_max_length(path)
                           or getattr(self.model.config, "max_position_embeddings", None))

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        import torch

        from .prompts import encode, render_exchange

        # the exchange in this model's own chat format (a conversation through its template)
        texts = [render_exchange(self.tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
        rows = [{"input_ids": cut_with_eos(row, self.max_length, self.tokenizer.eos_token_id)}
                for row in encode(self.tokenizer, texts)]
        self.tokenizer.padding_side = "right"  # the head reads the last non-pad token
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                batch = self.tokenizer.pad(rows[start:start + self.batch_size], return_tensors="pt")
                logits = self.model(**batch.to(self.model.device)).logits.float()
                out += (logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]).tolist()
        return out


def cut_with_eos(ids: list[int], max_length: int | None, eos_id: int) -> list[int]:
    """The text a reward model or classifier reads, in training and in use: its first
    `max_length - 1` tokens (all, without a limit), then EOS, so the head reads an EOS last."""
    return ids[:max_length - 1 if max_length else None] + [eos_id]


def trained_max_length(path: str) -> int | None:
    """The `max_length` a reward or classifier run trained with (its config.yaml); None for a
    plain model folder or a hub name."""
    import yaml

    config = Path(path).expanduser() / "config.yaml"
    if not config.is_file():
        return None
    value = (yaml.safe_load(config.read_text()) or {}).get("max_length")
    return int(value) if value else None


class EnsembleScorer:
    """Several scorers combined per completion: mean, min (pessimistic), or mean - lam * std
    (uncertainty-penalised, as in Coste et al. 2023 on reward-model ensembles)."""

    def __init__(self, members: list, combine: str = "mean", lam: float = 1.0):
        if combine not in ("mean", "min", "uncertainty"):
            raise InputError(f"reward: unknown ensemble rule {combine!r}; choose mean, min or uncertainty")
        self.members, self.combine, self.lam = members, combine, lam
        self.name = f"{combine}(" + ", ".join(m.name for m in members) + ")"

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        import statistics

        table = list(zip(*(checked_scores(m, prompts, completions) for m in self.members)))
        if self.combine == "min":
            return [min(row) for row in table]
        means = [statistics.fmean(row) for row in table]
        if self.combine == "mean":
            return means
        return [m - self.lam * statistics.pstdev(row) for m, row in zip(means, table)]


class LLMJudgeScorer:
    """AI feedback: any causal LM prompted to grade an answer. The score is
    log p(" Yes") - log p(" No") for the question "Is the answer good?" after the exchange, so
    it is a continuous preference, usable as a reward, to rank samples, or to label pairs."""

    TEMPLATE = "{prompt} {completion}\nQuestion: Is the assistant's answer good?\nAnswer:"

    def __init__(self, model: str, trust_remote_code: bool = False, batch_size: int = 32, device="auto",
                 dtype="auto"):
        from .models import load_model, load_tokenizer

        self.name = f"llm-judge:{model}"
        self.tokenizer = load_tokenizer(model, trust_remote_code)
        self.model = load_model(model, trust_remote_code, device, dtype)
        self.batch_size = batch_size
        self.yes, self.no = (self.tokenizer(w, add_special_tokens=False)["input_ids"] for w in (" Yes", " No"))

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        from .sampling import completion_logprobs

        from .prompts import encode, transcript

        # the exchange as a plain transcript inside the question (the judge's own chat template would
        # nest one conversation inside another)
        texts = [self.TEMPLATE.format(prompt=transcript(p) if isinstance(p, list) else p, completion=c.strip())
                 for p, c in zip(prompts, completions, strict=True)]
        contexts = encode(self.tokenizer, texts)
        yes = completion_logprobs(self.model, self.tokenizer, contexts, [self.yes] * len(contexts), self.batch_size)
        no = completion_logprobs(self.model, self.tokenizer, contexts, [self.no] * len(contexts), self.batch_size)
        return [a - b for a, b in zip(yes, no)]

    def prefer(self, prompt: str, a: str, b: str) -> int:
        """0 when the judge prefers `a`, 1 when it prefers `b` (for labelling preference pairs)."""
        score_a, score_b = self.score([prompt, prompt], [a, b])
        return 0 if score_a >= score_b else 1


def stage_scorer(spec: str, cfg) -> Scorer:
    """The scorer `spec` names, on a stage config's device and dtype, with its world seed."""
    return make_scorer(spec, cfg.world_seed, getattr(cfg, "trust_remote_code", False), cfg.device, cfg.dtype)


def make_scorer(spec: str, world_seed: int = 0, trust_remote_code: bool = False, device="auto",
                dtype="auto") -> Scorer:
    """A scorer from its spec:
    "world" | "world-graded" (reviews by distinct sentiment words: headroom past all-positive) | "vader" |
    "llm-judge:MODEL" | a reward-model folder or run folder |
    an ensemble "A+B+..." of those, optionally prefixed "mean:", "min:" or "uncertainty:LAMBDA:"."""
    spec = spec.strip()
    for rule in ("mean:", "min:", "uncertainty:"):
        if spec.startswith(rule):
            rest = spec[len(rule):]
            lam = 1.0
            if rule == "uncertainty:":
                lam_text, _, rest = rest.partition(":")
                try:
                    lam = float(lam_text)
                except ValueError:
                    raise InputError(f"reward: {spec!r}: expected uncertainty:LAMBDA:A+B") from None
            members = [make_scorer(part, world_seed, trust_remote_code, device, dtype) for part in rest.split("+")]
            return EnsembleScorer(members, rule.rstrip(":"), lam)
    if "+" in spec:
        return make_scorer("mean:" + spec, world_seed, trust_remote_code, device, dtype)
    if spec in ("world", "world-graded"):
        return WorldJudge(World(world_seed), graded=spec == "world-graded")
    if spec == "vader":
        return VaderScorer()
    if spec.startswith("llm-judge:"):
        return LLMJudgeScorer(spec[len("llm-judge:"):], trust_remote_code, device=device, dtype=dtype)
    if not spec:
        raise InputError("reward: empty scorer spec")
    if ":" in spec and not Path(spec).expanduser().exists():  # "foo:bar" is a mistyped spec, not a model name
        raise InputError(f"reward: unknown scorer spec {spec!r}; expected world, world-graded, vader, llm-judge:MODEL, "
                         "a reward model folder, or A+B / mean:A+B / min:A+B / uncertainty:LAMBDA:A+B")
    return RewardModelScorer(spec, trust_remote_code=trust_remote_code, device=device, dtype=dtype)


def checked_scores(scorer: Scorer, prompts: list[str], completions: list[str]) -> list[float]:
    """Call a scorer and insist on one finite number per completion."""
    scores = [float(s) for s in scorer.score(prompts, completions)]
    if len(scores) != len(completions):
        raise InputError(f"scorer {scorer.name}: returned {len(scores)} scores for {len(completions)} completions")
    bad = next((i for i, s in enumerate(scores) if not math.isfinite(s)), None)
    if bad is not None:
        raise InputError(f"scorer {scorer.name}: non-finite score {scores[bad]} for completion {bad}")
    return scores


def sample_and_score(model, tokenizer, prompts: list, k: int, scorers: dict, max_new_tokens: int = 48,
                     temperature: float = 1.0, seed: int = 0, batch_size: int = 64, desc: str | None = None):
    """The step every judge-driven method starts with (best-of-n, rejection sampling, DPO and reward-model
    auto pairs, the experiments' pools): k samples per prompt, prompt-major (prompt i's samples are
    [i*k, (i+1)*k)), each scored by every scorer. Returns (samples, {name: scores})."""
    from .sampling import sample

    repeated = [p for p in prompts for _ in range(k)]
    samples = sample(model, tokenizer, repeated, max_new_tokens, temperature, batch_size=batch_size, seed=seed,
                     desc=desc)
    completions = [s.completion for s in samples]
    return samples, {name: checked_scores(scorer, repeated, completions) for name, scorer in scorers.items()}

