"""`alignlab unalign` (reverse alignment by a small merged LoRA) and the weight-space analysis.

The published gpt-oss-20b-base recipe is checked on a tiny randomly initialised GptOss with 24
layers: adapters only on the expert weights of layers 7, 15 and 23, the analytic trainable count,
and after training and merging only those weights differ. A Llama micro SFT model is unaligned
on layer 0, and the deltas base -> SFT -> unaligned are analysed."""
import json
import math
from pathlib import Path

import pytest
import torch

from alignlab.analysis.weights import (analyze, plot_cosine_per_layer, plot_spectra, spectrum_stats, update_cosine,
                                       weight_deltas)
from alignlab.config import UnalignConfig, load_config
from alignlab.errors import InputError
from alignlab.models import count_parameters, load_model
from alignlab.runs import is_finished, read_status
from alignlab.stages import unalign
from alignlab.world import World, chat_prompt
from conftest import assert_one_line_error, run_cli

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "gpt-oss-20b-base.yaml"
FAST = dict(world_docs=300, block_size=32, batch_size=4, grad_accum=1, max_steps=3, warmup_steps=0, lr=1e-3,
            save_steps=100, logging_steps=1)


def tensors(path) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in load_model(str(path)).state_dict().items()}


@pytest.fixture(scope="module")
def tiny_gpt_oss(tmp_path_factory) -> Path:
    """A randomly initialised transformers GptOss (24 layers, 4 experts, width 16) with a 300-token BPE."""
    from transformers import GptOssConfig, GptOssForCausalLM

    from alignlab.models import train_tokenizer

    tokenizer = train_tokenizer(World(0).heldout_text(300), vocab_size=300)
    config = GptOssConfig(num_hidden_layers=24, hidden_size=16, intermediate_size=16, num_local_experts=4,
                          num_experts_per_tok=2, head_dim=8, num_attention_heads=2, num_key_value_heads=1,
                          sliding_window=16, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gpt-oss") / "aligned"
    GptOssForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_recipe_is_the_published_configuration():
    # the published gpt-oss-20b -> gpt-oss-20b-base run, written out here and not read from the recipe, so
    # an edit to recipes/gpt-oss-20b-base.yaml that departs from it fails: a rank-16 LoRA on the expert
    # MLPs of layers 7, 15 and 23, lr 2e-6, batch 16, 1,500 steps, 8,192-token sequences, ~20k documents
    cfg = load_config(UnalignConfig, RECIPE)
    assert cfg.model == "openai/gpt-oss-20b"
    assert cfg.rank == 16 and cfg.layers == [7, 15, 23]
    assert cfg.lr == 2e-6 and cfg.batch_size * cfg.grad_accum == 16 and cfg.max_steps == 1500
    assert cfg.block_size == 8192 and cfg.max_docs == 20000
    assert cfg.target_modules == [] and set(cfg.target_parameters) == {"mlp.experts.gate_up_proj",
                                                                       "mlp.experts.down_proj"}
    assert cfg.dropout == 0.0  # PEFT cannot apply dropout to target_parameters
    # gpt-oss-20b's published shapes (32 experts, hidden 2880, expert width 2880; gate_up_proj fuses two
    # projections) give the recipe's 22,118,400 trainable parameters with this rank and these layers
    experts, hidden, width = 32, 2880, 2880
    per_layer = cfg.rank * experts * ((hidden + 2 * width) + (width + hidden))
    assert len(cfg.layers) * per_layer == 22_118_400


def test_gpt_oss_recipe_on_a_tiny_gpt_oss(tiny_gpt_oss, tmp_path):
    cfg = load_config(UnalignConfig, RECIPE, {"out": str(tmp_path / "run"), "model": str(tiny_gpt_oss),
                                              "data": "world", **FAST})
    assert cfg.rank == 16 and cfg.layers == [7, 15, 23]  # the recipe's own LoRA, on the tiny model

    # adapters exactly on the expert weights of layers 7, 15, 23, and the analytic trainable count
    model = load_model(str(tiny_gpt_oss))
    shapes = {name: p.shape for name, p in model.named_parameters()}
    peft_model, targets = unalign.build_lora(model, cfg)
    expected = [f"model.layers.{i}.mlp.experts.{w}" for i in (7, 15, 23) for w in ("gate_up_proj", "down_proj")]
    assert targets == expected
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".layers.")[1].split(".")[0] for n in trainable} == {"7", "15", "23"}
    assert all(".mlp.experts." in n for n in trainable)
    analytic = 0
    for name in expected:  # (experts, in, out): rank r per expert on each side
        experts, n_in, n_out = shapes[name]
        analytic += cfg.rank * experts * (n_in + n_out)
    assert sum(p.numel() for n, p in peft_model.named_parameters() if p.requires_grad) == analytic == 3 * (
        16 * 4 * (16 + 32) + 16 * 4 * (16 + 16))

    # train a few steps and merge: only those weights differ from the original, bit for bit elsewhere
    path = unalign.run(cfg)
    status = read_status(path)
    assert status["status"] == "finished" and status["global_step"] == 3
    assert status["lora_trainable_parameters"] == analytic
    assert status["total_parameters"] == count_parameters(load_model(str(tiny_gpt_oss)))
    assert status["lora_trainable_fraction"] == pytest.approx(analytic / status["total_parameters"])
    assert not list((path / "model").glob("adapter_*")) and (path / "model" / "model.safetensors").exists()
    before, after = tensors(tiny_gpt_oss), tensors(path)
    assert set(before) == set(after)
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == sorted(expected)


