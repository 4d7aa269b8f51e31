"""A tiny temporary model zoo for the command-line tests.

``install_zoo`` registers ``tinynet`` (a one-block-per-stage ResNet with 10 classes and a 64x64 preset) with
two weights entries whose checkpoints are written here, named like the official ones
(``<stem>-<sha256 prefix>.pth``) and served from 127.0.0.1; and ``tinydet``, a ``detection`` model without
pretrained weights (a stand-in that is never run). The registry is restored when the test ends (monkeypatch),
so nothing leaks into the registry-driven tests.

``V2`` (the default) has a zero classifier weight and bias ``0, 1, ..., 9``: whatever the image, its logits
are the bias, so the expected top-k and probabilities are known exactly. ``V1`` is randomly initialised.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import torch
from PIL import Image

from visionzoo.models import _api
from visionzoo.models._api import Weights, WeightsEnum, register_model
from visionzoo.models._utils import build_model
from visionzoo.models.resnet import BasicBlock, ResNet
from visionzoo.transforms import ImageClassification

CATEGORIES = [f"class_{i}" for i in range(10)]
METRICS = {"V1": {"acc@1": 12.5, "acc@5": 50.0}, "V2": {"acc@1": 33.0, "acc@5": 66.0}}


def make_tiny(num_classes: int = 10) -> ResNet:
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)


def checkpoint_bytes(seed: int, *, bias_only: bool) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A tinynet state dict saved with torch.save; ``bias_only``: logits are 0..9 for every input."""
    torch.manual_seed(seed)
    state = make_tiny().state_dict()
    if bias_only:
        state["fc.weight"] = torch.zeros_like(state["fc.weight"])
        state["fc.bias"] = torch.arange(10.0)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), state


def hashed_name(stem: str, data: bytes) -> str:
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"


def bias_probabilities() -> list[float]:
    """Softmax of the V2 logits 0..9, highest first."""
    total = sum(math.exp(i) for i in range(10))
    return [math.exp(i) / total for i in reversed(range(10))]


@dataclass
class TinyZoo:
    base_url: str
    served: Path  # the directory the server serves
    files: dict[str, str]  # entry name -> checkpoint file name
    states: dict[str, dict[str, torch.Tensor]]
    enum: type[WeightsEnum]

    def entry(self, name: str = "DEFAULT") -> WeightsEnum:
        return self.enum[name]


def install_zoo(monkeypatch: pytest.MonkeyPatch, base_url: str, served: Path) -> TinyZoo:
    """Write and publish the checkpoints in ``served`` (reachable at ``base_url``) and register the models."""
    _api.list_models()  # import every family first, or one imported later would vanish when the copy is undone
    monkeypatch.setattr(_api, "_REGISTRY", dict(_api._REGISTRY))
    monkeypatch.setattr(_api, "_WEIGHTS_ENUMS", dict(_api._WEIGHTS_ENUMS))
    files, states, members = {}, {}, {}
    for seed, entry in enumerate(("V1", "V2")):
        data, state = checkpoint_bytes(seed, bias_only=entry == "V2")
        name = hashed_name(f"tinynet_{entry.lower()}", data)
        (served / name).write_bytes(data)
        files[entry], states[entry] = name, state
        members[entry] = Weights(
            url=f"{base_url}/{name}",
            transforms=partial(ImageClassification, crop_size=64, resize_size=72),
            meta={
                "categories": CATEGORIES,
                "num_params": sum(t.numel() for k, t in state.items() if "running" not in k and "tracked" not in k),
                "min_size": (32, 32),
                "_metrics": {"ImageNet-1K": METRICS[entry]},
                "_ops": 0.012,
                "_file_size": round(len(data) / 1e6, 3),
                "recipe": "https://example.invalid/tinynet-recipe",
                "_docs": f"Test weights {entry}.",
            },
        )
    members["DEFAULT"] = members["V2"]  # the same value: an alias, as in the real enums
    enum = WeightsEnum("TinyNet_Weights", members)  # type: ignore[arg-type]

    def tinynet(*, weights: WeightsEnum | str | Path | None = None, progress: bool = True, **kwargs: object) -> ResNet:
        """A one-block-per-stage ResNet for the command-line tests."""
        return build_model(ResNet, weights, progress, block=BasicBlock, layers=[1, 1, 1, 1], **kwargs)

    def tinydet(*, weights: None = None, progress: bool = True) -> torch.nn.Module:
        """A stand-in detector without weights (the tests never run it)."""
        return torch.nn.Identity()

    register_model(weights=enum)(tinynet)
    register_model(task="detection")(tinydet)
    return TinyZoo(base_url, served, files, states, enum)


def write_images(directory: Path, count: int, *, seed: int = 0, size: tuple[int, int] = (80, 96)) -> list[Path]:
    """``count`` random RGB pictures (PNG) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    paths = []
    for i in range(count):
        pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=gen, dtype=torch.uint8).numpy()
        path = directory / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``visionzoo ARGV`` in this process: its exit status, stdout and stderr."""
    from visionzoo.cli import main

    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def picture_blocks(out: str) -> dict[str, tuple[str, list[str]]]:
    """``predict``'s text output for tasks that draw pictures: ``{image: (picture path, its indented lines)}``."""
    blocks: dict[str, tuple[str, list[str]]] = {}
    lines: list[str] = []
    for line in out.splitlines():
        if line.startswith("  "):
            lines.append(line)
        else:
            image, picture = line.split(" -> ")
            lines = []
            blocks[image] = (picture, lines)
    return blocks
