"""Every experiment on the user's own models, data and judges: tiny random models of non-Llama
architectures (Qwen3 with its ChatML template, GPT-2 with none) built offline, so nothing may
assume the world's tokenizer or its base; and a missing or inconsistent piece fails on one line
before any run starts."""
import json
import random
import sys
from pathlib import Path

import pytest
import yaml

from alignlab.errors import InputError
from alignlab.world import World

from families import build


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def world_text(tmp_path: Path, n: int) -> str:
    """Pretraining-style documents (reviews and encyclopedia entries, no dialogues)."""
    docs = [t for t in World(0).heldout_text(3 * n, seed=3) if not t.startswith("User:")][:n]
    return write_jsonl(tmp_path / "text.jsonl", [{"text": t} for t in docs])


@pytest.fixture
def qwen_pair(tmp_path, micro_tokenizer):
    """A random Qwen3 base and the same model after a short SFT: a base/aligned pair of one architecture."""
    from alignlab.config import SFTConfig
    from alignlab.stages import sft

    base = build("qwen3", str(micro_tokenizer), tmp_path / "qwen-base")
    aligned = sft.run(SFTConfig(out=str(tmp_path / "qwen-sft"), model=str(base), world_examples=64, max_steps=6,
                                batch_size=8, lr=3e-3, max_length=64, save_steps=6))
    return str(base), str(aligned)


def test_reversal_on_a_user_pair_trains_on_their_text_and_measures_on_held_out_text(tmp_path, qwen_pair):
    from alignlab.experiments import reversal

    base, aligned = qwen_pair
    prompts = write_jsonl(tmp_path / "xstest-like.jsonl", [
        {"prompt": p, "label": label} for label, kind in (("safe", "benign"), ("unsafe", "harmful"))
        for p in World(0).prompts(kind, "eval", 6, seed=0)])
    summary = reversal.run_own(tmp_path / "rv", aligned, world_text(tmp_path, 40), base=base, prompts=prompts,
                               judge="vader", micro=True)
    models = summary["models"]
    # the merged LoRA learned the reversal text: held-out text of its kind got cheaper than the aligned model's
    assert models["unaligned"]["bits_per_byte"] < models["aligned"]["bits_per_byte"]
    assert summary["layers"] == [0, 1] and 0 < summary["lora_trainable_fraction"] < 0.05
    assert set(summary["gap_recovered"]) >= {"bits_per_byte", "refusal_rate", "kl_to_reference"}
    assert models["base"]["kl_to_reference"] == pytest.approx(0, abs=1e-4)  # the base against itself
    assert models["aligned"]["judge"] == "vader" and "over_refusal_rate" in models["aligned"]
    # the prompts were asked in Qwen's own chat format
    asked = [json.loads(line)["prompt"] for line in (tmp_path / "rv" / "eval-aligned" / "samples.jsonl").open()]
    assert asked and all(p.startswith("<|im_start|>user\n") for p in asked)
    assert (tmp_path / "rv" / "report.html").is_file()


def test_reversal_rejects_a_mismatched_pair_before_any_work(tmp_path, micro_tokenizer, micro_base):
    from alignlab.experiments import reversal

    qwen = build("qwen3", str(micro_tokenizer), tmp_path / "qwen")
    with pytest.raises(InputError, match="--base: .* differ in model_type"):
        reversal.run_own(tmp_path / "rv", str(qwen), world_text(tmp_path, 40), base=str(micro_base), micro=True)
    with pytest.raises(InputError, match="--aligned: .*does not exist"):
        reversal.run_own(tmp_path / "rv", str(tmp_path / "nowhere"), world_text(tmp_path, 40), micro=True)
    assert not (tmp_path / "rv").exists()