def test_by_default_a_moe_gets_the_recipes_targets(tiny_gpt_oss):
    """Named by no one, the targets are found: GptOss's fused expert stacks, as the recipe names them, and
    neither the router nor attention."""
    model = load_model(str(tiny_gpt_oss))
    recipe = load_config(UnalignConfig, RECIPE, {"model": str(tiny_gpt_oss)})
    default = UnalignConfig(out="x", model=str(tiny_gpt_oss), layers=recipe.layers, rank=recipe.rank)
    assert default.target_modules is None and default.target_parameters == []
    assert unalign.resolve_targets(model, default) == unalign.resolve_targets(model, recipe)
    with pytest.raises(InputError, match="^dropout: PEFT cannot apply dropout to fused weights"):
        unalign.resolve_targets(model, default.model_copy(update={"dropout": 0.1}))


def test_unalign_micro_sft_on_layer_zero(micro_base, micro_sft, tmp_path):
    cfg = UnalignConfig(out=str(tmp_path / "run"), model=str(micro_sft), rank=4, layers=[0], **FAST)
    path = unalign.run(cfg)
    assert is_finished(path)
    status = read_status(path)
    assert status["lora_trainable_fraction"] < 0.01
    model = load_model(str(path))
    hidden, inter = model.config.hidden_size, model.config.intermediate_size
    assert status["lora_trainable_parameters"] == 4 * 3 * (hidden + inter)
    before, after = tensors(micro_sft), tensors(path)
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == [f"model.layers.0.mlp.{w}.weight" for w in ("down_proj", "gate_proj", "up_proj")]

    # weight-space analysis: alignment (base -> sft) and its reversal (sft -> unaligned)
    result = analyze(micro_base, micro_sft, path, ks=(1, 4, 16))
    assert result["alignment"] and set(result["reversal"]) == set(changed)
    for stats in [*result["alignment"].values(), *result["reversal"].values()]:
        assert all(math.isfinite(v) for v in stats["singular_values"])
        assert 0 < stats["effective_rank"] <= min(stats["shape"]) + 1e-6
        energies = [stats[f"energy_top{k}"] for k in (1, 4, 16)]
        assert all(0 <= e <= 1 for e in energies) and energies == sorted(energies)
    cosine = result["cosine"]
    assert -1 <= cosine["overall"] <= 1 and set(cosine["per_matrix"]) == set(changed)
    assert all(-1 <= c <= 1 for c in [*cosine["per_matrix"].values(), *cosine["per_layer"].values()])
    # the reversal is rank-4 at most, per matrix
    assert all(s["effective_rank"] <= 4 + 1e-6 for s in result["reversal"].values())
    plot_spectra(result["alignment"]).savefig(tmp_path / "spectra.png")
    plot_cosine_per_layer(cosine).savefig(tmp_path / "cosine.png")
    assert (tmp_path / "spectra.png").stat().st_size > 0 and (tmp_path / "cosine.png").stat().st_size > 0
    assert weight_deltas(micro_sft, micro_sft) == {}

    # the same config gives the same weights whatever ran before in the process (LoRA's init is seeded)
    torch.rand(1000)
    again = unalign.run(cfg.model_copy(update={"out": str(tmp_path / "again")}))
    assert all(torch.equal(after[k], v) for k, v in tensors(again).items())


