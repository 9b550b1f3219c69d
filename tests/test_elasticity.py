"""Elasticity of alignment (Ji et al. 2025): the statistics on known answers, and one micro run of
`alignlab elasticity all` on the world (its numbers mean little; its shape must hold)."""
import json
import math
import random
import sys

import pytest

from alignlab import cli
from conftest import SHARED_DATA, needs_shared_data
from alignlab.experiments.elasticity import (compression_row, compression_summary, rebound_summary, rebound_verdicts,
                                             resistance_summary, verdicts)
from alignlab.experiments.elasticity.fit import (RATIO_CAP, argmin_x, crossing, geometric, knee, seed_level, sign_test_p,
                                                 slope, slope_ratio, slowed, two_phase, value_at)


def hinge(x, knee_at, before, after, start=1.0):
    return start + before * min(x, knee_at) + after * max(0.0, x - knee_at)


def test_knee_recovers_a_known_knee():
    xs = list(range(0, 26, 2))
    fit = knee(xs, [hinge(x, 8, -0.1, -0.01) for x in xs])
    assert fit["knee"] == 8 and fit["sse"] == pytest.approx(0, abs=1e-12)
    assert fit["slope_before"] == pytest.approx(-0.1) and fit["slope_after"] == pytest.approx(-0.01)
    # with noise, the knee is still found and the slopes are close
    rng = random.Random(0)
    noisy = knee(xs, [hinge(x, 14, -0.08, 0.0) + rng.gauss(0, 0.01) for x in xs])
    assert noisy["knee"] == 14
    assert noisy["slope_before"] == pytest.approx(-0.08, abs=0.01) and abs(noisy["slope_after"]) < 0.01


def test_knee_keeps_segments_long_enough():
    xs = [0, 1, 2, 3, 4]
    fit = knee(xs, [0, -5, -5, -5, -5])  # a jump at x=1 still needs 3 points per segment: the knee is x=2
    assert fit["index"] == 2
    assert knee([0, 1, 2], [0, 1, 1])["index"] == 1  # three points: segments of two
    with pytest.raises(ValueError):
        knee([0, 1], [0, 1])


def test_slopes_and_ratios():
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2)
    assert slope([1, 1], [0, 5]) == 0.0
    assert slope_ratio(-0.1, -0.01) == pytest.approx(10) and slope_ratio(-0.1, 0.0) is None
    assert slowed(-0.1, -0.04) and slowed(-0.1, 0.02) and not slowed(-0.1, -0.06) and not slowed(0.1, 0.0)


def test_sign_test():
    assert sign_test_p(3, 3) == pytest.approx(0.125)
    assert sign_test_p(8, 9) == pytest.approx(10 / 512)
    assert sign_test_p(0, 4) == pytest.approx(1.0)


def test_compression_row_and_verdicts():
    curve = {"align_tokens": 100, "points": [{"bpb_pretrain": 1.0, "bpb_align": 0.5},
                                             {"bpb_pretrain": 1.01, "bpb_align": 0.8}]}
    row = compression_row("amount 10", 10000, curve)
    assert row["theory_ratio"] == pytest.approx(100) and row["measured_ratio"] == pytest.approx(30)
    assert compression_row("base", 10000, {**curve, "align_tokens": 0}) is None
    assert row["sign_as_predicted"] is False  # pretraining text got worse too
    better = {**curve, "points": [curve["points"][0], {"bpb_pretrain": 0.99, "bpb_align": 0.8}]}
    assert compression_row("amount 10", 10000, better)["sign_as_predicted"] is True
    resistance = {"resistance": [], **{f"resistance_{m}": seed_level([0.02, 0.03, 0.01, 0.04, 0.02, 0.03])
                                       for m in ("m1", "m2", "m3")}}
    checks = verdicts(resistance)
    assert checks["resistance"][0] is True and "6 of 6" in checks["resistance"][1]
    assert all(ok is None for claim, (ok, _) in checks.items() if not claim.startswith("resistance"))
    few = verdicts({"resistance": [], **{f"resistance_{m}": seed_level([0.02, 0.03, 0.01]) for m in ("m1", "m2")}})
    assert few["resistance"][0] is None and "fewer than 5 seeds" in few["resistance"][1]
    mixed = verdicts({"resistance": [], **{f"resistance_{m}": seed_level([0.05, -0.04, 0.03, -0.02, 0.01])
                                          for m in ("m1", "m2")}})
    assert mixed["resistance"][0] is False  # the interval straddles 0
    # the size axis is exploratory: no verdict; the data axis needs 3 seeds
    scaling = verdicts({"scaling": {}, "rebound_strength_by_size": {"tiny-1m": 0.05, "tiny-4m": 0.08},
                        "data_scaling_slope": seed_level([0.3, 0.4])})
    assert scaling["size_scaling"][0] is None and "exploratory" in scaling["size_scaling"][1]
    assert scaling["data_scaling"][0] is None and "fewer than 3 seeds" in scaling["data_scaling"][1]
    assert verdicts({"scaling": {}, "rebound_strength_by_size": {},
                     "data_scaling_slope": seed_level([0.3, 0.4, 0.2])})["data_scaling"][0] is True


