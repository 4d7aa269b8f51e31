"""Evaluation metrics, computed as the field computes them; one module per kind of task.

* :mod:`visionzoo.metrics.coco`: detection outputs as COCO results, and box, mask and keypoint mAP by pycocotools'
  COCOeval (``coco_results``, ``write_coco_results``, ``coco_evaluate``, ``CocoEvaluator``).

The submodules are imported on use (``from visionzoo.metrics.coco import coco_evaluate``).
"""
