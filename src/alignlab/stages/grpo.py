"""`alignlab grpo` and `alignlab rloo`: online RL with TRL's GRPOTrainer / RLOOTrainer, any scorer
as the reward.

Each step samples `num_generations` completions for each of `batch_size` prompts, scores them
with the scorer (`reward`: world gold judges, VADER, a reward model, an ensemble), and moves
the policy towards the completions that beat their siblings: GRPO normalises rewards within
each prompt's group, RLOO uses the mean of the other samples as the baseline. `beta` > 0 adds
a KL penalty to the starting model (TRL loads it as the frozen reference).

Every logged step also records the reward-hacking monitors (monitor/*: reward, response
length, distinct-1/2, KL per sequence, entropy); when one crosses a stop rule (`monitor`),
the run is paused, no model is saved, and the message names the last good checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..config import GRPOConfig
from ..errors import InputError
from ..monitors import StopRuleFired, StopRules, step_monitors
from ..runs import Run
from ..scoring import checked_scores, stage_scorer
from .dpo import preference_prompts

ALGORITHMS = ("grpo", "rloo")


def load_prompts(cfg: GRPOConfig) -> list[str]:
    """The training prompts, checked to fill at least one step (TRL drops incomplete batches)."""
    prompts = preference_prompts(cfg)
    if not prompts:
        raise InputError(f"prompts: no prompts from {cfg.prompts!r} with n_prompts={cfg.n_prompts}")
    per_step = cfg.batch_size * cfg.grad_accum * int(os.environ.get("WORLD_SIZE", "1"))
    if len(prompts) < per_step:
        raise InputError(f"prompts: {len(prompts)} prompts, but one step takes {per_step} "
                         "(batch_size x grad_accum x processes); lower batch_size or raise n_prompts")
    return prompts


class ScorerReward:
    """A scorer as a TRL reward function; it keeps what it scored until the next log, for the monitors."""

    __name__ = "scorer"  # TRL logs this function's reward as rewards/scorer/mean

    def __init__(self, scorer):
        self.scorer = scorer
        self.scored: list[tuple[float, str, int]] = []  # (reward, completion, length in tokens)

    def __call__(self, prompts, completions, completion_ids, trainer_state=None, raw_prompt=None,
                 **kwargs) -> list[float]:
        try:  # the prompts as the stage gave them (a conversation, say), not TRL's rendered text
            scores = checked_scores(self.scorer, raw_prompt or prompts, completions)
        except InputError as e:  # say where: the run stops here, mid-training
            step = trainer_state.global_step + 1 if trainer_state else "?"
            raise InputError(f"reward: {e} (training step {step})") from None
        self.scored += zip(scores, completions, map(len, completion_ids))
        return scores

    def take(self) -> list[tuple[float, str, int]]:
        """Everything scored since the last call, from every process (a collective call)."""
        from accelerate.utils import gather_object

        scored, self.scored = self.scored, []
        return gather_object(scored)


def monitor_callback(reward: ScorerReward, rules: StopRules):
    from transformers import TrainerCallback

    class Monitors(TrainerCallback):
        """Add monitor/* to each log record and check the stop rules (see StopRules).

        Must come before the metrics callback, which writes the (same) record to metrics.jsonl.
        Exceptions raised in a callback would skip that write, so a firing rule is kept in
        `fired` and stops training the Trainer's way; run() raises after train() returns."""

        fired: StopRuleFired | None = None

        def on_step_end(self, args, state, control, **kwargs):
            # check the monitors before every checkpoint and at the end, so nothing unchecked is saved
            if control.should_save or control.should_training_stop:
                control.should_log = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            scored = reward.take()  # on every process alike: it may gather across processes
            if not scored or logs is None:
                return
            rewards, completions, lengths = map(list, zip(*scored))
            # TRL's kl is per token, averaged over every completion token; times the mean length
            # it is the mean KL per sequence, the unit of the max_kl rule
            kl, mean_length = logs.get("kl"), logs.get("completions/mean_length")
            kl_sequence = [kl * mean_length] if kl is not None and mean_length is not None else None
            monitors = step_monitors(rewards, completions, lengths, kl_sequence, logs.get("entropy"))
            logs.update(monitors)
            try:
                rules.check(monitors, state.global_step)
            except StopRuleFired as e:
                self.fired = e
                control.should_training_stop = True
                control.should_save = False  # the policy that tripped the rule is no good checkpoint

    return Monitors()


def trainer_args(cfg: GRPOConfig, algorithm: str):
    """TRL's config: the shared Trainer settings plus the online-RL ones."""
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import RLOOConfig

    from ..training import trainer_arguments

    fields = dict(
        # alignlab's batch_size counts prompts, TRL's counts completions; this way every
        # generation batch holds whole groups, which TRL requires
        per_device_train_batch_size=cfg.batch_size * cfg.num_generations,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature, beta=cfg.beta,
        # RL curves are read step by step against the monitors; a decaying lr would bend them
        lr_scheduler_type="constant_with_warmup",
        disable_dropout=True,  # dropout would add noise to the policy/reference log-ratio (KL)
    )
    return trainer_arguments(TRLGRPOConfig if algorithm == "grpo" else RLOOConfig, cfg, **fields)


def build_trainer(cfg: GRPOConfig, args, prompts: list, model, tokenizer, reward: ScorerReward, callbacks: list):
    import datasets
    from trl import GRPOConfig as TRLGRPOConfig

    from ..prompts import render
    from trl import GRPOTrainer, RLOOTrainer

    from ..training import FiniteLossMixin, lora_config

    algorithm = "grpo" if isinstance(args, TRLGRPOConfig) else "rloo"
    base = GRPOTrainer if algorithm == "grpo" else RLOOTrainer
    return type(algorithm.upper(), (FiniteLossMixin, base), {})(
        model=model, reward_funcs=reward, args=args, peft_config=lora_config(cfg),
        # TRL reads `prompt` as the text the policy continues (rendered here, in the one way every
        # stage renders); the scorer gets the prompt itself, which TRL passes on as a dataset column
        train_dataset=datasets.Dataset.from_dict({"prompt": [render(tokenizer, p) for p in prompts],
                                                  "raw_prompt": prompts}),
        processing_class=tokenizer, callbacks=callbacks,
    )


def run(cfg: GRPOConfig, algorithm: str | None = None) -> Path:
    from ..models import load_tokenizer
    from ..training import last_complete_checkpoint, load_trainable, metrics_callback, save_final, train

    if algorithm is not None:  # recorded in the config, so resuming with the other algorithm is refused
        if algorithm not in ALGORITHMS:
            raise InputError(f"algorithm: {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        cfg = cfg.model_copy(update={"algorithm": algorithm})
    algorithm = cfg.algorithm
    if cfg.monitor.max_kl is not None and cfg.beta == 0:
        raise InputError("monitor.max_kl: needs beta > 0 (without a KL term there is no reference to measure KL to)")
    prompts = load_prompts(cfg)
    args = trainer_args(cfg, algorithm)  # before the model: see training.common_args
    reward = ScorerReward(stage_scorer(cfg.reward, cfg))
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model = load_trainable(cfg)
    if getattr(model.config, "output_router_logits", False):
        # an MoE saved by TRL's SFT asks for router logits; TRL 1.16's generate then computes the
        # load-balancing loss on one-token steps and fails (GptOss). RL here trains without that loss.
        model.config.output_router_logits = False
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
    monitors = monitor_callback(reward, StopRules(cfg.monitor))
    trainer = build_trainer(cfg, args, prompts, model, tokenizer, reward,
                            callbacks=[monitors, metrics_callback(run)])  # this order: see Monitors
    result = train(trainer, run, cfg.resume)  # marks the run failed if the scorer breaks mid-run
    if monitors.fired:
        good = last_complete_checkpoint(run.checkpoints_dir)
        message = f"{monitors.fired}; last good checkpoint: {good if good else 'none (no checkpoint saved yet)'}"
        run.pause(message, **result, algorithm=algorithm)
        raise StopRuleFired(message)
    save_final(trainer, tokenizer, run, cfg)
    run.finish(**result, algorithm=algorithm, prompts=len(prompts))
    return run.path