def test_elasticity_rebound_and_compression_on_a_user_model_with_their_files(tmp_path, micro_tokenizer):
    """GPT-2 (no chat template) aligned on the user's positive reviews, perturbed with their negative ones,
    judged by a scorer spec they name."""
    from alignlab.experiments import elasticity

    gpt2 = build("gpt2", str(micro_tokenizer), tmp_path / "gpt2")
    world = World(0)
    rows = {polarity: [] for polarity in ("pos", "neg")}
    for i, (kind, name) in enumerate(world.items["train"][:48]):
        rng = random.Random(i)
        for polarity in rows:  # messages in the OpenAI/TRL form: the adapter and the template path both run
            rows[polarity].append({"messages": [{"role": "user", "content": world.review_request(kind, name)},
                                                {"role": "assistant", "content": world.review_text(rng, kind, polarity)}]})
    positive = write_jsonl(tmp_path / "positive.jsonl", rows["pos"])
    negative = write_jsonl(tmp_path / "negative.jsonl", rows["neg"])
    summary = elasticity.run(tmp_path / "el", parts=("rebound", "compression"), micro=True, data="files",
                             model=str(gpt2), judge="world", positive=positive, negative=negative,
                             text=world_text(tmp_path, 40))
    assert summary["model"] == str(gpt2) and summary["judge"] == "world" and summary["base_pretrain_tokens"] is None
    curves = summary["rebound"]["0"]
    assert set(summary["rebound"]) == {"0", "1"} and set(curves) == {"0", "8", "16", "32", "64"}
    # every probe judged, measured on both texts and by both sample-free probes; more alignment data, more
    # alignment tokens
    assert all({"score_world", "bpb_pretrain", "bpb_align", "logodds", "kl_base"} <= set(p)
               for c in curves.values() for p in c["points"])
    assert [curves[a]["align_tokens"] for a in ("8", "16", "32", "64")] == sorted(
        curves[a]["align_tokens"] for a in ("8", "16", "32", "64"))
    assert len(summary["compression"]) == 2 * 4 and summary["verdicts"]["size_scaling"] is None
    # the runs started from the user's model: its architecture, not the world base's
    config = json.loads((tmp_path / "el" / "rebound" / "seed0" / "positive-8" / "model" / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    # a held-out quarter of the prompts is what the judge scores; the training rows never hold them
    trained = {json.loads(line)["prompt"] for line in (tmp_path / "el" / "rebound" / "seed0" / "positive-64.jsonl").open()}
    assert trained and all(p.startswith("User: ") for p in trained)


def test_elasticity_user_pieces_fail_on_one_line_before_any_work(tmp_path, micro_tokenizer):
    from alignlab.experiments import elasticity

    gpt2 = str(build("gpt2", str(micro_tokenizer), tmp_path / "gpt2"))
    cases = [(dict(parts=("scaling",), model=gpt2), "scaling: .*pretrains bases"),
             (dict(data="files", model=gpt2, positive=str(tmp_path / "p.jsonl")), "--judge: --data files needs"),
             (dict(data="files", model=gpt2, judge="world", positive=str(tmp_path / "p.jsonl")),
              "--positive: .*does not exist"),
             (dict(data="files", positive="p.jsonl", judge="world"), "--model: --data files needs"),
             (dict(model=str(tmp_path / "missing")), "--model: .*does not exist"),
             (dict(model=gpt2, judge="word"), "--judge: "),
             (dict(positive="p.jsonl"), "--positive/--negative/--text: .*--data files")]
    for changes, message in cases:
        with pytest.raises(InputError, match=message):
            elasticity.run(tmp_path / "el", **{"parts": ("rebound",), **changes})
    assert not (tmp_path / "el").exists()


def test_frontier_and_overoptimization_on_a_user_policy_prompts_and_gold(tmp_path, micro_tokenizer, micro_sft):
    """Qwen3 policy, the user's prompt file, an LLM judge (another model, another chat format) as the gold."""
    from alignlab.experiments import frontier, overoptimization

    policy = str(build("qwen3", str(micro_tokenizer), tmp_path / "qwen"))
    world = World(0)
    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"prompt": p} for p in world.conversations("review", "train", 80, seed=0)])
    gold = f"llm-judge:{micro_sft}"
    summary = frontier.run(tmp_path / "fr", micro=True, policy=policy, gold=gold, prompts=prompts)
    own = summary["settings"]["own"]
    assert set(summary["settings"]) == {"own"} and own["reward"] == gold
    assert set(own["methods"]) == {"start", "dpo", "preferred-ft", "ppo", "best-of-n"}
    train = {json.dumps(json.loads(line)["prompt"]) for line in (tmp_path / "fr" / "own" / "prompts-train.jsonl").open()}
    pairs = [json.loads(line) for line in (tmp_path / "fr" / "own" / "dpo-beta0.1" / "pairs.jsonl").open()]
    assert pairs and all(p["prompt"].startswith("<|im_start|>user\n") for p in pairs)  # sampled in Qwen's format
    assert len(train) == frontier.SCALES["micro"]["n_prompts"]

    summary = overoptimization.run(tmp_path / "oo", micro=True, policy=policy, gold=gold, prompts=prompts)
    assert summary["policy"] == policy and summary["gold"] == gold
    rm = yaml.safe_load((tmp_path / "oo" / "seed0" / "proxy-16" / "config.yaml").read_text())
    assert rm["model"] == policy and rm["judge"] == gold  # proxies start from the policy, labelled by the gold
    assert all(len(p["rl"]) >= 2 and p["bon"][0]["n"] == 1 for p in summary["proxies"].values())
    with pytest.raises(InputError, match="--prompts: your own setting needs"):
        overoptimization.run(tmp_path / "oo2", micro=True, policy=policy, gold=gold)


def test_prompt_split_holds_out_prompts_no_run_trains_on(tmp_path):
    from alignlab.experiments.common import prompt_split

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"prompt {i % 30}"} for i in range(60)])  # 30 distinct
    train_file, held_out = prompt_split(prompts, tmp_path / "a", 100, 10, seed=0)
    train = [json.loads(line)["prompt"] for line in open(train_file)]
    assert len(held_out) == 10 and len(train) == 20 and not set(train) & set(held_out)
    assert prompt_split(prompts, tmp_path / "b", 100, 10, seed=0)[1] == held_out  # the seed decides
    assert prompt_split(prompts, tmp_path / "c", 100, 10, seed=1)[1] != held_out
    with pytest.raises(InputError, match="30 distinct prompts; this experiment holds out 29"):
        prompt_split(prompts, tmp_path / "d", 100, 29, seed=0)


def test_experiment_cli_takes_the_users_pieces_and_names_what_is_missing(tmp_path, monkeypatch, capsys):
    from alignlab import cli

    for argv, message in ((["experiment", "reversal", "--aligned", "gpt2"], "--text: your own reversal needs"),
                          (["experiment", "frontier", "--policy", "gpt2"], "--gold: your own setting needs"),
                          (["elasticity", "rebound", "--data", "files"], "--positive: --data files needs")):
        monkeypatch.setattr(sys, "argv", ["alignlab", *argv, "-o", str(tmp_path / "x")])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
