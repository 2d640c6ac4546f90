"""Data parallelism with torch.distributed, for `torchrun --nproc_per_node=N multitask_classifier.py`.

Every rank draws the same task sequence and the same global batches (shared seed), keeps its
shard of each batch, and starts from rank 0's weights. Gradients are averaged over ranks in one of
two ways:

- the plain path: torch's DistributedDataParallel (`data_parallel`), whose reducer all-reduces
  the gradients in buckets while the backward is still running;
- --fgsm, --smart, --pcgrad (`HAND_WRITTEN`): one flat all-reduce after the step's backward
  (`average_gradients`). DDP's reducer expects one forward per backward, while FGSM and SMART run
  several forwards and PCGrad several backwards per step; averaging once after the step's
  backward composes with all of them.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# Options that run several forwards or backwards per step: they take the hand-written all-reduce.
HAND_WRITTEN = ("fgsm", "smart", "pcgrad")


def setup(device: torch.device) -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def main_process() -> bool:
    """Rank 0 of a torchrun job, or the one process: the one that writes files. (Known before the
    process group exists, from torchrun's environment.)"""
    return os.environ.get("RANK", "0") == "0"


def local_device(use_gpu: bool) -> torch.device:
    """This process's device: the GPU of its local rank (torchrun sets LOCAL_RANK per node)."""
    if not use_gpu:
        return torch.device("cpu")
    if "LOCAL_RANK" not in os.environ:  # one process: the current device, as torch chooses it
        return torch.device("cuda")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(device)  # NCCL and the default CUDA stream follow the current device
    return device


def hand_written_reasons(args) -> list[str]:
    """The options of this run that rule DDP out (see the module docstring); [] on the plain path."""
    return [f"--{name}" for name in HAND_WRITTEN if getattr(args, name, False)]


def data_parallel(module: nn.Module, device: torch.device, find_unused: bool) -> nn.Module:
    """`module` in DistributedDataParallel under torchrun; `module` itself in a single process.
    find_unused: the trainable parameters that get no gradient change from step to step (DDP then
    looks for them after every forward); otherwise the graph is declared static."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused, static_graph=not find_unused)


def broadcast_parameters(model: torch.nn.Module):
    """Start every rank from rank 0's weights and buffers."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t.data, src=0)


def average_gradients(model: torch.nn.Module):
    """Mean of every gradient over ranks, in one flat all-reduce (the HAND_WRITTEN options)."""
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
