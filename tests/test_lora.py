"""LoRA on the training stages: a small adapter trained instead of every weight, merged on save (or kept
apart), with the reference of DPO and PPO being the model with its adapter off."""
import json

import pytest
import torch
from safetensors.torch import load_file

from alignlab.config import DPOConfig, GRPOConfig, PPOConfig, RewardConfig, SFTConfig
from alignlab.errors import InputError
from alignlab.models import load_model
from alignlab.runs import read_metrics, read_status
from alignlab.stages import dpo, grpo, ppo, reward, sft

from conftest import assert_one_line_error, run_cli

LORA = {"rank": 4, "alpha": 8}


def changed_weights(before: str, after: str) -> set[str]:
    a, b = load_model(before).state_dict(), load_model(after).state_dict()
    assert a.keys() == b.keys()  # merged: the same architecture, no lora_ parameters left
    return {k for k in a if not torch.equal(a[k], b[k])}


def test_sft_with_lora_trains_only_the_adapted_layers_and_merges(micro_base, tmp_path):
    out = sft.run(SFTConfig(out=str(tmp_path / "sft"), model=str(micro_base), max_steps=4, batch_size=8, lr=1e-2,
                            world_examples=64, lora={**LORA, "target_modules": ["q_proj", "v_proj"]}))
    changed = changed_weights(str(micro_base), str(out))
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed), changed
    assert not any("lora" in k for k in load_file(str(out / "model" / "model.safetensors")))


def test_an_unmerged_adapter_is_saved_alone_and_still_loads(micro_base, tmp_path):
    out = sft.run(SFTConfig(out=str(tmp_path / "sft"), model=str(micro_base), max_steps=2, batch_size=8,
                            world_examples=32, lora={**LORA, "merge": False}))
    assert (out / "model" / "adapter_config.json").is_file()
    assert not (out / "model" / "model.safetensors").exists()
    assert load_model(str(out)).config.model_type == "llama"  # transformers loads base + adapter


def test_dpo_with_lora_needs_no_reference_copy(micro_sft, tmp_path):
    out = dpo.run(DPOConfig(out=str(tmp_path / "dpo"), model=str(micro_sft), n_prompts=32, max_new_tokens=16,
                            logging_steps=1, batch_size=8, max_steps=3, lr=1e-2, lora=LORA))
    first = read_metrics(out)[0]
    # the adapter starts at zero, so the policy equals its adapter-off reference: DPO's first
    # implicit rewards are 0 and its loss is log 2
    assert abs(first["loss"] - 0.6931) < 2e-3, first
    assert changed_weights(str(micro_sft), str(out))


def test_ppo_with_lora_measures_kl_to_the_adapter_off_policy(micro_sft, tmp_path, monkeypatch):
    from test_ppo import Shorter, use_scorer

    use_scorer(monkeypatch, Shorter())  # a reward that moves the policy at once (the world's may be all zeros)
    out = ppo.run(PPOConfig(out=str(tmp_path / "ppo"), model=str(micro_sft), max_steps=3, rollout_batch=8,
                            mini_batch=8, max_new_tokens=12, n_prompts=16, lr=5e-3, lora=LORA))
    records = read_metrics(out)
    assert abs(records[0]["monitor/kl"]) < 1e-4  # identical to the reference before the first update
    assert records[-1]["monitor/kl"] != records[0]["monitor/kl"]  # and it moved away
    assert changed_weights(str(micro_sft), str(out))


def test_reward_and_grpo_take_lora(micro_sft, tmp_path):
    rm = reward.run(RewardConfig(out=str(tmp_path / "rm"), model=str(micro_sft), n_prompts=16, max_new_tokens=12,
                                 batch_size=8, max_steps=2, lora=LORA))
    assert read_status(rm)["status"] == "finished"
    assert json.loads((rm / "model" / "config.json").read_text())["architectures"] == ["LlamaForSequenceClassification"]
    out = grpo.run(GRPOConfig(out=str(tmp_path / "grpo"), model=str(micro_sft), n_prompts=8, batch_size=2,
                              num_generations=2, max_new_tokens=8, max_steps=2, lora=LORA))
    assert read_status(out)["status"] == "finished"


def test_qlora_without_cuda_is_one_line(micro_sft, tmp_path, monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU error")
    code, err = run_cli(monkeypatch, capsys, "sft", "--out", tmp_path / "r", "--model", micro_sft,
                        "--set", "lora.quantize=4bit", "--set", "lora.merge=false")
    assert_one_line_error(code, err, "lora.quantize", "CUDA")
    with pytest.raises(InputError, match="cannot be merged"):
        from alignlab.config import load_config

        load_config(SFTConfig, None, {"out": "x", "model": "m", "lora": {"quantize": "4bit"}})
