"""`alignlab ppo`: RLHF with PPO as in InstructGPT (Ouyang et al. 2022), written by hand.

TRL removed its PPO trainer in 1.13, so the whole algorithm is here, top to bottom:

    every iteration (`max_steps` of them):
      rollout   one sampled completion per prompt from the policy, scored by any scorer
      rewards   r_t = -kl_coef * (log pi(y_t) - log ref(y_t)) on every token, + the score on the last
      GAE       advantages and returns from a value head on the policy's last hidden state
      update    `ppo_epochs` passes in mini-batches: clipped policy loss + vf_coef * clipped value
                loss (+ ptx_coef * LM loss on pretraining text: PPO-ptx)
      control   adaptive kl_coef (Ziegler et al. 2019), monitors and stop rules, checkpoints

Every iteration draws its prompts, samples and mini-batch order from seeds made of (seed, step),
and a checkpoint holds everything else that changes (policy, value head, AdamW moments, kl_coef,
RNG states), so a run resumed from a checkpoint ends at the weights an uninterrupted one reaches.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import PPOConfig
from ..errors import InputError
from ..monitors import StopRuleFired, StopRules, step_monitors
from ..runs import Run, read_metrics
from ..sampling import sample
from ..scoring import checked_scores, make_scorer
from ..training import NonFiniteLoss, last_complete_checkpoint
from .dpo import preference_prompts

PTX_MAX_TOKENS = 128  # pretraining documents are cut here for the PPO-ptx loss


# ----- inputs -------------------------------------------------------------------------------
def ppo_prompts(cfg: PPOConfig) -> list[str]:
    """The world's preference-prompt mix (as DPO uses), or the `prompt` column of a file / hub set."""
    prompts = preference_prompts(cfg)  # reads only prompts, world_seed, n_prompts and seed
    if not prompts:
        raise InputError(f"prompts: no prompts to train on (prompts={cfg.prompts!r}, n_prompts={cfg.n_prompts})")
    return prompts


