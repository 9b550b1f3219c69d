"""What several experiments share: the world lifecycle they start from, their held-out prompt sets
(the world's, or a user's own file split in two), the measurement of a policy against its start,
and the checks that turn a user's model, judge or file that cannot be used into a one-line error
before any training starts (an experiment is hours of runs; failing at hour two is the worst case).

Experiments do not import one another; what two of them need lives here.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from statistics import StatisticsError, mean

from ..config import StageConfig
from ..errors import InputError
from ..sampling import completion_logprobs, sample
from ..scoring import checked_scores
from ..world import World
from . import demo

# The world every model here is trained in: the stage configs leave world_seed at its default, so
# it does not follow --seed. --seed varies the runs (init, data order, sampling); the held-out
# prompts and the gold judge must come from this same world, or "held-out" items of World(seed)
# can be training items of the world the models saw.
WORLD_SEED = StageConfig.model_fields["world_seed"].default
MICRO_BASE = dict(world_docs=4000, block_size=128, batch_size=16, max_steps=300, warmup_steps=20, save_steps=300)


def lifecycle(out: Path, seed: int, micro: bool, base_changes: dict | None = None,
              with_sft: bool = True) -> tuple[Path, Path]:
    """Tokenizer, base and SFT runs for an experiment (reused when finished): (base, sft) folders.
    with_sft=False stops after the base (an experiment that fine-tunes it its own way); sft is then
    the folder an SFT run would have."""
    from ..stages import pretrain, sft, tokenizer

    cfgs = demo.configs(out / "lifecycle", seed, micro)
    if micro:  # the demo's micro base only emits noise, and noise ties every pair at sentiment 0
        cfgs["base"] = cfgs["base"].model_copy(update=MICRO_BASE)
        cfgs["sft"] = cfgs["sft"].model_copy(update={"max_steps": 30})
    cfgs["base"] = cfgs["base"].model_copy(update=base_changes or {})
    for name, module in [("tokenizer", tokenizer), ("base", pretrain), ("sft", sft)][:3 if with_sft else 2]:
        demo.stage(module, cfgs[name])
    return Path(cfgs["base"].out), Path(cfgs["sft"].out)


# ----- the shared strong base ------------------------------------------------------------------
# A prior that alignment perturbs must be a converged one (science audit 3.6): the demo's base saw
# about 2 epochs of 20k documents and was still improving. This one reads fresh documents only (one
# pass, never a repeat) and is accepted when a further ~10% of tokens lowers held-out NLL by less
# than CONVERGED nats per token. Its checkpoints are the pretraining-data axis (TinyLlama-style:
# checkpoints of one run, not retrained bases). Written before any run; not tuned to the results.
# The world's book passages (and the canaries) are the only repeated documents, on purpose: they are
# what memorization is measured on (reversal's P3).
STRONG_BASE = dict(model="tiny-1m", max_steps=2200, save_steps=200, batch_size=16, block_size=128,
                   warmup_steps=50, passages=True)
CONVERGED = 0.005  # nats/token gained by the last 1/11 of the run (2000 -> 2200 steps: 10% more tokens)
HELDOUT_DOCS = 400


def strong_base(cache: Path, seed: int = 0) -> dict:
    """The shared strong base (pretrained once per seed into `cache`, reused by every experiment after):
    {"path", "checkpoints" {step: path}, "heldout_nll" {step: nats/token}, "gain_last_10pct",
    "converged", "epochs" (must be <= 1: no fresh document read twice), "tokens_trained"}."""
    from ..config import PretrainConfig, TokenizerConfig
    from ..evals import bits_per_byte
    from ..models import load_tokenizer
    from ..stages import pretrain, tokenizer

    cache = Path(cache)
    # named after its recipe, so a changed recipe trains a new base instead of reusing a stale one
    name = f"strong-base-{hashlib.sha1(json.dumps(STRONG_BASE, sort_keys=True).encode()).hexdigest()[:8]}-seed{seed}"
    record = cache / f"{name}.json"
    if record.exists():
        return json.loads(record.read_text())
    tok = demo.stage(tokenizer, TokenizerConfig(out=str(cache / "tokenizer"), seed=seed))
    steps, batch, block = STRONG_BASE["max_steps"], STRONG_BASE["batch_size"], STRONG_BASE["block_size"]
    world = World(WORLD_SEED)
    # enough fresh documents for one pass: their measured mean length, with 10% to spare
    probe = world.heldout_text(500, seed=10_000 + seed)
    per_doc = mean(len(ids) + 1 for ids in load_tokenizer(str(tok))(probe, add_special_tokens=False)["input_ids"])
    docs = math.ceil(1.1 * steps * batch * block / per_doc)
    cfg = PretrainConfig(out=str(cache / name), tokenizer=str(tok), world_docs=docs, seed=seed,
                         save_total_limit=steps // STRONG_BASE["save_steps"] + 1, **STRONG_BASE)
    base = demo.stage(pretrain, cfg)
    status = json.loads((base / "status.json").read_text())
    checkpoints = {int(p.name.split("-")[1]): str(p) for p in (base / "checkpoints").glob("checkpoint-*")}
    checkpoints[steps] = str(base)
    heldout = world.heldout_text(HELDOUT_DOCS, seed=seed)
    tokenizer_ = load_tokenizer(str(base))
    nll = {step: bits_per_byte(frozen(path), tokenizer_, heldout)["nll_per_token"]
           for step, path in sorted(checkpoints.items())}
    before = round(steps / 1.1)  # the checkpoint 10% fewer tokens back
    gain = nll[before] - nll[steps] if before in nll else None
    out = {"path": str(base), "checkpoints": {str(k): v for k, v in sorted(checkpoints.items())},
           "heldout_nll": {str(k): v for k, v in nll.items()}, "gain_last_10pct": gain,
           "converged": gain is not None and gain < CONVERGED, "criterion": f"gain < {CONVERGED} nats/token",
           "tokens_trained": status["tokens_trained"], "epochs": status["tokens_trained"] / status["corpus_tokens"]}
    record.write_text(json.dumps(out, indent=1))
    return out


# ----- the corpus experiments (dedup, contamination, mixing) -----------------------------------------
# They compare corpora, not budgets: one tokenizer, then the same small base config trained for the
# same number of steps on each corpus.

def corpus_tokenizer(out: Path, seed: int, micro: bool) -> Path:
    from ..config import TokenizerConfig
    from ..stages import tokenizer

    return demo.stage(tokenizer, TokenizerConfig(out=str(out / "tokenizer"), seed=seed,
                                                 **({"world_docs": 1500, "vocab_size": 400} if micro else {})))


def corpus_run(out: Path, sources: list[dict], seed: int, **steps) -> Path:
    """`alignlab data` in one process with only the `steps` given on (e.g. exact_dedup=True, minhash={...});
    every other step off, so an experiment measures the one step it is about."""
    from ..config import CorpusConfig
    from ..stages import corpus

    off = dict(language=None, quality=None, perplexity=None, exact_dedup=False, minhash=None, decontaminate=None)
    return demo.stage(corpus, CorpusConfig(out=str(out), sources=sources, seed=seed, workers=1, **{**off, **steps}))


def corpus_base(out: Path, tokenizer: Path, data: str, seed: int, max_steps: int) -> Path:
    """The default base config pretrained on `data` (a corpus file or an `alignlab data` corpus folder)."""
    from ..config import PretrainConfig
    from ..stages import pretrain

    return demo.stage(pretrain, PretrainConfig(out=str(out), tokenizer=str(tokenizer), data=data, seed=seed,
                                               max_steps=max_steps, save_steps=max_steps,
                                               warmup_steps=min(50, max_steps // 5)))


def run_corpus_experiment(out: Path, seed: int, micro: bool, scales: dict, one_seed, claims, write_report,
                          **design) -> dict:
    """The corpus experiments' run: one tokenizer, `one_seed(out, seed, scale, tokenizer)` for each seed,
    `claims(per_seed)` over them; summary.json (with `design`, the fixed choices) and report.html."""
    import time

    from ..runs import write_summary

    start, out = time.time(), Path(out)
    scale = scales["micro" if micro else "default"]
    tok = corpus_tokenizer(out, seed, micro)
    per_seed = {seed + i: one_seed(out, seed + i, scale, tok) for i in range(scale["seeds"])}
    summary = {**design, "per_seed": {str(k): v for k, v in per_seed.items()}, **claims(per_seed)}
    summary["wall_seconds"] = round(time.time() - start, 1)
    write_summary(out, summary)
    write_report(out, summary)
    return summary


def verdict_report(title: str, s: dict, design: str):
    """A corpus experiment's report, opened with its design line and its verdicts."""
    from ..report import Report

    report = Report(title, f"{len(s['per_seed'])} seeds; {design}; wall time {s['wall_seconds']:.0f} s")
    return report.heading("Verdicts").verdicts({k: (ok, s["verdict_details"][k]) for k, ok in s["verdicts"].items()})


