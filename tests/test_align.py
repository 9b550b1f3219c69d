"""SFT (completion-only loss), DPO (file pairs and judge-ranked pairs), and eval metrics."""
import json
import math

import pytest

from alignlab.config import DPOConfig, EvalConfig, SFTConfig
from alignlab.errors import InputError
from alignlab.evals import bits_per_byte, distinct_n, kl_from_samples
from alignlab.experiments.demo import MICRO
from alignlab.models import load_model, load_tokenizer
from alignlab.runs import Run, read_metrics, read_status
from alignlab.sampling import completion_logprobs, encode_pairs, sample
from alignlab.stages import dpo, evaluate, sft
from alignlab.world import World


def test_sft_trains_on_completions_only(micro_base, tmp_path):
    cfg = SFTConfig(out=str(tmp_path / "run"), model=str(micro_base))  # default max_length: nothing truncated
    rows, kind = sft.sft_rows(cfg)
    tok = load_tokenizer(cfg.model)
    trainer = sft.build_trainer(cfg, sft.training_args(cfg, kind), rows[:16], load_model(cfg.model), tok,
                                Run(tmp_path / "run"))
    for example, row in zip(trainer.train_dataset, rows):
        n_prompt = len(tok(row["prompt"], add_special_tokens=False)["input_ids"])
        assert example["input_ids"][:n_prompt] == tok(row["prompt"], add_special_tokens=False)["input_ids"]
        assert all(label == -100 for label in example["labels"][:n_prompt])
        assert example["labels"][n_prompt:] == example["input_ids"][n_prompt:]
        assert example["input_ids"][-1] == tok.eos_token_id  # the model learns to stop


def test_sft_makes_demonstrations_more_likely(micro_base, micro_sft):
    rows = World(0).sft_data(64, seed=99)  # fresh demonstrations, same distribution
    tok = load_tokenizer(str(micro_sft))
    ids = encode_pairs(tok, [r["prompt"] for r in rows], [r["completion"] for r in rows])
    before = sum(completion_logprobs(load_model(str(micro_base)), tok, *ids))
    after = sum(completion_logprobs(load_model(str(micro_sft)), tok, *ids))
    assert read_status(micro_sft)["status"] == "finished"
    assert after > before


def test_sft_accepts_a_messages_file(micro_base, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "How do I bake bread?"},
                                                     {"role": "assistant", "content": "Sure. First get a bucket."}]})
                            + "\n" for _ in range(8)))
    out = sft.run(SFTConfig(out=str(tmp_path / "run"), model=str(micro_base), data=str(data), max_steps=2, batch_size=4))
    assert read_status(out)["data_format"] == "messages"


@pytest.fixture(scope="module")
def auto_dpo(micro_sft, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo") / "run"
    return dpo.run(DPOConfig(out=str(out), model=str(micro_sft), **{**MICRO["dpo"], "max_steps": 12, "lr": 1e-3}))


def test_auto_pairs_are_ranked_by_the_gold_judge(auto_dpo):
    from alignlab.world.judges import WorldJudge

    pairs = [json.loads(line) for line in (auto_dpo / "pairs.jsonl").read_text().splitlines()]
    judge = WorldJudge(World(0))
    assert pairs and read_status(auto_dpo)["pairs"] == len(pairs)
    for p in pairs:
        assert judge.score([p["prompt"]] * 2, [p["chosen"], p["rejected"]]) == [p["score_chosen"], p["score_rejected"]]
        assert p["score_chosen"] > p["score_rejected"]


def test_dpo_widens_the_margin_between_chosen_and_rejected(auto_dpo, micro_sft):
    pairs = [json.loads(line) for line in (auto_dpo / "pairs.jsonl").read_text().splitlines()]
    tok = load_tokenizer(str(auto_dpo))

    def margin(model_dir):
        model = load_model(str(model_dir))
        chosen = completion_logprobs(model, tok, *encode_pairs(tok, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs]))
        rejected = completion_logprobs(model, tok, *encode_pairs(tok, [p["prompt"] for p in pairs], [p["rejected"] for p in pairs]))
        return sum(c - r for c, r in zip(chosen, rejected)) / len(pairs)

    assert margin(auto_dpo) > margin(micro_sft) + 1.0
    assert any("rewards/margins" in r for r in read_metrics(auto_dpo))


def test_dpo_rejects_identical_chosen_and_rejected(micro_sft, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "User: Hi\nAssistant:", "chosen": " Sure.", "rejected": " Sure."}) + "\n")
    with pytest.raises(InputError, match="record 1 has identical chosen and rejected"):
        dpo.run(DPOConfig(out=str(tmp_path / "run"), model=str(micro_sft), data=str(data)))
    assert not (tmp_path / "run").exists()


