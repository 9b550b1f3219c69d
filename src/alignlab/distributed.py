"""What several processes share, under `accelerate launch` or torchrun: ranks, gathers, sums, barriers.

With one process every call is a no-op (or returns its input), so a stage is written once. With
several, the first call sets up torch.distributed through accelerate (gloo on CPU, NCCL on GPUs)
from the launcher's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...).
"""
from __future__ import annotations

import os


def rank_and_count() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside a launcher)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _group() -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        from accelerate import PartialState

        PartialState()  # reads the launcher's environment and initialises the process group


def gather(rows: list) -> list:
    """Every process's rows, concatenated in rank order, on every process (a collective call)."""
    rank, count = rank_and_count()
    if count == 1:
        return rows
    import torch.distributed as dist

    _group()
    everyone = [None] * count
    dist.all_gather_object(everyone, rows)
    return [row for part in everyone for row in part]


def barrier() -> None:
    """Wait for every process: e.g. after the main process wrote a file the others are about to read."""
    if rank_and_count()[1] > 1:
        import torch.distributed as dist

        _group()
        dist.barrier()


def total(tensor):
    """The sum of `tensor` over every process (a new tensor; the input is left as it is)."""
    if rank_and_count()[1] == 1:
        return tensor
    import torch.distributed as dist

    _group()
    summed = tensor.detach().clone()
    dist.all_reduce(summed)
    return summed


def sum_gradients(params) -> None:
    """Replace each parameter's gradient by its sum over every process, in one flat all-reduce.
    Losses normalised by a global count (tokens of every process) then give the global gradient."""
    if rank_and_count()[1] == 1:
        return
    import torch
    import torch.distributed as dist

    _group()
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:  # a parameter this rank's loss did not reach still takes part in the sum
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def close() -> None:
    """Leave the process group, if one was set up (gloo's threads would otherwise abort the process at exit)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