def verdict_fields(verdicts: dict[str, tuple[bool | None, str]]) -> dict:
    """{claim: (verdict, detail)} as the summary's "verdicts" and "verdict_details"."""
    return {"verdicts": {k: v[0] for k, v in verdicts.items()}, "verdict_details": {k: v[1] for k, v in verdicts.items()}}


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """The mean and its standard error, sample sd / sqrt(n) (scipy.stats.sem, ddof=1).
    Needs at least 2 values (StatisticsError, a ValueError, as statistics.stdev raises)."""
    from scipy.stats import sem

    if len(values) < 2:
        raise StatisticsError(f"mean_and_se: needs at least 2 values, got {len(values)}")
    return mean(values), float(sem(values))


def measure(model, reference, tokenizer, scorers: dict, prompts: list[str], seed: int) -> dict:
    """KL(model || reference) and each scorer's mean, each with its standard error, all from one
    set of the model's samples; also each scorer's mean on the first and on the second half of the
    prompts (`{name}_halves`), for selections that must be judged on prompts they were not made on.
    The KL estimate is reported raw: near 0 it can come out negative, and clamping it would bias
    every small KL upward and hide how noisy it is."""
    samples = sample(model, tokenizer, prompts, 48, 1.0, seed=seed)
    completions = [s.completion for s in samples]
    ids = [s.prompt_ids for s in samples], [s.completion_ids for s in samples]
    # per-sample log p_model(y|x) - log p_ref(y|x): their mean is the KL estimate, their spread its error
    ratios = [a - b for a, b in zip(completion_logprobs(model, tokenizer, *ids),
                                    completion_logprobs(reference, tokenizer, *ids))]
    result = dict(zip(("kl", "kl_se"), mean_and_se(ratios)))
    for name, scorer in scorers.items():
        scores = checked_scores(scorer, prompts, completions)
        result[name], result[f"{name}_se"] = mean_and_se(scores)
        result[f"{name}_halves"] = halves(scores)
    return result


