"""DistributedDataParallel plumbing for the trainer, active only under ``torchrun``.

``torchrun --nproc-per-node N ...`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; then
:func:`setup` starts the process group (NCCL when training on CUDA, gloo on CPU), pins each rank
to its GPU, and the trainer wraps the model in DDP and shards batches with a
``DistributedSampler``. Without those variables everything here is a no-op for one process.
Only the main process (rank 0) writes files: check :func:`is_main_process`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    device: str
    rank: int = 0
    world_size: int = 1
    started_here: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """True for rank 0 of a torchrun job and for an ordinary single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def setup(device: str) -> DistContext:
    """Start (or join) the process group if launched by torchrun; return where this rank runs."""
    if world_size_from_env() <= 1 or not dist.is_available():
        return DistContext(device=device)
    started = False
    on_cuda = str(device).startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
        started = True
    if on_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    return DistContext(device=device, rank=dist.get_rank(), world_size=dist.get_world_size(), started_here=started)


def teardown() -> None:
    """End the process group at the end of a command (safe to call when none exists)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model, context: DistContext):
    if not context.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.device(context.device).index] if context.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model):
    return getattr(model, "module", model)


def sampler(dataset, context: DistContext, shuffle: bool, seed: int):
    if dataset is None or not context.active:
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=shuffle,
                              seed=seed, drop_last=False)


def _reduce(tensor: torch.Tensor, context: DistContext, op) -> torch.Tensor:
    if not context.active:
        return tensor
    on_device = tensor.to(context.device) if context.device.startswith("cuda") else tensor.clone()
    dist.all_reduce(on_device, op=op)
    return on_device.cpu()


def sum_over_ranks(tensor: torch.Tensor, context: DistContext) -> torch.Tensor:
    return _reduce(tensor, context, dist.ReduceOp.SUM if context.active else None)


def mean_over_ranks(total: float, count: int, context: DistContext) -> float:
    sums = sum_over_ranks(torch.tensor([total, float(count)], dtype=torch.float64), context)
    return float(sums[0] / max(float(sums[1]), 1.0))


def any_rank(flag: bool, context: DistContext) -> bool:
    """True if ``flag`` is true on any rank (so every rank stops together)."""
    if not context.active:
        return flag
    return bool(_reduce(torch.tensor([1.0 if flag else 0.0], dtype=torch.float64), context, dist.ReduceOp.MAX)[0] > 0)
