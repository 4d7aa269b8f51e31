"""The torchrun world of a process: who it is among its peers, and the process group that joins them.

``torchrun --nproc-per-node N`` (also ``python -m torch.distributed.run``) starts N processes and tells each its
place through environment variables: ``RANK`` and ``WORLD_SIZE`` (global), ``LOCAL_RANK`` (on its machine), and
``MASTER_ADDR``/``MASTER_PORT`` (where they meet). A process started any other way is a world of one, and no
process group is created for it. ``visionzoo predict`` and ``visionzoo train`` read their world here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

BACKENDS = ("gloo", "nccl")


class WorldError(ValueError):
    """The environment describes a world that cannot be joined (its message says what is wrong and how to fix it)."""


@dataclass(frozen=True)
class World:
    """One process's place among ``world_size`` peers.

    Attributes:
        rank: the process's global rank, ``0 <= rank < world_size``.
        world_size: how many processes work together.
        local_rank: its rank on its own machine (which GPU it uses).
        backend: ``gloo`` (CPU) or ``nccl`` (CUDA) once chosen for a device, else None.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """The process that merges, logs and checkpoints (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process: a process group joins them."""
        return self.world_size > 1


def _integer(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise WorldError(f"{name}={value!r} is not an integer") from None


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes in ``env`` (default: ``os.environ``); a world of one without ``WORLD_SIZE``.

    Raises:
        WorldError: ``WORLD_SIZE`` without ``RANK`` (or the reverse), values that are not integers or out of
            range, or a world of several processes without ``MASTER_ADDR``/``MASTER_PORT``.
    """
    env = os.environ if env is None else env
    given = [name for name in ("RANK", "WORLD_SIZE") if name in env]
    if not given:
        return World()
    if len(given) == 1:
        missing = "RANK" if given[0] == "WORLD_SIZE" else "WORLD_SIZE"
        raise WorldError(
            f"{given[0]} is set but {missing} is not; launch with torchrun (which sets both), or unset {given[0]}"
        )
    rank, world_size = _integer(env, "RANK"), _integer(env, "WORLD_SIZE")
    if world_size < 1:
        raise WorldError(f"WORLD_SIZE must be at least 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise WorldError(f"RANK must be between 0 and WORLD_SIZE - 1 = {world_size - 1}, got {rank}")
    local_rank = _integer(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    if local_rank < 0:
        raise WorldError(f"LOCAL_RANK must be at least 0, got {local_rank}")
    if world_size > 1:
        absent = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
        if absent:
            raise WorldError(
                f"WORLD_SIZE={world_size} but {' and '.join(absent)} not set; launch with torchrun, which sets them"
            )
    return World(rank, world_size, local_rank)


def device_for(world: World, device: torch.device) -> torch.device:
    """The device this process uses when asked for ``device``: on CUDA with several processes, ``cuda:LOCAL_RANK``.

    Raises:
        WorldError: an explicit CUDA index with several processes, or fewer GPUs than local ranks.
    """
    import torch

    if device.type != "cuda" or not world.distributed:
        return device
    if device.index is not None:
        raise WorldError(f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK; pass --device cuda")
    if world.local_rank >= torch.cuda.device_count():
        raise WorldError(
            f"LOCAL_RANK={world.local_rank} but this machine has {torch.cuda.device_count()} CUDA devices; "
            "start at most one process per GPU (--nproc-per-node)"
        )
    return torch.device("cuda", world.local_rank)


def choose_backend(world: World, device: torch.device, backend: str | None = None) -> World:
    """``world`` with its backend: ``backend`` if given, else nccl for CUDA and gloo otherwise.

    Raises:
        WorldError: an unknown backend, or nccl for a device that is not CUDA.
    """
    from dataclasses import replace

    chosen = backend or ("nccl" if device.type == "cuda" else "gloo")
    if chosen not in BACKENDS:
        raise WorldError(f"unknown backend {chosen!r}; use {' or '.join(BACKENDS)}")
    if chosen == "nccl" and device.type != "cuda":
        raise WorldError(f"the nccl backend needs CUDA devices, not {device.type}; use gloo (or --device cuda)")
    return replace(world, backend=chosen)


def init(world: World, device: torch.device, timeout: timedelta = timedelta(hours=12)) -> None:
    """Join the process group of ``world`` (nothing for a world of one). ``timeout`` bounds every collective,
    a barrier included: it must cover the slowest process's share of the work."""
    import torch
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return
    if world.backend is None:
        raise WorldError("choose the backend first (choose_backend)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(world.backend, rank=world.rank, world_size=world.world_size, timeout=timeout)


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process of the group reaches this point (nothing without a group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard(items: Sequence[T], world: World) -> list[T]:
    """This process's share of ``items``: every ``world_size``-th item from its rank on. Every process computes
    the same split from the same sequence, and the shares are disjoint and cover it."""
    return list(items[world.rank :: world.world_size])


def sum_over_ranks(values: Sequence[int], device: torch.device) -> list[int]:
    """Element-wise sums of ``values`` over every process (``values`` itself without a group). Every process must
    call it: it returns once all have, so it also serves as a barrier."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    total = torch.tensor(list(values), dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return [int(v) for v in total.tolist()]