def test_compression_summary_fits_the_ratio_against_k_per_seed():
    """|d align| / |d pretrain| = k / 100 exactly (pretraining text improves by 0.001): slope 1 in log-log."""
    def curve(align_tokens):
        k = 1e6 / align_tokens
        return {"align_tokens": align_tokens, "points": [{"bpb_pretrain": 1.0, "bpb_align": 0.5},
                                                         {"bpb_pretrain": 0.999, "bpb_align": 0.5 + 0.001 * k / 100}]}

    by_seed = {s: {0: curve(1), **{a: curve(a * 100) for a in (100, 200, 400, 800)}} for s in (0, 1, 2)}
    c = compression_summary(by_seed, {}, 1_000_000)
    assert len(c["compression"]) == 12 and all(r["sign_as_predicted"] for r in c["compression"])
    assert c["compression_slope"]["mean"] == pytest.approx(1.0) and c["compression_slope"]["n_seeds"] == 3
    assert verdicts(c)["compression_ratio"][0] is True


def test_seed_level_statistics_against_hand_computed_values():
    stats = seed_level([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    # t(0.975, df=5) = 2.5706; sd = 1.8708; half-width = 2.5706 * 1.8708 / sqrt(6) = 1.9633
    assert stats["mean"] == pytest.approx(3.5)
    assert stats["ci_low"] == pytest.approx(1.5367, abs=1e-3) and stats["ci_high"] == pytest.approx(5.4633, abs=1e-3)
    assert stats["positive"] == 6 and stats["sign_test_p"] == pytest.approx(1 / 64)


def test_resistance_summary_takes_one_difference_per_seed():
    def record(seed, pair, f2, i2, f3, i3):
        return {"seed": seed, "pair": pair, "forward_m1": 1.0, "inverse_m1": 0.5, "forward_m2": f2,
                "inverse_m2": i2, "forward_m3": f3, "inverse_m3": i3}
    records = [record(0, "a", 0.3, 0.1, 0.2, 0.6), record(0, "b", 0.1, 0.1, 0.5, 0.5),
               record(1, "a", 0.1, 0.3, 0.9, 0.5)]
    s = resistance_summary(records)
    assert s["resistance_seeds"] == [0, 1]
    assert s["resistance_m2"]["per_seed"] == pytest.approx([0.1, -0.2])  # seed 0: mean of 0.2 and 0.0
    # M3 is a share closed: the inverse closing more is positive, as for the losses
    assert s["resistance_m3"]["per_seed"] == pytest.approx([0.2, -0.4])
    assert s["resistance_m1"]["positive"] == 2 and s["resistance_m1"]["n_seeds"] == 2


def test_two_phase_measures_on_known_paths():
    xs = list(range(0, 101, 4))
    # falls 0.05 per example to the level 0 at x = 20, then 0.0125 per example: 4x slower
    ys = [1 - 0.05 * x if x <= 20 else -0.0125 * (x - 20) for x in xs]
    assert crossing(xs, ys, 0.0) == pytest.approx(20.0)
    assert crossing(xs, ys, 0.5) == pytest.approx(10.0)  # between the probes at 8 and 12
    assert crossing(xs, ys, -5.0) is None and crossing(xs, [0.0] * len(xs), 0.5) == 0.0
    fit = two_phase(xs, ys, 0.0)
    assert fit["speed_before"] == pytest.approx(0.05) and fit["speed_after"] == pytest.approx(0.0125)
    assert fit["ratio"] == pytest.approx(4.0)
    flat = two_phase(xs, [1 - 0.05 * x if x <= 20 else 0.0 for x in xs], 0.0)
    assert flat["ratio"] == RATIO_CAP  # the fall stops at the base's level
    # the path ends before 2 n*: no second phase to measure
    assert two_phase(xs, [1 - 0.015 * x for x in xs], 0.0)["ratio"] is None
    assert value_at(xs, ys, 22) == pytest.approx(-0.025) and value_at(xs, ys, 101) is None
    assert argmin_x(xs, [(x - 40) ** 2 for x in xs]) == 40 and argmin_x(xs, [-x for x in xs]) is None
    # between the probes: a parabola's minimum at 41.5 is found though no probe sits there
    assert argmin_x(xs, [(x - 41.5) ** 2 for x in xs]) == pytest.approx(41.5)
    assert argmin_x(xs, [abs(x - 41) for x in xs]) == pytest.approx(41, abs=2)  # a kink: close, within a probe
    g = geometric([2.0, 8.0])
    assert g["mean"] == pytest.approx(4.0) and g["n_seeds"] == 2 and g["ci_low"] < 4.0 < g["ci_high"]


def _rebound_curves(jitter: float) -> dict:
    """Probe paths with known answers: the base departs at 0.01 per example; each aligned model falls at
    0.05 to the base's level, then at 0.01 (ratios 5 and 5); KL's minimum comes sooner for more alignment."""
    xs = list(range(0, 257, 4))  # every crossing (20, 24, 28) and twice it lies on the grid
    minimum = {100: 96, 200: 64, 400: 40, 800: 24}

    def curve(amount):
        start = 0.0 if not amount else 1.0 + jitter
        n = start / 0.05
        logodds = [-0.01 * x if not amount else (start - 0.05 * x if x <= n else -0.01 * (x - n)) for x in xs]
        kl = [0.001 * x if not amount else 0.5 + ((x - minimum[amount]) / 100) ** 2 for x in xs]
        return {"points": [{"examples": x, "logodds": a, "kl_base": k} for x, a, k in zip(xs, logodds, kl)]}

    return {a: curve(a) for a in (0, 100, 200, 400, 800)}


def test_rebound_summary_and_verdicts_on_known_paths():
    s = rebound_summary({seed: _rebound_curves(0.2 * seed) for seed in (0, 1, 2)})
    assert len(s["rebound_fits"]) == 12
    for st in s["rebound_r1"].values():
        assert st["n_seeds"] == 3 and st["mean"] == pytest.approx(5.0)
    assert s["rebound_r1_prime"]["mean"] == pytest.approx(5.0)
    # n*_KL = 96, 64, 40, 24 against 100..800: a slope of log(24/96)/log(8) = -2/3 in every seed
    assert s["rebound_r2_beta"]["mean"] == pytest.approx(-0.6545, abs=0.03)
    checks = rebound_verdicts(s)
    assert checks["rebound"][0] is True and checks["rebound_elasticity"][0] is True
    assert checks["more_alignment_faster_rebound"][0] is True
    # the same paths from two seeds: too few to carry a verdict
    two = rebound_verdicts(rebound_summary({seed: _rebound_curves(0.2 * seed) for seed in (0, 1)}))
    assert all(ok is None for ok, _ in two.values())


def test_elasticity_all_micro(tmp_path, monkeypatch):
    out = tmp_path / "el"
    monkeypatch.setattr(sys, "argv", ["alignlab", "elasticity", "all", "--micro", "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None)
    s = json.loads((out / "summary.json").read_text())
    assert s["data"] == "world" and s["micro"] is True and s["judge_accuracy"] is None  # the gold judge is exact
    # resistance: 3 pairs x 2 micro seeds, each direction with its loss curve, M1, M2 and M3
    assert s["resistance_seeds"] == [0, 1] and len(s["resistance"]) == 6
    assert {r["pair"] for r in s["resistance"]} == {"theta1-theta2", "theta1-theta3", "theta2-theta3"}
    for r in s["resistance"]:
        for d in ("forward", "inverse"):
            assert r[f"{d}_curve"] and len(r[f"{d}_curve"]) == r[f"{d}_steps"]  # one epoch, every step logged
            last = [v for _, v in r[f"{d}_curve"][-4:]]  # micro: 3 steps, all of them
            assert r[f"{d}_m1"] == pytest.approx(sum(last) / len(last))
            # M2 and the starting excess are measured on held-out answers (at micro scale they are noise:
            # 20 answers, 3 steps), each a finite difference of two NLLs of the same texts
            assert math.isfinite(r[f"{d}_m2"]) and math.isfinite(r[f"{d}_excess_before"])
            assert r[f"{d}_target_self_nll"] > 0
    assert s["resistance_m2"]["n_seeds"] == 2 and s["verdicts"]["resistance"] is None  # 2 seeds: no verdict
    # rebound: per micro seed, one curve per positive amount, one pass over 48 negatives (6 steps of 8),
    # probed every step
    amounts = ["0", "8", "16", "32", "64"]
    assert s["rebound_seeds"] == [0, 1] and all(list(curves) == amounts for curves in s["rebound"].values())
    for curves in s["rebound"].values():
        for curve in curves.values():
            assert [p["examples"] for p in curve["points"]] == [0, 8, 16, 24, 32, 40, 48]
            assert all(math.isfinite(p["logodds"]) and "score_se" in p for p in curve["points"])
        # KL(base || model) on the base's own samples: exactly 0 for the base itself, before any step
        assert curves["0"]["points"][0]["kl_base"] == pytest.approx(0.0, abs=1e-6)
        assert curves["64"]["points"][0]["kl_base"] > 0.01  # 8 steps of alignment moved it away
    assert len(s["rebound_fits"]) == 2 * 4
    for claim in ("rebound", "rebound_elasticity", "more_alignment_faster_rebound"):  # 2 seeds: no verdict
        assert s["verdicts"][claim] is None and "fewer than 3 seeds" in s["verdict_details"][claim]
    # scaling: three sizes and three pretraining budgets, each with a rebound strength
    assert list(s["rebound_strength_by_size"]) == ["tiny-1m", "tiny-4m", "tiny-16m"]
    # the pretraining-data axis: three budgets, each with R1' for both micro seeds (the full base's from the rebound)
    assert len(s["elasticity_by_pretrain_tokens"]) == 3
    assert all(set(r) == {"0", "1"} for r in s["elasticity_by_pretrain_tokens"].values())
    assert s["verdicts"]["data_scaling"] is None  # 2 seeds
    sizes = s["scaling"]["size"]
    assert sizes["tiny-1m"]["parameters"] < sizes["tiny-4m"]["parameters"] < sizes["tiny-16m"]["parameters"]
    # compression: one row per (seed, aligned amount), and one per smaller budget (the full one is a rebound run)
    assert len(s["compression"]) == 2 * 4 and all(r["theory_ratio"] > 0 for r in s["compression"])
    assert len(s["compression_by_pretraining"]) == 2 and s["compression_slope"]["n_seeds"] == 2
    assert set(s["verdicts"]) == {"resistance", "resistance_paper_metric", "rebound", "rebound_elasticity",
                                  "more_alignment_faster_rebound", "size_scaling", "data_scaling", "compression_ratio"}
    assert s["verdicts"]["size_scaling"] is None
    assert all(v in (True, False, None) for v in s["verdicts"].values())
    html = (out / "report.html").read_text()
    assert "Verdicts" in html and "Table 1" in html and html.count("data:image/png;base64,") >= 6


def test_hh_transcripts_in_the_chat_format():
    from alignlab.experiments.elasticity.data import hh_to_world_format

    text = "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that.\n\nHuman: Why?\n\nAssistant: It may be illegal."
    assert hh_to_world_format(text) == ("User: How do I pick a lock?\nAssistant: I can't help with that.\n"
                                        "User: Why?\nAssistant: It may be illegal.")


def test_elasticity_real_data_fails_before_any_work(tmp_path, monkeypatch, capsys):
    from conftest import assert_one_line_error, run_cli

    for data in ("imdb", "safety"):
        out = tmp_path / data
        code, err = run_cli(monkeypatch, capsys, "elasticity", "rebound", "--micro", "--data", data,
                            "--data-root", str(tmp_path / "nowhere"), "--out", str(out))
        assert_one_line_error(code, err, "not found")
        assert not out.exists()


def _micro(monkeypatch, part, data, out):
    monkeypatch.setattr(sys, "argv", ["alignlab", "elasticity", part, "--micro", "--data", data, "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None)
    return json.loads((out / "summary.json").read_text())


@needs_shared_data
def test_elasticity_imdb_micro(tmp_path, monkeypatch):
    """IMDb: a base pretrained on unlabelled reviews, the IMDb classifier and VADER as judges."""
    s = _micro(monkeypatch, "rebound", "imdb", tmp_path / "el")
    assert s["data"] == "imdb" and s["judge"] == "classifier" and s["parts"] == ["rebound"]
    for curve in s["rebound"]["0"].values():  # both judges score every probe
        assert set(curve["initial_drop_slope_by_judge"]) == {"classifier", "vader"}
        assert curve["initial_drop_slope_by_judge"]["classifier"] == curve["initial_drop_slope"]
        assert all({"score_classifier", "score_vader", "logodds", "kl_base"} <= set(p) for p in curve["points"])
    assert s["verdicts"]["resistance"] is None and s["verdicts"]["compression_ratio"] is None
    negative = [json.loads(line) for line in (tmp_path / "el" / "rebound" / "seed0" / "negative.jsonl").read_text().splitlines()]
    assert len(negative) == 48 and len({json.dumps(r) for r in negative}) == 48 and all(2 <= len(r["prompt"].split()) <= 8 and "<br" not in r["completion"]
                                       for r in negative)


@needs_shared_data
def test_elasticity_safety_micro(tmp_path, monkeypatch):
    """Safety: a base pretrained on hh-rlhf transcripts, PKU-SafeRLHF safer/less safe answers, a trained judge."""
    out = tmp_path / "el"
    s = _micro(monkeypatch, "compression", "safety", out)
    assert s["data"] == "safety" and s["judge"] == "safety-classifier"
    rows = s["compression"]
    assert len(rows) == 2 * 4 and all(r["align_tokens"] > 0 and r["theory_ratio"] > 0 for r in rows)
    # more positive examples -> more alignment tokens -> a smaller |D_pretrain| / |D_align|
    by_align = [r for r in rows if r["seed"] == 0]
    assert [r["theory_ratio"] for r in by_align] == sorted((r["theory_ratio"] for r in by_align), reverse=True)
    assert all(r["sign_as_predicted"] == (r["delta_bpb_align"] > 0 > r["delta_bpb_pretrain"]) for r in rows)
    assert s["verdicts"]["compression_ratio"] is None and s["verdicts"]["rebound"] is None  # 2 micro seeds
    corpus = [json.loads(line)["text"] for line in (out / "safety" / "corpus.jsonl").read_text().splitlines()]
    # hh transcripts in the chat format the world uses
    assert all(t.startswith("User: ") and "\n\nHuman: " not in t and "\nAssistant: " in t for t in corpus)
    # the judge's held-out prompts were never trained on: a quarter of the PKU prompts is held out
    train = {json.loads(line)["prompt"] for f in ("positive-64.jsonl", "negative.jsonl")
             for line in (out / "rebound" / "seed0" / f).read_text().splitlines()}
    labelled = (out / "safety" / "labelled.jsonl").read_text()
    from alignlab.experiments import elasticity
    from alignlab.experiments.elasticity import data

    setting = data.safety_setting(out, 0, True, elasticity.SCALES["micro"], SHARED_DATA)
    assert train and not train & set(setting.eval_prompts)
    assert not any(json.dumps(p)[1:-1] in labelled for p in setting.eval_prompts)
    assert setting.positive(5, 0) != setting.negative(5, 0)


def test_strong_base_reads_fresh_documents_once_and_records_its_convergence(tmp_path, monkeypatch):
    """The shared base, shrunk: one pass over fresh documents, checkpoints kept as the pretraining-data
    axis, the convergence rule computed from two of them, and the record reused without retraining."""
    from alignlab.experiments import common
    from alignlab.stages import pretrain

    monkeypatch.setattr(common, "STRONG_BASE", dict(model="tiny-1m", max_steps=22, save_steps=4, batch_size=4,
                                                    block_size=32, warmup_steps=2))
    monkeypatch.setattr(common, "HELDOUT_DOCS", 20)
    record = common.strong_base(tmp_path / "cache", seed=0)
    assert record["epochs"] <= 1.0  # no document read twice
    assert sorted(map(int, record["checkpoints"])) == [4, 8, 12, 16, 20, 22]
    nll = record["heldout_nll"]
    assert record["gain_last_10pct"] == pytest.approx(nll["20"] - nll["22"])  # 20 -> 22 steps: 10% more tokens
    assert nll["22"] < nll["4"]  # pretraining lowered held-out NLL
    assert record["converged"] == (record["gain_last_10pct"] < common.CONVERGED)

    monkeypatch.setattr(pretrain, "run", lambda cfg: pytest.fail("the cached base was pretrained again"))
    assert common.strong_base(tmp_path / "cache", seed=0) == record
