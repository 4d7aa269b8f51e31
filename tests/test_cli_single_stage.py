"""``visionzoo predict`` with single-stage detectors (RetinaNet, FCOS): objects named by the weights' categories,
which the command finds through the model's classification head, and a PNG with the boxes drawn.

A real ResNet-50 RetinaNet resizes every picture to 800 pixels, seconds per image on a small CPU; so the model here
is our ``RetinaNet`` class on a one-convolution backbone (the reference docstring's way of building one), registered
for the test with the COCO categories, randomly initialised and saved as a local checkpoint, with its class logits'
bias favouring "cat": whatever the boxes, every reported object must be a cat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests._cli_zoo import picture_blocks, run, write_images
from visionzoo.cli._detection import DEFAULT_THRESHOLD, scored_classes
from visionzoo.models import _api
from visionzoo.models._api import WeightsEnum, register_model
from visionzoo.models._utils import build_model
from visionzoo.models.detection import FCOS, RetinaNet, RetinaNet_ResNet50_FPN_Weights
from visionzoo.models.detection.anchor_utils import AnchorGenerator

COCO = RetinaNet_ResNet50_FPN_Weights.DEFAULT.meta["categories"]
MODEL = "tiny_retinanet"


def _tiny_retinanet(num_classes: int = len(COCO)) -> RetinaNet:
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=16, padding=1), nn.ReLU())
    backbone.out_channels = 16
    anchors = AnchorGenerator(((48, 96),), ((0.5, 1.0, 2.0),))
    return RetinaNet(backbone, num_classes, anchor_generator=anchors, min_size=96, max_size=160)


@pytest.fixture
def zoo(monkeypatch: pytest.MonkeyPatch) -> None:
    _api.list_models()  # import every family first, so that restoring the registry drops only this model
    monkeypatch.setattr(_api, "_REGISTRY", dict(_api._REGISTRY))
    monkeypatch.setattr(_api, "_WEIGHTS_ENUMS", dict(_api._WEIGHTS_ENUMS))

    def tiny_retinanet(
        *, weights: WeightsEnum | str | Path | None = None, progress: bool = True, **kw: Any
    ) -> RetinaNet:
        """A RetinaNet on a one-convolution backbone, with the COCO weights' categories."""
        return build_model(_tiny_retinanet, weights, progress, **kw)

    register_model(task="detection", weights=RetinaNet_ResNet50_FPN_Weights)(tiny_retinanet)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    state = _tiny_retinanet().state_dict()
    bias = state["head.classification_head.cls_logits.bias"].view(-1, len(COCO))  # (anchor, class)
    bias.fill_(-10.0)
    bias[:, COCO.index("cat")] = 6.0
    path = tmp_path_factory.mktemp("weights") / "retinanet_random.pth"
    torch.save(state, path)
    return path


def test_predict_names_the_objects_of_a_single_stage_detector(
    zoo: None, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [str(p) for p in write_images(tmp_path / "in", 2, size=(120, 90))]
    out_dir = tmp_path / "out"
    argv = ["predict", *images, "--model", MODEL, "--weights", str(checkpoint), "--quiet", "--out", str(out_dir)]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    blocks = picture_blocks(out)
    assert list(blocks) == images
    for picture, lines in blocks.values():
        assert Path(picture).parent == out_dir and Path(picture).is_file()
        assert lines and all(line.split()[0] == "cat" for line in lines)
        scores = [float(line.split()[1]) for line in lines]
        assert scores == sorted(scores, reverse=True) and min(scores) >= DEFAULT_THRESHOLD

    status, out, err = run([*argv, "--json", "--topk", "3"], capsys)
    assert status == 0, err
    results = json.loads(out)
    assert [len(r["detections"]) for r in results] == [3, 3]
    assert {d["label"] for r in results for d in r["detections"]} == {"cat"}
    assert all(d["index"] == COCO.index("cat") for r in results for d in r["detections"])


def test_the_number_of_scored_classes_is_found_for_every_kind_of_detector() -> None:
    assert scored_classes(_tiny_retinanet(7)) == 7
    backbone = nn.Sequential(nn.Conv2d(3, 32, 3, stride=8, padding=1))
    backbone.out_channels = 32
    fcos = FCOS(backbone, 5, anchor_generator=AnchorGenerator(((8,),), ((1.0,),)))
    assert scored_classes(fcos) == 5
    assert scored_classes(nn.Identity()) is None
