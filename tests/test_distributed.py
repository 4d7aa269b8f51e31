"""The torchrun world read from the environment: a world of one by default, clear errors when it is misconfigured."""

from __future__ import annotations

import pytest
import torch

from visionzoo.distributed import World, WorldError, choose_backend, device_for, shard, sum_over_ranks, world_from_env

_TWO = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_plain_process_is_a_world_of_one() -> None:
    world = world_from_env(env={})
    assert world == World() and world.is_main and not world.distributed


def test_torchrun_variables_are_read() -> None:
    world = world_from_env(env=_TWO)
    assert (world.rank, world.world_size, world.local_rank) == (1, 2, 1)
    assert not world.is_main and world.distributed
    assert choose_backend(world, torch.device("cpu")).backend == "gloo"
    assert device_for(world, torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not"),
        ({**_TWO, "RANK": "x"}, "RANK='x' is not an integer"),
        ({**_TWO, "RANK": "2"}, "RANK must be between 0 and WORLD_SIZE - 1 = 1"),
        ({k: v for k, v in _TWO.items() if k != "MASTER_ADDR"}, "MASTER_ADDR not set"),
    ],
)
def test_misconfigured_world_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(WorldError, match=message):
        world_from_env(env=env)


@pytest.mark.skipif(torch.cuda.device_count() > 1, reason="needs a machine with at most one GPU")
def test_cuda_rank_without_its_gpu_is_refused() -> None:
    with pytest.raises(WorldError, match="LOCAL_RANK=1 but this machine has"):
        device_for(world_from_env(env=_TWO), torch.device("cuda"))


def test_nccl_without_cuda_is_refused() -> None:
    with pytest.raises(WorldError, match="nccl backend needs CUDA"):
        choose_backend(world_from_env(env=_TWO), torch.device("cpu"), "nccl")


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_shards_cover_every_item_once(size: int) -> None:
    items = list(range(11))
    shares = [shard(items, World(rank=r, world_size=size)) for r in range(size)]
    assert sorted(x for share in shares for x in share) == items
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_device_backend_and_sums_are_checked() -> None:
    two = world_from_env(env=_TWO)
    with pytest.raises(WorldError, match="each process uses cuda:LOCAL_RANK; pass --device cuda"):
        device_for(two, torch.device("cuda", 1))
    with pytest.raises(WorldError, match="unknown backend 'mpi'"):
        choose_backend(two, torch.device("cpu"), "mpi")
    with pytest.raises(WorldError, match="LOCAL_RANK must be at least 0"):
        world_from_env(env={**_TWO, "LOCAL_RANK": "-1"})
    assert sum_over_ranks([3, 1], torch.device("cpu")) == [3, 1]  # no process group: the values themselves
