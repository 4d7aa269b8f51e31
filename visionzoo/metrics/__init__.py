"""Evaluation metrics, computed as the field computes them; one module per kind of task.

* :mod:`visionzoo.metrics.classification`: top-k hits.
* :mod:`visionzoo.metrics.segmentation`: the confusion matrix of semantic segmentation, mean IoU and pixel
  accuracy;
* :mod:`visionzoo.metrics.flow`: optical flow's end-point error, 1/3/5-pixel rates and KITTI's Fl-all;
* :mod:`visionzoo.metrics.coco`: detection outputs as COCO results, and box, mask and keypoint mAP by pycocotools'
  COCOeval (``coco_results``, ``write_coco_results``, ``coco_evaluate``, ``CocoEvaluator``).

The submodules are imported on use (``from visionzoo.metrics.coco import coco_evaluate``).
"""
