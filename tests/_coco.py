"""A tiny COCO dataset in the real layout, written by the tests that need one: a directory of generated images
and an annotation JSON with boxes, polygons, compressed and uncompressed RLE masks, person keypoints, a crowd
annotation, a box that leaves its image, a box without area and an image without annotations.

The categories renumber three COCO classes (person 1, car 2, dog 5), so that reading them by name is checked:
in the 91-entry COCO list they are person 1, car 3 and dog 18.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

KEYPOINT_NAMES = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]
CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person", "keypoints": KEYPOINT_NAMES, "skeleton": [[16, 14]]},
    {"id": 2, "name": "car", "supercategory": "vehicle"},
    {"id": 5, "name": "dog", "supercategory": "animal"},
]
COCO_LABEL = {1: 1, 2: 3, 5: 18}  # file category id -> index in the 91-entry COCO list
# (file name, width, height); the last image has no annotation.
IMAGES = [("a.png", 96, 80), ("b.jpg", 80, 96), ("sub/c.png", 112, 72), ("d.png", 64, 64)]


@dataclass
class TinyCoco:
    """Where the dataset lies, and the facts its tests check."""

    image_dir: Path
    annotation_file: Path
    data: dict[str, Any]
    keypoint_file: Path  # the person-keypoints file of the same images: the person category and its annotations
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # annotation id -> the exact mask its RLE encodes


def _person_keypoints(x: float, y: float, w: float, h: float, visible: int) -> list[float]:
    """17 keypoints spread over the box; the first ``visible`` labelled (v=2), the rest unlabelled (0, 0, 0)."""
    points: list[float] = []
    for i in range(17):
        if i < visible:
            points += [round(x + w * (0.2 + 0.6 * (i % 3) / 2), 1), round(y + h * (0.1 + 0.8 * i / 16), 1), 2]
        else:
            points += [0, 0, 0]
    return points


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of a 0/1 mask: run lengths over the column-major pixels, starting with zeros."""
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


def make_tiny_coco(root: Path) -> TinyCoco:
    """Writes the images and ``annotations.json`` under ``root``."""
    from pycocotools import mask as mask_utils

    image_dir = root / "images"
    generator = torch.Generator().manual_seed(0)
    images = []
    for image_id, (name, width, height) in enumerate(IMAGES, start=1):
        path = image_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator).numpy()
        Image.fromarray(pixels).save(path, quality=95) if name.endswith(".jpg") else Image.fromarray(pixels).save(path)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})

    rle_mask = np.zeros((80, 96), dtype=np.uint8)
    rle_mask[30:60, 50:90] = 1
    rle_mask[35:40, 60:70] = 0
    compressed = mask_utils.encode(np.asfortranarray(rle_mask))
    compressed["counts"] = compressed["counts"].decode("ascii")
    crowd_mask = np.zeros((96, 80), dtype=np.uint8)
    crowd_mask[50:90, 5:70] = 1

    def box(x: float, y: float, w: float, h: float) -> dict[str, Any]:
        return {"bbox": [x, y, w, h], "area": float(w * h)}

    def polygon(x: float, y: float, w: float, h: float) -> list[list[float]]:
        return [[x, y, x + w, y, x + w, y + h, x, y + h]]

    annotations = [
        # image 1: a person (polygon, keypoints), a car (compressed RLE), a box without area (dropped)
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, **box(10, 8, 30, 50),
         "segmentation": polygon(10, 8, 30, 50), "keypoints": _person_keypoints(10, 8, 30, 50, 12),
         "num_keypoints": 12},
        {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, **box(50, 30, 40, 30),
         "segmentation": compressed, "area": float(rle_mask.sum())},
        {"id": 3, "image_id": 1, "category_id": 5, "iscrowd": 0, **box(20, 70, 0, 5),
         "segmentation": [[20, 70, 20, 75, 20, 72]]},
        # image 2: a dog (polygon) whose box leaves the image, a crowd of people (uncompressed RLE)
        {"id": 4, "image_id": 2, "category_id": 5, "iscrowd": 0, **box(40, 10, 60, 30),
         "segmentation": polygon(40, 10, 40, 30)},
        {"id": 5, "image_id": 2, "category_id": 1, "iscrowd": 1, **box(5, 50, 65, 40),
         "segmentation": _uncompressed_rle(crowd_mask), "area": float(crowd_mask.sum()),
         "keypoints": [0] * 51, "num_keypoints": 0},
        # image 3: two people with keypoints, a car
        {"id": 6, "image_id": 3, "category_id": 1, "iscrowd": 0, **box(4, 4, 40, 60),
         "segmentation": polygon(4, 4, 40, 60), "keypoints": _person_keypoints(4, 4, 40, 60, 17),
         "num_keypoints": 17},
        {"id": 7, "image_id": 3, "category_id": 1, "iscrowd": 0, **box(60, 10, 30, 50),
         "segmentation": polygon(60, 10, 30, 50), "keypoints": _person_keypoints(60, 10, 30, 50, 9),
         "num_keypoints": 9},
        {"id": 8, "image_id": 3, "category_id": 2, "iscrowd": 0, **box(92, 40, 18, 20),
         "segmentation": polygon(92, 40, 18, 20)},
    ]  # fmt: skip
    data = {"info": {"description": "visionzoo test"}, "images": images, "annotations": annotations,
            "categories": CATEGORIES}  # fmt: skip
    annotation_file = root / "annotations.json"
    annotation_file.write_text(json.dumps(data))
    people = dict(data, categories=CATEGORIES[:1], annotations=[a for a in annotations if a["category_id"] == 1])
    keypoint_file = root / "person_keypoints.json"
    keypoint_file.write_text(json.dumps(people))
    return TinyCoco(image_dir, annotation_file, data, keypoint_file, masks={2: rle_mask, 5: crowd_mask})


def cocoeval_stats(
    gt_file: Path, results: list[dict[str, Any]], iou_type: str, image_ids: list[int] | None = None
) -> list:
    """COCOeval's 12 (keypoints: 10) stats for ``results`` against ``gt_file``, run as pycocotools' own example runs
    it: the independent figures the tests compare visionzoo's with."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        evaluation = COCOeval(gt, gt.loadRes(results), iou_type)
        if image_ids is not None:
            evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return list(evaluation.stats)
