"""Elasticity of alignment (Ji et al. 2025): the statistics on known answers, and one micro run of
`alignlab elasticity all` on the world (its numbers mean little; its shape must hold)."""
import json
import math
import random
import sys

import pytest

from alignlab import cli
from conftest import SHARED_DATA, needs_shared_data
from alignlab.experiments.elasticity import compression_row, resistance_summary, verdicts
from alignlab.experiments.elasticity_fit import knee, seed_level, sign_test_p, slope, slope_ratio, slowed, spearman


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


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    # textbook case: d = (0, 1, -1, 0, 0) -> 1 - 6 * 2 / (5 * 24) = 0.9
    assert spearman([1, 2, 3, 4, 5], [1, 3, 2, 4, 5]) == pytest.approx(0.9)
    assert spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(math.sqrt(3) / 2)  # ties share a mean rank
    assert spearman([1, 2, 3], [5, 5, 5]) is None and spearman([1, 2], [1, 2]) is None


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
    # a rank correlation on 3 points is no verdict, however perfect
    assert verdicts({"scaling": {"size": {"a": 1, "b": 2, "c": 3}, "pretrain_steps": {}},
                     "size_spearman_rho": 1.0})["size_scaling"][0] is None


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
    # rebound: one curve per positive amount, probed every 2 of 8 negative steps
    amounts = ["0", "8", "16", "32", "64"]
    assert list(s["initial_drop_slope"]) == amounts and list(s["knee_slope_ratio"]) == amounts
    assert s["rebound_spearman_rho_by_judge"] == {"gold": s["rebound_spearman_rho"]}
    for curve in s["rebound"].values():
        assert [p["step"] for p in curve["points"]] == [0, 2, 4, 6, 8]
    # scaling: three sizes and three pretraining budgets, each with a rebound strength
    assert list(s["rebound_strength_by_size"]) == ["tiny-1m", "tiny-4m", "tiny-16m"]
    assert len(s["rebound_strength_by_pretrain_tokens"]) == 3
    sizes = s["scaling"]["size"]
    assert sizes["tiny-1m"]["parameters"] < sizes["tiny-4m"]["parameters"] < sizes["tiny-16m"]["parameters"]
    # compression: one row per aligned amount and per smaller budget (the full one is a rebound run)
    assert len(s["compression"]) == 4 + 2 and all(r["theory_ratio"] > 0 for r in s["compression"])
    assert set(s["verdicts"]) == {"resistance", "resistance_paper_metric", "rebound", "more_alignment_faster_rebound",
                                  "size_scaling", "data_scaling", "compression_ratio"}
    assert s["verdicts"]["size_scaling"] is None and s["verdicts"]["more_alignment_faster_rebound"] is None
    assert all(v in (True, False, None) for v in s["verdicts"].values())
    html = (out / "report.html").read_text()
    assert "Verdicts" in html and "Table 1" in html and html.count("data:image/png;base64,") >= 6


def test_hh_transcripts_in_the_chat_format():
    from alignlab.experiments.elasticity_data import hh_to_world_format

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
    for curve in s["rebound"].values():  # both judges score every probe
        assert set(curve["initial_drop_slope_by_judge"]) == {"classifier", "vader"}
        assert curve["initial_drop_slope_by_judge"]["classifier"] == curve["initial_drop_slope"]
    rhos = s["rebound_spearman_rho_by_judge"]
    assert list(rhos) == ["classifier", "vader"] and rhos["classifier"] == s["rebound_spearman_rho"]
    assert "vader judge" in s["verdict_details"]["more_alignment_faster_rebound"]
    assert s["verdicts"]["resistance"] is None and s["verdicts"]["compression_ratio"] is None
    negative = [json.loads(line) for line in (tmp_path / "el" / "rebound" / "negative.jsonl").read_text().splitlines()]
    assert len(negative) == 16 and all(2 <= len(r["prompt"].split()) <= 8 and "<br" not in r["completion"]
                                       for r in negative)


@needs_shared_data
def test_elasticity_safety_micro(tmp_path, monkeypatch):
    """Safety: a base pretrained on hh-rlhf transcripts, PKU-SafeRLHF safer/less safe answers, a trained judge."""
    out = tmp_path / "el"
    s = _micro(monkeypatch, "compression", "safety", out)
    assert s["data"] == "safety" and s["judge"] == "safety-classifier"
    rows = s["compression"]
    assert len(rows) == 4 + 2 and all(r["align_tokens"] > 0 and r["theory_ratio"] > 0 for r in rows)
    # more positive examples -> more alignment tokens -> a smaller |D_pretrain| / |D_align|
    by_align = [r for r in rows if r["source"].startswith("amount")]
    assert [r["theory_ratio"] for r in by_align] == sorted((r["theory_ratio"] for r in by_align), reverse=True)
    assert s["verdicts"]["compression_ratio"] in (True, False) and s["verdicts"]["rebound"] is None
    corpus = [json.loads(line)["text"] for line in (out / "safety" / "corpus.jsonl").read_text().splitlines()]
    # hh transcripts in the chat format the world uses
    assert all(t.startswith("User: ") and "\n\nHuman: " not in t and "\nAssistant: " in t for t in corpus)
    # the judge's held-out prompts were never trained on: a quarter of the PKU prompts is held out
    train = {json.loads(line)["prompt"] for f in ("positive-64.jsonl", "negative.jsonl")
             for line in (out / "rebound" / f).read_text().splitlines()}
    labelled = (out / "safety" / "labelled.jsonl").read_text()
    from alignlab.experiments import elasticity, elasticity_data

    setting = elasticity_data.safety_setting(out, 0, True, elasticity.SCALES["micro"], SHARED_DATA)
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
