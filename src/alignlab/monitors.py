"""Reward-hacking monitors and stop rules, shared by every RL stage (PPO, GRPO, RLOO).

Each logged step an RL stage computes `step_monitors(...)`: mean reward, KL to the reference,
mean response length, token entropy and distinct-n of the batch. A policy that games its
reward model shows it here first (KL climbing, responses lengthening, diversity collapsing),
so `StopRules` can pause the run before the damage is saved over the last good checkpoint.
"""
from __future__ import annotations

from statistics import mean

from .config import MonitorConfig
from .errors import TrainingFailed
from .evals import distinct_n


class StopRuleFired(TrainingFailed):
    """A stop rule paused the run; the message says which rule and the measured value."""


def step_monitors(rewards: list[float], completions: list[str], lengths: list[int],
                  kl: list[float] | None = None, entropy: float | None = None) -> dict:
    """The monitors of one batch of sampled completions (KL in nats per sequence)."""
    out = {
        "monitor/reward": mean(rewards),
        "monitor/response_length": mean(lengths),
        "monitor/distinct_1": distinct_n(completions, 1),
        "monitor/distinct_2": distinct_n(completions, 2),
    }
    if kl is not None:
        out["monitor/kl"] = mean(kl)
    if entropy is not None:
        out["monitor/entropy"] = entropy
    return out


class StopRules:
    def __init__(self, cfg: MonitorConfig):
        self.cfg = cfg

    def check(self, monitors: dict, step: int) -> None:
        """Raise StopRuleFired when a monitor crosses its bound."""
        kl, d2 = monitors.get("monitor/kl"), monitors.get("monitor/distinct_2")
        if self.cfg.max_kl is not None and kl is not None and kl > self.cfg.max_kl:
            raise StopRuleFired(f"stop rule max_kl: KL to reference {kl:.3f} > {self.cfg.max_kl} at step {step}")
        if self.cfg.min_distinct_2 is not None and d2 is not None and d2 < self.cfg.min_distinct_2:
            raise StopRuleFired(f"stop rule min_distinct_2: distinct-2 {d2:.3f} < {self.cfg.min_distinct_2} "
                                f"at step {step}")
