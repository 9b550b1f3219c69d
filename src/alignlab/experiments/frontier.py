"""`alignlab experiment frontier`: the DPO paper's controlled-sentiment experiment (Rafailov et
al. 2023, fig. 2): the reward-vs-KL frontier of
- DPO at several beta (pairs of the starting policy's samples ranked by the reward),
- PPO at several KL coefficients (the reward itself as PPO's reward: "PPO-GT"),
- preferred-FT (SFT on the chosen completions of the same pairs),
- best-of-n (n = 1 .. n_max, the reward as the picker, analytic KL),
all measured on held-out prompts: mean reward (with its standard error) and KL(policy || start)
estimated from the policy's own samples.

Settings:
- world: the world's review prompts, gold sentiment as the reward, the world's SFT model;
- own: the user's starting policy (--policy), reward (--gold, any scorer spec) and prompt file
  (--prompts), split into training and held-out prompts;
- imdb: a tiny base pretrained on IMDb reviews, review prefixes as prompts, run twice, once
  with the sentiment classifier trained on IMDb labels as the reward and once with VADER (each
  point also carries the other judge's score).

A method dominates another when each of the other's points has one of its points with no more
KL and no less reward; it clearly dominates when that reward is higher by more than two
standard errors. KL estimates are noisy too, so close calls are reported as such.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..config import DPOConfig, PPOConfig, SFTConfig
from ..errors import InputError
from ..runs import read_jsonl, write_summary
from ..scoring import make_scorer, sample_and_score
from ..stages.best_of_n import kl_analytic, picks
from . import demo
from .common import WORLD_SEED, frozen, lifecycle, mean_and_se, measure, review_prompt_sets

SCALES = {
    "default": dict(betas=[0.05, 0.1, 0.5], kl_coefs=[0.01, 0.05, 0.2], n_max=64, eval_prompts=48,
                    n_prompts=512, ppo_steps=60, samples_per_eval_prompt=4),
    "imdb": dict(betas=[0.1, 0.5], kl_coefs=[0.02, 0.2], n_max=64, eval_prompts=48, n_prompts=256, ppo_steps=40,
                 samples_per_eval_prompt=4),
    "micro": dict(betas=[0.1, 0.5], kl_coefs=[0.05], n_max=4, eval_prompts=6, n_prompts=32, ppo_steps=3,
                  samples_per_eval_prompt=1),
}


def best_of_n_points(policy: str, tokenizer, scorers: dict, prompts: list[str], n_max: int, seed: int) -> list[dict]:
    """Best-of-n by the first scorer (the reward), from one pool of n_max samples per prompt."""
    _, scores = sample_and_score(frozen(policy), tokenizer, prompts, n_max, scorers, seed=seed)
    reward = scores[next(iter(scorers))]
    points, n = [], 1
    while n <= n_max:
        chosen = picks(reward, n_max, n)
        point = {"n": n, "kl": kl_analytic(n)}
        for name, values in scores.items():
            picked = [values[j] for j in chosen]
            point[name], point[f"{name}_se"] = mean_and_se(picked)
        points.append(point)
        n *= 2
    return points


def dominates(a: list[dict], b: list[dict], margin: float = 0.0) -> bool:
    """Every point of b is matched by a point of a with no more KL and a reward at least
    `margin` combined standard errors higher (0: no less reward; 2: clearly more)."""
    def beats(p, q):
        noise = math.hypot(p.get("reward_se", 0.0), q.get("reward_se", 0.0))
        return p["kl"] <= q["kl"] + 1e-9 and p["reward"] - q["reward"] >= margin * noise - 1e-9
    return all(any(beats(p, q) for p in a) for q in b)


def verdict(methods: dict) -> dict:
    trained = [m for m in methods if m != "start"]

    def undominated(margin: float) -> list[str]:
        return [m for m in trained if not any(dominates(methods[o], methods[m], margin)
                                              and not dominates(methods[m], methods[o], margin)
                                              for o in trained if o != m)]
    return {"on_frontier": undominated(0.0), "not_clearly_dominated": undominated(2.0),
            "dominates": {a: [b for b in trained if b != a and dominates(methods[a], methods[b])] for a in trained},
            "clearly_dominates": {a: [b for b in trained if b != a and dominates(methods[a], methods[b], 2.0)]
                                  for a in trained}}


def frontier(out: Path, policy: str, reward: str, scorers: dict, prompts_file: str, eval_prompts: list[str],
             scale: dict, seed: int) -> dict:
    """Every method's points for one starting policy and one reward (scorers: reward first)."""
    from ..models import load_tokenizer
    from ..stages import dpo, ppo, sft

    tokenizer, reference = load_tokenizer(policy), frozen(policy)
    repeated = eval_prompts * scale["samples_per_eval_prompt"]

    def point(model) -> dict:  # KL to the start, and each judge's mean and standard error
        return measure(model, reference, tokenizer, scorers, repeated, seed)

    methods: dict[str, list[dict]] = {"start": [point(reference)], "dpo": []}
    for beta in scale["betas"]:
        path = demo.stage(dpo, DPOConfig(out=str(out / f"dpo-beta{beta}"), model=policy, prompts=prompts_file,
                                         judge=reward, n_prompts=scale["n_prompts"], beta=beta, seed=seed,
                                         max_steps=scale["ppo_steps"] * 2))
        methods["dpo"].append({"beta": beta, **point(frozen(path))})
    pairs = read_jsonl(out / f"dpo-beta{scale['betas'][0]}" / "pairs.jsonl")
    chosen = out / "preferred.jsonl"
    chosen.write_text("".join(json.dumps({"prompt": p["prompt"], "completion": p["chosen"]}) + "\n" for p in pairs))
    path = demo.stage(sft, SFTConfig(out=str(out / "preferred-ft"), model=policy, data=str(chosen), seed=seed,
                                     max_steps=scale["ppo_steps"] * 2))
    methods["preferred-ft"] = [point(frozen(path))]
    methods["ppo"] = []
    for kl_coef in scale["kl_coefs"]:
        path = demo.stage(ppo, PPOConfig(out=str(out / f"ppo-kl{kl_coef}"), model=policy, reward=reward,
                                         prompts=prompts_file, n_prompts=scale["n_prompts"], kl_coef=kl_coef,
                                         lr=1e-4, seed=seed, max_steps=scale["ppo_steps"],
                                         save_steps=scale["ppo_steps"]))
        methods["ppo"].append({"kl_coef": kl_coef, **point(frozen(path))})
    methods["best-of-n"] = best_of_n_points(policy, tokenizer, scorers, repeated, scale["n_max"], seed)
    return {"reward": reward, "methods": methods, **verdict(methods)}


