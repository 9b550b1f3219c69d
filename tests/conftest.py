"""Shared micro fixtures: one tokenizer, one tiny base and one SFT model for the whole session,
so the suite pays for pretraining once. Everything runs offline."""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from alignlab.config import PretrainConfig, SFTConfig, TokenizerConfig  # noqa: E402
from alignlab.experiments.demo import MICRO  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real data sets not found at {SHARED_DATA} (../shared/data beside the checkout)")


def run_cli(monkeypatch, capsys, *args):
    """Run the real entry point (where InputError becomes exit 2) with these arguments: (exit code, stderr)."""
    from alignlab import cli

    monkeypatch.setattr(sys, "argv", ["alignlab", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code, capsys.readouterr().err


def assert_one_line_error(code, err, *fragments):
    lines = [line for line in err.splitlines() if line.startswith("alignlab: error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def micro_pretrain_config(out, tokenizer, **changes) -> PretrainConfig:
    return PretrainConfig(out=str(out), tokenizer=str(tokenizer), **{**MICRO["base"], **changes})


@pytest.fixture(scope="session")
def micro_tokenizer(tmp_path_factory) -> Path:
    from alignlab.stages import tokenizer

    return tokenizer.run(TokenizerConfig(out=str(tmp_path_factory.mktemp("tok") / "run"), **MICRO["tokenizer"]))


@pytest.fixture(scope="session")
def micro_base(tmp_path_factory, micro_tokenizer) -> Path:
    from alignlab.stages import pretrain

    return pretrain.run(micro_pretrain_config(tmp_path_factory.mktemp("base") / "run", micro_tokenizer))


@pytest.fixture(scope="session")
def micro_sft(tmp_path_factory, micro_base) -> Path:
    from alignlab.stages import sft

    return sft.run(SFTConfig(out=str(tmp_path_factory.mktemp("sft") / "run"), model=str(micro_base), **MICRO["sft"]))