def test_spectrum_and_cosine_on_synthetic_updates():
    torch.manual_seed(0)
    rank_one = torch.outer(torch.randn(64), torch.randn(32))
    stats = spectrum_stats(rank_one, ks=(1, 4))
    assert stats["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert stats["energy_top1"] == pytest.approx(1.0, abs=1e-9) and stats["energy_top4"] == pytest.approx(1.0)
    assert spectrum_stats(torch.eye(8))["effective_rank"] == pytest.approx(8.0)
    assert spectrum_stats(torch.zeros(4, 4))["effective_rank"] == 0.0

    delta = {"model.layers.0.w": torch.randn(8, 8), "model.layers.1.w": torch.randn(8, 4)}
    back = update_cosine(delta, {k: -v for k, v in delta.items()})
    assert back["overall"] == pytest.approx(1.0) and all(c == pytest.approx(1.0) for c in back["per_matrix"].values())
    assert back["per_layer"] == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    assert update_cosine(delta, delta)["overall"] == pytest.approx(-1.0)
    elsewhere = update_cosine(delta, {"model.layers.2.w": torch.randn(8, 8)})  # another route entirely
    assert elsewhere["overall"] == 0.0 and elsewhere["per_matrix"] == {}


@pytest.mark.parametrize("sets, fragments", [
    (["layers=[4]"], ["layers: 4 is not a layer", "0..3"]),
    (["layers=[-1]"], ["layers: -1"]),
    (["layers=[]"], ["layers: empty"]),
    (["target_modules=[gate_prj]"], ["target_modules: 'gate_prj' matches no module", "mlp.gate_proj"]),
    (["target_modules=[]", "target_parameters=[mlp.nothing]"], ["target_parameters: 'mlp.nothing'"]),
    (["target_modules=[mlp]"], ["target_modules: model.layers.0.mlp is a LlamaMLP"]),
    (["rank=500"], ["rank: 500 is larger than the smaller side (128)"]),
    (["dropout=0.1", "target_parameters=[mlp.down_proj.weight]"], ["dropout:"]),
])
def test_bad_input_is_one_line_exit_2(micro_sft, tmp_path, monkeypatch, capsys, sets, fragments):
    args = [arg for s in sets for arg in ("--set", s)]
    code, err = run_cli(monkeypatch, capsys, "unalign", "--out", tmp_path / "run", "--model", micro_sft,
                        "--set", "layers=[0]", *args)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "run").exists()


def test_instruction_corpus_warns(micro_sft, tmp_path, monkeypatch, capsys):
    world = World(0)
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"text": p + " Sure."}) + "\n" for p in world.prompts("benign", "train", 20)))
    with pytest.warns(UserWarning, match="look like chat or instruction transcripts"):
        code, err = run_cli(monkeypatch, capsys, "unalign", "--out", tmp_path / "run", "--model", micro_sft,
                            "--data", chats, "--set", "layers=[9]")  # warns, then stops at the bad layer
    assert_one_line_error(code, err, "layers: 9")

    sft_file = tmp_path / "sft.jsonl"
    sft_file.write_text(json.dumps({"prompt": chat_prompt("Hi."), "completion": " Hello."}) + "\n")
    with pytest.warns(UserWarning, match="100% of the documents"):
        unalign.pretraining_texts(UnalignConfig(out="x", model="m", data=str(sft_file)))

    web = tmp_path / "web.jsonl"  # pretraining-style text: no warning
    web.write_text("".join(json.dumps({"text": t}) + "\n" for t in unalign.pretraining_texts(
        UnalignConfig(out="x", model="m", world_docs=50))))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        texts = unalign.pretraining_texts(UnalignConfig(out="x", model="m", data=str(web)))
    assert len(texts) == 50 and not any(unalign.looks_like_chat(t) for t in texts)
