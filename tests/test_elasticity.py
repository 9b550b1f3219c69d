"""Elasticity of alignment (Ji et al. 2025): the statistics on known answers, and one micro run of
`alignlab elasticity all` on the world (its numbers mean little; its shape must hold)."""
import json
import math
import random
import sys

import pytest

from alignlab import cli
from conftest import SHARED_DATA, needs_shared_data
from alignlab.experiments.elasticity import compression_row, verdicts
from alignlab.experiments.elasticity_fit import knee, sign_test_p, slope, slope_ratio, slowed, spearman


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
    checks = verdicts({"resistance_pairs_total": 9, "resistance_pairs_inverse_lower": 8, "resistance": [],
                       "resistance_sign_test_p": sign_test_p(8, 9)})
    assert checks["resistance"][0] is True and "8 of 9" in checks["resistance"][1]
    assert all(ok is None for claim, (ok, _) in checks.items() if claim != "resistance")


def test_elasticity_all_micro(tmp_path, monkeypatch):
    out = tmp_path / "el"
    monkeypatch.setattr(sys, "argv", ["alignlab", "elasticity", "all", "--micro", "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None)
    s = json.loads((out / "summary.json").read_text())
    assert s["data"] == "world" and s["micro"] is True and s["judge_accuracy"] is None  # the gold judge is exact
    # resistance: 3 pairs x 2 micro seeds, each with both loss curves
    assert s["resistance_pairs_total"] == 6
    # the count the sign test uses is the number of cases whose inverse curve's mean loss is the lower one
    assert s["resistance_pairs_inverse_lower"] == sum(r["inverse_mean"] < r["forward_mean"] for r in s["resistance"])
    assert {r["pair"] for r in s["resistance"]} == {"theta1-theta2", "theta1-theta3", "theta2-theta3"}
    assert all(r["forward_curve"] and r["inverse_curve"] and r["forward_mean"] > 0 for r in s["resistance"])
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
    assert set(s["verdicts"]) == {"resistance", "rebound", "more_alignment_faster_rebound", "size_scaling",
                                  "data_scaling", "compression_ratio"}
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
