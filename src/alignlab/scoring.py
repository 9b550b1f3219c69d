"""Scorers: one call, `score(prompts, completions) -> list[float]`.

Every stage that needs a judgement (automatic preference pairs, evaluation, and later RL
and best-of-n) takes any object with that method. A scorer's output is checked here once,
so a broken scorer fails loudly instead of poisoning a run.
"""
from __future__ import annotations

import math
from typing import Protocol

from .errors import InputError
from .world import World
from .world.judges import WorldJudge


class Scorer(Protocol):
    name: str

    def score(self, prompts: list[str], completions: list[str]) -> list[float]: ...


class VaderScorer:
    """The VADER lexicon's compound sentiment of the completion, in [-1, 1] (for real text)."""

    name = "vader"

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [self.analyzer.polarity_scores(c)["compound"] for c in completions]


def make_scorer(name: str, world_seed: int = 0) -> Scorer:
    if name == "world":
        return WorldJudge(World(world_seed))
    if name == "vader":
        return VaderScorer()
    raise InputError(f"judge: unknown scorer {name!r}; choose 'world' or 'vader'")


def checked_scores(scorer: Scorer, prompts: list[str], completions: list[str]) -> list[float]:
    """Call a scorer and insist on one finite number per completion."""
    scores = [float(s) for s in scorer.score(prompts, completions)]
    if len(scores) != len(completions):
        raise InputError(f"scorer {scorer.name}: returned {len(scores)} scores for {len(completions)} completions")
    bad = next((i for i, s in enumerate(scores) if not math.isfinite(s)), None)
    if bad is not None:
        raise InputError(f"scorer {scorer.name}: non-finite score {scores[bad]} for completion {bad}")
    return scores
