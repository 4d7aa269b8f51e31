"""Issue 35: ``visionzoo validate`` for detection weights on a COCO-format folder + annotation JSON.

Three tiny detectors (Faster, Mask and Keypoint R-CNN around an 8x-strided two-convolution backbone, 128-pixel
inputs) are registered with weights entries whose checkpoints are made here, their class heads favouring
"person" and "car", and served through VISIONZOO_WEIGHTS_DIR. The figures validate prints are checked against
pycocotools' COCOeval run here on the results file it wrote, and the results against the model's own outputs.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests._cli_zoo import run
from tests._coco import TinyCoco, cocoeval_stats, make_tiny_coco
from visionzoo.models import _api
from visionzoo.models._api import WeightsEnum, register_model
from visionzoo.models._meta import _COCO_CATEGORIES, _COCO_PERSON_CATEGORIES, _COCO_PERSON_KEYPOINT_NAMES
from visionzoo.models._utils import build_model
from visionzoo.models._weights import detection_entry
from visionzoo.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN
from visionzoo.models.detection.anchor_utils import AnchorGenerator
from visionzoo.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from visionzoo.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from visionzoo.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from visionzoo.ops.poolers import MultiScaleRoIAlign

pytest.importorskip("pycocotools")

CHANNELS = 16
PUBLISHED = {
    "tinyfaster": {"box_map": 37.0},
    "tinymask": {"box_map": 37.9, "mask_map": 34.6},
    "tinykeypoint": {"box_map": 54.6, "kp_map": 65.0},
}


class TinyBackbone(nn.Sequential):
    """Two strided convolutions: one 16-channel feature map at stride 8."""

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 8, 3, 4, 1), nn.ReLU(), nn.Conv2d(8, CHANNELS, 3, 2, 1), nn.ReLU())
        self.out_channels = CHANNELS


def _make(kind: str, num_classes: int) -> FasterRCNN:
    pool = {"featmap_names": ["0"], "sampling_ratio": 2}
    common: dict[str, Any] = {
        "rpn_anchor_generator": AnchorGenerator(((48, 64, 96),), ((0.5, 1.0, 2.0),)),
        "box_roi_pool": MultiScaleRoIAlign(output_size=7, **pool),
        "box_head": TwoMLPHead(CHANNELS * 49, 32),
        "box_predictor": FastRCNNPredictor(32, num_classes),
        "min_size": 128,
        "max_size": 192,
        "rpn_pre_nms_top_n_test": 300,
        "rpn_post_nms_top_n_test": 100,
        "box_detections_per_img": 10 if kind == "tinykeypoint" else 40,  # keypoint decoding is the slow part
    }
    if kind == "tinymask":
        return MaskRCNN(
            TinyBackbone(),
            mask_roi_pool=MultiScaleRoIAlign(output_size=14, **pool),
            mask_head=MaskRCNNHeads(CHANNELS, (8, 8), 1),
            mask_predictor=MaskRCNNPredictor(8, 8, num_classes),
            **common,
        )
    if kind == "tinykeypoint":
        return KeypointRCNN(
            TinyBackbone(),
            keypoint_roi_pool=MultiScaleRoIAlign(output_size=14, **pool),
            keypoint_head=KeypointRCNNHeads(CHANNELS, [8, 8]),
            keypoint_predictor=KeypointRCNNPredictor(8, 17),
            **common,
        )
    return FasterRCNN(TinyBackbone(), **common)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyCoco:
    return make_tiny_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Each tiny detector's checkpoint, named like the official ones (``<stem>-<sha256 prefix>.pth``)."""
    directory = tmp_path_factory.mktemp("weights")
    names = {}
    for kind in PUBLISHED:
        categories = _COCO_PERSON_CATEGORIES if kind == "tinykeypoint" else _COCO_CATEGORIES
        torch.manual_seed(0)
        state = _make(kind, len(categories)).state_dict()
        bias = state["roi_heads.box_predictor.cls_score.bias"]
        bias.zero_()
        bias[1] = 4.0  # person
        if len(bias) > 3:
            bias[3] = 4.0  # car
        for key in [k for k in state if ".bbox_pred." in k]:
            state[key].zero_()  # no box regression: detections are anchors, some of which meet the objects
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        names[kind] = f"{kind}_coco-{hashlib.sha256(data).hexdigest()[:8]}.pth"
        (directory / names[kind]).write_bytes(data)
    return directory, names


