"""The enum path end to end: a builder's weights entry fetched over real HTTP, cached, mirrored, verified."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import pytest
import torch

from tests import reference
from visionzoo import hub
from visionzoo.models._api import Weights, WeightsEnum
from visionzoo.models._meta import _IMAGENET_CATEGORIES
from visionzoo.models._utils import build_model
from visionzoo.models.resnet import BasicBlock, ResNet
from visionzoo.transforms import ImageClassification


def _publish(directory: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """Write a resnet18 checkpoint named like the official ones (<stem>-<sha256 prefix>.pth)."""
    torch.manual_seed(0)
    state = reference.models.resnet18().state_dict()
    staging = directory / "staging.pth"
    torch.save(state, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    name = f"resnet18-{digest[:8]}.pth"
    staging.rename(directory / name)
    return name, state


def _enum(url: str) -> type[WeightsEnum]:
    entry = Weights(
        url=url, transforms=partial(ImageClassification, crop_size=224), meta={"categories": _IMAGENET_CATEGORIES}
    )
    return WeightsEnum("Tiny_Weights", {"V1": entry})  # type: ignore[return-value]


def _build(weights: WeightsEnum, **kwargs: object) -> ResNet:
    return build_model(ResNet, weights, False, block=BasicBlock, layers=[2, 2, 2, 2], **kwargs)


def test_download_then_cache_reuse_without_network(file_server: tuple[str, Path], isolated_weights_cache: Path) -> None:
    base, served = file_server
    name, state = _publish(served)
    weights = _enum(f"{base}/{name}").V1
    model = _build(weights)
    assert (isolated_weights_cache / name).is_file()
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    (served / name).unlink()  # the server no longer has it: the cache must answer
    assert torch.equal(_build(weights).fc.bias, state["fc.bias"])


def test_mirror_directory_and_mirror_url(
    file_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, served = file_server
    name, state = _publish(served)
    unreachable = f"http://127.0.0.1:9/{name}"
    monkeypatch.setenv("VISIONZOO_WEIGHTS_URL", base)
    assert torch.equal(_build(_enum(unreachable).V1).fc.weight, state["fc.weight"])

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (served / name).rename(mirror / name)
    monkeypatch.delenv("VISIONZOO_WEIGHTS_URL")
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(mirror))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    assert torch.equal(_build(_enum(unreachable).V1).fc.weight, state["fc.weight"])


def test_offline_failure_says_where_to_put_the_file(tmp_path: Path) -> None:
    weights = _enum("http://127.0.0.1:9/resnet18-0123abcd.pth").V1
    with pytest.raises(hub.WeightsUnavailableError) as error:
        _build(weights)
    message = str(error.value)
    assert "resnet18-0123abcd.pth" in message and "http://127.0.0.1:9/resnet18-0123abcd.pth" in message
    assert "VISIONZOO_WEIGHTS_DIR" in message


def test_num_classes_with_downloaded_weights(file_server: tuple[str, Path]) -> None:
    base, served = file_server
    name, state = _publish(served)
    with pytest.warns(UserWarning, match="fc.weight, fc.bias"):
        model = _build(_enum(f"{base}/{name}").V1, num_classes=3)
    assert model.fc.out_features == 3
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
