"""GRPO and RLOO through TRL with alignlab scorers: runs finish, the reward rises, the monitors
land in metrics.jsonl, stop rules pause the run, and a broken scorer stops it loudly."""
import math

import pytest

from alignlab.config import GRPOConfig
from alignlab.errors import InputError
from alignlab.models import load_model
from alignlab.monitors import StopRuleFired
from alignlab.runs import read_metrics, read_status
from alignlab.stages import grpo

# 15 world prompts, 4 per step x 4 samples each = 16 completions of up to 16 tokens per step
MICRO_RL = dict(n_prompts=16, num_generations=4, max_new_tokens=16, batch_size=4, max_steps=3, lr=1e-3)


class ShortIsGood:
    """An easy reward to learn: fewer words is better (the policy only has to stop sooner)."""

    name = "short"

    def score(self, prompts, completions):
        return [-len(c.split()) / 10 for c in completions]


class NaNScorer:
    name = "broken"

    def score(self, prompts, completions):
        return [float("nan")] * len(completions)


def config(tmp_path, model, **changes) -> GRPOConfig:
    return GRPOConfig(out=str(tmp_path / "run"), model=str(model), **{**MICRO_RL, **changes})


def training_records(out) -> list[dict]:
    return [r for r in read_metrics(out) if "reward" in r]


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_run_finishes_with_trl_metrics_and_monitors(micro_sft, tmp_path, algorithm):
    # logging_steps beyond max_steps: the monitors still run before each checkpoint and at the end
    cfg = config(tmp_path, micro_sft, reward="world", save_steps=2, logging_steps=5, beta=0.05)
    out = grpo.run(cfg, algorithm)
    status = read_status(out)
    assert status["status"] == "finished" and status["algorithm"] == algorithm and status["global_step"] == 3
    load_model(str(out))  # a finished run folder loads as a model
    assert not (out / "model" / "training_args.bin").exists()
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    records = training_records(out)
    assert [r["step"] for r in records] == [2, 3]
    for r in records:
        for key in ("reward", "reward_std", "rewards/scorer/mean", "kl", "entropy", "completions/mean_length",
                    "monitor/reward", "monitor/distinct_1", "monitor/distinct_2", "monitor/response_length",
                    "monitor/kl", "monitor/entropy"):
            assert math.isfinite(r[key]), (key, r)
        # the monitors see the same batch TRL scored; TRL's kl is per token, the monitor's per sequence
        assert r["monitor/reward"] == pytest.approx(r["reward"], abs=1e-5)
        assert r["monitor/response_length"] == pytest.approx(r["completions/mean_length"])
        assert r["monitor/kl"] == pytest.approx(r["kl"] * r["completions/mean_length"])


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_reward_rises_on_an_easy_reward(micro_sft, tmp_path, monkeypatch, algorithm):
    monkeypatch.setattr(grpo, "stage_scorer", lambda spec, cfg: ShortIsGood())
    out = grpo.run(config(tmp_path, micro_sft, reward="short", max_steps=6, beta=0.0), algorithm)
    rewards = [r["monitor/reward"] for r in training_records(out)]
    lengths = [r["monitor/response_length"] for r in training_records(out)]
    assert len(rewards) == 6
    # measured over seeds 0-2: about -0.5 in the first two steps, -0.1 to -0.2 in the last two
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 0.15, rewards
    assert sum(lengths[-2:]) < sum(lengths[:2]), lengths


def test_max_kl_rule_pauses_the_run_at_the_last_good_checkpoint(micro_sft, tmp_path, monkeypatch):
    monkeypatch.setattr(grpo, "stage_scorer", lambda spec, cfg: ShortIsGood())
    cfg = config(tmp_path, micro_sft, beta=0.1, save_steps=1, max_steps=4, monitor={"max_kl": 1e-6})
    with pytest.raises(StopRuleFired, match="max_kl"):
        grpo.run(cfg)
    status = read_status(cfg.out)
    # step 1 samples from the reference itself (KL 0); its update makes step 2's KL positive
    assert status["status"] == "paused" and status["global_step"] == 2
    assert "stop rule max_kl" in status["message"] and status["message"].endswith("checkpoint-1")
    assert not (tmp_path / "run" / "model").exists()
    assert not (tmp_path / "run" / "checkpoints" / "checkpoint-2").exists()  # the tripping step is not saved
    last = training_records(cfg.out)[-1]  # the record that tripped the rule is still logged
    assert last["step"] == 2 and last["monitor/kl"] > 1e-6
    # a paused run resumes from that checkpoint (and, with the same rule, pauses again)
    with pytest.raises(StopRuleFired, match="max_kl"):
        grpo.run(cfg.model_copy(update={"resume": True}))
    assert read_status(cfg.out)["resumed_from"].endswith("checkpoint-1")


def test_min_distinct_2_rule_pauses_the_run(micro_sft, tmp_path):
    cfg = config(tmp_path, micro_sft, monitor={"min_distinct_2": 0.99})
    with pytest.raises(StopRuleFired, match="min_distinct_2"):
        grpo.run(cfg, "rloo")
    status = read_status(cfg.out)
    assert status["status"] == "paused" and "stop rule min_distinct_2" in status["message"]
    assert not (tmp_path / "run" / "model").exists()


def test_a_scorer_returning_nan_fails_the_run_with_a_clear_message(micro_sft, tmp_path, monkeypatch):
    monkeypatch.setattr(grpo, "stage_scorer", lambda spec, cfg: NaNScorer())
    with pytest.raises(InputError, match=r"reward: scorer broken: non-finite score nan .*training step 1"):
        grpo.run(config(tmp_path, micro_sft))
    status = read_status(tmp_path / "run")
    assert status["status"] == "failed" and "non-finite" in status["message"]


def test_bad_settings_are_refused_before_anything_runs(micro_sft, tmp_path):
    with pytest.raises(InputError, match="one step takes 32"):
        grpo.run(config(tmp_path, micro_sft, batch_size=16, grad_accum=2))
    with pytest.raises(InputError, match="no prompts"):
        grpo.run(config(tmp_path, micro_sft, n_prompts=1))
    with pytest.raises(InputError, match="max_kl: needs beta > 0"):
        grpo.run(config(tmp_path, micro_sft, beta=0.0, monitor={"max_kl": 5.0}))
    with pytest.raises(InputError, match="algorithm"):
        grpo.run(config(tmp_path, micro_sft), "ppo")
    assert not (tmp_path / "run").exists()