@pytest.fixture
def zoo(checkpoints: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> dict[str, type[WeightsEnum]]:
    """The three detectors registered with a COCO_V1 entry each, their checkpoints in VISIONZOO_WEIGHTS_DIR."""
    directory, names = checkpoints
    _api.list_models()  # import every family first, or one imported later would vanish when the copy is undone
    monkeypatch.setattr(_api, "_REGISTRY", dict(_api._REGISTRY))
    monkeypatch.setattr(_api, "_WEIGHTS_ENUMS", dict(_api._WEIGHTS_ENUMS))
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(directory))
    enums = {}
    for kind, metrics in PUBLISHED.items():
        keypoints = kind == "tinykeypoint"
        entry = detection_entry(
            f"https://example.invalid/{names[kind]}",
            params=1,
            gflops=0.01,
            file_mb=0.1,
            recipe="https://example.invalid/recipe",
            docs="Test weights.",
            categories=_COCO_PERSON_CATEGORIES if keypoints else None,
            keypoint_names=_COCO_PERSON_KEYPOINT_NAMES if keypoints else None,
            **metrics,
        )
        enum = WeightsEnum(f"{kind.title()}_Weights", {"COCO_V1": entry, "DEFAULT": entry})  # type: ignore[arg-type]

        def builder(*, weights: Any = None, progress: bool = True, _kind: str = kind, **kwargs: Any) -> FasterRCNN:
            classes = len(_COCO_PERSON_CATEGORIES if _kind == "tinykeypoint" else _COCO_CATEGORIES)
            return build_model(lambda num_classes=classes: _make(_kind, num_classes), weights, progress, **kwargs)

        builder.__name__ = builder.__qualname__ = kind
        builder.__doc__ = f"A tiny {kind} for the validate tests."
        register_model(task="detection", weights=enum)(builder)
        enums[kind] = enum
    return enums


def _direct(annotation_file: Path, results_file: Path, iou_type: str, image_ids: list[int] | None = None) -> list:
    """COCOeval's stats for the results file, in percent (a ``segm`` or ``keypoints`` result without its box, or
    loadRes would take the box's area for the mask's)."""
    results = json.loads(results_file.read_text())
    if iou_type != "bbox":
        field = "segmentation" if iou_type == "segm" else "keypoints"
        results = [{k: r[k] for k in ("image_id", "category_id", "score", field)} for r in results]
    stats = cocoeval_stats(annotation_file, results, iou_type, image_ids)
    return [100 * v if v >= 0 else None for v in stats]


