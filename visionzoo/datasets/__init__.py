"""Datasets in the layouts the published weights were trained and evaluated on, and the one fine-tuning reads,
as map-style ``torch.utils.data.Dataset`` objects: COCO (``coco``) and class folders (``folder``).

Each yields decoded ``uint8`` CHW tensors through ``visionzoo.io``. pycocotools (``pip install visionzoo[coco]``)
is imported on first use: importing this package does not.
"""

from __future__ import annotations

from .coco import CocoDetection, collate, load_coco_annotations
from .folder import ImageFolder

__all__ = ["CocoDetection", "ImageFolder", "collate", "load_coco_annotations"]
