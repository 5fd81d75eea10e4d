"""Data parallelism on torch.distributed (launch with `torchrun --nproc_per_node N -m spd ...`).

Every rank runs the same SPD schedule: the layer draws are a function of (seed, step) and the
masks of identical weights, so both agree across ranks with no communication. Each global batch
is split between the ranks (rank r takes examples r, r + N, ...); gradients are averaged by
DistributedDataParallel, which also copes with the student layers a step did not draw
(`find_unused_parameters`). Only rank 0 evaluates and writes the run folder. Without
`WORLD_SIZE` > 1 in the environment everything here is a no-op.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    owns_group: bool = False  # this process initialised the group (and tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: dict) -> dict:
        """This rank's share of a global batch."""
        if self.size == 1:
            return batch
        return {k: v[self.rank::self.size] for k, v in batch.items()}

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a small tensor (loss terms, stop flags)."""
        if self.size == 1:
            return values
        values = values.clone()
        dist.all_reduce(values)
        return values / self.size

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if self.size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            model, device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None,
            find_unused_parameters=True, broadcast_buffers=False)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


def setup(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment (gloo on the CPU, nccl on
    CUDA), or a single-process world."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), owns)