def _validate(entry: str, tiny: TinyCoco, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    argv = ["validate", entry, "--data", str(tiny.image_dir), "--annotations", str(tiny.annotation_file), *extra]
    return run([*argv, "--quiet"], capsys)


@pytest.mark.usefixtures("zoo")
def test_box_map_matches_cocoeval_and_the_models_own_detections(
    tiny: TinyCoco, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "out" / "results.json"
    extra = ("--json", "--results", str(results))  # detection's default: one image per forward, no padding
    status, out, err = _validate("Tinyfaster_Weights.COCO_V1", tiny, capsys, *extra)
    assert status == 0, err
    report = json.loads(out)
    assert report["weights"] == "Tinyfaster_Weights.COCO_V1" and report["task"] == "detection"
    assert report["images"] == 4 and report["skipped"] == 0 and report["images_per_s"] > 0
    assert report["meta"] == {"box_map": 37.0} and set(report["measured"]) == {"box_map"}
    direct = _direct(tiny.annotation_file, results, "bbox")
    assert list(report["coco"]["bbox"].values()) == pytest.approx(direct)
    assert report["measured"]["box_map"] == pytest.approx(direct[0]) and direct[0] > 0

    # the results are the model's own detections, labels turned into the file's category ids
    from visionzoo.datasets import CocoDetection
    from visionzoo.models import get_model, get_weight

    entry = get_weight("Tinyfaster_Weights.COCO_V1")
    model = get_model("tinyfaster", weights=entry).eval()
    image, _ = CocoDetection(tiny.image_dir, tiny.annotation_file)[0]
    with torch.inference_mode():
        own = model([entry.transforms()(image)])[0]
    written = [r for r in json.loads(results.read_text()) if r["image_id"] == 1]
    file_id = {1: 1, 3: 2, 18: 5}  # person, car, dog in the file's numbering
    kept = [i for i, label in enumerate(own["labels"].tolist()) if label in file_id]
    assert len(written) == len(kept) > 0
    for result, i in zip(written, kept):
        assert result["category_id"] == file_id[int(own["labels"][i])]
        assert result["score"] == pytest.approx(float(own["scores"][i]), abs=1e-5)
        x1, y1, x2, y2 = own["boxes"][i].tolist()
        assert result["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-3)


@pytest.mark.usefixtures("zoo")
def test_mask_model_reports_box_and_mask_map(
    tiny: TinyCoco, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.json"
    status, out, err = _validate("tinymask", tiny, capsys, "--results", str(results), "--batch-size", "3")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"Tinymask_Weights.COCO_V1 on {tiny.image_dir} (annotations.json): 4 images, ")
    assert lines[1].split() == ["metric", "measured", "meta"]
    box, mask = _direct(tiny.annotation_file, results, "bbox"), _direct(tiny.annotation_file, results, "segm")
    assert lines[3].split() == ["box", "mAP", f"{box[0]:.3f}", "37.900"]
    assert lines[4].split() == ["mask", "mAP", f"{mask[0]:.3f}", "34.600"]
    assert lines[5].startswith("4 images in ") and lines[5].endswith("; 0 unreadable, skipped")
    assert lines[6].startswith("  bbox: AP ") and lines[7].startswith("  segm: AP ")
    assert "4 images in " in out and "0 unreadable, skipped" in out and f"results: {results}" in out
    assert all("segmentation" in r for r in json.loads(results.read_text()))


@pytest.mark.usefixtures("zoo")
def test_keypoint_model_on_the_person_keypoints_file(
    tiny: TinyCoco, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.json"
    argv = ["validate", "Tinykeypoint_Weights.COCO_V1", "--data", str(tiny.image_dir)]
    argv += ["--annotations", str(tiny.keypoint_file), "--results", str(results), "--json", "--quiet"]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report["meta"] == {"box_map": 54.6, "kp_map": 65.0}
    direct = _direct(tiny.keypoint_file, results, "keypoints")
    assert list(report["coco"]["keypoints"].values()) == pytest.approx(direct)
    assert report["measured"]["kp_map"] == pytest.approx(direct[0])
    assert report["measured"]["box_map"] == pytest.approx(_direct(tiny.keypoint_file, results, "bbox")[0])
    assert {r["category_id"] for r in json.loads(results.read_text())} == {1}


@pytest.mark.usefixtures("zoo")
def test_limit_scores_only_the_first_images(tiny: TinyCoco, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    status, out, err = _validate("tinyfaster", tiny, capsys, "--limit", "2", "--json", "--results", str(results))
    assert status == 0, err
    report = json.loads(out)
    assert report["images"] == 2
    assert {r["image_id"] for r in json.loads(results.read_text())} <= {1, 2}
    assert list(report["coco"]["bbox"].values()) == pytest.approx(
        _direct(tiny.annotation_file, results, "bbox", [1, 2])
    )


@pytest.mark.usefixtures("zoo")
def test_a_corrupt_image_is_skipped_and_counted(
    tiny: TinyCoco, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    images = tmp_path / "images"
    shutil.copytree(tiny.image_dir, images)
    (images / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    argv = ["validate", "tinyfaster", "--data", str(images), "--annotations", str(tiny.annotation_file)]
    status, out, err = run([*argv, "--json", "--quiet"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report["images"] == 3 and report["skipped"] == 1
    assert "b.jpg" in report["skipped_items"][0] and "visionzoo: skipped: " in err and "b.jpg" in err
    for path in images.rglob("*.*"):
        path.write_bytes(b"not an image")
    status, _, err = run([*argv, "--quiet"], capsys)
    assert status == 1 and "no images could be scored: 4 skipped (the first: " in err


@pytest.mark.usefixtures("zoo")
def test_errors_name_the_problem(tiny: TinyCoco, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["validate", "tinyfaster", "--data", str(tiny.image_dir), "--quiet"]
    status, _, err = run(base, capsys)
    assert status == 2 and "give --annotations FILE" in err
    status, _, err = run([*base, "--annotations", str(tmp_path / "none.json")], capsys)
    assert status == 2 and "none.json: no such annotation file" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    status, _, err = run([*base, "--annotations", str(broken)], capsys)
    assert status == 2 and "broken.json: not a valid JSON file" in err
    wombats = tmp_path / "wombats.json"
    wombats.write_text(json.dumps({**tiny.data, "annotations": [], "categories": [{"id": 1, "name": "wombat"}]}))
    status, _, err = run([*base, "--annotations", str(wombats)], capsys)
    assert status == 2 and "none of the categories in" in err and "wombat" in err
    (tmp_path / "images").mkdir()
    status, _, err = run(["validate", "tinyfaster", "--data", str(tmp_path / "images"), "--annotations",
                          str(tiny.annotation_file), "--quiet"], capsys)  # fmt: skip
    assert status == 2 and "a.png: image 1 of " in err and "is missing" in err
    status, _, err = run(["validate", "tinyfaster", "--data", str(tiny.annotation_file), "--annotations",
                          str(tiny.annotation_file), "--quiet"], capsys)  # fmt: skip
    assert status == 2 and "is a file" in err


def test_without_pycocotools_says_how_to_install(
    tiny: TinyCoco, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    for name in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval", "pycocotools.mask"):
        monkeypatch.setitem(sys.modules, name, None)  # what `import pycocotools` meets when it is not installed
    status, _, err = _validate("FasterRCNN_ResNet50_FPN_Weights.COCO_V1", tiny, capsys)
    assert status == 1 and "pip install visionzoo[coco]" in err and "Downloading" not in err


@pytest.mark.usefixtures("zoo")
def test_a_boxes_only_file_scores_boxes_of_a_mask_model(
    tiny: TinyCoco, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boxes_only = tmp_path / "boxes.json"
    annotations = [{k: v for k, v in a.items() if k != "segmentation"} for a in tiny.data["annotations"]]
    boxes_only.write_text(json.dumps({**tiny.data, "annotations": annotations}))
    argv = ["validate", "tinymask", "--data", str(tiny.image_dir), "--annotations", str(boxes_only), "--json"]
    status, out, err = run([*argv, "--quiet"], capsys)
    assert status == 0, err
    assert set(json.loads(out)["measured"]) == {"box_map"} and "no segm annotations: segm mAP not measured" in err


@pytest.mark.usefixtures("zoo")
def test_a_checkpoint_fine_tuned_on_the_files_categories(
    tiny: TinyCoco, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A head of background + the file's 3 categories: its labels are the file's categories in id order."""
    torch.manual_seed(1)
    state = _make("tinyfaster", 4).state_dict()
    state["roi_heads.box_predictor.cls_score.bias"][:] = torch.tensor([0.0, 4.0, 4.0, 0.0])  # person, car
    for key in [k for k in state if ".bbox_pred." in k]:
        state[key].zero_()
    checkpoint = tmp_path / "finetuned.pth"
    torch.save(state, checkpoint)
    results = tmp_path / "results.json"
    argv = ["validate", str(checkpoint), "--model", "tinyfaster", "--data", str(tiny.image_dir)]
    argv += ["--annotations", str(tiny.annotation_file), "--results", str(results), "--json", "--quiet"]
    status, out, err = run([*argv, "--num-classes", "4"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report["meta"] == {} and report["weights"] == str(checkpoint)
    assert {r["category_id"] for r in json.loads(results.read_text())} == {1, 2}  # the file's person and car
    assert report["measured"]["box_map"] == pytest.approx(_direct(tiny.annotation_file, results, "bbox")[0])

    state["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(6, 32)
    state["roi_heads.box_predictor.cls_score.bias"] = torch.zeros(6)
    state["roi_heads.box_predictor.bbox_pred.weight"] = torch.zeros(24, 32)
    state["roi_heads.box_predictor.bbox_pred.bias"] = torch.zeros(24)
    torch.save(state, checkpoint)
    status, _, err = run([*argv, "--num-classes", "6"], capsys)
    assert status == 2 and "head scores 6 classes" in err and "the background plus the 3 categories" in err
