"""CocoDetection on a tiny COCO dataset in the real layout (tests/_coco.py): targets, label spaces, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests._coco import COCO_LABEL, TinyCoco, make_tiny_coco
from visionzoo.datasets import CocoDetection, collate
from visionzoo.io import ImageDecodeError, ImageReadMode, read_image

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyCoco:
    return make_tiny_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def dataset(tiny: TinyCoco) -> CocoDetection:
    return CocoDetection(tiny.image_dir, tiny.annotation_file)


def test_images_in_id_order(tiny: TinyCoco, dataset: CocoDetection) -> None:
    assert len(dataset) == 4
    for index, info in enumerate(tiny.data["images"]):
        image, target = dataset[index]
        assert image.dtype == torch.uint8 and image.shape == (3, info["height"], info["width"])
        assert torch.equal(image, read_image(tiny.image_dir / info["file_name"], ImageReadMode.RGB))
        assert target["image_id"] == info["id"]


def test_boxes_labels_crowd_area(tiny: TinyCoco, dataset: CocoDetection) -> None:
    _, first = dataset[0]
    # the zero-width dog box is dropped with its annotation
    assert torch.equal(first["boxes"], torch.tensor([[10.0, 8.0, 40.0, 58.0], [50.0, 30.0, 90.0, 60.0]]))
    assert first["labels"].tolist() == [COCO_LABEL[1], COCO_LABEL[2]] == [1, 3]
    assert first["labels"].dtype == torch.int64 and first["boxes"].dtype == torch.float32
    assert first["area"].tolist() == [1500.0, float(tiny.masks[2].sum())]
    _, second = dataset[1]
    # the dog's box leaves the 80-wide image: clipped; the crowd of people is kept, flagged
    assert torch.equal(second["boxes"], torch.tensor([[40.0, 10.0, 80.0, 40.0], [5.0, 50.0, 70.0, 90.0]]))
    assert second["labels"].tolist() == [18, 1]
    assert second["iscrowd"].tolist() == [0, 1]
    _, empty = dataset[3]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert empty["masks"].shape == (0, 64, 64) and empty["keypoints"].shape == (0, 17, 3)


def test_masks_from_polygons_and_rle(tiny: TinyCoco, dataset: CocoDetection) -> None:
    _, first = dataset[0]
    masks = first["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (2, 80, 96)
    assert torch.equal(masks[1], torch.from_numpy(tiny.masks[2]))  # compressed RLE, exactly
    polygon = masks[0]  # the person's rectangle x 10..40, y 8..58
    assert polygon[10:56, 12:38].all() and polygon.sum() == polygon[7:60, 9:42].sum()
    assert abs(int(polygon.sum()) - 1500) <= 100
    _, second = dataset[1]
    assert torch.equal(second["masks"][1], torch.from_numpy(tiny.masks[5]))  # uncompressed RLE (the crowd)


def test_keypoints(tiny: TinyCoco, dataset: CocoDetection) -> None:
    _, first = dataset[0]
    points = first["keypoints"]
    assert points.dtype == torch.float32 and points.shape == (2, 17, 3)
    expected = torch.tensor(tiny.data["annotations"][0]["keypoints"], dtype=torch.float32).reshape(17, 3)
    assert torch.equal(points[0], expected)
    assert (points[0, :12, 2] == 2).all() and (points[0, 12:] == 0).all()
    assert (points[1] == 0).all()  # the car has no keypoints


def test_collate_and_loader(dataset: CocoDetection) -> None:
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=collate)
    batches = list(loader)
    assert [len(images) for images, _ in batches] == [3, 1]
    images, targets = batches[0]
    assert [image.shape[1:] for image in images] == [(80, 96), (96, 80), (72, 112)]
    assert [t["image_id"] for t in targets] == [1, 2, 3]


def test_limit_and_crowd_filter(tiny: TinyCoco) -> None:
    limited = CocoDetection(tiny.image_dir, tiny.annotation_file, limit=2, include_crowd=False)
    assert len(limited) == 2
    assert limited[1][1]["labels"].tolist() == [18]


def test_contiguous_label_space(tiny: TinyCoco, tmp_path: Path) -> None:
    data = dict(tiny.data, categories=[*tiny.data["categories"][:2], {"id": 5, "name": "wombat"}])
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="'wombat' are not COCO categories.*contiguous"):
        CocoDetection(tiny.image_dir, custom)
    dataset = CocoDetection(tiny.image_dir, custom, label_space="contiguous")
    assert dataset.categories == ["__background__", "person", "car", "wombat"]
    assert dataset.label_to_category_id == {1: 1, 2: 2, 3: 5}
    assert dataset[1][1]["labels"].tolist() == [3, 1]


def test_coco_label_space_names(dataset: CocoDetection) -> None:
    assert dataset.label_to_category_id == {1: 1, 3: 2, 18: 5}
    assert [dataset.categories[label] for label in (1, 3, 18)] == ["person", "car", "dog"]


def test_file_without_masks_or_keypoints(tiny: TinyCoco, tmp_path: Path) -> None:
    annotations = [
        {k: v for k, v in a.items() if k not in ("segmentation", "keypoints")} for a in tiny.data["annotations"]
    ]
    boxes_only = tmp_path / "boxes.json"
    boxes_only.write_text(json.dumps(dict(tiny.data, annotations=annotations)))
    _, target = CocoDetection(tiny.image_dir, boxes_only)[0]
    assert set(target) == {"boxes", "labels", "image_id", "iscrowd", "area"}


def test_errors(tiny: TinyCoco, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.json: no such annotation file"):
        CocoDetection(tiny.image_dir, tmp_path / "nothere.json")
    with pytest.raises(FileNotFoundError, match="no such image directory"):
        CocoDetection(tmp_path / "nodir", tiny.annotation_file)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(ValueError, match="broken.json: not a valid JSON file"):
        CocoDetection(tiny.image_dir, broken)
    broken.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="'categories' is missing"):
        CocoDetection(tiny.image_dir, broken)
    stray = dict(tiny.data, annotations=[dict(tiny.data["annotations"][0], image_id=99)])
    broken.write_text(json.dumps(stray))
    with pytest.raises(ValueError, match="refers to image 99"):
        CocoDetection(tiny.image_dir, broken)
    with pytest.raises(ValueError, match="label_space must be one of"):
        CocoDetection(tiny.image_dir, tiny.annotation_file, label_space="voc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be a positive int"):
        CocoDetection(tiny.image_dir, tiny.annotation_file, limit=0)


def test_missing_and_corrupt_images(tiny: TinyCoco, tmp_path: Path) -> None:
    images = tmp_path / "images"
    shutil.copytree(tiny.image_dir, images)
    (images / "sub" / "c.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"sub/c.png: image 3 of .*annotations.json is missing"):
        CocoDetection(images, tiny.annotation_file)
    (images / "sub" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    dataset = CocoDetection(images, tiny.annotation_file)
    with pytest.warns(UserWarning, match="c.png: skipped, the image does not decode"):
        item = dataset[2]
    assert item is None and dataset.skipped == [images / "sub" / "c.png"]
    with pytest.raises(ImageDecodeError, match="c.png"):
        dataset.load(2)
    with pytest.warns(UserWarning):
        images_out, targets = collate([dataset[i] for i in range(4)])
    assert [t["image_id"] for t in targets] == [1, 2, 4] and len(images_out) == 3


def test_size_mismatch_is_named(tiny: TinyCoco, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.json"
    images = [dict(tiny.data["images"][0], width=50), *tiny.data["images"][1:]]
    wrong.write_text(json.dumps(dict(tiny.data, images=images)))
    with pytest.raises(ValueError, match=r"a.png is 96x80, but .*wrong.json gives image 1 as 50x80"):
        CocoDetection(tiny.image_dir, wrong)[0]


def test_missing_pycocotools_says_how_to_install(tiny: TinyCoco, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for name in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval", "pycocotools.mask"):
        monkeypatch.setitem(sys.modules, name, None)  # what `import pycocotools` meets when it is not installed
    with pytest.raises(ImportError, match=r"pip install visionzoo\[coco\]"):
        CocoDetection(tiny.image_dir, tiny.annotation_file)


def test_transforms_get_image_and_target(tiny: TinyCoco) -> None:
    def flip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        width = image.shape[-1]
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
        return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}

    plain = CocoDetection(tiny.image_dir, tiny.annotation_file)[0]
    image, target = CocoDetection(tiny.image_dir, tiny.annotation_file, transforms=flip)[0]
    assert torch.equal(image, plain[0].flip(-1)) and torch.equal(target["masks"], plain[1]["masks"].flip(-1))
    assert target["boxes"][0].tolist() == [56.0, 8.0, 86.0, 58.0]
