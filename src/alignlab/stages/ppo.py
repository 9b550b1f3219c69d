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

import contextlib
import json
import math
import os
import random
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..config import PPOConfig
from ..errors import InputError
from ..monitors import StopRuleFired, StopRules, step_monitors
from ..prompts import stop_ids
from ..runs import Run, read_metrics
from ..sampling import sample
from ..scoring import checked_scores, stage_scorer
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
    if isinstance(value_head, Critic):
        values = value_head(batch)
    elif value_head is not None:
        hidden = out.hidden_states[-1]
        values = value_head(hidden.gather(1, where.expand(-1, -1, hidden.shape[-1])).float()).squeeze(-1)
    return logp, entropy, values


class Critic(torch.nn.Module):
    """A value model apart from the policy, initialised from a reward model (InstructGPT): the reward
    model's trunk, and its one-logit head read at every completion position instead of the last."""

    def __init__(self, reward_model):
        super().__init__()
        self.model = reward_model
        self.head = next((getattr(reward_model, name) for name in ("score", "classifier")
                          if isinstance(getattr(reward_model, name, None), torch.nn.Linear)), None)
        if self.head is None or self.head.out_features != 1:
            raise InputError("critic: the model has no one-logit score head to start a critic from")

    def forward(self, batch: dict) -> torch.Tensor:
        hidden = self.model.base_model(input_ids=batch["ids"], attention_mask=batch["attn"]).last_hidden_state
        hidden = hidden.gather(1, batch["where"][..., None].expand(-1, -1, hidden.shape[-1]))
        return self.head(hidden).float().squeeze(-1)


def make_critic(cfg: PPOConfig, policy, device):
    """The value function: a zero-initialised head on the policy's trunk ("shared"), or a separate
    critic from the reward model (`critic: reward`) or from a named reward-model folder."""
    from transformers import AutoModelForSequenceClassification

    from ..models import hidden_size, load_pretrained

    if cfg.critic == "shared":
        head = torch.nn.Linear(hidden_size(policy), 1).to(device)
        torch.nn.init.zeros_(head.weight)  # V = 0 at first: no made-up baseline before any return is seen
        torch.nn.init.zeros_(head.bias)
        return head
    spec = cfg.reward if cfg.critic == "reward" else cfg.critic  # the config checked it names a folder
    model = load_pretrained(AutoModelForSequenceClassification, spec, "critic", cfg.trust_remote_code,
                            torch.float32, device)
    if model.get_input_embeddings().weight.shape[0] != policy.get_input_embeddings().weight.shape[0]:
        raise InputError("critic: its vocabulary differs from the policy's; it must read the same tokens")
    return Critic(model)


@torch.no_grad()
def forward_in_chunks(model, batch: dict, temperature: float, size: int, value_head=None):
    parts = [forward(model, {k: v[i:i + size] for k, v in batch.items()}, temperature, value_head)
             for i in range(0, len(batch["ids"]), size)]
    return [torch.cat(p) if p[0] is not None else None for p in zip(*parts)]


