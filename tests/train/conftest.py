"""One intra-op thread while training here: on a busy two-core machine, two spinning OpenMP threads per
process make a small model's steps ten times slower (the torchrun tests' workers get one each from torchrun)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
