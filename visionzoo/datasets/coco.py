"""COCO-format detection data: an image directory and an annotation JSON, read with pycocotools.

An item is ``(image, target)``: the image as a uint8 ``(3, H, W)`` RGB tensor and a target dict in the form the
detection models take in training and return in evaluation (boxes in pixels, ``(x1, y1, x2, y2)``).

Labels. The published detection weights score the 91-entry COCO category list (``_COCO_CATEGORIES``: index =
COCO category id, unused ids "N/A"). With ``label_space="coco"`` (the default) every category of the file is
mapped *by name* onto that list, so a file that renumbers COCO's categories, or holds only some of them, still
gives the labels the weights expect; a category name outside COCO's is an error. For a custom dataset pass
``label_space="contiguous"``: the file's categories, in id order, become labels 1..N (0 is the background), as a
model built with ``num_classes=N + 1`` wants. Either way ``dataset.categories`` names each label and
``dataset.label_to_category_id`` maps labels back to the file's ids (for COCO results files).

Images that do not decode are skipped: the item is ``None`` (with a warning naming the file; the path is added
to ``dataset.skipped`` in the process that read it) and :func:`collate` leaves it out of the batch, so a loader
yields fewer images than it asked for by exactly the number skipped. ``dataset.load(index)`` raises instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from pycocotools.coco import COCO

LabelSpace = Literal["coco", "contiguous"]
LABEL_SPACES: tuple[str, ...] = ("coco", "contiguous")


def import_pycocotools() -> Any:
    """The ``pycocotools`` package, or an ImportError saying how to install it."""
    try:
        import pycocotools.coco
        import pycocotools.cocoeval
        import pycocotools.mask
    except ImportError as error:
        raise ImportError(
            f"COCO data and metrics need pycocotools ({error}); install it with: pip install visionzoo[coco]"
        ) from None
    return pycocotools


def _fail(path: Path, problem: str) -> ValueError:
    return ValueError(f"{path}: not a COCO annotation file: {problem}")


def _check_annotations(data: Any, path: Path) -> None:
    """Raises ValueError naming ``path`` and the first entry that breaks the COCO format's essentials."""
    if not isinstance(data, dict):
        raise _fail(path, f"the top level is a {type(data).__name__}, expected an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise _fail(path, f"{key!r} is missing or not a list")
    image_ids = set()
    for image in data["images"]:
        missing = [k for k in ("id", "file_name", "height", "width") if not isinstance(image, dict) or k not in image]
        if missing:
            raise _fail(path, f"image entry {str(image)[:80]} lacks {', '.join(missing)}")
        image_ids.add(image["id"])
    category_ids = set()
    for category in data["categories"]:
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise _fail(path, f"category entry {str(category)[:80]} needs an id and a name")
        category_ids.add(category["id"])
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not {"id", "image_id", "category_id", "bbox"} <= ann.keys():
            raise _fail(path, f"annotation {str(ann)[:80]} needs id, image_id, category_id and bbox")
        if ann["image_id"] not in image_ids:
            raise _fail(path, f"annotation {ann['id']} refers to image {ann['image_id']}, which is not listed")
        if ann["category_id"] not in category_ids:
            raise _fail(path, f"annotation {ann['id']} has category {ann['category_id']}, which is not listed")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise _fail(path, f"annotation {ann['id']} has bbox {bbox!r}, expected [x, y, width, height]")


def load_coco_annotations(annotation_file: str | os.PathLike[str]) -> COCO:
    """Reads a COCO-format annotation JSON into a ``pycocotools.coco.COCO`` index (quietly: no prints).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON, or lacks what the format requires; the message names the file.
        ImportError: pycocotools is not installed.
    """
    pycocotools = import_pycocotools()
    path = Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such annotation file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a valid JSON file ({error})") from None
    _check_annotations(data, path)
    coco = pycocotools.coco.COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex reports its progress on stdout
        coco.createIndex()
    return coco


def _label_mapping(coco: COCO, label_space: str, path: Path) -> tuple[list[str], dict[int, int]]:
    """The label names (index 0 the background) and the file's category id -> label mapping."""
    from visionzoo.models._meta import _COCO_CATEGORIES

    file_categories = sorted(coco.dataset["categories"], key=lambda c: c["id"])
    if label_space == "contiguous":
        names = ["__background__"] + [c["name"] for c in file_categories]
        return names, {c["id"]: i + 1 for i, c in enumerate(file_categories)}
    index_of = {name: i for i, name in enumerate(_COCO_CATEGORIES) if name not in ("__background__", "N/A")}
    unknown = [c["name"] for c in file_categories if c["name"] not in index_of]
    if unknown:
        raise ValueError(
            f"{path}: categories {', '.join(map(repr, unknown[:5]))} are not COCO categories; for a custom dataset "
            'use label_space="contiguous" (labels 1..N in category id order)'
        )
    return list(_COCO_CATEGORIES), {c["id"]: index_of[c["name"]] for c in file_categories}


class CocoDetection(Dataset):
    """The images of a COCO-format annotation file with their instances as detection targets.

    Args:
        image_dir: the directory the file's ``file_name`` entries are relative to.
        annotation_file: the annotation JSON (e.g. ``instances_val2017.json``, ``person_keypoints_val2017.json``).
        limit: keep only the first ``limit`` images (in image id order).
        label_space: ``"coco"`` or ``"contiguous"`` (see the module docstring).
        include_crowd: keep crowd annotations (``iscrowd`` 1), as evaluation does; training usually drops them.
        transforms: applied to each ``(image, target)`` pair, returning the pair (e.g. a random horizontal flip
            for training, which must move the boxes, masks and keypoints with the image).

    A target holds ``boxes`` float32 ``(K, 4)`` (xyxy pixels, clipped to the image; boxes with no area are
    dropped with their annotation), ``labels`` int64 ``(K,)``, ``image_id`` (int), ``iscrowd`` int64, ``area``
    float32, ``masks`` uint8 ``(K, H, W)`` when the file has segmentations (polygons or RLE) and ``keypoints``
    float32 ``(K, N, 3)`` (x, y, visibility) when it has keypoints.

    Raises:
        FileNotFoundError: the annotation file, or an image file it lists, does not exist (named).
        ValueError: a malformed annotation file, a bad ``limit`` or ``label_space``, or non-COCO categories with
            ``label_space="coco"``.
    """

    def __init__(
        self,
        image_dir: str | os.PathLike[str],
        annotation_file: str | os.PathLike[str],
        *,
        limit: int | None = None,
        label_space: LabelSpace = "coco",
        include_crowd: bool = True,
        transforms: Callable[[torch.Tensor, dict[str, Any]], tuple[torch.Tensor, dict[str, Any]]] | None = None,
    ) -> None:
        if label_space not in LABEL_SPACES:
            raise ValueError(f"label_space must be one of {', '.join(LABEL_SPACES)}, not {label_space!r}")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive int or None, not {limit!r}")
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"{self.image_dir}: no such image directory")
        self.annotation_file = Path(annotation_file)
        self.coco = load_coco_annotations(self.annotation_file)
        self.include_crowd = include_crowd
        self.transforms = transforms
        self.categories, self.category_id_to_label = _label_mapping(self.coco, label_space, self.annotation_file)
        self.label_to_category_id = {label: cid for cid, label in self.category_id_to_label.items()}
        self.image_ids: list[int] = sorted(self.coco.imgs)[:limit]
        for image_id in self.image_ids:
            path = self.image_dir / self.coco.imgs[image_id]["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"{path}: image {image_id} of {self.annotation_file} is missing")
        annotations = self.coco.dataset["annotations"]
        self.has_masks = any(ann.get("segmentation") for ann in annotations)
        self.num_keypoints = self._keypoint_count(annotations)
        self.skipped: list[Path] = []

    def _keypoint_count(self, annotations: list[dict[str, Any]]) -> int:
        """Keypoints per instance (0 when the file has none); one number for the whole file."""
        counts = {len(ann["keypoints"]) for ann in annotations if ann.get("keypoints")}
        if not counts:
            return 0
        if len(counts) > 1 or next(iter(counts)) % 3:
            raise _fail(self.annotation_file, f"keypoint lists of lengths {sorted(counts)}; expected one multiple of 3")
        return next(iter(counts)) // 3

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        """The file of item ``index``."""
        return self.image_dir / self.coco.imgs[self.image_ids[index]]["file_name"]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]] | None:
        """Item ``index``, or None (with a warning) when its image does not decode."""
        from visionzoo.io import ImageDecodeError

        try:
            return self.load(index)
        except ImageDecodeError as error:
            warnings.warn(f"{self.image_path(index)}: skipped, the image does not decode ({error})", stacklevel=2)
            self.skipped.append(self.image_path(index))
            return None

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Item ``index``, whatever its image.

        Raises:
            ImageDecodeError: the image does not decode (the message names its path).
            ValueError: the image's size is not the one the annotation file gives.
        """
        from visionzoo.io import ImageReadMode, read_image
        from visionzoo.transforms.functional import convert_image_dtype

        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_path(index)
        image = convert_image_dtype(read_image(path, mode=ImageReadMode.RGB), torch.uint8)  # 16-bit PNGs: uint16
        height, width = image.shape[-2:]
        if (height, width) != (info["height"], info["width"]):
            raise ValueError(
                f"{path} is {width}x{height}, but {self.annotation_file} gives image {image_id} as "
                f"{info['width']}x{info['height']}"
            )
        target = self._target(image_id, height, width)
        return (image, target) if self.transforms is None else self.transforms(image, target)

    def _target(self, image_id: int, height: int, width: int) -> dict[str, Any]:
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if self.include_crowd or not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # COCO's (x, y, w, h) -> (x1, y1, x2, y2)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).tolist()
        anns = [a for a, k in zip(anns, keep) if k]
        target: dict[str, Any] = {
            "boxes": boxes[torch.tensor(keep, dtype=torch.bool)],
            "labels": torch.tensor([self.category_id_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "image_id": image_id,
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
            "area": torch.tensor([float(a.get("area", 0.0)) for a in anns], dtype=torch.float32),
        }
        if self.has_masks:
            target["masks"] = self._masks(anns, height, width)
        if self.num_keypoints:
            points = [a.get("keypoints") or [0.0] * (3 * self.num_keypoints) for a in anns]
            target["keypoints"] = torch.tensor(points, dtype=torch.float32).reshape(-1, self.num_keypoints, 3)
        return target

    def _masks(self, anns: list[dict[str, Any]], height: int, width: int) -> torch.Tensor:
        """uint8 ``(K, H, W)`` masks decoded from polygons or RLE (an annotation without one: all zeros)."""
        import numpy as np

        masks = torch.zeros((len(anns), height, width), dtype=torch.uint8)
        for i, ann in enumerate(anns):
            if ann.get("segmentation"):
                masks[i] = torch.from_numpy(np.ascontiguousarray(self.coco.annToMask(ann)))
        return masks

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.image_dir)!r}, {str(self.annotation_file)!r}: {len(self)} images, "
            f"{len(self.label_to_category_id)} categories)"
        )


def collate(
    batch: list[tuple[torch.Tensor, dict[str, Any]] | None],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """A detection batch: the list of images (sizes may differ) and the list of their targets, leaving out the
    items of images that were skipped (``None``)."""
    kept = [item for item in batch if item is not None]
    return [image for image, _ in kept], [target for _, target in kept]
