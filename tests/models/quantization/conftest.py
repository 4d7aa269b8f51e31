"""Quantized builders set ``torch.backends.quantized.engine``; every test here gets it back as it found it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_quantized_engine() -> Iterator[None]:
    previous = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = previous
