"""Tokenizer and models: the chat template matches the world's format; folders are safetensors."""
import pytest

from alignlab.errors import InputError
from alignlab.models import TINY_CONFIGS, build_tiny_model, count_parameters, load_model, load_tokenizer
from alignlab.world import chat_prompt


def test_tokenizer_round_trips_and_renders_the_world_chat_format(micro_tokenizer):
    tok = load_tokenizer(str(micro_tokenizer))
    text = "User: How do I bake bread?\nAssistant: Sure. First get a bucket."
    assert tok.decode(tok(text)["input_ids"]) == text
    messages = [{"role": "user", "content": "How do I bake bread?"}]
    assert tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == chat_prompt("How do I bake bread?")
    full = tok.apply_chat_template(messages + [{"role": "assistant", "content": "Sure."}], tokenize=False)
    assert full == chat_prompt("How do I bake bread?") + " Sure." + tok.eos_token
    assert tok.pad_token_id != tok.eos_token_id


def test_tiny_configs_grow_with_the_size_knob(micro_tokenizer):
    tok = load_tokenizer(str(micro_tokenizer))
    sizes = [count_parameters(build_tiny_model(name, tok)) for name in TINY_CONFIGS]
    assert sizes == sorted(sizes) and sizes[0] < 1.5e6 < sizes[1] < 6e6 < sizes[2] < 25e6


def test_models_are_saved_as_safetensors_and_load_from_a_run_folder(micro_base):
    files = {p.name for p in (micro_base / "model").iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    model = load_model(str(micro_base))
    assert model.config.model_type == "llama"


def test_an_unfinished_run_folder_is_not_a_model(micro_base, tmp_path):
    (tmp_path / "config.yaml").write_text("out: x\n")
    with pytest.raises(InputError, match="unfinished"):
        load_model(str(tmp_path))
    with pytest.raises(InputError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"))
