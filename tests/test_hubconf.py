"""torch.hub entry points of the repository root."""

from __future__ import annotations

from pathlib import Path

import torch

from visionzoo import models

ROOT = Path(__file__).resolve().parents[1]


def test_hub_lists_every_builder_and_the_weight_helpers() -> None:
    # torch.hub.list only reads GitHub repositories; load the local hubconf the way torch.hub.load does.
    hubconf = torch.hub._import_module("hubconf", str(ROOT / "hubconf.py"))
    entries = {name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")}
    assert set(models.list_models()) <= entries
    assert {"get_weight", "get_model_weights"} <= entries


def test_hub_load_builder_and_helpers() -> None:
    model = torch.hub.load(str(ROOT), "resnet50", source="local", weights=None, num_classes=7)
    assert isinstance(model, models.ResNet) and model.fc.out_features == 7
    weight = torch.hub.load(str(ROOT), "get_weight", source="local", name="ResNet50_Weights.IMAGENET1K_V2")
    assert weight is models.ResNet50_Weights.IMAGENET1K_V2
    enum = torch.hub.load(str(ROOT), "get_model_weights", source="local", name="resnet50")
    assert enum is models.ResNet50_Weights
