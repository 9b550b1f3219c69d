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


def test_overoptimization_micro(tmp_path):
    from alignlab.experiments import overoptimization

    summary = overoptimization.run(tmp_path / "oo", micro=True)
    assert set(summary["proxies"]) == {16, 48}
    assert summary["bon_kl_analytic"][1] == 0 and summary["bon_kl_analytic"][16] == pytest.approx(math.log(16) - 15 / 16)
    for amount, p in summary["proxies"].items():
        assert [r["n"] for r in p["bon"]] == [1, 2, 4, 8, 16]
        assert all(0 <= summary["bon_kl_empirical"][amount][n] <= summary["bon_kl_analytic"][n] + 1e-9
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
    for points in methods.values():
        assert all(p["kl"] >= 0 and -1 <= p["reward"] <= 1 and p["reward_se"] >= 0 for p in points)
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
