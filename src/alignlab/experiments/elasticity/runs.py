"""The training runs of the elasticity experiments (see __init__.py) and what they measure.

Every run is a stage run folder reused when it already finished (demo.stage), so an interrupted
experiment resumes where it stopped. Three kinds of runs:
- plain SFT (stages/sft.py) on prompt/completion files written beside the runs: the resistance
  slices and pair runs, and the positive ("alignment") fine-tunes;
- the perturbation: one pass of SFT over distinct contrary examples at a constant learning rate,
  with a callback that probes the model every few steps into the run's metrics.jsonl: the
  log-odds of fixed positive vs negative reference answers and KL(base || model) on fixed base
  samples (both deterministic), judge scores of samples on held-out prompts, and bits per byte on
  fresh pretraining text and on fresh alignment text. Constant, because a decaying schedule would
  bend every curve by itself and fake the two phases the rebound test looks for;
- pretraining (stages/pretrain.py) of bases at other sizes and token budgets for the scaling test.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
from pathlib import Path
from statistics import mean

import yaml

from ...config import PretrainConfig, SFTConfig
from ...runs import read_jsonl, read_metrics
from .. import demo
from ..common import frozen, mean_and_se
from .data import Setting
from .fit import knee, slope_ratio, slowed


def write_rows(path: Path, rows: list[dict]) -> str:
    """Write a prompt/completion file once (atomically): a resumed experiment trains on the same file."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, path)
    return str(path)


def drop_checkpoints(run: Path) -> Path:
    """A finished run's checkpoints (optimizer state included, 3x the model) are only there for --resume,
    which a finished run never needs; dozens of runs would keep gigabytes of them."""
    shutil.rmtree(Path(run) / "checkpoints", ignore_errors=True)
    return Path(run)


def sft_config(out: Path, model, data: str, seed: int, steps: int, train: dict, **changes) -> SFTConfig:
    """The one set of fine-tuning hyperparameters (`train`) every run of a kind shares."""
    return SFTConfig(out=str(out), model=str(model), data=data, seed=seed, max_steps=steps,
                     **{"save_steps": steps, **train, **changes})


# ----- probing ----------------------------------------------------------------------------------

def probe(setting: Setting, model, tokenizer, seed: int, base_samples: dict | None = None) -> dict:
    """Judge scores of samples on the held-out prompts (the first judge's standard error too), bits per
    byte on both held-out texts, and the two sample-free probes (science audit E2): `logodds`, the
    mean per-token log-likelihood of fixed positive minus fixed negative reference answers, and
    `kl_base`, KL(base || model) per token on fixed samples of the base (`base_samples`)."""
    from ...evals import bits_per_byte
    from ...sampling import completion_logprobs, sample
    from ...scoring import checked_scores

    completions = [s.completion for s in sample(model, tokenizer, setting.eval_prompts, setting.max_new_tokens,
                                                1.0, seed=seed)]
    out = {}
    for i, (name, judge) in enumerate(setting.judges.items()):
        scores = checked_scores(judge, setting.eval_prompts, completions)
        out[f"score_{name}"], se = mean_and_se(scores)
        if i == 0:
            out["score_se"] = se
    for kind, texts in (("pretrain", setting.pretrain_heldout), ("align", setting.align_heldout)):
        if texts:
            out[f"bpb_{kind}"] = bits_per_byte(model, tokenizer, texts, max_tokens=256)["bits_per_byte"]
    if setting.references:
        positive, negative = setting.references
        out["logodds"] = answer_nll(model, tokenizer, negative) - answer_nll(model, tokenizer, positive)
    if base_samples:
        own = completion_logprobs(model, tokenizer, base_samples["prompt_ids"], base_samples["completion_ids"])
        out["kl_base"] = (base_samples["total"] - sum(own)) / base_samples["tokens"]
    return out


