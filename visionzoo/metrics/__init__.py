"""Evaluation metrics computed as the published figures were: COCO box, mask and keypoint mAP via pycocotools.

pycocotools (``pip install visionzoo[coco]``) is imported on first use: importing this package does not.
"""

from __future__ import annotations

from .coco import IOU_TYPES, STAT_NAMES, CocoEvaluator, coco_evaluate, coco_results, write_coco_results

__all__ = ["IOU_TYPES", "STAT_NAMES", "CocoEvaluator", "coco_evaluate", "coco_results", "write_coco_results"]