def ptx_documents(cfg: PPOConfig, tokenizer) -> list[list[int]]:
    """Token ids of the pretraining text mixed in by PPO-ptx, each after an EOS that starts it."""
    from .pretrain import corpus_texts

    texts = corpus_texts(cfg.ptx_data, "text", cfg.world_seed, 2000, seed=cfg.seed)
    eos = tokenizer.eos_token_id
    return [[eos] + ids[:PTX_MAX_TOKENS - 1] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def iteration_prompts(prompts: list[str], step: int, size: int, seed: int) -> list[str]:
    """Iteration `step`'s prompts: walk through reshuffled passes over the set, from the step alone
    (no state to carry, so a resumed run sees the same prompts)."""
    orders = {}
    out = []
    for k in range((step - 1) * size, step * size):
        epoch, i = divmod(k, len(prompts))
        if epoch not in orders:
            orders[epoch] = random.Random(f"{seed}-prompts-{epoch}").sample(range(len(prompts)), len(prompts))
        out.append(prompts[orders[epoch][i]])
    return out


# ----- per-token tensors --------------------------------------------------------------------
def pad_rollout(samples, pad: int, device) -> dict:
    """Prompt + completion rows, right-padded, and where each completion token is predicted.

    `where[i, t]` is the position whose logits (and hidden state) predict completion token t of
    row i; `mask` marks real completion tokens. Right padding keeps positions as in
    sampling.completion_logprobs, the function the eval stage measures KL with."""
    rows = [s.prompt_ids + s.completion_ids for s in samples]
    width = max(map(len, rows))
    lengths = torch.tensor([len(s.completion_ids) for s in samples])
    n_tokens = max(int(lengths.max()), 1)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    attn = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    start = torch.tensor([len(s.prompt_ids) - 1 for s in samples])
    where = (start[:, None] + torch.arange(n_tokens)).clamp(0, max(width - 2, 0))
    tokens = ids.gather(1, where + 1)
    mask = (torch.arange(n_tokens)[None] < lengths[:, None]).float()
    return {k: v.to(device) for k, v in
            dict(ids=ids, attn=attn, where=where, tokens=tokens, mask=mask).items()}


def forward(model, batch: dict, temperature: float, value_head=None):
    """Log-prob and entropy of each completion token under `model` (and the value head's V(s_t)).

    Logits are divided by the sampling temperature: the ratio and the KL must be of the
    distribution the tokens were actually sampled from."""
    out = model(input_ids=batch["ids"], attention_mask=batch["attn"], output_hidden_states=value_head is not None)
    where = batch["where"][..., None]
    logits = out.logits.gather(1, where.expand(-1, -1, out.logits.shape[-1])).float() / temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    logp = logprobs.gather(-1, batch["tokens"][..., None]).squeeze(-1)
    with torch.no_grad():
        entropy = -(logprobs.exp() * logprobs).sum(-1)
    values = None
    if value_head is not None:
        hidden = out.hidden_states[-1]
        values = value_head(hidden.gather(1, where.expand(-1, -1, hidden.shape[-1])).float()).squeeze(-1)
    return logp, entropy, values


@torch.no_grad()
def forward_in_chunks(model, batch: dict, temperature: float, size: int, value_head=None):
    parts = [forward(model, {k: v[i:i + size] for k, v in batch.items()}, temperature, value_head)
             for i in range(0, len(batch["ids"]), size)]
    return [torch.cat(p) if p[0] is not None else None for p in zip(*parts)]


# ----- the math -----------------------------------------------------------------------------
def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def token_rewards(scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                  kl_coef: float) -> torch.Tensor:
    """InstructGPT's reward: a KL penalty on every completion token, the score on the last one."""
    rewards = -kl_coef * (logp - ref_logp) * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores * (mask.sum(1) > 0)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalized advantage estimation over right-padded rows; returns (advantages, returns).

    Padding holds zero reward and zero value, so the step after the last token is terminal."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, advantages + values


def ppo_losses(logp: torch.Tensor, values: torch.Tensor, old: dict, cfg: PPOConfig):
    """Clipped surrogate policy loss and clipped value loss (means over real tokens), with stats."""
    mask, adv, returns = old["mask"], old["advantages"], old["returns"]
    logratio = logp - old["logp"]
    ratio = logratio.exp()
    clipped = ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange)
    policy_loss = masked_mean(torch.max(-adv * ratio, -adv * clipped), mask)
    values_clipped = old["values"] + (values - old["values"]).clamp(-cfg.cliprange_value, cfg.cliprange_value)
    value_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (values_clipped - returns) ** 2), mask)
    stats = {"ppo/policy_loss": policy_loss.item(), "ppo/value_loss": value_loss.item(),
             "ppo/clipfrac": masked_mean(((ratio - 1).abs() > cfg.cliprange).float(), mask).item(),
             "ppo/approx_kl": masked_mean(0.5 * logratio.detach() ** 2, mask).item()}
    return policy_loss + cfg.vf_coef * value_loss, stats


def ptx_loss(model, documents: list[list[int]], rng: random.Random, n: int, pad: int) -> torch.Tensor:
    """Causal-LM loss on `n` pretraining documents: PPO-ptx's guard against the alignment tax."""
    docs = rng.sample(documents, min(n, len(documents)))
    width = max(map(len, docs))
    device = next(model.parameters()).device
    ids = torch.tensor([d + [pad] * (width - len(d)) for d in docs], device=device)
    labels = torch.tensor([d + [-100] * (width - len(d)) for d in docs], device=device)
    return model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss


def update_kl_coef(kl_coef: float, kl: float, cfg: PPOConfig) -> float:
    """Ziegler et al.'s adaptive controller: nudge kl_coef so the KL drifts toward target_kl."""
    error = min(max(kl / cfg.target_kl - 1, -0.2), 0.2)
    return kl_coef * (1 + error * cfg.rollout_batch / cfg.kl_horizon)


# ----- one iteration ------------------------------------------------------------------------
def generate_and_score(policy, tokenizer, scorer, prompts: list[str], cfg: PPOConfig, step: int):
    """One sampled completion per prompt and its score, with the seconds each took."""
    started = time.time()
    samples = sample(policy, tokenizer, prompts, cfg.max_new_tokens, cfg.temperature, seed=cfg.seed * 100_003 + step)
    generated = time.time()
    scores = checked_scores(scorer, prompts, [s.completion for s in samples])
    return samples, scores, {"time/generation": generated - started, "time/scoring": time.time() - generated}


