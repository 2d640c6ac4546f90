"""Data parallelism with torch.distributed, for `torchrun --nproc_per_node=N multitask_classifier.py`.

This does what DistributedDataParallel does — broadcast rank 0's weights at start, all-reduce
(average) gradients every step — with the collectives called directly: DDP's reducer expects one
forward per backward, while FGSM and SMART run several forwards and PCGrad several backwards per
step. Averaging once after the step's backward composes with all of them. Every rank draws the
same task sequence and the same global batches (shared seed) and keeps its shard of each batch.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup(device: torch.device) -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def broadcast_parameters(model: torch.nn.Module):
    """Start every rank from rank 0's weights and buffers."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t.data, src=0)


def average_gradients(model: torch.nn.Module):
    """Mean of every gradient over ranks, in one flat all-reduce."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def cleanup():
    if dist.is_initialized():
        dist.destroy_process_group()


def assert_in_sync(model: torch.nn.Module):
    """Raise if the ranks' weights have drifted apart (they must stay bitwise equal)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    with torch.no_grad():
        local = torch.stack([torch.stack([p.double().sum(), p.double().square().sum()])
                             for p in model.parameters()]).flatten()
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    if not all(torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError("data-parallel ranks hold different weights")


def mean_over_ranks(value: torch.Tensor) -> float:
    """A scalar averaged over ranks (each rank's loss covers only its shard of the batch)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value.item()
