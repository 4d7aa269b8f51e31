"""Compact constructors for weights entries: each entry is written as its facts, the rest is shared."""

from __future__ import annotations

from functools import partial
from typing import Any

from ..transforms.functional import InterpolationMode
from ..transforms.presets import (
    ImageClassification,
    ObjectDetection,
    OpticalFlow,
    SemanticSegmentation,
    VideoClassification,
)
from ._api import Weights
from ._meta import _COCO_CATEGORIES, _IMAGENET_CATEGORIES, _KINETICS400_CATEGORIES, _VOC_CATEGORIES


def imagenet_entry(
    url: str,
    *,
    params: int,
    acc1: float,
    acc5: float,
    gflops: float,
    file_mb: float,
    recipe: str,
    docs: str,
    crop: int = 224,
    resize: int = 256,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    min_size: tuple[int, int] = (1, 1),
    **extra_meta: Any,
) -> Weights:
    """A weights entry for an ImageNet-1k classifier.

    Args:
        params: number of parameters; acc1/acc5: ImageNet-1K validation top-1/top-5 accuracy (%);
        gflops: GFLOPS per image at the preset's crop size; file_mb: checkpoint size in MB;
        crop/resize/interpolation: the inference preset (resize the shorter side, then center-crop).
        mean/std: the preset's normalisation, where it is not the ImageNet statistics.
        extra_meta: further facts (e.g. ``_weight_name`` or ``license``) kept verbatim in ``meta``.
    """
    preset_args: dict[str, Any] = {"crop_size": crop}
    if resize != 256:
        preset_args["resize_size"] = resize
    if interpolation != InterpolationMode.BILINEAR:
        preset_args["interpolation"] = interpolation
    if mean is not None:
        preset_args["mean"] = mean
    if std is not None:
        preset_args["std"] = std
    meta = {
        "categories": _IMAGENET_CATEGORIES,
        "min_size": min_size,
        "num_params": params,
        "recipe": recipe,
        "_metrics": {"ImageNet-1K": {"acc@1": acc1, "acc@5": acc5}},
        "_ops": gflops,
        "_file_size": file_mb,
        "_docs": docs,
        **extra_meta,
    }
    return Weights(url=url, transforms=partial(ImageClassification, **preset_args), meta=meta)


# The published segmentation weights' training set: COCO train2017 images, labelled with VOC's categories.
_COCO_VOC_DOCS = (
    "Trained on the subset of COCO train2017 that shows the 20 Pascal VOC categories (other objects count as "
    "background); evaluated on the same subset of COCO val2017."
)


def segmentation_entry(
    url: str,
    *,
    params: int,
    miou: float,
    pixel_acc: float,
    gflops: float,
    file_mb: float,
    recipe: str,
    resize: int = 520,
    docs: str = _COCO_VOC_DOCS,
) -> Weights:
    """A weights entry for a semantic segmentation model trained on COCO with the 21 VOC labels.

    Args:
        params: number of parameters; miou/pixel_acc: mean IoU and pixel accuracy (%) on COCO val2017 with VOC
            labels; gflops: GFLOPS per image at the preset's size; file_mb: checkpoint size in MB.
        resize: the preset's shorter side in pixels.
    """
    meta = {
        "categories": _VOC_CATEGORIES,
        "min_size": (1, 1),
        "num_params": params,
        "recipe": recipe,
        "_metrics": {"COCO-val2017-VOC-labels": {"miou": miou, "pixel_acc": pixel_acc}},
        "_ops": gflops,
        "_file_size": file_mb,
        "_docs": docs,
    }
    return Weights(url=url, transforms=partial(SemanticSegmentation, resize_size=resize), meta=meta)


