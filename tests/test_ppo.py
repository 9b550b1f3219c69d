"""PPO: the math (GAE, per-token rewards, KL controller), a run that finishes and logs, learning an
easy reward, stop rules, bad input, a non-finite loss, and resume to the same weights."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignlab.config import MonitorConfig, PPOConfig, load_config
from alignlab.errors import InputError
from alignlab.models import load_model, load_tokenizer
from alignlab.monitors import StopRuleFired
from alignlab.runs import read_metrics, read_status
from alignlab.sampling import completion_logprobs, sample
from alignlab.stages import ppo
from alignlab.training import NonFiniteLoss
from alignlab.world import World

MICRO = dict(rollout_batch=8, mini_batch=4, max_new_tokens=16, max_steps=4, lr=1e-3, save_steps=2)


def micro_config(out, model, **changes) -> PPOConfig:
    return PPOConfig(out=str(out), model=str(model), **{**MICRO, **changes})


class Shorter:
    """An easy reward to move: shorter completions score higher."""

    name = "shorter"

    def score(self, prompts, completions):
        return [-len(c) / 40 for c in completions]


def use_scorer(monkeypatch, scorer):
    monkeypatch.setattr(ppo, "stage_scorer", lambda spec, cfg: scorer)


def close(tensor, expected):
    torch.testing.assert_close(tensor, torch.tensor(expected), atol=1e-6, rtol=0)


def prompt_file(path, prompts):
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


# ----- the math -------------------------------------------------------------------------------
def test_gae_matches_a_hand_computed_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 0.1], [0.3, 0.4, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # row 2 has two tokens; the rest is padding
    advantages, returns = ppo.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 1: deltas 0.9*0.2-0.5, 0.9*0.1-0.2, 1-0.1; A_t = delta_t + 0.72 * A_{t+1}
    a2 = 0.9
    a1 = -0.11 + 0.72 * a2
    a0 = -0.32 + 0.72 * a1
    # row 2: the step after its last token is terminal (value 0), padding counts for nothing
    b1 = 2.0 - 0.4
    b0 = 0.9 * 0.4 - 0.3 + 0.72 * b1
    close(advantages, [[a0, a1, a2], [b0, b1, 0.0]])
    close(returns, [[a0 + 0.5, a1 + 0.2, a2 + 0.1], [b0 + 0.3, b1 + 0.4, 0.0]])


def test_token_rewards_penalize_kl_on_every_token_and_add_the_score_on_the_last():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    ref_logp = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, -1.0, -7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards = ppo.token_rewards(torch.tensor([5.0, -1.0]), logp, ref_logp, mask, kl_coef=0.1)
    close(rewards, [[-0.05, 0.0, 0.1 + 5.0], [-0.1, 0.0 - 1.0, 0.0]])


def test_whitened_advantages_have_zero_mean_and_unit_variance_on_real_tokens():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    white = ppo.whiten(torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0]]), mask)
    real = white[mask.bool()]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert (real ** 2).mean().item() == pytest.approx(1.0, abs=1e-4)
    assert white[0, 2].item() == 0.0


def test_adaptive_kl_controller_moves_toward_the_target():
    cfg = PPOConfig(out="unused", model="unused", target_kl=4.0, kl_horizon=100, rollout_batch=10)
    assert ppo.update_kl_coef(0.1, 8.0, cfg) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # far above: clipped at +20%
    assert ppo.update_kl_coef(0.1, 4.4, cfg) == pytest.approx(0.1 * (1 + 0.1 * 0.1))  # 10% above
    assert ppo.update_kl_coef(0.1, 0.0, cfg) == pytest.approx(0.1 * (1 - 0.2 * 0.1))  # far below: clipped at -20%
    assert ppo.update_kl_coef(0.1, 4.0, cfg) == pytest.approx(0.1)


def test_per_token_logprobs_are_those_of_the_sampled_tokens(micro_sft):
    tok, model = load_tokenizer(str(micro_sft)), load_model(str(micro_sft))
    samples = sample(model, tok, World(0).prompts("review", "train", 4) + ["User: Hi\nAssistant:"], 12, seed=3)
    batch = ppo.pad_rollout(samples, tok.pad_token_id, "cpu")
    logp, entropy, _ = ppo.forward_in_chunks(model, batch, 1.0, size=2)
    expected = completion_logprobs(model, tok, [s.prompt_ids for s in samples], [s.completion_ids for s in samples])
    assert (logp * batch["mask"]).sum(1).tolist() == pytest.approx(expected, abs=1e-4)
    assert batch["mask"].sum(1).tolist() == [len(s.completion_ids) for s in samples]
    assert (entropy >= 0).all()


# ----- whole runs -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def micro_ppo(micro_sft, tmp_path_factory):
    """Four iterations on the world's prompts and gold reward, with PPO-ptx and adaptive KL."""
    cfg = micro_config(tmp_path_factory.mktemp("ppo") / "run", micro_sft, ptx_coef=0.5, adaptive_kl=True,
                       target_kl=1e-3, kl_horizon=8)
    return ppo.run(cfg), cfg


