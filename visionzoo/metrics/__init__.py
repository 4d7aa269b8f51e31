"""Evaluation metrics, computed as the field computes them; one module per kind of task.

* :mod:`visionzoo.metrics.segmentation`: the confusion matrix of semantic segmentation, mean IoU and pixel
  accuracy;
* :mod:`visionzoo.metrics.flow`: optical flow's end-point error, 1/3/5-pixel rates and KITTI's Fl-all;
* :mod:`visionzoo.metrics.classification`: top-k hits.

The submodules are imported on use (``from visionzoo.metrics.flow import FlowMetrics``).
"""
