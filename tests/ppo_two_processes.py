"""One PPO update on a fixed synthetic rollout, run by tests/test_ppo.py as one process and as two
(torchrun): each process takes every count-th row; it writes its weights, gradients and stats to OUT.

    python tests/ppo_two_processes.py OUT                                   # one process
    python -m torch.distributed.run --nproc_per_node 2 tests/ppo_two_processes.py OUT
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from alignlab import distributed
from alignlab.config import PPOConfig
from alignlab.sampling import Sample
from alignlab.stages import ppo

out = Path(sys.argv[1])
rank, count = distributed.rank_and_count()
torch.manual_seed(0)
policy = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, pad_token_id=0)).eval()
reference = LlamaForCausalLM(policy.config).eval()
reference.load_state_dict(policy.state_dict())
for p in reference.parameters():
    p.data += 0.01 * torch.randn_like(p)  # a reference a little away from the policy: KL and its penalty non-zero
cfg = PPOConfig(out="unused", model="unused", rollout_batch=16, mini_batch=16, ppo_epochs=1, lr=1e-3)
value_head = ppo.make_critic(cfg, policy, torch.device("cpu"))
torch.nn.init.normal_(value_head.weight, std=0.1)  # non-zero values, so the value loss has a gradient too
optimizer = torch.optim.AdamW(list(policy.parameters()) + list(value_head.parameters()), lr=cfg.lr)

rows = torch.Generator().manual_seed(1)
samples, scores = [], []
for i in range(cfg.rollout_batch):  # ragged prompts and completions, the same on every process
    n_prompt, n_completion = 2 + i % 3, 1 + (i * 7) % 6
    ids = torch.randint(1, 64, (n_prompt + n_completion,), generator=rows).tolist()
    samples.append(Sample("p", "c", ids[:n_prompt], ids[n_prompt:]))
    scores.append(float(torch.randn(1, generator=rows)))
mine = list(range(rank, cfg.rollout_batch, count))
batch, record = ppo.score_tokens(policy, value_head, reference, [samples[i] for i in mine], [scores[i] for i in mine],
                                 cfg, kl_coef=0.05, pad=0)
record.update(ppo.train_on_rollout(policy, value_head, optimizer, batch, cfg, step=1, documents=None, pad=0))
named = {**{f"policy.{k}": p for k, p in policy.named_parameters()},
         **{f"value.{k}": p for k, p in value_head.named_parameters()}}
save_file({k: p.detach().contiguous() for k, p in named.items()}, str(out / f"weights-{count}-{rank}.safetensors"))
save_file({k: p.grad.contiguous() for k, p in named.items()}, str(out / f"grads-{count}-{rank}.safetensors"))
(out / f"record-{count}-{rank}.json").write_text(json.dumps(record))
distributed.close()