def test_ppo_finishes_and_logs_every_iteration(micro_ppo):
    out, cfg = micro_ppo
    assert read_status(out)["status"] == "finished"
    load_model(str(out))
    assert all(p.suffix in {".json", ".safetensors", ".jinja"} for p in (out / "model").iterdir())  # nothing pickled
    records = read_metrics(out)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for record in records:
        for key in ("monitor/reward", "monitor/kl", "monitor/entropy", "monitor/distinct_2", "monitor/response_length",
                    "ppo/policy_loss", "ppo/value_loss", "ppo/clipfrac", "ppo/approx_kl", "ppo/kl_coef",
                    "ppo/ptx_loss", "time/generation", "time/scoring", "time/training"):
            assert math.isfinite(record[key]), key
    assert records[0]["monitor/kl"] == 0.0  # the first rollout comes from the reference itself
    assert len((out / "samples.jsonl").read_text().splitlines()) == cfg.rollout_batch  # the last rollout
    for step in (2, 4):
        checkpoint = out / "checkpoints" / f"checkpoint-{step}"
        assert json.loads((checkpoint / "state.json").read_text())["step"] == step
        assert set(load_file(str(checkpoint / "value_head.safetensors"))) == {"weight", "bias"}


def test_adaptive_kl_lowers_the_coefficient_below_target_and_raises_it_above(micro_ppo):
    coefs = [r["ppo/kl_coef"] for r in read_metrics(micro_ppo[0])]
    assert coefs[0] == 0.02
    assert coefs[1] == pytest.approx(0.02 * 0.8)  # KL 0 at step 1: far below target
    assert coefs[2] == pytest.approx(coefs[1] * 1.2)  # the policy has moved: KL far above the tiny target


def test_ppo_raises_an_easy_reward(micro_sft, tmp_path, monkeypatch):
    use_scorer(monkeypatch, Shorter())
    prompts = prompt_file(tmp_path / "prompts.jsonl", World(0).prompts("review", "train", 64))
    out = ppo.run(micro_config(tmp_path / "run", micro_sft, prompts=str(prompts), save_steps=100))
    rewards = [r["monitor/reward"] for r in read_metrics(out)]
    assert sum(rewards[-2:]) / 2 > rewards[0] + 0.15, rewards


def test_stop_rule_pauses_the_run_and_names_the_last_good_checkpoint(micro_sft, tmp_path, monkeypatch):
    use_scorer(monkeypatch, Shorter())  # a reward that moves the policy at once (the world's may be all zeros)
    cfg = micro_config(tmp_path / "run", micro_sft, save_steps=1, monitor=MonitorConfig(max_kl=1e-6))
    with pytest.raises(StopRuleFired, match="max_kl"):
        ppo.run(cfg)
    status = read_status(tmp_path / "run")
    assert status["status"] == "paused"
    assert "stop rule max_kl" in status["message"] and status["message"].endswith("checkpoint-1")
    assert not (tmp_path / "run" / "model").exists()
    assert not (tmp_path / "run" / "checkpoints" / "checkpoint-2").exists()  # the tripped step is not saved


