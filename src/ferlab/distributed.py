"""Training one model on several processes: ``torchrun --nproc-per-node N -m ferlab train ...``.

torchrun starts N copies of ferlab with RANK, WORLD_SIZE and LOCAL_RANK set. Each joins one
process group (NCCL on GPUs, Gloo on CPUs) and trains a DistributedDataParallel copy of the model
on its shard of the training faces (face i goes to rank i mod N), kept on its device, with
``batch_size / N`` faces per step, so that a step sees the same global batch as one process would.
Gradients are averaged across ranks, so the copies stay identical; every rank evaluates the same
PublicTest faces and takes the same decisions (early stop, plateau), and rank 0 alone writes the
run folder and prints. Without torchrun nothing here does anything.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

from ferlab.errors import FerlabError


@dataclass(frozen=True)
class World:
    rank: int = 0         # this process, 0..size-1
    size: int = 1         # processes training the model
    local_rank: int = 0   # this process on its machine: its GPU

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0


def launched() -> bool:
    """Started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: torch.device) -> World:
    """The process group this process belongs to, joined once (NCCL for CUDA, Gloo otherwise);
    ``World()`` when not launched by torchrun."""
    if not launched():
        return World()
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    """Not a torchrun rank other than 0 (answers before any process group exists)."""
    return os.environ.get("RANK", "0") == "0"


def quiet_unless_main() -> None:
    """Under torchrun, ranks other than 0 print nothing to stdout: one log, rank 0's."""
    if not is_main_process():
        sys.stdout = open(os.devnull, "w")


def rank_device(device: torch.device, world: World) -> torch.device:
    """Each rank's own GPU (LOCAL_RANK) when training on CUDA; the CPU stays the CPU."""
    return torch.device("cuda", world.local_rank) if device.type == "cuda" and world.size > 1 else device


def per_rank_batch(batch_size: int, world: World, train_faces: int) -> int:
    """Faces per step on each rank, so that all ranks together take ``batch_size`` faces a step."""
    per_rank = batch_size // world.size
    if world.size > 1 and (batch_size % world.size or per_rank < 2):
        raise FerlabError(f"--batch-size {batch_size} cannot be split over {world.size} processes: it must be a "
                          f"multiple of {world.size} with at least 2 faces per process (batch norm needs 2)")
    if world.size > 1 and train_faces // world.size < per_rank:
        raise FerlabError(f"{train_faces} training faces are too few for {world.size} processes of {per_rank} "
                          "faces a step")
    return per_rank


def shared(value, world: World):
    """Rank 0's ``value`` on every rank (e.g. the run folder it created)."""
    if world.size == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(values: list[float], world: World, device: torch.device) -> list[float]:
    """The mean of each value over the ranks (each rank's epoch loss and accuracy)."""
    if world.size == 1:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)  # NCCL reduces only GPU tensors
    dist.all_reduce(tensor)
    return (tensor / world.size).tolist()


def barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()
