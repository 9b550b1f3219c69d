"""Reverse alignment end to end at micro scale, and the eval stage's alignment-tax metrics."""
import json

import pytest
import yaml

from alignlab.config import EvalConfig
from conftest import needs_shared_data

ISSUE_KEYS = {"lora_trainable_fraction", "nll_gap_recovered", "canary_recall_base", "canary_recall_aligned",
              "canary_recall_unaligned", "refusal_rate_base", "refusal_rate_aligned", "refusal_rate_unaligned"}


def test_gap_recovered():
    from alignlab.experiments.reversal import gap_recovered

    assert gap_recovered(1.0, 2.0, 1.25) == pytest.approx(0.75)
    assert gap_recovered(1.0, 2.0, 2.5) == pytest.approx(-0.5)  # went further away
    assert gap_recovered(1.0, 1.0, 1.2) is None


def test_recovery_beyond_the_control():
    from alignlab.experiments.reversal import controlled_recovery

    # the reversal closed 0.3 of a 0.4 gap, but the same LoRA lowers the base's own NLL by 0.1
    assert controlled_recovery(base=1.0, aligned=1.4, unaligned=1.1, control=0.9) == pytest.approx(0.5)
    assert controlled_recovery(base=1.0, aligned=1.0, unaligned=0.9, control=0.9) is None


def test_reversal_micro(tmp_path):
    from alignlab.experiments import reversal

    summary = reversal.run(tmp_path / "rv", micro=True)
    assert ISSUE_KEYS <= set(summary)
    assert 0 < summary["lora_trainable_fraction"] <= 0.01
    assert set(summary["models"]) == set(reversal.MODELS)
    # the LoRA was merged into the MLPs of the chosen layers only
    changed = json.loads((tmp_path / "rv" / "unaligned" / "status.json").read_text())["adapted"]
    assert changed and all(any(f"layers.{i}.mlp." in name for i in reversal.SCALES["micro"]["layers"]) for name in changed)
    assert summary["kl_to_reference_base"] == pytest.approx(0, abs=1e-6)
    assert set(summary["nll_by_kind"]) == {"review", "encyclopedia", "dialogue"}
    # control C1: the same LoRA config on the base, measured on the same held-out text
    control = yaml.safe_load((tmp_path / "rv" / "control-base-lora" / "config.yaml").read_text())
    reversal_cfg = yaml.safe_load((tmp_path / "rv" / "unaligned" / "config.yaml").read_text())
    assert control["model"].endswith("base") and {k: v for k, v in control.items() if k not in ("out", "model")} == {
        k: v for k, v in reversal_cfg.items() if k not in ("out", "model")}
    assert all({"control", "gap_recovered_beyond_control"} <= set(v) for v in summary["nll_by_kind"].values())
    assert summary["gap_recovered"]["nll_per_token"] == pytest.approx(summary["nll_gap_recovered"])
    assert "Verdicts" in (tmp_path / "rv" / "report.html").read_text()


def test_eval_reports_format_spread_and_diversity(tmp_path, micro_sft):
    from alignlab.stages import evaluate

    path = evaluate.run(EvalConfig(out=str(tmp_path / "ev"), model=str(micro_sft), n_prompts=6, max_new_tokens=16,
                                   heldout_docs=10, canary_candidates=10))
    metrics = json.loads((path / "metrics.json").read_text())
    assert {"chat_format_adherence", "review_positive_share", "review_negative_share", "self_bleu_review"} <= set(metrics)
    assert not any(k.startswith("bench_") for k in metrics)  # none asked for


def test_eval_rejects_unknown_benchmark(tmp_path):
    from alignlab.errors import InputError
    from alignlab.config import load_config

    with pytest.raises(InputError, match="benchmarks"):
        load_config(EvalConfig, None, {"out": str(tmp_path), "model": "m", "benchmarks": ["bogus"]})


@needs_shared_data
def test_eval_tax_suite_on_real_benchmarks(tmp_path, micro_base):
    from alignlab.stages import evaluate

    path = evaluate.run(EvalConfig(out=str(tmp_path / "ev"), model=str(micro_base), n_prompts=4, max_new_tokens=12,
                                   heldout_docs=10, canary_candidates=10, benchmarks=["hellaswag", "piqa"],
                                   benchmark_items=12, xstest=True))
    metrics = json.loads((path / "metrics.json").read_text())
    assert {"bench_hellaswag", "bench_piqa", "over_refusal_rate_xstest", "refusal_rate_xstest_unsafe"} <= set(metrics)


def test_format_and_spread_with_a_single_review():
    from alignlab.sampling import Sample
    from alignlab.stages.evaluate import format_and_spread

    samples = [Sample("p", " fine", [1], [7, 0]), Sample("q", " more User: hi", [1], [7, 8])]
    metrics = format_and_spread(samples, {"review": [{"score": 0.5, "completion": " fine"}]}, stops=[0])
    assert metrics["chat_format_adherence"] == 0.5  # the second neither ended nor stayed in its turn
    assert metrics["review_positive_share"] == 1 and metrics["self_bleu_review"] is None  # one text: no Self-BLEU
