"""COCO detection metrics: model outputs as COCO results, and box / mask / keypoint mAP by pycocotools' COCOeval,
the program the published figures come from.

A result is one detection in the COCO results format, ``{"image_id", "category_id", "score", "bbox": [x, y, w,
h]}``, with ``"segmentation"`` (compressed RLE of the mask thresholded at 0.5) and ``"keypoints"`` (``[x1, y1, v1,
...]``) for the models that predict them; one file of such results is what other COCO tools read. Each IoU type is
evaluated on the fields it scores only (a ``segm`` result without its box, as the reference evaluation builds
them): pycocotools would otherwise take the box's area as the mask's.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from visionzoo.datasets.coco import import_pycocotools, load_coco_annotations

if TYPE_CHECKING:
    from pycocotools.coco import COCO

IOU_TYPES: tuple[str, ...] = ("bbox", "segm", "keypoints")
# The names of COCOeval's ``stats`` entries, in its order: boxes and masks have 12, keypoints 10 (no small objects
# and recall at 50 and 75 instead of per-detection-count recall).
STAT_NAMES: dict[str, tuple[str, ...]] = {
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
    "segm": ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"),
}
MASK_THRESHOLD = 0.5  # a mask pixel belongs to the instance where its probability exceeds this
_FIELD = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}


def _mask_rle(mask: torch.Tensor) -> dict[str, Any]:
    """Compressed RLE (counts as text, for JSON) of a boolean ``(H, W)`` mask."""
    import numpy as np

    mask_utils = import_pycocotools().mask
    rle = mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def coco_results(
    outputs: Sequence[Mapping[str, torch.Tensor]],
    image_ids: Sequence[int],
    *,
    label_to_category_id: Mapping[int, int] | None = None,
    mask_threshold: float = MASK_THRESHOLD,
) -> list[dict[str, Any]]:
    """Detection model outputs (``boxes`` xyxy, ``labels``, ``scores``, optional ``masks`` ``(N, 1, H, W)``
    probabilities and ``keypoints`` ``(N, K, 3)``) as COCO results, one per detection.

    Args:
        image_ids: the COCO image id of each output.
        label_to_category_id: the annotation file's category id of each label (e.g.
            ``CocoDetection.label_to_category_id``); None when labels are the category ids. Detections of labels
            without a category (the background, "N/A" rows) are left out.

    Raises:
        ValueError: as many image ids as outputs are needed; an output lacks a field or has inconsistent sizes.
    """
    if len(outputs) != len(image_ids):
        raise ValueError(f"got {len(outputs)} outputs but {len(image_ids)} image ids")
    results = []
    for image_id, output in zip(image_ids, outputs):
        missing = [k for k in ("boxes", "labels", "scores") if k not in output]
        if missing:
            raise ValueError(f"the output for image {image_id} lacks {', '.join(missing)}")
        boxes = output["boxes"].detach().float().cpu()
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"the boxes for image {image_id} have shape {tuple(boxes.shape)}, expected (N, 4)")
        n = len(boxes)
        masks = output.get("masks")
        if masks is not None:  # thresholded where they are: a quarter of the bytes to move than probabilities
            masks = ((masks[:, 0] if masks.ndim == 4 else masks) > mask_threshold).cpu()
        keypoints = output.get("keypoints")
        keypoints = None if keypoints is None else keypoints.detach().float().cpu().flatten(1)
        sized = (("labels", output["labels"]), ("scores", output["scores"]), ("masks", masks), ("keypoints", keypoints))
        for name, value in sized:
            if value is not None and len(value) != n:
                raise ValueError(f"image {image_id}: {len(value)} {name} for {n} boxes")
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for i, (label, score) in enumerate(zip(output["labels"].tolist(), output["scores"].float().tolist())):
            category_id = label if label_to_category_id is None else label_to_category_id.get(label)
            if category_id is None:
                continue
            result = {"image_id": int(image_id), "category_id": int(category_id), "bbox": xywh[i], "score": score}
            if masks is not None:
                result["segmentation"] = _mask_rle(masks[i])
            if keypoints is not None:
                result["keypoints"] = keypoints[i].tolist()
            results.append(result)
    return results


def write_coco_results(results: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Writes ``results`` as a COCO results JSON file (a list of detections) and returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(results)), encoding="utf-8")
    return path


def _ground_truth(coco_gt: Any) -> COCO:
    """A COCO index from an index, a dataset that holds one (``CocoDetection``), or an annotation file path."""
    if isinstance(coco_gt, (str, os.PathLike)):
        return load_coco_annotations(coco_gt)
    index = getattr(coco_gt, "coco", coco_gt)
    if not hasattr(index, "getImgIds"):
        raise TypeError(f"coco_gt must be a pycocotools COCO, a CocoDetection or a file path, not {type(coco_gt)}")
    return index


def _detections(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str) -> COCO:
    """The results as a COCO index for ``iou_type``, keeping only the fields it scores (and an empty index when
    there are none, which pycocotools' loadRes does not accept)."""
    field = _FIELD[iou_type]
    kept = []
    for result in results:
        if field not in result:
            raise ValueError(
                f"{iou_type} evaluation needs {field!r} in every result; image {result['image_id']} lacks it"
            )
        kept.append({k: result[k] for k in ("image_id", "category_id", "score", field)})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports its progress on stdout
        if kept:
            return coco_gt.loadRes(copy.deepcopy(kept))
        empty = import_pycocotools().coco.COCO()
        empty.dataset = {
            "images": list(coco_gt.dataset["images"]),
            "categories": copy.deepcopy(coco_gt.dataset["categories"]),
            "annotations": [],
        }
        empty.createIndex()
        return empty


def _check_segmentations(gt: COCO, image_ids: list[int]) -> None:
    """Raises ValueError naming a ground-truth annotation without a segmentation (COCOeval fails on it)."""
    for image_id in image_ids:
        for ann in gt.imgToAnns.get(image_id, []):
            if not ann.get("segmentation"):
                raise ValueError(
                    f"segm evaluation needs a segmentation on every ground-truth annotation; annotation {ann['id']} "
                    f"(image {image_id}) has none"
                )


def coco_evaluate(
    coco_gt: Any,
    results: Sequence[Mapping[str, Any]] | str | os.PathLike[str],
    iou_types: Sequence[str] = ("bbox",),
    *,
    image_ids: Iterable[int] | None = None,
) -> dict[str, dict[str, float | None]]:
    """COCOeval's summary statistics of ``results`` against ``coco_gt``, per IoU type, by name (:data:`STAT_NAMES`).

    Args:
        coco_gt: the ground truth: a ``pycocotools.coco.COCO``, a :class:`~visionzoo.datasets.CocoDetection`, or
            an annotation file path.
        results: COCO results (see :func:`coco_results`) or a results JSON file.
        iou_types: any of ``"bbox"``, ``"segm"``, ``"keypoints"``.
        image_ids: the images evaluated (default: all of the ground truth's). Images without a detection count as
            misses, so pass the ids of the images the model saw when it saw a subset.

    Returns:
        ``{iou_type: {"AP": 37.0, "AP50": ..., ...}}`` in percent, as published; None where COCOeval has nothing
        to measure (it reports -1: no ground truth of that size).

    Raises:
        ValueError: an unknown IoU type, or results without the field an IoU type scores.
    """
    pycocotools = import_pycocotools()
    unknown = [t for t in iou_types if t not in IOU_TYPES]
    if unknown or not iou_types:
        raise ValueError(f"iou_types must be some of {', '.join(IOU_TYPES)}, not {list(iou_types)!r}")
    gt = _ground_truth(coco_gt)
    if isinstance(results, (str, os.PathLike)):
        try:
            results = json.loads(Path(results).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{results}: cannot read COCO results: {error}") from None
        if not isinstance(results, list):
            raise ValueError("a COCO results file holds a list of detections")
    results = [dict(r) for r in results]
    ids = sorted(gt.getImgIds() if image_ids is None else set(image_ids))
    if "segm" in iou_types:
        _check_segmentations(gt, ids)
    stats = {}
    for iou_type in iou_types:
        evaluation = pycocotools.cocoeval.COCOeval(gt, _detections(gt, results, iou_type), iou_type)
        evaluation.params.imgIds = ids
        if iou_type == "keypoints":  # only the categories with keypoints (a file may list others, without any)
            with_points = [c["id"] for c in gt.dataset["categories"] if c.get("keypoints")]
            evaluation.params.catIds = sorted(with_points) or evaluation.params.catIds
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        stats[iou_type] = {
            name: None if value < 0 else 100.0 * float(value)
            for name, value in zip(STAT_NAMES[iou_type], evaluation.stats)
        }
    return stats


def merge_results(parts: Sequence[tuple[list[dict[str, Any]], list[int]]]) -> tuple[list[dict[str, Any]], list[int]]:
    """One ``(results, image_ids)`` from several (one per process), each image's results taken from the first part
    that scored it."""
    owner: dict[int, int] = {}
    for index, (_, image_ids) in enumerate(parts):
        for image_id in image_ids:
            owner.setdefault(image_id, index)
    results = [r for index, (part, _) in enumerate(parts) for r in part if owner[r["image_id"]] == index]
    return results, sorted(owner)


class CocoEvaluator:
    """Collects a model's outputs batch by batch and evaluates them at the end (training's periodic evaluation,
    ``visionzoo validate``).

    Args:
        dataset: the :class:`~visionzoo.datasets.CocoDetection` the outputs are for (its ground truth and label
            mapping).
        iou_types: what to evaluate (see :func:`coco_evaluate`).
    """

    def __init__(self, dataset: Any, iou_types: Sequence[str] = ("bbox",)) -> None:
        unknown = [t for t in iou_types if t not in IOU_TYPES]
        if unknown or not iou_types:
            raise ValueError(f"iou_types must be some of {', '.join(IOU_TYPES)}, not {list(iou_types)!r}")
        self.dataset = dataset
        self.iou_types = tuple(iou_types)
        self.results: list[dict[str, Any]] = []
        self.image_ids: list[int] = []

    def update(self, outputs: Sequence[Mapping[str, torch.Tensor]], targets: Sequence[Mapping[str, Any]]) -> None:
        """Adds the outputs for a batch; ``targets`` are the dataset's (their ``image_id`` is read)."""
        ids = [int(target["image_id"]) for target in targets]
        self.results += coco_results(outputs, ids, label_to_category_id=self.dataset.label_to_category_id)
        self.image_ids += ids

    def synchronize(self) -> None:
        """Gathers every process's results into each one, when a ``torch.distributed`` process group runs (else
        nothing). An image that several processes scored (``DistributedSampler`` repeats images to even out the
        shards) counts once, with the detections of the lowest rank that scored it."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (self.results, self.image_ids))
        self.results, self.image_ids = merge_results(parts)

    def evaluate(self) -> dict[str, dict[str, float | None]]:
        """The statistics over every image added so far (in a distributed run: call :meth:`synchronize` first)."""
        if not self.image_ids:
            raise ValueError("no image was evaluated")
        return coco_evaluate(self.dataset.coco, self.results, self.iou_types, image_ids=self.image_ids)