def base_samples(base, tokenizer, prompts: list, max_new_tokens: int, seed: int) -> dict:
    """Samples of the base on the held-out prompts (T = 1) and the base's log-likelihood of them: fixed
    points at which KL(base || model) = E_base[log p_base - log p_model] is estimated, the same for
    every probe of every curve that starts from this base with this seed."""
    from ...sampling import completion_logprobs, sample

    model = frozen(base)
    samples = [s for s in sample(model, tokenizer, prompts, max_new_tokens, 1.0, seed=seed) if s.completion_ids]
    prompt_ids, completion_ids = [s.prompt_ids for s in samples], [s.completion_ids for s in samples]
    total = sum(completion_logprobs(model, tokenizer, prompt_ids, completion_ids))
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "total": total,
            "tokens": sum(map(len, completion_ids))}


class Perturbation:
    """A stage for demo.stage: sft.run at a constant learning rate, probing every `every` steps; `base`
    is the pretrained model whose samples the KL probe is measured on."""

    def __init__(self, setting: Setting, every: int, base: Path):
        self.__name__, self.setting, self.every, self.base = "perturbation", setting, every, base

    def run(self, cfg: SFTConfig) -> Path:
        import torch
        from transformers import TrainerCallback

        from ...models import load_model, load_tokenizer
        from ...runs import Run
        from ...stages import sft
        from ...training import save_final, train

        rows, kind = sft.sft_rows(cfg)
        args = sft.training_args(cfg, kind)
        tokenizer, model = load_tokenizer(cfg.model), load_model(cfg.model)
        run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
        trainer = sft.build_trainer(cfg, args, rows, model, tokenizer, run)
        trainer.args.lr_scheduler_type = "constant"  # read when the Trainer makes its scheduler, in train()
        setting, every = self.setting, self.every
        rng = torch.get_rng_state()
        fixed = base_samples(self.base, tokenizer, setting.eval_prompts, setting.max_new_tokens, cfg.seed)
        torch.set_rng_state(rng)

        class Probe(TrainerCallback):
            def measure(self, state, model):
                rng = torch.get_rng_state()  # sampling reseeds torch; training's randomness must not notice
                record = probe(setting, model, tokenizer, cfg.seed, fixed)
                torch.set_rng_state(rng)
                model.train()
                run.log({"step": state.global_step, "probe": True, **record})

            def on_train_begin(self, args, state, control, model=None, **kwargs):
                self.measure(state, model)

            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step % every == 0 or state.global_step == state.max_steps:
                    self.measure(state, model)

        trainer.add_callback(Probe())
        result = train(trainer, run, cfg.resume)
        save_final(trainer, tokenizer, run)
        run.finish(**result, examples=len(rows), data_format=kind, lr_scheduler="constant", probe_every=every)
        return run.path


def probes(run: Path) -> list[dict]:
    """The probe records of a perturbation run, one per step (the last, if a resume repeated one)."""
    by_step = {r["step"]: r for r in read_metrics(run) if r.get("probe")}
    return [by_step[s] for s in sorted(by_step)]


# ----- resistance -------------------------------------------------------------------------------

def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run) if "loss" in r]


def answer_nll(model, tokenizer, answers: list[dict]) -> float:
    """Mean NLL per token (nats) of the answers as text after their prompts, tokenized as SFT tokenizes
    them (the prompt with the BOS the tokenizer adds, the answer, then EOS): the pair runs' own
    training objective, measured on answers they never trained on. (The exact sampled ids would give
    a KL estimate proper, but a small model samples non-canonical tokenizations that training on
    text never sees: on those, training toward the text moves the ids' likelihood the other way.)"""
    from ...prompts import encode
    from ...sampling import completion_logprobs

    prompt_ids = encode(tokenizer, [a["prompt"] for a in answers])
    completion_ids = [ids + [tokenizer.eos_token_id] for ids in
                      tokenizer([a["completion"] for a in answers], add_special_tokens=False)["input_ids"]]
    total = -sum(completion_logprobs(model, tokenizer, prompt_ids, completion_ids))
    return total / sum(map(len, completion_ids))


