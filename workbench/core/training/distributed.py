"""Distributed setup for the training loop: which rank this process is (from torchrun's WORLD_SIZE, RANK
and LOCAL_RANK), its device, the process group, and the few collectives the loop needs (a sum over ranks,
a barrier). With one process every helper is a no-op, so the loop reads the same either way.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass
class Distributed:
    """This process's place in a torchrun group; `created` when this process opened the group (and so
    must close it)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    created: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def say_on_main(dist: Distributed, message: str) -> None:
    """A status line on stderr, once per run rather than once per rank."""
    if dist.main:
        print(message, file=sys.stderr, flush=True)


def setup_distributed(device_request: str | None) -> tuple[Distributed, str]:
    import torch

    from ..models import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    dist = Distributed(world=world, rank=int(os.environ.get("RANK", "0") or 0),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0") or 0))
    device = resolve_device(device_request)
    if device.startswith("cuda") and world > 1:
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(dist.local_rank)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend)
        dist.created = True
    return dist, device


def all_reduce(values: list[float], dist: Distributed, device: str) -> list[float]:
    """Each value summed over the ranks."""
    if dist.world == 1:
        return values
    import torch

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def barrier(dist: Distributed) -> None:
    if dist.world > 1:
        import torch

        torch.distributed.barrier()
