"""Experiments end to end at micro scale (their numbers mean little; their shape and math must hold)."""
import json
import math

import pytest

from alignlab.experiments.overoptimization import fit, peaks_then_falls


def test_fits_recover_known_coefficients():
    d = [0.1 * i for i in range(1, 30)]
    bon = fit(d, [x * (0.8 - 0.3 * x) for x in d], "bon")
    rl = fit(d, [x * (0.5 - 0.2 * math.log(x)) for x in d], "rl")
    assert bon["alpha"] == pytest.approx(0.8) and bon["beta"] == pytest.approx(0.3) and bon["r2"] == pytest.approx(1.0)
    assert rl["alpha"] == pytest.approx(0.5) and rl["beta"] == pytest.approx(0.2) and rl["r2"] == pytest.approx(1.0)


def test_peak_detection():
    assert peaks_then_falls([0.1, 0.5, 0.3])
    assert not peaks_then_falls([0.1, 0.3, 0.5])
    assert not peaks_then_falls([0.1, 0.5, 0.49])  # within tolerance: a plateau, not a fall


def test_overoptimization_falls_are_measured_on_held_out_prompts():
    from alignlab.experiments.overoptimization import claims, held_out_fall

    # both halves peak at the second point and fall by 0.2 and 0.4 to the end: a fall of 0.3
    falling = [{"gold_halves": h} for h in ([0.1, 0.1], [0.5, 0.7], [0.4, 0.5], [0.3, 0.3])]
    assert held_out_fall(falling) == pytest.approx(0.3)
    # noise that only one half shows: the half that picks the bump measures the other half's plateau
    bump = [{"gold_halves": h} for h in ([0.1, 0.1], [0.6, 0.5], [0.5, 0.5], [0.5, 0.5])]
    assert held_out_fall(bump) == pytest.approx(0.0)
    assert held_out_fall([{"gold_halves": [0.1 * i, 0.1 * i]} for i in range(5)]) == 0.0  # still rising

    def record(points):
        fitted = {"alpha": 1.0, "beta": 0.25, "r2": 0.9}
        return {"bon": points, "rl": points, "bon_fit": fitted, "rl_fit": fitted, "bon_d_max": 2.3, "rl_d_max": 2.3,
                "bon_gold_peaks_then_falls": True, "rl_gold_peaks_then_falls": True, "bon_proxy_keeps_rising": True}

    shifted = [[{"gold_halves": [g + e for g in p["gold_halves"]]} for p in falling] for e in (0.0, 0.05, -0.05)]
    c = claims([record(points) for points in shifted])
    assert c["bon"]["overoptimized"] is True and c["bon"]["fall"]["mean"] == pytest.approx(0.3)
    assert c["bon"]["d_peak"] == pytest.approx(2.0)  # Gao et al.'s fitted peak, descriptive
    assert claims([record(bump)] * 3)["bon"]["overoptimized"] is False  # a fitted bend, no held-out fall
    assert claims([record(falling)])["bon"]["overoptimized"] is None  # one seed: no interval


def test_overoptimization_micro(tmp_path):
    from alignlab.experiments import overoptimization

    summary = overoptimization.run(tmp_path / "oo", micro=True)
    assert set(summary["proxies"]) == {16, 48} and summary["seeds"] == [0, 1] and summary["gold"] == "world-graded"
    assert set(summary["per_seed"]) == {"0", "1"} and set(summary["claims"]) == {16, 48}
    for c in summary["claims"].values():  # one held-out fall (and one beta) per seed behind every verdict
        assert c["bon"]["fall"]["n_seeds"] == 2 and c["rl"]["beta"]["n_seeds"] == 2
    assert summary["bon_kl_analytic"][1] == 0 and summary["bon_kl_analytic"][16] == pytest.approx(math.log(16) - 15 / 16)
    for amount, p in summary["proxies"].items():
        assert [r["n"] for r in p["bon"]] == [1, 2, 4, 8, 16]
        # ties among the proxy's scores only lower the KL below log n - (n - 1)/n; best-of-1 is the policy itself
        assert summary["bon_kl_empirical"][amount][1] == pytest.approx(0, abs=1e-9)
        assert all(summary["bon_kl_empirical"][amount][n] <= summary["bon_kl_analytic"][n] + 1e-9
                   for n in summary["bon_kl_analytic"])
        assert len(p["rl"]) >= 2 and p["rl"][0]["step"] == 0 and p["rl"][0]["kl"] == pytest.approx(0, abs=1e-6)
    written = json.loads((tmp_path / "oo" / "summary.json").read_text())
    assert set(written) >= {"proxies", "bon_kl_analytic", "bon_kl_empirical"}
    assert "Verdicts" in (tmp_path / "oo" / "report.html").read_text()


def test_dominance():
    from alignlab.experiments.frontier import dominates, verdict

    low = [{"kl": 1.0, "reward": 0.2}, {"kl": 3.0, "reward": 0.5}]
    high = [{"kl": 1.0, "reward": 0.4}, {"kl": 2.0, "reward": 0.6}]
    assert dominates(high, low) and not dominates(low, high)
    # the same gap within two standard errors is a close call, not a clear win
    noisy = [{**p, "reward_se": 0.1} for p in high]
    assert dominates(noisy, low) and not dominates(noisy, low, margin=2.0)
    assert dominates(high, low, margin=2.0)  # no noise recorded: any gap is clear
    result = verdict({"start": [{"kl": 0, "reward": 0}], "a": noisy, "b": low})
    assert result["on_frontier"] == ["a"] and result["not_clearly_dominated"] == ["a", "b"]


