"""Format adapters on the real files in ../shared/data: each common shape becomes TRL's format, and the
stages train on it with no conversion by hand."""

import pytest

from alignlab.config import DPOConfig, RewardConfig, SFTConfig
from alignlab.data import read_examples
from alignlab.errors import InputError
from alignlab.formats import detect, hh_turns
from alignlab.runs import read_status
from conftest import SHARED_DATA, assert_one_line_error, needs_shared_data, run_cli

LF = SHARED_DATA / "llamafactory_demos"
HH = SHARED_DATA / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
PKU = SHARED_DATA / "pku_saferlhf_derived" / "pku_saferlhf_test_safety_dpo_5k.json.gz"
TINY = dict(max_steps=2, batch_size=2, max_length=64, save_steps=100)


def test_hh_transcripts_become_history_and_two_answers():
    row = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Help me hide a body.\n\nAssistant: I won't.",
           "rejected": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Help me hide a body.\n\nAssistant: Sure, dig."}
    from alignlab.formats import hh_rlhf

    pair = hh_rlhf(row, "x")
    assert pair["prompt"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                              {"role": "user", "content": "Help me hide a body."}]
    assert pair["chosen"] == [{"role": "assistant", "content": "I won't."}]
    assert pair["rejected"] == [{"role": "assistant", "content": "Sure, dig."}]
    assert hh_turns("no turns at all") == []


def test_alpaca_with_input_system_and_history():
    from alignlab.formats import alpaca

    row = {"instruction": "Translate.", "input": "chat", "output": "cat", "system": "Be brief.",
           "history": [["Hi", "Hello."]]}
    assert alpaca(row, "x") == {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Translate.\nchat"}],
        "completion": [{"role": "assistant", "content": "cat"}]}


@needs_shared_data
@pytest.mark.parametrize("path, kinds, expected_format, n", [
    ("lima/lima.json.gz", ("prompt-completion", "messages"), "alpaca", 1029),
    ("llamafactory_demos/alpaca_en_demo.json.gz", ("prompt-completion", "messages"), "alpaca", 999),
    ("llamafactory_demos/dpo_en_demo.json.gz", ("preference",), "sharegpt-dpo", 300),
    ("llamafactory_demos/kto_en_demo.json.gz", ("unpaired-preference",), "kto-messages", 300),
    ("hh-rlhf/harmless-base/test.jsonl.gz", ("preference",), "hh-rlhf", 2312),
    ("pku_saferlhf_derived/pku_saferlhf_test_safety_dpo_5k.json.gz", ("preference",), "pku", 5135),
])
def test_real_files_are_detected_and_converted(path, kinds, expected_format, n):
    from alignlab.data import read_rows

    raw = read_rows(str(SHARED_DATA / path))
    assert detect(raw[0]) == expected_format
    rows, kind = read_examples(str(SHARED_DATA / path), kinds)
    assert len(rows) == n and kind in kinds
    for row in rows[:50]:
        prompt = row.get("prompt", row.get("messages"))
        assert isinstance(prompt, list) and prompt[-1]["role"] in ("user", "assistant") and prompt[-1]["content"]
        for key in ("completion", "chosen", "rejected"):
            if key in row:  # one assistant answer, with text
                assert row[key][0]["role"] == "assistant" and row[key][0]["content"].strip()


@needs_shared_data
def test_a_stage_that_cannot_use_the_shape_says_so(tmp_path, monkeypatch, capsys, micro_base):
    code, err = run_cli(monkeypatch, capsys, "dpo", "--out", tmp_path / "r", "--model", micro_base,
                        "--data", LF / "alpaca_en_demo.json.gz")
    assert_one_line_error(code, err, "needs preference rows", "prompt-completion")
    with pytest.raises(InputError, match="unknown format 'alpacca'"):
        read_examples(str(LF / "alpaca_en_demo.json.gz"), ("prompt-completion",), "alpacca")


@needs_shared_data
def test_stages_train_on_real_shapes_with_no_conversion(micro_base, micro_sft, tmp_path):
    from alignlab.stages import dpo, reward, sft

    for name in ("lima/lima.json.gz", "llamafactory_demos/alpaca_en_demo.json.gz"):
        out = sft.run(SFTConfig(out=str(tmp_path / name.replace("/", "-")), model=str(micro_base),
                                data=str(SHARED_DATA / name), **TINY))
        assert read_status(out)["data_format"] == "prompt-completion"
    for name in (HH, LF / "dpo_en_demo.json.gz", PKU):
        out = dpo.run(DPOConfig(out=str(tmp_path / f"dpo-{name.name}"), model=str(micro_sft), data=str(name), **TINY))
        assert read_status(out)["pairs"] > 100
    out = reward.run(RewardConfig(out=str(tmp_path / "rm"), model=str(micro_base), data=str(HH), **TINY))
    status = read_status(out)
    assert status["pairs_train"] + status["pairs_eval"] == 2312 and status["pairwise_accuracy"] is not None


@needs_shared_data
def test_data_inspect_shows_what_the_stages_will_see(micro_sft):
    from typer.testing import CliRunner

    from alignlab import cli

    result = CliRunner().invoke(cli.app, ["data", "inspect", str(HH), "--rows", "1", "--model", str(micro_sft)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1] == "shape: hh-rlhf -> TRL format preference, 2312 rows" and lines[2] == "read by: dpo, reward"
    rendered = next(line for line in lines if line.startswith("  as the model reads the prompt:"))
    # the world tokenizer's template: the multi-turn history as User:/Assistant: turns, ending where the answer starts
    assert "User: " in rendered and rendered.endswith("\\nAssistant:'"), rendered
