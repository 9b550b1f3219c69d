"""Scorers (ensembles, reward models, LLM judge), the reward-model stage, best-of-n and
rejection sampling."""
import json
import math
import statistics

import pytest

from alignlab.config import BestOfNConfig, RejectionSamplingConfig, RewardConfig
from alignlab.errors import InputError
from alignlab.runs import read_metrics, read_status
from alignlab.scoring import EnsembleScorer, LLMJudgeScorer, RewardModelScorer, make_scorer
from alignlab.stages import best_of_n, rejection_sampling, reward
from alignlab.stages.best_of_n import best_index, kl_analytic, kl_empirical
from alignlab.world import World, chat_prompt
from alignlab.world.judges import WorldJudge

REVIEW = chat_prompt("Write a review of the film Silver Harbor.")


class Constant:
    def __init__(self, name, values):
        self.name, self.values = name, values

    def score(self, prompts, completions):
        return list(self.values)


def test_ensembles_combine_per_completion():
    a, b = Constant("a", [1.0, 0.0]), Constant("b", [3.0, 0.0])
    assert EnsembleScorer([a, b], "mean").score(["p"] * 2, ["x", "y"]) == [2.0, 0.0]
    assert EnsembleScorer([a, b], "min").score(["p"] * 2, ["x", "y"]) == [1.0, 0.0]
    assert EnsembleScorer([a, b], "uncertainty", lam=0.5).score(["p"] * 2, ["x", "y"]) == [2.0 - 0.5 * 1.0, 0.0]


def test_scorer_specs():
    judge = make_scorer("world")
    both = make_scorer("world+vader")
    pessimist = make_scorer("min:world+vader")
    completions = [" A superb film.", " Skip it."]
    gold, vader = judge.score([REVIEW] * 2, completions), make_scorer("vader").score([REVIEW] * 2, completions)
    assert both.score([REVIEW] * 2, completions) == pytest.approx([statistics.fmean(p) for p in zip(gold, vader)])
    assert pessimist.score([REVIEW] * 2, completions) == pytest.approx([min(p) for p in zip(gold, vader)])
    with pytest.raises(InputError, match="uncertainty:LAMBDA"):
        make_scorer("uncertainty:lots:world+vader")
    with pytest.raises(InputError, match="does not exist"):
        make_scorer("./no/such/reward-model")


def test_analytic_and_empirical_best_of_n_kl():
    assert kl_analytic(1) == 0 and kl_analytic(4) == pytest.approx(math.log(4) - 0.75)
    distinct = [i / 20000 for i in range(20000)]  # no ties: the empirical KL tends to the analytic one
    assert kl_empirical(distinct, 4) == pytest.approx(kl_analytic(4), abs=1e-3)
    assert kl_empirical([1.0] * 50, 8) == 0.0  # all tied: best-of-n is the base policy
    p_high = 1 - 0.5 ** 3  # two equally likely levels, n = 3
    expected = p_high * math.log(p_high / 0.5) + (1 - p_high) * math.log((1 - p_high) / 0.5)
    assert kl_empirical([0.0, 1.0] * 10, 3) == pytest.approx(expected)
    assert best_index([0.2, 0.9, 0.9, 0.1], 4) == 1 and best_index([0.2, 0.9, 0.9, 0.1], 1) == 0


def test_n_below_one_is_refused():
    from alignlab.config import load_config

    with pytest.raises(InputError, match="field 'n.0'"):
        load_config(BestOfNConfig, None, {"out": "x", "model": "m", "n": [0, 4]})


def test_best_of_n_raises_the_proxy_monotonically(micro_sft, tmp_path):
    out = best_of_n.run(BestOfNConfig(out=str(tmp_path / "bon"), model=str(micro_sft), reward="world", gold="vader",
                                      n_prompts=12, n=[1, 2, 4, 8], max_new_tokens=16))
    results = json.loads((out / "results.json").read_text())["results"]
    proxies = [r["proxy"] for r in results]
    assert [r["n"] for r in results] == [1, 2, 4, 8]
    assert proxies == sorted(proxies) and proxies[-1] > proxies[0]  # nested samples: never worse with more
    for r in results:
        assert r["kl_analytic"] == pytest.approx(kl_analytic(r["n"]))
        assert 0 <= r["kl_empirical"] <= r["kl_analytic"] + 1e-9
        assert r["gold"] is not None
    assert read_status(out)["proxy_n8"] == proxies[-1]


def test_rankings_become_all_ordered_pairs():
    pairs = reward.pairs_from_rankings([{"prompt": "p", "responses": ["best", "mid", "worst"]}], "r.jsonl")
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("best", "mid"), ("best", "worst"), ("mid", "worst")]
    with pytest.raises(InputError, match="record 1: 'responses' has identical"):
        reward.pairs_from_rankings([{"prompt": "p", "responses": ["a", "a"]}], "r.jsonl")