@torch.no_grad()
def score_tokens(policy, value_head, reference, samples, scores: list[float], cfg: PPOConfig, kl_coef: float,
                 pad: int) -> tuple[dict, dict]:
    """The per-token tensors of one PPO update (old log-probs, values, advantages, returns) and the
    batch's monitors."""
    batch = pad_rollout(samples, pad, next(policy.parameters()).device)
    logp, entropy, values = forward_in_chunks(policy, batch, cfg.temperature, cfg.mini_batch, value_head)
    ref_logp, _, _ = forward_in_chunks(reference, batch, cfg.temperature, cfg.mini_batch)
    mask = batch["mask"]
    rewards = token_rewards(torch.tensor(scores, device=mask.device), logp, ref_logp, mask, kl_coef)
    advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
    batch.update(logp=logp, values=values, returns=returns, advantages=whiten(advantages, mask))
    kl = ((logp - ref_logp) * mask).sum(1).tolist()  # nats per sequence, as the eval stage measures it
    monitors = step_monitors(scores, [s.completion for s in samples], [len(s.completion_ids) for s in samples],
                             kl=kl, entropy=masked_mean(entropy, mask).item())
    return batch, monitors


def train_on_rollout(policy, value_head, optimizer, batch: dict, cfg: PPOConfig, step: int,
                     documents: list[list[int]] | None, pad: int) -> dict:
    """`ppo_epochs` shuffled passes over the rollout in mini-batches; mean stats of all updates."""
    rng = random.Random(f"{cfg.seed}-minibatches-{step}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    stats = defaultdict(list)
    for _ in range(cfg.ppo_epochs):
        order = list(range(len(batch["ids"])))
        rng.shuffle(order)
        for start in range(0, len(order), cfg.mini_batch):
            rows = torch.tensor(order[start:start + cfg.mini_batch], device=batch["ids"].device)
            mini = {k: v[rows] for k, v in batch.items()}
            logp, _, values = forward(policy, mini, cfg.temperature, value_head)
            loss, update = ppo_losses(logp, values, mini, cfg)
            if documents and cfg.ptx_coef > 0:
                lm_loss = ptx_loss(policy, documents, rng, cfg.mini_batch, pad)
                loss = loss + cfg.ptx_coef * lm_loss
                update["ppo/ptx_loss"] = lm_loss.item()
            if not math.isfinite(loss.item()):  # before the update: the weights are still the good ones
                raise NonFiniteLoss(f"non-finite loss ({loss.item()}) at iteration {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            for k, v in update.items():
                stats[k].append(v)
    return {k: sum(v) / len(v) for k, v in stats.items()}


# ----- checkpoints --------------------------------------------------------------------------
def save_checkpoint(run: Run, step: int, policy, value_head, optimizer, tokenizer, kl_coef: float) -> Path:
    """A loadable model folder plus what resuming needs; state.json is written last, so a
    checkpoint whose state.json parses is complete."""
    from safetensors.torch import save_file

    path = run.checkpoints_dir / f"checkpoint-{step}"
    policy.save_pretrained(path)
    tokenizer.save_pretrained(path)
    save_file(value_head.state_dict(), str(path / "value_head.safetensors"))
    tensors = {f"{i}.{name}": t for i, state in optimizer.state_dict()["state"].items() for name, t in state.items()}
    save_file({**tensors, "rng.torch": torch.get_rng_state()}, str(path / "optimizer.safetensors"))
    state = {"step": step, "kl_coef": kl_coef, "python_rng": random.getstate()}
    (path / "state.json.tmp").write_text(json.dumps(state))
    os.replace(path / "state.json.tmp", path / "state.json")
    return path


def load_checkpoint(path: Path, value_head, optimizer) -> dict:
    """Restore value head, AdamW moments and RNG states; the policy is loaded from `path` itself."""
    from safetensors.torch import load_file

    value_head.load_state_dict(load_file(str(path / "value_head.safetensors")))
    tensors = load_file(str(path / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("rng.torch"))
    state = defaultdict(dict)
    for key, t in tensors.items():
        i, name = key.split(".", 1)
        state[int(i)][name] = t
    optimizer.load_state_dict({"state": dict(state), "param_groups": optimizer.state_dict()["param_groups"]})
    saved = json.loads((path / "state.json").read_text())
    version, internal, gauss = saved["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    return saved


def drop_metrics_after(run: Run, step: int) -> None:
    """A resumed run redoes the iterations after its checkpoint: forget their old records."""
    if run.main and (run.path / "metrics.jsonl").exists():
        kept = [r for r in read_metrics(run.path) if r.get("step", 0) <= step]
        (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))


# ----- the stage ----------------------------------------------------------------------------
def run(cfg: PPOConfig) -> Path:
    from transformers import set_seed

    from ..models import load_model, load_tokenizer

    prompts = ppo_prompts(cfg)
    scorer = make_scorer(cfg.reward, cfg.world_seed)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    documents = ptx_documents(cfg, tokenizer) if cfg.ptx_coef > 0 else None
    policy = load_model(cfg.model, cfg.trust_remote_code)
    reference = load_model(cfg.reference or cfg.model, cfg.trust_remote_code).requires_grad_(False).eval()
    if reference.get_input_embeddings().weight.shape[0] != policy.get_input_embeddings().weight.shape[0]:
        raise InputError("reference: its vocabulary differs from the model's; the KL penalty needs a shared tokenizer")
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)

    checkpoint = last_complete_checkpoint(run.checkpoints_dir, "state.json") if cfg.resume else None
    if checkpoint:
        policy = load_model(str(checkpoint), cfg.trust_remote_code)
    # eval mode throughout: with dropout on, the ratio would not start at 1 and the KL would be noise
    policy.eval()
    device = next(policy.parameters()).device
    reference.to(device)
    set_seed(cfg.seed)  # the value head's init depends on this run's seed only, not on what ran before
    value_head = torch.nn.Linear(policy.config.hidden_size, 1).to(device)
    torch.nn.init.zeros_(value_head.weight)  # V = 0 at first: no made-up baseline before any return is seen
    torch.nn.init.zeros_(value_head.bias)
    optimizer = torch.optim.AdamW(list(policy.parameters()) + list(value_head.parameters()),
                                  lr=cfg.lr, weight_decay=cfg.weight_decay)
    kl_coef, first = cfg.kl_coef, 1
    if checkpoint:
        state = load_checkpoint(checkpoint, value_head, optimizer)
        kl_coef, first = state["kl_coef"], state["step"] + 1
    drop_metrics_after(run, first - 1)

    rules, pad = StopRules(cfg.monitor), tokenizer.pad_token_id
    started, record, samples, scores = time.time(), {}, [], []
    try:
        bar = tqdm(range(first, cfg.max_steps + 1), desc="ppo", initial=first - 1, total=cfg.max_steps)
        for step in bar:
            for group in optimizer.param_groups:  # linear warmup, from the step alone (resume-safe)
                group["lr"] = cfg.lr * min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
            batch_prompts = iteration_prompts(prompts, step, cfg.rollout_batch, cfg.seed)
            samples, scores, timing = generate_and_score(policy, tokenizer, scorer, batch_prompts, cfg, step)
            training = time.time()
            batch, record = score_tokens(policy, value_head, reference, samples, scores, cfg, kl_coef, pad)
            record.update(train_on_rollout(policy, value_head, optimizer, batch, cfg, step, documents, pad))
            record.update({"ppo/kl_coef": kl_coef, **timing, "time/training": time.time() - training})
            if cfg.adaptive_kl:
                kl_coef = update_kl_coef(kl_coef, record["monitor/kl"], cfg)
            if step % cfg.logging_steps == 0 or step == cfg.max_steps:
                run.log({"step": step, **record})
            bar.set_postfix(reward=f"{record['monitor/reward']:.3f}", kl=f"{record['monitor/kl']:.2f}")
            rules.check(record, step)  # before the checkpoint, so a tripped step is never saved as good
            if step % cfg.save_steps == 0 and run.main:
                save_checkpoint(run, step, policy, value_head, optimizer, tokenizer, kl_coef)
    except (StopRuleFired, NonFiniteLoss) as e:
        good = last_complete_checkpoint(run.checkpoints_dir, "state.json")
        message = f"{e}; last good checkpoint: {good if good else 'none (no checkpoint saved yet)'}"
        (run.pause if isinstance(e, StopRuleFired) else run.fail)(message)
        raise type(e)(message) from None

    if run.main:
        policy.save_pretrained(run.model_dir)
        tokenizer.save_pretrained(run.model_dir)
        run.write_samples([{"step": cfg.max_steps, "prompt": x.prompt, "completion": x.completion, "score": y}
                           for x, y in zip(samples, scores)])
    run.finish(iterations=cfg.max_steps, resumed_from=str(checkpoint) if checkpoint else None, prompts=len(prompts),
               final_kl_coef=kl_coef, final_reward=record.get("monitor/reward"), final_kl=record.get("monitor/kl"),
               train_seconds=round(time.time() - started, 2))
    return run.path
