"""report.html of `alignlab elasticity` (see elasticity.py): verdicts, the resistance table and loss
curves, rebound curves with their knees, scaling, and the compression view."""
from __future__ import annotations

from pathlib import Path

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


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def write_report(out: Path, s: dict) -> Path:
    from ..report import Report, plot_curves

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
                    f"NLL by {_num(strong['gain_last_10pct'])} nats/token ({strong['criterion']}: "
                    f"{'converged' if strong['converged'] else 'NOT converged, so every verdict below is under-powered'}"
                    "). Its checkpoints are the pretraining-data axis.")
    report.heading("Verdicts").verdicts({c: (ok, s["verdict_details"][c]) for c, ok in s["verdicts"].items()})
    report.text("Criteria are fixed in code (experiments/elasticity.py) and were not tuned to the results. "
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
        curves = {int(a): {**c, "judge": judge} for a, c in s["rebound"].items()}
        report.heading("Rebound: negative fine-tuning after growing amounts of positive data")
        report.text("Constant learning rate during the negative fine-tuning, so a knee is the model's, not the "
                    "schedule's. Knee: the continuous two-segment line fit with the least squared error. "
                    "initial_drop_slope: judge score per negative step before the knee.")
        report.figure(_with_knees(plot_curves(_score_curves(curves, judge, lambda a: f"{a} positive examples"),
                                              f"rebound ({judge})", "negative-data steps", "mean judge score"),
                                  curves), "rebound")
        for other in [k[len("score_"):] for k in curves[min(curves)]["points"][0] if k.startswith("score_")]:
            if other != judge:
                fig = plot_curves(_score_curves(curves, other, lambda a: f"{a} positive examples"),
                                  f"rebound ({other})", "negative-data steps", "mean score")
                report.figure(fig, f"rebound-{other}")
        report.table({f"{a} positive": {k: c[k] for k in CURVE_COLUMNS} for a, c in curves.items()})

    if "scaling" in s:
        sc = s["scaling"]
        report.heading(f"Scaling: rebound strength after {sc['amount']} positive examples")
        report.text("Rebound strength = -initial_drop_slope (judge score lost per negative step before the knee). "
                    "Sizes share one small pretraining budget; budgets are fractions of the base's steps.")
        for name, group, label in (("size", sc["size"], str), ("budget", sc["pretrain_steps"],
                                                                lambda k: f"{k} pretraining steps")):
            curves = {k: {**c, "judge": judge} for k, c in group.items()}
            report.figure(_with_knees(plot_curves(_score_curves(curves, judge, label), f"rebound by {name}",
                                                  "negative-data steps", "mean judge score"), curves),
                          f"scaling-{name}")
            report.table({label(k): {"parameters": c.get("parameters"), "pretrain_tokens": c["pretrain_tokens"],
                                     "rebound_strength": -c["initial_drop_slope"],
                                     **{k2: c[k2] for k2 in CURVE_COLUMNS}} for k, c in group.items()})

    if "compression" in s:
        report.heading("The compression view")
        report.text("Change in bits per byte from the aligned model to the end of the negative fine-tuning, on fresh "
                    "pretraining-style text and on fresh alignment-style text. The paper predicts the alignment "
                    "text's change to exceed the pretraining text's by a factor of order |D_pretrain| / |D_align| "
                    "(here: tokens trained on).")
        report.table(s["compression"])
        if "rebound" in s:
            series = {}
            for a, c in s["rebound"].items():
                if int(a) and "bpb_align" in c["points"][0]:
                    steps = [p["step"] for p in c["points"]]
                    for kind in ("pretrain", "align"):
                        series[f"{a} positive, {kind} text"] = (
                            steps, [p[f"bpb_{kind}"] - c["points"][0][f"bpb_{kind}"] for p in c["points"]])
            report.figure(plot_curves(series, "change in bits per byte under negative fine-tuning",
                                      "negative-data steps", "bpb - bpb at step 0"), "compression")
    return report.write(out / "report.html")