def run(out: Path, seed: int = 0, micro: bool = False, data: str = "world", imdb: Path | None = None,
        policy: str | None = None, gold: str | None = None, prompts: str | None = None) -> dict:
    """The frontier in each setting of `data`; with `policy`, on the user's own policy, reward (`gold`)
    and prompts instead (data is then "own")."""
    from . import imdb as imdb_data
    from .common import check_judge, check_model, own_setting, prompt_split

    if own_setting(policy=policy, gold=gold, prompts=prompts):
        data = "own"
    if data not in ("world", "imdb", "both", "own"):
        raise InputError(f"data: must be world, imdb or both, not {data!r}")
    imdb = Path(imdb or imdb_data.default_dir())
    if data in ("imdb", "both"):
        imdb_data.source_files(imdb)  # fail before hours of world runs, not after
    out, settings = Path(out), {}
    if data == "own":
        scale = SCALES["micro" if micro else "default"]
        reward = check_judge(gold, "--gold")
        check_model(policy, "--policy")
        prompts_file, eval_prompts = prompt_split(prompts, out / "own", scale["n_prompts"], scale["eval_prompts"], seed)
        settings["own"] = frontier(out / "own", policy, gold, {"reward": reward}, prompts_file, eval_prompts,
                                   scale, seed)
    if data in ("world", "both"):
        scale = SCALES["micro" if micro else "default"]
        policy = str(lifecycle(out, seed, micro)[1])
        prompts_file, eval_prompts = review_prompt_sets(out, scale["n_prompts"], scale["eval_prompts"], seed)
        settings["world"] = frontier(out / "world", policy, "world", {"reward": make_scorer("world", WORLD_SEED)},
                                     prompts_file, eval_prompts, scale, seed)
    if data in ("imdb", "both"):
        scale = SCALES["micro" if micro else "imdb"]
        setup = imdb_data.prepare(out, imdb, seed, micro, n_prompts=scale["n_prompts"],
                                  eval_prompts=scale["eval_prompts"])
        judges = {"classifier": str(setup["classifier"]), "vader": "vader"}
        for name, spec in judges.items():
            other = next(o for o in judges if o != name)
            scorers = {"reward": make_scorer(spec), other: make_scorer(judges[other])}
            settings[f"imdb-{name}"] = frontier(out / f"imdb-{name}", str(setup["base"]), spec, scorers,
                                                setup["prompts_file"], setup["eval_prompts"], scale, seed)
        settings["imdb-classifier"]["classifier_accuracy"] = setup["classifier_accuracy"]
    summary = {"settings": settings}
    write_summary(out, summary)
    write_report(out, summary)
    return summary


def write_report(out: Path, summary: dict) -> Path:
    import matplotlib.pyplot as plt

    from ..report import Report

    report = Report("Reward-KL frontier (DPO paper, controlled sentiment)",
                    "world: gold = the world's exact sentiment judge; imdb: a tiny base pretrained on IMDb reviews, "
                    "rewarded by a classifier trained on IMDb labels or by VADER. KL is estimated from each "
                    "policy's samples (best-of-n: analytic); error bars are two standard errors of the mean reward.")
    for name, setting in summary["settings"].items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method, points in setting["methods"].items():
            points = sorted(points, key=lambda p: p["kl"])
            ax.errorbar([p["kl"] for p in points], [p["reward"] for p in points],
                        yerr=[2 * p["reward_se"] for p in points], marker="o", capsize=3, label=method)
        ax.set_xlabel("KL(policy || start), nats per sequence")
        ax.set_ylabel(f"mean reward ({setting['reward']})")
        ax.set_title(f"reward-KL frontier: {name}")
        ax.legend()
        relations = "; ".join(f"{a} dominates {', '.join(b)}" for a, b in setting["dominates"].items() if b)
        clear = "; ".join(f"{a} clearly dominates {', '.join(b)}" for a, b in setting["clearly_dominates"].items() if b)
        report.heading(f"{name}: verdict").text(
            f"On the frontier at this scale: {', '.join(setting['on_frontier']) or 'none'}. {relations or 'No method dominates another'}. "
            f"Beyond two standard errors: {clear or 'no method clearly dominates another'}; "
            f"not clearly dominated: {', '.join(setting['not_clearly_dominated'])}."
            + (f" The reward classifier's held-out accuracy: {setting['classifier_accuracy']:.3f}."
               if "classifier_accuracy" in setting else ""))
        report.figure(fig, f"frontier-{name}")
        report.heading(f"{name}: points").table([{"method": m, **p} for m, ps in setting["methods"].items() for p in ps])
    return report.write(out / "report.html")
