"""report.html of `alignlab elasticity` (see __init__.py): verdicts, the resistance table and loss
curves, rebound probe curves and their two-phase fits, scaling, and the compression view."""
from __future__ import annotations

from pathlib import Path

from ...analysis.stats import fmt

CURVE_COLUMNS = ["score_start", "score_end", "initial_drop_slope", "knee_step", "slope_after_knee",
                 "knee_slope_ratio", "slows_after_knee"]


def _score_curves(curves: dict, judge: str, label) -> dict:
    return {label(k): ([p["step"] for p in c["points"]], [p[f"score_{judge}"] for p in c["points"]])
            for k, c in curves.items()}


def _with_knees(fig, curves: dict):
    """Mark each curve's knee on the plot (same colour order as plot_curves draws the lines)."""
    ax = fig.axes[0]
    for i, c in enumerate(curves.values()):
        at = next(p for p in c["points"] if p["step"] == c["knee_step"])
        ax.plot([c["knee_step"]], [at[f"score_{c['judge']}"]], marker="o", color=f"C{i % 10}")
    return fig


def write_report(out: Path, s: dict) -> Path:
    from ...report import Report, plot_curves

    judge = s["judge"]
    title = f"Elasticity of alignment (Ji et al., ACL 2025) on {s['data']}" + (" (micro)" if s["micro"] else "")
    tokens = s["base_pretrain_tokens"]
    report = Report(title,
                    f"model: {s.get('model', 'its own base')}; judge: {judge} ({s['judge_quality']}); "
                    f"base pretrained on {'an unknown number of' if tokens is None else tokens} tokens; "
                    f"wall time {s['wall_seconds']:.0f} s (finished runs are reused); parts: {', '.join(s['parts'])}")
    if strong := s.get("strong_base"):
        report.text(f"The shared strong base: {strong['tokens_trained']:,} tokens of fresh documents "
                    f"({strong['epochs']:.2f} epochs: none read twice); the last 10% of its tokens lowered held-out "
                    f"NLL by {fmt(strong['gain_last_10pct'], '.4f')} nats/token ({strong['criterion']}: "
                    f"{'converged' if strong['converged'] else 'NOT converged, so every verdict below is under-powered'}"
                    "). Its checkpoints are the pretraining-data axis.")
    report.heading("Verdicts").verdicts({c: (ok, s["verdict_details"][c]) for c, ok in s["verdicts"].items()})
    report.text("Criteria are fixed in code (experiments/elasticity/__init__.py) and were not tuned to the results. "
                "A claim that fails them is reported as not reproduced at this scale.")

    if "resistance" in s:
        report.heading("Resistance: forward vs inverse alignment (Table 1)")
        report.text("Forward: the earlier slice theta_i fine-tuned one epoch on the later slice theta_j's answers; "
                    "inverse: theta_j on theta_i's. Same hyperparameters, same held-out prompts. M1 (the paper's): "
                    "final training loss, mean of the last 4 steps. M2 (primary): NLL of the target slice's held-out "
                    "answers under the pair model minus the target's own NLL on them (an estimate of KL(target || "
                    "model) per token; M1 also counts the answers' own entropy, which differs between slices). M3: "
                    "share of the starting excess closed. The paper finds the inverse direction easier.")
        report.table({f"{metric.upper()}": {"mean (forward - inverse)": st["mean"], "95% CI low": st["ci_low"],
                                            "95% CI high": st["ci_high"], "seeds positive": f"{st['positive']} of "
                                            f"{st['n_seeds']}", "sign test p": st["sign_test_p"]}
                      for metric in ("m1", "m2", "m3") for st in [s[f"resistance_{metric}"]]})
        report.text("One difference per seed (the mean over its three pairs); M3's sign is flipped so that positive "
                    "always means the inverse direction is easier.")
        report.table({f"{r['pair']} seed {r['seed']}": {k: r[k] for k in (
            "forward_m1", "inverse_m1", "forward_m2", "inverse_m2", "forward_m3", "inverse_m3",
            "forward_target_self_nll", "inverse_target_self_nll", "score_earlier", "score_later")}
            for r in s["resistance"]})
        pairs = list(dict.fromkeys(r["pair"] for r in s["resistance"]))
        for pair in pairs:
            series = {f"{d} seed {r['seed']}": ([x for x, _ in r[f"{d}_curve"]], [y for _, y in r[f"{d}_curve"]])
                      for r in s["resistance"] if r["pair"] == pair for d in ("forward", "inverse")}
            fig = plot_curves(series, f"training loss, {pair}", "step", "loss")
            for line in fig.axes[0].lines:  # one colour per direction, one dash per seed
                direction, _, seed = line.get_label().split()
                line.set_color("C0" if direction == "forward" else "C3")
                line.set_linestyle(["-", "--", ":", "-."][int(seed) % 4])
            fig.axes[0].legend(fontsize=8, ncol=2)
            report.figure(fig, f"resistance-{pair}")

    if "rebound" in s:
        report.heading("Rebound: negative fine-tuning after growing amounts of positive data")
        report.text("One pass over distinct negative examples at a constant learning rate (a decaying schedule "
                    "would bend every curve by itself). Probes: log-odds = mean per-token log-likelihood of fixed "
                    "positive minus fixed negative reference answers; KL(base || model) per token on fixed samples "
                    "of the base; the judge's mean score of samples (descriptive: bounded and sampled). "
                    "n* = negative examples until the log-odds reach the base's own value.")
        first = s["rebound"][str(s["rebound_seeds"][0])]
        for key, what in (("logodds", "log-odds (positive - negative references)"),
                          ("kl_base", "KL(base || model), nats/token"), (f"score_{judge}", f"mean {judge} score")):
            series = {f"{a} positive": ([p["examples"] for p in c["points"]], [p[key] for p in c["points"]])
                      for a, c in first.items()}
            report.figure(plot_curves(series, f"rebound, seed {s['rebound_seeds'][0]}: {what}",
                                      "negative examples seen", what), f"rebound-{key}")
        report.table({f"amount {a}": {"R1 speed ratio (geometric mean)": st and st["mean"],
                                      "95% CI low": st and st["ci_low"], "95% CI high": st and st["ci_high"],
                                      "seeds": st and st["n_seeds"]} for a, st in s["rebound_r1"].items()})
        report.table({f"seed {r['seed']}, amount {r['amount']}": {k: r[k] for k in (
            "logodds_start", "base_logodds", "n_cross", "speed_before", "speed_after", "ratio",
            "base_departure_speed", "elasticity_ratio", "kl_start", "kl_min", "n_kl_min")}
            for r in s["rebound_fits"]})
        report.text("Judge score at the start and end of each curve, and the descriptive knee fit of the score "
                    "(no verdict rests on it).")
        report.table({f"seed {seed}, amount {a}": {k: c[k] for k in CURVE_COLUMNS}
                      for seed, curves in s["rebound"].items() for a, c in curves.items()})

    if "scaling" in s:
        sc = s["scaling"]
        report.heading(f"Scaling: the rebound after {sc['amount']} positive examples")
        report.text("Pretraining data (the verdict): from the base's checkpoints, per seed, R1' = the aligned model's "
                    "return speed to the checkpoint's own log-odds over that checkpoint's departure speed under the "
                    "same negatives. Size (exploratory, no verdict): the gold score lost per negative step before the "
                    "knee; the sizes share one small pretraining budget. Plots: the first seed's gold score.")
        report.table({f"{k} steps ({b['pretrain_tokens']:,} tokens)": {f"R1' seed {seed}": r
                                                                       for seed, r in b["elasticity_ratio"].items()}
                      for k, b in sc["pretrain_steps"].items()})
        for name, group, label in (("size", sc["size"], str), ("budget", sc["pretrain_steps"],
                                                                lambda k: f"{k} pretraining steps")):
            curves = {k: {**c, "judge": judge} for k, c in group.items()}
            report.figure(_with_knees(plot_curves(_score_curves(curves, judge, label), f"rebound by {name}",
                                                  "negative-data steps", "mean judge score"), curves),
                          f"scaling-{name}")
        report.table({k: {"parameters": c["parameters"], "pretrain_tokens": c["pretrain_tokens"],
                          "gold score lost per step": -c["initial_drop_slope"], **{k2: c[k2] for k2 in CURVE_COLUMNS}}
                      for k, c in sc["size"].items()})

    if "compression" in s:
        report.heading("The compression view")
        report.text("Signed change in bits per byte from the aligned model to the end of the negative fine-tuning, "
                    "on fresh pretraining-style text and on fresh alignment-style text, per seed and amount. The "
                    "theorem (the project's extension; the paper never tested it) predicts opposite signs, alignment "
                    "text worse and pretraining text better, by a ratio that grows with k = |D_pretrain| / |D_align| "
                    "(here: tokens trained on).")
        report.table({f"seed {r['seed']}, {r['source']}": {k: v for k, v in r.items() if k not in ("seed", "source")}
                      for r in s["compression"]})
        if s.get("compression_by_pretraining"):
            report.text("The same after the scaling amount from the base's earlier checkpoints (descriptive):")
            report.table(s["compression_by_pretraining"])
        if "rebound" in s:
            series = {}
            for a, c in s["rebound"][str(s["rebound_seeds"][0])].items():
                if int(a) and "bpb_align" in c["points"][0]:
                    steps = [p["step"] for p in c["points"]]
                    for kind in ("pretrain", "align"):
                        series[f"{a} positive, {kind} text"] = (
                            steps, [p[f"bpb_{kind}"] - c["points"][0][f"bpb_{kind}"] for p in c["points"]])
            report.figure(plot_curves(series, "change in bits per byte under negative fine-tuning",
                                      "negative-data steps", "bpb - bpb at step 0"), "compression")
    return report.write(out / "report.html")
