"""The torchrun world of this process: who it is, how to join the others, and its share of the work.

``torchrun`` (``python -m torch.distributed.run``) starts one process per worker and tells each, through
environment variables, its ``RANK`` (0 ... ``WORLD_SIZE``-1 over all machines), its ``LOCAL_RANK`` (its index on
its own machine, which picks its GPU) and where the rendezvous is (``MASTER_ADDR``/``MASTER_PORT``). A plain
``python`` process has none of them and is a world of one. Training and ``visionzoo predict`` read the world here
once, so a misconfigured launch fails with one message that says what is wrong, before any work starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

__all__ = ["World", "WorldError", "barrier", "init_process_group", "shard", "shutdown", "world_from_env"]

T = TypeVar("T")

_WORLD_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_RENDEZVOUS_VARS = ("MASTER_ADDR", "MASTER_PORT")


class WorldError(RuntimeError):
    """The environment describes an impossible or incomplete torchrun world."""


@dataclass(frozen=True)
class World:
    """This process's place among the workers of one run.

    Attributes:
        rank: global index of this process, 0 ... ``world_size`` - 1.
        world_size: number of processes over all machines.
        local_rank: index of this process on its own machine (its CUDA device, when on CUDA).
        backend: ``"gloo"`` (CPU) or ``"nccl"`` (CUDA); only used when ``world_size`` > 1.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "gloo"

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs, writes checkpoints and merges results."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when there is more than one process, so a process group is needed."""
        return self.world_size > 1

    def device(self, requested: str | torch.device = "cpu") -> torch.device:
        """The device this rank works on: ``cuda`` becomes ``cuda:<local_rank>``; other devices stay as given."""
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device


def _int_var(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise WorldError(f"{name}={value!r} is not an integer (set by torchrun; check the launch command)") from None


def world_from_env(device: str | torch.device = "cpu", env: Mapping[str, str] | None = None) -> World:
    """Read the world torchrun describes in ``env`` (default ``os.environ``) for work on ``device``.

    Without torchrun's variables this is a world of one. The backend is ``nccl`` for CUDA devices and ``gloo``
    otherwise.

    Raises:
        WorldError: only some of RANK / WORLD_SIZE / LOCAL_RANK are set, they are not integers, the rank is out
            of range, the rendezvous address is missing in a world of several, or a CUDA run has no GPU for its
            local rank.
    """
    env = os.environ if env is None else env
    present = [name for name in _WORLD_VARS if name in env]
    device = torch.device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not present:
        return World(backend=backend)
    missing = [name for name in _WORLD_VARS if name not in env]
    if missing:
        raise WorldError(
            f"{', '.join(present)} set but {', '.join(missing)} missing: launch with torchrun "
            "(python -m torch.distributed.run), which sets all of RANK, WORLD_SIZE and LOCAL_RANK, or unset them"
        )
    rank, size, local = (_int_var(env, name) for name in _WORLD_VARS)
    if size < 1 or not 0 <= rank < size or local < 0:
        raise WorldError(f"impossible world: RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local}")
    world = World(rank=rank, world_size=size, local_rank=local, backend=backend)
    if world.distributed:
        unset = [name for name in _RENDEZVOUS_VARS if not env.get(name)]
        if unset:
            raise WorldError(f"WORLD_SIZE={size} but {', '.join(unset)} not set: torchrun sets them; so must you")
    if device.type == "cuda":
        available = torch.cuda.device_count()
        if local >= available:
            raise WorldError(
                f"LOCAL_RANK={local} needs GPU {local}, but this machine has {available} CUDA device(s): start at "
                "most one process per GPU (--nproc-per-node), or run on CPU (gloo)"
            )
    return world


def init_process_group(world: World, timeout_s: float = 1800.0) -> None:
    """Join the other processes of ``world`` (nothing to do in a world of one).

    On CUDA this also makes ``cuda:<local_rank>`` the current device, so that NCCL uses one GPU per process.
    """
    if not world.distributed:
        return
    import datetime

    import torch.distributed as dist

    if dist.is_initialized():
        return
    if world.backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(
        backend=world.backend,
        rank=world.rank,
        world_size=world.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def barrier() -> None:
    """Wait until every process of the group gets here (a no-op without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T], world: World) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th item from position ``rank``.

    The shares of all ranks together hold each item exactly once, and differ in length by at most one.
    """
    return list(items[world.rank :: world.world_size])
