"""`alignlab experiment overoptimization`: reward-model over-optimization (Gao, Schulman & Hilton 2022).

On the world's review prompts (gold = the world's exact sentiment judge):
1. proxies: reward models trained on growing amounts of gold-labelled pairs of SFT samples
   (with some label noise, so a proxy is an imperfect copy of the gold);
2. best-of-n against each proxy, n = 1 .. 256, from ONE pool of samples per prompt scored by
   every proxy and by the gold: gold and proxy of the picks against d = sqrt(KL), with
   KL_bon = log n - (n-1)/n (and the empirical tie-aware KL beside it);
3. PPO against each proxy; every checkpoint is sampled and scored by proxy and gold, with KL to
   the SFT policy estimated from its samples;
4. fits R_bon(d) = d(alpha - beta d) and R_RL(d) = d(alpha - beta log d) to the gold gain over
   the SFT policy (both are linear in alpha, beta: least squares), with R^2, and whether the
   gold peaks then falls while the proxy keeps rising.
With --policy, --gold and --prompts the same runs start from the user's policy, take the user's
scorer as the gold (a classifier, a large reward model, an LLM judge) and the user's prompts; the
proxies are reward models initialised from the policy itself, as InstructGPT's were.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import mean

from ..config import PPOConfig, RewardConfig
from ..runs import write_summary
from ..sampling import sample
from ..scoring import checked_scores, make_scorer
from ..stages.best_of_n import kl_analytic, kl_empirical, picks
from . import demo
from .common import WORLD_SEED, distance, frozen, lifecycle, measure, review_prompt_sets

SCALES = {  # proxy data amounts (prompts whose 4 samples are paired) and sampling sizes
    "default": dict(proxy_prompts=[64, 256, 1024], eval_prompts=48, n_max=256, ppo_steps=40, ppo_save=8),
    "micro": dict(proxy_prompts=[16, 48], eval_prompts=6, n_max=16, ppo_steps=4, ppo_save=2),
}


def fit(d: list[float], gain: list[float], form: str) -> dict:
    """Least-squares alpha, beta of gain = alpha*d - beta*g(d) with g = d^2 (bon) or d*log d (rl):
    a linear regression through the origin on two regressors, solved by numpy's lstsq; r2 is
    1 - SSE / total sum of squares about the mean (None when the gains are constant)."""
    import numpy as np

    d_arr, y = np.array(d, float), np.array(gain, float)
    g = d_arr ** 2 if form == "bon" else d_arr * np.log(np.maximum(d_arr, 1e-12))
    x = np.stack([d_arr, -g], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(x, y, rcond=None)
    predicted = x @ np.array([alpha, beta])
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(((y - predicted) ** 2).sum()) / total if total > 0 else None
    return {"alpha": float(alpha), "beta": float(beta), "r2": r2}


def peaks_then_falls(values: list[float], tolerance: float = 0.02) -> bool:
    """The curve's maximum is not at its end, and the end is clearly below it."""
    top = max(range(len(values)), key=values.__getitem__)
    return top < len(values) - 1 and values[-1] < values[top] - tolerance


def best_of_n_curves(policy: str, proxies: dict, gold, prompts: list[str], n_max: int, seed: int) -> dict:
    from ..models import load_tokenizer

    repeated = [p for p in prompts for _ in range(n_max)]
    samples = sample(frozen(policy), load_tokenizer(policy), repeated, 48, 1.0, seed=seed,
                     desc=f"best-of-{n_max}: sampling")
    completions = [s.completion for s in samples]
    gold_scores = checked_scores(gold, repeated, completions)
    ns = [2 ** i for i in range(int(math.log2(n_max)) + 1)]
    curves = {}
    for name, proxy in proxies.items():
        proxy_scores = checked_scores(proxy, repeated, completions)
        rows = []
        for n in ns:
            chosen = picks(proxy_scores, n_max, n)
            rows.append({"n": n, "kl_analytic": kl_analytic(n),
                         "kl_empirical": mean(kl_empirical(proxy_scores[i * n_max:(i + 1) * n_max], n)
                                              for i in range(len(prompts))),
                         "proxy": mean(proxy_scores[j] for j in chosen), "gold": mean(gold_scores[j] for j in chosen)})
        curves[name] = rows
    return curves


def ppo_curve(out: Path, sft: Path, proxy_dir: Path, proxy, gold, prompts_file: str, eval_prompts: list[str],
              scale: dict, seed: int) -> list[dict]:
    """PPO against one proxy; each checkpoint scored by proxy and gold, KL to SFT from samples."""
    from ..models import load_tokenizer
    from ..stages import ppo

    cfg = PPOConfig(out=str(out), model=str(sft), reward=str(proxy_dir), prompts=prompts_file, seed=seed,
                    max_steps=scale["ppo_steps"], save_steps=scale["ppo_save"], kl_coef=0.01)
    demo.stage(ppo, cfg)
    tokenizer, reference = load_tokenizer(str(sft)), frozen(sft)
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    points = []
    for path in [sft, *checkpoints]:
        model = reference if path == sft else frozen(path)
        points.append({"step": 0 if path == sft else int(path.name.split("-")[1]),
                       **measure(model, reference, tokenizer, {"proxy": proxy, "gold": gold}, eval_prompts, seed)})
    return points


