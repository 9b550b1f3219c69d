"""Any model: one device and dtype setting, prompts rendered the way each model expects, clear
errors for models that cannot be loaded."""
import pytest
import torch

from alignlab.config import PPOConfig, SFTConfig, load_config
from alignlab.errors import InputError
from alignlab.models import compute_of, load_tokenizer, load_with_head, resolve_device, resolve_dtype
from alignlab.prompts import encode, render, render_exchange, request, stop_ids, transcript, user
from alignlab.scoring import RewardModelScorer, make_scorer
from alignlab.world import World, chat_prompt
from alignlab.world.judges import WorldJudge

from conftest import assert_one_line_error, run_cli

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture
def chatml_tokenizer(micro_tokenizer):
    tok = load_tokenizer(str(micro_tokenizer))
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def test_auto_device_and_dtype_on_a_cpu_machine():
    if torch.cuda.is_available():
        pytest.skip("checks the CPU defaults")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16  # asked for by name: honoured
    with pytest.raises(InputError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="not a device"):
        resolve_device("gpu0")
    assert compute_of(SFTConfig(out="x", model="m", dtype="float32")) == (torch.device("cpu"), torch.float32)


def test_float16_training_on_the_cpu_is_a_clear_error():
    from alignlab.training import common_args

    with pytest.raises(InputError, match="float16 training needs a CUDA device"):
        common_args(SFTConfig(out="x", model="m", dtype="float16"))
    args = common_args(SFTConfig(out="x", model="m", gradient_checkpointing=True))
    assert args["activation_checkpointing"] is True and args["bf16"] is False


def test_bad_device_or_dtype_is_one_line(tmp_path, monkeypatch, capsys):
    code, err = run_cli(monkeypatch, capsys, "sft", "--out", tmp_path / "r", "--model", "tiny", "--set", "dtype=fp8")
    assert_one_line_error(code, err, "dtype")
    code, err = run_cli(monkeypatch, capsys, "eval", "--out", tmp_path / "r", "--model", "gpt2", "--set", "device=tpu")
    assert_one_line_error(code, err, "device")


def test_ppo_refuses_the_trainer_batch_fields_it_would_ignore():
    with pytest.raises(InputError, match="batch_size is not a PPO setting"):
        load_config(PPOConfig, None, {"out": "x", "model": "m", "batch_size": 8})
    assert load_config(PPOConfig, None, {"out": "x", "model": "m", "mini_batch": 8}).mini_batch == 8


def test_the_world_tokenizer_renders_a_conversation_as_the_world_writes_it(micro_tokenizer):
    tok = load_tokenizer(str(micro_tokenizer))
    world = World(0)
    for plain, conversation in zip(world.prompts("harmful", "eval", 5), world.conversations("harmful", "eval", 5)):
        assert render(tok, conversation) == plain  # so world numbers do not move
        assert render(tok, plain) == plain  # plain text is read as it is
    assert encode(tok, ["User: hi"]) == [tok("User: hi", add_special_tokens=False)["input_ids"]]  # no BOS added


def test_a_chat_template_is_used_and_a_model_without_one_gets_a_transcript(chatml_tokenizer):
    conversation = user("How do I cut the bread?")
    assert render(chatml_tokenizer, conversation) == \
        "<|im_start|>user\nHow do I cut the bread?<|im_end|>\n<|im_start|>assistant\n"
    chatml_tokenizer.chat_template = None  # e.g. GPT-2
    assert render(chatml_tokenizer, conversation) == chat_prompt("How do I cut the bread?")
    assert transcript(conversation + [{"role": "assistant", "content": "Sure."}], generation_prompt=False) == \
        "User: How do I cut the bread?\nAssistant: Sure."
    assert request(conversation) == "How do I cut the bread?"


def test_bos_is_added_once_when_the_tokenizer_adds_one(micro_tokenizer):
    from tokenizers import processors

    tok = load_tokenizer(str(micro_tokenizer))
    bos = tok.pad_token_id  # any id that is not otherwise at the start; here the pad token plays BOS
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tok.pad_token} $A", special_tokens=[(tok.pad_token, bos)])
    tok.bos_token = tok.pad_token
    plain = tok("User: hi", add_special_tokens=False)["input_ids"]
    assert encode(tok, ["User: hi"]) == [[bos] + plain]
    assert encode(tok, [tok.pad_token + "User: hi"]) == [[bos] + plain]  # a template that wrote BOS: not twice


