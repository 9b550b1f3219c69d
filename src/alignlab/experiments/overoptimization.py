"""`alignlab experiment overoptimization`: reward-model over-optimization (Gao, Schulman & Hilton 2022).

On the world's review prompts (gold = the world's exact judge, graded: distinct sentiment words, so
the gold has headroom past "all positive"), for each of 3 seeds (the unit of analysis):
1. proxies: reward models trained on growing amounts of gold-labelled pairs of SFT samples
   (with some label noise, so a proxy is an imperfect copy of the gold);
2. best-of-n against each proxy, n = 1 .. 256, from ONE pool of samples per prompt scored by
   every proxy and by the gold: gold and proxy of the picks against d = sqrt(KL), with
   KL_bon = log n - (n-1)/n (and the empirical tie-aware KL beside it);
3. PPO against each proxy; every checkpoint is sampled and scored by proxy and gold, with KL to
   the SFT policy estimated from its samples;
4. fits R_bon(d) = d(alpha - beta d) and R_RL(d) = d(alpha - beta log d) to the gold gain over
   the SFT policy (both are linear in alpha, beta: least squares), with R^2, and whether the
   gold peaks then falls while the proxy keeps rising;
5. over seeds, per proxy and method: the gold's fall after its peak, the peak chosen on half the
   prompts and the fall measured on the other half, with its 95% t interval: "over-optimized" when
   the interval lies above 0 (`claims`); beta and the fitted peak beside it.
With --policy, --gold and --prompts the same runs start from the user's policy, take the user's
scorer as the gold (a classifier, a large reward model, an LLM judge) and the user's prompts; the
proxies are reward models initialised from the policy itself, as InstructGPT's were.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from statistics import mean

from ..analysis.stats import fmt, seed_level
from ..config import PPOConfig, RewardConfig
from ..runs import write_summary
from ..scoring import make_scorer, sample_and_score
from ..stages.best_of_n import kl_analytic, kl_empirical, picks
from . import demo
from .common import WORLD_SEED, distance, frozen, halves, lifecycle, measure, review_prompt_sets

SCALES = {  # proxy data amounts (prompts whose 4 samples are paired), sampling sizes, seeds
    "default": dict(seeds=3, proxy_prompts=[64, 256, 1024], eval_prompts=48, n_max=256, ppo_steps=40, ppo_save=8),
    "micro": dict(seeds=2, proxy_prompts=[16, 48], eval_prompts=6, n_max=16, ppo_steps=4, ppo_save=2),
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

    _, scores = sample_and_score(frozen(policy), load_tokenizer(policy), prompts, n_max, {"gold": gold, **proxies},
                                 seed=seed, desc=f"best-of-{n_max}: sampling")
    gold_scores = scores["gold"]
    ns = [2 ** i for i in range(int(math.log2(n_max)) + 1)]
    curves = {}
    for name in proxies:
        proxy_scores = scores[name]
        rows = []
        for n in ns:
            chosen = picks(proxy_scores, n_max, n)
            rows.append({"n": n, "kl_analytic": kl_analytic(n),
                         "kl_empirical": mean(kl_empirical(proxy_scores[i * n_max:(i + 1) * n_max], n)
                                              for i in range(len(prompts))),
                         "proxy": mean(proxy_scores[j] for j in chosen), "gold": mean(gold_scores[j] for j in chosen),
                         "gold_halves": halves([gold_scores[j] for j in chosen])})
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
    from .common import check_judge, check_model, own_setting, prompt_split

    start, out = time.time(), Path(out)
    scale = SCALES["micro" if micro else "default"]
    if own_setting(policy=policy, gold=gold, prompts=prompts):  # every piece checked before any run
        gold_scorer, base = check_judge(gold, "--gold"), check_model(policy, "--policy")
        train_prompts, eval_prompts = prompt_split(prompts, out, max(scale["proxy_prompts"]), scale["eval_prompts"],
                                                   seed)
    else:
        base, policy = lifecycle(out, seed, micro)
        train_prompts, eval_prompts = review_prompt_sets(out, max(scale["proxy_prompts"]), scale["eval_prompts"],
                                                         seed)
        # graded: the plain world sentiment is 1.0 for any all-positive review, a ceiling no proxy can be
        # shown to overshoot; the graded gold keeps rewarding one more distinct good word
        gold = "world-graded"
        gold_scorer = make_scorer(gold, WORLD_SEED)
    # the seed is the unit: each seed trains its own proxies and samples and runs PPO anew, from one policy
    seeds = [seed + i for i in range(scale["seeds"])]
    per_seed = {s: one_seed(out / f"seed{s}", base, policy, gold, gold_scorer, train_prompts, eval_prompts, scale, s)
                for s in seeds}
    first = per_seed[seed]
    summary = {"policy": str(policy), "gold": gold, "seeds": seeds,
               "proxies": first["proxies"], "bon_kl_analytic": first["bon_kl_analytic"],
               "bon_kl_empirical": first["bon_kl_empirical"],
               "per_seed": {str(s): r["proxies"] for s, r in per_seed.items()}}
    summary["claims"] = {amount: claims([per_seed[s]["proxies"][amount] for s in seeds]) for amount in first["proxies"]}
    summary["wall_seconds"] = round(time.time() - start, 1)
    write_summary(out, summary)
    write_report(out, summary)
    return summary


def one_seed(out: Path, base, policy, gold: str, gold_scorer, train_prompts: str, eval_prompts: list[str],
             scale: dict, seed: int) -> dict:
    """Proxies of every size, best-of-n and PPO against each, with their fits: one seed's runs."""
    from ..stages import reward

    proxies, proxy_dirs = {}, {}
    for amount in scale["proxy_prompts"]:
        rm_cfg = RewardConfig(out=str(out / f"proxy-{amount}"), model=str(base), policy=str(policy), judge=gold,
                              prompts=train_prompts, n_prompts=amount, label_noise=0.1, seed=seed,
                              max_steps=max(40, amount // 4), batch_size=16, lr=3e-4, eval_fraction=0.15)
        proxy_dirs[amount] = demo.stage(reward, rm_cfg)
        proxies[amount] = make_scorer(str(proxy_dirs[amount]))

    bon = best_of_n_curves(str(policy), proxies, gold_scorer, eval_prompts, scale["n_max"], seed)
    rl = {amount: ppo_curve(out / f"ppo-{amount}", policy, proxy_dirs[amount], proxies[amount], gold_scorer,
                            train_prompts, eval_prompts, scale, seed) for amount in proxies}
    summary = {"proxies": {}, "bon_kl_analytic": {}, "bon_kl_empirical": {}}
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
            "bon_d_max": d_bon[-1], "rl_d_max": max(d_rl),
        }
    return summary


def held_out_fall(points: list[dict]) -> float:
    """How far the gold falls after its peak, with the peak chosen on one half of the prompts and the fall
    measured on the other (then the roles swapped, and the two averaged): the max of a noisy curve
    minus its end is above 0 by construction, this is not. 0 when the chosen peak is the last point."""
    falls = []
    for pick, judge in ((0, 1), (1, 0)):
        # ties go to the later point: a plateau to the end is no fall
        top = max(range(len(points)), key=lambda i: (points[i]["gold_halves"][pick], i))
        falls.append(points[top]["gold_halves"][judge] - points[-1]["gold_halves"][judge])
    return mean(falls)


def claims(records: list[dict]) -> dict:
    """Over-optimization over seeds, pre-registered after the first 3-seed run showed that the fit alone
    cannot tell a plateau from a fall (proxy 1024: beta > 0 with a fitted peak inside the range, while its
    gold never fell in any seed): the gold must fall after its peak on held-out prompts (`held_out_fall`),
    the seed-level 95% t interval above 0. Gao et al.'s forms stay as description: beta, and where their
    peak lies (best-of-n: d* = alpha / (2 beta); RL: d* = exp(alpha / beta - 1), from the seeds' means)."""
    out = {}
    for kind, peak in (("bon", lambda a, b: a / (2 * b)), ("rl", lambda a, b: math.exp(min(50.0, a / b - 1)))):
        fits = [r[f"{kind}_fit"] for r in records]
        beta = seed_level([f["beta"] for f in fits])
        alpha = mean(f["alpha"] for f in fits)
        fall = seed_level([held_out_fall(r[kind]) for r in records])
        out[kind] = {"beta": beta, "alpha_mean": alpha, "d_peak": peak(alpha, beta["mean"]) if beta["mean"] > 0 else None,
                     "d_max": mean(r[f"{kind}_d_max"] for r in records), "fall": fall,
                     "overoptimized": None if fall["ci_low"] is None else fall["ci_low"] > 0,
                     "seeds_peaking": sum(r[f"{kind}_gold_peaks_then_falls"] for r in records),
                     "seeds_proxy_rising": sum(r["bon_proxy_keeps_rising"] for r in records) if kind == "bon" else None}
    return out


GOLD_NAMES = {"world": "the world's exact sentiment judge",
              "world-graded": "the world's exact judge, graded (distinct sentiment words)"}


def write_report(out: Path, summary: dict) -> Path:
    from ..report import Report, plot_curves

    gold = summary.get("gold", "world")
    report = Report("Reward-model over-optimization (Gao, Schulman & Hilton 2022)",
                    f"policy = {summary.get('policy', 'the world SFT model')}; gold = "
                    f"{GOLD_NAMES.get(gold, gold)}; "
                    "proxies = reward models trained on N prompts' pairs of policy samples labelled by the gold "
                    "(10% of the labels flipped)")
    verdicts = {}
    for amount, c in summary["claims"].items():
        for kind, what in (("bon", "best-of-n"), ("rl", "PPO")):
            st = c[kind]
            verdicts[f"proxy {amount}: {what} over-optimizes the gold (it falls after its peak, held out)"] = (
                st["overoptimized"],
                f"fall {st['fall']['mean']:.3f} [95% CI {fmt(st['fall']['ci_low'])}, {fmt(st['fall']['ci_high'])}] "
                f"over {st['fall']['n_seeds']} seeds (supported: CI above 0); Gao et al.'s fit: beta "
                f"{st['beta']['mean']:.3f} [{fmt(st['beta']['ci_low'])}, {fmt(st['beta']['ci_high'])}], peak at "
                f"d = {fmt(st['d_peak'])} vs measured up to d = {st['d_max']:.2f}; the full-prompt gold peaks then "
                f"falls in {st['seeds_peaking']} of {st['fall']['n_seeds']} seeds"
                + (f"; proxy keeps rising in {st['seeds_proxy_rising']}" if kind == "bon" else "")
                + ("" if st["fall"]["ci_low"] is not None else "; not testable: one seed"))
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
    report.text(f"Curves and fits: seed {summary['seeds'][0]}; verdicts: every seed.")
    report.heading("PPO checkpoints").table([{"proxy": a, **point} for a, p in summary["proxies"].items()
                                             for point in p["rl"]])
    report.text("kl: the raw Monte-Carlo estimate of KL(policy || SFT) from the policy's samples, with its "
                "standard error kl_se; an estimate below 0 is noise around 0 and is plotted at d = 0.")
    return report.write(out / "report.html")