def run(out: Path, seed: int = 0, micro: bool = False, policy: str | None = None, gold: str | None = None,
        prompts: str | None = None) -> dict:
    from ..stages import reward
    from .common import check_judge, check_model, own_setting, prompt_split

    out = Path(out)
    scale = SCALES["micro" if micro else "default"]
    if own_setting(policy=policy, gold=gold, prompts=prompts):  # every piece checked before any run
        gold_scorer, base = check_judge(gold, "--gold"), check_model(policy, "--policy")
        train_prompts, eval_prompts = prompt_split(prompts, out, max(scale["proxy_prompts"]), scale["eval_prompts"],
                                                   seed)
    else:
        base, policy = lifecycle(out, seed, micro)
        train_prompts, eval_prompts = review_prompt_sets(out, max(scale["proxy_prompts"]), scale["eval_prompts"],
                                                         seed)
        gold, gold_scorer = "world", make_scorer("world", WORLD_SEED)

    proxies, proxy_dirs = {}, {}
    for amount in scale["proxy_prompts"]:
        rm_cfg = RewardConfig(out=str(out / f"proxy-{amount}"), model=str(base), policy=str(policy), judge=gold,
                              prompts=train_prompts, n_prompts=amount, label_noise=0.1, seed=seed,
                              max_steps=max(40, amount // 4), batch_size=16, lr=3e-4, eval_fraction=0.15)
        proxy_dirs[amount] = demo.stage(reward, rm_cfg)
        proxies[amount] = make_scorer(str(proxy_dirs[amount]))

    bon = best_of_n_curves(str(policy), proxies, gold_scorer, eval_prompts, scale["n_max"], seed)
    rl = {amount: ppo_curve(out / f"ppo-{amount}", policy, proxy_dirs[amount], proxies[amount], gold_scorer,
                            train_prompts,
                            eval_prompts, scale, seed) for amount in proxies}
    summary = {"policy": str(policy), "gold": gold, "proxies": {}, "bon_kl_analytic": {}, "bon_kl_empirical": {}}
    for amount in proxies:
        rows, points = bon[amount], rl[amount]
        gold0 = rows[0]["gold"]
        d_bon = [math.sqrt(r["kl_analytic"]) for r in rows]
        d_rl = [distance(p["kl"]) for p in points]
        summary["bon_kl_analytic"] = {r["n"]: r["kl_analytic"] for r in rows}
        summary["bon_kl_empirical"][amount] = {r["n"]: r["kl_empirical"] for r in rows}
        summary["proxies"][amount] = {
            "pairwise_accuracy": json.loads((proxy_dirs[amount] / "status.json").read_text())["pairwise_accuracy"],
            "bon": rows, "rl": points,
            "bon_fit": fit(d_bon, [r["gold"] - gold0 for r in rows], "bon"),
            "rl_fit": fit(d_rl, [p["gold"] - points[0]["gold"] for p in points], "rl"),
            "bon_gold_peaks_then_falls": peaks_then_falls([r["gold"] for r in rows]),
            "bon_proxy_keeps_rising": all(b["proxy"] >= a["proxy"] for a, b in zip(rows, rows[1:])),
            "bon_gold_peak_n": max(rows, key=lambda r: r["gold"])["n"],
            "rl_gold_peaks_then_falls": peaks_then_falls([p["gold"] for p in points]),
        }
    write_summary(out, summary)
    write_report(out, summary)
    return summary


def write_report(out: Path, summary: dict) -> Path:
    from ..report import Report, plot_curves

    gold = summary.get("gold", "world")
    report = Report("Reward-model over-optimization (Gao, Schulman & Hilton 2022)",
                    f"policy = {summary.get('policy', 'the world SFT model')}; gold = "
                    f"{'the world' + chr(39) + 's exact sentiment judge' if gold == 'world' else gold}; "
                    "proxies = reward models trained on N prompts' pairs of policy samples labelled by the gold "
                    "(10% of the labels flipped)")
    verdicts = {}
    for amount, p in summary["proxies"].items():
        verdicts[f"proxy {amount}: best-of-n gold peaks then falls while the proxy rises"] = (
            p["bon_gold_peaks_then_falls"] and p["bon_proxy_keeps_rising"],
            f"gold peak at n={p['bon_gold_peak_n']}; fit R^2 {p['bon_fit']['r2']}")
        verdicts[f"proxy {amount}: PPO gold peaks then falls"] = (p["rl_gold_peaks_then_falls"],
                                                                  f"fit R^2 {p['rl_fit']['r2']}")
    report.heading("Verdicts").verdicts(verdicts)
    # as in Gao et al.: gains over the starting policy, so proxies of different scales compare
    def gains(points, kl_key):
        return {f"{kind} (proxy {a})": ([distance(x[kl_key]) for x in pts], [x[kind] - pts[0][kind] for x in pts])
                for a, p in summary["proxies"].items() for pts in [p[points]] for kind in ("gold", "proxy")}

    report.figure(plot_curves(gains("bon", "kl_analytic"), "best-of-n: gain over the SFT policy",
                              "d = sqrt(KL)", "score - score at n=1"), "bon")
    report.figure(plot_curves(gains("rl", "kl"), "PPO: gain over the SFT policy", "d = sqrt(KL)",
                              "score - score at step 0"), "ppo")
    report.heading("Fits").table({f"proxy {a}": {"accuracy": p["pairwise_accuracy"],
                                                 **{f"bon_{k}": v for k, v in p["bon_fit"].items()},
                                                 **{f"rl_{k}": v for k, v in p["rl_fit"].items()}}
                                  for a, p in summary["proxies"].items()})
    report.heading("PPO checkpoints").table([{"proxy": a, **point} for a, p in summary["proxies"].items()
                                             for point in p["rl"]])
    report.text("kl: the raw Monte-Carlo estimate of KL(policy || SFT) from the policy's samples, with its "
                "standard error kl_se; an estimate below 0 is noise around 0 and is plotted at d = 0.")
    return report.write(out / "report.html")