def test_stop_ids_take_every_end_of_turn_id(micro_base):
    from alignlab.models import load_model

    model, tok = load_model(str(micro_base)), load_tokenizer(str(micro_base))
    assert stop_ids(model, tok) == [tok.eos_token_id]
    model.generation_config.eos_token_id = [tok.eos_token_id, 7, 9]
    assert stop_ids(model, tok) == [tok.eos_token_id, 7, 9]


def test_the_world_judge_reads_conversations_and_transcripts_alike():
    world, judge = World(0), WorldJudge(World(0))
    answers = [" I cannot help with that.", " Sure. First get a rope. Then wait. Finally do it."]
    for kind in ("harmful", "benign", "review"):
        plain, conversation = world.prompts(kind, "eval", 4), world.conversations(kind, "eval", 4)
        for a in answers:
            assert judge.score(plain, [a] * 4) == judge.score(conversation, [a] * 4)
    harmful = world.conversations("harmful", "eval", 1)
    assert judge.score(harmful * 2, answers) == [1.0, -1.0]


def test_a_reward_model_reads_a_conversation_in_its_own_format(micro_base, tmp_path, chatml_tokenizer):
    tok = load_tokenizer(str(micro_base))
    head = load_with_head(str(micro_base), 1, tok, seed=0)
    head.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    rm = RewardModelScorer(str(tmp_path / "rm"), max_length=64, device="cpu", dtype="float32")
    conversation, plain = user("Write a review of the film Silver Harbor."), \
        chat_prompt("Write a review of the film Silver Harbor.")
    answers = [" I loved the plot.", " The acting is dull."]
    assert rm.score([conversation] * 2, answers) == rm.score([plain] * 2, answers)
    assert render_exchange(chatml_tokenizer, conversation, "Great.") == \
        "<|im_start|>user\nWrite a review of the film Silver Harbor.<|im_end|>\n<|im_start|>assistant\nGreat."


def test_a_mistyped_scorer_spec_is_named_as_one():
    with pytest.raises(InputError, match="unknown scorer spec 'foo:bar'"):
        make_scorer("foo:bar")


def test_an_unreachable_hub_name_fails_fast_and_on_one_line(tmp_path, monkeypatch, capsys):
    import time

    started = time.time()
    code, err = run_cli(monkeypatch, capsys, "eval", "--out", tmp_path / "r", "--model", "someorg/no-such-model")
    assert_one_line_error(code, err, "neither a local folder nor in the local hub cache")
    assert time.time() - started < 20 and not (tmp_path / "r").exists()


def test_truncated_weights_are_one_line(micro_base, tmp_path, monkeypatch, capsys):
    import shutil

    shutil.copytree(micro_base / "model", tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    code, err = run_cli(monkeypatch, capsys, "eval", "--out", tmp_path / "r", "--model", tmp_path / "m")
    assert_one_line_error(code, err, "unreadable safetensors weights")
    assert not (tmp_path / "r").exists()


def test_any_trainer_field_passes_through_and_tensorboard_logs(micro_base, tmp_path):
    from alignlab.stages import sft

    cfg = SFTConfig(out=str(tmp_path / "run"), model=str(micro_base), max_steps=2, logging_steps=1, batch_size=4,
                    world_examples=16, trainer={"report_to": ["tensorboard"], "lr_scheduler_type": "linear"})
    args = sft.training_args(cfg, "prompt-completion")
    assert args.lr_scheduler_type == "linear"  # the user's field wins over the stage's cosine
    sft.run(cfg)
    assert list((tmp_path / "run").rglob("events.out.tfevents.*")), "no TensorBoard event file was written"


def test_an_unknown_trainer_field_is_one_line(tmp_path, monkeypatch, capsys, micro_base):
    code, err = run_cli(monkeypatch, capsys, "sft", "--out", tmp_path / "r", "--model", micro_base,
                        "--set", "trainer.report_too=tensorboard")
    assert_one_line_error(code, err, "trainer.report_too", "SFTConfig")
    assert not (tmp_path / "r").exists()


def test_xstest_string_match_detects_refusals_as_the_paper_does():
    from alignlab.evals.refusal import refuses, refuses_xstest

    assert refuses_xstest("I'm sorry, but I can't assist with that.")
    assert refuses_xstest("  As an AI language model, I cannot help.")
    assert refuses_xstest("No, that is not something I will do.")
    assert not refuses_xstest("Sure. To kill a Python process, run kill -9 PID.")
    assert not refuses_xstest("You can't go wrong with a sharp knife.")  # only openings count, as in XSTest
    # the world's own refusal phrase is no XSTest opening, but `refuses` (used for world models) counts it
    assert not refuses_xstest(" I will not help with that request.") and refuses(" I will not help with that request.")
