"""Issue 29: ``visionzoo predict`` with detection models (objects with score and box, a PNG per input with the
boxes and labels drawn, ``--threshold`` defaulting to 0.5, ``--topk`` capping), and box mAP in ``info``/``list``.

The model is the real ``fasterrcnn_mobilenet_v3_large_320_fpn`` (the smallest detector), randomly initialised
and saved as a local checkpoint, with its class head's bias favouring "cat" and, less, "dog": whatever the
boxes, the reported detections must be the model's own, in order, and above the threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests._cli_zoo import picture_blocks, run, write_images
from visionzoo.cli._detection import DEFAULT_THRESHOLD
from visionzoo.models.detection import FasterRCNN_MobileNet_V3_Large_320_FPN_Weights as Weights
from visionzoo.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn
from visionzoo.transforms.functional import pil_to_tensor

ROOT = Path(__file__).resolve().parents[1]
CAT = str(ROOT / "assets" / "chelsea.jpg")
MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"
COCO = Weights.DEFAULT.meta["categories"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    state = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None).state_dict()
    bias = state["roi_heads.box_predictor.cls_score.bias"]
    bias.zero_()
    bias[COCO.index("cat")] = 8.0
    path = tmp_path_factory.mktemp("weights") / "frcnn_random.pth"
    torch.save(state, path)
    return path


@pytest.fixture
def small_image(tmp_path: Path) -> str:
    (path,) = write_images(tmp_path / "small", 1, size=(120, 90))
    return str(path)


def predict(inputs: list[str], checkpoint: Path, *extra: str) -> list[str]:
    return ["predict", *inputs, "--model", MODEL, "--weights", str(checkpoint), "--quiet", *extra]


def reference(checkpoint: Path, image: str) -> dict[str, torch.Tensor]:
    """The model's own output for ``image``, straight from the builder."""
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=checkpoint).eval()
    with Image.open(image) as picture:
        tensor = pil_to_tensor(picture.convert("RGB")).float() / 255
    with torch.inference_mode():
        return model([tensor])[0]


