"""``visionzoo train`` for a detector on a generated COCO-format dataset: the loss falls over a few steps, the
evaluation reports COCO box mAP, and the saved model loads with its class names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.train._data import make_coco
from visionzoo.cli import main
from visionzoo.models import get_model

pytest.importorskip("pycocotools")

MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"
ARGS = ["--model", MODEL, "--weights-backbone", "none", "--min-size", "128", "--max-size", "160", "--workers", "0"]


def test_detector_loss_falls_and_box_map_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, annotations = make_coco(tmp_path / "train", images=4)
    val_images, val_annotations = make_coco(tmp_path / "val", images=2, seed=1)
    out = tmp_path / "out"
    command = ["train", *ARGS, "--data", str(images), "--annotations", str(annotations), "--val", str(val_images)]
    command += ["--val-annotations", str(val_annotations), "--output-dir", str(out), "-q"]
    assert main([*command, "--epochs", "2", "--batch-size", "2", "--eval-every", "0"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 2 and train[-1]["step"] == 4 and train[-1]["loss"] < train[0]["loss"]
    (evaluation,) = [r for r in records if r["kind"] == "eval"]
    assert {"box_AP", "box_AP50", "box_AP75", "box_AR100"} <= evaluation.keys() and evaluation["val_images"] == 2
    assert all(0.0 <= evaluation[k] <= 100.0 for k in ("box_AP", "box_AP50", "box_AR100"))

    saved = torch.load(out / "model.pth", weights_only=True)
    assert saved["meta"]["categories"] == ["__background__", "square", "bar"] and saved["meta"]["task"] == "detection"
    model = get_model(MODEL, weights=str(out / "model.pth"))  # three classes, as the saved meta says
    assert all(torch.equal(a, saved["model"][k]) for k, a in model.state_dict().items())
    capsys.readouterr()
    picture = str(val_images / "1.png")
    command = ["predict", "--model", MODEL, "--weights", str(out / "model.pth"), "--threshold", "0", picture]
    assert main([*command, "--out", str(tmp_path / "pictures")]) == 0
    printed = capsys.readouterr().out
    assert "square" in printed or "bar" in printed  # the class names of the training data, not COCO's


def test_detection_needs_its_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, annotations = make_coco(tmp_path / "train", images=1)
    base = ["train", *ARGS, "--data", str(images), "--output-dir", str(tmp_path / "out")]
    assert main(base) == 2
    assert "needs --annotations" in capsys.readouterr().err
    assert main([*base, "--annotations", str(annotations), "--val", str(images)]) == 2
    assert "needs --val-annotations" in capsys.readouterr().err