def detection_entry(
    url: str,
    *,
    params: int,
    box_map: float,
    gflops: float,
    file_mb: float,
    recipe: str,
    docs: str,
    categories: list[str] | None = None,
    keypoint_names: list[str] | None = None,
    **more_metrics: float,
) -> Weights:
    """A weights entry for a detector trained on COCO train2017 (the 91 category ids, unused ones "N/A").

    Args:
        params: number of parameters; box_map: box mAP (%) on COCO val2017; gflops: GFLOPS per image at the
            model's own input size; file_mb: checkpoint size in MB.
        categories: the classes, if not COCO's 91 (Keypoint R-CNN's background and person).
        keypoint_names: the keypoints a keypoint detector predicts, in order.
        **more_metrics: further COCO val2017 metrics after the box mAP (``mask_map``, ``kp_map``).
    """
    meta = {
        "categories": _COCO_CATEGORIES if categories is None else categories,
        **({} if keypoint_names is None else {"keypoint_names": keypoint_names}),
        "min_size": (1, 1),
        "num_params": params,
        "recipe": recipe,
        "_metrics": {"COCO-val2017": {"box_map": box_map, **more_metrics}},
        "_ops": gflops,
        "_file_size": file_mb,
        "_docs": docs,
    }
    return Weights(url=url, transforms=ObjectDetection, meta=meta)


def kinetics_entry(
    url: str,
    *,
    params: int,
    acc1: float,
    acc5: float,
    gflops: float,
    file_mb: float,
    recipe: str,
    docs: str,
    crop: tuple[int, int],
    resize: tuple[int, ...],
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    min_size: tuple[int, int] = (1, 1),
    min_temporal_size: int | None = None,
) -> Weights:
    """A weights entry for a video classifier trained on Kinetics-400.

    Args:
        params: number of parameters; acc1/acc5: Kinetics-400 validation top-1/top-5 accuracy (%);
        gflops: GFLOPS per clip at the preset's crop size; file_mb: checkpoint size in MB;
        crop/resize: the preset's sizes (``resize`` of one value resizes the shorter side).
        mean/std: the preset's normalisation, where it is not the video ResNets' Kinetics statistics.
        min_size/min_temporal_size: the smallest frames and clip length the model takes (``min_temporal_size`` is
            left out of ``meta`` when None, as the reference's video ResNet entries have none).
    """
    preset_args: dict[str, Any] = {"crop_size": crop, "resize_size": resize}
    if mean is not None:
        preset_args["mean"] = mean
    if std is not None:
        preset_args["std"] = std
    meta: dict[str, Any] = {
        "categories": _KINETICS400_CATEGORIES,
        "min_size": min_size,
        "num_params": params,
        "recipe": recipe,
        "_metrics": {"Kinetics-400": {"acc@1": acc1, "acc@5": acc5}},
        "_ops": gflops,
        "_file_size": file_mb,
        "_docs": docs,
    }
    if min_temporal_size is not None:
        meta["min_temporal_size"] = min_temporal_size
    return Weights(url=url, transforms=partial(VideoClassification, **preset_args), meta=meta)


def flow_entry(
    url: str,
    *,
    params: int,
    metrics: dict[str, dict[str, float]],
    gflops: float,
    file_mb: float,
    recipe: str,
    docs: str,
) -> Weights:
    """A weights entry for an optical flow model (inputs of at least 128x128 pixels, the ``OpticalFlow`` preset).

    Args:
        params: number of parameters; metrics: per dataset (``"Sintel-Train-Cleanpass"``, ``"Kitti-Test"``, ...),
            end-point errors (``epe``, ``per_image_epe``, in pixels) and KITTI's outlier rate ``fl_all`` (%);
            gflops: GFLOPS of a forward as the reference reports it; file_mb: checkpoint size in MB.
    """
    meta = {
        "min_size": (128, 128),
        "num_params": params,
        "recipe": recipe,
        "_metrics": metrics,
        "_ops": gflops,
        "_file_size": file_mb,
        "_docs": docs,
    }
    return Weights(url=url, transforms=OpticalFlow, meta=meta)
