"""Fixtures shared by the whole suite.

Every test runs with its own empty weights cache and no mirror settings, so nothing touches the user's
real ``~/.cache/torch`` and no test depends on another's downloads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests._cli_zoo import TinyZoo, install_zoo
from tests._http import FileServer

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one intra-op thread each avoids oversubscription.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_weights_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    torch_home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("VISIONZOO_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("VISIONZOO_WEIGHTS_URL", raising=False)
    return torch_home / "hub" / "checkpoints"


@pytest.fixture(autouse=True)
def allocator_calls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The ``keep_freed_memory`` calls a test made, recorded instead of carried out: the setting would stay with
    the whole test process. tests/test_allocator.py checks the real function in child processes."""
    calls: list[bool] = []
    if request.module.__name__ != "tests.test_allocator":
        from visionzoo import allocator

        def record(enable: bool = True) -> bool:
            calls.append(enable)
            return True

        monkeypatch.setattr(allocator, "keep_freed_memory", record)
    return calls


@pytest.fixture
def server() -> Iterator[FileServer]:
    """The suite's HTTP server on 127.0.0.1 (tests/_http.py): routes set by the test, faults on request."""
    with FileServer() as running:
        yield running


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The same server serving a temporary directory as it is: yields (base_url, directory)."""
    root = tmp_path / "served"
    root.mkdir()
    with FileServer(root=root) as running:
        yield running.url(""), root


@pytest.fixture
def zoo(file_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> TinyZoo:
    """The tiny served zoo of the command-line tests (``tests/_cli_zoo.py``), with a short download timeout."""
    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", "5")
    return install_zoo(monkeypatch, *file_server)
