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


# ------------------------------------------------------------------------------------------------------------
# Issue 31: instance masks (Mask R-CNN) and person keypoints (Keypoint R-CNN)
# ------------------------------------------------------------------------------------------------------------

# Small inputs and few detections for the ResNet-50 detectors (their own 800-pixel default is slow on a CPU):
# every model the command line builds gets these.
SMALL = {"min_size": 256, "max_size": 400, "rpn_post_nms_top_n_test": 100, "box_detections_per_img": 4}


@pytest.fixture
def small_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    from visionzoo import models

    build = models.get_model
    monkeypatch.setattr(models, "get_model", lambda name, **kwargs: build(name, **{**kwargs, **SMALL}))


def _random_checkpoint(directory: Path, name: str, favoured: int) -> Path:
    """A randomly initialised ``name`` whose class head favours class ``favoured`` (so detections pass 0.5)."""
    from visionzoo import models

    torch.manual_seed(0)
    state = models.get_model(name, weights=None, weights_backbone=None).state_dict()
    bias = state["roi_heads.box_predictor.cls_score.bias"]
    bias.zero_()
    bias[favoured] = 8.0
    path = directory / f"{name}_random.pth"
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


def _own_output(name: str, checkpoint: Path, image: str) -> dict[str, torch.Tensor]:
    from visionzoo import models

    model = models.get_model(name, weights=checkpoint).eval()  # small_builds adds SMALL
    with Image.open(image) as picture:
        tensor = pil_to_tensor(picture.convert("RGB")).float() / 255
    with torch.inference_mode():
        return model([tensor])[0]


@pytest.mark.usefixtures("small_builds")
@pytest.mark.parametrize(
    ("name", "favoured"), [("maskrcnn_resnet50_fpn", COCO.index("cat")), ("keypointrcnn_resnet50_fpn", 1)]
)
def test_predict_draws_instance_masks_or_skeletons(
    name: str, favoured: int, small_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from visionzoo.cli._detection import show_detection

    checkpoint = _random_checkpoint(tmp_path, name, favoured)
    argv = ["predict", small_image, "--model", name, "--weights", str(checkpoint), "--out", str(tmp_path / "out")]
    status, out, err = run([*argv, "--json"], capsys)
    assert status == 0, err
    (result,) = json.loads(out)
    with Image.open(small_image) as original, Image.open(result["picture"]) as drawn:
        assert drawn.size == original.size and drawn.tobytes() != original.convert("RGB").tobytes()
    own = _own_output(name, checkpoint, small_image)
    order = own["scores"].argsort(descending=True)
    assert len(result["detections"]) == SMALL["box_detections_per_img"]
    for item, index in zip(result["detections"], order.tolist()):
        assert item["score"] == pytest.approx(float(own["scores"][index]), abs=1e-4)
        if name.startswith("mask"):
            assert item["mask_pixels"] == int((own["masks"][index, 0] >= 0.5).sum())
        else:
            scores = own["keypoints_scores"][index].tolist()
            points = [[x, y, s] for (x, y, _), s in zip(own["keypoints"][index].tolist(), scores)]
            torch.testing.assert_close(torch.tensor(item["keypoints"]), torch.tensor(points), atol=0.06, rtol=0)

    show_detection([result])  # what predict prints without --json
    ((_, lines),) = picture_blocks(capsys.readouterr().out).values()
    if name.startswith("mask"):
        assert all(line.split()[0] == "cat" and line.endswith(" px") and "  mask " in line for line in lines)
    else:
        assert all(line.split()[0] == "person" and line.endswith("  17 keypoints") for line in lines)


def test_pictures_colour_each_instance_and_join_the_skeleton() -> None:
    from visionzoo.cli._detection import draw_picture
    from visionzoo.cli._segmentation import class_colour
    from visionzoo.models._meta import _COCO_PERSON_SKELETON
    from visionzoo.utils import draw_segmentation_masks

    image = torch.zeros(3, 60, 80, dtype=torch.uint8)
    detections = [{"label": "cat", "index": 17, "score": 0.9}, {"label": "cat", "index": 17, "score": 0.8}]
    boxes = torch.tensor([[2.0, 2.0, 30.0, 30.0], [40.0, 20.0, 75.0, 55.0]])
    masks = torch.zeros(2, 60, 80, dtype=torch.bool)
    masks[0, 20:28, 10:28] = masks[1, 40:50, 50:60] = True  # clear of the labels
    drawn = torch.from_numpy(__import__("numpy").array(draw_picture(image, boxes, detections, masks=masks)))
    first, second = drawn[25, 20], drawn[45, 55]
    assert first.tolist() != second.tolist()  # the same class, two colours
    blended = draw_segmentation_masks(image, masks, alpha=0.5, colors=[class_colour(1), class_colour(2)])
    assert first.tolist() == blended[:, 25, 20].tolist() and second.tolist() == blended[:, 45, 55].tolist()
    assert drawn[5, 50].tolist() == [0, 0, 0]
    keypoints = torch.zeros(1, 17, 3)
    keypoints[0, :, 0] = torch.linspace(10, 70, 17)
    keypoints[0, :, 1] = 30
    drawn = torch.from_numpy(
        __import__("numpy").array(draw_picture(image, boxes[:1], detections[:1], keypoints=keypoints))
    )
    assert drawn[30, 10:71].any(dim=-1).all()  # the skeleton's white lines join the points
    assert (0, 1) in _COCO_PERSON_SKELETON and len(_COCO_PERSON_SKELETON) == 19
