"""Tiny weights entries for the ``visionzoo validate`` tests of segmentation, video and optical flow.

Each builder registers (for the test's duration, through monkeypatch) a model of the task whose output is a
simple, known function of its input, with one weights entry whose checkpoint is written to a directory served
through ``VISIONZOO_WEIGHTS_DIR``; the tests then compute the expected figures themselves from that function.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests._cli_zoo import hashed_name
from visionzoo.models import _api
from visionzoo.models._api import Weights, WeightsEnum, register_model
from visionzoo.models._utils import build_model


def install(
    monkeypatch: pytest.MonkeyPatch,
    directory: Path,
    *,
    name: str,
    task: str,
    make: Callable[[], nn.Module],
    transforms: Callable[..., Any],
    meta: dict[str, Any],
) -> WeightsEnum:
    """Register model ``name`` of ``task`` built by ``make``, with one entry ``V1`` (also DEFAULT) whose checkpoint
    (``make()``'s state dict) lies in ``directory``, served through ``VISIONZOO_WEIGHTS_DIR``."""
    _api.list_models()  # import every family first, or one imported later would vanish when the copy is undone
    monkeypatch.setattr(_api, "_REGISTRY", dict(_api._REGISTRY))
    monkeypatch.setattr(_api, "_WEIGHTS_ENUMS", dict(_api._WEIGHTS_ENUMS))
    buffer = io.BytesIO()
    torch.save(make().state_dict(), buffer)
    file_name = hashed_name(name, buffer.getvalue())
    directory.mkdir(parents=True, exist_ok=True)
    (directory / file_name).write_bytes(buffer.getvalue())
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(directory))
    entry = Weights(url=f"https://example.invalid/{file_name}", transforms=transforms, meta=meta)
    enum = WeightsEnum(f"{name.capitalize()}_Weights", {"V1": entry, "DEFAULT": entry})  # type: ignore[arg-type]

    def builder(*, weights: WeightsEnum | str | Path | None = None, progress: bool = True, **kwargs: Any) -> nn.Module:
        """A tiny model for the validate tests."""
        kwargs.pop("aux_loss", None)  # the segmentation task's build argument
        return build_model(lambda **_: make(), weights, progress)  # num_classes: the model has its own

    builder.__name__ = name
    register_model(task=task, weights=enum)(builder)
    return enum