def test_a_non_finite_loss_fails_the_run_naming_the_last_good_checkpoint(micro_sft, tmp_path, monkeypatch):
    losses = ppo.ppo_losses

    def nan_at_step_two(logp, values, old, cfg, tokens=None):
        loss, stats = losses(logp, values, old, cfg, tokens)
        return (loss * float("nan") if len(read_metrics(tmp_path / "run")) == 1 else loss), stats

    monkeypatch.setattr(ppo, "ppo_losses", nan_at_step_two)
    with pytest.raises(NonFiniteLoss, match="iteration 2.*checkpoint-1"):
        ppo.run(micro_config(tmp_path / "run", micro_sft, save_steps=1))
    assert read_status(tmp_path / "run")["status"] == "failed"


def test_bad_input_is_an_input_error(micro_sft, tmp_path, monkeypatch):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        ppo.run(micro_config(tmp_path / "a", micro_sft, prompts=str(empty)))
    assert not (tmp_path / "a").exists()  # rejected before the run folder is made
    with pytest.raises(InputError, match="no prompts"):
        ppo.run(micro_config(tmp_path / "b", micro_sft, n_prompts=1))  # the world's mix rounds to nothing

    class NaNScorer:
        name = "nan"

        def score(self, prompts, completions):
            return [float("nan")] * len(completions)

    use_scorer(monkeypatch, NaNScorer())
    with pytest.raises(InputError, match="non-finite score"):
        ppo.run(micro_config(tmp_path / "c", micro_sft))


def untimed_metrics(path):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_metrics(path)]


class Interrupted(Exception):
    pass


