"""Datasets in the layouts the published weights were trained and evaluated on, as map-style
``torch.utils.data.Dataset`` objects.

pycocotools (``pip install visionzoo[coco]``) is imported on first use: importing this package does not.
"""

from __future__ import annotations

from .coco import CocoDetection, collate, load_coco_annotations

__all__ = ["CocoDetection", "collate", "load_coco_annotations"]
