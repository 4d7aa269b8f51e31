"""``visionzoo validate`` for detection weights (boxes, instance masks, person keypoints): COCO mAP, computed by
pycocotools' COCOeval as the published figures were, on a COCO-format image folder and annotation JSON.

Each image goes through the weights' preset and the model (which resizes it itself); the detections, mapped to
the file's category ids by category name, are scored for box mAP, plus mask mAP for models with a mask head and
keypoint mAP for models with a keypoint head (when the file has segmentations / keypoints to score them against).
``--results FILE`` also writes them as a COCO results JSON. With ``--limit N`` the first N images (in image id
order) are evaluated, and only they count.

A batch of images is padded to a common size before the backbone, which moves the detections slightly; the
reference evaluates one image per forward, and so does ``validate`` unless ``--batch-size`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import ChosenWeights, CommandError, device_of, number, one_line
from ._evaluate import Scores, Skips, Timer, build, check_data_dir, progress, published_of, report

if TYPE_CHECKING:
    import torch

    from visionzoo.datasets import CocoDetection

# What each IoU type's AP is called in the weights' meta (``meta["_metrics"]["COCO-val2017"]``).
PUBLISHED_KEYS = {"bbox": "box_map", "segm": "mask_map", "keypoints": "kp_map"}
PUBLISHED_DATASET = "COCO-val2017"
_NOT_CATEGORIES = ("__background__", "N/A", "no person")  # label names that are no annotation category


def _dataset(args: argparse.Namespace) -> CocoDetection:
    """The images and annotations given by ``--data`` and ``--annotations``; every problem as a CommandError."""
    from visionzoo.datasets import CocoDetection

    if not args.annotations:
        raise CommandError("detection weights are validated on COCO-format data: give --annotations FILE (the JSON)")
    root = Path(args.data)
    check_data_dir(root, "of the images --annotations lists")
    try:
        # labels here are the file's own (contiguous): the detections are mapped to its ids by name instead
        return CocoDetection(root, args.annotations, limit=args.limit, label_space="contiguous")
    except ImportError as error:
        raise CommandError(str(error), status=1) from None
    except (OSError, ValueError) as error:
        raise CommandError(one_line(error)) from None


def _iou_types(model: torch.nn.Module, dataset: CocoDetection) -> tuple[list[str], list[str]]:
    """The IoU types to evaluate (boxes always; masks and keypoints when both the model and the file have them)
    and notes on those left out."""
    heads = getattr(model, "roi_heads", None)
    types, notes = ["bbox"], []
    for iou_type, head, present in (
        ("segm", "mask_predictor", dataset.has_masks),
        ("keypoints", "keypoint_predictor", dataset.num_keypoints > 0),
    ):
        if getattr(heads, head, None) is None:
            continue
        if present:
            types.append(iou_type)
        else:
            notes.append(f"{dataset.annotation_file} has no {iou_type} annotations: {iou_type} mAP not measured")
    return types, notes


def label_to_category_id(names: list[str], dataset: CocoDetection) -> dict[int, int]:
    """The file's category id of each label the model scores, matched by name (the 91-entry COCO list onto a
    file that numbers COCO's categories its own way, Keypoint R-CNN's "person" onto the file's person).

    Raises:
        CommandError: no category of the file is among the model's.
    """
    by_name = {category["name"]: category["id"] for category in dataset.coco.dataset["categories"]}
    mapping = {label: by_name[name] for label, name in enumerate(names) if name in by_name}
    if not mapping:
        shown = [n for n in names if n not in _NOT_CATEGORIES][:5]
        raise CommandError(
            f"none of the categories in {dataset.annotation_file} ({', '.join(sorted(by_name)[:5])}, ...) is one the "
            f"weights detect ({', '.join(shown)}, ...)"
        )
    return mapping


def _model_categories(chosen: ChosenWeights, model: torch.nn.Module | None, dataset: CocoDetection) -> list[str]:
    """The names of the model's labels: the entry's; for a checkpoint whose head has another size, the file's
    categories in id order after the background (a model fine-tuned on this dataset's categories)."""
    if model is None:
        return list(chosen.entry.meta.get("categories") or [])
    from ._detection import scored_classes

    outputs = scored_classes(model)
    names = chosen.categories(outputs) if outputs is not None else []
    if names:
        return names
    own = sorted(dataset.coco.dataset["categories"], key=lambda category: category["id"])
    if outputs is not None and outputs != len(own) + 1:
        raise CommandError(
            f"the checkpoint's head scores {outputs} classes, which are not the default weights' categories nor "
            f"the background plus the {len(own)} categories of {dataset.annotation_file}"
        )
    return ["__background__"] + [category["name"] for category in own]


def _detect(
    model: torch.nn.Module,
    preset: Any,
    dataset: CocoDetection,
    mapping: dict[int, int],
    args: argparse.Namespace,
    device: torch.device,
    skips: Skips,
) -> tuple[list[dict[str, Any]], list[int]]:
    """The model's detections on every readable image as COCO results (converted batch by batch: full-image mask
    probabilities are too big to keep), and the ids of the images scored."""
    from visionzoo.io import ImageDecodeError
    from visionzoo.metrics.coco import coco_results

    def read(index: int) -> Any:
        try:
            return dataset.load(index)
        except ImageDecodeError as error:
            raise CommandError(one_line(error), status=1) from None  # skipped and counted
        except ValueError as error:  # an image of another size than the file says: a wrong dataset
            raise CommandError(one_line(error)) from None

    results: list[dict[str, Any]] = []
    image_ids: list[int] = []
    with progress(args, len(dataset), "img") as bar:
        for first in range(0, len(dataset), args.batch_size):
            indices = range(first, min(first + args.batch_size, len(dataset)))
            batch = [item for i in indices if (item := skips.guard(dataset.image_path(i), lambda i=i: read(i)))]
            if batch:
                ids = [target["image_id"] for _, target in batch]
                outputs = model([preset(image).to(device) for image, _ in batch])
                results += coco_results(outputs, ids, label_to_category_id=mapping)
                image_ids += ids
            bar.update(len(indices))
    return results, image_ids


def evaluate(args: argparse.Namespace, chosen: ChosenWeights) -> int:
    """Score detection weights on ``--data`` + ``--annotations`` and report COCO mAP next to the published figures.

    Raises:
        CommandError: a missing or malformed annotation file, a missing image, categories that do not match the
            weights', or no image that could be read.
    """
    from visionzoo.metrics.coco import coco_evaluate, write_coco_results

    dataset = _dataset(args)  # layout errors come before any download
    # Published weights name their categories, so a file of other categories fails before any download.
    mapping = None if chosen.local else label_to_category_id(_model_categories(chosen, None, dataset), dataset)
    device = device_of(args.device)
    model, preset = build(chosen, args, device)
    if mapping is None:  # a checkpoint: its head decides
        mapping = label_to_category_id(_model_categories(chosen, model, dataset), dataset)
    iou_types, notes = _iou_types(model, dataset)
    for note in notes:
        print(f"visionzoo: note: {note}", file=sys.stderr)

    skips = Skips()
    with Timer() as timer:
        results, image_ids = _detect(model, preset, dataset, mapping, args, device, skips)
    stats = {}
    if image_ids:  # else report says that nothing could be scored
        if args.results:
            write_coco_results(results, args.results)
        stats = coco_evaluate(dataset, results, iou_types, image_ids=image_ids)
    extra: dict[str, Any] = {"annotations": str(dataset.annotation_file), "detections": len(results), "coco": stats}
    if args.results:
        extra["results"] = str(args.results)
    status = report(
        args,
        chosen,
        Scores(
            heading=f"{chosen.label} on {args.data} ({dataset.annotation_file.name}): {len(image_ids)} images, "
            f"{len(results)} detections",
            measured={"measured": {PUBLISHED_KEYS[t]: stats[t]["AP"] for t in stats}},
            published=published_of(chosen, PUBLISHED_DATASET),
            items=len(image_ids),
            unit="images",
            seconds=timer.seconds,
            skipped=skips.messages,
            extra=extra,
        ),
    )
    if not args.json:  # every COCOeval figure, and where the results went
        for iou_type, figures in stats.items():
            print(f"  {iou_type}: " + ", ".join(f"{name} {number(value, '.1f')}" for name, value in figures.items()))
        if args.results:
            print(f"results: {args.results}")
    return status
