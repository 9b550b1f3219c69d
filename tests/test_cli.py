"""The command line: bad input gives one line naming the file, line or field, exit 2, and no
finished run; stages run under `accelerate launch`; the demo writes its summary and report."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignlab import cli
from conftest import assert_one_line_error, run_cli
from alignlab.experiments.demo import MICRO, SUMMARY_METRICS
from alignlab.models import load_model
from alignlab.runs import is_finished, read_status


def test_malformed_yaml_names_the_file_and_line(tmp_path, monkeypatch, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("out: runs/x\nlr: [1, 2\nmax_steps: 3\n")
    code, err = run_cli(monkeypatch, capsys, "pretrain", "--config", config)
    assert_one_line_error(code, err, f"{config}:", "malformed YAML")


def test_unknown_field_is_named(tmp_path, monkeypatch, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text(f"out: {tmp_path / 'run'}\nlearnig_rate: 0.1\n")
    code, err = run_cli(monkeypatch, capsys, "pretrain", "--config", config)
    assert_one_line_error(code, err, str(config), "'learnig_rate'", "unknown field")
    assert not (tmp_path / "run").exists()


def test_mistyped_field_is_named(tmp_path, monkeypatch, capsys):
    code, err = run_cli(monkeypatch, capsys, "sft", "--out", tmp_path / "run", "--model", "x", "--set", "lr=fast")
    assert_one_line_error(code, err, "--set", "'lr'")


def test_broken_data_line_is_named(micro_base, tmp_path, monkeypatch, capsys):
    data = tmp_path / "sft.jsonl"
    data.write_text('{"prompt": "User: a\\nAssistant:", "completion": " b"}\n{"prompt": "oops",\n')
    code, err = run_cli(monkeypatch, capsys, "sft", "--out", tmp_path / "run", "--model", micro_base, "--data", data)
    assert_one_line_error(code, err, f"{data}:2:", "invalid JSON")
    assert not (tmp_path / "run").exists()


def test_missing_column_is_named(micro_base, tmp_path, monkeypatch, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    code, err = run_cli(monkeypatch, capsys, "dpo", "--out", tmp_path / "run", "--model", micro_base, "--data", data)
    assert_one_line_error(code, err, f"{data}:1:", "missing column 'rejected'")


def test_missing_model_path(tmp_path, monkeypatch, capsys):
    code, err = run_cli(monkeypatch, capsys, "eval", "--out", tmp_path / "run", "--model", tmp_path / "no-such-model")
    assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "run").exists()


def test_empty_data_set(micro_tokenizer, tmp_path, monkeypatch, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("\n")
    code, err = run_cli(monkeypatch, capsys, "pretrain", "--out", tmp_path / "run", "--tokenizer", micro_tokenizer,
                        "--data", data)
    assert_one_line_error(code, err, str(data), "no rows")
    assert not (tmp_path / "run").exists()


def test_real_exit_code_from_a_fresh_process(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("- just\n- a list\n")
    result = subprocess.run([sys.executable, "-m", "alignlab.cli", "sft", "--config", str(config)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"alignlab: error: {config}: expected a mapping of config fields, got list"


def _micro_pretrain_args(out, tokenizer):
    args = ["-m", "alignlab.cli", "pretrain", "--out", str(out), "--tokenizer", str(tokenizer)]
    for key, value in {**MICRO["base"], "max_steps": 12, "save_steps": 6, "batch_size": 4}.items():
        args += ["--set", f"{key}={value}"]
    return args


@pytest.mark.parametrize("launcher", [
    # The command the docs give. accelerate 1.15 runs --cpu as a single process unless MPI is installed.
    ["--cpu", "--num_processes", "2"],
    # Two real processes in one DDP group (gloo on CPU): checks only rank 0 writes the run folder.
    ["--multi_gpu", "--num_processes", "2"],
])
def test_a_stage_runs_under_accelerate_launch(micro_tokenizer, tmp_path, launcher):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", *_micro_pretrain_args(out, micro_tokenizer)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert is_finished(out) and load_model(str(out)) is not None
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == sorted(set(steps))  # one writer: no step logged twice
    # each optimizer step consumes batch_size blocks per process: two ranks get through twice the data
    n_blocks = read_status(out)["corpus_tokens"] / MICRO["base"]["block_size"]
    processes = 2 if "--multi_gpu" in launcher else 1
    assert records[-1]["epoch"] == pytest.approx(12 * 4 * processes / n_blocks, rel=0.02)


def test_micro_demo_writes_summary_and_report(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    monkeypatch.setattr(sys, "argv", ["alignlab", "demo", "--micro", "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"base", "sft", "dpo"} and summary["wall_seconds"] > 0
    for metrics in summary["models"].values():
        assert all(key in metrics for key in SUMMARY_METRICS)
    assert summary["models"]["base"]["kl_to_reference"] == pytest.approx(0.0, abs=1e-5)
    html = (out / "report.html").read_text()
    assert "Verdicts" in html and html.count("data:image/png;base64,") >= 2
    for stage in ("tokenizer", "base", "sft", "dpo", "eval-base", "eval-sft", "eval-dpo"):
        assert is_finished(out / stage), stage

    # a second demo reuses every finished stage instead of training again, also one that finished after a resume
    sft_config = out / "sft" / "config.yaml"
    sft_config.write_text(sft_config.read_text().replace("resume: false", "resume: true"))
    monkeypatch.setattr(sys, "argv", ["alignlab", "demo", "--micro", "--out", str(out)])
    with pytest.raises(SystemExit):
        cli.main()
    assert capsys.readouterr().out.count("reusing finished run") == 7
    assert json.loads((out / "summary.json").read_text())["models"] == summary["models"]


STAGE_COMMANDS = ["tokenizer", "pretrain", "sft", "dpo", "reward", "classifier", "ppo", "grpo", "rloo", "best-of-n",
                  "rejection-sampling", "unalign", "eval", "demo", "world", "experiment", "elasticity"]


def test_help_lists_every_command():
    # the installed console script (pyproject's [project.scripts]), as a user runs it
    alignlab = shutil.which("alignlab", path=str(Path(sys.executable).parent)) or shutil.which("alignlab")
    assert alignlab, "the alignlab entry point is not installed"
    result = subprocess.run([alignlab, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = {line.strip("│ ").split(" ")[0] for line in result.stdout.splitlines()}
    assert set(STAGE_COMMANDS) <= listed, sorted(set(STAGE_COMMANDS) - listed)
    for command in STAGE_COMMANDS:  # each command's own help parses its options without running anything
        result = subprocess.run([alignlab, command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "Usage:" in result.stdout, (command, result.stderr)


def test_nested_overrides_and_their_errors():
    from alignlab.config import PPOConfig, load_config, parse_overrides
    from alignlab.errors import InputError

    cfg = load_config(PPOConfig, None, parse_overrides(["out=x", "model=m", "monitor.max_kl=8", "monitor.min_distinct_2=0.2"]))
    assert cfg.monitor.max_kl == 8 and cfg.monitor.min_distinct_2 == 0.2
    with pytest.raises(InputError, match="field 'monitor.max_kll': unknown field"):
        load_config(PPOConfig, None, parse_overrides(["out=x", "model=m", "monitor.max_kll=8"]))
    with pytest.raises(InputError, match="'lr' is not a nested config"):
        load_config(PPOConfig, None, parse_overrides(["out=x", "model=m", "lr=1", "lr.x=2"]))


def _stage_that_only_starts_its_run(cfg):
    from alignlab.runs import Run

    return Run.start(cfg.out, cfg.model_dump(), cfg.resume).path  # writes the resolved config.yaml, trains nothing


@pytest.mark.parametrize("args, seed", [([], 5), (["--seed", "0"], 0), (["--seed", "3"], 3)])
def test_seed_on_the_command_line_overrides_the_yaml_even_when_0(tmp_path, monkeypatch, capsys, args, seed):
    from alignlab.stages import pretrain

    config = tmp_path / "base.yaml"
    config.write_text(f"out: {tmp_path / 'run'}\nseed: 5\nresume: true\n")
    monkeypatch.setattr(pretrain, "run", _stage_that_only_starts_its_run)
    code, err = run_cli(monkeypatch, capsys, "pretrain", "--config", config, *args)
    assert code in (0, None), err
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["seed"] == seed
    assert resolved["resume"] is True  # a flag left off (--resume) does not switch off the YAML's value


@pytest.mark.parametrize("out", ["taken.txt", "taken.txt/run"])
def test_out_naming_a_file_is_one_line(tmp_path, monkeypatch, capsys, out):
    taken = tmp_path / "taken.txt"
    taken.write_text("not a run\n")
    code, err = run_cli(monkeypatch, capsys, "tokenizer", "--out", tmp_path / out, "--set", "world_docs=20")
    assert_one_line_error(code, err, f"out: {taken} is a file")
    assert taken.read_text() == "not a run\n"


def _launch_two_processes(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "alignlab.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_auto_pairs_are_sampled_in_shares_and_gathered_under_two_processes(micro_sft, tmp_path):
    from alignlab.config import DPOConfig
    from alignlab.models import load_tokenizer
    from alignlab.prompts import render
    from alignlab.stages.dpo import preference_prompts

    out = tmp_path / "dpo"
    result = _launch_two_processes("dpo", "--out", out, "--model", micro_sft, "--set", "n_prompts=64",
                                   "--set", "max_new_tokens=16", "--set", "batch_size=2", "--set", "max_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert is_finished(out)
    tok = load_tokenizer(str(micro_sft))
    prompts = [render(tok, p) for p in preference_prompts(DPOConfig(out="x", model="m", n_prompts=64))]
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    # rank 0 sampled the even-numbered prompts, rank 1 the odd ones: the gathered file has both shares
    parities = {i % 2 for p in pairs for i, q in enumerate(prompts) if q == p["prompt"]}
    assert len(pairs) >= 2 and parities == {0, 1}, (len(pairs), parities)


def test_rejection_sampling_under_two_processes_trains_on_every_share(micro_sft, tmp_path):
    out = tmp_path / "rs"
    result = _launch_two_processes("rejection-sampling", "--out", out, "--model", micro_sft, "--set", "rounds=2",
                                   "--set", "n_prompts=8", "--set", "samples_per_prompt=2",
                                   "--set", "max_new_tokens=8", "--set", "max_steps=2", "--set", "batch_size=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert is_finished(out)
    from alignlab.config import RejectionSamplingConfig
    from alignlab.stages.dpo import preference_prompts

    n = len(preference_prompts(RejectionSamplingConfig(out="x", model="m", n_prompts=8)))  # the world's mix: 9
    for r in (1, 2):  # each round's kept file holds every prompt's best sample, from both processes
        kept = [json.loads(line) for line in (out / f"round-{r}-kept.jsonl").read_text().splitlines()]
        assert len(kept) == n and is_finished(out / f"round-{r}")


def test_the_console_is_quiet_by_default_and_raw_with_verbose(micro_base, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("ALIGNLAB_VERBOSE", "0")  # restored after the test: --verbose sets it for the process
    printed = {}
    for flags in ([], ["--verbose"]):
        monkeypatch.setattr(sys, "argv", ["alignlab", *flags, "sft", "--out", str(tmp_path / f"run{len(flags)}"),
                                          "--model", str(micro_base), "--set", "max_steps=4", "--set", "logging_steps=1",
                                          "--set", "world_examples=16", "--set", "batch_size=4"])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert exit_info.value.code in (0, None)
        out, err = capfd.readouterr()
        printed[bool(flags)] = (out, err)
    out, err = printed[False]
    assert "{'loss'" not in out + err and "loss=" in err  # the loss sits in the stage's progress bar
    assert out.strip().splitlines()[-1].startswith(f"finished: {tmp_path / 'run0'} (")
    assert (printed[True][0] + printed[True][1]).count("{'loss'") == 4  # one raw log dict per logged step