def test_resume_after_an_interruption_ends_at_the_same_weights(micro_ppo, tmp_path, monkeypatch):
    straight, cfg = micro_ppo
    cfg = cfg.model_copy(update={"out": str(tmp_path / "run")})
    save = ppo.save_checkpoint

    def save_then_die(run, step, *args):
        path = save(run, step, *args)
        if step == 2:
            raise Interrupted  # as if killed right after checkpoint-2
        return path

    monkeypatch.setattr(ppo, "save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        ppo.run(cfg)
    assert read_status(tmp_path / "run") is None  # unfinished
    monkeypatch.setattr(ppo, "save_checkpoint", save)

    resumed = ppo.run(cfg.model_copy(update={"resume": True}))
    assert read_status(resumed)["resumed_from"].endswith("checkpoint-2")
    a, b = load_model(str(straight)).state_dict(), load_model(str(resumed)).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # in fact bitwise equal on CPU
    assert untimed_metrics(resumed) == untimed_metrics(straight)  # same seed, same numbers, one record per iteration


# ----- InstructGPT / "N+ implementation details" options ----------------------------------------
def test_reward_whitening_keeps_the_mean_and_scales_to_unit_variance():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    rewards = torch.tensor([[0.0, 4.0, 9.0], [0.0, 0.0, 11.0]])  # real tokens: mean 3, variance 18.4
    white = ppo.whiten(rewards, mask, shift_mean=False)
    real = white[mask.bool()]
    assert real.mean().item() == pytest.approx(3.0, abs=1e-5)
    assert ((real - 3.0) ** 2).mean().item() == pytest.approx(1.0, abs=1e-4)
    assert white[0, 2].item() == 0.0
    assert white[1, 2].item() == pytest.approx(3.0 + 8.0 / 18.4 ** 0.5, abs=1e-5)


def test_missing_eos_penalty_scores_cut_off_completions_lower(micro_sft, tmp_path, monkeypatch):
    class Zero:
        name = "zero"

        def score(self, prompts, completions):
            return [0.0] * len(completions)

    use_scorer(monkeypatch, Zero())
    rewards = {}
    for penalty in (None, 1.0):  # 3 new tokens: most completions are cut off before their EOS
        out = ppo.run(micro_config(tmp_path / f"run-{penalty}", micro_sft, max_steps=1, max_new_tokens=3,
                                   missing_eos_penalty=penalty))
        rewards[penalty] = read_metrics(out)[0]["monitor/reward"]
    assert rewards[None] == 0.0 and rewards[1.0] < -0.5, rewards


def test_a_separate_critic_starts_from_the_reward_model(micro_sft, micro_base, tmp_path):
    from alignlab.config import RewardConfig
    from alignlab.stages import reward

    rm = reward.run(RewardConfig(out=str(tmp_path / "rm"), model=str(micro_base), policy=str(micro_sft), n_prompts=16,
                                 max_new_tokens=12, max_steps=2, batch_size=8))
    cfg = micro_config(tmp_path / "run", micro_sft, reward=str(rm), critic="reward", max_steps=2, save_steps=1)
    out = ppo.run(cfg)
    shared = read_metrics(ppo.run(micro_config(tmp_path / "shared", micro_sft, reward=str(rm), max_steps=1)))
    # the shared head starts at V = 0, the critic at the reward model's values: their first value losses differ
    assert read_metrics(out)[0]["ppo/value_loss"] != shared[0]["ppo/value_loss"]
    saved = load_file(str(out / "checkpoints" / "checkpoint-2" / "value_head.safetensors"))
    assert any(k.startswith("model.") for k in saved)  # the whole critic is checkpointed, not a head
    with pytest.raises(InputError, match="critic 'reward' needs a reward-model folder"):
        load_config(PPOConfig, None, {"out": "x", "model": "m", "reward": "world", "critic": "reward"})


# ----- several processes ------------------------------------------------------------------------
TWO_PROCESSES = Path(__file__).with_name("ppo_two_processes.py")


def test_two_processes_take_the_step_one_process_takes_on_the_whole_batch(tmp_path):
    """Each of two gloo processes holds half the rollout: whitening, token counts and gradients are global,
    so both end with identical weights, equal (to float rounding) to one process on the whole batch."""
    run = lambda *launcher: subprocess.run([sys.executable, *launcher, str(TWO_PROCESSES), str(tmp_path)],  # noqa: E731
                                           capture_output=True, text=True, timeout=300)
    for result in (run(), run("-m", "torch.distributed.run", "--nproc_per_node", "2")):
        assert result.returncode == 0, result.stderr[-3000:]
    one, first, second = (load_file(str(tmp_path / f"weights-{c}-{r}.safetensors")) for c, r in ((1, 0), (2, 0), (2, 1)))
    assert all(torch.equal(first[k], second[k]) for k in first)  # the two processes stay in lockstep
    grads = [load_file(str(tmp_path / f"grads-{c}-0.safetensors")) for c in (1, 2)]
    assert max((grads[0][k] - grads[1][k]).abs().max().item() for k in grads[0]) < 1e-6
    assert max((one[k] - first[k]).abs().max().item() for k in one) < 1e-6
    records = [json.loads((tmp_path / f"record-{c}-0.json").read_text()) for c in (1, 2)]
    for key, value in records[0].items():  # monitors and losses are those of the whole batch
        assert records[1][key] == pytest.approx(value, abs=1e-6), key


def test_a_stop_rule_and_a_checkpoint_fire_on_both_processes(micro_sft, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "alignlab.cli", "ppo",
           "--out", str(out), "--model", str(micro_sft)]
    for key, value in {"rollout_batch": 8, "mini_batch": 4, "max_new_tokens": 8, "n_prompts": 16, "max_steps": 4,
                       "save_steps": 1, "monitor.max_kl": 1e-9}.items():
        cmd += ["--set", f"{key}={value}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # a deadlock would time out
    assert result.returncode == 1, result.stderr[-3000:]
    status = read_status(out)
    # step 1 samples from the reference itself (KL 0); the first step whose KL is positive trips the rule,
    # on both processes at once; the step before it is the last good checkpoint
    steps = [r["step"] for r in read_metrics(out)]
    tripped = steps[-1]
    assert steps == list(range(1, tripped + 1)) and tripped >= 2  # logged once per step, by the main process
    assert status["status"] == "paused" and status["message"].endswith(f"checkpoint-{tripped - 1}"), status
    assert (out / "checkpoints" / f"checkpoint-{tripped - 1}" / "state.json").is_file()
    assert not (out / "checkpoints" / f"checkpoint-{tripped}").exists()
    # without the rule the same run finishes, both processes exit cleanly, and the main one saved the model
    finished = subprocess.run([*cmd[:cmd.index("--out") + 1], str(tmp_path / "done"), *cmd[cmd.index("--out") + 2:-2]],
                              capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert read_status(tmp_path / "done")["status"] == "finished" and (tmp_path / "done" / "model").is_dir()