def slice_answers(folder: Path, i: int, path: Path, tokenizer, setting: Setting, seed: int, n_eval: int) -> tuple:
    """A slice's answers to every held-out prompt (T = 1; empty answers kept: stopping at once is part
    of the slice's distribution), split by the seed: (training file for the pair runs, held-out
    answers, which measure how close a pair model came to the slice)."""
    from ...sampling import sample

    train_file, held_file = folder / f"responses-theta{i}.jsonl", folder / f"heldout-theta{i}.jsonl"
    if not held_file.exists():
        samples = sample(frozen(path), tokenizer, setting.resistance_prompts, setting.max_new_tokens, 1.0, seed=seed)
        rows = [{"prompt": s.text, "completion": s.completion} for s in samples]
        random.Random(f"resistance-split-{seed}").shuffle(rows)  # one split per seed, the same for every slice
        # as the model read the prompt: a conversation's training row is its rendered text
        write_rows(train_file, rows[n_eval:])
        write_rows(held_file, rows[:n_eval])
    return str(train_file), read_jsonl(held_file)


def resistance(setting: Setting, out: Path, seeds: list[int], scale: dict) -> list[dict]:
    """Per seed: one epoch of SFT cut into slices theta_1 < theta_2 < theta_3 (checkpoints), their
    answers to the same held-out prompts, then for every pair i < j forward (theta_i trained one epoch
    on theta_j's answers) and inverse (theta_j on theta_i's), same hyperparameters. Per direction:
    - M1, the paper's: final training loss (mean of the last 4 logged steps);
    - M2, entropy-corrected: NLL of the target slice's held-out answers under the pair model minus
      the target's own NLL on them (a cross-entropy difference, near KL(target || model) per token):
      unlike M1 it does not reward a target for having low-entropy answers;
    - M3: the share of the starting excess (the same difference before the pair run) closed.
    One record per (seed, pair)."""
    from ...models import load_tokenizer
    from ...scoring import checked_scores
    from ...stages import sft

    steps = scale["slices"]
    judge = next(iter(setting.judges.values()))
    records = []
    for seed in seeds:
        folder = out / "resistance" / f"seed{seed}"
        demos = write_rows(folder / "demonstrations.jsonl", setting.demonstrations(scale["demonstrations"], seed))
        # slices = checkpoints of one SFT run, saved every gcd(steps) steps; the last is the final model
        run = demo.stage(sft, sft_config(folder / "slices", setting.base, demos, seed, max(steps), scale["train"],
                                         save_steps=math.gcd(*steps)))
        slices = [run if k == max(steps) else run / "checkpoints" / f"checkpoint-{k}" for k in steps]
        tokenizer = load_tokenizer(str(run))
        answers = [slice_answers(folder, i, path, tokenizer, setting, seed, scale["resistance_eval"])
                   for i, path in enumerate(slices, 1)]
        # each slice's own NLL on its held-out answers, and every slice's NLL on every slice's answers
        nll = {}
        for m, path in enumerate(slices):
            model = frozen(path)  # loaded once for the three answer sets
            nll.update({(m, t): answer_nll(model, tokenizer, held) for t, (_, held) in enumerate(answers)})
        # how far apart the slices are: the first judge's mean over their held-out answers
        scores = [mean(checked_scores(judge, [a["prompt"] for a in held], [a["completion"] for a in held]))
                  for _, held in answers]
        for i, j in itertools.combinations(range(len(slices)), 2):
            record = {"seed": seed, "pair": f"theta{i + 1}-theta{j + 1}", "score_earlier": scores[i],
                      "score_later": scores[j]}
            for direction, start, target in (("forward", i, j), ("inverse", j, i)):
                train_file, held = answers[target]
                pair_steps = max(1, math.ceil(len(read_jsonl(train_file)) / scale["pair_train"]["batch_size"]))
                cfg = sft_config(folder / f"{direction}-theta{start + 1}-on-theta{target + 1}", slices[start],
                                 train_file, seed, pair_steps, scale["pair_train"])
                path = demo.stage(sft, cfg)
                curve = losses(path)
                excess_before = nll[(start, target)] - nll[(target, target)]
                excess_after = answer_nll(frozen(path), tokenizer, held) - nll[(target, target)]
                drop_checkpoints(path)
                record.update({f"{direction}_curve": curve, f"{direction}_steps": pair_steps,
                               f"{direction}_m1": mean(v for _, v in curve[-4:]),
                               f"{direction}_mean": mean(v for _, v in curve),
                               f"{direction}_m2": excess_after, f"{direction}_excess_before": excess_before,
                               f"{direction}_m3": 1 - excess_after / excess_before if excess_before else None,
                               f"{direction}_target_self_nll": nll[(target, target)]})
            records.append(record)
    return records