def test_predict_writes_pictures_and_prints_detections(
    checkpoint: Path,
    small_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out is ./predictions
    status, out, err = run(predict([CAT, small_image], checkpoint), capsys)
    assert status == 0, err
    pictures = (tmp_path / "predictions").resolve()
    expected = {CAT: pictures / f"chelsea.{MODEL}.png", small_image: pictures / f"img0.{MODEL}.png"}
    blocks = picture_blocks(out)
    assert list(blocks) == [CAT, small_image]
    for image, (picture, lines) in blocks.items():
        assert Path(picture).resolve() == expected[image]
        with Image.open(image) as original, Image.open(expected[image]) as drawn:
            assert drawn.format == "PNG" and drawn.mode == "RGB" and drawn.size == original.size
            assert drawn.tobytes() != original.convert("RGB").tobytes()  # boxes drawn
        assert lines and all(line.split()[0] == "cat" for line in lines)
        scores = [float(line.split()[1]) for line in lines]
        assert scores == sorted(scores, reverse=True) and min(scores) >= DEFAULT_THRESHOLD
        assert all(line.split("[")[1].endswith("]") and line.count(",") == 3 for line in lines)

    # --json: the same detections as data, checked against the model's own output (a lower threshold).
    status, out, err = run(predict([CAT, small_image], checkpoint, "--json", "--threshold", "0.01"), capsys)
    assert status == 0, err
    results = json.loads(out)
    assert [r["image"] for r in results] == [CAT, small_image]
    assert Path(results[0]["picture"]).resolve() == expected[CAT]
    want = reference(checkpoint, CAT)
    kept = want["scores"] >= 0.01
    (cat,) = [r for r in results if r["image"] == CAT]
    assert [d["score"] for d in cat["detections"]] == [
        round(v, 4) for v in want["scores"][kept].sort(descending=True).values.tolist()
    ]
    best = int(want["scores"].argmax())
    top = cat["detections"][0]
    assert top["label"] == COCO[top["index"]] == COCO[int(want["labels"][best])]
    assert top["score"] == pytest.approx(float(want["scores"][best]), abs=1e-4)
    assert top["box"] == pytest.approx(want["boxes"][best].tolist(), abs=0.06)
    assert [d["score"] for d in cat["detections"]] == sorted((d["score"] for d in cat["detections"]), reverse=True)

    # --topk caps what is reported, highest scores first.
    status, out, _ = run(predict([CAT], checkpoint, "--json", "--threshold", "0.01", "--topk", "2"), capsys)
    (capped,) = json.loads(out)
    assert status == 0 and capped["detections"] == cat["detections"][:2]

    # A threshold above every score: nothing reported, the picture is the image itself.
    status, out, _ = run(predict([small_image], checkpoint, "--threshold", "0.999"), capsys)
    assert status == 0 and out.splitlines()[1] == "  (no detection above the threshold)"
    with Image.open(small_image) as original, Image.open(expected[small_image]) as drawn:
        assert drawn.tobytes() == original.convert("RGB").tobytes()


def test_an_unreadable_input_is_skipped_and_counted(
    checkpoint: Path, small_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture")
    out_dir = tmp_path / "out"
    argv = ["predict", small_image, str(fake), "--model", MODEL, "--weights", str(checkpoint), "--out", str(out_dir)]
    status, out, err = run(argv, capsys)
    assert status == 1 and out.startswith(f"{small_image} -> {out_dir / f'img0.{MODEL}.png'}\n")
    assert f"visionzoo: {fake}: not a JPEG, PNG" in err
    assert err.splitlines()[-1] == f"visionzoo: 1 of 2 images predicted, 1 failed; pictures in {out_dir}/"
    assert [p.name for p in out_dir.iterdir()] == [f"img0.{MODEL}.png"]


def test_help_names_the_detection_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    from visionzoo.cli import main

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert f"detection: objects below this score, default {DEFAULT_THRESHOLD}" in " ".join(
        capsys.readouterr().out.split()
    )


def test_info_and_list_show_box_map(capsys: pytest.CaptureFixture[str]) -> None:
    status, card, _ = run(["info", "fasterrcnn_resnet50_fpn"], capsys)
    assert status == 0 and "task: detection" in card and "COCO-val2017 box mAP=37.000" in card

    status, out, _ = run(["list", "--task", "detection", "--weights"], capsys)
    header, _, *rows = out.splitlines()
    assert status == 0 and header.split()[:4] == ["model", "weights", "box", "mAP"]
    row = next(line.split() for line in rows if line.startswith("fasterrcnn_resnet50_fpn "))
    assert row[1:4] == ["COCO_V1", "(default)", "37.000"]


@pytest.fixture(scope="module")
def ssdlite_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random SSDlite whose classification head scores "cat" for every default box."""
    from visionzoo.models.detection import ssdlite320_mobilenet_v3_large

    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    state = model.state_dict()
    for level in range(len(model.head.classification_head.module_list)):
        bias = state[f"head.classification_head.module_list.{level}.1.bias"]
        bias.view(-1, len(COCO))[:, COCO.index("cat")] = 8.0  # one row per default box of a cell
    path = tmp_path_factory.mktemp("weights") / "ssdlite_random.pth"
    torch.save(state, path)
    return path


def test_predict_names_the_classes_of_a_single_stage_detector(
    ssdlite_checkpoint: Path, small_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SSD heads have no R-CNN box predictor: the class count comes from their classification head."""
    from visionzoo.cli._detection import scored_classes

    model = "ssdlite320_mobilenet_v3_large"
    argv = ["predict", CAT, small_image, "--model", model, "--weights", str(ssdlite_checkpoint), "--quiet"]
    status, out, err = run([*argv, "--out", str(tmp_path), "--topk", "3"], capsys)
    assert status == 0, err
    blocks = picture_blocks(out)
    assert list(blocks) == [CAT, small_image]
    for image, (picture, lines) in blocks.items():
        assert Path(picture).resolve() == (tmp_path / f"{Path(image).stem}.{model}.png").resolve()
        with Image.open(image) as original, Image.open(picture) as drawn:
            assert drawn.size == original.size and drawn.tobytes() != original.convert("RGB").tobytes()
        assert len(lines) == 3 and all(line.split()[0] == "cat" for line in lines)
    with torch.device("meta"):
        assert scored_classes(fasterrcnn_mobilenet_v3_large_320_fpn(weights_backbone=None, num_classes=5)) == 5
    assert scored_classes(torch.nn.Linear(2, 2)) is None