def halves(values: list[float]) -> list[float]:
    """The means of the first and the second half of a list (the middle item, if any, goes to the second)."""
    half = len(values) // 2
    return [mean(values[:half]), mean(values[half:])]


def distance(kl: float) -> float:
    """d = sqrt(KL), the x axis of Gao et al.'s fits; a negative KL estimate is noise around 0."""
    return math.sqrt(max(kl, 0.0))


def review_prompts_file(out: Path, world: World, split: str, n: int, seed: int) -> str:
    path = out / f"prompts-{split}.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in world.prompts("review", split, n, seed)))
    return str(path)


def review_prompt_sets(out: Path, n_train: int, n_eval: int, seed: int) -> tuple[str, list[str]]:
    """The training prompts file (reward models, DPO, PPO) and the held-out prompts, from the
    world the models were trained in; `seed` only draws which prompts."""
    world = World(WORLD_SEED)
    return (review_prompts_file(out, world, "train", n_train, seed),
            world.prompts("review", "eval", n_eval, seed))


def frozen(spec):
    """A model an experiment only samples or measures, on this machine's GPU when it has one; float32,
    so that a number does not change with the card's preferred dtype."""
    from ..models import load_model

    return load_model(str(spec), device="auto")


# ----- the user's own models, judges and prompts ----------------------------------------------

def check_model(spec: str, option: str) -> str:
    """A model spec (local folder, run folder or hub name) whose config and tokenizer load; anything
    else is a one-line error naming the option it came from."""
    from transformers import AutoConfig

    from ..models import load_tokenizer, locate

    try:
        AutoConfig.from_pretrained(locate(spec, "model"))
        load_tokenizer(spec)
    except InputError as e:
        raise InputError(f"{option}: {e}") from None
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{option}: cannot load {spec!r}: {first}") from None
    return spec


def own_setting(**options) -> bool:
    """Whether the user named their own setting (--policy, --gold, --prompts): all of them, or a one-line
    error naming the first one missing; none of them means the world's setting."""
    if not any(options.values()):
        return False
    missing = [name for name, value in options.items() if not value]
    if missing:
        names = [f"--{o}" for o in options]
        raise InputError(f"--{missing[0]}: your own setting needs {', '.join(names[:-1])} and {names[-1]} together")
    return True


def check_judge(spec: str, option: str = "--judge"):
    """The scorer a spec names, built now (a reward model or classifier is loaded once, here)."""
    from ..scoring import make_scorer

    try:
        return make_scorer(spec)
    except InputError as e:
        raise InputError(f"{option}: {e}") from None


def prompt_split(spec: str, out: Path, n_train: int, n_eval: int, seed: int) -> tuple[str, list]:
    """A user's prompt file (any file or hub set with a `prompt` column: plain text, continued as it is
    by a base model, or a conversation in TRL's form, rendered with the model's chat template) split
    by a seeded shuffle into held-out prompts (the first n_eval) and a training prompts file of the
    rest (at most n_train), written under `out`: the experiment's runs train on one and are measured
    on the other, never on the same prompt."""
    from ..data import read_rows

    prompts = [r["prompt"] for r in read_rows(spec, ["prompt"]) if r["prompt"] not in (None, "", [])]
    unique = list({json.dumps(p, sort_keys=True): p for p in prompts}.values())
    if len(unique) < n_eval + 2:
        raise InputError(f"{spec}: {len(unique)} distinct prompts; this experiment holds out {n_eval} and needs "
                         "at least 2 more to train on")
    random.Random(f"prompt-split-{seed}").shuffle(unique)
    held_out, train = unique[:n_eval], unique[n_eval:n_eval + n_train]
    path = Path(out) / "prompts-train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in train))
    return str(path), held_out