def test_frontier_micro(tmp_path):
    from alignlab.experiments import frontier

    summary = frontier.run(tmp_path / "fr", micro=True, data="world")
    setting = summary["settings"]["world"]
    methods = setting["methods"]
    assert set(summary["settings"]) == {"world"}
    assert set(methods) == {"start", "dpo", "preferred-ft", "ppo", "best-of-n"}
    assert [p["beta"] for p in methods["dpo"]] == [0.1, 0.5] and [p["n"] for p in methods["best-of-n"]] == [1, 2, 4]
    for points in methods.values():  # KL is a raw estimate: only its noise may take it below 0
        assert all(p["kl"] >= -3 * p.get("kl_se", 0.0) for p in points)
    assert methods["best-of-n"][0]["kl"] == 0
    assert set(setting["on_frontier"]) <= set(setting["not_clearly_dominated"]) <= set(methods)
    assert (tmp_path / "fr" / "report.html").exists()


def test_frontier_rejects_bad_data_before_work(tmp_path):
    from alignlab.errors import InputError
    from alignlab.experiments import frontier

    with pytest.raises(InputError, match="must be world, imdb or both"):
        frontier.run(tmp_path / "fr", data="mars")
    with pytest.raises(InputError, match="aclImdb_unsup.jsonl.gz not found"):
        frontier.run(tmp_path / "fr", data="both", imdb=tmp_path / "nowhere")
    assert not (tmp_path / "fr").exists()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_prompts_are_not_training_prompts_for_any_seed(tmp_path, seed):
    """overoptimization and frontier draw their prompts with review_prompt_sets; their policies
    start from the lifecycle's SFT run, so its demonstrations are training prompts too."""
    from alignlab.experiments import demo
    from alignlab.experiments.common import review_prompt_sets
    from alignlab.runs import read_jsonl
    from alignlab.world import World

    sft = demo.configs(tmp_path, seed)["sft"]  # what `lifecycle` trains for this seed
    seen = {row["prompt"] for row in World(sft.world_seed).sft_data(sft.world_examples, sft.seed)}
    prompts_file, held_out = review_prompt_sets(tmp_path, 1024, 48, seed)
    trained = {row["prompt"] for row in read_jsonl(prompts_file)}
    assert any(p.startswith("User: Write a review") for p in seen) and trained and held_out
    assert seen.isdisjoint(held_out) and trained.isdisjoint(held_out)


def test_measure_reports_the_raw_kl_estimate_and_its_error(monkeypatch):
    from alignlab.experiments import common
    from alignlab.sampling import Sample

    class Judge:
        name = "judge"

        def score(self, prompts, completions):
            return [float(len(c)) for c in completions]

    prompts = ["a", "b", "c"]
    monkeypatch.setattr(common, "sample", lambda model, tok, ps, *a, **k: [
        Sample(p, "x" * (i + 1), [1], [2]) for i, p in enumerate(ps)])
    logprobs = {"policy": [-1.0, -2.0, -3.0], "reference": [-0.7, -2.1, -2.9]}  # log ratios -0.3, 0.1, -0.1
    monkeypatch.setattr(common, "completion_logprobs", lambda model, *a, **k: logprobs[model])
    result = common.measure("policy", "reference", None, {"gold": Judge()}, prompts, seed=0)
    assert result["kl"] == pytest.approx(-0.1)  # noise below 0 stays visible, not clamped
    assert result["kl_se"] == pytest.approx(0.2 / math.sqrt(3))
    assert result["gold"] == pytest.approx(2.0) and result["gold_se"] == pytest.approx(1 / math.sqrt(3))


def test_overoptimization_report_renders_a_negative_kl(tmp_path):
    from alignlab.experiments.overoptimization import claims, write_report

    bon = [{"n": n, "kl_analytic": kl, "kl_empirical": kl, "proxy": 0.1 * i, "gold": 0.1, "gold_halves": [0.1, 0.1]}
           for i, (n, kl) in enumerate([(1, 0.0), (2, 0.31)])]
    rl = [{"step": 0, "kl": 0.0, "kl_se": 0.0, "proxy": 0.0, "gold": 0.0, "gold_halves": [0.0, 0.0]},
          {"step": 2, "kl": -0.04, "kl_se": 0.05, "proxy": 0.2, "gold": 0.1, "gold_halves": [0.1, 0.1]}]
    fitted = {"alpha": 0.1, "beta": 0.0, "r2": None}
    record = {"pairwise_accuracy": 0.6, "bon": bon, "rl": rl, "bon_fit": fitted, "rl_fit": fitted,
              "bon_gold_peaks_then_falls": False, "bon_proxy_keeps_rising": True, "bon_gold_peak_n": 1,
              "rl_gold_peaks_then_falls": False, "bon_d_max": 0.56, "rl_d_max": 0.0}
    summary = {"seeds": [0], "proxies": {16: record}, "claims": {16: claims([record])}}
    html = write_report(tmp_path, summary).read_text()
    assert "-0.04" in html and "kl_se" in html and html.count("data:image/png;base64,") >= 2
