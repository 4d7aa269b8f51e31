"""``visionzoo validate`` for detection weights (boxes, instance masks, person keypoints): COCO mAP, computed by
pycocotools' COCOeval as the published figures were, on a COCO-format image folder and annotation JSON.

Each image goes through the weights' preset and the model (which resizes it itself); the detections, mapped to
the file's category ids by category name, are scored for box mAP, plus mask mAP for models with a mask head and
keypoint mAP for models with a keypoint head (when the file has segmentations / keypoints to score them against).
``--results FILE`` also writes them as a COCO results JSON. With ``--limit N`` the first N images (in image id
order) are evaluated, and only they count.

A batch of images is padded to a common size before the backbone, which moves the detections slightly; the
reference evaluates one image per forward, so ``--batch-size 1`` reproduces its figures most closely.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import ChosenWeights, CommandError, device_of, number, one_line, preset_of, table

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
    if root.is_file():
        raise CommandError(f"--data {root} is a file; it must be the directory of the images --annotations lists")
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
) -> tuple[list[dict[str, Any]], list[int], list[str], float]:
    """The model's detections on every readable image as COCO results (converted batch by batch: full-image mask
    probabilities are too big to keep), the ids of the images scored, the skipped images' messages, and the
    seconds the scoring took."""
    import torch
    from tqdm import tqdm

    from visionzoo.io import ImageDecodeError
    from visionzoo.metrics.coco import coco_results

    results: list[dict[str, Any]] = []
    image_ids: list[int] = []
    skipped: list[str] = []
    start = time.perf_counter()
    with (
        torch.inference_mode(),
        tqdm(total=len(dataset), unit="img", file=sys.stderr, disable=args.quiet or None) as bar,
    ):
        for first in range(0, len(dataset), args.batch_size):
            batch = []
            for index in range(first, min(first + args.batch_size, len(dataset))):
                try:
                    batch.append(dataset.load(index))
                except ImageDecodeError as error:
                    message = one_line(error)
                    skipped.append(
                        message
                        if str(dataset.image_path(index)) in message
                        else f"{dataset.image_path(index)}: {message}"
                    )
                    print(f"visionzoo: skipped: {skipped[-1]}", file=sys.stderr)
                except ValueError as error:  # an image of another size than the file says
                    raise CommandError(one_line(error)) from None
            if batch:
                ids = [target["image_id"] for _, target in batch]
                outputs = model([preset(image).to(device) for image, _ in batch])
                results += coco_results(outputs, ids, label_to_category_id=mapping)
                image_ids += ids
            bar.update(min(args.batch_size, len(dataset) - first))
    return results, image_ids, skipped, time.perf_counter() - start


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
    model = chosen.build(progress=not args.quiet).to(device)
    preset = preset_of(chosen, model)
    if mapping is None:  # a checkpoint: its head decides
        mapping = label_to_category_id(_model_categories(chosen, model, dataset), dataset)
    iou_types, notes = _iou_types(model, dataset)
    for note in notes:
        print(f"visionzoo: note: {note}", file=sys.stderr)

    results, image_ids, skipped, seconds = _detect(model, preset, dataset, mapping, args, device)
    if not image_ids:
        raise CommandError(f"no image could be scored: {len(skipped)} skipped (the first: {skipped[0]})", status=1)
    if args.results:
        write_coco_results(results, args.results)
    stats = coco_evaluate(dataset, results, iou_types, image_ids=image_ids)
    measured = {PUBLISHED_KEYS[iou_type]: stats[iou_type]["AP"] for iou_type in iou_types}
    published = {} if chosen.local else dict(chosen.entry.meta.get("_metrics", {}).get(PUBLISHED_DATASET, {}))
    rate = len(image_ids) / seconds if seconds > 0 else float("inf")
    if args.json:
        document = {
            "weights": chosen.label,
            "task": chosen.task,
            "annotations": str(dataset.annotation_file),
            "images": len(image_ids),
            "skipped": len(skipped),
            "skipped_items": skipped,
            "images_per_s": round(rate, 3),
            "detections": len(results),
            "measured": measured,
            "coco": stats,
            "meta": published,
            **({"results": str(args.results)} if args.results else {}),
        }
        print(json.dumps(document, indent=2))
        return 0
    from ._catalog import metric_heading

    print(
        f"{chosen.label} on {args.data} ({dataset.annotation_file.name}): {len(image_ids)} images, {len(results)} detections"
    )
    rows = [["metric", "measured", "meta"]]
    rows += [[metric_heading(key), number(value), number(published.get(key))] for key, value in measured.items()]
    print(table(rows, "lrr"))
    for iou_type in iou_types:
        figures = ", ".join(f"{name} {number(value, '.1f')}" for name, value in stats[iou_type].items())
        print(f"  {iou_type}: {figures}")
    print(f"{len(image_ids)} images in {seconds:.1f} s ({rate:.2f} images/s); {len(skipped)} unreadable, skipped")
    if args.results:
        print(f"results: {args.results}")
    return 0
