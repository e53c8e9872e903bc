"""Data-parallel context for the epoch loop (plain torch.distributed, no Ray import).

The Ray Train layer builds a `DistributedContext` whose ``wrap`` is Ray's ``prepare_model``; tests
build one over a gloo process group with torch's own DistributedDataParallel. The loop and the
methods only see this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

Wrap = Callable[[nn.Module, dict], nn.Module]


@dataclass
class DistributedContext:
    rank: int
    world_size: int
    wrap: Wrap
    # Collectives run on this device: NCCL only reduces CUDA tensors.
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_mean(self, value: float) -> float:
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def all_reduce_mean_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a device tensor, without reading it on the host."""
        out = tensor.clone()
        dist.all_reduce(out)
        return out / self.world_size

    def broadcast_module(self, module: nn.Module) -> None:
        with torch.no_grad():
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        dist.barrier()


def torch_ddp_wrap(device_ids: list[int] | None = None) -> Wrap:
    """Wrap with torch's DistributedDataParallel (what Ray's prepare_model does on one device each)."""

    def wrap(module: nn.Module, options: dict) -> nn.Module:
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, **options)

    return wrap


def context_from_process_group(wrap: Wrap | None = None) -> DistributedContext:
    return DistributedContext(dist.get_rank(), dist.get_world_size(), wrap or torch_ddp_wrap())