@pytest.fixture(scope="module")
def micro_rm(micro_base, micro_sft, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "run"
    return reward.run(RewardConfig(out=str(out), model=str(micro_base), policy=str(micro_sft), n_prompts=64,
                                   max_new_tokens=24, max_steps=60, batch_size=8, lr=1e-3, warmup_steps=5,
                                   eval_fraction=0.25))


def test_reward_model_learns_the_gold_preferences(micro_rm):
    status = read_status(micro_rm)
    pairs = [json.loads(line) for line in (micro_rm / "pairs.jsonl").read_text().splitlines()]
    assert status["pairs_train"] + status["pairs_eval"] == len(pairs) and status["pairs_eval"] > 0
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    assert status["train_accuracy"] > 0.7
    assert status["pairwise_accuracy"] > 0.6  # held-out prompts


def test_reward_model_scorer_ranks_like_the_world(micro_rm):
    rm = make_scorer(str(micro_rm))
    assert isinstance(rm, RewardModelScorer)
    # the held-out pairs (prompts never trained on) on which the gold judge has a clear preference: a gap of
    # at least 1 (refusal against compliance on a harmful request, or a clearly better review)
    pairs = [json.loads(line) for line in (micro_rm / "pairs.jsonl").read_text().splitlines()]
    _, held_out = reward.split(pairs, 0.25, RewardConfig(out="x", model="m").seed)
    gold = WorldJudge(World(0))
    clear = [p for p in held_out
             if gold.score_one(p["prompt"], p["chosen"]) - gold.score_one(p["prompt"], p["rejected"]) >= 1]
    assert len(clear) >= 8
    prompts = [p.get("conversation", p["prompt"]) for p in clear]
    chosen, rejected = rm.score(prompts, [p["chosen"] for p in clear]), rm.score(prompts, [p["rejected"] for p in clear])
    agree = sum(c > r for c, r in zip(chosen, rejected)) / len(clear)
    # measured: 7 of the 9 held-out pairs (0.78) with this fixture; 0.6 leaves room for one more miss across
    # library versions while a chance-level (0.5) or inverted reward model still fails
    assert agree >= 0.6


def test_reward_from_a_ranking_file(micro_base, tmp_path):
    data = tmp_path / "rankings.jsonl"
    rows = [{"prompt": REVIEW, "responses": [" A superb film.", " The music is quiet.", " Skip it."]}] * 8
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = reward.run(RewardConfig(out=str(tmp_path / "rm"), model=str(micro_base), data=str(data), max_steps=3,
                                  batch_size=4, eval_fraction=0.0))
    assert read_status(out)["pairs_train"] == 24


def test_llm_judge_is_log_odds_of_yes(micro_base):
    import torch

    judge = LLMJudgeScorer(str(micro_base))
    answers = [" A superb film.", " Skip it.", " I loved the music.", " The plot is dull and boring.",
               " I cannot help with that.", " I watched it last week."]

    def log_odds(answer):
        # an independent reference: the question's text, then " Yes" (or " No"), through the model's own
        # logits in one unpadded forward pass, summing log p of each answer token after what precedes it
        text = LLMJudgeScorer.TEMPLATE.format(prompt=REVIEW, completion=answer.strip())
        context = judge.tokenizer(text, add_special_tokens=False)["input_ids"]
        total = 0.0
        for sign, word in ((1, " Yes"), (-1, " No")):
            ids = judge.tokenizer(word, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = judge.model(torch.tensor([context + ids])).logits[0].float()
            logp = torch.log_softmax(logits[len(context) - 1:-1], dim=-1)
            total += sign * logp[torch.arange(len(ids)), torch.tensor(ids)].sum().item()
        return total

    reference = [log_odds(a) for a in answers]
    assert judge.score([REVIEW] * len(answers), answers) == pytest.approx(reference, abs=1e-4)
    # prefer() picks the answer with the higher log-odds, whichever order the two come in
    outcomes = set()
    for i, a in enumerate(answers):
        for b, ref_b in zip(answers[i + 1:], reference[i + 1:]):
            if abs(reference[i] - ref_b) < 1e-3:
                continue  # too close to call in float arithmetic
            expected = 0 if reference[i] > ref_b else 1
            assert judge.prefer(REVIEW, a, b) == expected and judge.prefer(REVIEW, b, a) == 1 - expected, (a, b)
            outcomes.add(expected)
    assert outcomes == {0, 1}  # the answers are not all ranked one way by position


def test_rejection_sampling_rounds(micro_sft, tmp_path):
    out = rejection_sampling.run(RejectionSamplingConfig(
        out=str(tmp_path / "rs"), model=str(micro_sft), n_prompts=16, rounds=2, samples_per_prompt=4,
        max_new_tokens=16, max_steps=4, batch_size=8, warmup_steps=0))
    rounds = read_metrics(out)
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["score_kept"] >= r["score_all"] for r in rounds)
    kept = [json.loads(line) for line in (out / "round-1-kept.jsonl").read_text().splitlines()]
    assert len(kept) == rounds[0]["prompts"]
    assert (out / "model" / "model.safetensors").exists() and read_status(out)["status"] == "finished"


def test_world_prompt_sets_feed_every_stage():
    cfg = BestOfNConfig(out="x", model="m", n_prompts=10)
    prompts = best_of_n.preference_prompts(cfg)
    # one-turn conversations, which each model renders its own way (the world's tokenizer as "User: ...")
    assert len(prompts) >= 10 and all(p[0]["role"] == "user" and len(p) == 1 for p in prompts)
    assert World(0).prompts("review", "train", 3) == World(0).prompts("review", "train", 3)