# ----- rebound ----------------------------------------------------------------------------------

def data_tokens(tokenizer, rows: list[dict]) -> int:
    return sum(len(ids) for ids in tokenizer([r["prompt"] + r["completion"] for r in rows],
                                             add_special_tokens=False)["input_ids"])


def rebound_curve(setting: Setting, folder: Path, base: Path, amount: int, seed: int, scale: dict) -> dict:
    """Align `base` on `amount` positive examples (none: the base itself), then fine-tune one pass over
    distinct negative examples, probing every few steps; the knee fit of the first judge's curve
    (descriptive: a bounded sampled score). x = negative examples seen (`examples`)."""
    from ...models import load_tokenizer
    from ...stages import sft

    tokenizer = load_tokenizer(str(base))
    start, align_tokens = base, 0
    if amount:
        rows = setting.positive(amount, seed)
        epochs = scale["positive_epochs"]
        steps = max(1, math.ceil(epochs * amount / scale["train"]["batch_size"]))
        start = drop_checkpoints(demo.stage(sft, sft_config(folder / f"positive-{amount}", base,
                                                    write_rows(folder / f"positive-{amount}.jsonl", rows), seed,
                                                    steps, scale["train"])))
        align_tokens = data_tokens(tokenizer, rows) * steps * scale["train"]["batch_size"] / len(rows)
    batch = scale["negative_train"]["batch_size"]
    rows = setting.negative(scale["negative_examples"], seed + 500)
    negative = write_rows(folder / "negative.jsonl", rows)
    # one pass: every negative example is seen once (a file smaller than asked gives fewer steps)
    cfg = sft_config(folder / f"negative-{amount}", start, negative, seed, math.ceil(len(rows) / batch),
                     scale["negative_train"], logging_steps=scale["probe_every"])
    points = probes(drop_checkpoints(demo.stage(Perturbation(setting, scale["probe_every"], base), cfg)))
    judge = next(iter(setting.judges))
    steps, scores = [p["step"] for p in points], [p[f"score_{judge}"] for p in points]
    fit = knee(steps, scores)
    # every judge's initial drop, so a second judge (IMDb: VADER) can confirm or contradict the first
    by_judge = {name: knee(steps, [p[f"score_{name}"] for p in points])["slope_before"] for name in setting.judges}
    for p in points:
        p["examples"] = p["step"] * batch
    return {"amount": amount, "seed": seed, "align_tokens": round(align_tokens), "points": points,
            "initial_drop_slope_by_judge": by_judge,
            "initial_drop_slope": fit["slope_before"], "slope_after_knee": fit["slope_after"], "knee_step": fit["knee"],
            "knee_slope_ratio": slope_ratio(fit["slope_before"], fit["slope_after"]),
            "slows_after_knee": slowed(fit["slope_before"], fit["slope_after"]),
            "score_start": scores[0], "score_end": scores[-1]}


# ----- scaling ----------------------------------------------------------------------------------

def base_config(setting: Setting) -> PretrainConfig:
    return PretrainConfig(**yaml.safe_load((setting.base / "config.yaml").read_text()))


def scaled_base(setting: Setting, folder: Path, **changes) -> Path:
    """The setting's base pretraining with some fields changed (size, steps); the base itself when
    nothing changes."""
    from ...stages import pretrain

    cfg = base_config(setting)
    new = cfg.model_copy(update={"resume": False, **changes})
    if new.model_dump() == cfg.model_dump():
        return setting.base
    return drop_checkpoints(demo.stage(pretrain, new.model_copy(update={"out": str(folder)})))


def pretrain_tokens(base: Path) -> int:
    return json.loads((Path(base) / "status.json").read_text())["tokens_trained"]
