"""`alignlab experiment frontier`: the DPO paper's controlled-sentiment experiment (Rafailov et
al. 2023, fig. 2) on the world: the reward-vs-KL frontier of
- DPO at several beta (pairs of SFT samples ranked by the gold judge),
- PPO at several KL coefficients (the gold judge as reward: "PPO-GT"),
- preferred-FT (SFT on the chosen completions of the same pairs),
- best-of-n (n = 1 .. 64, gold as the picker, analytic KL),
all measured on held-out review prompts: mean gold sentiment, and KL(policy || SFT) estimated
from the policy's own samples. A method dominates another when each of the other's points has
one of its points with no more KL and no less reward. The report says which methods are on the
frontier at this scale, whatever the answer.
"""
from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

from ..config import DPOConfig, PPOConfig, SFTConfig
from ..runs import read_jsonl
from ..sampling import sample
from ..scoring import checked_scores, make_scorer
from ..stages.best_of_n import kl_analytic, picks
from ..world import World
from . import demo
from .overoptimization import lifecycle, measure, review_prompts_file

SCALES = {
    "default": dict(betas=[0.05, 0.1, 0.5], kl_coefs=[0.01, 0.05, 0.2], n_max=64, eval_prompts=48,
                    n_prompts=512, ppo_steps=60, samples_per_eval_prompt=4),
    "micro": dict(betas=[0.1, 0.5], kl_coefs=[0.05], n_max=4, eval_prompts=6, n_prompts=32, ppo_steps=3,
                  samples_per_eval_prompt=1),
}


def best_of_n_points(sft: str, tokenizer, gold, prompts: list[str], n_max: int, seed: int) -> list[dict]:
    from ..models import load_model

    repeated = [p for p in prompts for _ in range(n_max)]
    completions = [s.completion for s in sample(load_model(sft), tokenizer, repeated, 48, 1.0, seed=seed)]
    scores = checked_scores(gold, repeated, completions)
    points, n = [], 1
    while n <= n_max:
        points.append({"n": n, "kl": kl_analytic(n), "reward": mean(scores[j] for j in picks(scores, n_max, n))})
        n *= 2
    return points


def dominates(a: list[dict], b: list[dict]) -> bool:
    """Every point of b is matched by a point of a with no more KL and no less reward."""
    return all(any(p["kl"] <= q["kl"] + 1e-9 and p["reward"] >= q["reward"] - 1e-9 for p in a) for q in b)


def run(out: Path, seed: int = 0, micro: bool = False) -> dict:
    from ..models import load_model, load_tokenizer
    from ..stages import dpo, ppo, sft

    out, scale = Path(out), SCALES["micro" if micro else "default"]
    policy = str(lifecycle(out, seed, micro)[1])
    world = World(seed)
    prompts_file = review_prompts_file(out, world, "train", scale["n_prompts"], seed)
    eval_prompts = world.prompts("review", "eval", scale["eval_prompts"], seed) * scale["samples_per_eval_prompt"]
    gold, tok, reference = make_scorer("world", seed), load_tokenizer(policy), load_model(policy)

    def point(model) -> dict:  # KL to SFT and mean gold reward on the held-out prompts
        return measure(model, reference, tok, {"reward": gold}, eval_prompts, seed)

    methods: dict[str, list[dict]] = {"sft": [point(reference)]}
    methods["dpo"] = []
    for beta in scale["betas"]:
        path = demo.stage(dpo, DPOConfig(out=str(out / f"dpo-beta{beta}"), model=policy, prompts=prompts_file,
                                         n_prompts=scale["n_prompts"], beta=beta, seed=seed,
                                         max_steps=scale["ppo_steps"] * 2))
        methods["dpo"].append({"beta": beta, **point(load_model(str(path)))})
    pairs = out / f"dpo-beta{scale['betas'][0]}" / "pairs.jsonl"
    chosen = out / "preferred.jsonl"
    chosen.write_text("".join(json.dumps({"prompt": p["prompt"], "completion": p["chosen"]}) + "\n"
                              for p in read_jsonl(pairs)))
    path = demo.stage(sft, SFTConfig(out=str(out / "preferred-ft"), model=policy, data=str(chosen), seed=seed,
                                     max_steps=scale["ppo_steps"] * 2))
    methods["preferred-ft"] = [point(load_model(str(path)))]
    methods["ppo"] = []
    for kl_coef in scale["kl_coefs"]:
        path = demo.stage(ppo, PPOConfig(out=str(out / f"ppo-kl{kl_coef}"), model=policy, reward="world",
                                         prompts=prompts_file, n_prompts=scale["n_prompts"], kl_coef=kl_coef,
                                         lr=1e-4, seed=seed, max_steps=scale["ppo_steps"],
                                         save_steps=scale["ppo_steps"]))
        methods["ppo"].append({"kl_coef": kl_coef, **point(load_model(str(path)))})
    methods["best-of-n"] = best_of_n_points(policy, tok, gold, eval_prompts, scale["n_max"], seed)

    trained = [m for m in methods if m != "sft"]
    frontier = [m for m in trained if not any(dominates(methods[o], methods[m]) and not dominates(methods[m], methods[o])
                                              for o in trained if o != m)]
    summary = {"methods": methods, "on_frontier": frontier,
               "dominates": {a: [b for b in trained if b != a and dominates(methods[a], methods[b])] for a in trained}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(out, summary)
    return summary


def write_report(out: Path, summary: dict) -> Path:
    import matplotlib.pyplot as plt

    from ..report import Report

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in summary["methods"].items():
        points = sorted(points, key=lambda p: p["kl"])
        ax.plot([p["kl"] for p in points], [p["reward"] for p in points], marker="o", label=name)
    ax.set_xlabel("KL(policy || SFT), nats per sequence")
    ax.set_ylabel("mean gold sentiment")
    ax.set_title("reward-KL frontier on the world's review prompts")
    ax.legend()
    report = Report("Reward-KL frontier (DPO paper, controlled sentiment) on the world",
                    "gold = the world's exact sentiment judge; KL estimated from each policy's samples")
    report.heading("Verdict").text(
        f"On the frontier at this scale: {', '.join(summary['on_frontier']) or 'none'}. "
        + "; ".join(f"{a} dominates {', '.join(b)}" for a, b in summary["dominates"].items() if b) + ".")
    report.figure(fig, "frontier")
    report.heading("Points").table([{"method": m, **p} for m, ps in summary["methods"].items() for p in ps])
    return report.write(out / "report.html")