# ----- the math -----------------------------------------------------------------------------
def masked_mean(x: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over the real tokens / `tokens` (default: their count here). Under several processes `tokens`
    is every process's count, so the per-process results add up to the global mean."""
    return (x * mask).sum() / (mask.sum() if tokens is None else tokens).clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Unit variance over the real tokens (of every process), and zero mean unless shift_mean is False."""
    tokens = distributed.total(mask.sum())
    mean = distributed.total((x * mask).sum()) / tokens.clamp(min=1)
    var = distributed.total(((x - mean) ** 2 * mask).sum()) / tokens.clamp(min=1)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    return (whitened if shift_mean else whitened + mean) * mask


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


def ppo_losses(logp: torch.Tensor, values: torch.Tensor, old: dict, cfg: PPOConfig, tokens=None):
    """Clipped surrogate policy loss and clipped value loss (means over real tokens, or sums over this
    process's tokens / every process's `tokens`), with stats."""
    mask, adv, returns = old["mask"], old["advantages"], old["returns"]
    logratio = logp - old["logp"]
    ratio = logratio.exp()
    clipped = ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange)
    policy_loss = masked_mean(torch.max(-adv * ratio, -adv * clipped), mask, tokens)
    values_clipped = old["values"] + (values - old["values"]).clamp(-cfg.cliprange_value, cfg.cliprange_value)
    value_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (values_clipped - returns) ** 2), mask, tokens)
    stats = {"ppo/policy_loss": policy_loss.item(), "ppo/value_loss": value_loss.item(),
             "ppo/clipfrac": masked_mean(((ratio - 1).abs() > cfg.cliprange).float(), mask, tokens).item(),
             "ppo/approx_kl": masked_mean(0.5 * logratio.detach() ** 2, mask, tokens).item()}
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
def generate_and_score(policy, tokenizer, scorer, prompts: list, cfg: PPOConfig, step: int, precision):
    """One sampled completion per prompt and its score, with the seconds each took. Seeded by (seed, step,
    rank): each process samples its own share of the prompts its own way."""
    started = time.time()
    with precision:
        samples = sample(policy, tokenizer, prompts, cfg.max_new_tokens, cfg.temperature,
                         seed=cfg.seed * 100_003 + step + 1_000_003 * distributed.rank_and_count()[0])
    generated = time.time()
    scores = checked_scores(scorer, prompts, [s.completion for s in samples])
    if cfg.missing_eos_penalty is not None:  # a completion cut off by max_new_tokens is not a finished answer
        stops = set(stop_ids(policy, tokenizer))
        scores = [x - cfg.missing_eos_penalty * (s.completion_ids[-1:] == [] or s.completion_ids[-1] not in stops)
                  for x, s in zip(scores, samples)]
    return samples, scores, {"time/generation": generated - started, "time/scoring": time.time() - generated}


@torch.no_grad()
def score_tokens(policy, value_head, reference, samples, scores: list[float], cfg: PPOConfig, kl_coef: float,
                 pad: int) -> tuple[dict, dict]:
    """The per-token tensors of one PPO update (old log-probs, values, advantages, returns) and the
    batch's monitors."""
    batch = pad_rollout(samples, pad, next(policy.parameters()).device)
    logp, entropy, values = forward_in_chunks(policy, batch, cfg.temperature, cfg.mini_batch, value_head)
    # no reference model: the reference is the policy with its LoRA adapter switched off
    with policy.disable_adapter() if reference is None else contextlib.nullcontext():
        ref_logp, _, _ = forward_in_chunks(reference or policy, batch, cfg.temperature, cfg.mini_batch)
    mask = batch["mask"]
    rewards = token_rewards(torch.tensor(scores, device=mask.device), logp, ref_logp, mask, kl_coef)
    if cfg.whiten_rewards:
        rewards = whiten(rewards, mask, shift_mean=False)
    advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
    batch.update(logp=logp, values=values, returns=returns, advantages=whiten(advantages, mask))
    kl = ((logp - ref_logp) * mask).sum(1).tolist()  # nats per sequence, as the eval stage measures it
    # the monitors (and so the adaptive KL and the stop rules) see every process's rollout alike
    entropy = (distributed.total((entropy * mask).sum()) / distributed.total(mask.sum()).clamp(min=1)).item()
    monitors = step_monitors(distributed.gather(list(scores)), distributed.gather([s.completion for s in samples]),
                             distributed.gather([len(s.completion_ids) for s in samples]),
                             kl=distributed.gather(kl), entropy=entropy)
    return batch, monitors


def train_on_rollout(policy, value_head, optimizer, batch: dict, cfg: PPOConfig, step: int,
                     documents: list[list[int]] | None, pad: int) -> dict:
    """`ppo_epochs` shuffled passes over the rollout in mini-batches; mean stats of all updates.

    Under several processes each holds its share of the rollout and of every mini-batch
    (mini_batch / processes rows): losses are sums over its tokens divided by every process's token
    count, gradients are summed over the processes before clipping, so every process takes the same
    step, the one a single process would take on the whole mini-batch."""
    rng = random.Random(f"{cfg.seed}-minibatches-{step}")
    if cfg.gradient_checkpointing:
        policy.train()  # sampling left it in eval mode; checkpointing needs train mode (dropout is 0)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    count = distributed.rank_and_count()[1]
    size = cfg.mini_batch // count
    stats = defaultdict(list)
    for _ in range(cfg.ppo_epochs):
        order = list(range(len(batch["ids"])))
        rng.shuffle(order)
        for start in range(0, len(order), size):
            rows = torch.tensor(order[start:start + size], device=batch["ids"].device)
            mini = {k: v[rows] for k, v in batch.items()}
            logp, _, values = forward(policy, mini, cfg.temperature, value_head)
            loss, update = ppo_losses(logp, values, mini, cfg, tokens=distributed.total(mini["mask"].sum()))
            if documents and cfg.ptx_coef > 0:
                lm_loss = ptx_loss(policy, documents, rng, size, pad) / count  # the mean over the processes
                loss = loss + cfg.ptx_coef * lm_loss
                update["ppo/ptx_loss"] = lm_loss.item()
            # before the update (the weights are still the good ones), and on every process alike
            if distributed.total(torch.tensor(0.0 if math.isfinite(loss.item()) else 1.0)).item() > 0:
                raise NonFiniteLoss(f"non-finite loss ({loss.item()}) at iteration {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distributed.sum_gradients(params)
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            for k, v in update.items():
                stats[k].append(v)
    # each process's stats are its share of the global ones: their sum over the processes
    return {k: distributed.total(torch.tensor(sum(v) / len(v), dtype=torch.float64)).item() for k, v in stats.items()}


# ----- checkpoints --------------------------------------------------------------------------
def save_checkpoint(run: Run, step: int, policy, value_head, optimizer, tokenizer, kl_coef: float) -> Path:
    """A loadable model folder plus what resuming needs; state.json is written last, so a
    checkpoint whose state.json parses is complete."""
    from safetensors.torch import save_file, save_model

    path = run.checkpoints_dir / f"checkpoint-{step}"
    policy.save_pretrained(path)
    tokenizer.save_pretrained(path)
    save_model(value_head, str(path / "value_head.safetensors"))  # a head, or a whole critic (shared tensors ok)
    tensors = {f"{i}.{name}": t for i, state in optimizer.state_dict()["state"].items() for name, t in state.items()}
    save_file({**tensors, "rng.torch": torch.get_rng_state()}, str(path / "optimizer.safetensors"))
    state = {"step": step, "kl_coef": kl_coef, "python_rng": random.getstate()}
    (path / "state.json.tmp").write_text(json.dumps(state))
    os.replace(path / "state.json.tmp", path / "state.json")
    return path


def load_checkpoint(path: Path, value_head, optimizer) -> dict:
    """Restore value head, AdamW moments and RNG states; the policy is loaded from `path` itself."""
    from safetensors.torch import load_file
    from safetensors.torch import load_model as load_weights

    load_weights(value_head, str(path / "value_head.safetensors"))
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
def load_policy(cfg: PPOConfig, device, checkpoint: Path | None):
    """The policy to train, on `device` with fp32 weights: the model (or the checkpoint to resume), or with
    `lora` the model (fp32, or a 4-bit base) wrapped in a new LoRA adapter (or the checkpoint's adapter)."""
    from ..models import load_model, on_device

    if cfg.lora is None:
        return load_model(str(checkpoint or cfg.model), cfg.trust_remote_code, device)
    from peft import PeftModel, get_peft_model

    from ..training import load_trainable, lora_config

    base = on_device(load_trainable(cfg), device)
    if checkpoint:
        return PeftModel.from_pretrained(base, checkpoint, is_trainable=True)
    return get_peft_model(base, lora_config(cfg))


def run(cfg: PPOConfig) -> Path:
    from transformers import set_seed

    from ..models import autocast, compute_of, load_model, load_tokenizer
    from ..training import merged

    prompts = ppo_prompts(cfg)
    count = distributed.rank_and_count()[1]
    if cfg.rollout_batch % count or cfg.mini_batch % count:
        raise InputError(f"rollout_batch ({cfg.rollout_batch}) and mini_batch ({cfg.mini_batch}) must be multiples "
                         f"of the number of processes ({count})")
    scorer = stage_scorer(cfg.reward, cfg)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    documents = ptx_documents(cfg, tokenizer) if cfg.ptx_coef > 0 else None
    device, dtype = compute_of(cfg)
    # the policy trains with fp32 weights (under autocast in a low dtype); the frozen reference only
    # needs the compute dtype, and with LoRA it is the policy with its adapter off (None here)
    reference = None
    if cfg.lora is None or cfg.reference:
        reference = load_model(cfg.reference or cfg.model, cfg.trust_remote_code, device, dtype)
        reference.requires_grad_(False).eval()
    run = Run.start(cfg.out, cfg.model_dump(), cfg.resume)
    checkpoint = last_complete_checkpoint(run.checkpoints_dir, "state.json") if cfg.resume else None
    policy = load_policy(cfg, device, checkpoint)
    if reference is not None and \
            reference.get_input_embeddings().weight.shape[0] != policy.get_input_embeddings().weight.shape[0]:
        raise InputError("reference: its vocabulary differs from the model's; the KL penalty needs a shared tokenizer")
    # eval mode throughout: with dropout on, the ratio would not start at 1 and the KL would be noise
    policy.eval()
    if cfg.gradient_checkpointing:
        # transformers recomputes activations only in train mode, so the updates run in train mode
        # with every dropout set to 0 (same outputs as eval mode)
        policy.activation_checkpointing_enable()
        if cfg.lora:
            policy.enable_input_require_grads()  # frozen embeddings: let gradients reach the checkpointed layers
        for module in policy.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    set_seed(cfg.seed)  # the value head's init depends on this run's seed only, not on what ran before
    value_head = make_critic(cfg, policy, device)
    trained = [p for p in policy.parameters() if p.requires_grad]  # all of them, or a LoRA adapter's
    optimizer = torch.optim.AdamW(trained + list(value_head.parameters()),
                                  lr=cfg.lr, weight_decay=cfg.weight_decay)
    kl_coef, first = cfg.kl_coef, 1
    if checkpoint:
        state = load_checkpoint(checkpoint, value_head, optimizer)
        kl_coef, first = state["kl_coef"], state["step"] + 1
    drop_metrics_after(run, first - 1)

    rules, pad = StopRules(cfg.monitor), tokenizer.pad_token_id
    rank, count = distributed.rank_and_count()
    started, record, samples, scores = time.time(), {}, [], []
    try:
        bar = tqdm(range(first, cfg.max_steps + 1), desc="ppo", initial=first - 1, total=cfg.max_steps)
        for step in bar:
            for group in optimizer.param_groups:  # linear warmup, from the step alone (resume-safe)
                group["lr"] = cfg.lr * min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
            # this process's share of the iteration's prompts
            batch_prompts = iteration_prompts(prompts, step, cfg.rollout_batch, cfg.seed)[rank::count]
            samples, scores, timing = generate_and_score(policy, tokenizer, scorer, batch_prompts, cfg, step,
                                                         autocast(device, dtype))
            training = time.time()
            with autocast(device, dtype):
                batch, record = score_tokens(policy, value_head, reference, samples, scores, cfg, kl_coef, pad)
                record.update(train_on_rollout(policy, value_head, optimizer, batch, cfg, step, documents, pad))
            record.update({"ppo/kl_coef": kl_coef, **timing, "time/training": time.time() - training})
            if cfg.adaptive_kl:
                kl_coef = update_kl_coef(kl_coef, record["monitor/kl"], cfg)
            if step % cfg.logging_steps == 0 or step == cfg.max_steps:
                run.log({"step": step, **record})
            bar.set_postfix(reward=f"{record['monitor/reward']:.3f}", kl=f"{record['monitor/kl']:.2f}")
            # before the checkpoint, so a tripped step is never saved as good; every process has the same
            # record (the monitors are global), so every process stops at the same step
            rules.check(record, step)
            if step % cfg.save_steps == 0:
                if run.main:  # every process holds the same weights: the main process writes them
                    save_checkpoint(run, step, policy, value_head, optimizer, tokenizer, kl_coef)
                distributed.barrier()
    except (StopRuleFired, NonFiniteLoss) as e:
        good = last_complete_checkpoint(run.checkpoints_dir, "state.json")
        message = f"{e}; last good checkpoint: {good if good else 'none (no checkpoint saved yet)'}"
        (run.pause if isinstance(e, StopRuleFired) else run.fail)(message)
        raise type(e)(message) from None

    if run.main:
        merged(policy, cfg).save_pretrained(run.model_dir)
        tokenizer.save_pretrained(run.model_dir)
        run.write_samples([{"step": cfg.max_steps, "prompt": x.prompt, "completion": x.completion, "score": y}
                           for x, y in zip(samples, scores)])
    run.finish(iterations=cfg.max_steps, resumed_from=str(checkpoint) if checkpoint else None, prompts=len(prompts),
               final_kl_coef=kl_coef, final_reward=record.get("monitor/reward"), final_kl=record.get("monitor/kl"),
               train_seconds=round(time.time() - started, 2))
    return run.path