def test_distinct_n_counts_unique_ngrams():
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n([""], 2) == 0.0


def test_bits_per_byte_is_nll_over_bytes(micro_base):
    import torch

    tok, model = load_tokenizer(str(micro_base)), load_model(str(micro_base))
    texts = ["The capital of Velmora is Tarsk.", "A superb film."]
    result = bits_per_byte(model, tok, texts)
    # the reference is transformers' own loss (mean NLL over the text's tokens, each after an EOS),
    # one text at a time, so no padding or alignlab.sampling code is involved
    nll, n_tokens = 0.0, 0
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        input_ids = torch.tensor([[tok.eos_token_id, *ids]])
        with torch.no_grad():
            nll += model(input_ids, labels=input_ids).loss.item() * len(ids)
        n_tokens += len(ids)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert result["bits_per_byte"] == pytest.approx(nll / n_bytes / math.log(2), rel=1e-4)
    assert result["nll_per_token"] == pytest.approx(nll / n_tokens, rel=1e-4)


def test_kl_is_zero_to_itself_and_positive_to_another_model(micro_base, micro_sft):
    tok = load_tokenizer(str(micro_base))
    base, tuned = load_model(str(micro_base)), load_model(str(micro_sft))
    samples = sample(tuned, tok, World(0).prompts("review", "eval", 32), max_new_tokens=16)
    assert kl_from_samples(tuned, tuned, tok, samples) == pytest.approx(0.0, abs=1e-5)
    assert kl_from_samples(tuned, base, tok, samples) > 0


def test_token_kl_on_raw_text_against_one_text_at_a_time(micro_base, micro_sft):
    import torch

    from alignlab.evals import token_kl

    tok = load_tokenizer(str(micro_base))
    base, tuned = load_model(str(micro_base)), load_model(str(micro_sft))
    texts = ["The capital of Velmora is Tarsk.", "A superb film.", "Review of the lamp Tovi. The build is terrible."]
    # the reference: each text alone (no padding), KL summed over the vocabulary by torch's kl_div
    total, count = 0.0, 0
    for text in texts:
        ids = torch.tensor([[tok.eos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]])
        with torch.no_grad():
            p, q = (torch.log_softmax(m(ids).logits[0, :-1].float(), -1) for m in (base, tuned))
        total += torch.nn.functional.kl_div(q, p, log_target=True, reduction="sum").item()
        count += ids.shape[1] - 1
    assert token_kl(base, tuned, tok, texts) == pytest.approx(total / count, rel=1e-4)
    assert token_kl(base, tuned, tok, texts, max_logits=1) == pytest.approx(total / count, rel=1e-4)  # one row a time
    assert token_kl(tuned, tuned, tok, texts) == pytest.approx(0.0, abs=1e-6)


def test_sampling_is_reproducible_from_the_seed(micro_base):
    tok, model = load_tokenizer(str(micro_base)), load_model(str(micro_base))
    prompts = World(0).prompts("benign", "eval", 6)
    runs = [[s.completion for s in sample(model, tok, prompts, 16, seed=s)] for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


def test_eval_writes_every_metric(micro_sft, micro_base, tmp_path):
    out = evaluate.run(EvalConfig(out=str(tmp_path / "run"), model=str(micro_sft), reference=str(micro_base),
                                  **MICRO["eval"]))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("gold_reward", "kl_to_reference", "distinct_1", "distinct_2", "refusal_rate", "over_refusal_rate",
                "knowledge_accuracy", "bits_per_byte", "nll_per_token", "canary_exposure", "canary_recall"):
        assert metrics[key] is not None and math.isfinite(metrics[key]), key
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {r["set"] for r in rows} == {"review", "harmful", "benign", "contrast"}
    assert read_status(out)["status"] == "finished"


def test_eval_is_reproducible_from_the_seed(micro_sft, micro_base, tmp_path):
    def metrics(name, seed):
        cfg = EvalConfig(out=str(tmp_path / name), model=str(micro_sft), reference=str(micro_base), seed=seed,
                         **MICRO["eval"])
        return json.loads((evaluate.run(cfg) / "metrics.json").read_text())

    first, again, other = metrics("a", 0), metrics("b", 0), metrics("c", 1)
    assert first == again
    assert first["distinct_2"] != other["distinct_2"] or first["gold_reward"] != other["gold_reward"]
